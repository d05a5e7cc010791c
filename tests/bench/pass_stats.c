/* tests/bench/pass_stats.c — quartiles and verdicts over the passes of a benchmark
 * (pass_stats.h). */
#include "pass_stats.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The quantile q of sorted[0..n-1], n > 0. */
static double sorted_quantile(const double *sorted, int n, double q)
{
    if (q <= 0)
        return sorted[0];
    if (q >= 1)
        return sorted[n - 1];
    double pos = q * (double)(n - 1);
    int lo = (int)pos;
    double frac = pos - (double)lo;
    if (lo + 1 >= n)
        return sorted[n - 1];
    return sorted[lo] + frac * (sorted[lo + 1] - sorted[lo]);
}

kx_ps_summary kx_ps_summarize(const double *v, int n)
{
    kx_ps_summary s = {0};
    if (v == NULL || n <= 0)
        return s;
    if (n > KX_PS_MAX)
        n = KX_PS_MAX;
    double sorted[KX_PS_MAX];
    memcpy(sorted, v, (size_t)n * sizeof *sorted);
    qsort(sorted, (size_t)n, sizeof *sorted, cmp_double);
    s.n = n;
    s.min = sorted[0];
    s.max = sorted[n - 1];
    s.median = sorted_quantile(sorted, n, 0.5);
    s.p25 = sorted_quantile(sorted, n, 0.25);
    s.p75 = sorted_quantile(sorted, n, 0.75);
    return s;
}

double kx_ps_quantile(const double *v, int n, double q)
{
    if (v == NULL || n <= 0)
        return 0;
    if (n > KX_PS_MAX)
        n = KX_PS_MAX;
    double sorted[KX_PS_MAX];
    memcpy(sorted, v, (size_t)n * sizeof *sorted);
    qsort(sorted, (size_t)n, sizeof *sorted, cmp_double);
    return sorted_quantile(sorted, n, q);
}

bool kx_ps_goal_verdict(char *buf, size_t len, double goal, const char *unit,
                        const kx_ps_summary *s)
{
    const char *what;
    bool met = s->n > 0 && s->median >= goal;
    if (s->n == 0)
        what = "no passes";
    else if (s->p25 >= goal)
        what = "met (even p25 reaches it)";
    else if (met)
        what = "met by the median, not by p25 (marginal: within the noise)";
    else if (s->p75 >= goal)
        what = "not met by the median (p75 reaches it: within the noise)";
    else
        what = "not met (even p75 is below)";
    snprintf(buf, len,
             "goal %.0f %s: median %.0f, p25 %.0f, p75 %.0f (min %.0f, max %.0f) over %d "
             "pass%s — %s",
             goal, unit, s->median, s->p25, s->p75, s->min, s->max, s->n, s->n == 1 ? "" : "es",
             what);
    return met;
}

int kx_ps_ratio_verdict(char *buf, size_t len, const char *figure, bool higher_is_better,
                        const kx_ps_summary *r)
{
    int verdict = 0;
    const char *what = "no pairs";
    if (r->n > 0) {
        if (r->p25 > 1.0)
            verdict = higher_is_better ? 1 : -1;
        else if (r->p75 < 1.0)
            verdict = higher_is_better ? -1 : 1;
        what = verdict > 0 ? "the candidate is better (the middle half of the ratios is past 1)"
            : verdict < 0  ? "the candidate is worse (the middle half of the ratios is past 1)"
                           : "within the noise (the middle half of the ratios straddles 1)";
    }
    snprintf(buf, len,
             "%s candidate/baseline: median ratio %.3f (p25 %.3f, p75 %.3f, min %.3f, "
             "max %.3f) over %d pair%s — %s",
             figure, r->median, r->p25, r->p75, r->min, r->max, r->n, r->n == 1 ? "" : "s", what);
    return verdict;
}
