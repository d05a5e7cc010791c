/* stream.c — the SSE route and the registry of open streams (see stream.h for the design).
 *
 * Threads that touch a stream, and what they hold:
 *   - an MHD pool thread: the content reader (its first call hands the socket to a writer,
 *     its second ends the response) and the response free callback;
 *   - its writer thread (sse_writer.h): sends, sees the client go, hands the connection back;
 *   - a thread of the registry's worker pool: the catch-up job (history from JetStream), the
 *     check of streams whose run ended without a terminal event, feed teardowns;
 *   - the cnats thread of the run's feed: deliver (feed.h), with the feed's lock held;
 *   - the service loop thread: the ping timer, gw_streams_close_all (on drain).
 * Each stream has a mutex over its buffer and flags; the registry has a mutex over the list of
 * open streams. Lock order: registry, then feed, then stream, then a writer's queue. The
 * hand-over (suspend) and the hand-back (resume) happen under the stream's mutex, and the
 * socket is written only while hand == HAND_WRITER: libmicrohttpd neither writes nor closes a
 * suspended connection, and the writer forgets the socket before it resumes the connection.
 *
 * A stream's position (pos) is the stream sequence of the last message it has (or skipped as
 * not its business): everything up to pos is in its buffer or sent. A message is one event or
 * a batch of them (kx/run_events.h): a batch's events get the SSE ids "<seq>.<index>", a single
 * event "<seq>", and a client that resumes inside a batch (Last-Event-ID "<seq>.<index>") gets
 * that message again with its first index + 1 events skipped (skip_seq, skip_n). While it is behind its run's
 * feed it catches up with direct gets (KX_RUN_EVENTS allows them), one job at a time, paced by
 * the reader (at most REFILL_BYTES pending), so a slow client of a long run costs no memory
 * and cannot be cut during the replay; then it attaches to the feed and follows it live. */
#include "stream.h"

#include <errno.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "access.h"
#include "feed.h"
#include "kx/buf.h"
#include "kx/json.h"
#include "kx/log.h"
#include "kx/metrics.h"
#include "kx/pb.h"
#include "kx/run_events.h"
#include "kx/time.h"
#include "reply.h"
#include "sse_writer.h"
#include "store.h"
#include "work.h"

#define STREAM_BLOCK 32768
#define PING_FRAME ": ping\n\n"
/* A run that ended this long ago without its terminal event reaching a stream (the publish of
 * that event failed) gets the terminal status from Postgres instead. */
#define STALE_GRACE_S 10
#define STALE_BATCH 500
#define REFILL_BYTES 65536 /* the catch-up job stops when this much is pending */
#define FETCH_WAIT_MS 2000 /* longest wait for one event of the history */
#define STREAM_WORKERS 4   /* catch-up jobs, stale checks and feed teardowns */
#define STREAM_QUEUE 16384 /* jobs waiting (over the stream cap: one job per stream at most) */

typedef struct gw_stream gw_stream;

struct gw_streams {
    gw_app *app;
    pthread_mutex_t mu;
    gw_stream *head; /* streams libmicrohttpd holds */
    size_t open;
    size_t max_open;        /* KX_SSE_MAX_STREAMS */
    size_t max_per_account; /* KX_SSE_MAX_STREAMS_PER_ACCOUNT */
    size_t max_buffer;      /* KX_SSE_BUFFER_BYTES */
    size_t alive;           /* streams not yet freed (open or waiting for on_sub_complete) */
    bool closing;
    bool stale_check_queued; /* an end_stale_streams job is queued or running */
    gw_work *work;           /* catch-up jobs, stale checks, feed teardowns */
    gw_feeds *feeds;         /* one shared subscription per run with live streams */
    gw_sse_writers *writers; /* the threads that write the streams' sockets (sse_writer.h) */
    atomic_int handed;       /* connections the writers hold suspended */
    atomic_bool aborting;    /* gw_streams_abort_all: hand everything back, take nothing */
    atomic_uint next_shard;
    int64_t stall_ms;         /* KX_HTTP_TIMEOUT_S: a backlog that does not move this long */
    kx_histogram *send_delay; /* bytes queued -> their last byte handed to the kernel */
    kx_loop *loop;
    kx_timer *ping_timer;
    kx_gauge *open_gauge;
    kx_gauge *feeds_gauge;
    kx_counter *cut_total; /* streams cut because their client fell behind */
};

struct gw_stream {
    gw_streams *reg;
    gw_stream *prev, *next; /* registry list, under reg->mu */
    bool listed;
    char run_id[KX_UUID_LEN + 1];
    char account[KX_UUID_LEN + 1];

    pthread_mutex_t mu; /* everything below */
    struct MHD_Connection *conn;
    kx_buf buf;    /* pending bytes are buf.s[off..buf.len) */
    size_t off;    /* what the reader has sent already */
    bool terminal; /* the terminal event is in the buffer: end once it is sent */
    bool end;      /* end once the buffer is sent (drain) */
    bool failed;   /* out of memory: end with an error */
    bool cut;      /* the client fell behind: end once the buffer is sent (it resumes
                                 from its Last-Event-ID); later events are dropped */
    bool mhd_done;
    bool live;             /* attached to the feed: its events arrive by deliver */
    bool job_pending;      /* a catch-up job is queued or running */
    uint64_t pos;          /* the stream sequence of the last message the stream has */
    uint64_t skip_seq;     /* a resume inside a batch: of the message at this sequence, */
    size_t skip_n;         /* ... the first skip_n events are the client's already */
    char *final_payload;   /* replay-only: the status from Postgres to end with, or NULL */
    int64_t last_event_ms; /* kx_mono_ms of the last event (or of the start) */
    int64_t epoch;         /* highest writer epoch seen: older writers' events are dropped */
    int refs;              /* libmicrohttpd's + a catch-up job's + the writer's + a kick's */
    /* Who writes the socket: libmicrohttpd until its first call of the reader (the headers
     * are sent), then a writer thread (the connection stays suspended), then libmicrohttpd
     * again to end it (BACK: the reader ends the response, cleanly or with an error). */
    enum {
        HAND_MHD,
        HAND_WRITER,
        HAND_BACK
    } hand;
    bool chunked;        /* HTTP/1.1: each piece of buf is framed as a chunk */
    bool abort;          /* hand the connection back with an error (client gone, stall) */
    bool back_error;     /* BACK with an error: libmicrohttpd closes the connection */
    int64_t stall_since; /* kx_mono_ms of the last progress while bytes are pending; 0 */
    int64_t queued_us;   /* kx_mono_us since when the pending bytes wait; 0: none pending */
    gw_sse_sock sock;    /* the socket while a writer holds it */

    /* Set before the response is queued, then read only. */
    gw_feed *feed;      /* the run's feed (live runs), held until the stream is freed */
    uint64_t replay_to; /* no feed (an ended run): the history ends at this sequence */
    gw_feed_sink sink;  /* how the feed reaches this stream */
};

/* ---- buffer ---- */

/* Appends bytes to the pending buffer (stream mutex held). The bytes already sent are dropped
 * when the buffer is empty, or before it would have to grow. */
static void buf_put(gw_stream *st, const char *data, size_t n)
{
    if (st->failed)
        return;
    kx_buf *b = &st->buf;
    if (st->off > 0 && st->off == b->len) {
        kx_buf_clear(b);
        st->off = 0;
    }
    if (st->off == b->len && st->queued_us == 0)
        st->queued_us = kx_mono_us();
    if (st->off > 0 && b->len + n + 16 > b->cap) { /* reclaim what was already sent */
        kx_buf_consume(b, st->off);
        st->off = 0;
    }
    /* HTTP/1.1: libmicrohttpd sent the headers of a chunked response; the writer sends the
     * body, so every piece is one chunk ("<hex size>\r\n<data>\r\n"); libmicrohttpd writes
     * the last chunk when the stream ends cleanly. */
    bool ok = !st->chunked || kx_buf_printf(b, "%zx\r\n", n) == KX_OK;
    ok = ok && kx_buf_add(b, data, n) == KX_OK;
    ok = ok && (!st->chunked || kx_buf_add(b, "\r\n", 2) == KX_OK);
    if (!ok)
        st->failed = true;
}

/* Appends one SSE event to out: Kortix's framing ("data: <json>" and a blank line) with an id
 * first when the event has a stream sequence, so that a client resumes after it
 * (Last-Event-ID; clients that ignore ids see Kortix's stream unchanged): "id: <seq>" for a
 * message of one event, "id: <seq>.<idx>" for event idx of a batch (idx < 0: one event). A
 * payload line break starts another "data: " line. False when out ran out of memory. */
static bool append_event(kx_buf *out, const char *payload, size_t n, uint64_t seq, long idx)
{
    bool ok = true;
    if (seq > 0 && idx >= 0)
        ok = kx_buf_printf(out, "id: %llu.%ld\n", (unsigned long long)seq, idx) == KX_OK;
    else if (seq > 0)
        ok = kx_buf_printf(out, "id: %llu\n", (unsigned long long)seq) == KX_OK;
    const char *p = payload, *end = payload + n;
    do {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *stop = nl ? nl : end;
        ok = ok && kx_buf_add(out, "data: ", 6) == KX_OK &&
            kx_buf_add(out, p, (size_t)(stop - p)) == KX_OK && kx_buf_add(out, "\n", 1) == KX_OK;
        p = nl ? nl + 1 : end;
    } while (p < end);
    return ok && kx_buf_add(out, "\n", 1) == KX_OK;
}

/* append_event into out cleared first. */
static bool format_event(kx_buf *out, const char *payload, size_t n, uint64_t seq, long idx)
{
    kx_buf_clear(out);
    return append_event(out, payload, n, seq, idx);
}

/* Appends one formatted event frame (stream mutex held).
 *
 * Bounded memory: an event that would take the pending bytes over the stream's cap (one event
 * always fits an empty buffer) cuts the stream instead: what is buffered is sent, then the
 * stream ends cleanly, and the client resumes after the last event it received. */
static void buf_put_frame(gw_stream *st, const char *frame, size_t len)
{
    if (st->cut || st->failed)
        return;
    size_t pending = st->buf.len - st->off;
    if (pending > 0 && pending + len > st->reg->max_buffer) {
        kx_log(KX_LOG_WARN, st->run_id, NULL,
               "sse: client too slow: more than %zu bytes pending; ending its stream after them "
               "(it resumes from its last event id)",
               st->reg->max_buffer);
        st->cut = true;
        if (st->reg->cut_total != NULL)
            kx_counter_add(st->reg->cut_total, 1);
        return;
    }
    buf_put(st, frame, len);
}

/* Formats and appends one SSE event (stream mutex held; idx as append_event). */
static void buf_put_event(gw_stream *st, const char *payload, size_t n, uint64_t seq, long idx)
{
    kx_buf frame = {0};
    if (format_event(&frame, payload, n, seq, idx))
        buf_put_frame(st, frame.s, frame.len);
    else if (!st->cut)
        st->failed = true;
    kx_buf_free(&frame);
}

/* Something to do for the stream's writer thread (stream mutex held): bytes to send, or an
 * end. Before the writer holds the connection (the headers are not sent yet) the reader's
 * hand-over queues it; after it handed the connection back, nothing is left to do. */
static void wake(gw_stream *st)
{
    if (st->hand == HAND_WRITER && gw_sse_writers_kick(st->reg->writers, &st->sock))
        st->refs++; /* the queue's, dropped by on_writer_unref */
}

/* ---- lifetime ---- */

static void stream_free(gw_stream *st)
{
    gw_streams *reg = st->reg;
    if (st->feed != NULL) {
        gw_feed_detach(st->feed, &st->sink); /* no deliver runs for it after this */
        gw_feed_release(st->feed);
    }
    pthread_mutex_destroy(&st->mu);
    kx_buf_free(&st->buf);
    free(st->final_payload);
    free(st);
    pthread_mutex_lock(&reg->mu);
    reg->alive--;
    pthread_mutex_unlock(&reg->mu);
}

static void stream_release(gw_stream *st)
{
    pthread_mutex_lock(&st->mu);
    int refs = --st->refs;
    pthread_mutex_unlock(&st->mu);
    if (refs == 0)
        stream_free(st);
}

/* libmicrohttpd is done with the response (sent, client gone, or server stopping). */
static void on_response_free(void *cls)
{
    gw_stream *st = cls;
    gw_streams *reg = st->reg;
    pthread_mutex_lock(&reg->mu);
    if (st->listed) {
        if (st->prev)
            st->prev->next = st->next;
        else
            reg->head = st->next;
        if (st->next)
            st->next->prev = st->prev;
        st->listed = false;
        reg->open--;
        if (reg->open_gauge)
            kx_gauge_add(reg->open_gauge, -1);
    }
    pthread_mutex_unlock(&reg->mu);

    pthread_mutex_lock(&st->mu);
    st->mhd_done = true;
    pthread_mutex_unlock(&st->mu);
    if (st->feed != NULL)
        gw_feed_detach(st->feed, &st->sink); /* stops the deliveries now (a no-op if behind) */
    stream_release(st);
}

/* ---- the two sides ---- */

/* A message's events already formatted (append_event), one after the other: event i is
 * s[off[i] .. off[i + 1]) (empty for an event without payload). */
typedef struct msg_frames {
    const char *s;
    const size_t *off;
} msg_frames;

/* One event of a message (stream mutex held; the stream still takes events). idx: its index
 * in a batch, -1 for a message of one event. frame: it formatted, or NULL. */
static void take_one(gw_stream *st, const Kx__V1__RunEvent *ev, uint64_t seq, long idx,
                     const char *frame, size_t frame_len)
{
    /* Fencing: an event written under an older lease epoch than one already seen comes from
     * an attempt that lost its lease (reaped, then retried): dropped. Epoch 0 = a status of
     * the gateway or the scheduler, always shown. */
    if (ev->lease_epoch > 0 && ev->lease_epoch < st->epoch) {
        kx_log(KX_LOG_INFO, st->run_id, NULL, "sse: dropped an event of stale epoch %lld",
               (long long)ev->lease_epoch);
        return;
    }
    if (ev->lease_epoch > st->epoch)
        st->epoch = ev->lease_epoch;
    st->last_event_ms = kx_mono_ms();
    if (!kx_pb_str_empty(ev->payload_json)) {
        if (frame != NULL)
            buf_put_frame(st, frame, frame_len);
        else
            buf_put_event(st, ev->payload_json, strlen(ev->payload_json), seq, idx);
    }
    st->terminal = !st->cut && ev->terminal;
}

/* One message of the run — an event or a batch — from the history or the feed (stream mutex
 * held). Messages up to pos are the stream's already (the hand-over from history to feed never
 * repeats one); of the message a resume named inside a batch, the events the client has are
 * skipped. frames: the message already formatted, or NULL to format it here. */
static void take_event(gw_stream *st, const Kx__V1__RunEvent *m, uint64_t seq,
                       const msg_frames *frames)
{
    if (seq <= st->pos)
        return;
    st->pos = seq;
    if (m == NULL)
        return;
    size_t n = kx_run_events_n(m);
    size_t from = seq == st->skip_seq ? st->skip_n : 0;
    for (size_t i = from; i < n; i++) {
        if (st->mhd_done || st->terminal || st->end || st->cut || st->failed)
            return;
        const char *frame = frames ? frames->s + frames->off[i] : NULL;
        size_t frame_len = frames ? frames->off[i + 1] - frames->off[i] : 0;
        take_one(st, kx_run_events_at(m, i), seq, m->n_events > 0 ? (long)i : -1, frame,
                 frame_len);
    }
}

/* The last message formatted on this delivery thread: a feed hands one message to all its
 * streams in a row, so it is formatted once (its stream sequence names it: one sequence, one
 * message). A fixed array (no heap memory outlives the thread); a message with more events or
 * bytes is formatted per stream. */
#define FRAME_CACHE_BYTES 16384
#define FRAME_CACHE_EVENTS 64
static _Thread_local struct {
    uint64_t seq;
    bool ok; /* false: the message did not fit */
    size_t off[FRAME_CACHE_EVENTS + 1];
    char s[FRAME_CACHE_BYTES];
} t_frame;

/* Formats m into t_frame (its events' frames one after the other). */
static void cache_frames(const Kx__V1__RunEvent *m, uint64_t seq)
{
    t_frame.seq = seq;
    t_frame.ok = false;
    size_t n = kx_run_events_n(m);
    if (n > FRAME_CACHE_EVENTS)
        return;
    kx_buf f = {0};
    bool ok = true;
    for (size_t i = 0; i < n && ok; i++) {
        t_frame.off[i] = f.len;
        const Kx__V1__RunEvent *ev = kx_run_events_at(m, i);
        if (!kx_pb_str_empty(ev->payload_json))
            ok = append_event(&f, ev->payload_json, strlen(ev->payload_json), seq,
                              m->n_events > 0 ? (long)i : -1);
    }
    t_frame.off[n] = f.len;
    if (ok && f.len <= sizeof t_frame.s) {
        if (f.len > 0)
            memcpy(t_frame.s, f.s, f.len);
        t_frame.ok = true;
    }
    kx_buf_free(&f);
}

/* The feed's cnats thread (feed lock held): a live message. */
static void deliver(gw_feed_sink *sink, const Kx__V1__RunEvent *ev, uint64_t seq)
{
    gw_stream *st = (gw_stream *)((char *)sink - offsetof(gw_stream, sink));
    msg_frames frames = {t_frame.s, t_frame.off};
    const msg_frames *fp = NULL;
    if (ev != NULL && seq > 0) {
        if (t_frame.seq != seq)
            cache_frames(ev, seq);
        if (t_frame.ok)
            fp = &frames;
    }
    pthread_mutex_lock(&st->mu);
    take_event(st, ev, seq, fp);
    wake(st);
    pthread_mutex_unlock(&st->mu);
}

/* ---- catching up: the history from JetStream ---- */

/* The first event of the run after stream sequence pos: KX_OK with *msg, KX_ERR_NOT_FOUND when
 * there is none (or it expired), KX_ERR_UNAVAILABLE when NATS does not answer in time. */
static kx_err fetch_after(gw_streams *reg, const char *subject, uint64_t pos, natsMsg **msg)
{
    jsOptions o;
    jsOptions_Init(&o);
    o.Wait = FETCH_WAIT_MS;
    jsDirectGetMsgOptions dg;
    jsDirectGetMsgOptions_Init(&dg);
    dg.Sequence = pos + 1;
    dg.NextBySubject = subject;
    natsStatus s = js_DirectGetMsg(msg, kx_bus_js(reg->app->svc->bus), KX_STREAM_EVENTS, &o, &dg);
    if (s == NATS_OK)
        return KX_OK;
    *msg = NULL;
    return s == NATS_NOT_FOUND ? KX_ERR_NOT_FOUND : KX_ERR_UNAVAILABLE;
}

/* Worker thread: moves the stream towards its target (the feed's last sequence, or replay_to)
 * until REFILL_BYTES are pending, then hands it to the feed (live) or ends it (replay-only).
 * Holds a reference to the stream; the reader queues the next job when the buffer drains. */
static void catch_up(void *arg, bool stopping)
{
    gw_stream *st = arg;
    char subject[sizeof KX_SUBJ_RUN_EV_PREFIX + KX_UUID_LEN];
    snprintf(subject, sizeof subject, "%s%s", KX_SUBJ_RUN_EV_PREFIX, st->run_id);
    const char *failure = NULL;
    for (;;) {
        pthread_mutex_lock(&st->mu);
        bool stop = stopping || st->mhd_done || st->terminal || st->end || st->cut || st->failed;
        uint64_t pos = st->pos;
        size_t pending = st->buf.len - st->off;
        pthread_mutex_unlock(&st->mu);
        if (stop)
            break;
        uint64_t target;
        if (st->feed != NULL) {
            if (gw_feed_attach(st->feed, &st->sink, pos, &target)) {
                pthread_mutex_lock(&st->mu);
                st->live = true;
                pthread_mutex_unlock(&st->mu);
                break;
            }
        } else if (pos >= (target = st->replay_to)) {
            /* The whole history of an ended run: close with Postgres' status unless the
             * terminal event was in it. */
            pthread_mutex_lock(&st->mu);
            if (!st->terminal && st->final_payload != NULL)
                buf_put_event(st, st->final_payload, strlen(st->final_payload), 0, -1);
            st->terminal = true;
            pthread_mutex_unlock(&st->mu);
            break;
        }
        if (pending >= REFILL_BYTES)
            break; /* paced by the client: the reader queues the next job */
        natsMsg *m = NULL;
        kx_err err = fetch_after(st->reg, subject, pos, &m);
        uint64_t seq = err == KX_OK ? natsMsg_GetSequence(m) : 0;
        if (err == KX_ERR_UNAVAILABLE) {
            failure = "NATS did not answer";
            break;
        }
        if (err == KX_ERR_NOT_FOUND || seq > target) {
            /* Nothing more up to the target (expired, or it is the feed's): skip to it. */
            natsMsg_Destroy(m);
            pthread_mutex_lock(&st->mu);
            if (st->pos < target)
                st->pos = target;
            pthread_mutex_unlock(&st->mu);
            continue;
        }
        Kx__V1__RunEvent *ev = kx_pb_unpack(&kx__v1__run_event__descriptor, natsMsg_GetData(m),
                                            (size_t)natsMsg_GetDataLength(m));
        if (ev == NULL)
            kx_log(KX_LOG_WARN, st->run_id, NULL, "sse: skipping an event that is not a RunEvent");
        pthread_mutex_lock(&st->mu);
        take_event(st, ev, seq, NULL);
        pthread_mutex_unlock(&st->mu);
        kx_pb_free(ev);
        natsMsg_Destroy(m);
    }
    pthread_mutex_lock(&st->mu);
    if (failure != NULL && !st->mhd_done) {
        /* Cut cleanly: the client resumes from its last event id. */
        kx_log(KX_LOG_WARN, st->run_id, NULL,
               "sse: reading the run's history failed (%s); ending the stream after its last "
               "event (the client resumes from there)",
               failure);
        st->end = true;
    }
    st->job_pending = false;
    wake(st);
    pthread_mutex_unlock(&st->mu);
    stream_release(st);
}

/* Queues a catch-up job (stream mutex held). False when the pool refuses it. */
static bool queue_catch_up(gw_stream *st)
{
    if (st->job_pending)
        return true;
    st->job_pending = true;
    st->refs++; /* the job's */
    if (gw_work_submit(st->reg->work, catch_up, st))
        return true;
    st->job_pending = false;
    st->refs--; /* the MHD reference is still held: never the last */
    return false;
}

/* ---- the writer's side (sse_writer.h) ---- */

/* Hands the connection back to libmicrohttpd (writer thread, stream mutex held): the socket
 * leaves the writer's epoll set first, then the resume; the reader then ends the response
 * (cleanly: libmicrohttpd writes the last chunk and keeps the connection; with an error: it
 * closes it). The socket is never touched again here. The caller drops the writer's
 * reference after unlocking. */
static void hand_back(gw_stream *st, bool error)
{
    gw_sse_unwatch(st->reg->writers, &st->sock);
    st->hand = HAND_BACK;
    st->back_error = error;
    atomic_fetch_sub(&st->reg->handed, 1);
    MHD_resume_connection(st->conn);
}

/* Sends what is pending without blocking (writer thread, stream mutex held). False when the
 * client is gone (the connection must be closed). */
static bool send_pending(gw_stream *st)
{
    while (st->off < st->buf.len) {
        ssize_t n = send(st->sock.fd, st->buf.s + st->off, st->buf.len - st->off,
                         MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            st->off += (size_t)n;
            st->stall_since = kx_mono_ms();
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (st->stall_since == 0)
                st->stall_since = kx_mono_ms();
            return true; /* EPOLLOUT calls again */
        }
        return false;
    }
    st->stall_since = 0;
    if (st->queued_us != 0 && st->reg->send_delay != NULL)
        kx_histogram_observe(st->reg->send_delay, (double)(kx_mono_us() - st->queued_us) / 1e6);
    st->queued_us = 0;
    return true;
}

/* The writer thread: a kick, a socket event or the tick. Sends, notices a client that went
 * away or stopped reading for KX_HTTP_TIMEOUT_S, queues the next catch-up job when the buffer
 * drained, and hands the connection back once the stream is over. */
static void on_writer_service(gw_sse_sock *sock, uint32_t why, void *arg)
{
    gw_stream *st = (gw_stream *)((char *)sock - offsetof(gw_stream, sock));
    (void)arg;
    bool release = false;
    pthread_mutex_lock(&st->mu);
    if (st->hand != HAND_WRITER) {
        pthread_mutex_unlock(&st->mu);
        return;
    }
    gw_sse_watch(st->reg->writers, &st->sock);
    bool gone = st->abort || st->failed;
    if (why != GW_SSE_QUEUED && why != GW_SSE_TICK && (why & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)))
        gone = true; /* the client closed (an SSE client never half-closes) */
    if (!gone && !send_pending(st))
        gone = true;
    if (!gone && why == GW_SSE_TICK && st->stall_since != 0 && st->off < st->buf.len &&
        kx_mono_ms() - st->stall_since >= st->reg->stall_ms) {
        kx_log(KX_LOG_WARN, st->run_id, NULL,
               "sse: the client read nothing for %lld ms with bytes pending; closing its stream "
               "(it resumes from its last event id)",
               (long long)st->reg->stall_ms);
        gone = true;
    }
    if (gone) {
        hand_back(st, true);
        release = true;
    } else if (st->off == st->buf.len) {
        if (st->terminal || st->end || st->cut) {
            hand_back(st, false);
            release = true;
        } else if (!st->live && !queue_catch_up(st)) {
            kx_log(KX_LOG_WARN, st->run_id, NULL,
                   "sse: too many streams catching up; ending this one (the client resumes)");
            hand_back(st, false);
            release = true;
        }
    }
    pthread_mutex_unlock(&st->mu);
    if (release)
        stream_release(st); /* the writer's */
}

static void on_writer_unref(gw_sse_sock *sock, void *arg)
{
    (void)arg;
    stream_release((gw_stream *)((char *)sock - offsetof(gw_stream, sock)));
}

/* MHD thread: called once the headers are sent. Hands the socket to a writer thread and keeps
 * the connection suspended; called again only after the writer handed it back, to end the
 * response. Never blocks. */
static ssize_t reader(void *cls, uint64_t pos, char *out, size_t max)
{
    gw_stream *st = cls;
    gw_streams *reg = st->reg;
    (void)pos;
    (void)out;
    (void)max;
    ssize_t ret;
    pthread_mutex_lock(&st->mu);
    if (st->hand == HAND_BACK) {
        ret =
            st->back_error ? MHD_CONTENT_READER_END_WITH_ERROR : MHD_CONTENT_READER_END_OF_STREAM;
    } else if (st->hand == HAND_WRITER) {
        /* libmicrohttpd keeps a suspended connection's reader quiet; never hand it over twice */
        kx_log(KX_LOG_WARN, st->run_id, NULL, "sse: reader called while the writer holds it");
        ret = 0;
    } else if (st->failed || atomic_load(&reg->aborting)) {
        ret = MHD_CONTENT_READER_END_WITH_ERROR;
    } else {
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(st->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        if (ci == NULL) {
            ret = MHD_CONTENT_READER_END_WITH_ERROR;
        } else {
            st->sock.fd = ci->connect_fd;
            /* Each event is one send: never held back by Nagle (libmicrohttpd pushed the
             * headers the same way). */
            int one = 1;
            (void)setsockopt(st->sock.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            st->sock.shard = atomic_fetch_add(&reg->next_shard, 1);
            MHD_suspend_connection(st->conn);
            st->hand = HAND_WRITER;
            atomic_fetch_add(&reg->handed, 1);
            st->refs++; /* the writer's, dropped when it hands the connection back */
            wake(st);   /* first service: watch the socket, send, catch up */
            ret = 0;
        }
    }
    pthread_mutex_unlock(&st->mu);
    return ret;
}

/* The terminal status Postgres knows for an ended run (Kortix's texts). malloc'd; NULL on
 * OOM. */
static char *final_payload(const char *status, const char *error)
{
    json_t *v;
    if (strcmp(status, "completed") == 0)
        v = json_pack("{s:s, s:s, s:s}", "type", "status", "status", "completed", "message",
                      "Agent run completed successfully");
    else
        v = json_pack("{s:s, s:s, s:s}", "type", "status", "status", status, "message",
                      error != NULL                       ? error
                          : strcmp(status, "failed") == 0 ? "Agent run failed"
                                                          : "Agent run stopped");
    if (v == NULL)
        return NULL;
    char *s = kx_json_dumps_py(v);
    json_decref(v);
    return s;
}

/* ---- registry ---- */

gw_streams *gw_streams_new(gw_app *app)
{
    gw_streams *reg = calloc(1, sizeof *reg);
    if (reg == NULL)
        return NULL;
    reg->app = app;
    reg->max_open = (size_t)app->cfg.sse_max_streams;
    reg->max_per_account = (size_t)app->cfg.sse_max_per_account;
    reg->max_buffer = app->cfg.sse_buffer_bytes;
    reg->stall_ms = (int64_t)app->cfg.conn_timeout_s * 1000;
    pthread_mutex_init(&reg->mu, NULL);
    reg->open_gauge = kx_metrics_gauge("kx_gateway_sse_streams", "", "Open SSE streams");
    reg->send_delay = kx_metrics_histogram(
        "kx_gateway_sse_send_delay_seconds", "",
        "Time from bytes queued on an SSE stream to their last byte handed to the kernel "
        "(the writer threads' share of an event's latency)",
        kx_metrics_latency_buckets, kx_metrics_latency_nbuckets);
    reg->feeds_gauge = kx_metrics_gauge("kx_gateway_sse_feeds", "",
                                        "Runs followed by a shared subscription (SSE)");
    reg->cut_total = kx_metrics_counter(
        "kx_gateway_sse_cut_total", "",
        "SSE streams cut because their client fell more than KX_SSE_BUFFER_BYTES behind (each "
        "ends after its pending bytes; the client resumes from its last event id)");
    reg->work = gw_work_new(STREAM_WORKERS, STREAM_QUEUE);
    reg->feeds = reg->work != NULL
        ? gw_feeds_new(app->svc->bus, reg->work, app->run_cache, app->cfg.sse_feed_linger_ms)
        : NULL;
    gw_sse_ops ops = {.service = on_writer_service, .unref = on_writer_unref, .arg = reg};
    reg->writers =
        reg->feeds != NULL ? gw_sse_writers_new((unsigned)app->cfg.sse_writers, ops) : NULL;
    if (reg->writers == NULL) {
        gw_feeds_free(reg->feeds);
        gw_work_free(reg->work);
        pthread_mutex_destroy(&reg->mu);
        free(reg);
        return NULL;
    }
    return reg;
}

/* Ends the streams of runs that ended STALE_GRACE_S ago while their stream never saw the
 * terminal event, with the status from Postgres. A worker thread (queued by the ping tick, so
 * the loop never waits on Postgres); one query per tick. */
static void end_stale_streams(gw_streams *reg)
{
    int64_t idle_before = kx_mono_ms() - reg->app->cfg.sse_ping_ms;
    char *ids = malloc(STALE_BATCH * (KX_UUID_LEN + 1) + 3);
    if (ids == NULL)
        return;
    size_t len = 0, count = 0;
    ids[len++] = '{';
    pthread_mutex_lock(&reg->mu);
    for (gw_stream *st = reg->head; st != NULL && count < STALE_BATCH; st = st->next) {
        pthread_mutex_lock(&st->mu);
        bool idle = !st->terminal && !st->end && !st->cut && st->last_event_ms <= idle_before;
        pthread_mutex_unlock(&st->mu);
        if (!idle)
            continue;
        if (count > 0)
            ids[len++] = ',';
        memcpy(ids + len, st->run_id, KX_UUID_LEN);
        len += KX_UUID_LEN;
        count++;
    }
    pthread_mutex_unlock(&reg->mu);
    ids[len++] = '}';
    ids[len] = '\0';
    if (count == 0) {
        free(ids);
        return;
    }

    gw_ended_run *ended = NULL;
    size_t n = 0;
    kx_db *db = kx_db_pool_get(reg->app->pool, kx_deadline_in(1000));
    kx_err err =
        db != NULL ? gw_store_runs_ended(db, ids, STALE_GRACE_S, &ended, &n) : KX_ERR_UNAVAILABLE;
    if (db != NULL)
        kx_db_pool_put(reg->app->pool, db);
    free(ids);
    if (err != KX_OK) {
        kx_debug("sse: cannot check idle streams against Postgres: %s", kx_err_str(err));
        return;
    }
    for (size_t i = 0; i < n; i++) {
        char *payload = final_payload(ended[i].status, ended[i].error);
        if (payload == NULL)
            continue;
        pthread_mutex_lock(&reg->mu);
        for (gw_stream *st = reg->head; st != NULL; st = st->next) {
            if (strcmp(st->run_id, ended[i].id) != 0)
                continue;
            pthread_mutex_lock(&st->mu);
            if (!st->terminal && !st->end && !st->cut) {
                kx_log(KX_LOG_WARN, st->run_id, NULL,
                       "sse: the run ended (%s) but its terminal event never came; "
                       "ending the stream with the status from Postgres",
                       ended[i].status);
                buf_put_event(st, payload, strlen(payload), 0, -1);
                st->terminal = true;
                wake(st);
            }
            pthread_mutex_unlock(&st->mu);
        }
        pthread_mutex_unlock(&reg->mu);
        free(payload);
    }
    gw_store_ended_free(ended, n);
}

static void stale_job(void *arg, bool stopping)
{
    gw_streams *reg = arg;
    if (!stopping)
        end_stale_streams(reg);
    pthread_mutex_lock(&reg->mu);
    reg->stale_check_queued = false;
    pthread_mutex_unlock(&reg->mu);
}

/* Loop thread, every KX_SSE_PING_S: ": ping" to every open stream; queues the stale check and
 * the teardown of feeds no stream uses any more. */
static void on_ping(kx_loop *loop, void *arg)
{
    gw_streams *reg = arg;
    reg->ping_timer = kx_loop_timer(loop, reg->app->cfg.sse_ping_ms, on_ping, reg);
    pthread_mutex_lock(&reg->mu);
    for (gw_stream *st = reg->head; st != NULL; st = st->next) {
        pthread_mutex_lock(&st->mu);
        /* Only an idle stream needs a ping (one with bytes pending is not idle). */
        if (!st->terminal && !st->end && !st->cut && st->buf.len == st->off) {
            buf_put(st, PING_FRAME, sizeof PING_FRAME - 1);
            wake(st);
        }
        pthread_mutex_unlock(&st->mu);
    }
    bool queue = !reg->stale_check_queued;
    reg->stale_check_queued = true;
    pthread_mutex_unlock(&reg->mu);
    if (queue && !gw_work_submit(reg->work, stale_job, reg)) {
        pthread_mutex_lock(&reg->mu);
        reg->stale_check_queued = false;
        pthread_mutex_unlock(&reg->mu);
    }
    gw_feeds_sweep(reg->feeds);
    if (reg->feeds_gauge)
        kx_gauge_set(reg->feeds_gauge, (int64_t)gw_feeds_count(reg->feeds));
}

void gw_streams_start_pings(gw_streams *reg, kx_loop *loop)
{
    reg->loop = loop;
    reg->ping_timer = kx_loop_timer(loop, reg->app->cfg.sse_ping_ms, on_ping, reg);
    if (reg->ping_timer == NULL)
        kx_error("sse: cannot arm the keep-alive timer (out of memory)");
}

void gw_streams_stop_pings(gw_streams *reg)
{
    kx_timer_cancel(reg->ping_timer);
    reg->ping_timer = NULL;
}

void gw_streams_close_all(gw_streams *reg)
{
    pthread_mutex_lock(&reg->mu);
    reg->closing = true;
    size_t n = 0;
    for (gw_stream *st = reg->head; st != NULL; st = st->next, n++) {
        pthread_mutex_lock(&st->mu);
        st->end = true;
        wake(st);
        pthread_mutex_unlock(&st->mu);
    }
    pthread_mutex_unlock(&reg->mu);
    kx_info("sse: closing %zu open stream(s)", n);
}

void gw_streams_abort_all(gw_streams *reg)
{
    atomic_store(&reg->aborting, true);
    pthread_mutex_lock(&reg->mu);
    reg->closing = true;
    for (gw_stream *st = reg->head; st != NULL; st = st->next) {
        pthread_mutex_lock(&st->mu);
        st->abort = true;
        wake(st);
        pthread_mutex_unlock(&st->mu);
    }
    pthread_mutex_unlock(&reg->mu);
    for (int i = 0; i < 500 && atomic_load(&reg->handed) > 0; i++)
        usleep(2 * 1000); /* the writers hand back within one service each */
    int left = atomic_load(&reg->handed);
    if (left > 0)
        kx_error("sse: %d stream connection(s) still held by the writers at shutdown", left);
}

size_t gw_streams_open(gw_streams *reg)
{
    pthread_mutex_lock(&reg->mu);
    size_t n = reg->open;
    pthread_mutex_unlock(&reg->mu);
    return n;
}

void gw_streams_free(gw_streams *reg)
{
    if (reg == NULL)
        return;
    bool gone = false;
    for (int i = 0; i < 500 && !gone; i++) { /* catch-up jobs end within a fetch's wait */
        pthread_mutex_lock(&reg->mu);
        gone = reg->alive == 0;
        pthread_mutex_unlock(&reg->mu);
        if (!gone)
            usleep(10 * 1000);
    }
    if (!gone) {
        kx_warn("sse: %zu stream(s) still held at shutdown; leaving them", reg->alive);
        return;
    }
    gw_sse_writers_free(reg->writers); /* every connection was handed back: no socket left */
    gw_work_free(reg->work);           /* runs the queued jobs (teardowns) and joins */
    gw_feeds_free(reg->feeds);
    pthread_mutex_destroy(&reg->mu);
    free(reg);
}

/* ---- the route ---- */

static bool run_ended(const char *status)
{
    return strcmp(status, "completed") == 0 || strcmp(status, "failed") == 0 ||
        strcmp(status, "stopped") == 0;
}

static gw_stream *stream_new(gw_streams *reg, const char *run_id)
{
    gw_stream *st = calloc(1, sizeof *st);
    if (st == NULL)
        return NULL;
    st->reg = reg;
    snprintf(st->run_id, sizeof st->run_id, "%.36s", run_id); /* a valid UUID */
    st->last_event_ms = kx_mono_ms();
    st->sink.deliver = deliver;
    st->sock.fd = -1;
    pthread_mutex_init(&st->mu, NULL);
    pthread_mutex_lock(&reg->mu);
    reg->alive++;
    pthread_mutex_unlock(&reg->mu);
    return st;
}

/* Is the last event on the run's subject missing (expired)? If present, *last_seq is its stream
 * sequence. KX_ERR_NOT_FOUND when missing. */
static kx_err last_event(gw_app *app, const char *subject, uint64_t *last_seq)
{
    if (!kx_bus_connected(app->svc->bus))
        return KX_ERR_UNAVAILABLE;
    natsMsg *m = NULL;
    jsErrCode jerr = 0;
    natsStatus s =
        js_GetLastMsg(&m, kx_bus_js(app->svc->bus), KX_STREAM_EVENTS, subject, NULL, &jerr);
    if (s == NATS_NOT_FOUND || jerr == JSNoMessageFoundErr) {
        natsMsg_Destroy(m);
        return KX_ERR_NOT_FOUND;
    }
    if (s != NATS_OK) {
        kx_warn("sse: reading the last event of %s failed: %s", subject, natsStatus_GetText(s));
        return KX_ERR_UNAVAILABLE;
    }
    *last_seq = natsMsg_GetSequence(m);
    natsMsg_Destroy(m);
    return KX_OK;
}

/* Lists st in the registry, unless the gateway is draining or a cap is reached: NULL, or the
 * reason for a refusal (static; *status is then the answer's status). */
static const char *stream_register(gw_streams *reg, gw_stream *st, unsigned int *status)
{
    const char *why = NULL;
    pthread_mutex_lock(&reg->mu);
    size_t mine = 0;
    for (gw_stream *o = reg->head; o != NULL && mine < reg->max_per_account; o = o->next)
        mine += strcmp(o->account, st->account) == 0;
    if (reg->closing) {
        why = "Server is shutting down";
        *status = MHD_HTTP_SERVICE_UNAVAILABLE;
    } else if (mine >= reg->max_per_account) {
        why = "Too many open streams for this account: close one first";
        *status = MHD_HTTP_TOO_MANY_REQUESTS;
    } else if (reg->open >= reg->max_open) {
        why = "Too many open streams on this server: try again later";
        *status = MHD_HTTP_TOO_MANY_REQUESTS;
    } else {
        st->next = reg->head;
        if (reg->head)
            reg->head->prev = st;
        reg->head = st;
        st->listed = true;
        reg->open++;
        if (reg->open_gauge)
            kx_gauge_add(reg->open_gauge, 1);
    }
    pthread_mutex_unlock(&reg->mu);
    return why;
}

static struct MHD_Response *sse_response(gw_stream *st)
{
    struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, STREAM_BLOCK,
                                                                  reader, st, on_response_free);
    if (resp == NULL)
        return NULL;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache, no-transform");
    MHD_add_response_header(resp, "X-Accel-Buffering", "no");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_ACCESS_CONTROL_ALLOW_ORIGIN, "*");
    return resp;
}

/* Where a reconnecting client resumes: after the event named by Last-Event-ID (what
 * EventSource sends) or ?after=: "<seq>" (a message of one event, or all of a batch's) or
 * "<seq>.<idx>" (event idx of the batch at seq). *after is the last message the client has
 * whole; *skip_seq / *skip_n the batch it has the first skip_n events of (0 / 0: none). 0 when
 * neither is given; false (with a 400) when malformed. */
static bool resume_after(gw_request *req, uint64_t *after, uint64_t *skip_seq, size_t *skip_n,
                         gw_reply *reply)
{
    const char *v = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, "Last-Event-ID");
    const char *name = "Last-Event-ID";
    if (v == NULL || v[0] == '\0') {
        v = MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, "after");
        name = "after";
    }
    *after = 0;
    *skip_seq = 0;
    *skip_n = 0;
    if (v == NULL || v[0] == '\0')
        return true;
    size_t n = strspn(v, "0123456789");
    size_t m = v[n] == '.' ? strspn(v + n + 1, "0123456789") : 0;
    bool dotted = v[n] == '.' && m > 0 && m <= 9 && v[n + 1 + m] == '\0';
    if (n == 0 || n > 19 || (v[n] != '\0' && !dotted)) {
        gw_reply_error(reply, MHD_HTTP_BAD_REQUEST,
                       "%s must be the id of an event of this stream (a decimal number, or two "
                       "joined by a dot)",
                       name);
        return false;
    }
    uint64_t seq = strtoull(v, NULL, 10);
    if (!dotted) {
        *after = seq;
        return true;
    }
    if (seq == 0) {
        gw_reply_error(reply, MHD_HTTP_BAD_REQUEST,
                       "%s must be the id of an event of this stream (its sequence is 0)", name);
        return false;
    }
    *after = seq - 1;
    *skip_seq = seq;
    *skip_n = (size_t)strtoul(v + n + 1, NULL, 10) + 1;
    return true;
}

void gw_route_run_stream(gw_app *app, gw_request *req, gw_reply *reply)
{
    gw_streams *reg = app->streams;
    if (atomic_load(&app->draining)) {
        gw_reply_error(reply, MHD_HTTP_SERVICE_UNAVAILABLE, "Server is shutting down");
        return;
    }
    uint64_t after = 0, skip_seq = 0;
    size_t skip_n = 0;
    if (!resume_after(req, &after, &skip_seq, &skip_n, reply))
        return;
    kx_db *db = gw_db_get(app, reply);
    if (db == NULL)
        return;
    gw_run_info info;
    bool ok = gw_access_run(db, req, req->id, &info, reply);
    gw_db_put(app, db);
    if (!ok)
        return;

    gw_stream *st = stream_new(reg, req->id);
    if (st == NULL) {
        gw_store_run_info_free(&info);
        gw_reply_error(reply, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory");
        return;
    }
    st->conn = req->conn;
    /* libmicrohttpd frames an HTTP/1.1 response of unknown size as chunks (an HTTP/1.0 one
     * as raw bytes up to the close): the writer's bytes must match. */
    st->chunked = req->version == NULL || strcmp(req->version, MHD_HTTP_VERSION_1_0) != 0;
    st->refs = 1; /* libmicrohttpd's, released by on_response_free */
    snprintf(st->account, sizeof st->account, "%s", req->account);
    unsigned int refused = 0;
    const char *why = stream_register(reg, st, &refused);
    if (why != NULL) {
        gw_store_run_info_free(&info);
        on_response_free(st); /* never listed: releases libmicrohttpd's reference */
        gw_reply_error(reply, refused, "%s", why);
        return;
    }
    char subject[sizeof KX_SUBJ_RUN_EV_PREFIX + sizeof req->id];
    snprintf(subject, sizeof subject, "%s%s", KX_SUBJ_RUN_EV_PREFIX, req->id);
    st->pos = after;
    st->skip_seq = skip_seq;
    st->skip_n = skip_n;

    const char *mode = "live"; /* history if any, then the run's feed */
    /* Only a run that ended STALE_GRACE_S ago can be judged by what the stream holds: the
     * writer updates Postgres first and its last events (JetStream publishes in flight) are
     * stored moments later. A run that ended more recently is followed live; if its terminal
     * event never comes, the stale check of the ping tick ends the stream from Postgres. */
    if (run_ended(info.status) && info.ended_ago_ms >= (int64_t)STALE_GRACE_S * 1000) {
        char *final = final_payload(info.status, info.error);
        uint64_t last_seq = 0;
        kx_err err = last_event(app, subject, &last_seq);
        if (err != KX_OK || after >= last_seq) {
            /* Events expired (or NATS cannot tell), or the client has them all already: one
             * terminal status from Postgres. */
            mode = "final status";
            if (final != NULL) {
                pthread_mutex_lock(&st->mu);
                buf_put_event(st, final, strlen(final), 0, -1);
                st->terminal = true;
                pthread_mutex_unlock(&st->mu);
            }
            free(final);
        } else {
            /* The history up to its last event, then Postgres' status if no terminal event
             * was sent: that event was not the terminal one, or the client had it already (a
             * "<seq>.<index>" id inside the last batch: every event of it skipped). Never an
             * empty stream: an EventSource would reconnect again and again. No feed: nothing
             * more will come. */
            mode = "history";
            st->replay_to = last_seq;
            st->final_payload = final;
        }
    }
    gw_store_run_info_free(&info);

    if (strcmp(mode, "live") == 0 && gw_feed_acquire(reg->feeds, st->run_id, &st->feed) != KX_OK) {
        on_response_free(st);
        gw_reply_error(reply, MHD_HTTP_SERVICE_UNAVAILABLE,
                       "Event stream unavailable: cannot subscribe to the run's events");
        return;
    }
    if (strcmp(mode, "final status") == 0 && !st->terminal) { /* out of memory */
        on_response_free(st);
        gw_reply_error(reply, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory");
        return;
    }
    struct MHD_Response *resp = sse_response(st);
    if (resp == NULL) {
        on_response_free(st); /* unlists, detaches, releases */
        gw_reply_error(reply, MHD_HTTP_SERVICE_UNAVAILABLE, "out of memory");
        return;
    }
    kx_log(KX_LOG_INFO, req->id, NULL, "sse: stream opened (%s, after %llu)", mode,
           (unsigned long long)after);
    reply->status = MHD_HTTP_OK;
    reply->resp = resp;
}
