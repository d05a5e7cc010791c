/* bus_batch.c — kx_bus_js_publish_many: a batch of JetStream publishes, pipelined.
 *
 * kx_bus_js_publish_pb_ex waits for each message's ack before the next one leaves: n messages
 * cost n round trips to the stream. Here every message of the batch is sent first (cnats'
 * asynchronous publish, at most KX_BUS_MANY_MAX_PENDING unacknowledged at a time) and the acks
 * are collected as they come back, so a batch costs about one round trip plus the stream's
 * work. The call blocks until each message is settled (acknowledged, refused, or not
 * acknowledged within the wait): it is for worker threads, never for a loop thread.
 *
 * A bus has one batch publisher (kx_bus_batcher, made with the bus, freed by kx_bus_close): one
 * JetStream context kept for the bus's life, whose ack handler (a cnats thread) records into
 * the batch in flight, and a lock that lets one batch out at a time (the scheduler, its one
 * user, runs one admission pass at a time). A context per call cost a thread per call: cnats
 * gives each context's async-ack subscription a delivery thread of its own, started at its
 * first publish and joined at its destruction, plus a SUB and an UNSUB on the server.
 * Acks are matched to messages by the message pointer, which stays unique because every
 * message of the batch exists (is owned by cnats or by the batch) until the batch is settled.
 * When the wait runs out, the messages still pending are taken back from cnats
 * (js_PublishAsyncGetPendingList: with one batch at a time, all of them are this batch's), so
 * that no ack handler finds the batch after the call returns. */
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include "kx/bus.h"
#include "kx/log.h"
#include "kx/time.h"

typedef struct pub_batch {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    size_t n, settled, hint; /* n == 0: no batch in flight */
    natsMsg **msgs;          /* the messages as sent (only compared, never used once sent) */
    bool *done;
    uint64_t *seqs;
    natsStatus first_err;
} pub_batch;

struct kx_bus_batcher {
    pthread_mutex_t one; /* held by the call whose batch is in flight */
    jsCtx *js;           /* made by the first batch (under `one`), destroyed with the batcher */
    pub_batch b;         /* the batch in flight; its mu guards it against the ack handler */
};

kx_bus_batcher *kx_bus_batcher_new(void)
{
    kx_bus_batcher *bt = calloc(1, sizeof *bt);
    if (bt == NULL)
        return NULL;
    pthread_mutex_init(&bt->one, NULL);
    pthread_mutex_init(&bt->b.mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&bt->b.cv, &ca);
    pthread_condattr_destroy(&ca);
    return bt;
}

void kx_bus_batcher_free(kx_bus_batcher *bt)
{
    if (bt == NULL)
        return;
    jsCtx_Destroy(bt->js); /* no batch is in flight: the bus is closing */
    pthread_cond_destroy(&bt->b.cv);
    pthread_mutex_destroy(&bt->b.mu);
    pthread_mutex_destroy(&bt->one);
    free(bt);
}

/* Index of msg in the batch (acks mostly come back in order: hint first), n if not ours. */
static size_t find_msg(pub_batch *b, const natsMsg *msg)
{
    for (size_t k = 0; k < b->n; k++) {
        size_t i = (b->hint + k) % b->n;
        if (b->msgs[i] == msg && !b->done[i]) {
            b->hint = (i + 1) % b->n;
            return i;
        }
    }
    return b->n;
}

/* Under b->mu. */
static void settle(pub_batch *b, size_t i, uint64_t seq, natsStatus err)
{
    b->done[i] = true;
    b->seqs[i] = seq;
    if (err != NATS_OK && b->first_err == NATS_OK)
        b->first_err = err;
    if (++b->settled == b->n)
        pthread_cond_broadcast(&b->cv);
}

/* cnats thread: the outcome of one message. */
static void on_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure)
{
    (void)js;
    pub_batch *b = closure;
    pthread_mutex_lock(&b->mu);
    size_t i = find_msg(b, msg);
    if (i < b->n) {
        if (pa != NULL) {
            settle(b, i, pa->Sequence, NATS_OK);
        } else {
            natsStatus err = pae != NULL && pae->Err != NATS_OK ? pae->Err : NATS_ERR;
            kx_warn("bus: JetStream publish to %s failed: %s (code %d%s%s)",
                    natsMsg_GetSubject(msg), natsStatus_GetText(err),
                    pae != NULL ? (int)pae->ErrCode : 0,
                    pae != NULL && pae->ErrText != NULL ? ", " : "",
                    pae != NULL && pae->ErrText != NULL ? pae->ErrText : "");
            settle(b, i, 0, err);
        }
    }
    pthread_mutex_unlock(&b->mu);
    kx_bus_msg_free(msg);
}

/* Waits until every message is settled or until `until` (NULL: no limit). Under b->mu. */
static bool wait_settled(pub_batch *b, const struct timespec *until)
{
    while (b->settled < b->n) {
        if (until == NULL)
            pthread_cond_wait(&b->cv, &b->mu);
        else if (pthread_cond_timedwait(&b->cv, &b->mu, until) != 0)
            return b->settled == b->n;
    }
    return true;
}

/* Takes back the messages cnats still holds (no ack within the wait): settled as timed out. */
static void take_back(pub_batch *b, jsCtx *js)
{
    natsMsgList pending = {0};
    if (js_PublishAsyncGetPendingList(&pending, js) != NATS_OK)
        return;
    pthread_mutex_lock(&b->mu);
    for (int k = 0; k < pending.Count; k++) {
        size_t i = find_msg(b, pending.Msgs[k]);
        if (i < b->n)
            settle(b, i, 0, NATS_TIMEOUT);
    }
    pthread_mutex_unlock(&b->mu);
    natsMsgList_Destroy(&pending); /* destroys the messages too */
}

/* The batcher's context, made at its first batch (under bt->one). */
static natsStatus batcher_js(kx_bus *bus, kx_bus_batcher *bt, jsCtx **out)
{
    if (bt->js == NULL) {
        jsOptions jo;
        jsOptions_Init(&jo);
        jo.PublishAsync.MaxPending = KX_BUS_MANY_MAX_PENDING;
        /* a full window waits for room, not 200 ms: each message frees its place by its own
         * ack wait (cnats times it out) */
        jo.PublishAsync.StallWait = 600000;
        jo.PublishAsync.AckHandler = on_ack;
        jo.PublishAsync.AckHandlerClosure = &bt->b;
        natsStatus s = natsConnection_JetStream(&bt->js, kx_bus_conn(bus), &jo);
        if (s != NATS_OK) {
            bt->js = NULL;
            return s;
        }
    }
    *out = bt->js;
    return NATS_OK;
}

/* Ends the batch (b->mu held): a late ack handler finds none. */
static void batch_end(pub_batch *b)
{
    b->n = b->settled = b->hint = 0;
    b->msgs = NULL;
    b->done = NULL;
    b->seqs = NULL;
}

kx_err kx_bus_js_publish_many(kx_bus *bus, size_t n, natsMsg **msgs, int64_t ack_wait_ms,
                              uint64_t *seqs)
{
    for (size_t i = 0; i < n; i++)
        seqs[i] = 0;
    if (n == 0)
        return KX_OK;
    kx_err err = KX_OK;
    kx_bus_batcher *bt = kx_bus_batcher_of(bus);
    bool *done = calloc(n, sizeof *done);
    natsMsg **sent = calloc(n, sizeof *sent);
    if (bt == NULL || done == NULL || sent == NULL) {
        err = KX_ERR_NOMEM;
        goto out_free;
    }
    if (!kx_bus_connected(bus)) {
        kx_warn("bus: JetStream publish of %zu message(s): not connected to NATS", n);
        err = KX_ERR_UNAVAILABLE;
        goto out_free;
    }
    pthread_mutex_lock(&bt->one);
    jsCtx *js = NULL;
    natsStatus s = batcher_js(bus, bt, &js);
    if (s != NATS_OK) {
        pthread_mutex_unlock(&bt->one);
        kx_warn("bus: no JetStream context for a batch publish: %s", natsStatus_GetText(s));
        err = kx_bus_status_err(s);
        goto out_free;
    }
    pub_batch *b = &bt->b;
    pthread_mutex_lock(&b->mu);
    b->n = n;
    b->settled = b->hint = 0;
    b->msgs = sent;
    b->done = done;
    b->seqs = seqs;
    b->first_err = NATS_OK;
    pthread_mutex_unlock(&b->mu);

    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = ack_wait_ms;
    for (size_t i = 0; i < n; i++) {
        /* recorded before it leaves: its ack may come back before the call returns */
        pthread_mutex_lock(&b->mu);
        sent[i] = msgs[i];
        pthread_mutex_unlock(&b->mu);
        natsMsg *m = msgs[i];
        msgs[i] = NULL;
        s = js_PublishMsgAsync(js, &m, &po); /* on success cnats owns m (and clears it) */
        if (s != NATS_OK) {
            kx_warn("bus: JetStream publish to %s not sent: %s", natsMsg_GetSubject(sent[i]),
                    natsStatus_GetText(s));
            pthread_mutex_lock(&b->mu);
            settle(b, i, 0, s);
            sent[i] = NULL; /* destroyed now: its address may be reused */
            pthread_mutex_unlock(&b->mu);
            kx_bus_msg_free(m);
        }
    }
    /* every ack, or the wait (plus a margin for cnats' own timeout to fire first) */
    struct timespec until = kx_abs_timespec_in_ms(CLOCK_MONOTONIC, ack_wait_ms + 1000);
    pthread_mutex_lock(&b->mu);
    bool all = wait_settled(b, &until);
    pthread_mutex_unlock(&b->mu);
    if (!all) {
        take_back(b, js);
        /* what is neither settled nor taken back is in an ack handler right now */
        until = kx_abs_timespec_in_ms(CLOCK_MONOTONIC, ack_wait_ms + 1000);
        pthread_mutex_lock(&b->mu);
        all = wait_settled(b, &until);
        pthread_mutex_unlock(&b->mu);
        if (!all) /* cannot happen by cnats' contract; the batch ends anyway (below) */
            kx_error("bus: %zu JetStream publish(es) never settled; counted as not acknowledged",
                     n - b->settled);
    }
    pthread_mutex_lock(&b->mu);
    err = all ? kx_bus_status_err(b->first_err) : KX_ERR_TIMEOUT;
    batch_end(b);
    pthread_mutex_unlock(&b->mu);
    pthread_mutex_unlock(&bt->one);
out_free:
    for (size_t i = 0; i < n; i++) { /* those never handed to cnats */
        kx_bus_msg_free(msgs[i]);
        msgs[i] = NULL;
    }
    free(sent);
    free(done);
    return err;
}
