/* breakers.c — one circuit breaker per dependency of the tools: "sandbox" (the
 * sandbox-broker), "mcp:<server>" (each MCP server, through the mcp-proxy), "web:<api>".
 * Each is a kx_breaker (kx/breaker.h) with a fixed open period: it opens after
 * KX_TOOL_BREAKER_FAILURES (5) failures or timeouts in a row, refuses calls at once while open
 * ("unavailable"), lets one probe through after KX_TOOL_BREAKER_OPEN_MS (60 s), and closes on
 * its success. State in /metrics: kx_tool_breaker_open{dependency} (1 open, 0 closed) and
 * kx_tool_breaker_rejected_total{dependency}. Loop thread only. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "executor.h"
#include "kx/breaker.h"
#include "kx/log.h"
#include "kx/metrics.h"

#define MAX_DEPS 256 /* MCP servers are many but bounded: beyond, new ones share "other" */

typedef struct dep_breaker {
    char name[96];
    kx_breaker b;
    bool was_open;
    bool probe_out; /* half-open: the one probe is in flight; others are refused */
} dep_breaker;

typedef struct te_breakers {
    int failures;
    int64_t open_ms;
    size_t n;
    dep_breaker deps[MAX_DEPS];
} te_breakers;

struct te_breakers *te_breakers_new(int failures, int64_t open_ms)
{
    te_breakers *b = calloc(1, sizeof *b);
    if (b != NULL) {
        b->failures = failures;
        b->open_ms = open_ms;
    }
    return b;
}

void te_breakers_free(struct te_breakers *b)
{
    free(b);
}

static void publish_state(dep_breaker *d, bool open)
{
    char labels[160];
    snprintf(labels, sizeof labels, "dependency=\"%s\"", d->name);
    kx_gauge_set(kx_metrics_gauge("kx_tool_breaker_open", labels,
                                  "1 while the circuit breaker of a tool dependency is open"),
                 open ? 1 : 0);
    if (open != d->was_open)
        kx_log(open ? KX_LOG_WARN : KX_LOG_INFO, NULL, NULL,
               "tool-executor: circuit breaker of %s %s", d->name, open ? "opened" : "closed");
    d->was_open = open;
}

static dep_breaker *find(te_breakers *b, const char *dep)
{
    for (size_t i = 0; i < b->n; i++) {
        if (strcmp(b->deps[i].name, dep) == 0)
            return &b->deps[i];
    }
    if (b->n == MAX_DEPS)
        dep = "other";
    for (size_t i = 0; i < b->n; i++) {
        if (strcmp(b->deps[i].name, dep) == 0)
            return &b->deps[i];
    }
    if (b->n == MAX_DEPS)
        return &b->deps[MAX_DEPS - 1];
    dep_breaker *d = &b->deps[b->n++];
    snprintf(d->name, sizeof d->name, "%s", dep);
    kx_breaker_init(&d->b, b->failures, b->open_ms, b->open_ms);
    publish_state(d, false);
    return d;
}

bool te_breaker_allow(te_executor *ex, const char *dep, char *why, size_t whylen)
{
    dep_breaker *d = find(ex->breakers, dep);
    int64_t retry_in = 0;
    int64_t now = kx_mono_ms();
    bool half_open = d->b.open_until != 0 && !kx_breaker_open(&d->b, now);
    if (half_open && d->probe_out) {
        snprintf(why, whylen,
                 "%s is unavailable: its circuit breaker is half-open and its one probe is "
                 "still running",
                 d->name);
        return false;
    }
    if (kx_breaker_allow(&d->b, now, &retry_in)) {
        d->probe_out = half_open;
        return true;
    }
    snprintf(why, whylen,
             "%s is unavailable: its circuit breaker is open after %d failures in a row; "
             "the next try in %lld s",
             d->name, d->b.failures, (long long)((retry_in + 999) / 1000));
    char labels[160];
    snprintf(labels, sizeof labels, "dependency=\"%s\"", d->name);
    kx_counter_add(kx_metrics_counter("kx_tool_breaker_rejected_total", labels,
                                      "Tool calls refused at once by an open circuit breaker"),
                   1);
    return false;
}

void te_breaker_record(te_executor *ex, const char *dep, bool ok)
{
    dep_breaker *d = find(ex->breakers, dep);
    int64_t now = kx_mono_ms();
    d->probe_out = false;
    if (ok)
        kx_breaker_success(&d->b);
    else
        kx_breaker_failure(&d->b, now);
    publish_state(d, kx_breaker_open(&d->b, now));
}

void te_breaker_release(te_executor *ex, const char *dep)
{
    find(ex->breakers, dep)->probe_out = false;
}
