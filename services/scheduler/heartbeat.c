/* heartbeat.c — kx.run.hb (core NATS requests, queue group "scheduler" so that one replica
 * handles each heartbeat). A kx.v1.RunnerHeartbeat renews the runner's ONE lease row
 * (runner_leases) — one upsert whatever the number of runs it holds — and is answered with a
 * kx.v1.RunnerHeartbeatAnswer listing the leases that runner lost since it last asked
 * (lease_revocations: stopped, reaped or handed back runs, at most SCHED_HB_MAX_REVOKED), so
 * that it drops them at once instead of working on until its next fenced write.
 *
 * The message is checked on the loop; the upsert and the answer are a job on a database
 * thread (keyed by runner id: one runner's heartbeats stay in order), so an answer never waits
 * for the loop and the loop never waits for Postgres.
 *
 * "Runner silent" versus "I could not hear it": a heartbeat that could not be written
 * (Postgres down or timing out, the database threads' queue full), or that took over half a TTL
 * from the loop's hand-off to its write (a slow Postgres, a long queue), makes the scheduler
 * blind: the reaper then does not reap expired leases until
 * one TTL after heartbeats land promptly again (reaper.c). The answer says applied = false
 * when the lease was not renewed. */
#include <stdlib.h>
#include <string.h>

#include "kx/log.h"
#include "kx/metrics.h"
#include "kx/pb.h"
#include "kx/time.h"
#include "sched.h"

static void answer(scheduler *s, natsMsg *req, const Kx__V1__RunnerHeartbeatAnswer *a)
{
    if (natsMsg_GetReply(req) == NULL || natsMsg_GetReply(req)[0] == '\0')
        return; /* an old runner publishing without a reply subject */
    kx_err err = kx_bus_respond_pb(s->svc->bus, req, &a->base);
    if (err != KX_OK)
        kx_warn("scheduler: heartbeat answer not sent: %s", kx_err_str(err));
}

/* Answers applied = false (the lease was not renewed), then frees the request. */
static void refuse(scheduler *s, natsMsg *msg, Kx__V1__RunnerHeartbeat *hb)
{
    Kx__V1__RunnerHeartbeatAnswer a = KX__V1__RUNNER_HEARTBEAT_ANSWER__INIT;
    a.lease_ttl_ms = s->cfg.lease_ttl_ms;
    answer(s, msg, &a);
    kx_bus_msg_free(msg);
    kx_pb_free(hb);
}

/* One heartbeat being written on a database thread. */
typedef struct hb_job {
    scheduler *s;
    natsMsg *msg;
    Kx__V1__RunnerHeartbeat *hb;
    int64_t queued_ms; /* monotonic: when the loop queued it */
} hb_job;

/* Database thread: the upsert, and the answer (sent from here: cnats publishes from any
 * thread). */
static void hb_run(kx_db *db, void *arg)
{
    hb_job *j = arg;
    scheduler *s = j->s;
    Kx__V1__RunnerHeartbeat *hb = j->hb;
    Kx__V1__RunnerHeartbeatAnswer a = KX__V1__RUNNER_HEARTBEAT_ANSWER__INIT;
    a.lease_ttl_ms = s->cfg.lease_ttl_ms;
    kx_err err = KX_OK;
    PGresult *res =
        sched_store_heartbeat(s, db, hb->runner_id, hb->capacity, hb->revoked_since_ms, &err);
    /* from the loop's hand-off: a heartbeat that waited in the queue was late as well */
    int64_t took = kx_mono_ms() - j->queued_ms;
    Kx__V1__RunLease *leases = NULL, **ptrs = NULL;
    if (res == NULL) {
        /* sched_store_heartbeat made the scheduler blind already */
        kx_warn("scheduler: heartbeat of runner %s not applied: %s", hb->runner_id,
                kx_err_str(err));
    } else {
        if (took > s->cfg.lease_ttl_ms / 2) {
            kx_warn("scheduler: heartbeat of runner %s took %lld ms to write: not reaping "
                    "expired leases for a while",
                    hb->runner_id, (long long)took);
            sched_blind(s);
        }
        int n = PQntuples(res);
        leases = calloc((size_t)(n > 0 ? n : 1), sizeof *leases);
        ptrs = calloc((size_t)(n > 0 ? n : 1), sizeof *ptrs);
        if (leases != NULL && ptrs != NULL) {
            a.applied = true;
            for (int i = 0; i < n; i++) {
                if (PQgetisnull(res, i, 0)) { /* the watermark row */
                    if (a.watermark_ms == 0)
                        a.watermark_ms = strtoll(PQgetvalue(res, i, 2), NULL, 10);
                    continue;
                }
                kx__v1__run_lease__init(&leases[a.n_revoked]);
                leases[a.n_revoked].run_id = PQgetvalue(res, i, 0);
                leases[a.n_revoked].lease_epoch = strtoll(PQgetvalue(res, i, 1), NULL, 10);
                ptrs[a.n_revoked] = &leases[a.n_revoked];
                a.n_revoked++;
            }
            a.revoked = ptrs;
            if (a.n_revoked >= SCHED_HB_MAX_REVOKED) {
                /* more to come: the runner asks again from the last one's time */
                a.truncated = true;
                a.watermark_ms = strtoll(PQgetvalue(res, (int)a.n_revoked - 1, 2), NULL, 10);
            }
        }
        kx_counter_add(kx_metrics_counter("kx_scheduler_heartbeats_total", "",
                                          "Runner heartbeats applied (one row each)"),
                       1);
    }
    answer(s, j->msg, &a);
    free(leases);
    free(ptrs);
    PQclear(res);
}

/* Loop (or shutdown): release. */
static void hb_done(void *arg, kx_err err)
{
    hb_job *j = arg;
    if (err != KX_OK && !j->s->loop_over) { /* never written (shutdown began): not applied */
        refuse(j->s, j->msg, j->hb);
    } else {
        kx_bus_msg_free(j->msg);
        kx_pb_free(j->hb);
    }
    free(j);
}

static void on_heartbeat(natsMsg *msg, void *arg)
{
    scheduler *s = arg;
    Kx__V1__RunnerHeartbeat *hb =
        kx_pb_unpack(&kx__v1__runner_heartbeat__descriptor, natsMsg_GetData(msg),
                     (size_t)natsMsg_GetDataLength(msg));
    if (hb == NULL || kx_pb_str_empty(hb->runner_id) || strlen(hb->runner_id) > 200) {
        kx_warn("scheduler: ignoring a kx.run.hb message that is not a kx.v1.RunnerHeartbeat "
                "with a runner_id of at most 200 bytes");
        refuse(s, msg, hb);
        return;
    }
    if (atomic_load(&s->draining) || !atomic_load(&s->migrated)) {
        refuse(s, msg, hb); /* not written */
        return;
    }
    if (hb->sent_at_ms > 0 && kx_now_ms() - hb->sent_at_ms > s->cfg.lease_ttl_ms / 2) {
        kx_warn("scheduler: heartbeat of runner %s reached us %lld ms after it was sent: not "
                "reaping expired leases for a while",
                hb->runner_id, (long long)(kx_now_ms() - hb->sent_at_ms));
        sched_blind(s);
    }
    hb_job *j = calloc(1, sizeof *j);
    if (j != NULL) {
        j->s = s;
        j->msg = msg;
        j->hb = hb;
        j->queued_ms = kx_mono_ms();
    }
    if (j == NULL || sched_job(s, hb->runner_id, hb_run, hb_done, j) != KX_OK) {
        kx_warn("scheduler: heartbeat of runner %s not applied: database threads busy",
                hb->runner_id);
        sched_blind(s); /* it could not be heard: not the runner's fault */
        refuse(s, msg, hb);
        free(j);
    }
}

kx_err sched_heartbeat_subscribe(scheduler *s)
{
    kx_err err = kx_bus_subscribe_loop(s->svc->bus, s->svc->loop, KX_SUBJ_RUN_HB,
                                       KX_CONSUMER_SCHEDULER, on_heartbeat, s, &s->hb_sub);
    if (err != KX_OK)
        kx_error("scheduler: cannot subscribe to %s: %s", KX_SUBJ_RUN_HB, kx_err_str(err));
    return err;
}
