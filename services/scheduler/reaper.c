/* reaper.c — every KX_REAPER_INTERVAL_MS: move the dead running runs on, then publish what was
 * decided. A tick (jobs.c) runs on a database thread; admission follows it.
 *
 * 1. Reap (store.c "sched_reap", one UPDATE): a running run is dead when its wall time,
 *    counted from its claim, passed ("exceeded max wall time of N s" -> failed), or when its
 *    claim-time lease and its runner's lease row both expired (the runner stopped
 *    heartbeating). Dead by lease, it goes back to queued while attempt < KX_RUN_MAX_ATTEMPTS
 *    (retried; what the first attempt stored stays, the retry continues the thread), else it
 *    fails ("reaped: runner <owner> stopped heartbeating at <time>"). Either way the epoch is
 *    bumped — the old holder's later writes are refused — and the decision is written into
 *    the row itself (notice, notice_epoch): the outbox. In batches of SCHED_REAP_BATCH, as
 *    many as it takes in the same tick (10 000 runs of a dead runner leave `running` together).
 * 2. Publish the notices (a SELECT, so a reap whose answer was lost, or a scheduler killed
 *    right after its reap, loses nothing): STOP on kx.run.ctl.<id> for the fenced epoch (a
 *    runner that is alive but slow lets go now; the heartbeat answer tells it too); the stream
 *    event on kx.run.ev.<id> — terminal "failed", or a non-terminal status saying the run was
 *    retried, carrying the new epoch (admission dispatches the retry). Then the notice is
 *    cleared by a compare-and-set on notice_epoch; batch after batch while the tick has spent
 *    less than half a reaper interval, the rest at the next tick. Every publish carries a
 *    Nats-Msg-Id made of run id and epoch, so a notice published twice (crash between publish
 *    and clear) is stored once. NATS down: the notices wait in Postgres for the next tick.
 *
 * An expired lease means "its runner stopped heartbeating" only if the scheduler could hear
 * the heartbeats. At start, and after any gap in which they could not be applied (Postgres or
 * NATS unreachable, a heartbeat write that timed out or took over half a TTL, a heartbeat that
 * arrived late), expired leases are not reaped for one lease TTL, the time a live runner needs
 * to renew its lease; wall-time reaping goes on. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kx/log.h"
#include "kx/metrics.h"
#include "kx/pb.h"
#include "kx/time.h"
#include "sched.h"
#include "terminal.h"

#define CLEANUP_EVERY_MS 60000
/* Most reap batches (of SCHED_REAP_BATCH runs) in one tick. */
#define REAP_MAX_PASSES 100
/* Notices are published in batches of SCHED_REAP_BATCH while a tick has spent less than this
 * share of the reaper interval on them (the next tick and admission wait for it). */
#define NOTICE_SHARE_OF_TICK 2

/* One notice as read back from agent_runs. */
typedef struct notice {
    const char *run_id, *owner, *error, *account, *kind, *status;
    int64_t epoch; /* the run's epoch after the reap */
    int attempt;   /* attempts made so far */
} notice;

/* Publishes STOP and the stream event of one notice. */
static kx_err publish_notice(scheduler *s, const notice *n)
{
    kx_bus *bus = s->svc->bus;
    if (!kx_bus_connected(bus))
        return KX_ERR_UNAVAILABLE;
    kx_bus_meta meta;
    kx_bus_meta_init(&meta, kx_deadline_in(s->cfg.bus_timeout_ms), n->account);
    char subject[128];

    Kx__V1__RunControl ctl = KX__V1__RUN_CONTROL__INIT;
    ctl.run_id = (char *)n->run_id;
    ctl.signal = KX__V1__RUN_SIGNAL__RUN_SIGNAL_STOP;
    ctl.reason = (char *)n->error;
    ctl.lease_epoch = n->epoch - 1;
    snprintf(subject, sizeof subject, "%s%s", KX_SUBJ_RUN_CTL_PREFIX, n->run_id);
    kx_err err = kx_bus_publish_pb(bus, subject, &ctl.base, &meta);
    if (err != KX_OK) /* not fatal: the heartbeat answer and the fence stop it anyway */
        kx_log(KX_LOG_WARN, n->run_id, NULL, "scheduler: STOP for reaped run %s not sent: %s",
               n->run_id, kx_err_str(err));

    bool retried = strcmp(n->kind, "retried") == 0;
    char *payload = retried
        ? sched_retried_payload(n->error, n->attempt + 1, (int)s->cfg.max_attempts)
        : sched_terminal_payload(n->error);
    if (payload == NULL)
        return KX_ERR_NOMEM;
    Kx__V1__RunEvent ev = KX__V1__RUN_EVENT__INIT;
    ev.run_id = (char *)n->run_id;
    ev.lease_epoch = retried ? n->epoch : 0;
    ev.kind = KX__V1__RUN_EVENT_KIND__RUN_EVENT_KIND_STATUS;
    ev.terminal = !retried;
    ev.payload_json = payload;
    char msg_id[96];
    snprintf(msg_id, sizeof msg_id, "reap-%s-%lld", n->run_id, (long long)n->epoch);
    snprintf(subject, sizeof subject, "%s%s", KX_SUBJ_RUN_EV_PREFIX, n->run_id);
    err = kx_bus_js_publish_pb_ex(bus, subject, &ev.base, &meta, msg_id, NULL);
    free(payload);
    return err; /* a retried run is dispatched by admission, within the limits */
}

/* Publishes one batch of pending notices, oldest first; stops at the first publish failure.
 * Returns how many were published. */
static int publish_notices(scheduler *s, kx_db *db)
{
    kx_err err = KX_OK;
    PGresult *res = sched_store_notices(s, db, &err);
    if (res == NULL) {
        kx_warn("scheduler: reaper notices could not be read: %s", kx_err_str(err));
        return 0;
    }
    int published = 0;
    for (int i = 0; i < PQntuples(res); i++) {
        notice n = {
            .run_id = PQgetvalue(res, i, 0),
            .owner = PQgetvalue(res, i, 1),
            .error = PQgetvalue(res, i, 2),
            .epoch = strtoll(PQgetvalue(res, i, 3), NULL, 10),
            .account = PQgetvalue(res, i, 4),
            .kind = PQgetvalue(res, i, 5),
            .attempt = (int)strtol(PQgetvalue(res, i, 8), NULL, 10),
            .status = PQgetvalue(res, i, 9),
        };
        bool retried = strcmp(n.kind, "retried") == 0;
        bool wall = strncmp(n.error, "exceeded max wall time", 22) == 0;
        if (publish_notice(s, &n) != KX_OK) {
            kx_log(KX_LOG_WARN, n.run_id, NULL,
                   "scheduler: news of reaped run %s not "
                   "published yet; retried at the next tick",
                   n.run_id);
            break;
        }
        if (sched_store_notice_done(s, db, n.run_id, n.epoch) != KX_OK)
            break; /* published again next tick; the Nats-Msg-Id keeps it stored once */
        kx_counter_add(kx_metrics_counter("kx_scheduler_runs_reaped_total",
                                          wall          ? "reason=\"wall_time\""
                                              : retried ? "reason=\"lease_expired_retried\""
                                                        : "reason=\"lease_expired\"",
                                          "Runs reaped, by reason"),
                       1);
        kx_log(KX_LOG_WARN, n.run_id, NULL, "scheduler: reaped run %s (runner %s): %s%s", n.run_id,
               n.owner[0] ? n.owner : "unknown", n.error, retried ? " — queued again" : "");
        published++;
    }
    PQclear(res);
    return published;
}

/* Called when Postgres and NATS both answer: ends a blind gap with one TTL of grace. */
static void see(scheduler *s)
{
    if (!atomic_exchange(&s->blind, false))
        return;
    s->blind_logged = false;
    s->lease_reap_after_ms = kx_mono_ms() + s->cfg.lease_ttl_ms;
    kx_info("scheduler: heartbeats can be applied again: expired leases are reaped from %lld ms "
            "on",
            (long long)s->cfg.lease_ttl_ms);
}

static void reap(scheduler *s, kx_db *db)
{
    if (!kx_bus_connected(s->svc->bus))
        sched_blind(s);
    bool blind = atomic_load(&s->blind);
    if (blind && !s->blind_logged) {
        kx_warn("scheduler: heartbeats cannot be applied: expired leases will not be reaped "
                "until one lease TTL after they can again");
        s->blind_logged = true;
    }
    bool reap_leases = !blind && kx_mono_ms() >= s->lease_reap_after_ms;
    /* Batches of SCHED_REAP_BATCH until the dead are all moved: a runner that died holding
     * 10 000 runs must not take ten ticks to be reaped (bounded by REAP_MAX_PASSES). */
    long rows = 0, total = 0;
    kx_err err = KX_OK;
    for (int pass = 0; pass < REAP_MAX_PASSES; pass++) {
        rows = 0;
        err = sched_store_reap(s, db, reap_leases, &rows);
        if (err != KX_OK)
            break;
        total += rows;
        if (rows < SCHED_REAP_BATCH)
            break;
    }
    if (err != KX_OK) {
        kx_warn("scheduler: reaper could not run: %s", kx_err_str(err));
        if (total == 0)
            return;
    }
    if (kx_bus_connected(s->svc->bus))
        see(s);
    if (total > 0)
        kx_debug("scheduler: reaper moved %ld run(s)", total);
    if (kx_mono_ms() >= s->next_cleanup_ms) {
        s->next_cleanup_ms = kx_mono_ms() + CLEANUP_EVERY_MS;
        (void)sched_store_cleanup(s, db);
    }
}

/* Database thread: one tick's reaping and notices. Returns 1 when an admission pass should
 * follow (the bus is up: slots freed by finished or reaped runs). */
static int reaper_run(scheduler *s, kx_db *db)
{
    if (!atomic_load(&s->migrated))
        return 0;
    int64_t t0 = kx_mono_ms();
    reap(s, db);
    if (!kx_bus_connected(s->svc->bus))
        return 0;
    int published = 0;
    do {
        published = publish_notices(s, db);
    } while (published >= SCHED_REAP_BATCH && !atomic_load(&s->draining) &&
             kx_mono_ms() - t0 < s->cfg.reaper_interval_ms / NOTICE_SHARE_OF_TICK);
    return 1;
}

/* Loop: after the tick, the admission pass (it runs on a database thread too). */
static bool reaper_then(scheduler *s, int admit)
{
    if (admit)
        sched_admit(s, NULL, NULL);
    return true;
}

void sched_reaper_start(scheduler *s)
{
    /* Heartbeats sent before this scheduler ran were not applied by anyone (if no other
     * replica runs): a TTL of grace before expired leases count. */
    atomic_store(&s->blind, false);
    s->lease_reap_after_ms = kx_mono_ms() + s->cfg.lease_ttl_ms;
    sched_tick_start(s, &s->reaper, "reaper", s->cfg.reaper_interval_ms, s->cfg.reaper_interval_ms,
                     reaper_run, reaper_then);
}
