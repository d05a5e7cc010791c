/* bus.c — the NATS connection configured the Kortix way, and the conventions on top of it.
 *
 * What lives here, top to bottom:
 *  - connect/close: reconnect forever with backoff, retry on failed connect, SendAsap (or, for
 *    a buffered sibling, cnats' flusher), callbacks that log connection changes; close drains, waits for cnats to finish every callback that
 *    can still reach the bus, then frees.
 *  - the subscription registry: every subscription made here has a small context (callback,
 *    argument, loop) freed by cnats' completion callback; kx_bus_close destroys those the
 *    caller did not destroy itself.
 *  - request metadata in headers (Kx-Deadline, traceparent, Kx-Account).
 *  - publish, JetStream publish, blocking request/reply, respond.
 *  - JetStream streams (kx_bus_ensure_streams).
 *  - loop-bound asynchronous requests (kx_bus_async_*): one wildcard inbox subscription per
 *    kx_bus_async, a hash table of pending requests owned by the loop thread, a loop timer per
 *    request at its deadline.
 */
#include "kx/bus.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "kx/config.h"
#include "kx/log.h"
#include "kx/metrics.h"
#include "kx/pb.h"

#define RECONNECT_MIN_MS 100
#define RECONNECT_MAX_MS 2000
#define JS_DEFAULT_WAIT_MS 5000
/* A silent server is noticed within BUS_PING_MS x (BUS_PINGS_OUT + 1): 6 s (cnats' defaults,
 * 2 min x 2, and our former 10 s x 2 said "ready" for 20-30 s while nothing answered). A PONG
 * is answered by nats-server's read loop at once, so 2 s without one is not load. */
#define BUS_PING_MS 2000
#define BUS_PINGS_OUT 2
#define CLOSE_CALLBACK_GRACE_MS 5000 /* how long close waits for cnats' last callbacks */

typedef struct subctx subctx;

struct kx_bus {
    natsConnection *nc;
    jsCtx *js;
    char name[128];
    char *url;               /* as given to kx_bus_connect (kx_bus_connect_sibling reuses it) */
    int64_t ack_wait_ms;     /* longest wait for a JetStream ack (KX_BUS_TIMEOUT_MS) */
    int64_t ping_ms;         /* KX_BUS_PING_MS: how often cnats PINGs the server */
    int64_t pings_out;       /* KX_BUS_PINGS_OUT: PINGs without a PONG that end the connection */
    kx_bus_batcher *batcher; /* kx_bus_js_publish_many's (bus_batch.c) */

    pthread_mutex_t mu; /* guards everything below */
    pthread_cond_t cond;
    bool closing;
    bool closed_cb_done;      /* cnats called the closed callback: no more connection cbs */
    subctx *subs;             /* live subscriptions made with kx_bus_subscribe[_loop] */
    natsSubscription **early; /* kx_bus_close_if_down's snapshot of them, for kx_bus_close */
    size_t nearly;
    size_t live_subctx; /* contexts whose completion callback has not run yet */
};

/* ---- small helpers ---- */

#ifdef KX_HAVE_NATSMSG_FREE
/* cnats' own free of a message (src/msg.c: its headers, then the one block); exported by the
 * library, not declared in nats.h. natsMsg_Destroy hands the message to the library's
 * garbage-collector thread, which calls this. */
void natsMsg_free(void *object);
#endif

void kx_bus_msg_free(natsMsg *m)
{
#ifdef KX_HAVE_NATSMSG_FREE
    natsMsg_free(m);
#else
    natsMsg_Destroy(m);
#endif
}

kx_err kx_bus_status_err(natsStatus s)
{
    switch (s) {
    case NATS_OK: return KX_OK;
    case NATS_TIMEOUT: return KX_ERR_TIMEOUT;
    case NATS_NO_MEMORY: return KX_ERR_NOMEM;
    case NATS_INVALID_ARG:
    case NATS_INVALID_SUBJECT: return KX_ERR_INVALID;
    case NATS_NO_RESPONDERS:
    case NATS_CONNECTION_CLOSED:
    case NATS_CONNECTION_DISCONNECTED:
    case NATS_NOT_YET_CONNECTED:
    case NATS_NO_SERVER: return KX_ERR_UNAVAILABLE;
    default: return KX_ERR_IO;
    }
}

/* Logs what failed (with cnats' last error text) and maps s. */
static kx_err nats_fail(const char *what, natsStatus s)
{
    const char *detail = nats_GetLastError(NULL);
    bool has_detail = detail != NULL && detail[0] != '\0';
    kx_error("bus: %s failed: %s%s%s", what, natsStatus_GetText(s), has_detail ? ": " : "",
             has_detail ? detail : "");
    return kx_bus_status_err(s);
}

static void random_fill(void *buf, size_t len)
{
    uint8_t *p = buf;
    size_t got = 0;
    while (got < len) {
        ssize_t n = getrandom(p + got, len - got, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            kx_error("bus: getrandom failed (errno %d)", errno);
            abort();
        }
        got += (size_t)n;
    }
}

static void hex_encode(const uint8_t *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 0x0F];
    }
    out[2 * n] = '\0';
}

static bool is_lower_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return false;
    }
    return true;
}

/* A message to subject carrying data and meta (may be NULL). */
static kx_err make_msg(const char *subject, const char *reply, const void *data, size_t len,
                       const kx_bus_meta *meta, natsMsg **out)
{
    *out = NULL;
    if (subject == NULL || subject[0] == '\0') {
        kx_error("bus: a message needs a subject");
        return KX_ERR_INVALID;
    }
    if (len > INT32_MAX) {
        kx_error("bus: message to %s is too large (%zu bytes)", subject, len);
        return KX_ERR_INVALID;
    }
    natsMsg *m = NULL;
    natsStatus s = natsMsg_Create(&m, subject, reply, data, (int)len);
    if (s != NATS_OK)
        return nats_fail("natsMsg_Create", s);
    if (meta != NULL) {
        kx_err err = kx_bus_meta_write(m, meta);
        if (err != KX_OK) {
            kx_bus_msg_free(m);
            return err;
        }
    }
    *out = m;
    return KX_OK;
}

/* make_msg for a protobuf body: packs msg, then builds the natsMsg with meta's headers. */
static kx_err make_pb_msg(const char *subject, const ProtobufCMessage *msg,
                          const kx_bus_meta *meta, natsMsg **out)
{
    *out = NULL;
    uint8_t *buf = NULL;
    size_t len = 0;
    kx_err err = kx_pb_pack(msg, &buf, &len);
    if (err != KX_OK)
        return err;
    err = make_msg(subject, NULL, buf, len, meta, out);
    free(buf);
    return err;
}

kx_err kx_bus_pb_msg(const char *subject, const ProtobufCMessage *msg, const kx_bus_meta *meta,
                     natsMsg **out)
{
    return make_pb_msg(subject, msg, meta, out);
}

/* ---- connection callbacks (cnats' own thread) ---- */

static int64_t reconnect_delay(natsConnection *nc, int attempts, void *closure)
{
    int64_t delay = RECONNECT_MIN_MS;
    for (int i = 1; i < attempts && delay < RECONNECT_MAX_MS; i++)
        delay *= 2;
    if (delay > RECONNECT_MAX_MS)
        delay = RECONNECT_MAX_MS;
    uint16_t r;
    random_fill(&r, sizeof r);
    return delay + (int64_t)(r % (uint16_t)(delay / 4 + 1)); /* up to +25 % jitter */
}

static void on_connected(natsConnection *nc, void *closure)
{
    kx_bus *bus = closure;
    kx_info("bus: %s connected to NATS", bus->name);
}

static void on_disconnected(natsConnection *nc, void *closure)
{
    kx_bus *bus = closure;
    pthread_mutex_lock(&bus->mu);
    bool closing = bus->closing;
    pthread_mutex_unlock(&bus->mu);
    if (closing)
        kx_debug("bus: %s disconnected from NATS (closing)", bus->name);
    else
        kx_warn("bus: %s disconnected from NATS; reconnecting", bus->name);
}

static void on_reconnected(natsConnection *nc, void *closure)
{
    kx_bus *bus = closure;
    kx_counter_add(kx_metrics_counter("kx_nats_reconnects_total", "",
                                      "Reconnections to NATS after a disconnect"),
                   1);
    kx_info("bus: %s reconnected to NATS", bus->name);
}

static void on_closed(natsConnection *nc, void *closure)
{
    kx_bus *bus = closure;
    pthread_mutex_lock(&bus->mu);
    bus->closed_cb_done = true;
    pthread_cond_broadcast(&bus->cond);
    pthread_mutex_unlock(&bus->mu);
}

static void on_async_error(natsConnection *nc, natsSubscription *sub, natsStatus err,
                           void *closure)
{
    kx_bus *bus = closure;
    kx_error("bus: %s asynchronous NATS error: %s", bus->name, natsStatus_GetText(err));
}

static void on_js_publish_error(jsCtx *js, jsPubAckErr *pae, void *closure)
{
    const char *subject = pae->Msg ? natsMsg_GetSubject(pae->Msg) : "?";
    kx_error("bus: JetStream async publish to %s failed: %s (code %d%s%s)", subject,
             natsStatus_GetText(pae->Err), (int)pae->ErrCode, pae->ErrText ? ", " : "",
             pae->ErrText ? pae->ErrText : "");
}

/* ---- connect / close ---- */

static kx_err set_options(kx_bus *bus, const char *url, unsigned flags, natsOptions *o)
{
    natsStatus s = natsOptions_SetURL(o, url);
    if (s == NATS_OK)
        s = natsOptions_SetName(o, bus->name);
    if (s == NATS_OK)
        s = natsOptions_SetMaxReconnect(o, -1);
    if (s == NATS_OK)
        s = natsOptions_SetCustomReconnectDelay(o, reconnect_delay, bus);
    if (s == NATS_OK)
        s = natsOptions_SetRetryOnFailedConnect(o, true, on_connected, bus);
    if (s == NATS_OK)
        s = natsOptions_SetSendAsap(o, (flags & KX_BUS_BUFFERED) == 0);
    /* Deliver every subscription's messages from cnats' shared pool of threads instead of one
     * thread per subscription: the gateway opens one subscription per SSE stream. Our callbacks
     * never block (they post to a loop or append to a buffer), so sharing is safe. */
    if (s == NATS_OK)
        s = natsOptions_UseGlobalMessageDelivery(o, true);
    /* A server that stops answering with its socket open (paused, or a network that drops
     * packets) is noticed only by the PINGs: after pings_out of them without a PONG the
     * connection is stale, cnats reconnects, and kx_bus_connected (so /readyz) says so. */
    if (s == NATS_OK)
        s = natsOptions_SetPingInterval(o, bus->ping_ms);
    if (s == NATS_OK)
        s = natsOptions_SetMaxPingsOut(o, (int)bus->pings_out);
    if (s == NATS_OK)
        s = natsOptions_SetDisconnectedCB(o, on_disconnected, bus);
    if (s == NATS_OK)
        s = natsOptions_SetReconnectedCB(o, on_reconnected, bus);
    if (s == NATS_OK)
        s = natsOptions_SetClosedCB(o, on_closed, bus);
    if (s == NATS_OK)
        s = natsOptions_SetErrorHandler(o, on_async_error, bus);
    if (s != NATS_OK)
        return nats_fail("setting NATS options", s);
    return KX_OK;
}

kx_err kx_bus_connect(const char *url, const char *name, kx_bus **out)
{
    return kx_bus_connect_ex(url, name, 0, out);
}

kx_err kx_bus_connect_sibling(kx_bus *bus, const char *suffix, unsigned flags, kx_bus **out)
{
    char name[sizeof bus->name];
    snprintf(name, sizeof name, "%s%s", bus->name, suffix ? suffix : "");
    return kx_bus_connect_ex(bus->url, name, flags, out);
}

kx_err kx_bus_connect_ex(const char *url, const char *name, unsigned flags, kx_bus **out)
{
    *out = NULL;
    if (url == NULL || url[0] == '\0') {
        kx_error("bus: kx_bus_connect needs a NATS url");
        return KX_ERR_INVALID;
    }
    kx_bus *bus = calloc(1, sizeof *bus);
    if (bus == NULL) {
        kx_error("bus: out of memory");
        return KX_ERR_NOMEM;
    }
    snprintf(bus->name, sizeof bus->name, "%s", name && name[0] ? name : "kx");
    if ((bus->url = strdup(url)) == NULL) {
        free(bus);
        return KX_ERR_NOMEM;
    }
    if (kx_env_int("KX_BUS_TIMEOUT_MS", JS_DEFAULT_WAIT_MS, 1, 600000, &bus->ack_wait_ms) !=
            KX_OK ||
        kx_env_int("KX_BUS_PING_MS", BUS_PING_MS, 100, 600000, &bus->ping_ms) != KX_OK ||
        kx_env_int("KX_BUS_PINGS_OUT", BUS_PINGS_OUT, 1, 100, &bus->pings_out) != KX_OK) {
        free(bus->url);
        free(bus);
        return KX_ERR_INVALID;
    }
    pthread_mutex_init(&bus->mu, NULL);
    pthread_cond_init(&bus->cond, NULL);

    natsOptions *o = NULL;
    natsStatus s = natsOptions_Create(&o);
    if (s != NATS_OK) {
        kx_err err = nats_fail("natsOptions_Create", s);
        pthread_cond_destroy(&bus->cond);
        pthread_mutex_destroy(&bus->mu);
        free(bus->url);
        free(bus);
        return err;
    }
    kx_err err = set_options(bus, url, flags, o);
    if (err == KX_OK) {
        s = natsConnection_Connect(&bus->nc, o);
        if (s == NATS_NOT_YET_CONNECTED) {
            kx_warn("bus: NATS at %s is not reachable yet; %s keeps trying in the background", url,
                    bus->name);
        } else if (s != NATS_OK) {
            err = nats_fail("natsConnection_Connect", s);
        } else {
            kx_info("bus: %s connected to NATS at %s", bus->name, url);
        }
    }
    natsOptions_Destroy(o); /* the connection keeps its own copy */

    if (err == KX_OK) {
        jsOptions jo;
        jsOptions_Init(&jo);
        jo.Wait = JS_DEFAULT_WAIT_MS;
        jo.PublishAsync.ErrHandler = on_js_publish_error;
        jo.PublishAsync.ErrHandlerClosure = bus;
        s = natsConnection_JetStream(&bus->js, bus->nc, &jo);
        if (s != NATS_OK)
            err = nats_fail("natsConnection_JetStream", s);
    }
    if (err == KX_OK && (bus->batcher = kx_bus_batcher_new()) == NULL)
        err = KX_ERR_NOMEM;
    if (err != KX_OK) {
        kx_bus_close(bus, 0);
        return err;
    }
    *out = bus;
    return KX_OK;
}

bool kx_bus_connected(kx_bus *bus)
{
    return bus != NULL && bus->nc != NULL &&
        natsConnection_Status(bus->nc) == NATS_CONN_STATUS_CONNECTED;
}

kx_bus_batcher *kx_bus_batcher_of(kx_bus *bus)
{
    return bus->batcher;
}

kx_err kx_bus_flush(kx_bus *bus, int64_t timeout_ms)
{
    return kx_bus_status_err(natsConnection_FlushTimeout(bus->nc, timeout_ms));
}

static natsSubscription **owned_subs(kx_bus *bus, size_t *n_out);

bool kx_bus_close_if_down(kx_bus *bus)
{
    if (bus == NULL || bus->nc == NULL || kx_bus_connected(bus))
        return false;
    pthread_mutex_lock(&bus->mu);
    bool first = !bus->closing;
    if (first) {
        bus->closing = true; /* no new subscription from here on */
        bus->early = owned_subs(bus, &bus->nearly);
    }
    pthread_mutex_unlock(&bus->mu);
    if (!first)
        return false;
    kx_warn("bus: NATS is not connected at shutdown; closing now so nothing waits for it");
    natsConnection_Close(bus->nc); /* pending requests return NATS_CONNECTION_CLOSED */
    return true;
}

natsConnection *kx_bus_conn(kx_bus *bus)
{
    return bus->nc;
}
jsCtx *kx_bus_js(kx_bus *bus)
{
    return bus->js;
}

/* ---- subscription registry ---- */

struct subctx {
    kx_bus *bus;
    natsSubscription *sub;
    kx_loop *loop; /* NULL: deliver on the cnats thread */
    kx_bus_msg_cb cb;
    void *arg;
    subctx *prev, *next;
};

static void registry_unlink(kx_bus *bus, subctx *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else if (bus->subs == c)
        bus->subs = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
}

/* cnats: the subscription is closed for good (unsubscribed, drained, or its connection closed)
 * and no callback of it runs any more. */
static void subctx_complete(void *closure)
{
    subctx *c = closure;
    kx_bus *bus = c->bus;
    pthread_mutex_lock(&bus->mu);
    registry_unlink(bus, c);
    bus->live_subctx--;
    pthread_cond_broadcast(&bus->cond);
    pthread_mutex_unlock(&bus->mu);
    free(c);
}

/* What a loop subscription posts: the callback and argument travel with the message so the
 * task does not depend on the subscription still being alive. */
typedef struct loop_delivery {
    kx_bus_msg_cb cb;
    void *arg;
    natsMsg *msg;
} loop_delivery;

static void loop_deliver(kx_loop *loop, void *arg)
{
    loop_delivery *d = arg;
    d->cb(d->msg, d->arg);
    free(d);
}

/* A delivery still queued when the loop is freed (a message that arrived during shutdown). */
static void loop_delivery_dispose(void *arg)
{
    loop_delivery *d = arg;
    kx_bus_msg_free(d->msg);
    free(d);
}

static void subctx_on_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    subctx *c = closure;
    if (c->loop == NULL) {
        c->cb(msg, c->arg);
        return;
    }
    loop_delivery *d = malloc(sizeof *d);
    if (d != NULL) {
        d->cb = c->cb;
        d->arg = c->arg;
        d->msg = msg;
    }
    if (d == NULL ||
        kx_loop_post_owned(c->loop, loop_deliver, d, loop_delivery_dispose) != KX_OK) {
        kx_error("bus: out of memory handing a message on %s to the loop; dropped",
                 natsMsg_GetSubject(msg));
        free(d);
        kx_bus_msg_free(msg);
    }
}

static kx_err subscribe(kx_bus *bus, kx_loop *loop, const char *subject, const char *queue,
                        kx_bus_msg_cb cb, void *arg, natsSubscription **out)
{
    if (out)
        *out = NULL;
    if (subject == NULL || subject[0] == '\0' || cb == NULL) {
        kx_error("bus: subscribe needs a subject and a callback");
        return KX_ERR_INVALID;
    }
    subctx *c = calloc(1, sizeof *c);
    if (c == NULL) {
        kx_error("bus: out of memory subscribing to %s", subject);
        return KX_ERR_NOMEM;
    }
    c->bus = bus;
    c->loop = loop;
    c->cb = cb;
    c->arg = arg;

    /* Registered before the subscription exists, so its completion always finds it. */
    pthread_mutex_lock(&bus->mu);
    if (bus->closing) {
        pthread_mutex_unlock(&bus->mu);
        free(c);
        kx_error("bus: subscribe to %s while the bus is closing", subject);
        return KX_ERR_UNAVAILABLE;
    }
    bus->live_subctx++;
    c->next = bus->subs;
    if (bus->subs)
        bus->subs->prev = c;
    bus->subs = c;
    /* Held across the subscribe: a message cannot reach subctx_on_msg before c->sub is set
     * (it does not read it), and completion cannot run before SetOnCompleteCB below. */
    natsStatus s;
    if (queue != NULL && queue[0] != '\0')
        s = natsConnection_QueueSubscribe(&c->sub, bus->nc, subject, queue, subctx_on_msg, c);
    else
        s = natsConnection_Subscribe(&c->sub, bus->nc, subject, subctx_on_msg, c);
    if (s == NATS_OK)
        s = natsSubscription_SetOnCompleteCB(c->sub, subctx_complete, c);
    if (s != NATS_OK) {
        natsSubscription *sub = c->sub;
        registry_unlink(bus, c);
        bus->live_subctx--;
        pthread_mutex_unlock(&bus->mu);
        /* Without a completion callback nothing frees c: unsubscribe, wait until no callback
         * can run, then free it here. */
        if (sub != NULL) {
            natsSubscription_Unsubscribe(sub);
            natsSubscription_Destroy(sub);
        }
        kx_err err = nats_fail("subscribe", s);
        kx_error("bus: could not subscribe to %s", subject);
        if (sub == NULL)
            free(c); /* with a sub, a callback might still hold c: leak rather than race */
        return err;
    }
    pthread_mutex_unlock(&bus->mu);
    if (out)
        *out = c->sub;
    kx_debug("bus: subscribed to %s%s%s", subject, queue ? " in queue group " : "",
             queue ? queue : "");
    return KX_OK;
}

kx_err kx_bus_subscribe(kx_bus *bus, const char *subject, const char *queue, kx_bus_msg_cb cb,
                        void *arg, natsSubscription **out)
{
    return subscribe(bus, NULL, subject, queue, cb, arg, out);
}

kx_err kx_bus_subscribe_loop(kx_bus *bus, kx_loop *loop, const char *subject, const char *queue,
                             kx_bus_msg_cb cb, void *arg, natsSubscription **out)
{
    if (loop == NULL) {
        kx_error("bus: kx_bus_subscribe_loop on %s needs a loop", subject ? subject : "?");
        return KX_ERR_INVALID;
    }
    return subscribe(bus, loop, subject, queue, cb, arg, out);
}

/* Waits on bus->cond until pred(bus) or timeout_ms passes; bus->mu held. */
static bool wait_until(kx_bus *bus, bool (*pred)(kx_bus *), int64_t timeout_ms)
{
    struct timespec ts = kx_abs_timespec_in_ms(CLOCK_REALTIME, timeout_ms);
    while (!pred(bus)) {
        if (pthread_cond_timedwait(&bus->cond, &bus->mu, &ts) == ETIMEDOUT)
            return pred(bus);
    }
    return true;
}

static bool closed_cb_done(kx_bus *bus)
{
    return bus->closed_cb_done;
}
static bool no_live_subctx(kx_bus *bus)
{
    return bus->live_subctx == 0;
}

/* bus->mu held: the subscriptions of the registry still valid, in a new array (NULL: out of
 * memory). A closed connection closes them all, and their completion unlinks them: hence
 * kx_bus_close_if_down takes this list before it closes. */
static natsSubscription **owned_subs(kx_bus *bus, size_t *n_out)
{
    size_t n = 0;
    for (subctx *c = bus->subs; c; c = c->next)
        n++;
    natsSubscription **owned = calloc(n ? n : 1, sizeof *owned);
    size_t nowned = 0;
    for (subctx *c = bus->subs; c && owned; c = c->next) {
        if (natsSubscription_IsValid(c->sub))
            owned[nowned++] = c->sub;
    }
    *n_out = nowned;
    return owned;
}

bool kx_bus_close(kx_bus *bus, int64_t timeout_ms)
{
    if (bus == NULL)
        return true;
    /* The subscriptions still open belong to the bus now. One that the caller already closed
     * (natsSubscription_Destroy) is no longer valid; it stays registered only until its
     * completion callback runs, which cannot happen while we hold the mutex. */
    pthread_mutex_lock(&bus->mu);
    bus->closing = true;
    natsSubscription **owned = bus->early;
    size_t nowned = bus->nearly;
    if (owned != NULL)
        bus->early = NULL; /* taken before kx_bus_close_if_down closed the connection */
    else
        owned = owned_subs(bus, &nowned);
    pthread_mutex_unlock(&bus->mu);
    if (owned == NULL) {
        nowned = 0;
        kx_error("bus: out of memory closing; open subscriptions will leak");
    }

    if (bus->nc != NULL) {
        if (bus->js != NULL && kx_bus_connected(bus)) {
            jsPubOptions po;
            jsPubOptions_Init(&po);
            po.MaxWait = timeout_ms > 0 ? timeout_ms : 1;
            natsStatus s = js_PublishAsyncComplete(bus->js, &po);
            if (s != NATS_OK)
                kx_warn("bus: JetStream async publishes still unacknowledged at close: %s",
                        natsStatus_GetText(s));
        }
        bool drained = false;
        if (timeout_ms > 0 && kx_bus_connected(bus))
            drained = natsConnection_DrainTimeout(bus->nc, timeout_ms) == NATS_OK;
        pthread_mutex_lock(&bus->mu);
        if (drained)
            wait_until(bus, closed_cb_done, timeout_ms + 1000);
        pthread_mutex_unlock(&bus->mu);
        natsConnection_Close(bus->nc); /* no-op when the drain already closed it */
    }
    for (size_t i = 0; i < nowned; i++)
        natsSubscription_Destroy(owned[i]);
    free(owned);

    /* cnats may still be inside a callback whose closure is this bus: wait them out. */
    pthread_mutex_lock(&bus->mu);
    bool quiet = bus->nc == NULL || wait_until(bus, closed_cb_done, CLOSE_CALLBACK_GRACE_MS);
    quiet = wait_until(bus, no_live_subctx, CLOSE_CALLBACK_GRACE_MS) && quiet;
    pthread_mutex_unlock(&bus->mu);
    kx_bus_batcher_free(bus->batcher);
    jsCtx_Destroy(bus->js);
    natsConnection_Destroy(bus->nc);
    if (!quiet) {
        kx_error("bus: NATS callbacks still running after close; leaking the bus to stay safe");
        return false;
    }
    pthread_cond_destroy(&bus->cond);
    pthread_mutex_destroy(&bus->mu);
    free(bus->url);
    free(bus);
    return true;
}

/* ---- streams ---- */

typedef struct stream_def {
    const char *name;
    const char *subject;
    jsRetentionPolicy retention;
    int64_t max_age_ns;
    bool allow_direct; /* direct gets (the gateway reads a run's history with them) */
    int64_t max_bytes; /* 0: no limit; else the oldest messages go first (discard old) */
} stream_def;

static kx_err ensure_stream(kx_bus *bus, const stream_def *d)
{
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_GetStreamInfo(&si, bus->js, d->name, NULL, &jerr);
    int64_t want_bytes = d->max_bytes > 0 ? d->max_bytes : -1;
    if (s == NATS_OK &&
        ((d->allow_direct && !si->Config->AllowDirect) || si->Config->MaxBytes != want_bytes)) {
        /* Created by an older version or with another byte limit: update it (an update keeps
         * the messages; a smaller limit drops the oldest). */
        if (si->Config->MaxBytes != want_bytes)
            kx_info("bus: stream %s: byte limit %lld -> %lld", d->name,
                    (long long)si->Config->MaxBytes, (long long)want_bytes);
        si->Config->MaxBytes = want_bytes;
        si->Config->Discard = js_DiscardOld;
        si->Config->AllowDirect = si->Config->AllowDirect || d->allow_direct;
        jsStreamInfo *upd = NULL;
        s = js_UpdateStream(&upd, bus->js, si->Config, NULL, &jerr);
        jsStreamInfo_Destroy(upd);
        jsStreamInfo_Destroy(si);
        if (s != NATS_OK) {
            kx_err err = nats_fail("js_UpdateStream", s);
            kx_error("bus: could not allow direct gets on %s (JetStream error %d)", d->name,
                     (int)jerr);
            return err;
        }
        kx_info("bus: stream %s updated (direct gets %s, byte limit %lld)", d->name,
                d->allow_direct ? "on" : "off", (long long)want_bytes);
        return KX_OK;
    }
    if (s == NATS_OK) {
        jsStreamInfo_Destroy(si);
        return KX_OK;
    }
    if (s != NATS_NOT_FOUND && jerr != JSStreamNotFoundErr) {
        kx_err err = nats_fail("js_GetStreamInfo", s);
        kx_error("bus: could not look up stream %s (JetStream error %d)", d->name, (int)jerr);
        return err;
    }
    jsStreamConfig cfg;
    jsStreamConfig_Init(&cfg);
    const char *subjects[1] = {d->subject};
    cfg.Name = d->name;
    cfg.Subjects = subjects;
    cfg.SubjectsLen = 1;
    cfg.Retention = d->retention;
    cfg.Storage = js_FileStorage;
    cfg.MaxAge = d->max_age_ns;
    cfg.AllowDirect = d->allow_direct;
    cfg.MaxBytes = want_bytes;
    cfg.Discard = js_DiscardOld;
    jerr = 0;
    s = js_AddStream(&si, bus->js, &cfg, NULL, &jerr);
    if (s == NATS_OK) {
        jsStreamInfo_Destroy(si);
        kx_info("bus: created JetStream stream %s (%s)", d->name, d->subject);
        return KX_OK;
    }
    if (jerr == JSStreamNameExistErr) { /* another replica created it meanwhile */
        return KX_OK;
    }
    kx_err err = nats_fail("js_AddStream", s);
    kx_error("bus: could not create stream %s (JetStream error %d)", d->name, (int)jerr);
    return err;
}

kx_err kx_bus_consumer_exists(kx_bus *bus, const char *stream, const char *durable)
{
    jsConsumerInfo *ci = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_GetConsumerInfo(&ci, bus->js, stream, durable, NULL, &jerr);
    jsConsumerInfo_Destroy(ci);
    if (s == NATS_OK)
        return KX_OK;
    if (s == NATS_NOT_FOUND || jerr == JSConsumerNotFoundErr || jerr == JSStreamNotFoundErr)
        return KX_ERR_NOT_FOUND;
    return kx_bus_status_err(s);
}

kx_err kx_bus_ensure_consumer(kx_bus *bus, const char *stream, jsConsumerConfig *cc)
{
    jsConsumerInfo *ci = NULL;
    jsErrCode jerr = 0;
    natsStatus st = js_AddConsumer(&ci, bus->js, stream, cc, NULL, &jerr);
    jsConsumerInfo_Destroy(ci);
    if (st == NATS_OK || kx_bus_consumer_exists(bus, stream, cc->Durable) == KX_OK)
        return KX_OK;
    kx_warn("bus: cannot create consumer %s on %s: %s (JetStream error %d)", cc->Durable, stream,
            natsStatus_GetText(st), (int)jerr);
    return st == NATS_TIMEOUT ? KX_ERR_TIMEOUT : KX_ERR_UNAVAILABLE;
}

/* Deletes a stream this version no longer uses, if it is there. KX_RUN_SUBMIT (a work queue on
 * kx.run.submit, until issue 12) would keep capturing the gateway's core submits with nobody
 * consuming them: they would pile up without limit. What it held is only nudges (the runs are
 * queued rows; admission finds them every reaper tick), so nothing is lost with it. */
static kx_err retire_stream(kx_bus *bus, const char *name)
{
    jsErrCode jerr = 0;
    natsStatus s = js_DeleteStream(bus->js, name, NULL, &jerr);
    if (s == NATS_OK) {
        kx_info("bus: deleted the retired JetStream stream %s", name);
        return KX_OK;
    }
    if (s == NATS_NOT_FOUND || jerr == JSStreamNotFoundErr)
        return KX_OK;
    kx_err err = nats_fail("js_DeleteStream", s);
    kx_error("bus: could not delete the retired stream %s (JetStream error %d)", name, (int)jerr);
    return err;
}

kx_err kx_bus_events_max_bytes(int64_t *out)
{
    return kx_env_int("KX_RUN_EVENTS_MAX_BYTES", (int64_t)1 << 30, 0, (int64_t)1 << 50, out);
}

kx_err kx_bus_ensure_streams(kx_bus *bus)
{
    /* The event stream keeps 24 h but at most KX_RUN_EVENTS_MAX_BYTES (1 GiB; 0 = no limit):
     * past it the oldest events go (Postgres keeps every saved row; a replay of a run whose
     * events went starts where the stream starts). */
    int64_t ev_bytes = 0;
    if (kx_bus_events_max_bytes(&ev_bytes) != KX_OK)
        return KX_ERR_INVALID;
    const stream_def defs[] = {
        {KX_STREAM_DISPATCH, KX_SUBJ_RUN_DISPATCH, js_WorkQueuePolicy, 0, false, 0},
        {KX_STREAM_EVENTS, KX_SUBJ_RUN_EV_PREFIX ">", js_LimitsPolicy,
         (int64_t)24 * 3600 * 1000000000, true, ev_bytes},
    };
    for (size_t i = 0; i < sizeof defs / sizeof defs[0]; i++) {
        kx_err err = ensure_stream(bus, &defs[i]);
        if (err != KX_OK)
            return err;
    }
    return retire_stream(bus, KX_STREAM_SUBMIT);
}

/* ---- metadata ---- */

void kx_bus_meta_init(kx_bus_meta *meta, kx_deadline deadline, const char *account)
{
    memset(meta, 0, sizeof *meta);
    meta->deadline = deadline;
    uint8_t ids[24];
    random_fill(ids, sizeof ids);
    ids[0] |= 0x01; /* an all-zero trace id is invalid in W3C trace context */
    char trace[33], span[17];
    hex_encode(ids, 16, trace);
    hex_encode(ids + 16, 8, span);
    snprintf(meta->traceparent, sizeof meta->traceparent, "00-%s-%s-01", trace, span);
    if (account != NULL)
        snprintf(meta->account, sizeof meta->account, "%s", account);
}

kx_err kx_bus_meta_read(natsMsg *m, kx_bus_meta *out)
{
    memset(out, 0, sizeof *out);
    const char *v = NULL;
    kx_err result = KX_OK;
    if (natsMsgHeader_Get(m, KX_HDR_DEADLINE, &v) == NATS_OK && v != NULL) {
        char *end = NULL;
        errno = 0;
        long long d = strtoll(v, &end, 10);
        if (errno != 0 || end == v || *end != '\0' || d <= 0) {
            kx_warn("bus: malformed %s header \"%s\" on %s: expected unix milliseconds",
                    KX_HDR_DEADLINE, v, natsMsg_GetSubject(m));
            result = KX_ERR_INVALID;
        } else {
            out->deadline = (kx_deadline)d;
        }
    }
    v = NULL;
    if (natsMsgHeader_Get(m, KX_HDR_TRACEPARENT, &v) == NATS_OK && v != NULL &&
        strlen(v) < sizeof out->traceparent)
        snprintf(out->traceparent, sizeof out->traceparent, "%s", v);
    v = NULL;
    if (natsMsgHeader_Get(m, KX_HDR_ACCOUNT, &v) == NATS_OK && v != NULL &&
        strlen(v) < sizeof out->account)
        snprintf(out->account, sizeof out->account, "%s", v);
    return result;
}

kx_err kx_bus_meta_write(natsMsg *m, const kx_bus_meta *meta)
{
    natsStatus s = NATS_OK;
    if (meta->deadline != KX_NO_DEADLINE) {
        char buf[24];
        snprintf(buf, sizeof buf, "%" PRId64, (int64_t)meta->deadline);
        s = natsMsgHeader_Set(m, KX_HDR_DEADLINE, buf);
    }
    if (s == NATS_OK && meta->traceparent[0] != '\0')
        s = natsMsgHeader_Set(m, KX_HDR_TRACEPARENT, meta->traceparent);
    if (s == NATS_OK && meta->account[0] != '\0')
        s = natsMsgHeader_Set(m, KX_HDR_ACCOUNT, meta->account);
    if (s != NATS_OK)
        return nats_fail("natsMsgHeader_Set", s);
    return KX_OK;
}

void kx_bus_trace_id(const kx_bus_meta *meta, char out[33])
{
    out[0] = '\0';
    const char *tp = meta->traceparent;
    /* "00-" + 32 hex + "-" + 16 hex + "-" + 2 hex */
    if (strlen(tp) >= 55 && tp[2] == '-' && tp[35] == '-' && is_lower_hex(tp + 3, 32)) {
        memcpy(out, tp + 3, 32);
        out[32] = '\0';
    }
}

/* ---- publish ---- */

kx_err kx_bus_publish(kx_bus *bus, const char *subject, const void *data, size_t len,
                      const kx_bus_meta *meta)
{
    natsMsg *m = NULL;
    kx_err err = make_msg(subject, NULL, data, len, meta, &m);
    if (err != KX_OK)
        return err;
    natsStatus s = natsConnection_PublishMsg(bus->nc, m);
    kx_bus_msg_free(m);
    if (s != NATS_OK) {
        kx_error("bus: publish to %s failed", subject);
        return nats_fail("natsConnection_PublishMsg", s);
    }
    return KX_OK;
}

kx_err kx_bus_publish_pb(kx_bus *bus, const char *subject, const ProtobufCMessage *msg,
                         const kx_bus_meta *meta)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    kx_err err = kx_pb_pack(msg, &buf, &len);
    if (err != KX_OK)
        return err;
    err = kx_bus_publish(bus, subject, buf, len, meta);
    free(buf);
    return err;
}

kx_err kx_bus_js_publish_pb_ex(kx_bus *bus, const char *subject, const ProtobufCMessage *msg,
                               const kx_bus_meta *meta, const char *msg_id, uint64_t *seq)
{
    if (seq != NULL)
        *seq = 0;
    /* The ack wait is the bus timeout, or less when the deadline is nearer: a message's
     * deadline may be the deadline of the work it carries (a run's wall time), which says
     * nothing about how long the stream may take to store it. */
    int64_t wait = bus->ack_wait_ms;
    if (meta != NULL && meta->deadline != KX_NO_DEADLINE) {
        int64_t left = kx_deadline_remaining(meta->deadline);
        if (left <= 0) {
            kx_warn("bus: JetStream publish to %s: deadline already passed", subject);
            return KX_ERR_TIMEOUT;
        }
        if (left < wait)
            wait = left;
    }
    if (!kx_bus_connected(bus)) {
        kx_warn("bus: JetStream publish to %s: not connected to NATS", subject);
        return KX_ERR_UNAVAILABLE;
    }
    natsMsg *m = NULL;
    kx_err err = make_pb_msg(subject, msg, meta, &m);
    if (err != KX_OK)
        return err;
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = wait;
    if (msg_id != NULL)
        po.MsgId = msg_id;
    jsPubAck *ack = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_PublishMsg(&ack, bus->js, m, &po, &jerr);
    kx_bus_msg_free(m);
    if (s == NATS_OK && ack != NULL && seq != NULL)
        *seq = ack->Sequence;
    jsPubAck_Destroy(ack);
    if (s != NATS_OK) {
        kx_error("bus: JetStream publish to %s failed (JetStream error %d)", subject, (int)jerr);
        return nats_fail("js_PublishMsg", s);
    }
    return KX_OK;
}

kx_err kx_bus_js_publish_pb(kx_bus *bus, const char *subject, const ProtobufCMessage *msg,
                            const kx_bus_meta *meta)
{
    return kx_bus_js_publish_pb_ex(bus, subject, msg, meta, NULL, NULL);
}

kx_err kx_bus_js_stream_has(kx_bus *bus, const char *stream, uint64_t seq, bool *has)
{
    *has = false;
    if (!kx_bus_connected(bus))
        return KX_ERR_UNAVAILABLE;
    natsMsg *m = NULL;
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = bus->ack_wait_ms;
    jsErrCode jerr = 0;
    natsStatus s = js_GetMsg(&m, bus->js, stream, seq, &jo, &jerr);
    if (s == NATS_OK) {
        *has = true;
        kx_bus_msg_free(m);
        return KX_OK;
    }
    if (s == NATS_NOT_FOUND || jerr == JSNoMessageFoundErr)
        return KX_OK;
    return nats_fail("js_GetMsg", s);
}

kx_err kx_bus_js_publish_pb_async(kx_bus *bus, const char *subject, const ProtobufCMessage *msg,
                                  const kx_bus_meta *meta)
{
    natsMsg *m = NULL;
    kx_err err = make_pb_msg(subject, msg, meta, &m);
    if (err != KX_OK)
        return err;
    natsStatus s = js_PublishMsgAsync(bus->js, &m, NULL); /* takes m on success */
    if (s != NATS_OK) {
        kx_bus_msg_free(m);
        kx_error("bus: JetStream async publish to %s failed", subject);
        return nats_fail("js_PublishMsgAsync", s);
    }
    return KX_OK;
}

/* ---- blocking request / respond ---- */

kx_err kx_bus_request(kx_bus *bus, const char *subject, const void *data, size_t len,
                      const kx_bus_meta *meta, natsMsg **reply)
{
    *reply = NULL;
    if (meta == NULL || meta->deadline == KX_NO_DEADLINE) {
        kx_error("bus: request to %s without a deadline", subject ? subject : "?");
        return KX_ERR_INVALID;
    }
    int64_t remaining = kx_deadline_remaining(meta->deadline);
    if (remaining <= 0)
        return KX_ERR_TIMEOUT;
    natsMsg *m = NULL;
    kx_err err = make_msg(subject, NULL, data, len, meta, &m);
    if (err != KX_OK)
        return err;
    natsStatus s = natsConnection_RequestMsg(reply, bus->nc, m, remaining);
    kx_bus_msg_free(m);
    switch (s) {
    case NATS_OK: return KX_OK;
    case NATS_TIMEOUT:
        kx_debug("bus: request to %s timed out after %" PRId64 " ms", subject, remaining);
        return KX_ERR_TIMEOUT;
    case NATS_NO_RESPONDERS:
        kx_debug("bus: request to %s: no responders", subject);
        return KX_ERR_UNAVAILABLE;
    default:
        kx_error("bus: request to %s failed", subject);
        return nats_fail("natsConnection_RequestMsg", s);
    }
}

kx_err kx_bus_request_pb(kx_bus *bus, const char *subject, const ProtobufCMessage *msg,
                         const kx_bus_meta *meta, natsMsg **reply)
{
    *reply = NULL;
    uint8_t *buf = NULL;
    size_t len = 0;
    kx_err err = kx_pb_pack(msg, &buf, &len);
    if (err != KX_OK)
        return err;
    err = kx_bus_request(bus, subject, buf, len, meta, reply);
    free(buf);
    return err;
}

kx_err kx_bus_respond(kx_bus *bus, natsMsg *req, const void *data, size_t len)
{
    const char *reply = natsMsg_GetReply(req);
    if (reply == NULL || reply[0] == '\0') {
        kx_error("bus: cannot respond to a message on %s: it has no reply subject",
                 natsMsg_GetSubject(req));
        return KX_ERR_INVALID;
    }
    if (len > INT32_MAX) {
        kx_error("bus: reply on %s is too large (%zu bytes)", natsMsg_GetSubject(req), len);
        return KX_ERR_INVALID;
    }
    natsStatus s = natsConnection_Publish(bus->nc, reply, data, (int)len);
    if (s != NATS_OK) {
        kx_error("bus: reply to a request on %s failed", natsMsg_GetSubject(req));
        return nats_fail("natsConnection_Publish", s);
    }
    return KX_OK;
}

kx_err kx_bus_respond_pb(kx_bus *bus, natsMsg *req, const ProtobufCMessage *msg)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    kx_err err = kx_pb_pack(msg, &buf, &len);
    if (err != KX_OK)
        return err;
    err = kx_bus_respond(bus, req, buf, len);
    free(buf);
    return err;
}

/* ---- asynchronous, loop-bound requests ----
 *
 * Lifetimes: cnats delivers replies on its own thread into `inbox_shared`, which outlives the
 * kx_bus_async (it is reference counted: one reference for the kx_bus_async, one for the
 * subscription until its completion callback, one per reply in flight to the loop). After
 * kx_bus_async_free, replies still in flight find `ab == NULL` and are destroyed. */

typedef struct pending pending;
struct pending {
    uint64_t id;
    kx_bus_reply_cb cb;
    void *arg;
    kx_timer *timer;
    kx_bus_async *ab;
    pending *next; /* hash chain */
};

typedef struct inbox_shared {
    atomic_int refs;
    pthread_mutex_t mu; /* guards closed */
    bool closed;        /* no more posts to the loop */
    kx_loop *loop;
    kx_bus_async *ab; /* loop thread only; NULL once freed */
} inbox_shared;

struct kx_bus_async {
    kx_bus *bus;
    kx_loop *loop;
    inbox_shared *shared;
    natsSubscription *sub;
    char prefix[96]; /* "_INBOX.<nuid>." */
    size_t prefix_len;
    uint64_t next_id;
    pending **buckets;
    size_t nbuckets; /* power of two */
    size_t npending;
};

static void shared_unref(inbox_shared *sh)
{
    if (atomic_fetch_sub(&sh->refs, 1) == 1) {
        pthread_mutex_destroy(&sh->mu);
        free(sh);
    }
}

static size_t bucket_of(const kx_bus_async *ab, uint64_t id)
{
    uint64_t h = id * 0x9E3779B97F4A7C15ull; /* spread sequential ids */
    return (size_t)(h >> 32) & (ab->nbuckets - 1);
}

static kx_err table_grow(kx_bus_async *ab)
{
    size_t n = ab->nbuckets * 2;
    pending **b = calloc(n, sizeof *b);
    if (b == NULL) {
        kx_error("bus: out of memory growing the pending request table");
        return KX_ERR_NOMEM;
    }
    pending **old = ab->buckets;
    size_t oldn = ab->nbuckets;
    ab->buckets = b;
    ab->nbuckets = n;
    for (size_t i = 0; i < oldn; i++) {
        pending *p = old[i];
        while (p) {
            pending *next = p->next;
            size_t k = bucket_of(ab, p->id);
            p->next = b[k];
            b[k] = p;
            p = next;
        }
    }
    free(old);
    return KX_OK;
}

/* Removes and returns the entry for id, or NULL. */
static pending *table_take(kx_bus_async *ab, uint64_t id)
{
    pending **pp = &ab->buckets[bucket_of(ab, id)];
    for (; *pp; pp = &(*pp)->next) {
        if ((*pp)->id == id) {
            pending *p = *pp;
            *pp = p->next;
            p->next = NULL;
            ab->npending--;
            return p;
        }
    }
    return NULL;
}

typedef struct inbox_delivery {
    inbox_shared *sh;
    natsMsg *msg;
} inbox_delivery;

/* Loop thread: a reply arrived for some id of this inbox. */
static void inbox_deliver(kx_loop *loop, void *arg)
{
    inbox_delivery *d = arg;
    inbox_shared *sh = d->sh;
    natsMsg *msg = d->msg;
    free(d);
    kx_bus_async *ab = sh->ab;
    shared_unref(sh);
    if (ab == NULL) { /* the kx_bus_async is gone */
        kx_bus_msg_free(msg);
        return;
    }
    const char *subj = natsMsg_GetSubject(msg);
    pending *p = NULL;
    if (strncmp(subj, ab->prefix, ab->prefix_len) == 0) {
        char *end = NULL;
        errno = 0;
        unsigned long long id = strtoull(subj + ab->prefix_len, &end, 10);
        if (errno == 0 && end != subj + ab->prefix_len && *end == '\0')
            p = table_take(ab, (uint64_t)id);
    }
    if (p == NULL) { /* cancelled, timed out, or not ours: drop silently */
        kx_bus_msg_free(msg);
        return;
    }
    kx_timer_cancel(p->timer);
    kx_bus_reply_cb cb = p->cb;
    void *cbarg = p->arg;
    free(p);
    if (natsMsg_IsNoResponders(msg)) {
        kx_bus_msg_free(msg);
        cb(KX_ERR_UNAVAILABLE, NULL, cbarg);
    } else {
        cb(KX_OK, msg, cbarg);
    }
}

/* A delivery the loop never ran (it was freed first, at shutdown): its message and its
 * reference on the shared part go with it. */
static void inbox_dispose(void *arg)
{
    inbox_delivery *d = arg;
    kx_bus_msg_free(d->msg);
    shared_unref(d->sh);
    free(d);
}

/* cnats thread: hand the reply to the loop. */
static void inbox_on_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    inbox_shared *sh = closure;
    pthread_mutex_lock(&sh->mu);
    if (sh->closed) {
        pthread_mutex_unlock(&sh->mu);
        kx_bus_msg_free(msg);
        return;
    }
    inbox_delivery *d = malloc(sizeof *d);
    if (d != NULL) {
        d->sh = sh;
        d->msg = msg;
        atomic_fetch_add(&sh->refs, 1);
        if (kx_loop_post_owned(sh->loop, inbox_deliver, d, inbox_dispose) != KX_OK) {
            atomic_fetch_sub(&sh->refs, 1); /* the subscription's reference remains */
            free(d);
            d = NULL;
        }
    }
    pthread_mutex_unlock(&sh->mu);
    if (d == NULL) {
        kx_error("bus: out of memory handing a reply on %s to the loop; dropped",
                 natsMsg_GetSubject(msg));
        kx_bus_msg_free(msg);
    }
}

static void inbox_complete(void *closure)
{
    shared_unref(closure);
}

kx_err kx_bus_async_new(kx_bus *bus, kx_loop *loop, kx_bus_async **out)
{
    *out = NULL;
    kx_bus_async *ab = calloc(1, sizeof *ab);
    inbox_shared *sh = calloc(1, sizeof *sh);
    pending **buckets = calloc(64, sizeof *buckets);
    if (ab == NULL || sh == NULL || buckets == NULL) {
        free(ab);
        free(sh);
        free(buckets);
        kx_error("bus: out of memory creating an async request context");
        return KX_ERR_NOMEM;
    }
    ab->bus = bus;
    ab->loop = loop;
    ab->shared = sh;
    ab->buckets = buckets;
    ab->nbuckets = 64;
    ab->next_id = 1;
    atomic_init(&sh->refs, 1); /* the kx_bus_async's */
    pthread_mutex_init(&sh->mu, NULL);
    sh->loop = loop;
    sh->ab = ab;

    natsInbox *inbox = NULL;
    natsStatus s = natsInbox_Create(&inbox);
    if (s != NATS_OK) {
        kx_err err = nats_fail("natsInbox_Create", s);
        kx_bus_async_free(ab);
        return err;
    }
    snprintf(ab->prefix, sizeof ab->prefix, "%s.", (const char *)inbox);
    natsInbox_Destroy(inbox);
    ab->prefix_len = strlen(ab->prefix);
    char wildcard[sizeof ab->prefix + 2];
    snprintf(wildcard, sizeof wildcard, "%s*", ab->prefix);

    atomic_fetch_add(&sh->refs, 1); /* the subscription's, dropped by inbox_complete */
    s = natsConnection_Subscribe(&ab->sub, bus->nc, wildcard, inbox_on_msg, sh);
    if (s == NATS_OK)
        s = natsSubscription_SetOnCompleteCB(ab->sub, inbox_complete, sh);
    if (s != NATS_OK) {
        kx_err err = nats_fail("subscribing to the async reply inbox", s);
        if (ab->sub == NULL)
            atomic_fetch_sub(&sh->refs, 1); /* no subscription, no completion */
        /* with a subscription but no completion callback, its reference leaks (safe) */
        kx_bus_async_free(ab);
        return err;
    }
    *out = ab;
    return KX_OK;
}

void kx_bus_async_free(kx_bus_async *ab)
{
    if (ab == NULL)
        return;
    inbox_shared *sh = ab->shared;
    pthread_mutex_lock(&sh->mu);
    sh->closed = true;
    sh->ab = NULL;
    pthread_mutex_unlock(&sh->mu);
    if (ab->sub != NULL)
        natsSubscription_Destroy(ab->sub); /* unsubscribes; completion drops its reference */
    for (size_t i = 0; i < ab->nbuckets; i++) {
        pending *p = ab->buckets[i];
        while (p) {
            pending *next = p->next;
            kx_timer_cancel(p->timer);
            free(p);
            p = next;
        }
    }
    free(ab->buckets);
    shared_unref(sh);
    free(ab);
}

static void pending_timeout(kx_loop *loop, void *arg)
{
    pending *p = arg;
    kx_bus_async *ab = p->ab;
    p->timer = NULL; /* the loop freed it before calling us */
    pending *taken = table_take(ab, p->id);
    (void)taken; /* == p: a timer exists only while its entry is in the table */
    kx_bus_reply_cb cb = p->cb;
    void *cbarg = p->arg;
    free(p);
    cb(KX_ERR_TIMEOUT, NULL, cbarg);
}

kx_err kx_bus_async_request(kx_bus_async *ab, const char *subject, const void *data, size_t len,
                            const kx_bus_meta *meta, kx_bus_reply_cb cb, void *arg,
                            uint64_t *req_id)
{
    if (req_id)
        *req_id = 0;
    if (meta == NULL || meta->deadline == KX_NO_DEADLINE || cb == NULL) {
        kx_error("bus: async request to %s needs a deadline and a callback",
                 subject ? subject : "?");
        return KX_ERR_INVALID;
    }
    if (ab->npending >= ab->nbuckets && table_grow(ab) != KX_OK)
        return KX_ERR_NOMEM;
    pending *p = calloc(1, sizeof *p);
    if (p == NULL) {
        kx_error("bus: out of memory for an async request to %s", subject);
        return KX_ERR_NOMEM;
    }
    p->id = ab->next_id++;
    p->cb = cb;
    p->arg = arg;
    p->ab = ab;

    int64_t remaining = kx_deadline_remaining(meta->deadline);
    if (remaining > 0) { /* an expired deadline is not sent; it times out at once */
        char reply[sizeof ab->prefix + 24];
        snprintf(reply, sizeof reply, "%s%" PRIu64, ab->prefix, p->id);
        natsMsg *m = NULL;
        kx_err err = make_msg(subject, reply, data, len, meta, &m);
        if (err != KX_OK) {
            free(p);
            return err;
        }
        natsStatus s = natsConnection_PublishMsg(ab->bus->nc, m);
        kx_bus_msg_free(m);
        if (s != NATS_OK) {
            free(p);
            kx_error("bus: async request to %s could not be sent", subject);
            return nats_fail("natsConnection_PublishMsg", s);
        }
    }
    p->timer = kx_loop_timer(ab->loop, remaining > 0 ? remaining : 0, pending_timeout, p);
    if (p->timer == NULL) {
        free(p);
        return KX_ERR_NOMEM;
    }
    size_t k = bucket_of(ab, p->id);
    p->next = ab->buckets[k];
    ab->buckets[k] = p;
    ab->npending++;
    if (req_id)
        *req_id = p->id;
    return KX_OK;
}

kx_err kx_bus_async_request_pb(kx_bus_async *ab, const char *subject, const ProtobufCMessage *msg,
                               const kx_bus_meta *meta, kx_bus_reply_cb cb, void *arg,
                               uint64_t *req_id)
{
    if (req_id)
        *req_id = 0;
    uint8_t *buf = NULL;
    size_t len = 0;
    kx_err err = kx_pb_pack(msg, &buf, &len);
    if (err != KX_OK)
        return err;
    err = kx_bus_async_request(ab, subject, buf, len, meta, cb, arg, req_id);
    free(buf);
    return err;
}

void kx_bus_async_cancel(kx_bus_async *ab, uint64_t req_id)
{
    pending *p = table_take(ab, req_id);
    if (p == NULL)
        return;
    kx_timer_cancel(p->timer);
    free(p);
}

size_t kx_bus_async_pending(const kx_bus_async *ab)
{
    return ab->npending;
}
