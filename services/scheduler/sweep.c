/* sweep.c — every KX_SWEEP_INTERVAL_MS, dispatch again the queued runs whose dispatch was
 * never made (no dispatched_at 2 s after creation: the gateway's submit was lost, or the
 * submit stream was wiped) or was lost (dispatched over 60 s ago and still queued), at most
 * 100 per sweep, oldest first. This is how Postgres rebuilds the queue: the bus only moves
 * work, the agent_runs rows are the truth. Runners claim with a compare-and-set, so a run
 * dispatched twice still runs once. */
#include "kx/log.h"
#include "sched.h"

static void sweep(scheduler *s)
{
    kx_err err = KX_OK;
    PGresult *res = sched_store_sweep(s, &err);
    if (res == NULL) {
        kx_warn("scheduler: sweep could not run: %s", kx_err_str(err));
        return;
    }
    int n = PQntuples(res), sent = 0;
    bool bus_ok = true;
    for (int i = 0; i < n; i++) {
        sched_run_row row;
        sched_store_row(res, i, &row);
        /* After one failed publish the rest would wait for the same broken bus: give them
         * back at once (the next sweep retries them all). */
        if (bus_ok && sched_dispatch(s, &row) == KX_OK) {
            sent++;
            continue;
        }
        bus_ok = false;
        (void)sched_store_unmark_dispatched(s, row.run_id);
    }
    PQclear(res);
    if (n > 0)
        kx_info("scheduler: sweep re-dispatched %d of %d queued run(s)", sent, n);
}

static void on_sweep_tick(kx_loop *loop, void *arg)
{
    scheduler *s = arg;
    s->sweep_timer = NULL;
    if (s->draining)
        return;
    if (atomic_load(&s->migrated))
        sweep(s);
    s->sweep_timer = kx_loop_timer(loop, s->cfg.sweep_interval_ms, on_sweep_tick, s);
    if (s->sweep_timer == NULL)
        kx_error("scheduler: could not re-arm the sweep timer: sweeping stops");
}

void sched_sweep_start(scheduler *s)
{
    s->sweep_timer = kx_loop_timer(s->svc->loop, s->cfg.sweep_interval_ms, on_sweep_tick, s);
    if (s->sweep_timer == NULL)
        kx_error("scheduler: could not arm the sweep timer: sweeping stops");
}
