/* dispatch.c — the fetcher thread and the loop-side handling of RunDispatch messages (see
 * dispatch.h). The consumer is created explicitly (js_AddConsumer) and pulled through
 * kx/js_pull.h (not cnats' natsSubscription_Fetch, which overflows its array on bursts in the
 * cnats we build with); letting go of the puller never deletes the durable that every runner
 * replica shares. */
#include "dispatch.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "kx/js_pull.h"
#include "kx/log.h"
#include "kx/metrics.h"
#include "kx/pb.h"
#include "kx/uuid.h"
#include "rdb.h"
#include "run.h"
#include "store.h"

#define ACK_WAIT_NS (30LL * 1000 * 1000 * 1000)
#define MAX_BATCH 64
#define FETCH_TIMEOUT_MS 1000
#define IDLE_SLEEP_US (100 * 1000)
#define RETRY_SLEEP_US (1000 * 1000)

struct dispatch {
    runner *r;
    pthread_t thread;
    bool started;
    atomic_bool stop;
    kx_js_pull *pull; /* fetcher thread only (until joined) */
};

typedef struct posted {
    runner *r;
    natsMsg *msg;
} posted;

/* ---- loop side ---------------------------------------------------------------------- */

/* A dispatch the loop never ran (it shut down first): not acked, so the stream redelivers it. */
static void drop_posted(void *arg)
{
    posted *p = arg;
    kx_bus_msg_free(p->msg);
    free(p);
}

/* One claim, on a database thread (rdb.h). The dispatch's slot stays reserved until it is
 * back, so the fetcher never takes more than the capacity.
 *
 * The claim brings the run's first reads along: the thread the dispatch names, read by a
 * statement of its own, and the run's agent, which the claim statement itself returns
 * (store.h). The two statements go out as ONE pipeline, one round trip and one implicit
 * transaction, the read first — a read that fails makes Postgres skip the claim behind it, so
 * it never takes a claim down with it (the claim then runs alone), and a claim that fails
 * undoes nothing but itself. What was read is used only when the claim won and named the same
 * thread, and the agent's stored config could be read (the run's first turn then reads
 * nothing: run_start); else it is dropped and the run reads as before (runner_agent and the
 * thread: a config that cannot be read fails the run there, with the reason). A lost
 * connection: the pipeline runs once more, whole, with the same claim id (the claim recognises
 * its own success, store.h). */
typedef struct claim_job {
    rdb_job base;
    natsMsg *msg;
    Kx__V1__RunDispatch *d;
    kx_bus_meta meta;
    const char *owner; /* the runner's instance id (static for the process) */
    int64_t ttl_ms;
    int64_t read_bytes; /* the first load's bound (KX_CONTEXT_READ_MAX_MB) */
    char claim_id[KX_UUID_LEN + 1];
    kx_err err;
    dispatch_claimed got;
} claim_job;

static kx_err claim_pipelined(kx_db *db, const char *run_id, const char *thread_id,
                              const char *owner, int64_t ttl_ms, int64_t read_bytes,
                              const char *claim_id, dispatch_claimed *out, store_agent *agent)
{
    kx_err err = kx_db_pipe_begin(db);
    if (err == KX_OK) {
        (void)run_ops_load_send(db, run_id, thread_id, false, read_bytes);
        (void)store_claim_run_send(db, run_id, owner, ttl_ms, claim_id);
        char why[400];
        out->preloaded = run_ops_load_recv(db, false, &out->first, why, sizeof why) == KX_OK;
        err = store_claim_run_recv(db, &out->claimed, &out->claim, agent);
    }
    kx_db_pipe_end(db);
    return err;
}

kx_err dispatch_claim(kx_db *db, const char *run_id, const char *thread_id, const char *owner,
                      int64_t ttl_ms, int64_t read_bytes, const char *claim_id,
                      dispatch_claimed *out)
{
    out->claimed = out->preloaded = false;
    bool preload = thread_id != NULL && kx_uuid_valid(thread_id);
    store_agent agent = {0};
    kx_err err = KX_ERR_CANCELLED;
    for (int i = 0; i < 2 && preload; i++)
        if ((err = claim_pipelined(db, run_id, thread_id, owner, ttl_ms, read_bytes, claim_id, out,
                                   &agent)) != KX_ERR_UNAVAILABLE)
            break;
    if (err == KX_ERR_CANCELLED) /* no thread named, or a read failed: the claim alone */
        err = store_claim_run_as(db, run_id, owner, ttl_ms, claim_id, &out->claimed, &out->claim,
                                 NULL);
    if (err == KX_ERR_NOMEM && out->claimed) { /* ours, its agent not kept: read again later */
        err = KX_OK;
        out->preloaded = false;
    }
    if (!preload || err != KX_OK || !out->claimed ||
        strcasecmp(out->claim.thread_id, thread_id) != 0)
        out->preloaded = false;
    if (out->preloaded) {
        char why[400];
        if (agent_config_from_row(&agent, &out->first.agent, why, sizeof why) == KX_OK)
            out->first.agent_loaded = true;
        else { /* the run reads it again, and fails with why (run_ops_load) */
            agent_config_clear(&out->first.agent);
            out->preloaded = false;
        }
    }
    store_agent_clear(&agent);
    if (!out->preloaded)
        run_loaded_clear(&out->first);
    return err;
}

static void claim_run(kx_db *db, rdb_job *j)
{
    claim_job *c = (claim_job *)j;
    c->err = dispatch_claim(db, c->d->run_id, c->d->thread_id, c->owner, c->ttl_ms, c->read_bytes,
                            c->claim_id, &c->got);
}

static void claim_free(claim_job *c)
{
    kx_bus_msg_free(c->msg); /* unacked: JetStream redelivers it after AckWait */
    kx_pb_free(c->d);
    run_loaded_clear(&c->got.first);
    free(c);
}

static void claim_done(rdb_job *j, bool live)
{
    claim_job *c = (claim_job *)j;
    if (!live) {
        claim_free(c);
        return;
    }
    runner *r = j->owner;
    atomic_fetch_sub(&r->reserved, 1);
    const char *run_id = c->d->run_id;
    if (c->err != KX_OK) {
        /* Postgres trouble: leave the message unacked; JetStream redelivers it after AckWait
         * (a Nak would bring it back at once, in a tight loop while Postgres is down). */
        if (c->err == KX_ERR_UNAVAILABLE || c->err == KX_ERR_TIMEOUT)
            atomic_store(&r->db_ok, false);
        kx_log(KX_LOG_ERROR, run_id, NULL,
               "dispatch: claim failed (%s); the dispatch will be redelivered",
               kx_err_str(c->err));
        claim_free(c);
        return;
    }
    atomic_store(&r->db_ok, true);
    kx_js_ack(r->bus, c->msg);
    if (!c->got.claimed) {
        kx_log(KX_LOG_INFO, run_id, NULL,
               "dispatch: run is not queued (taken or stopped); "
               "dispatch dropped");
        kx_counter_add(kx_metrics_counter("kx_runner_dispatches_total", "result=\"dropped\"",
                                          "Dispatches handled, by outcome"),
                       1);
        claim_free(c);
        return;
    }
    kx_counter_add(kx_metrics_counter("kx_runner_dispatches_total", "result=\"claimed\"",
                                      "Dispatches handled, by outcome"),
                   1);
    /* The wall time counts from the claim (started_at), as the reaper counts it: a run that
     * waited in a backlog gets its whole wall time. The dispatch's wall_deadline_ms is only
     * the deadline of the dispatch message itself. A run claimed while draining starts too:
     * the drain hands it back. */
    kx_err err = run_start(r, run_id, &c->got.claim,
                           c->got.claim.started_at_ms + r->cfg->wall_time_s * 1000, &c->meta,
                           c->got.preloaded ? &c->got.first : NULL);
    if (err != KX_OK) /* claimed but not started (out of memory): fail it, not the reaper */
        rdb_fail_run(r, run_id, c->got.claim.epoch,
                     "internal error: the agent-runner could not start the run (out of "
                     "memory)");
    claim_free(c);
}

static void handle_dispatch(kx_loop *loop, void *arg)
{
    posted *p = arg;
    runner *r = p->r;
    natsMsg *msg = p->msg;
    free(p);

    if (r->draining) { /* let another runner have it */
        atomic_fetch_sub(&r->reserved, 1);
        kx_js_nak(r->bus, msg);
        kx_bus_msg_free(msg);
        return;
    }
    Kx__V1__RunDispatch *d = kx_pb_unpack(&kx__v1__run_dispatch__descriptor, natsMsg_GetData(msg),
                                          (size_t)natsMsg_GetDataLength(msg));
    if (d == NULL || !kx_uuid_valid(d->run_id)) {
        atomic_fetch_sub(&r->reserved, 1);
        kx_error("dispatch: dropping a message on %s that is not a valid kx.v1.RunDispatch "
                 "(%d bytes%s)",
                 natsMsg_GetSubject(msg), natsMsg_GetDataLength(msg),
                 d ? ", run_id is not a UUID" : "");
        kx_js_term(r->bus, msg);
        kx_bus_msg_free(msg);
        kx_pb_free(d);
        return;
    }
    if (runner_find(r, d->run_id) != NULL) { /* a redelivery of a run we already run */
        atomic_fetch_sub(&r->reserved, 1);
        kx_log(KX_LOG_INFO, d->run_id, NULL, "dispatch: already held; duplicate acked");
        kx_js_ack(r->bus, msg);
        kx_bus_msg_free(msg);
        kx_pb_free(d);
        return;
    }
    claim_job *c = calloc(1, sizeof *c);
    if (c == NULL) {
        atomic_fetch_sub(&r->reserved, 1);
        kx_log(KX_LOG_ERROR, d->run_id, NULL,
               "dispatch: out of memory claiming the run; the dispatch will be redelivered");
        kx_bus_msg_free(msg);
        kx_pb_free(d);
        return;
    }
    c->msg = msg;
    c->d = d;
    if (kx_bus_meta_read(msg, &c->meta) != KX_OK)
        memset(&c->meta, 0, sizeof c->meta);
    c->owner = r->instance_id;
    c->ttl_ms = r->cfg->lease_ttl_ms;
    c->read_bytes = r->cfg->context_read_bytes;
    kx_uuid_new(c->claim_id);
    if (rdb_submit(r, d->run_id, &c->base, claim_run, claim_done) != KX_OK) {
        atomic_fetch_sub(&r->reserved, 1);
        kx_log(KX_LOG_ERROR, d->run_id, NULL,
               "dispatch: the database queue is full; the dispatch will be redelivered");
        claim_free(c);
    }
}

/* ---- the fetcher thread ---------------------------------------------------------------- */

/* Creates (or finds) the durable consumer and binds a puller to it. */
static kx_err subscribe(dispatch *d)
{
    jsConsumerConfig cc;
    jsConsumerConfig_Init(&cc);
    cc.Durable = KX_CONSUMER_RUNNERS;
    cc.AckPolicy = js_AckExplicit;
    cc.AckWait = ACK_WAIT_NS;
    cc.FilterSubject = KX_SUBJ_RUN_DISPATCH;
    if (kx_bus_ensure_consumer(d->r->bus, KX_STREAM_DISPATCH, &cc) != KX_OK)
        return KX_ERR_UNAVAILABLE;
    kx_err err = kx_js_pull_new(d->r->bus, KX_STREAM_DISPATCH, KX_CONSUMER_RUNNERS, &d->pull);
    if (err != KX_OK) {
        kx_warn("dispatch: could not pull %s (consumer %s): %s; retrying", KX_SUBJ_RUN_DISPATCH,
                KX_CONSUMER_RUNNERS, kx_err_str(err));
        return err;
    }
    kx_info("dispatch: pulling %s (stream %s, consumer %s)", KX_SUBJ_RUN_DISPATCH,
            KX_STREAM_DISPATCH, KX_CONSUMER_RUNNERS);
    return KX_OK;
}

static void *fetcher(void *arg)
{
    dispatch *d = arg;
    runner *r = d->r;
    while (!atomic_load(&d->stop)) {
        if (d->pull == NULL && subscribe(d) != KX_OK) {
            usleep(RETRY_SLEEP_US);
            continue;
        }
        int batch = runner_free_slots(r);
        if (batch > MAX_BATCH)
            batch = MAX_BATCH;
        if (batch <= 0) {
            usleep(IDLE_SLEEP_US);
            continue;
        }
        natsMsg *msgs[MAX_BATCH];
        int count = 0;
        kx_err err = kx_js_pull_fetch(d->pull, batch, FETCH_TIMEOUT_MS, msgs, &count);
        if (err != KX_OK) {
            kx_warn("dispatch: pulling %s failed (%s); making the consumer again",
                    KX_SUBJ_RUN_DISPATCH, kx_err_str(err));
            kx_js_pull_free(d->pull); /* what it still queued is redelivered after AckWait */
            d->pull = NULL;
        }
        for (int i = 0; i < count; i++) {
            natsMsg *m = msgs[i];
            posted *p = malloc(sizeof *p);
            atomic_fetch_add(&r->reserved, 1);
            if (p != NULL) {
                p->r = r;
                p->msg = m;
            }
            if (p == NULL ||
                kx_loop_post_owned(r->loop, handle_dispatch, p, drop_posted) != KX_OK) {
                atomic_fetch_sub(&r->reserved, 1);
                kx_error("dispatch: out of memory handing a dispatch to the loop; it will be "
                         "redelivered");
                free(p);
                kx_bus_msg_free(m);
            }
        }
        if (err != KX_OK)
            usleep(RETRY_SLEEP_US);
    }
    return NULL;
}

kx_err dispatch_start(runner *r, dispatch **out)
{
    *out = NULL;
    dispatch *d = calloc(1, sizeof *d);
    if (d == NULL)
        return KX_ERR_NOMEM;
    d->r = r;
    atomic_init(&d->stop, false);
    if (pthread_create(&d->thread, NULL, fetcher, d) != 0) {
        kx_error("dispatch: could not start the fetcher thread");
        free(d);
        return KX_ERR_INTERNAL;
    }
    d->started = true;
    *out = d;
    return KX_OK;
}

void dispatch_stop(dispatch *d)
{
    if (d != NULL)
        atomic_store(&d->stop, true);
}

void dispatch_free(dispatch *d)
{
    if (d == NULL)
        return;
    dispatch_stop(d);
    if (d->started)
        pthread_join(d->thread, NULL);
    kx_js_pull_free(d->pull); /* keeps the durable consumer */
    free(d);
}
