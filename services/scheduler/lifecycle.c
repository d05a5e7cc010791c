/* lifecycle.c — the scheduler's start, readiness and stop.
 *
 * Bring-up is a tick (jobs.c: its work runs on a database thread) that retries every
 * BRINGUP_RETRY_MS until all three are done, so the scheduler can start before Postgres or
 * NATS and catch up by itself:
 *   1. kx_db_migrate (under an advisory lock: concurrent services migrate once);
 *   2. kx_bus_ensure_streams;
 *   3. the submit subscription (submit.c).
 * The heartbeat subscription, the reaper and the sweep run from the start; they skip their
 * work until the schema is migrated.
 * Ready (/readyz, kx.svc.health) = migrated, Postgres reachable at the last statement, and the
 * submit subscription made (NATS itself is checked by kx_svc).
 * Drain (SIGTERM): stop the timers, unsubscribe from submits (the other replicas get them; the
 * runs of submits that no pass served are admitted by a reaper tick, here or elsewhere), exit.
 * main then waits for the jobs in flight (each a few single statements, bounded by
 * statement_timeout) before it closes the database threads. */
#include <stdio.h>

#include "kx/log.h"
#include "sched.h"

#define BRINGUP_RETRY_MS 1000

/* Database thread: one bring-up attempt; returns 1 when everything is up. */
static int bringup_run(scheduler *s, kx_db *db)
{
    if (!atomic_load(&s->migrated)) {
        kx_err err = sched_store_migrate(s, db);
        if (err == KX_OK) {
            atomic_store(&s->migrated, true);
            kx_info("scheduler: database schema is up to date");
        } else {
            kx_warn("scheduler: migrations not applied yet (%s); retrying", kx_err_str(err));
        }
    }
    if (!s->streams_ready && kx_bus_connected(s->svc->bus)) {
        if (kx_bus_ensure_streams(s->svc->bus) == KX_OK)
            s->streams_ready = true;
        else
            kx_warn("scheduler: JetStream streams not ready yet; retrying");
    }
    if (s->streams_ready && !atomic_load(&s->consumer_ready) && !atomic_load(&s->draining)) {
        if (sched_submit_subscribe(s) == KX_OK) {
            /* a database thread, not the loop: a submit sent right after /readyz is heard */
            if (kx_bus_flush(s->svc->bus, 2000) != KX_OK)
                kx_warn("scheduler: NATS did not confirm the subscriptions in 2 s; ready anyway");
            atomic_store(&s->consumer_ready, true);
            kx_info("scheduler: subscribed to %s (queue group '%s')", KX_SUBJ_RUN_SUBMIT,
                    KX_CONSUMER_SCHEDULER);
        }
    }
    return atomic_load(&s->migrated) && atomic_load(&s->consumer_ready);
}

/* Loop: stop once up. */
static bool bringup_then(scheduler *s, int up)
{
    (void)s;
    if (up)
        kx_info("scheduler: ready");
    return !up;
}

void sched_bringup_start(scheduler *s)
{
    sched_tick_start(s, &s->bringup, "bring-up", 0, BRINGUP_RETRY_MS, bringup_run, bringup_then);
}

bool sched_ready(kx_svc *svc, void *arg, char *why, size_t whylen)
{
    scheduler *s = arg;
    if (!atomic_load(&s->migrated)) {
        snprintf(why, whylen, "database migrations not applied yet");
        return false;
    }
    if (!atomic_load(&s->db_up)) {
        snprintf(why, whylen, "PostgreSQL unreachable");
        return false;
    }
    if (!atomic_load(&s->consumer_ready)) {
        snprintf(why, whylen, "not consuming %s yet", KX_SUBJ_RUN_SUBMIT);
        return false;
    }
    return true;
}

void sched_drain(kx_svc *svc, void *arg)
{
    scheduler *s = arg;
    atomic_store(&s->draining, true);
    sched_tick *ticks[] = {&s->bringup, &s->reaper, &s->sweep, &s->triggers};
    for (size_t i = 0; i < sizeof ticks / sizeof ticks[0]; i++)
        sched_tick_stop(ticks[i]);
    /* while the bring-up job runs it may be subscribing (on its thread): main
     * unsubscribes after the database threads stopped */
    if (!s->bringup.busy && s->submit_sub != NULL) /* destroyed in main after the loop ends */
        natsSubscription_Unsubscribe(s->submit_sub);
    if (s->hb_sub != NULL) {
        natsSubscription_Unsubscribe(s->hb_sub);
        natsSubscription_Destroy(s->hb_sub);
        s->hb_sub = NULL;
    }
    kx_info("scheduler: drained");
    kx_svc_exit(svc);
}
