/* admit.c — admission: turning waiting runs (queued, never dispatched, or given back by a
 * reap or a drain) into dispatches, within the limits.
 *
 * One statement (store.c "sched_admit") decides, in Postgres, so that it holds across
 * scheduler replicas and restarts: at most KX_MAX_PARALLEL_RUNS active runs per account
 * (running, or dispatched and not yet claimed — over the limit a run simply waits queued),
 * one active run per thread (a thread's next run waits for the current one: multitask
 * "enqueue"), and round-robin fairness between accounts (every account's first waiting run
 * before any account's second), so one busy account cannot starve the others. It runs on every
 * submit and every reaper tick (a slot freed by a finished run is used within one tick). */
#include "kx/log.h"
#include "sched.h"

#define ADMIT_BATCH 200
#define ADMIT_MAX_PASSES 10

kx_err sched_admit(scheduler *s)
{
    for (int pass = 0; pass < ADMIT_MAX_PASSES; pass++) {
        kx_err err = KX_OK;
        PGresult *res = sched_store_admit(s, ADMIT_BATCH, &err);
        if (res == NULL) {
            kx_warn("scheduler: admission could not run: %s", kx_err_str(err));
            return err;
        }
        int n = PQntuples(res);
        kx_err bus_err = KX_OK;
        for (int i = 0; i < n; i++) {
            sched_run_row row;
            sched_store_row(res, i, &row);
            if (bus_err == KX_OK)
                bus_err = sched_dispatch(s, &row);
            /* after one failed publish the rest would wait for the same broken bus: give
             * them back at once (the next pass retries them) */
            if (bus_err != KX_OK)
                (void)sched_store_unmark_dispatched(s, row.run_id);
        }
        PQclear(res);
        if (bus_err != KX_OK)
            return bus_err;
        if (n < ADMIT_BATCH)
            return KX_OK;
    }
    return KX_OK;
}
