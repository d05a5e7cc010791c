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

/* The two-sided p-value of an exact sign test: the chance of a split at least as uneven as
 * `above` of n (pairs whose ratio is not exactly 1) if either side of 1 were equally likely.
 * 1 when n <= 0. */
double kx_ps_sign_test(int above, int n);

/* A comparison from the per-pair ratios candidate/baseline of a figure (ratio > 1: the
 * candidate's figure is larger; v[0..n-1], one per pair of passes next to each other in time),
 * as one line into buf, e.g. "runs/s candidate/baseline: median ratio 1.045 (p25 0.846, p75
 * 1.182) over 9 pairs, 6 above 1 and 3 below (sign test p = 0.51) — within the noise". A
 * difference is called only when the sign test gives p < 0.05 (with 9 pairs: 8 of them on one
 * side; with fewer than 6 pairs never). higher_is_better names what "better" means for the figure
 * (runs/s: true; CPU ms/run: false). Returns -1 (worse), 0 (within the noise) or 1 (better). */
int kx_ps_ratio_verdict(char *buf, size_t len, const char *figure, bool higher_is_better,
                        const double *v, int n);

#endif
