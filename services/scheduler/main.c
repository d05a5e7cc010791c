/* main.c — the scheduler, as a table of contents.
 *
 * Postgres (agent_runs) is the truth; the scheduler moves runs along it: queued -> dispatched
 * (submit consumer, sweep), leases kept alive by heartbeats, and running -> failed when a
 * lease or the wall time runs out (reaper); due cron triggers become queued runs (triggers).
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
    kx_svc_on_ready(&svc, sched_ready, &s);                                  /* lifecycle.c */
    kx_err err = kx_db_connect(s.cfg.database_url, sched_statements, &s.db); /* store.c */
    if (err != KX_OK && err != KX_ERR_UNAVAILABLE) { /* unavailable: it reconnects later */
        kx_svc_close(&svc);
        return 1;
    }
    atomic_store(&s.db_up, err == KX_OK);

    if (sched_heartbeat_subscribe(&s) != KX_OK) { /* heartbeat.c */
        kx_svc_close(&svc);
        kx_db_close(s.db);
        return 1;
    }
    sched_bringup_start(&s);  /* lifecycle.c: migrations, streams, submit.c's consumer */
    sched_reaper_start(&s);   /* reaper.c */
    sched_sweep_start(&s);    /* sweep.c */
    sched_triggers_start(&s); /* triggers.c: scheduled runs */
    kx_svc_on_drain(&svc, sched_drain, &s); /* lifecycle.c */
    kx_info("scheduler: lease %lld ms, reaper every %lld ms, wall time %lld s, sweep every "
            "%lld ms",
            (long long)s.cfg.lease_ttl_ms, (long long)s.cfg.reaper_interval_ms,
            (long long)s.cfg.wall_time_s, (long long)s.cfg.sweep_interval_ms);

    int rc = kx_svc_run(&svc);
    natsSubscription_Destroy(s.submit_sub); /* unsubscribed by the drain */
    kx_svc_close(&svc);
    kx_db_close(s.db);
    return rc;
}
