/* tests/harness/bench_report.h — what a benchmark under tests/bench reports besides its
 * printout: failed checks (a benchmark that checks what it measured exits 1 when one failed)
 * and "key value unit" result lines appended to the file of --results (tests/run.sh keeps the
 * medians over runs). One benchmark per process: the state is the process's.
 *
 * Ownership: kx_bench_open_results opens the file, kx_bench_close closes it. */
#ifndef KX_TEST_BENCH_REPORT_H
#define KX_TEST_BENCH_REPORT_H

#include <stdbool.h>

/* name prefixes the failure lines ("bench_run: ..."); path (NULL: no file) is opened for
 * appending. false (after a message on stderr) when it cannot be opened. */
bool kx_bench_open_results(const char *name, const char *path);
/* A failed check: "<name>: <message>" on stderr; the benchmark will exit 1. */
void kx_bench_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
bool kx_bench_failed(void);
/* A "key value unit" line in the results file, if there is one. */
void kx_bench_result(const char *key, double value, const char *unit);
void kx_bench_close(void);

#endif
