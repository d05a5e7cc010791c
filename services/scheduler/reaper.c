/* reaper.c — every KX_REAPER_INTERVAL_MS, fail the running runs whose lease expired (their
 * runner stopped heartbeating: "lease expired: runner <owner> stopped heartbeating") or whose
 * wall time passed ("exceeded max wall time of N s"), in one UPDATE that also bumps the
 * lease epoch — so the old holder's later writes are refused — and clears the lease.
 *
 * For each reaped run: STOP on kx.run.ctl.<id> (core; tells a runner that is alive but slow to
 * let go now) and the terminal kx.v1.RunEvent on kx.run.ev.<id> (JetStream; what SSE clients
 * are waiting for). The database is the truth and is already updated, so a terminal event that
 * cannot be published (NATS down) is kept in memory and retried at every tick until it goes
 * out (at most MAX_PENDING of them; a scheduler restart loses them, and SSE readers then see
 * the final status from the database).
 *
 * An expired lease means "its runner stopped heartbeating" only if the scheduler could see the
 * heartbeats. At start, and after any gap in which they could not be applied (Postgres or NATS
 * unreachable), expired leases are not reaped for one lease TTL, the time a live runner needs
 * to renew its leases; wall-time reaping goes on. So a database failover or a scheduler
 * restart longer than the TTL does not fail the runs of healthy runners. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kx/log.h"
#include "kx/metrics.h"
#include "kx/pb.h"
#include "kx/time.h"
#include "sched.h"
#include "terminal.h"

#define MAX_PENDING 100000

/* Publishes STOP and the terminal event of one reaped run. */
static kx_err publish_terminal(scheduler *s, const char *run_id, const char *account_id,
                               int64_t fenced_epoch, const char *error)
{
    kx_bus *bus = s->svc->bus;
    if (!kx_bus_connected(bus))
        return KX_ERR_UNAVAILABLE;
    kx_bus_meta meta;
    kx_bus_meta_init(&meta, kx_deadline_in(s->cfg.bus_timeout_ms), account_id);
    char subject[128];

    Kx__V1__RunControl ctl = KX__V1__RUN_CONTROL__INIT;
    ctl.run_id = (char *)run_id;
    ctl.signal = KX__V1__RUN_SIGNAL__RUN_SIGNAL_STOP;
    ctl.reason = (char *)error;
    ctl.lease_epoch = fenced_epoch;
    snprintf(subject, sizeof subject, "%s%s", KX_SUBJ_RUN_CTL_PREFIX, run_id);
    kx_err err = kx_bus_publish_pb(bus, subject, &ctl.base, &meta);
    if (err != KX_OK)   /* not fatal: the runner's next fenced write fails anyway */
        kx_log(KX_LOG_WARN, run_id, NULL, "scheduler: STOP for reaped run %s not sent: %s",
               run_id, kx_err_str(err));

    char *payload = sched_terminal_payload(error);
    if (payload == NULL)
        return KX_ERR_NOMEM;
    Kx__V1__RunEvent ev = KX__V1__RUN_EVENT__INIT;
    ev.run_id = (char *)run_id;
    ev.lease_epoch = 0;
    ev.kind = KX__V1__RUN_EVENT_KIND__RUN_EVENT_KIND_STATUS;
    ev.terminal = true;
    ev.payload_json = payload;
    snprintf(subject, sizeof subject, "%s%s", KX_SUBJ_RUN_EV_PREFIX, run_id);
    err = kx_bus_js_publish_pb(bus, subject, &ev.base, &meta);
    free(payload);
    return err;
}

static void pending_add(scheduler *s, const char *run_id, const char *account_id,
                        int64_t fenced_epoch, const char *error)
{
    sched_pending_event *p = calloc(1, sizeof *p);
    if (p == NULL || s->npending >= MAX_PENDING || (p->error = strdup(error)) == NULL) {
        kx_log(KX_LOG_ERROR, run_id, NULL, "scheduler: terminal event of reaped run %s dropped "
               "(%zu waiting to be published)", run_id, s->npending);
        free(p);
        return;
    }
    snprintf(p->run_id, sizeof p->run_id, "%s", run_id);
    snprintf(p->account_id, sizeof p->account_id, "%s", account_id);
    p->fenced_epoch = fenced_epoch;
    if (s->pending_tail == NULL)
        s->pending_tail = &s->pending;
    *s->pending_tail = p;
    s->pending_tail = &p->next;
    s->npending++;
}

/* Publishes what earlier ticks could not, oldest first; stops at the first failure. */
static void pending_flush(scheduler *s)
{
    while (s->pending != NULL) {
        sched_pending_event *p = s->pending;
        if (publish_terminal(s, p->run_id, p->account_id, p->fenced_epoch, p->error) != KX_OK)
            return;
        kx_log(KX_LOG_INFO, p->run_id, NULL, "scheduler: late terminal event of run %s "
               "published", p->run_id);
        s->pending = p->next;
        if (s->pending == NULL)
            s->pending_tail = &s->pending;
        s->npending--;
        free(p->error);
        free(p);
    }
}

/* Called when Postgres and NATS both answer: ends a blind gap with one TTL of grace. */
static void see(scheduler *s)
{
    if (!s->blind)
        return;
    s->blind = false;
    s->blind_logged = false;
    s->lease_reap_after_ms = kx_mono_ms() + s->cfg.lease_ttl_ms;
    kx_info("scheduler: heartbeats can be applied again: expired leases are reaped from %lld ms "
            "on", (long long)s->cfg.lease_ttl_ms);
}

static void reap(scheduler *s)
{
    kx_err err = KX_OK;
    if (!kx_bus_connected(s->svc->bus))
        sched_blind(s);
    if (s->blind && !s->blind_logged) {
        kx_warn("scheduler: heartbeats cannot be applied: expired leases will not be reaped "
                "until one lease TTL after they can again");
        s->blind_logged = true;
    }
    bool reap_leases = !s->blind && kx_mono_ms() >= s->lease_reap_after_ms;
    PGresult *res = sched_store_reap(s, reap_leases, &err);
    if (res == NULL) {
        kx_warn("scheduler: reaper could not run: %s", kx_err_str(err));
        return;
    }
    if (kx_bus_connected(s->svc->bus))
        see(s);
    for (int i = 0; i < PQntuples(res); i++) {
        const char *run_id = PQgetvalue(res, i, 0);
        const char *owner = PQgetvalue(res, i, 1);
        const char *error = PQgetvalue(res, i, 2);
        int64_t epoch = strtoll(PQgetvalue(res, i, 3), NULL, 10);
        const char *account = PQgetvalue(res, i, 4);
        bool wall = strncmp(error, "exceeded max wall time", 22) == 0;
        kx_counter_add(kx_metrics_counter("kx_scheduler_runs_reaped_total",
                                          wall ? "reason=\"wall_time\""
                                               : "reason=\"lease_expired\"",
                                          "Runs failed by the reaper, by reason"),
                       1);
        kx_log(KX_LOG_WARN, run_id, NULL, "scheduler: reaped run %s (runner %s): %s", run_id,
               owner[0] ? owner : "unknown", error);
        /* After an earlier failure keep the order: queue behind what is waiting. */
        err = s->pending != NULL ? KX_ERR_UNAVAILABLE
                                 : publish_terminal(s, run_id, account, epoch - 1, error);
        if (err != KX_OK)
            pending_add(s, run_id, account, epoch - 1, error);
    }
    PQclear(res);
}

static void on_reaper_tick(kx_loop *loop, void *arg)
{
    scheduler *s = arg;
    s->reaper_timer = NULL;
    if (s->draining)
        return;
    if (atomic_load(&s->migrated)) {
        pending_flush(s);
        reap(s);
    }
    s->reaper_timer = kx_loop_timer(loop, s->cfg.reaper_interval_ms, on_reaper_tick, s);
    if (s->reaper_timer == NULL)
        kx_error("scheduler: could not re-arm the reaper timer: reaping stops");
}

void sched_reaper_start(scheduler *s)
{
    s->pending_tail = &s->pending;
    /* Heartbeats sent before this scheduler ran were not applied by anyone (if no other
     * replica runs): a TTL of grace before expired leases count. */
    s->blind = false;
    s->lease_reap_after_ms = kx_mono_ms() + s->cfg.lease_ttl_ms;
    s->reaper_timer = kx_loop_timer(s->svc->loop, s->cfg.reaper_interval_ms, on_reaper_tick, s);
    if (s->reaper_timer == NULL)
        kx_error("scheduler: could not arm the reaper timer: reaping stops");
}
