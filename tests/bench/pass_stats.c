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

double kx_ps_sign_test(int above, int n)
{
    if (n <= 0 || above < 0 || above > n)
        return 1.0;
    int k = above < n - above ? above : n - above; /* the smaller side */
    /* P(X <= k) for X ~ Binomial(n, 1/2), term by term: C(n, i) / 2^n */
    double term = 1.0, tail = 0.0;
    for (int i = 0; i < n; i++)
        term /= 2.0;
    for (int i = 0; i <= k; i++) {
        tail += term;
        term = term * (double)(n - i) / (double)(i + 1);
    }
    double p = 2.0 * tail;
    return p > 1.0 ? 1.0 : p;
}

int kx_ps_ratio_verdict(char *buf, size_t len, const char *figure, bool higher_is_better,
                        const double *v, int n)
{
    kx_ps_summary r = kx_ps_summarize(v, n);
    int above = 0, below = 0;
    for (int i = 0; i < r.n; i++) {
        if (v[i] > 1.0)
            above++;
        else if (v[i] < 1.0)
            below++;
    }
    double p = kx_ps_sign_test(above, above + below);
    int verdict = 0;
    if (p < 0.05)
        verdict = (above > below) == higher_is_better ? 1 : -1;
    const char *what = r.n == 0 ? "no pairs"
        : verdict > 0           ? "the candidate is better"
        : verdict < 0           ? "the candidate is worse"
                                : "within the noise";
    snprintf(buf, len,
             "%s candidate/baseline: median ratio %.3f (p25 %.3f, p75 %.3f, min %.3f, max %.3f) "
             "over %d pair%s, %d above 1 and %d below (sign test p = %.2f) — %s",
             figure, r.median, r.p25, r.p75, r.min, r.max, r.n, r.n == 1 ? "" : "s", above, below,
             p, what);
    return verdict;
}
