/* js_pull.c — a durable JetStream pull consumer read through a plain inbox subscription (see
 * kx/js_pull.h for why cnats' Fetch is not used).
 *
 * Each pull request has its own reply subject, <inbox>.<n>: the server sends its status
 * messages (404 no messages, 408 expired, 409 e.g. too many waiting) there, so a status of an
 * earlier request is never taken for the end of the current one. The messages themselves come
 * with their stream subject, so a request is also over once as many messages came as it asked
 * for (a stray one of an earlier request only ends it a little early: at worst the next request
 * goes out sooner and the runner takes one batch more than its free slots). */
#include "kx/js_pull.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kx/log.h"
#include "kx/time.h"

#define INBOX_CAP 96               /* <inbox> */
#define REPLY_CAP (INBOX_CAP + 24) /* <inbox>.<request number> */

struct kx_js_pull {
    kx_bus *bus;
    natsSubscription *sub; /* sync, on <inbox>.* */
    char inbox[INBOX_CAP]; /* <inbox>, without the request number */
    char next_subj[256];   /* $JS.API.CONSUMER.MSG.NEXT.<stream>.<consumer> */
    char stream[64], consumer[64];
    uint64_t seq;       /* the number of the last request sent */
    bool live;          /* that request may still deliver */
    bool heard;         /* something (a message, a status) came since it was sent */
    int left;           /* messages it may still deliver */
    int64_t over_at;    /* kx_mono_ms after which it is taken as over anyway */
    int64_t checked_at; /* kx_mono_ms of the last look at the consumer */
};

kx_err kx_js_pull_new(kx_bus *bus, const char *stream, const char *consumer, kx_js_pull **out)
{
    *out = NULL;
    kx_js_pull *p = calloc(1, sizeof *p);
    if (p == NULL)
        return KX_ERR_NOMEM;
    p->bus = bus;
    snprintf(p->stream, sizeof p->stream, "%s", stream);
    snprintf(p->consumer, sizeof p->consumer, "%s", consumer);
    p->checked_at = kx_mono_ms();
    snprintf(p->next_subj, sizeof p->next_subj, "$JS.API.CONSUMER.MSG.NEXT.%s.%s", stream,
             consumer);
    natsInbox *inbox = NULL;
    natsStatus s = natsInbox_Create(&inbox);
    if (s == NATS_OK) {
        snprintf(p->inbox, sizeof p->inbox, "%s", (const char *)inbox);
        natsInbox_Destroy(inbox);
        char wildcard[sizeof p->inbox + 2];
        snprintf(wildcard, sizeof wildcard, "%s.*", p->inbox);
        s = natsConnection_SubscribeSync(&p->sub, kx_bus_conn(bus), wildcard);
    }
    if (s == NATS_OK) /* a backlog larger than cnats' default bound must not be dropped */
        s = natsSubscription_SetPendingLimits(p->sub, -1, -1);
    if (s != NATS_OK) {
        kx_warn("js pull: cannot subscribe for %s: %s", p->next_subj, natsStatus_GetText(s));
        kx_js_pull_free(p);
        return kx_bus_status_err(s);
    }
    *out = p;
    return KX_OK;
}

void kx_js_pull_free(kx_js_pull *p)
{
    if (p == NULL)
        return;
    if (p->sub != NULL) {
        natsSubscription_Unsubscribe(p->sub);
        natsSubscription_Destroy(p->sub); /* what is still queued is dropped: redelivered */
    }
    free(p);
}

int kx_js_pull_request_json(char *out, size_t cap, int batch, int64_t expires_ms)
{
    return snprintf(out, cap, "{\"batch\":%d,\"expires\":%" PRId64 "}", batch,
                    expires_ms * 1000000);
}

/* A request lapsed without a word: normal while the queue is empty (nats-server 2.9 does not
 * always send the 408 of an expired request), but also what a deleted consumer looks like (a
 * pull request to it is dropped silently). At most every KX_JS_PULL_CHECK_MS, ask. */
static kx_err check_consumer(kx_js_pull *p)
{
    int64_t now = kx_mono_ms();
    if (now - p->checked_at < KX_JS_PULL_CHECK_MS)
        return KX_OK;
    p->checked_at = now;
    if (kx_bus_consumer_exists(p->bus, p->stream, p->consumer) == KX_ERR_NOT_FOUND) {
        kx_warn("js pull: consumer %s of %s is gone", p->consumer, p->stream);
        return KX_ERR_UNAVAILABLE;
    }
    return KX_OK; /* there, or JetStream did not answer: go on pulling */
}

/* The reply subject of request number seq: <inbox>.<seq>. */
static void reply_subject(const kx_js_pull *p, uint64_t seq, char out[REPLY_CAP])
{
    snprintf(out, REPLY_CAP, "%s.%" PRIu64, p->inbox, seq);
}

static kx_err send_request(kx_js_pull *p, int batch, int64_t expires_ms)
{
    char reply[REPLY_CAP], body[96];
    reply_subject(p, p->seq + 1, reply);
    kx_js_pull_request_json(body, sizeof body, batch, expires_ms);
    natsStatus s =
        natsConnection_PublishRequestString(kx_bus_conn(p->bus), p->next_subj, reply, body);
    if (s != NATS_OK) {
        kx_warn("js pull: cannot send a pull request to %s: %s", p->next_subj,
                natsStatus_GetText(s));
        return kx_bus_status_err(s);
    }
    p->seq++;
    p->live = true;
    p->heard = false;
    p->left = batch;
    p->over_at = kx_mono_ms() + expires_ms + KX_JS_PULL_GRACE_MS;
    return KX_OK;
}

/* A status message (no data, a Status header): its code in *code; false for a user message. */
static bool status_of(natsMsg *m, int *code)
{
    const char *v = NULL;
    if (natsMsg_GetDataLength(m) != 0 || natsMsgHeader_Get(m, "Status", &v) != NATS_OK ||
        v == NULL)
        return false;
    *code = (int)strtol(v, NULL, 10);
    return true;
}

/* Whether the status m came on the reply subject of the current request. */
static bool of_current(const kx_js_pull *p, natsMsg *m)
{
    char reply[REPLY_CAP];
    reply_subject(p, p->seq, reply);
    const char *subj = natsMsg_GetSubject(m);
    return subj != NULL && strcmp(subj, reply) == 0;
}

kx_err kx_js_pull_fetch(kx_js_pull *p, int max, int64_t timeout_ms, natsMsg **out, int *n)
{
    *n = 0;
    if (max < 1)
        return KX_ERR_INVALID;
    int64_t deadline = kx_mono_ms() + (timeout_ms > 0 ? timeout_ms : 0);
    for (;;) {
        int64_t now = kx_mono_ms();
        if (p->live && now >= p->over_at) { /* expired; its 408 did not come (yet) */
            p->live = false;
            if (!p->heard && *n == 0 && check_consumer(p) != KX_OK)
                return KX_ERR_UNAVAILABLE;
        }
        int queued = 0;
        if (natsSubscription_GetPending(p->sub, &queued, NULL) != NATS_OK)
            queued = 0;
        if (*n > 0 && queued == 0)
            return KX_OK; /* what came so far, without waiting for more */
        if (!p->live && queued == 0) {
            kx_err err = send_request(p, max, timeout_ms > 0 ? timeout_ms : 1);
            if (err != KX_OK)
                return err;
        }
        int64_t wait = deadline - now;
        if (wait <= 0 && queued == 0)
            return KX_OK;
        natsMsg *m = NULL;
        natsStatus s = natsSubscription_NextMsg(&m, p->sub, wait > 0 ? wait : 0);
        if (s == NATS_TIMEOUT)
            return KX_OK;
        if (s != NATS_OK) /* closed connection or subscription, slow consumer: start over */
            return *n > 0 ? KX_OK : KX_ERR_UNAVAILABLE;
        p->heard = true;
        int code = 0;
        if (status_of(m, &code)) {
            bool current = of_current(p, m);
            kx_bus_msg_free(m);
            if (code == 503) { /* no responders: the consumer (or JetStream) is not there */
                if (current)
                    p->live = false;
                return *n > 0 ? KX_OK : KX_ERR_UNAVAILABLE;
            }
            if (current && code != 100) /* 404, 408, 409: that request is over */
                p->live = false;
            continue;
        }
        out[(*n)++] = m;
        if (p->live && --p->left <= 0)
            p->live = false;
        if (*n == max)
            return KX_OK;
    }
}

static kx_err reply_with(kx_bus *bus, natsMsg *m, const char *what)
{
    const char *reply = natsMsg_GetReply(m);
    if (reply == NULL || reply[0] == '\0')
        return KX_ERR_INVALID;
    return kx_bus_status_err(natsConnection_PublishString(kx_bus_conn(bus), reply, what));
}

kx_err kx_js_ack(kx_bus *bus, natsMsg *m)
{
    return reply_with(bus, m, "+ACK");
}

kx_err kx_js_nak(kx_bus *bus, natsMsg *m)
{
    return reply_with(bus, m, "-NAK");
}

kx_err kx_js_term(kx_bus *bus, natsMsg *m)
{
    return reply_with(bus, m, "+TERM");
}
