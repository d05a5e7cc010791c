/* feed.h — one JetStream subscription per run, shared by every SSE stream of that run.
 *
 * A feed follows kx.run.ev.<run> from just after the last event stored when it was created
 * (an ordered push consumer on KX_RUN_EVENTS) and hands each event, in stream order, to the
 * sinks attached to it (the run's live SSE streams) on the subscription's cnats thread. The
 * history a stream needs before it can follow the feed (a late join, a Last-Event-ID) is not
 * the feed's business: the stream reads it from JetStream itself (stream.c) until it has
 * everything up to gw_feed_attach's last_seq, and only then attaches. The hand-over is exact:
 * an attached sink gets every event after last_seq and nothing before it.
 *
 * Why shared, and why the teardown is careful: cnats 3.4 (Debian 12) can deliver a message to
 * a subscription that another thread is destroying (its read loop looks the subscription up,
 * drops the connection's lock, then locks the subscription, without a reference: nats.c
 * issue 637, fixed in 3.6), which crashed the gateway when each SSE stream had a subscription
 * of its own and destroyed it on disconnect. A feed therefore lives as long as its run has
 * streams (plus KX_SSE_FEED_LINGER, so that reconnects reuse it), and is torn down on a
 * worker thread in an order that leaves cnats no window: Unsubscribe (the subscription leaves
 * the connection's table, so the read loop no longer finds it), wait for the subscription's
 * on-complete callback (its delivery thread returned from the last callback), flush the
 * connection (a PING/PONG round trip: the read loop has finished any message it was handling
 * when the subscription left the table), and only then Destroy (which frees it). A feed whose
 * teardown cannot finish (NATS too slow) is kept, not freed, and logged.
 *
 * Threads: acquire may block (it creates the consumer: call it from a worker thread, never a
 * loop or libmicrohttpd thread); release, attach and detach never block; sweep runs on the loop
 * thread and only queues teardowns on the worker pool.
 * Ownership: gw_feeds is owned by the stream registry (stream.c); a feed is owned by the set
 * and referenced by each stream that acquired it until that stream releases it. */
#ifndef GW_FEED_H
#define GW_FEED_H

#include <stdbool.h>
#include <stdint.h>

#include "kx/bus.h"
#include "kx/pb.h"
#include "work.h"

typedef struct gw_feeds gw_feeds;
typedef struct gw_feed gw_feed;

/* A receiver of a feed's events, embedded in its owner. deliver runs on the feed's cnats
 * thread with the feed's lock held: it must not block nor call back into the feed. ev is NULL
 * for a message that is not a RunEvent (seq still counts). */
typedef struct gw_feed_sink gw_feed_sink;
struct gw_feed_sink {
    void (*deliver)(gw_feed_sink *sink, const Kx__V1__RunEvent *ev, uint64_t seq);
    gw_feed_sink *prev, *next; /* the feed's list, under its lock */
    bool attached;
};

/* linger_ms: how long a feed without streams is kept for a reconnect. cache (may be NULL):
 * every event of a run drops the run's cached GET answer (run_cache.h). */
typedef struct gw_run_cache gw_run_cache;
gw_feeds *gw_feeds_new(kx_bus *bus, gw_work *work, gw_run_cache *cache, int64_t linger_ms);
/* The run's feed, created (a JetStream consumer) if there is none; a reference the caller
 * releases. KX_ERR_UNAVAILABLE when NATS cannot create it in time. Blocks: worker threads. */
kx_err gw_feed_acquire(gw_feeds *fs, const char *run_id, gw_feed **out);
void gw_feed_release(gw_feed *f);
/* Attaches sink if the caller has every event up to the feed's last delivered sequence (pos >=
 * it): true, and the sink then gets every later event. Otherwise false and *last_seq is the
 * sequence to catch up to first. */
bool gw_feed_attach(gw_feed *f, gw_feed_sink *sink, uint64_t pos, uint64_t *last_seq);
/* Detaches sink (no-op if not attached); no deliver call for it runs after this returns. */
void gw_feed_detach(gw_feed *f, gw_feed_sink *sink);
/* Loop thread (the ping tick): queues the teardown of feeds unused for linger_ms. */
void gw_feeds_sweep(gw_feeds *fs);
/* Feeds that exist (for metrics and tests). */
size_t gw_feeds_count(gw_feeds *fs);
/* Tears down every feed (all streams must be gone) and frees the set; blocks (bounded). The
 * worker pool must still run. NULL: no-op. */
void gw_feeds_free(gw_feeds *fs);

#endif
