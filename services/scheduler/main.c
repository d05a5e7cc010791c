/* main.c — the scheduler, as a table of contents.
 *
 * Postgres (agent_runs) is the truth; the scheduler moves runs along it: queued -> dispatched
 * (submits, sweep), leases kept alive by heartbeats, and running -> failed when a
 * lease or the wall time runs out (reaper); due cron triggers become queued runs (triggers).
 * The loop never waits for Postgres: statements run on database threads (jobs.c).
 * See README.md and docs/architecture.md. */
#include <string.h>

#include "kx/log.h"
#include "kx/svc.h"
#include "sched.h"

int main(void)
{
    kx_svc svc;
    if (kx_svc_init(&svc, "scheduler", 9101) != KX_OK)
        return 1; /* the reason is logged */

    static scheduler s; /* the service's one state object */
    memset(&s, 0, sizeof s);
    s.svc = &svc;
    if (sched_config_load(&s.cfg) != KX_OK) { /* sched_config.c */
        kx_svc_close(&svc);
        return 1;
    }
    /* Before anything slow: until then /readyz would answer "ready" (no ready function). */
    kx_svc_on_ready(&svc, sched_ready, &s); /* lifecycle.c */
    /* jobs.c: the database threads (store.c's statements run there; connections are made
     * lazily and re-made by themselves) */
    if (sched_db_open(&s) != KX_OK) {
        kx_error("scheduler: cannot start the database threads");
        kx_svc_close(&svc);
        return 1;
    }
    atomic_store(&s.db_up, true); /* until a statement says otherwise */

    if (sched_heartbeat_subscribe(&s) != KX_OK) { /* heartbeat.c */
        kx_db_lanes_free(s.dbl);
        kx_svc_close(&svc);
        return 1;
    }
    sched_bringup_start(&s);                /* lifecycle.c: migrations, streams, submit.c */
    sched_reaper_start(&s);                 /* reaper.c */
    sched_sweep_start(&s);                  /* sweep.c */
    sched_triggers_start(&s);               /* triggers.c: scheduled runs */
    kx_svc_on_drain(&svc, sched_drain, &s); /* lifecycle.c */
    kx_info("scheduler: lease %lld ms, reaper every %lld ms, wall time %lld s, sweep every "
            "%lld ms",
            (long long)s.cfg.lease_ttl_ms, (long long)s.cfg.reaper_interval_ms,
            (long long)s.cfg.wall_time_s, (long long)s.cfg.sweep_interval_ms);

    int rc = kx_svc_run(&svc);
    s.loop_over = true;                   /* completions from now on only release */
    (void)kx_db_lanes_flush(s.dbl, 3000); /* the jobs in flight end (statement_timeout bounds) */
    kx_db_lanes_free(s.dbl);              /* queued ones are failed */
    sched_admit_free(&s);                 /* admit.c: submits still waiting for a pass */
    if (s.submit_sub != NULL) {           /* a second unsubscribe after the drain's is harmless */
        natsSubscription_Unsubscribe(s.submit_sub);
        natsSubscription_Destroy(s.submit_sub);
    }
    kx_svc_close(&svc);
    return rc;
}
