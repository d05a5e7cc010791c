/* sse_writer.c — the SSE writer threads: an epoll set, a queue and a tick each (see
 * sse_writer.h). The queue is a LIFO list swapped out whole under the thread's mutex; the
 * eventfd is written only when the thread said it is going to sleep (so a fan-out to 1 000
 * streams costs at most one wake-up per thread while it is busy). */
#include "sse_writer.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "kx/log.h"
#include "kx/time.h"

#define EVENTS_MAX 256
#define TICK_MS 1000

typedef struct writer {
    gw_sse_writers *w;
    pthread_t thread;
    bool started;
    bool inited; /* mu initialised */
    int ep;
    int efd;
    pthread_mutex_t mu;
    gw_sse_sock *queue;   /* under mu */
    bool sleeping;        /* under mu: the thread is (about to be) in epoll_wait */
    bool stop;            /* under mu */
    gw_sse_sock *watched; /* writer thread only */
} writer;

struct gw_sse_writers {
    gw_sse_ops ops;
    unsigned n;
    writer *t;
};

static writer *writer_of(gw_sse_writers *w, const gw_sse_sock *s)
{
    return &w->t[s->shard % w->n];
}

bool gw_sse_writers_kick(gw_sse_writers *w, gw_sse_sock *s)
{
    writer *t = writer_of(w, s);
    pthread_mutex_lock(&t->mu);
    if (s->queued) {
        pthread_mutex_unlock(&t->mu);
        return false;
    }
    s->queued = true;
    s->qnext = t->queue;
    t->queue = s;
    bool wake = t->sleeping;
    t->sleeping = false;
    pthread_mutex_unlock(&t->mu);
    if (wake) {
        uint64_t one = 1;
        if (write(t->efd, &one, sizeof one) < 0 && errno != EAGAIN)
            kx_warn("sse: cannot wake a writer thread: %s", strerror(errno));
    }
    return true;
}

void gw_sse_watch(gw_sse_writers *w, gw_sse_sock *s)
{
    writer *t = writer_of(w, s);
    if (s->watched)
        return;
    struct epoll_event ev = {.events = EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = s};
    if (epoll_ctl(t->ep, EPOLL_CTL_ADD, s->fd, &ev) != 0)
        kx_warn("sse: cannot watch a stream's socket: %s (it is still written, and timed out "
                "by the tick)",
                strerror(errno));
    s->watched = true;
    s->wprev = NULL;
    s->wnext = t->watched;
    if (t->watched)
        t->watched->wprev = s;
    t->watched = s;
}

void gw_sse_unwatch(gw_sse_writers *w, gw_sse_sock *s)
{
    writer *t = writer_of(w, s);
    if (!s->watched)
        return;
    epoll_ctl(t->ep, EPOLL_CTL_DEL, s->fd, NULL); /* before the connection is handed back */
    if (s->wprev)
        s->wprev->wnext = s->wnext;
    else
        t->watched = s->wnext;
    if (s->wnext)
        s->wnext->wprev = s->wprev;
    s->watched = false;
    s->wprev = s->wnext = NULL;
}

static void *writer_main(void *arg)
{
    writer *t = arg;
    gw_sse_ops *ops = &t->w->ops;
    struct epoll_event evs[EVENTS_MAX];
    int64_t next_tick = kx_mono_ms() + TICK_MS;
    for (;;) {
        pthread_mutex_lock(&t->mu);
        bool stop = t->stop;
        gw_sse_sock *q = t->queue;
        t->queue = NULL;
        t->sleeping = q == NULL;
        pthread_mutex_unlock(&t->mu);
        if (stop)
            break;

        while (q != NULL) {
            /* A socket stays marked queued until its turn (a kick before it is a no-op: its
             * service sees the latest state); a kick during its service queues it again. */
            gw_sse_sock *s = q;
            pthread_mutex_lock(&t->mu);
            q = s->qnext;
            s->queued = false;
            pthread_mutex_unlock(&t->mu);
            ops->service(s, GW_SSE_QUEUED, ops->arg);
            ops->unref(s, ops->arg);
        }

        int64_t now = kx_mono_ms();
        int wait = 0;
        pthread_mutex_lock(&t->mu);
        if (t->sleeping && t->queue == NULL)
            wait = now >= next_tick ? 0 : (int)(next_tick - now);
        else
            t->sleeping = false;
        pthread_mutex_unlock(&t->mu);
        int n = epoll_wait(t->ep, evs, EVENTS_MAX, wait);
        for (int i = 0; i < n; i++) {
            if (evs[i].data.ptr == NULL) {
                uint64_t v;
                if (read(t->efd, &v, sizeof v) < 0 && errno != EAGAIN)
                    kx_warn("sse: writer eventfd: %s", strerror(errno));
                continue;
            }
            ops->service(evs[i].data.ptr, evs[i].events, ops->arg);
        }
        now = kx_mono_ms();
        if (now >= next_tick) {
            next_tick = now + TICK_MS;
            gw_sse_sock *next;
            for (gw_sse_sock *s = t->watched; s != NULL; s = next) {
                next = s->wnext; /* service may unwatch s (never another socket) */
                ops->service(s, GW_SSE_TICK, ops->arg);
            }
        }
    }
    return NULL;
}

gw_sse_writers *gw_sse_writers_new(unsigned n, gw_sse_ops ops)
{
    gw_sse_writers *w = calloc(1, sizeof *w);
    if (w == NULL)
        return NULL;
    w->ops = ops;
    w->n = n > 0 ? n : 1;
    w->t = calloc(w->n, sizeof *w->t);
    if (w->t == NULL) {
        free(w);
        return NULL;
    }
    for (unsigned i = 0; i < w->n; i++)
        w->t[i].ep = w->t[i].efd = -1;
    bool ok = true;
    for (unsigned i = 0; i < w->n; i++) {
        writer *t = &w->t[i];
        t->w = w;
        t->ep = epoll_create1(EPOLL_CLOEXEC);
        t->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        pthread_mutex_init(&t->mu, NULL);
        t->inited = true;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
        if (t->ep < 0 || t->efd < 0 || epoll_ctl(t->ep, EPOLL_CTL_ADD, t->efd, &ev) != 0 ||
            pthread_create(&t->thread, NULL, writer_main, t) != 0) {
            kx_error("sse: cannot start writer thread %u: %s", i, strerror(errno));
            ok = false;
            break;
        }
        t->started = true;
    }
    if (!ok) {
        gw_sse_writers_free(w);
        return NULL;
    }
    return w;
}

void gw_sse_writers_free(gw_sse_writers *w)
{
    if (w == NULL)
        return;
    for (unsigned i = 0; i < w->n; i++) {
        writer *t = &w->t[i];
        if (!t->inited)
            continue;
        pthread_mutex_lock(&t->mu);
        t->stop = true;
        pthread_mutex_unlock(&t->mu);
        uint64_t one = 1;
        if (t->efd >= 0 && write(t->efd, &one, sizeof one) < 0)
            kx_warn("sse: cannot stop a writer thread: %s", strerror(errno));
    }
    for (unsigned i = 0; i < w->n; i++) {
        writer *t = &w->t[i];
        if (t->started)
            pthread_join(t->thread, NULL);
        if (t->watched != NULL)
            kx_warn("sse: a writer stopped with sockets still watched");
        if (t->ep >= 0)
            close(t->ep);
        if (t->efd >= 0)
            close(t->efd);
        if (t->inited)
            pthread_mutex_destroy(&t->mu);
    }
    free(w->t);
    free(w);
}
