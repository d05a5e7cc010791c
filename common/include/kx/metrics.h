/* kx/metrics.h — Prometheus metrics: counters, gauges, histograms in one process-wide registry.
 *
 * The registry is created on first use and lives until exit (the one piece of global state
 * besides configuration). Metric handles are never freed. Registration is idempotent: the same
 * (name, labels) returns the same handle. Updates are lock-free atomics; thread-safe.
 * labels is "" or a Prometheus label list without braces, e.g. "status=\"completed\"". */
#ifndef KX_METRICS_H
#define KX_METRICS_H

#include <stddef.h>
#include <stdint.h>

typedef struct kx_counter kx_counter;
typedef struct kx_gauge kx_gauge;
typedef struct kx_histogram kx_histogram;

kx_counter *kx_metrics_counter(const char *name, const char *labels, const char *help);
kx_gauge *kx_metrics_gauge(const char *name, const char *labels, const char *help);
/* buckets: upper bounds in ascending order (seconds for latencies); copied. */
kx_histogram *kx_metrics_histogram(const char *name, const char *labels, const char *help,
                                   const double *buckets, size_t nbuckets);

void kx_counter_add(kx_counter *c, uint64_t n);
void kx_gauge_set(kx_gauge *g, int64_t v);
void kx_gauge_add(kx_gauge *g, int64_t delta);
void kx_histogram_observe(kx_histogram *h, double v);

/* Default latency buckets in seconds (0.5 ms .. 60 s). */
extern const double kx_metrics_latency_buckets[];
extern const size_t kx_metrics_latency_nbuckets;

/* The whole registry in Prometheus text exposition format 0.0.4; malloc'd, caller frees. */
char *kx_metrics_render(size_t *len);

#endif
