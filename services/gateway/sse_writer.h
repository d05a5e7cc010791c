/* sse_writer.h — the threads that write SSE sockets themselves, outside libmicrohttpd.
 *
 * Why: with libmicrohttpd's suspend/resume every event cost, per open stream, a resume (its
 * lock and an eventfd write) and a wake-up of one of its threads, which then called the
 * content reader and sent: serial work of ~5 µs per stream per event (docs/performance.md
 * §f). Here, once libmicrohttpd has sent a stream's headers, the stream keeps its connection
 * suspended (a suspended connection is neither read, written nor timed out by libmicrohttpd:
 * its socket is removed from libmicrohttpd's epoll set) and one of N writer threads owns the
 * socket until it hands the connection back (resume) to end it. An event then costs the feed
 * an append and a push on a queue; a writer thread that is busy takes the next streams without
 * being woken again, and each stream costs the writer one send.
 *
 * A writer thread has an epoll set of the sockets it owns (EPOLLOUT for a backlog, EPOLLRDHUP
 * and EPOLLHUP for a client that went away, edge-triggered), a queue of sockets with something
 * to do (gw_sse_writers_kick, from any thread), and a tick every second. For each it calls the
 * owner's service callback on the writer thread; the owner writes, and when it is done with the
 * socket calls gw_sse_unwatch (still on the writer thread) before it hands the connection back,
 * so that no writer ever touches a descriptor libmicrohttpd may have closed.
 *
 * Threads: gw_sse_writers_kick from any thread; gw_sse_watch / gw_sse_unwatch only from the
 * service callback (the socket's writer thread). Ownership: the stream registry (stream.c)
 * creates and frees the writers; a gw_sse_sock is embedded in its owner, which keeps it alive
 * while it is watched or queued (the queue's reference is dropped by the unref callback). */
#ifndef GW_SSE_WRITER_H
#define GW_SSE_WRITER_H

#include <stdbool.h>
#include <stdint.h>

typedef struct gw_sse_writers gw_sse_writers;

/* One socket, embedded in its owner. fd and shard are set by the owner before the first kick;
 * the rest belongs to the writers. */
typedef struct gw_sse_sock gw_sse_sock;
struct gw_sse_sock {
    int fd;
    unsigned shard;             /* which writer thread (any number: taken modulo) */
    bool queued;                /* on the writer's queue (under its mutex) */
    bool watched;               /* in the writer's epoll set and list (writer thread only) */
    gw_sse_sock *qnext;         /* the queue */
    gw_sse_sock *wprev, *wnext; /* the writer's list of watched sockets */
};

/* The writer thread's reasons to call service. */
#define GW_SSE_QUEUED 0u        /* kicked */
#define GW_SSE_TICK 0x80000000u /* the one-second tick (watched sockets only) */
/* otherwise: the epoll events of the socket (EPOLLOUT, EPOLLRDHUP, EPOLLHUP, EPOLLERR) */

typedef struct gw_sse_ops {
    void (*service)(gw_sse_sock *s, uint32_t why, void *arg);
    /* Drops the reference the queue held (called after service for a kicked socket). */
    void (*unref)(gw_sse_sock *s, void *arg);
    void *arg;
} gw_sse_ops;

/* n threads. NULL when threads, epoll or eventfd cannot be created. */
gw_sse_writers *gw_sse_writers_new(unsigned n, gw_sse_ops ops);
/* Queues s for service on its writer thread. True when it was not queued yet: the caller then
 * gives the queue a reference (released by ops.unref); false: already queued, nothing to do. */
bool gw_sse_writers_kick(gw_sse_writers *w, gw_sse_sock *s);
/* Writer thread (inside service): starts/stops watching s's socket. */
void gw_sse_watch(gw_sse_writers *w, gw_sse_sock *s);
void gw_sse_unwatch(gw_sse_writers *w, gw_sse_sock *s);
/* Stops and joins the threads. Every socket must have been unwatched and no kick may be
 * pending (the owner handed every connection back first). NULL: no-op. */
void gw_sse_writers_free(gw_sse_writers *w);

#endif
