/* feed.c — per-run shared subscriptions for the SSE streams (see feed.h for the design and
 * why the teardown runs in that order).
 *
 * Locks: the set's mutex guards the list of feeds, each feed's refs, state and idle time; a
 * feed's own mutex guards its sinks and last_seq and is held while events are delivered. Lock
 * order: set, then feed, then whatever a sink's deliver takes (the stream's mutex). */
#include "feed.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kx/log.h"
#include "kx/metrics.h"
#include "kx/time.h"
#include "kx/uuid.h"
#include "run_cache.h"

#define CREATE_WAIT_MS 10000  /* longest wait for another request's creation of the same feed */
#define COMPLETE_WAIT_MS 5000 /* longest wait for the subscription's on-complete callback */
#define FLUSH_WAIT_MS 5000    /* longest PING/PONG round trip before a Destroy */

typedef enum feed_state {
    FEED_STARTING, /* the creator is subscribing: others wait */
    FEED_READY,
    FEED_GONE /* creation failed, or torn down: no longer listed */
} feed_state;

struct gw_feed {
    gw_feeds *fs;
    gw_feed *next; /* the set's list, under fs->mu */
    char run_id[KX_UUID_LEN + 1];
    feed_state state; /* under fs->mu */
    int refs;         /* streams holding it, under fs->mu */
    int64_t idle_since_ms;

    pthread_mutex_t mu; /* sinks, last_seq, completed */
    pthread_cond_t cv;  /* completed */
    gw_feed_sink *sinks;
    uint64_t last_seq; /* every event up to this one has been delivered (or precedes the feed) */
    bool completed;    /* the subscription's on-complete callback ran */
    natsSubscription *sub;
};

struct gw_feeds {
    kx_bus *bus;
    gw_work *work;
    gw_run_cache *cache;  /* a run's event drops its cached GET answer */
    kx_histogram *fanout; /* time to hand one event to every stream of its run */
    int64_t linger_ms;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* a feed left FEED_STARTING */
    gw_feed *head;
    size_t count;  /* feeds allocated and not freed (listed or being torn down) */
    size_t leaked; /* feeds whose subscription could not be torn down safely */
};

gw_feeds *gw_feeds_new(kx_bus *bus, gw_work *work, gw_run_cache *cache, int64_t linger_ms)
{
    gw_feeds *fs = calloc(1, sizeof *fs);
    if (fs == NULL)
        return NULL;
    fs->bus = bus;
    fs->work = work;
    fs->cache = cache;
    fs->fanout = kx_metrics_histogram(
        "kx_gateway_sse_fanout_seconds", "",
        "Time to hand one event to every stream of its run (append and resume)",
        kx_metrics_latency_buckets, kx_metrics_latency_nbuckets);
    fs->linger_ms = linger_ms;
    pthread_mutex_init(&fs->mu, NULL);
    pthread_cond_init(&fs->cv, NULL);
    return fs;
}

/* ---- delivery (cnats threads) ---- */

static void on_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    (void)nc;
    (void)sub;
    gw_feed *f = closure;
    uint64_t seq = 0;
    jsMsgMetaData *md = NULL;
    if (natsMsg_GetMetaData(&md, msg) == NATS_OK) {
        seq = md->Sequence.Stream;
        jsMsgMetaData_Destroy(md);
    }
    Kx__V1__RunEvent *ev = kx_pb_unpack(&kx__v1__run_event__descriptor, natsMsg_GetData(msg),
                                        (size_t)natsMsg_GetDataLength(msg));
    if (ev == NULL)
        kx_log(KX_LOG_WARN, f->run_id, NULL, "sse: skipping an event that is not a RunEvent");
    gw_run_cache_invalidate(f->fs->cache, f->run_id); /* its status may have changed */
    int64_t t0 = kx_mono_us();
    pthread_mutex_lock(&f->mu);
    bool delivered = seq > f->last_seq;
    if (delivered) { /* an ordered consumer never repeats; this guards the hand-over */
        f->last_seq = seq;
        for (gw_feed_sink *s = f->sinks; s != NULL; s = s->next)
            s->deliver(s, ev, seq);
    }
    pthread_mutex_unlock(&f->mu);
    if (delivered && f->fs->fanout != NULL)
        kx_histogram_observe(f->fs->fanout, (double)(kx_mono_us() - t0) / 1e6);
    kx_pb_free(ev);
    natsMsg_Destroy(msg);
}

static void on_complete(void *closure)
{
    gw_feed *f = closure;
    pthread_mutex_lock(&f->mu);
    f->completed = true;
    pthread_cond_broadcast(&f->cv);
    pthread_mutex_unlock(&f->mu);
}

/* ---- creation ---- */

static void feed_free(gw_feed *f)
{
    pthread_cond_destroy(&f->cv);
    pthread_mutex_destroy(&f->mu);
    free(f);
}

/* The stream sequence of the last event stored on subject: 0 when there is none. */
static kx_err last_seq_of(kx_bus *bus, const char *subject, uint64_t *seq)
{
    natsMsg *m = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_GetLastMsg(&m, kx_bus_js(bus), KX_STREAM_EVENTS, subject, NULL, &jerr);
    if (s == NATS_NOT_FOUND || jerr == JSNoMessageFoundErr) {
        natsMsg_Destroy(m);
        *seq = 0;
        return KX_OK;
    }
    if (s != NATS_OK)
        return KX_ERR_UNAVAILABLE;
    *seq = natsMsg_GetSequence(m);
    natsMsg_Destroy(m);
    return KX_OK;
}

/* Subscribes f from just after the last stored event. On failure the feed may still be known
 * to cnats (a consumer creation that timed out can have left a subscription that delivers), so
 * the caller keeps its memory. */
static kx_err feed_subscribe(gw_feeds *fs, gw_feed *f)
{
    if (!kx_bus_connected(fs->bus))
        return KX_ERR_UNAVAILABLE;
    char subject[sizeof KX_SUBJ_RUN_EV_PREFIX + KX_UUID_LEN];
    snprintf(subject, sizeof subject, "%s%s", KX_SUBJ_RUN_EV_PREFIX, f->run_id);
    uint64_t last = 0;
    if (last_seq_of(fs->bus, subject, &last) != KX_OK)
        return KX_ERR_UNAVAILABLE;
    f->last_seq = last;
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = KX_STREAM_EVENTS;
    so.Ordered = true;
    so.Config.DeliverPolicy = js_DeliverByStartSequence;
    so.Config.OptStartSeq = last + 1;
    jsErrCode jerr = 0;
    natsSubscription *sub = NULL;
    natsStatus s = js_Subscribe(&sub, kx_bus_js(fs->bus), subject, on_msg, f, NULL, &so, &jerr);
    if (s != NATS_OK) {
        kx_log(KX_LOG_WARN, f->run_id, NULL, "sse: subscribing to %s failed: %s (js error %d)",
               subject, natsStatus_GetText(s), (int)jerr);
        return KX_ERR_UNAVAILABLE;
    }
    s = natsSubscription_SetOnCompleteCB(sub, on_complete, f);
    f->sub = sub;
    if (s != NATS_OK) { /* closed at once (the connection went away) */
        kx_log(KX_LOG_WARN, f->run_id, NULL, "sse: subscription to %s closed at once: %s", subject,
               natsStatus_GetText(s));
        return KX_ERR_UNAVAILABLE;
    }
    return KX_OK;
}

kx_err gw_feed_acquire(gw_feeds *fs, const char *run_id, gw_feed **out)
{
    *out = NULL;
    int64_t until = kx_mono_ms() + CREATE_WAIT_MS;
    pthread_mutex_lock(&fs->mu);
    for (;;) {
        gw_feed *f = fs->head;
        while (f != NULL && strcmp(f->run_id, run_id) != 0)
            f = f->next;
        if (f == NULL)
            break;
        if (f->state == FEED_READY) {
            f->refs++;
            f->idle_since_ms = 0;
            pthread_mutex_unlock(&fs->mu);
            *out = f;
            return KX_OK;
        }
        /* Another request is creating it: wait (bounded) for its outcome. */
        if (kx_mono_ms() >= until) {
            pthread_mutex_unlock(&fs->mu);
            return KX_ERR_UNAVAILABLE;
        }
        struct timespec ts = kx_abs_timespec_in_ms(CLOCK_REALTIME, 50);
        pthread_cond_timedwait(&fs->cv, &fs->mu, &ts);
    }
    gw_feed *f = calloc(1, sizeof *f);
    if (f == NULL) {
        pthread_mutex_unlock(&fs->mu);
        return KX_ERR_NOMEM;
    }
    f->fs = fs;
    snprintf(f->run_id, sizeof f->run_id, "%.36s", run_id);
    f->state = FEED_STARTING;
    f->refs = 1;
    pthread_mutex_init(&f->mu, NULL);
    pthread_cond_init(&f->cv, NULL);
    f->next = fs->head;
    fs->head = f;
    fs->count++;
    pthread_mutex_unlock(&fs->mu);

    kx_err err = feed_subscribe(fs, f);

    pthread_mutex_lock(&fs->mu);
    if (err == KX_OK) {
        f->state = FEED_READY;
    } else {
        f->state = FEED_GONE;
        for (gw_feed **p = &fs->head; *p != NULL; p = &(*p)->next)
            if (*p == f) {
                *p = f->next;
                break;
            }
        if (f->sub == NULL) { /* cnats never had it: safe to free */
            fs->count--;
        } else {
            fs->leaked++;
            f = NULL; /* kept: cnats may still deliver to it (it has no sinks) */
        }
    }
    pthread_cond_broadcast(&fs->cv);
    pthread_mutex_unlock(&fs->mu);
    if (err != KX_OK) {
        if (f != NULL)
            feed_free(f);
        return err;
    }
    kx_log(KX_LOG_INFO, run_id, NULL, "sse: feed created (events after %llu)",
           (unsigned long long)f->last_seq);
    *out = f;
    return KX_OK;
}

void gw_feed_release(gw_feed *f)
{
    if (f == NULL)
        return;
    gw_feeds *fs = f->fs;
    pthread_mutex_lock(&fs->mu);
    if (--f->refs == 0)
        f->idle_since_ms = kx_mono_ms();
    pthread_mutex_unlock(&fs->mu);
}

/* ---- sinks ---- */

bool gw_feed_attach(gw_feed *f, gw_feed_sink *sink, uint64_t pos, uint64_t *last_seq)
{
    pthread_mutex_lock(&f->mu);
    *last_seq = f->last_seq;
    bool ok = pos >= f->last_seq;
    if (ok && !sink->attached) {
        sink->prev = NULL;
        sink->next = f->sinks;
        if (f->sinks)
            f->sinks->prev = sink;
        f->sinks = sink;
        sink->attached = true;
    }
    pthread_mutex_unlock(&f->mu);
    return ok;
}

void gw_feed_detach(gw_feed *f, gw_feed_sink *sink)
{
    pthread_mutex_lock(&f->mu);
    if (sink->attached) {
        if (sink->prev)
            sink->prev->next = sink->next;
        else
            f->sinks = sink->next;
        if (sink->next)
            sink->next->prev = sink->prev;
        sink->attached = false;
        sink->prev = sink->next = NULL;
    }
    pthread_mutex_unlock(&f->mu);
}

/* ---- teardown ---- */

/* Blocks (bounded). The feed is unlisted and nobody holds it. */
static void feed_teardown(gw_feed *f)
{
    gw_feeds *fs = f->fs;
    natsConnection *nc = kx_bus_conn(fs->bus);
    /* 1. Out of the connection's table (and the consumer deleted): the read loop no longer
     *    finds it. A connection that is closed has no read loop left. */
    natsStatus s = natsSubscription_Unsubscribe(f->sub);
    if (s != NATS_OK && s != NATS_CONNECTION_CLOSED && s != NATS_INVALID_SUBSCRIPTION)
        kx_log(KX_LOG_DEBUG, f->run_id, NULL, "sse: unsubscribing the feed: %s",
               natsStatus_GetText(s));
    /* 2. Its delivery thread has returned from the last callback. */
    int64_t until = kx_mono_ms() + COMPLETE_WAIT_MS;
    pthread_mutex_lock(&f->mu);
    while (!f->completed && kx_mono_ms() < until) {
        struct timespec ts = kx_abs_timespec_in_ms(CLOCK_REALTIME, 20);
        pthread_cond_timedwait(&f->cv, &f->mu, &ts);
    }
    bool completed = f->completed;
    pthread_mutex_unlock(&f->mu);
    /* 3. The read loop has moved past any message it held when the subscription left. */
    bool safe = false;
    if (completed) {
        s = natsConnection_FlushTimeout(nc, FLUSH_WAIT_MS);
        safe = s == NATS_OK || natsConnection_IsClosed(nc);
    }
    pthread_mutex_lock(&fs->mu);
    if (safe)
        fs->count--;
    else
        fs->leaked++;
    pthread_mutex_unlock(&fs->mu);
    if (!safe) {
        kx_log(KX_LOG_WARN, f->run_id, NULL,
               "sse: the feed's subscription could not be closed safely (%s); keeping it",
               completed ? "no PONG from NATS" : "its delivery did not complete");
        return;
    }
    /* 4. Nothing can reach it any more. */
    kx_log(KX_LOG_INFO, f->run_id, NULL, "sse: feed closed (no stream for the linger time)");
    natsSubscription_Destroy(f->sub);
    feed_free(f);
}

static void teardown_job(void *arg, bool stopping)
{
    (void)stopping;
    feed_teardown(arg);
}

/* Unlists the feeds nobody has held for linger_ms (or all unheld ones with linger_ms < 0) and
 * returns them as a list (fs->mu held). */
static gw_feed *unlist_idle(gw_feeds *fs, int64_t now, bool all)
{
    gw_feed *out = NULL;
    for (gw_feed **p = &fs->head; *p != NULL;) {
        gw_feed *f = *p;
        if (f->state == FEED_READY && f->refs == 0 &&
            (all || now - f->idle_since_ms >= fs->linger_ms)) {
            *p = f->next;
            f->state = FEED_GONE;
            f->next = out;
            out = f;
        } else {
            p = &f->next;
        }
    }
    return out;
}

void gw_feeds_sweep(gw_feeds *fs)
{
    pthread_mutex_lock(&fs->mu);
    gw_feed *idle = unlist_idle(fs, kx_mono_ms(), false);
    pthread_mutex_unlock(&fs->mu);
    while (idle != NULL) {
        gw_feed *next = idle->next;
        if (!gw_work_submit(fs->work, teardown_job, idle)) {
            /* Queue full: list it again for the next sweep. */
            pthread_mutex_lock(&fs->mu);
            idle->state = FEED_READY;
            idle->next = fs->head;
            fs->head = idle;
            pthread_mutex_unlock(&fs->mu);
        }
        idle = next;
    }
}

size_t gw_feeds_count(gw_feeds *fs)
{
    pthread_mutex_lock(&fs->mu);
    size_t n = fs->count;
    pthread_mutex_unlock(&fs->mu);
    return n;
}

void gw_feeds_free(gw_feeds *fs)
{
    if (fs == NULL)
        return;
    pthread_mutex_lock(&fs->mu);
    gw_feed *idle = unlist_idle(fs, kx_mono_ms(), true);
    bool held = fs->head != NULL;
    pthread_mutex_unlock(&fs->mu);
    while (idle != NULL) {
        gw_feed *next = idle->next;
        feed_teardown(idle);
        idle = next;
    }
    if (held) {
        kx_warn("sse: feeds still held by streams at shutdown; leaving them");
        return;
    }
    /* Teardowns queued by a sweep run on the worker pool, which the caller frees after. */
    pthread_mutex_lock(&fs->mu);
    size_t left = fs->count;
    pthread_mutex_unlock(&fs->mu);
    if (left > 0) {
        kx_info("sse: %zu feed(s) still being torn down or kept; leaving the set", left);
        return;
    }
    pthread_cond_destroy(&fs->cv);
    pthread_mutex_destroy(&fs->mu);
    free(fs);
}
