/* tests/bench/pass_stats.h — statistics over the passes of a repeated benchmark (bench_run
 * --passes): quartiles of a figure, and the verdicts printed for a goal ("500 runs/s") and for
 * a baseline/candidate comparison, worded so that they say how much the noise allows.
 *
 * Pure functions on caller-owned arrays: nothing is allocated or kept. */
#ifndef KX_BENCH_PASS_STATS_H
#define KX_BENCH_PASS_STATS_H

#include <stdbool.h>
#include <stddef.h>

/* The spread of one figure over n passes. */
typedef struct kx_ps_summary {
    int n;
    double median, p25, p75, min, max;
} kx_ps_summary;

/* Quartiles (linear interpolation between the sorted values: with 9 passes p25 is the 3rd
 * smallest, p75 the 7th), min and max of v[0..n-1]; v is not changed. n <= 0 gives n = 0 and
 * zeros. n is capped at KX_PS_MAX. */
#define KX_PS_MAX 1000
kx_ps_summary kx_ps_summarize(const double *v, int n);

/* The value at quantile q (0..1) of v[0..n-1] (as kx_ps_summarize); 0 when n <= 0. */
double kx_ps_quantile(const double *v, int n, double q);

/* A goal for a figure where more is better (runs/s), as one line into buf, e.g.
 * "goal 500 runs/s: median 463, p25 441, p75 512 over 9 passes — not met by the median (p75
 * reaches it: within the noise)". Returns whether the median meets the goal. */
bool kx_ps_goal_verdict(char *buf, size_t len, double goal, const char *unit,
                        const kx_ps_summary *s);

/* A comparison from the per-pair ratios candidate/baseline of a figure (ratio > 1 means the
 * candidate's figure is larger), as one line into buf, e.g. "runs/s candidate/baseline: median
 * ratio 1.04 (p25 0.98, p75 1.09) over 9 pairs — within the noise". higher_is_better names what
 * "better" means for the figure (runs/s: true; CPU ms/run: false). Returns -1 (worse), 0 (within
 * the noise: the middle half of the ratios straddles 1) or 1 (better). */
int kx_ps_ratio_verdict(char *buf, size_t len, const char *figure, bool higher_is_better,
                        const kx_ps_summary *ratios);

#endif
