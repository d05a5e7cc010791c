/* heartbeat.c — the runner's heartbeat timer (see heartbeat.h). Also refreshes the runner's
 * view of Postgres reachability for /readyz, since it runs on the loop thread that owns the
 * connection. */
#include "heartbeat.h"

#include <stdlib.h>

#include "kx/log.h"
#include "kx/pb.h"
#include "run.h"

struct heartbeat {
    runner *r;
    kx_timer *timer;
    Kx__V1__RunLease *leases;     /* scratch, sized to the capacity */
    Kx__V1__RunLease **lease_ptrs;
    size_t n, cap;
    bool warned;                  /* publish failures are logged once until one succeeds */
};

static void collect(run *x, void *arg)
{
    heartbeat *h = arg;
    if (h->n >= h->cap)
        return;
    Kx__V1__RunLease *l = &h->leases[h->n];
    kx__v1__run_lease__init(l);
    l->run_id = x->id;
    l->lease_epoch = x->epoch;
    h->lease_ptrs[h->n] = l;
    h->n++;
}

static void beat(kx_loop *loop, void *arg)
{
    heartbeat *h = arg;
    runner *r = h->r;
    h->timer = NULL;
    h->n = 0;
    runner_each(r, collect, h);
    Kx__V1__RunnerHeartbeat hb = KX__V1__RUNNER_HEARTBEAT__INIT;
    hb.runner_id = (char *)r->instance_id;
    hb.n_runs = h->n;
    hb.runs = h->lease_ptrs;
    hb.sent_at_ms = kx_now_ms();
    hb.capacity = runner_free_slots(r);
    kx_err err = kx_bus_publish_pb(r->bus, KX_SUBJ_RUN_HB, &hb.base, NULL);
    if (err != KX_OK && !h->warned) {
        kx_warn("heartbeat: could not publish on %s: %s (held runs may be reaped)",
                KX_SUBJ_RUN_HB, kx_err_str(err));
        h->warned = true;
    } else if (err == KX_OK) {
        h->warned = false;
    }
    /* keep /readyz honest about Postgres without touching the connection from other threads */
    if (!atomic_load(&r->db_ok) || r->nheld == 0)
        atomic_store(&r->db_ok, kx_db_ok(r->db));
    h->timer = kx_loop_timer(loop, r->cfg->heartbeat_ms, beat, h);
    if (h->timer == NULL)
        kx_error("heartbeat: could not re-arm the timer: heartbeats stopped");
}

kx_err heartbeat_start(runner *r, heartbeat **out)
{
    *out = NULL;
    heartbeat *h = calloc(1, sizeof *h);
    if (h == NULL)
        return KX_ERR_NOMEM;
    h->r = r;
    h->cap = (size_t)r->cfg->capacity;
    h->leases = calloc(h->cap, sizeof *h->leases);
    h->lease_ptrs = calloc(h->cap, sizeof *h->lease_ptrs);
    h->timer = kx_loop_timer(r->loop, 0, beat, h);
    if (h->leases == NULL || h->lease_ptrs == NULL || h->timer == NULL) {
        heartbeat_free(h);
        return KX_ERR_NOMEM;
    }
    *out = h;
    return KX_OK;
}

void heartbeat_free(heartbeat *h)
{
    if (h == NULL)
        return;
    kx_timer_cancel(h->timer);
    free(h->leases);
    free(h->lease_ptrs);
    free(h);
}
