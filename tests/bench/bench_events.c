/* bench_events.c — CPU per call of the agent-runner's JSON printing on its hot path, against
 * jansson's printer in the same run (the baseline):
 *   - kx_json_dumps_compact vs json_dumps(JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY)
 *     on the runner's default tool schemas (prompt_tools(): what every request body carries)
 *     and on the messages of the harness's sample run (sample_run.h);
 *   - events_row_json (written straight into one buffer), the sample run's tool result as
 *     content, vs the same row built the way it was before: the content and metadata printed,
 *     wrapped in jansson strings, packed in a jansson object and printed again.
 * Usage: bench_events [iterations] (default 2000). Single thread, in-process; the figures are
 * the thread's CPU time per call (CLOCK_THREAD_CPUTIME_ID), steadier than wall time on a
 * shared machine. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "events.h"
#include "kx/json.h"
#include "prompt.h"
#include "sample_run.h"

static double cpu_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts); /* CPU, not wall: the machine is shared */
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

/* The row as events.c built it before: two inner prints, two jansson strings, a packed object
 * and a third print. */
static char *row_before(const json_t *content, const json_t *metadata)
{
    char *ct = kx_json_dumps_py(content);
    char *mt = kx_json_dumps_py(metadata);
    json_t *row = json_pack("{s:s, s:s, s:s, s:b, s:s, s:s, s:s, s:s}", "message_id", "m-1",
                            "thread_id", "t-1", "type", "tool", "is_llm_message", 0, "content", ct,
                            "metadata", mt, "created_at", "2026-12-01T16:00:00.000000+00:00",
                            "updated_at", "2026-12-01T16:00:00.000000+00:00");
    char *out = kx_json_dumps_py(row);
    json_decref(row);
    free(ct);
    free(mt);
    return out;
}

static char *row_after(const json_t *content, const json_t *metadata)
{
    return events_row_json("m-1", "t-1", "tool", false, content, metadata,
                           "2026-12-01T16:00:00.000000+00:00", "2026-12-01T16:00:00.000000+00:00");
}

static char *jansson_compact(const json_t *v)
{
    return json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);
}

typedef char *(*print1)(const json_t *v);
typedef char *(*print2)(const json_t *a, const json_t *b);

static double time1(print1 f, const json_t *v, long n, size_t *len)
{
    double t0 = cpu_us();
    for (long i = 0; i < n; i++) {
        char *s = f(v);
        *len = s ? strlen(s) : 0;
        free(s);
    }
    return (cpu_us() - t0) / (double)n;
}

static double time2(print2 f, const json_t *a, const json_t *b, long n, size_t *len)
{
    double t0 = cpu_us();
    for (long i = 0; i < n; i++) {
        char *s = f(a, b);
        *len = s ? strlen(s) : 0;
        free(s);
    }
    return (cpu_us() - t0) / (double)n;
}

static void line(const char *what, double base, double ours, size_t len)
{
    printf("  %-44s %7zu B   jansson %8.2f us CPU   ours %8.2f us CPU   %.2f x\n", what, len, base,
           ours, ours > 0 ? base / ours : 0);
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? strtol(argv[1], NULL, 10) : 2000;
    if (n <= 0 || n > 100000000)
        n = 2000;
    json_t *tools = prompt_tools();
    json_t *thread = kx_th_sample_messages();
    const json_t *content = json_array_get(thread, KX_TH_SAMPLE_TOOL_RESULT);
    json_t *metadata = json_pack("{s:s, s:s, s:{s:b, s:s}}", "thread_run_id", "r-1", "tool_name",
                                 "view_tasks", "frontend_content", "success", 1, "output",
                                 "- [ ] write the report\n- [x] profile");
    size_t l1, l2;
    printf("bench_events: %ld iterations each, one thread\n", n);
    double b = time1(jansson_compact, tools, n, &l1);
    double o = time1(kx_json_dumps_compact, tools, n, &l2);
    line("compact print: the default tool schemas", b, o, l2);
    if (l1 != l2)
        printf("  MISMATCH: %zu vs %zu bytes\n", l1, l2);
    b = time1(jansson_compact, thread, n, &l1);
    o = time1(kx_json_dumps_compact, thread, n, &l2);
    line("compact print: the sample run's 4 messages", b, o, l2);
    b = time2(row_before, content, metadata, n, &l1);
    o = time2(row_after, content, metadata, n, &l2);
    line("row event: a tool result row (before / after)", b, o, l2);
    if (l1 != l2)
        printf("  MISMATCH: %zu vs %zu bytes\n", l1, l2);
    json_decref(tools);
    json_decref(thread);
    json_decref(metadata);
    return 0;
}
