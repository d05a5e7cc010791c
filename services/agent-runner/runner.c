/* runner.c — the agent-runner instance and its table of held runs (see runner.h). The table is
 * a chained hash by run id; runs that ended wait in a graveyard list until a zero-delay timer
 * frees them, so the callback that ended a run can still read it until it returns. */
#include "runner.h"
#include "tool_schemas.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kx/log.h"
#include "kx/metrics.h"
#include "rdb.h"
#include "run.h"
#include "store.h"

static size_t hash_id(const char *s, size_t nbuckets)
{
    size_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ull;
    }
    return h & (nbuckets - 1);
}

kx_err runner_new(const runner_config *cfg, kx_svc *svc, kx_curlm *curlm, runner **out)
{
    *out = NULL;
    runner *r = calloc(1, sizeof *r);
    if (r == NULL)
        return KX_ERR_NOMEM;
    r->cfg = cfg;
    r->svc = svc;
    r->loop = svc->loop;
    r->bus = svc->bus;
    r->curlm = curlm;
    r->instance_id = svc->instance_id;
    atomic_init(&r->held, 0);
    atomic_init(&r->reserved, 0);
    atomic_init(&r->db_ok, true);
    r->nbuckets = 64;
    while (r->nbuckets < (size_t)cfg->capacity * 2 && r->nbuckets < (1u << 20))
        r->nbuckets *= 2;
    r->buckets = calloc(r->nbuckets, sizeof *r->buckets);
    if (r->buckets == NULL) {
        free(r);
        return KX_ERR_NOMEM;
    }
    kx_err err = rdb_open(r);
    if (err == KX_OK)
        err = kx_bus_async_new(r->bus, r->loop, &r->async);
    if (err == KX_OK)
        tool_schemas_init(r->async); /* the model's tools come from the executor */
    if (err == KX_OK)
        err = llm_client_new(cfg, r->loop, curlm, &r->llm);
    if (err == KX_OK)
        err = publisher_new(r->bus, r->loop, cfg->events_max_pending, cfg->events_ack_wait_ms,
                            cfg->events_buffered == 1, &r->events);
    if (err != KX_OK) {
        kx_error("runner: could not set up (%s)", kx_err_str(err));
        runner_free(r);
        return err;
    }
    *out = r;
    return KX_OK;
}

static void held_gauge(runner *r)
{
    kx_gauge_set(kx_metrics_gauge("kx_runner_runs_held", "", "Runs this runner holds now"),
                 (int64_t)r->nheld);
}

run *runner_find(runner *r, const char *run_id)
{
    for (run *x = r->buckets[hash_id(run_id, r->nbuckets)]; x; x = x->hnext)
        if (strcmp(x->id, run_id) == 0)
            return x;
    return NULL;
}

void runner_hold(runner *r, run *x)
{
    size_t b = hash_id(x->id, r->nbuckets);
    x->hnext = r->buckets[b];
    r->buckets[b] = x;
    r->nheld++;
    atomic_store(&r->held, (int)r->nheld);
    held_gauge(r);
}

static void bury(kx_loop *loop, void *arg)
{
    runner *r = arg;
    r->bury_timer = NULL;
    run *g = r->graveyard;
    r->graveyard = NULL;
    while (g) {
        run *next = g->hnext;
        run_free(g);
        g = next;
    }
}

void runner_release(runner *r, run *x)
{
    run **pp = &r->buckets[hash_id(x->id, r->nbuckets)];
    for (; *pp; pp = &(*pp)->hnext) {
        if (*pp == x) {
            *pp = x->hnext;
            r->nheld--;
            atomic_store(&r->held, (int)r->nheld);
            break;
        }
    }
    held_gauge(r);
    x->hnext = r->graveyard;
    r->graveyard = x;
    if (r->bury_timer == NULL)
        r->bury_timer = kx_loop_timer(r->loop, 0, bury, r);
    if (r->draining && r->nheld == 0) {
        kx_info("runner: drained: no run left; exiting");
        kx_svc_exit(r->svc);
    }
}

int runner_free_slots(runner *r)
{
    if (kx_svc_draining(r->svc))
        return 0;
    int free_slots = (int)r->cfg->capacity - atomic_load(&r->held) - atomic_load(&r->reserved);
    return free_slots > 0 ? free_slots : 0;
}

static void handback_one(run *x, void *arg)
{
    run_handback(x, arg);
}

/* The drain's deadline (a little before kx_svc's own): what is still held goes back. */
static void on_drain_deadline(kx_loop *loop, void *arg)
{
    runner *r = arg;
    r->drain_timer = NULL;
    if (r->nheld == 0)
        return;
    kx_warn("runner: drain: %zu run(s) not finished in time; handing them back to the queue",
            r->nheld);
    runner_each(r, handback_one,
                "handed back: the agent-runner shut down before the run "
                "finished");
}

void runner_drain(runner *r)
{
    r->draining = true;
    kx_info("runner: draining: %zu run(s) held; taking no more", r->nheld);
    if (r->nheld == 0) {
        kx_svc_exit(r->svc);
        return;
    }
    int64_t t = r->cfg->drain_timeout_ms > 1000 ? r->cfg->drain_timeout_ms - 500
                                                : r->cfg->drain_timeout_ms / 2;
    r->drain_timer = kx_loop_timer(r->loop, t, on_drain_deadline, r);
}

void runner_each(runner *r, runner_each_fn fn, void *arg)
{
    for (size_t b = 0; b < r->nbuckets; b++) {
        run *x = r->buckets[b];
        while (x) {
            run *next = x->hnext; /* fn may release x */
            fn(x, arg);
            x = next;
        }
    }
}

struct runner_parked {
    char id[40];
    int64_t epoch;
};

#define PARKED_RETRY_MS 500
#define PARKED_WHY "handed back: Postgres was unreachable while the run went on"

/* Every parked run gets a hand-back job; one round at a time (a job that finds Postgres still
 * unreachable parks its run again). */
static void retry_parked(kx_loop *loop, void *arg)
{
    runner *r = arg;
    r->parked_timer = NULL;
    if (r->parked_inflight > 0) { /* the last round is not over */
        r->parked_timer = kx_loop_timer(r->loop, PARKED_RETRY_MS, retry_parked, r);
        return;
    }
    size_t n = r->nparked;
    r->nparked = 0;
    for (size_t i = 0; i < n; i++)
        rdb_handback(r, r->parked[i].id, r->parked[i].epoch, PARKED_WHY);
}

void runner_handback_later(runner *r, const char *run_id, int64_t epoch)
{
    if (r->nparked == r->capparked) {
        size_t cap = r->capparked ? r->capparked * 2 : 16;
        struct runner_parked *np = realloc(r->parked, cap * sizeof *np);
        if (np == NULL) {
            kx_log(KX_LOG_ERROR, run_id, NULL,
                   "runner: out of memory parking run %s; the "
                   "reaper will not see it while this runner lives",
                   run_id);
            return;
        }
        r->parked = np;
        r->capparked = cap;
    }
    snprintf(r->parked[r->nparked].id, sizeof r->parked[r->nparked].id, "%s", run_id);
    r->parked[r->nparked].epoch = epoch;
    r->nparked++;
    if (r->parked_timer == NULL)
        r->parked_timer = kx_loop_timer(r->loop, PARKED_RETRY_MS, retry_parked, r);
}

void runner_shutdown(runner *r, const char *why)
{
    kx_timer_cancel(r->drain_timer);
    r->drain_timer = NULL;
    r->loop_over = true;
    if (r->nheld > 0) {
        kx_warn("runner: exiting with %zu run(s) still held; handing them back", r->nheld);
        r->draining = false; /* the loop is over: nothing left to signal */
        runner_each(r, handback_one, (void *)why);
    }
    rdb_flush(r, 3000); /* what is queued (writes, hand-backs) reaches Postgres */
}

static void free_one(run *x, void *arg)
{
    run_free(x);
}

void runner_free(runner *r)
{
    if (r == NULL)
        return;
    if (r->buckets != NULL)
        runner_each(r, free_one, NULL); /* detaches their batches in flight (run_ops_clear) */
    bury(r->loop, r);
    rdb_close(r); /* completions still to come only release what they hold */
    kx_timer_cancel(r->bury_timer);
    r->bury_timer = NULL;
    kx_timer_cancel(r->parked_timer);
    if (r->nparked > 0)
        kx_warn("runner: %zu parked run(s) not handed back (Postgres unreachable); the reaper "
                "takes them once this runner's lease expires",
                r->nparked);
    free(r->parked);
    free(r->buckets);
    llm_client_free(r->llm);
    publisher_free(r->events, 2000);
    kx_bus_async_free(r->async);
    tool_schemas_free();
    free(r);
}
