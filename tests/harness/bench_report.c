/* tests/harness/bench_report.c — failed checks and result lines of a benchmark
 * (bench_report.h). */
#include "bench_report.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const char *g_name = "bench";
static FILE *g_results; /* --results, or NULL */
static bool g_failed;   /* some check failed: exit status 1 */

bool kx_bench_open_results(const char *name, const char *path)
{
    g_name = name;
    if (path == NULL)
        return true;
    g_results = fopen(path, "a");
    if (g_results == NULL) {
        fprintf(stderr, "%s: cannot open %s: %s\n", name, path, strerror(errno));
        return false;
    }
    return true;
}

void kx_bench_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", g_name);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    g_failed = true;
}

bool kx_bench_failed(void)
{
    return g_failed;
}

void kx_bench_result(const char *key, double value, const char *unit)
{
    if (g_results != NULL)
        fprintf(g_results, "%s %.3f %s\n", key, value, unit);
}

void kx_bench_close(void)
{
    if (g_results != NULL)
        fclose(g_results);
    g_results = NULL;
}
