/* triggers.c — scheduled runs (Kortix's triggers): every KX_TRIGGER_POLL_MS, each active trigger
 * whose next_fire_at has come is fired once, and becomes an ordinary queued run.
 *
 * For each due trigger (store.c "sched_triggers_due", at most TRIGGER_BATCH per tick, oldest
 * first) the scheduler computes the next fire time with kx_cron on the wall clock of the
 * trigger's time zone (kx_cron_next_fire; the zone is read from the time zone database at each
 * fire, so a tzdata update applies at once) — the first match strictly after NOW, not after
 * the due time: after downtime a trigger that missed several fire times fires once, not once
 * per missed time — and calls kx_fire_trigger (migration 005), one
 * statement that, in one transaction, moves next_fire_at from the due time it read to the next
 * one (a compare-and-set) and creates the run: a new project and thread per fire, the prompt as
 * the user message, a queued run carrying the trigger's agent and model. With two replicas both
 * may read the same due trigger; the second compare-and-set waits for the first to commit and
 * then matches no row ("skipped"), so each due time makes exactly one run; agent_runs'
 * (trigger_id, trigger_fire_at) is unique on top of that. A run the account's quota or model
 * allow-list refuses is not made: the fire is skipped and the trigger's last_error says why.
 * After a tick that made runs, an admission pass dispatches them (within KX_MAX_PARALLEL_RUNS,
 * fair between accounts, like any run). The poll interval, not the minute, is the granularity a
 * fire can be late by; Postgres' clock decides what is due. A poll is a tick (jobs.c): it runs
 * on a database thread. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kx/cron.h"
#include "kx/log.h"
#include "kx/metrics.h"
#include "sched.h"

#define TRIGGER_BATCH 100

static void count(const char *outcome)
{
    char labels[64];
    snprintf(labels, sizeof labels, "outcome=\"%s\"", outcome);
    kx_counter *c = kx_metrics_counter("kx_scheduler_trigger_fires_total", labels,
                                       "Due scheduled-run triggers handled, by outcome");
    if (c != NULL)
        kx_counter_add(c, 1);
}

/* Fires one due trigger; true when it made a run. A cron expression or zone that cannot be read
 * disables the trigger (last_error says why: it would fail at every tick); a zone database that
 * cannot be read is not the trigger's fault and is tried again next tick. */
static bool fire_one(scheduler *s, kx_db *db, const char *id, const char *cron, const char *due,
                     int64_t now_s, const char *zone)
{
    char why[200], msg[300];
    int64_t next = 0; /* 0: fires now, then no more */
    kx_err err = kx_cron_next_fire(cron, zone, now_s, &next, why, sizeof why);
    if (err == KX_ERR_INVALID || err == KX_ERR_NOT_FOUND) {
        snprintf(msg, sizeof msg, "%s cannot be read: %s",
                 err == KX_ERR_INVALID ? "cron_expression" : "timezone", why);
        kx_warn("scheduler: trigger %s: %s; it fires no more", id, msg);
        (void)sched_store_trigger_disable(s, db, id, due, msg);
        count("invalid");
        return false;
    }
    if (err != KX_OK) {
        kx_warn("scheduler: trigger %s: %s; retried next tick", id, why);
        return false;
    }
    PGresult *res = sched_store_trigger_fire(s, db, id, due, next, &err);
    if (res == NULL) {
        kx_warn("scheduler: trigger %s could not be fired: %s; retried next tick", id,
                kx_err_str(err));
        return false;
    }
    bool fired = false;
    if (PQntuples(res) == 1) {
        const char *outcome = PQgetvalue(res, 0, 0);
        const char *run_id = PQgetvalue(res, 0, 1);
        const char *detail = PQgetvalue(res, 0, 2);
        count(outcome);
        if (strcmp(outcome, "fired") == 0) {
            fired = true;
            kx_log(KX_LOG_INFO, run_id, NULL, "scheduler: trigger %s fired for %s: run %s", id,
                   due, run_id);
        } else if (strcmp(outcome, "refused") == 0) {
            kx_info("scheduler: trigger %s due %s made no run: %s", id, due, detail);
        } else {
            kx_debug("scheduler: trigger %s due %s: %s", id, due, outcome);
        }
    }
    PQclear(res);
    return fired;
}

/* Database thread: fires the due triggers; returns how many made a run. */
static int fire_due(scheduler *s, kx_db *db)
{
    if (!atomic_load(&s->migrated))
        return 0;
    kx_err err = KX_OK;
    PGresult *res = sched_store_triggers_due(s, db, TRIGGER_BATCH, &err);
    if (res == NULL) {
        kx_warn("scheduler: due triggers could not be read: %s", kx_err_str(err));
        return 0;
    }
    int fired = 0;
    for (int i = 0; i < PQntuples(res) && !atomic_load(&s->draining); i++) {
        int64_t now_s = strtoll(PQgetvalue(res, i, 4), NULL, 10);
        if (fire_one(s, db, PQgetvalue(res, i, 0), PQgetvalue(res, i, 1), PQgetvalue(res, i, 2),
                     now_s, PQgetvalue(res, i, 5)))
            fired++;
    }
    PQclear(res);
    return fired;
}

/* Loop: the new runs start now if their accounts' limits allow. */
static bool fired_then(scheduler *s, int fired)
{
    if (fired > 0 && kx_bus_connected(s->svc->bus))
        sched_admit(s, NULL, NULL);
    return true;
}

void sched_triggers_start(scheduler *s)
{
    sched_tick_start(s, &s->triggers, "triggers", s->cfg.trigger_poll_ms, s->cfg.trigger_poll_ms,
                     fire_due, fired_then);
}
