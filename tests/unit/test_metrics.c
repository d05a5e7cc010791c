/* test_metrics.c — the Prometheus registry: exact text exposition (HELP/TYPE once per name,
 * labels, cumulative histogram buckets with _sum and _count), idempotent registration, type
 * clashes, and lock-free updates from several threads. The registry is process-wide, so the
 * exact-text test runs first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kx/metrics.h"

static void test_render_exact_text(void **state)
{
    kx_counter *ok =
        kx_metrics_counter("kx_test_requests_total", "status=\"ok\"", "Requests handled.");
    kx_counter *err =
        kx_metrics_counter("kx_test_requests_total", "status=\"error\"", "Requests handled.");
    assert_non_null(ok);
    assert_non_null(err);
    assert_ptr_not_equal(ok, err);
    /* Registering again gives the same handle. */
    assert_ptr_equal(kx_metrics_counter("kx_test_requests_total", "status=\"ok\"", "x"), ok);
    kx_counter_add(ok, 2);
    kx_counter_add(ok, 1);
    kx_counter_add(err, 1);

    kx_gauge *g = kx_metrics_gauge("kx_test_inflight", "", "In flight.\nSecond \\ line.");
    kx_gauge_set(g, 5);
    kx_gauge_add(g, -7);

    static const double buckets[] = {0.3, 1};
    kx_histogram *h =
        kx_metrics_histogram("kx_test_latency_seconds", "route=\"/a\"", "Latency.", buckets, 2);
    kx_histogram *bare = kx_metrics_histogram("kx_test_size_bytes", "", "Sizes.", buckets, 2);
    assert_non_null(h);
    kx_histogram_observe(h, 0.25);
    kx_histogram_observe(h, 0.5);
    kx_histogram_observe(h, 1); /* on a bound: counts in le="1" */
    kx_histogram_observe(h, 4);
    kx_histogram_observe(bare, 2);

    size_t len = 0;
    char *text = kx_metrics_render(&len);
    assert_non_null(text);
    assert_int_equal(len, strlen(text));
    assert_string_equal(text,
                        "# HELP kx_test_requests_total Requests handled.\n"
                        "# TYPE kx_test_requests_total counter\n"
                        "kx_test_requests_total{status=\"ok\"} 3\n"
                        "kx_test_requests_total{status=\"error\"} 1\n"
                        "# HELP kx_test_inflight In flight.\\nSecond \\\\ line.\n"
                        "# TYPE kx_test_inflight gauge\n"
                        "kx_test_inflight -2\n"
                        "# HELP kx_test_latency_seconds Latency.\n"
                        "# TYPE kx_test_latency_seconds histogram\n"
                        "kx_test_latency_seconds_bucket{route=\"/a\",le=\"0.3\"} 1\n"
                        "kx_test_latency_seconds_bucket{route=\"/a\",le=\"1\"} 3\n"
                        "kx_test_latency_seconds_bucket{route=\"/a\",le=\"+Inf\"} 4\n"
                        "kx_test_latency_seconds_sum{route=\"/a\"} 5.75\n"
                        "kx_test_latency_seconds_count{route=\"/a\"} 4\n"
                        "# HELP kx_test_size_bytes Sizes.\n"
                        "# TYPE kx_test_size_bytes histogram\n"
                        "kx_test_size_bytes_bucket{le=\"0.3\"} 0\n"
                        "kx_test_size_bytes_bucket{le=\"1\"} 0\n"
                        "kx_test_size_bytes_bucket{le=\"+Inf\"} 1\n"
                        "kx_test_size_bytes_sum 2\n"
                        "kx_test_size_bytes_count 1\n");
    free(text);
}

static void test_type_clash_gives_null_and_updates_ignore_null(void **state)
{
    assert_non_null(kx_metrics_counter("kx_test_clash", "", "A counter."));
    assert_null(kx_metrics_gauge("kx_test_clash", "", "Now a gauge?"));
    assert_null(kx_metrics_histogram("kx_test_clash", "a=\"b\"", "Or a histogram?",
                                     kx_metrics_latency_buckets, kx_metrics_latency_nbuckets));
    kx_counter_add(NULL, 1);
    kx_gauge_set(NULL, 1);
    kx_gauge_add(NULL, 1);
    kx_histogram_observe(NULL, 1);
    char *text = kx_metrics_render(NULL);
    assert_non_null(strstr(text, "# TYPE kx_test_clash counter\nkx_test_clash 0\n"));
    assert_null(strstr(text, "Now a gauge?"));
    free(text);
}

static void test_default_latency_buckets(void **state)
{
    assert_int_equal(kx_metrics_latency_nbuckets, 16);
    assert_true(kx_metrics_latency_buckets[0] == 0.0005);
    assert_true(kx_metrics_latency_buckets[kx_metrics_latency_nbuckets - 1] == 60);
    for (size_t i = 1; i < kx_metrics_latency_nbuckets; i++)
        assert_true(kx_metrics_latency_buckets[i] > kx_metrics_latency_buckets[i - 1]);
    kx_histogram *h =
        kx_metrics_histogram("kx_test_default_seconds", "", "Default buckets.",
                             kx_metrics_latency_buckets, kx_metrics_latency_nbuckets);
    kx_histogram_observe(h, 0.0007);
    char *text = kx_metrics_render(NULL);
    assert_non_null(strstr(text,
                           "kx_test_default_seconds_bucket{le=\"0.0005\"} 0\n"
                           "kx_test_default_seconds_bucket{le=\"0.001\"} 1\n"));
    assert_non_null(strstr(text, "kx_test_default_seconds_bucket{le=\"60\"} 1\n"));
    free(text);
}

#define THREADS 4
#define PER_THREAD 200000

static void *hammer(void *arg)
{
    /* Registration races too: every thread registers the same metrics. */
    kx_counter *c = kx_metrics_counter("kx_test_parallel_total", "", "Parallel adds.");
    kx_gauge *g = kx_metrics_gauge("kx_test_parallel_gauge", "", "Parallel gauge.");
    kx_histogram *h =
        kx_metrics_histogram("kx_test_parallel_seconds", "", "Parallel.",
                             kx_metrics_latency_buckets, kx_metrics_latency_nbuckets);
    for (int i = 0; i < PER_THREAD; i++) {
        kx_counter_add(c, 1);
        kx_gauge_add(g, (i & 1) ? -1 : 2);
        kx_histogram_observe(h, 0.5);
    }
    return NULL;
}

static void test_concurrent_updates_are_exact(void **state)
{
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, hammer, NULL), 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    char *text = kx_metrics_render(NULL);
    char want[128];
    snprintf(want, sizeof want, "\nkx_test_parallel_total %d\n", THREADS * PER_THREAD);
    assert_non_null(strstr(text, want));
    snprintf(want, sizeof want, "\nkx_test_parallel_gauge %d\n", THREADS * PER_THREAD / 2);
    assert_non_null(strstr(text, want));
    snprintf(want, sizeof want, "\nkx_test_parallel_seconds_count %d\n", THREADS * PER_THREAD);
    assert_non_null(strstr(text, want));
    snprintf(want, sizeof want, "\nkx_test_parallel_seconds_sum %d\n", THREADS * PER_THREAD / 2);
    assert_non_null(strstr(text, want));
    /* HELP/TYPE once per name even though four threads registered it. */
    const char *first = strstr(text, "# TYPE kx_test_parallel_total");
    assert_non_null(first);
    assert_null(strstr(first + 1, "# TYPE kx_test_parallel_total"));
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_render_exact_text),
        cmocka_unit_test(test_type_clash_gives_null_and_updates_ignore_null),
        cmocka_unit_test(test_default_latency_buckets),
        cmocka_unit_test(test_concurrent_updates_are_exact),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
