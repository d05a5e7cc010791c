/* waiter.c — the demo model's waiting thread (see waiter.h): an epoll set of watched sockets
 * plus an eventfd for wake-ups, a binary heap of due times, and a list of every pending wait
 * (for waiter_stop). Only this thread ends waits, so each ends once. */
#include "waiter.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "kx/log.h"
#include "kx/time.h"

#define NO_HEAP ((size_t)-1)
#define EVENTS_PER_WAKE 256

typedef struct wentry {
    int64_t due; /* kx_mono_ms; meaningful when heap_idx != NO_HEAP */
    int fd;
    size_t heap_idx;
    waiter_fn fn;
    void *arg;
    struct wentry *prev, *next; /* the list of pending waits */
} wentry;

struct waiter {
    pthread_t thread;
    int ep, evfd;
    pthread_mutex_t mu; /* heap, list, stopping */
    wentry **heap;
    size_t nheap, capheap;
    wentry *list;
    size_t pending;
    bool stopping;
};

/* ---- the heap (by due time) ---- */

static void heap_set(waiter *w, size_t i, wentry *x)
{
    w->heap[i] = x;
    x->heap_idx = i;
}

static void heap_up(waiter *w, size_t i)
{
    wentry *x = w->heap[i];
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (w->heap[p]->due <= x->due)
            break;
        heap_set(w, i, w->heap[p]);
        i = p;
    }
    heap_set(w, i, x);
}

static void heap_down(waiter *w, size_t i)
{
    wentry *x = w->heap[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= w->nheap)
            break;
        if (c + 1 < w->nheap && w->heap[c + 1]->due < w->heap[c]->due)
            c++;
        if (w->heap[c]->due >= x->due)
            break;
        heap_set(w, i, w->heap[c]);
        i = c;
    }
    heap_set(w, i, x);
}

static void heap_remove(waiter *w, wentry *x)
{
    size_t i = x->heap_idx;
    if (i == NO_HEAP)
        return;
    x->heap_idx = NO_HEAP;
    wentry *last = w->heap[--w->nheap];
    if (last == x)
        return;
    heap_set(w, i, last);
    heap_up(w, i);
    heap_down(w, last->heap_idx);
}

/* ---- ending a wentry (waiter thread, mutex held on entry, released for the callback) ---- */

static void end_wait(waiter *w, wentry *x, waiter_reason why)
{
    heap_remove(w, x);
    if (x->fd >= 0)
        epoll_ctl(w->ep, EPOLL_CTL_DEL, x->fd, NULL);
    if (x->prev)
        x->prev->next = x->next;
    else
        w->list = x->next;
    if (x->next)
        x->next->prev = x->prev;
    w->pending--;
    pthread_mutex_unlock(&w->mu);
    x->fn(x->arg, why);
    free(x);
    pthread_mutex_lock(&w->mu);
}

static void *run(void *arg)
{
    waiter *w = arg;
    struct epoll_event evs[EVENTS_PER_WAKE];
    pthread_mutex_lock(&w->mu);
    while (!w->stopping) {
        int timeout = -1;
        if (w->nheap > 0) {
            int64_t left = w->heap[0]->due - kx_mono_ms();
            timeout = left <= 0 ? 0 : left > 60000 ? 60000 : (int)left;
        }
        pthread_mutex_unlock(&w->mu);
        int n = epoll_wait(w->ep, evs, EVENTS_PER_WAKE, timeout);
        if (n < 0 && errno != EINTR)
            kx_error("demo-model: epoll_wait failed in the waiter: %s", strerror(errno));
        pthread_mutex_lock(&w->mu);
        for (int i = 0; i < n; i++) {
            if (evs[i].data.ptr == NULL) { /* the eventfd: a new wentry or a stop */
                uint64_t v;
                if (read(w->evfd, &v, sizeof v) < 0 && errno != EAGAIN)
                    kx_warn("demo-model: waiter eventfd read: %s", strerror(errno));
                continue;
            }
            end_wait(w, evs[i].data.ptr, WAIT_HANGUP);
        }
        int64_t now = kx_mono_ms();
        while (w->nheap > 0 && w->heap[0]->due <= now)
            end_wait(w, w->heap[0], WAIT_ELAPSED);
    }
    while (w->list != NULL)
        end_wait(w, w->list, WAIT_STOPPED);
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

waiter *waiter_start(void)
{
    waiter *w = calloc(1, sizeof *w);
    if (w == NULL)
        return NULL;
    w->ep = epoll_create1(EPOLL_CLOEXEC);
    w->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    if (w->ep < 0 || w->evfd < 0 || epoll_ctl(w->ep, EPOLL_CTL_ADD, w->evfd, &ev) != 0) {
        kx_error("demo-model: cannot set up the waiter: %s", strerror(errno));
        goto fail;
    }
    pthread_mutex_init(&w->mu, NULL);
    if (pthread_create(&w->thread, NULL, run, w) != 0) {
        kx_error("demo-model: cannot start the waiter thread");
        pthread_mutex_destroy(&w->mu);
        goto fail;
    }
    return w;
fail:
    if (w->ep >= 0)
        close(w->ep);
    if (w->evfd >= 0)
        close(w->evfd);
    free(w);
    return NULL;
}

static void wake(waiter *w)
{
    uint64_t one = 1;
    if (write(w->evfd, &one, sizeof one) < 0 && errno != EAGAIN)
        kx_warn("demo-model: waiter eventfd write: %s", strerror(errno));
}

int waiter_add(waiter *w, int fd, int64_t ms, waiter_fn fn, void *arg)
{
    wentry *x = calloc(1, sizeof *x);
    if (x == NULL)
        return -1;
    x->fd = fd;
    x->fn = fn;
    x->arg = arg;
    x->heap_idx = NO_HEAP;
    pthread_mutex_lock(&w->mu);
    if (w->stopping)
        goto refuse;
    bool earliest = false;
    if (ms >= 0) {
        if (w->nheap == w->capheap) {
            size_t cap = w->capheap ? w->capheap * 2 : 1024;
            wentry **nh = realloc(w->heap, cap * sizeof *nh);
            if (nh == NULL)
                goto refuse;
            w->heap = nh;
            w->capheap = cap;
        }
        x->due = kx_mono_ms() + ms;
        w->heap[w->nheap] = x;
        x->heap_idx = w->nheap++;
        heap_up(w, x->heap_idx);
        earliest = x->heap_idx == 0;
    }
    if (fd >= 0) {
        struct epoll_event ev = {.events = EPOLLRDHUP | EPOLLHUP | EPOLLERR, .data.ptr = x};
        if (epoll_ctl(w->ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
            kx_warn("demo-model: cannot watch fd %d: %s", fd, strerror(errno));
            heap_remove(w, x);
            goto refuse;
        }
    }
    x->next = w->list;
    if (w->list)
        w->list->prev = x;
    w->list = x;
    w->pending++;
    pthread_mutex_unlock(&w->mu);
    if (earliest)
        wake(w);
    return 0;
refuse:
    pthread_mutex_unlock(&w->mu);
    free(x);
    return -1;
}

size_t waiter_pending(waiter *w)
{
    pthread_mutex_lock(&w->mu);
    size_t n = w->pending;
    pthread_mutex_unlock(&w->mu);
    return n;
}

void waiter_stop(waiter *w)
{
    if (w == NULL)
        return;
    pthread_mutex_lock(&w->mu);
    w->stopping = true;
    pthread_mutex_unlock(&w->mu);
    wake(w);
    pthread_join(w->thread, NULL);
    pthread_mutex_destroy(&w->mu);
    close(w->ep);
    close(w->evfd);
    free(w->heap);
    free(w);
}
