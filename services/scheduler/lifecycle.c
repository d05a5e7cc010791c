/* lifecycle.c — the scheduler's start, readiness and stop.
 *
 * Bring-up is a loop timer that retries every BRINGUP_RETRY_MS until all three are done, so
 * the scheduler can start before Postgres or NATS and catch up by itself:
 *   1. kx_db_migrate (under an advisory lock: concurrent services migrate once);
 *   2. kx_bus_ensure_streams;
 *   3. the submit consumer (submit.c).
 * The heartbeat subscription, the reaper and the sweep run from the start; they skip their
 * work until the schema is migrated.
 * Ready (/readyz, kx.svc.health) = migrated, Postgres reachable at the last statement, and the
 * submit consumer bound (NATS itself is checked by kx_svc).
 * Drain (SIGTERM): stop the timers, stop consuming (the durable consumer stays; unacked
 * submits are redelivered to another replica or after restart), exit. Nothing else is held:
 * every statement is a single UPDATE that has already finished. */
#include <stdio.h>

#include "kx/log.h"
#include "sched.h"

#define BRINGUP_RETRY_MS 1000

static void on_bringup_tick(kx_loop *loop, void *arg)
{
    scheduler *s = arg;
    s->bringup_timer = NULL;
    if (s->draining)
        return;
    if (!atomic_load(&s->migrated)) {
        kx_err err = sched_store_migrate(s);
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
    if (s->streams_ready && !atomic_load(&s->consumer_ready)) {
        if (sched_submit_subscribe(s) == KX_OK) {
            atomic_store(&s->consumer_ready, true);
            kx_info("scheduler: consuming %s as durable consumer '%s'", KX_SUBJ_RUN_SUBMIT,
                    KX_CONSUMER_SCHEDULER);
        }
    }
    if (atomic_load(&s->migrated) && atomic_load(&s->consumer_ready)) {
        kx_info("scheduler: ready");
        return;
    }
    s->bringup_timer = kx_loop_timer(loop, BRINGUP_RETRY_MS, on_bringup_tick, s);
    if (s->bringup_timer == NULL)
        kx_error("scheduler: could not arm the bring-up timer; the scheduler stays not ready");
}

void sched_bringup_start(scheduler *s)
{
    s->bringup_timer = kx_loop_timer(s->svc->loop, 0, on_bringup_tick, s);
    if (s->bringup_timer == NULL)
        kx_error("scheduler: could not arm the bring-up timer; the scheduler stays not ready");
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
    s->draining = true;
    kx_timer **timers[] = {&s->bringup_timer, &s->reaper_timer, &s->sweep_timer,
                           &s->trigger_timer};
    for (size_t i = 0; i < sizeof timers / sizeof timers[0]; i++) {
        kx_timer_cancel(*timers[i]);
        *timers[i] = NULL;
    }
    if (s->submit_sub != NULL) /* destroyed in main after the loop ends */
        natsSubscription_Unsubscribe(s->submit_sub);
    if (s->hb_sub != NULL) {
        natsSubscription_Unsubscribe(s->hb_sub);
        natsSubscription_Destroy(s->hb_sub);
        s->hb_sub = NULL;
    }
    kx_info("scheduler: drained");
    kx_svc_exit(svc);
}
