/* metrics.c — the process-wide Prometheus registry: counters, gauges, histograms, and their
 * rendering in the text exposition format 0.0.4.
 *
 * Layout: a list of families (one per metric name: type, help) in registration order, each
 * with its series (one per label set) in registration order. A mutex guards registration and
 * rendering's walk of the lists; values are C11 atomics so updates never take the lock.
 * A histogram keeps one non-cumulative count per bucket (plus +Inf), made cumulative when
 * rendered; its sum is a double stored as bits and updated with compare-and-swap.
 * Registering a name again with another type is a programming error: it is logged and gives
 * NULL, and every update function treats NULL as "do nothing". */
#include "kx/metrics.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kx/log.h"

typedef enum metric_type {
    M_COUNTER,
    M_GAUGE,
    M_HISTOGRAM
} metric_type;

struct kx_counter {
    _Atomic uint64_t value;
};

struct kx_gauge {
    _Atomic int64_t value;
};

struct kx_histogram {
    double *bounds; /* nbounds upper bounds, ascending */
    size_t nbounds;
    _Atomic uint64_t *counts;  /* nbounds + 1 (the last is +Inf), non-cumulative */
    _Atomic uint64_t sum_bits; /* a double */
};

typedef struct series {
    struct series *next;
    char *labels;
    union {
        struct kx_counter counter;
        struct kx_gauge gauge;
        struct kx_histogram histogram;
    } u;
} series;

typedef struct family {
    struct family *next;
    char *name;
    char *help;
    metric_type type;
    series *first, *last;
} family;

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static family *g_first, *g_last;

const double kx_metrics_latency_buckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                             0.25,   0.5,   1,      2.5,   5,    10,    30,   60};
const size_t kx_metrics_latency_nbuckets =
    sizeof kx_metrics_latency_buckets / sizeof kx_metrics_latency_buckets[0];

static const char *type_name(metric_type t)
{
    return t == M_COUNTER ? "counter" : t == M_GAUGE ? "gauge" : "histogram";
}

/* ---- registration ---------------------------------------------------------------------- */

/* The series for (name, labels), created if new. Called with g_mu held. NULL on a type
 * clash or OOM. *created tells whether it is new. */
static series *lookup(const char *name, const char *labels, const char *help, metric_type type,
                      bool *created)
{
    *created = false;
    if (labels == NULL)
        labels = "";
    family *f = g_first;
    while (f != NULL && strcmp(f->name, name) != 0)
        f = f->next;
    if (f != NULL && f->type != type) {
        kx_error("metrics: %s registered as a %s, now asked for as a %s", name, type_name(f->type),
                 type_name(type));
        return NULL;
    }
    if (f == NULL) {
        f = calloc(1, sizeof *f);
        if (f == NULL)
            return NULL;
        f->name = strdup(name);
        f->help = strdup(help != NULL ? help : "");
        f->type = type;
        if (f->name == NULL || f->help == NULL) {
            free(f->name);
            free(f->help);
            free(f);
            return NULL;
        }
        if (g_last != NULL)
            g_last->next = f;
        else
            g_first = f;
        g_last = f;
    }
    for (series *s = f->first; s != NULL; s = s->next)
        if (strcmp(s->labels, labels) == 0)
            return s;
    series *s = calloc(1, sizeof *s);
    if (s == NULL)
        return NULL;
    s->labels = strdup(labels);
    if (s->labels == NULL) {
        free(s);
        return NULL;
    }
    if (f->last != NULL)
        f->last->next = s;
    else
        f->first = s;
    f->last = s;
    *created = true;
    return s;
}

kx_counter *kx_metrics_counter(const char *name, const char *labels, const char *help)
{
    bool created;
    pthread_mutex_lock(&g_mu);
    series *s = lookup(name, labels, help, M_COUNTER, &created);
    pthread_mutex_unlock(&g_mu);
    return s != NULL ? &s->u.counter : NULL;
}

kx_gauge *kx_metrics_gauge(const char *name, const char *labels, const char *help)
{
    bool created;
    pthread_mutex_lock(&g_mu);
    series *s = lookup(name, labels, help, M_GAUGE, &created);
    pthread_mutex_unlock(&g_mu);
    return s != NULL ? &s->u.gauge : NULL;
}

kx_histogram *kx_metrics_histogram(const char *name, const char *labels, const char *help,
                                   const double *buckets, size_t nbuckets)
{
    bool created;
    pthread_mutex_lock(&g_mu);
    series *s = lookup(name, labels, help, M_HISTOGRAM, &created);
    if (s != NULL && created) {
        /* Filled under the lock, before anyone else can see this series. */
        struct kx_histogram *h = &s->u.histogram;
        h->bounds = malloc((nbuckets + 1) * sizeof *h->bounds);
        h->counts = calloc(nbuckets + 1, sizeof *h->counts);
        if (h->bounds == NULL || h->counts == NULL) {
            /* Keep the series (it is linked) but make it bucket-less: only +Inf counts. */
            free(h->bounds);
            free(h->counts);
            h->bounds = NULL;
            h->counts = calloc(1, sizeof *h->counts);
            h->nbounds = 0;
        } else {
            memcpy(h->bounds, buckets, nbuckets * sizeof *buckets);
            h->nbounds = nbuckets;
        }
    }
    pthread_mutex_unlock(&g_mu);
    return s != NULL && s->u.histogram.counts != NULL ? &s->u.histogram : NULL;
}

/* ---- updates --------------------------------------------------------------------------- */

void kx_counter_add(kx_counter *c, uint64_t n)
{
    if (c != NULL)
        atomic_fetch_add_explicit(&c->value, n, memory_order_relaxed);
}

void kx_gauge_set(kx_gauge *g, int64_t v)
{
    if (g != NULL)
        atomic_store_explicit(&g->value, v, memory_order_relaxed);
}

void kx_gauge_add(kx_gauge *g, int64_t delta)
{
    if (g != NULL)
        atomic_fetch_add_explicit(&g->value, delta, memory_order_relaxed);
}

static uint64_t double_bits(double d)
{
    uint64_t u;
    memcpy(&u, &d, sizeof u);
    return u;
}

static double bits_double(uint64_t u)
{
    double d;
    memcpy(&d, &u, sizeof d);
    return d;
}

void kx_histogram_observe(kx_histogram *h, double v)
{
    if (h == NULL)
        return;
    size_t i = 0;
    while (i < h->nbounds && v > h->bounds[i])
        i++;
    atomic_fetch_add_explicit(&h->counts[i], 1, memory_order_relaxed);
    uint64_t old = atomic_load_explicit(&h->sum_bits, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(&h->sum_bits, &old,
                                                  double_bits(bits_double(old) + v),
                                                  memory_order_relaxed, memory_order_relaxed)) {
    }
}

/* ---- rendering ------------------------------------------------------------------------- */

typedef struct out {
    char *p;
    size_t len, cap;
    bool oom;
} out;

static void emit(out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void emit(out *o, const char *fmt, ...)
{
    if (o->oom)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(o->p + o->len, o->cap - o->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            o->oom = true;
            return;
        }
        if ((size_t)n < o->cap - o->len) {
            o->len += (size_t)n;
            return;
        }
        size_t cap = o->cap * 2 + (size_t)n;
        char *np = realloc(o->p, cap);
        if (np == NULL) {
            o->oom = true;
            return;
        }
        o->p = np;
        o->cap = cap;
    }
}

/* The shortest %g text that reads back as v (Prometheus accepts any float syntax). */
static void fmt_double(char *buf, size_t len, double v)
{
    for (int prec = 6; prec <= 17; prec++) {
        snprintf(buf, len, "%.*g", prec, v);
        if (strtod(buf, NULL) == v)
            return;
    }
}

/* HELP text escaping: backslash and newline. */
static void emit_help(out *o, const family *f)
{
    emit(o, "# HELP %s ", f->name);
    for (const char *c = f->help; *c != '\0'; c++) {
        if (*c == '\\')
            emit(o, "\\\\");
        else if (*c == '\n')
            emit(o, "\\n");
        else
            emit(o, "%c", *c);
    }
    emit(o, "\n# TYPE %s %s\n", f->name, type_name(f->type));
}

/* name{labels} or name{labels,extra} or name{extra} or name. */
static void emit_name(out *o, const char *name, const char *suffix, const char *labels,
                      const char *extra)
{
    bool has_labels = labels[0] != '\0', has_extra = extra != NULL && extra[0] != '\0';
    emit(o, "%s%s", name, suffix);
    if (has_labels || has_extra)
        emit(o, "{%s%s%s}", has_labels ? labels : "", has_labels && has_extra ? "," : "",
             has_extra ? extra : "");
}

static void emit_histogram(out *o, const family *f, const series *s)
{
    const struct kx_histogram *h = &s->u.histogram;
    uint64_t cumulative = 0;
    char le[64], num[40];
    for (size_t i = 0; i <= h->nbounds; i++) {
        cumulative += atomic_load_explicit(&h->counts[i], memory_order_relaxed);
        if (i < h->nbounds) {
            fmt_double(num, sizeof num, h->bounds[i]);
            snprintf(le, sizeof le, "le=\"%s\"", num);
        } else {
            snprintf(le, sizeof le, "le=\"+Inf\"");
        }
        emit_name(o, f->name, "_bucket", s->labels, le);
        emit(o, " %llu\n", (unsigned long long)cumulative);
    }
    fmt_double(num, sizeof num, bits_double(atomic_load(&h->sum_bits)));
    emit_name(o, f->name, "_sum", s->labels, NULL);
    emit(o, " %s\n", num);
    /* _count equals the +Inf bucket, as Prometheus expects (both from the same snapshot). */
    emit_name(o, f->name, "_count", s->labels, NULL);
    emit(o, " %llu\n", (unsigned long long)cumulative);
}

char *kx_metrics_render(size_t *len)
{
    out o = {.cap = 4096};
    o.p = malloc(o.cap);
    if (o.p == NULL)
        return NULL;
    o.p[0] = '\0';
    pthread_mutex_lock(&g_mu);
    for (const family *f = g_first; f != NULL; f = f->next) {
        emit_help(&o, f);
        for (const series *s = f->first; s != NULL; s = s->next) {
            switch (f->type) {
            case M_COUNTER:
                emit_name(&o, f->name, "", s->labels, NULL);
                emit(&o, " %llu\n", (unsigned long long)atomic_load(&s->u.counter.value));
                break;
            case M_GAUGE:
                emit_name(&o, f->name, "", s->labels, NULL);
                emit(&o, " %lld\n", (long long)atomic_load(&s->u.gauge.value));
                break;
            case M_HISTOGRAM: emit_histogram(&o, f, s); break;
            }
        }
    }
    pthread_mutex_unlock(&g_mu);
    if (o.oom) {
        free(o.p);
        return NULL;
    }
    if (len != NULL)
        *len = o.len;
    return o.p;
}
