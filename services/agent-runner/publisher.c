/* publisher.c — bounded, never-blocking, never-silent publishing of run events (see
 * publisher.h). The FIFO lives on the loop thread; `inflight` and `queued` are atomics because
 * the ack handler (a cnats thread) reads and changes them. */
#include "publisher.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "events.h"
#include "kx/log.h"
#include "kx/metrics.h"
#include "kx/run_events.h"

#define HDR_ATTEMPT "Kx-Ev-Attempt" /* 1, 2, 3; "error" on a replacement error event */
#define MAX_ATTEMPTS 3
#define RETRY_BASE_MS 200

struct publisher {
    kx_bus *bus;
    kx_bus *own; /* the buffered connection of its own, or NULL (events go on bus) */
    kx_loop *loop;
    jsCtx *js;
    int64_t max_pending;
    int64_t ack_wait_ms;
    atomic_llong inflight;
    atomic_llong queued;
    atomic_bool drain_posted;
    natsMsg **q; /* ring: loop thread only */
    size_t qhead, qlen, qcap;
    /* looked up once: a lookup takes the registry's lock, and acks come from cnats' thread */
    kx_counter *published, *retried, *failed;
    kx_gauge *g_inflight, *g_queued;
};

/* What an ack handler hands to the loop when a publish failed. */
typedef struct failure {
    publisher *p;
    natsMsg *msg;
    natsStatus status;
    char why[200];
} failure;

static void gauges(publisher *p)
{
    kx_gauge_set(p->g_inflight, atomic_load(&p->inflight));
    kx_gauge_set(p->g_queued, atomic_load(&p->queued));
}

static void drain(kx_loop *loop, void *arg);
static void on_failure(kx_loop *loop, void *arg);

static int attempt_of(natsMsg *m)
{
    const char *v = NULL;
    if (natsMsgHeader_Get(m, HDR_ATTEMPT, &v) != NATS_OK || v == NULL)
        return 1;
    if (strcmp(v, "error") == 0)
        return MAX_ATTEMPTS + 1;
    char *end = NULL;
    long n = strtol(v, &end, 10);
    return end != v && n > 0 && n <= MAX_ATTEMPTS ? (int)n : 1;
}

/* ---- sending (loop thread) ---- */

static void fail_now(publisher *p, natsMsg *m, natsStatus s, const char *why)
{
    failure *f = calloc(1, sizeof *f);
    if (f == NULL) {
        kx_error("events: out of memory handling a failed publish to %s (%s); it is lost",
                 natsMsg_GetSubject(m), why);
        kx_bus_msg_free(m);
        return;
    }
    f->p = p;
    f->msg = m;
    f->status = s;
    snprintf(f->why, sizeof f->why, "%s", why);
    on_failure(p->loop, f);
}

/* Hands m to cnats (which takes it) with the ack deadline; a refusal here is a failure. */
static void send_one(publisher *p, natsMsg *m)
{
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = p->ack_wait_ms;
    atomic_fetch_add(&p->inflight, 1);
    natsStatus s = js_PublishMsgAsync(p->js, &m, &po);
    if (s != NATS_OK) {
        atomic_fetch_sub(&p->inflight, 1);
        fail_now(p, m, s, natsStatus_GetText(s));
    }
}

static bool enqueue(publisher *p, natsMsg *m)
{
    if (p->qlen == p->qcap) {
        size_t cap = p->qcap ? p->qcap * 2 : 1024;
        natsMsg **nq = malloc(cap * sizeof *nq);
        if (nq == NULL)
            return false;
        for (size_t i = 0; i < p->qlen; i++)
            nq[i] = p->q[(p->qhead + i) % p->qcap];
        free(p->q);
        p->q = nq;
        p->qcap = cap;
        p->qhead = 0;
    }
    p->q[(p->qhead + p->qlen) % p->qcap] = m;
    p->qlen++;
    atomic_fetch_add(&p->queued, 1);
    return true;
}

/* Sends queued events while there is room under the bound (all of them when all is set). */
static void drain_queue(publisher *p, bool all)
{
    while (p->qlen > 0 && (all || atomic_load(&p->inflight) < p->max_pending)) {
        natsMsg *m = p->q[p->qhead];
        p->qhead = (p->qhead + 1) % p->qcap;
        p->qlen--;
        atomic_fetch_sub(&p->queued, 1);
        send_one(p, m);
    }
    gauges(p);
}

static void drain(kx_loop *loop, void *arg)
{
    publisher *p = arg;
    atomic_store(&p->drain_posted, false);
    drain_queue(p, false);
}

/* Sends m now, or queues it behind the bound (and behind what is queued: order is kept). */
static void submit(publisher *p, natsMsg *m)
{
    if (p->qlen == 0 && atomic_load(&p->inflight) < p->max_pending) {
        send_one(p, m);
        return;
    }
    if (!enqueue(p, m)) { /* no memory for the queue: better over the bound than lost */
        send_one(p, m);
        return;
    }
    /* the acks may all have come back between the check and the enqueue */
    if (atomic_load(&p->inflight) < p->max_pending)
        drain_queue(p, false);
}

/* ---- failures (loop thread) ---- */

static void resend(kx_loop *loop, void *arg)
{
    failure *f = arg;
    submit(f->p, f->msg);
    free(f);
}

static void dispose_failure(void *arg)
{
    failure *f = arg;
    kx_bus_msg_free(f->msg);
    free(f);
}

/* The error event that stands in for the failed message m (one event, or a batch: one error
 * event for the whole batch, which failed as one). */
static void publish_error_for(publisher *p, natsMsg *m, const char *why)
{
    const char *subject = natsMsg_GetSubject(m);
    Kx__V1__RunEvent *ev = kx_pb_unpack(&kx__v1__run_event__descriptor, natsMsg_GetData(m),
                                        (size_t)natsMsg_GetDataLength(m));
    if (ev == NULL) {
        kx_error("events: a failed event on %s cannot be read back; lost: %s", subject, why);
        return;
    }
    size_t n = kx_run_events_n(ev);
    unsigned long long first = (unsigned long long)kx_run_events_at(ev, 0)->seq;
    unsigned long long last = (unsigned long long)kx_run_events_at(ev, n - 1)->seq;
    char message[320];
    if (n == 1)
        snprintf(message, sizeof message, "event %llu could not be streamed: %s", first, why);
    else
        snprintf(message, sizeof message, "events %llu-%llu could not be streamed: %s", first,
                 last, why);
    char *payload = events_status_json("error", message);
    Kx__V1__RunEvent err = KX__V1__RUN_EVENT__INIT;
    err.run_id = ev->run_id;
    err.lease_epoch = ev->lease_epoch;
    err.seq = first;
    err.kind = KX__V1__RUN_EVENT_KIND__RUN_EVENT_KIND_STATUS;
    err.terminal = false;
    err.payload_json = payload;
    kx_bus_meta meta;
    kx_bus_meta_read(m, &meta);
    natsMsg *em = NULL;
    if (payload != NULL && kx_bus_pb_msg(subject, &err.base, &meta, &em) == KX_OK &&
        natsMsgHeader_Set(em, HDR_ATTEMPT, "error") == NATS_OK) {
        kx_log(KX_LOG_ERROR, ev->run_id, NULL, "events: %s on %s (%zu event(s))", message, subject,
               n);
        submit(p, em);
    } else {
        kx_bus_msg_free(em);
        kx_log(KX_LOG_ERROR, ev->run_id, NULL,
               "events: %s on %s, and no error event could be built", message, subject);
    }
    free(payload);
    kx_pb_free(ev);
}

static void on_failure(kx_loop *loop, void *arg)
{
    failure *f = arg;
    publisher *p = f->p;
    int attempt = attempt_of(f->msg);
    if (attempt > MAX_ATTEMPTS) { /* an error event that failed too: only the log is left */
        kx_error("events: the error event on %s failed too: %s", natsMsg_GetSubject(f->msg),
                 f->why);
        dispose_failure(f);
        return;
    }
    /* A timeout may hide a stored event: retrying could stream it twice. */
    if (f->status != NATS_TIMEOUT && attempt < MAX_ATTEMPTS) {
        char next[16];
        snprintf(next, sizeof next, "%d", attempt + 1);
        if (natsMsgHeader_Set(f->msg, HDR_ATTEMPT, next) == NATS_OK &&
            kx_loop_timer(p->loop, (int64_t)RETRY_BASE_MS * attempt, resend, f) != NULL) {
            kx_counter_add(p->retried, 1);
            kx_warn("events: publish to %s failed (%s); retry %d of %d",
                    natsMsg_GetSubject(f->msg), f->why, attempt, MAX_ATTEMPTS - 1);
            return;
        }
    }
    kx_counter_add(p->failed, 1);
    publish_error_for(p, f->msg, f->why);
    dispose_failure(f);
}

/* ---- acks (cnats thread) ---- */

static void on_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure)
{
    publisher *p = closure;
    atomic_fetch_sub(&p->inflight, 1);
    if (pae == NULL) {
        kx_counter_add(p->published,
                       kx_run_events_count_packed(natsMsg_GetData(msg),
                                                  (size_t)natsMsg_GetDataLength(msg)));
        kx_bus_msg_free(msg);
    } else {
        failure *f = calloc(1, sizeof *f);
        if (f == NULL) {
            kx_error("events: publish to %s failed and no memory is left to say so",
                     natsMsg_GetSubject(msg));
            kx_bus_msg_free(msg);
        } else {
            f->p = p;
            f->msg = msg; /* ours now: not destroyed here */
            f->status = pae->Err;
            snprintf(f->why, sizeof f->why, "%s%s%s", natsStatus_GetText(pae->Err),
                     pae->ErrText ? ": " : "", pae->ErrText ? pae->ErrText : "");
            if (kx_loop_post_owned(p->loop, on_failure, f, dispose_failure) != KX_OK)
                dispose_failure(f);
        }
    }
    if (atomic_load(&p->queued) > 0 && !atomic_exchange(&p->drain_posted, true) &&
        kx_loop_post(p->loop, drain, p) != KX_OK)
        atomic_store(&p->drain_posted, false);
}

/* ---- API ---- */

kx_err publisher_new(kx_bus *bus, kx_loop *loop, int64_t max_pending, int64_t ack_wait_ms,
                     bool own_conn, publisher **out)
{
    *out = NULL;
    publisher *p = calloc(1, sizeof *p);
    if (p == NULL)
        return KX_ERR_NOMEM;
    p->bus = bus;
    p->loop = loop;
    p->max_pending = max_pending > 0 ? max_pending : 1;
    p->ack_wait_ms = ack_wait_ms > 0 ? ack_wait_ms : 10000;
    p->published = kx_metrics_counter("kx_runner_events_published_total", "",
                                      "Run events stored by JetStream");
    p->retried = kx_metrics_counter("kx_runner_events_retried_total", "",
                                    "Run event publishes retried after a failure");
    p->failed =
        kx_metrics_counter("kx_runner_events_failed_total", "",
                           "Run events that could not be streamed (an error event stands in)");
    p->g_inflight = kx_metrics_gauge("kx_runner_events_inflight", "",
                                     "Run event publishes waiting for their JetStream ack");
    p->g_queued = kx_metrics_gauge("kx_runner_events_queued", "",
                                   "Run events queued behind the in-flight bound");
    if (own_conn) {
        kx_err err = kx_bus_connect_sibling(bus, "-events", KX_BUS_BUFFERED, &p->own);
        if (err != KX_OK) {
            kx_error("events: cannot open the events' NATS connection: %s", kx_err_str(err));
            free(p);
            return err;
        }
    }
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = p->ack_wait_ms;
    jo.PublishAsync.AckHandler = on_ack;
    jo.PublishAsync.AckHandlerClosure = p;
    natsStatus s = natsConnection_JetStream(&p->js, publisher_conn(p), &jo);
    if (s != NATS_OK) {
        kx_error("events: cannot make a JetStream context: %s", natsStatus_GetText(s));
        kx_bus_close(p->own, 0);
        free(p);
        return KX_ERR_UNAVAILABLE;
    }
    *out = p;
    return KX_OK;
}

void publisher_free(publisher *p, int64_t wait_ms)
{
    if (p == NULL)
        return;
    drain_queue(p, true);
    if (atomic_load(&p->inflight) > 0) {
        jsPubOptions po;
        jsPubOptions_Init(&po);
        po.MaxWait = wait_ms > 0 ? wait_ms : 1;
        natsStatus s = js_PublishAsyncComplete(p->js, &po);
        if (s != NATS_OK)
            kx_warn("events: %lld event(s) still unacknowledged at exit: %s",
                    (long long)atomic_load(&p->inflight), natsStatus_GetText(s));
    }
    jsCtx_Destroy(p->js);
    if (atomic_load(&p->inflight) > 0) {
        /* an ack may still arrive with p as its closure: keep p alive (a leak at exit) */
        kx_warn("events: leaving the publisher allocated: acks are still due");
        return;
    }
    if (p->own != NULL && !kx_bus_close(p->own, wait_ms)) {
        kx_warn("events: leaving the publisher allocated: its connection is still busy");
        return;
    }
    free(p->q);
    free(p);
}

kx_err publisher_publish(publisher *p, const Kx__V1__RunEvent *m, const kx_bus_meta *meta)
{
    char subject[128];
    snprintf(subject, sizeof subject, "%s%s", KX_SUBJ_RUN_EV_PREFIX, m->run_id);
    natsMsg *msg = NULL;
    kx_err err = kx_bus_pb_msg(subject, &m->base, meta, &msg);
    if (err != KX_OK)
        return err;
    submit(p, msg);
    return KX_OK;
}

bool publisher_busy(const publisher *p)
{
    return p->qlen > 0 || atomic_load(&p->inflight) >= p->max_pending;
}

natsConnection *publisher_conn(const publisher *p)
{
    return kx_bus_conn(p->own != NULL ? p->own : p->bus);
}

int64_t publisher_inflight(const publisher *p)
{
    return atomic_load(&p->inflight);
}

int64_t publisher_queued(const publisher *p)
{
    return atomic_load(&p->queued);
}
