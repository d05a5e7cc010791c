/* sweep.c — every KX_SWEEP_INTERVAL_MS, dispatch again the queued runs whose dispatch is lost,
 * and only those: a run whose last dispatch was marked over 10 s ago and whose message is gone
 * from the KX_RUN_DISPATCH work queue, or was never recorded (a work queue keeps a
 * message until a runner acknowledges it, and redelivers it by itself when a runner died
 * holding it) or was never recorded. A run that waits in a backlog still has its message in
 * the stream and is left alone, so an overloaded queue does not fill up with duplicates. (Runs
 * never dispatched — a lost submit, a wiped stream — are admission's: admit.c, every tick.) At
 * most 100 candidates per sweep, least recently looked at first (one stream lookup each).
 * This is how Postgres rebuilds the queue: the bus only moves work, the agent_runs rows are
 * the truth. Runners claim with a compare-and-set, so a run dispatched twice still runs once.
 * A sweep is a tick (jobs.c): it runs on a database thread. */
#include "kx/log.h"
#include "sched.h"

static int sweep(scheduler *s, kx_db *db)
{
    if (!atomic_load(&s->migrated))
        return 0;
    kx_err err = KX_OK;
    PGresult *res = sched_store_sweep(s, db, &err);
    if (res == NULL) {
        kx_warn("scheduler: sweep could not run: %s", kx_err_str(err));
        return 0;
    }
    int n = PQntuples(res), sent = 0, pending = 0;
    for (int i = 0; i < n && kx_bus_connected(s->svc->bus); i++) {
        sched_run_row row;
        sched_store_row(res, i, &row);
        if (row.dispatch_seq > 0) {
            bool has = false;
            if (kx_bus_js_stream_has(s->svc->bus, KX_STREAM_DISPATCH, (uint64_t)row.dispatch_seq,
                                     &has) != KX_OK)
                break; /* NATS cannot tell now: the next sweep looks again */
            if (has) {
                pending++;
                (void)sched_store_sweep_seen(s, db, row.run_id, row.dispatch_seq);
                continue;
            }
        }
        if (sched_dispatch_queued(s, db, row.run_id) != KX_OK)
            break; /* the rest would wait for the same broken bus */
        sent++;
    }
    PQclear(res);
    if (sent > 0)
        kx_info("scheduler: sweep re-dispatched %d lost dispatch(es) (%d still waiting in the "
                "queue)",
                sent, pending);
    return sent;
}

void sched_sweep_start(scheduler *s)
{
    sched_tick_start(s, &s->sweep, "sweep", s->cfg.sweep_interval_ms, s->cfg.sweep_interval_ms,
                     sweep, NULL);
}
