/* loop.c — the event loop: epoll for file descriptors, a binary min-heap of one-shot timers
 * keyed by monotonic milliseconds, and a mutex-protected FIFO of tasks that other threads post
 * (woken through an eventfd, written only when the loop may be blocked in epoll).
 *
 * One iteration: wait in epoll (until the nearest timer), dispatch ready fds, run the tasks that
 * were queued, fire the timers that are due, then free the fd registrations that were unwatched
 * during the iteration. Registrations are freed only then, so a callback may unwatch any fd
 * (its own included) while epoll events that point at it are still pending in this batch.
 *
 * Threads: everything except kx_loop_post and kx_loop_stop belongs to the loop thread.
 * kx_loop_stop only stores an atomic flag and writes the eventfd, so a signal handler may
 * call it. */
#include "kx/loop.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "kx/log.h"
#include "kx/time.h"

#define EPOLL_BATCH 64

/* One watched fd. Owned by the loop; freed at the end of the iteration that unwatched it. */
typedef struct watch {
    int fd;
    uint32_t events; /* the mask the caller asked for (0 = silent) */
    bool in_epoll;   /* a silent fd is kept out of epoll so HUP/ERR cannot spin */
    bool dead;       /* unwatched: ignore events still pending for it */
    kx_fd_cb cb;
    void *arg;
    struct watch *next_dead;
} watch;

struct kx_timer {
    kx_loop *loop;
    int64_t when; /* monotonic ms */
    uint64_t seq; /* creation order: ties on `when` fire oldest first */
    size_t idx;   /* position in the heap */
    kx_timer_cb cb;
    void *arg;
};

typedef struct task {
    kx_task_cb cb;
    void *arg;
    void (*dispose)(void *arg); /* the loop was freed before cb ran (may be NULL) */
    struct task *next;
} task;

struct kx_loop {
    int epfd;
    int evfd; /* wakes the loop for posts and stop */
    atomic_bool stop;
    atomic_bool has_thread;
    pthread_t thread; /* the thread in kx_loop_run (valid once has_thread) */
    int64_t now;      /* monotonic ms at the start of this iteration */

    watch **watches; /* indexed by fd */
    size_t nwatches;
    watch *dead; /* unwatched this iteration, freed at its end */

    kx_timer **heap;
    size_t nheap, capheap;
    uint64_t next_seq;

    pthread_mutex_t mu; /* guards the task queue and will_look */
    task *head, *tail;
    /* The loop looks at the queue before it blocks again (it is running, or the eventfd was
     * written since it blocked): a post then needs no eventfd write (one wake-up per sleep,
     * not one per post). */
    bool will_look;
};

/* ---- timer heap ---- */

static bool timer_before(const kx_timer *a, const kx_timer *b)
{
    return a->when < b->when || (a->when == b->when && a->seq < b->seq);
}

static void heap_set(kx_loop *loop, size_t i, kx_timer *t)
{
    loop->heap[i] = t;
    t->idx = i;
}

static void heap_up(kx_loop *loop, size_t i)
{
    kx_timer *t = loop->heap[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!timer_before(t, loop->heap[parent]))
            break;
        heap_set(loop, i, loop->heap[parent]);
        i = parent;
    }
    heap_set(loop, i, t);
}

static void heap_down(kx_loop *loop, size_t i)
{
    kx_timer *t = loop->heap[i];
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        const kx_timer *best = t;
        if (l < loop->nheap && timer_before(loop->heap[l], best)) {
            m = l;
            best = loop->heap[l];
        }
        if (r < loop->nheap && timer_before(loop->heap[r], best))
            m = r;
        if (m == i)
            break;
        heap_set(loop, i, loop->heap[m]);
        i = m;
    }
    heap_set(loop, i, t);
}

static void heap_remove(kx_loop *loop, kx_timer *t)
{
    size_t i = t->idx;
    loop->nheap--;
    if (i == loop->nheap)
        return;
    kx_timer *moved = loop->heap[loop->nheap]; /* the last one fills the hole */
    heap_set(loop, i, moved);
    heap_up(loop, i);
    heap_down(loop, moved->idx);
}

/* ---- lifecycle ---- */

kx_loop *kx_loop_new(void)
{
    kx_loop *loop = calloc(1, sizeof *loop);
    if (loop == NULL) {
        kx_error("loop: out of memory");
        return NULL;
    }
    loop->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (loop->epfd < 0) {
        kx_error("loop: epoll_create1 failed: %s", strerror(errno));
        free(loop);
        return NULL;
    }
    loop->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (loop->evfd < 0) {
        kx_error("loop: eventfd failed: %s", strerror(errno));
        close(loop->epfd);
        free(loop);
        return NULL;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL}; /* NULL = the eventfd */
    if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, loop->evfd, &ev) != 0) {
        kx_error("loop: epoll_ctl(ADD eventfd) failed: %s", strerror(errno));
        close(loop->evfd);
        close(loop->epfd);
        free(loop);
        return NULL;
    }
    pthread_mutex_init(&loop->mu, NULL);
    atomic_init(&loop->stop, false);
    atomic_init(&loop->has_thread, false);
    loop->now = kx_mono_ms();
    return loop;
}

static void free_dead_watches(kx_loop *loop)
{
    while (loop->dead != NULL) {
        watch *w = loop->dead;
        loop->dead = w->next_dead;
        free(w);
    }
}

void kx_loop_free(kx_loop *loop)
{
    if (loop == NULL)
        return;
    for (size_t i = 0; i < loop->nwatches; i++)
        free(loop->watches[i]);
    free(loop->watches);
    free_dead_watches(loop);
    for (size_t i = 0; i < loop->nheap; i++)
        free(loop->heap[i]);
    free(loop->heap);
    task *t = loop->head;
    while (t != NULL) {
        task *next = t->next;
        if (t->dispose != NULL)
            t->dispose(t->arg);
        free(t);
        t = next;
    }
    pthread_mutex_destroy(&loop->mu);
    close(loop->evfd);
    close(loop->epfd);
    free(loop);
}

void kx_loop_stop(kx_loop *loop)
{
    atomic_store(&loop->stop, true);
    uint64_t one = 1;
    ssize_t n = write(loop->evfd, &one, sizeof one); /* EAGAIN: already signalled */
    (void)n;
}

bool kx_loop_in_loop_thread(const kx_loop *loop)
{
    return atomic_load(&loop->has_thread) && pthread_equal(loop->thread, pthread_self());
}

int64_t kx_loop_now(const kx_loop *loop)
{
    return loop->now;
}

/* ---- file descriptors ---- */

static kx_err grow_watches(kx_loop *loop, int fd)
{
    if ((size_t)fd < loop->nwatches)
        return KX_OK;
    size_t n = loop->nwatches ? loop->nwatches : 64;
    while (n <= (size_t)fd)
        n *= 2;
    watch **w = realloc(loop->watches, n * sizeof *w);
    if (w == NULL) {
        kx_error("loop: out of memory watching fd %d", fd);
        return KX_ERR_NOMEM;
    }
    memset(w + loop->nwatches, 0, (n - loop->nwatches) * sizeof *w);
    loop->watches = w;
    loop->nwatches = n;
    return KX_OK;
}

kx_err kx_loop_watch(kx_loop *loop, int fd, uint32_t events, kx_fd_cb cb, void *arg)
{
    if (fd < 0 || cb == NULL) {
        kx_error("loop: kx_loop_watch needs fd >= 0 and a callback (fd %d)", fd);
        return KX_ERR_INVALID;
    }
    kx_err err = grow_watches(loop, fd);
    if (err != KX_OK)
        return err;
    watch *w = loop->watches[fd];
    bool fresh = w == NULL;
    if (fresh) {
        w = calloc(1, sizeof *w);
        if (w == NULL) {
            kx_error("loop: out of memory watching fd %d", fd);
            return KX_ERR_NOMEM;
        }
        w->fd = fd;
    }
    struct epoll_event ev = {.events = events, .data.ptr = w};
    int rc = 0;
    if (events == 0 && w->in_epoll) {
        rc = epoll_ctl(loop->epfd, EPOLL_CTL_DEL, fd, NULL);
        if (rc != 0 && errno == ENOENT) /* already gone from epoll: silent anyway */
            rc = 0;
    } else if (events != 0) {
        rc = epoll_ctl(loop->epfd, w->in_epoll ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, fd, &ev);
        /* the fd was closed and its number reused without an unwatch: register it afresh */
        if (rc != 0 && errno == ENOENT && w->in_epoll)
            rc = epoll_ctl(loop->epfd, EPOLL_CTL_ADD, fd, &ev);
    }
    if (rc != 0) {
        kx_error("loop: epoll_ctl on fd %d (events 0x%x) failed: %s", fd, events, strerror(errno));
        if (fresh)
            free(w);
        return KX_ERR_IO;
    }
    w->in_epoll = events != 0;
    w->events = events;
    w->cb = cb;
    w->arg = arg;
    loop->watches[fd] = w;
    return KX_OK;
}

void kx_loop_unwatch(kx_loop *loop, int fd)
{
    if (fd < 0 || (size_t)fd >= loop->nwatches || loop->watches[fd] == NULL)
        return;
    watch *w = loop->watches[fd];
    loop->watches[fd] = NULL;
    /* The caller may already have closed fd (then the kernel dropped it from epoll itself). */
    if (w->in_epoll && epoll_ctl(loop->epfd, EPOLL_CTL_DEL, fd, NULL) != 0 && errno != EBADF &&
        errno != ENOENT)
        kx_warn("loop: epoll_ctl(DEL) on fd %d failed: %s", fd, strerror(errno));
    w->dead = true;
    w->next_dead = loop->dead;
    loop->dead = w;
}

/* ---- timers ---- */

kx_timer *kx_loop_timer(kx_loop *loop, int64_t ms, kx_timer_cb cb, void *arg)
{
    if (loop->nheap == loop->capheap) {
        size_t cap = loop->capheap ? loop->capheap * 2 : 64;
        kx_timer **h = realloc(loop->heap, cap * sizeof *h);
        if (h == NULL) {
            kx_error("loop: out of memory growing the timer heap");
            return NULL;
        }
        loop->heap = h;
        loop->capheap = cap;
    }
    kx_timer *t = calloc(1, sizeof *t);
    if (t == NULL) {
        kx_error("loop: out of memory creating a timer");
        return NULL;
    }
    if (ms < 0)
        ms = 0;
    t->loop = loop;
    t->when = kx_mono_ms() + ms;
    t->seq = loop->next_seq++;
    t->cb = cb;
    t->arg = arg;
    loop->heap[loop->nheap] = t;
    t->idx = loop->nheap++;
    heap_up(loop, t->idx);
    return t;
}

void kx_timer_cancel(kx_timer *timer)
{
    if (timer == NULL)
        return;
    heap_remove(timer->loop, timer);
    free(timer);
}

/* Fires the timers due by loop->now that existed when this pass began (a timer created by a
 * callback, even with 0 ms, waits for the next iteration). */
static void fire_timers(kx_loop *loop)
{
    uint64_t seq_limit = loop->next_seq;
    while (loop->nheap > 0 && !atomic_load(&loop->stop)) {
        kx_timer *t = loop->heap[0];
        if (t->when > loop->now || t->seq >= seq_limit)
            break;
        heap_remove(loop, t);
        kx_timer_cb cb = t->cb;
        void *arg = t->arg;
        free(t);
        cb(loop, arg);
    }
}

/* ---- tasks ---- */

kx_err kx_loop_post(kx_loop *loop, kx_task_cb cb, void *arg)
{
    return kx_loop_post_owned(loop, cb, arg, NULL);
}

kx_err kx_loop_post_owned(kx_loop *loop, kx_task_cb cb, void *arg, void (*dispose)(void *arg))
{
    task *t = malloc(sizeof *t);
    if (t == NULL) {
        kx_error("loop: out of memory posting a task");
        return KX_ERR_NOMEM;
    }
    t->cb = cb;
    t->arg = arg;
    t->dispose = dispose;
    t->next = NULL;
    pthread_mutex_lock(&loop->mu);
    bool wake = !loop->will_look;
    loop->will_look = true;
    if (loop->tail)
        loop->tail->next = t;
    else
        loop->head = t;
    loop->tail = t;
    pthread_mutex_unlock(&loop->mu);
    if (wake) {
        uint64_t one = 1;
        ssize_t n = write(loop->evfd, &one, sizeof one);
        (void)n;
    }
    return KX_OK;
}

/* Runs the tasks that are queued now, taken off the queue under one lock; tasks posted by
 * these tasks wait for the next iteration (so a task that re-posts itself cannot starve fds
 * and timers). When the loop is stopped meanwhile, the tasks not run go back to the front of
 * the queue, in order (for a later kx_loop_run, or kx_loop_free's dispose). */
static void run_tasks(kx_loop *loop)
{
    pthread_mutex_lock(&loop->mu);
    task *t = loop->head;
    loop->head = loop->tail = NULL;
    pthread_mutex_unlock(&loop->mu);
    while (t != NULL) {
        if (atomic_load(&loop->stop)) {
            task *last = t;
            while (last->next != NULL)
                last = last->next;
            pthread_mutex_lock(&loop->mu);
            last->next = loop->head;
            if (loop->head == NULL)
                loop->tail = last;
            loop->head = t;
            pthread_mutex_unlock(&loop->mu);
            return;
        }
        task *next = t->next;
        kx_task_cb cb = t->cb;
        void *arg = t->arg;
        free(t);
        cb(loop, arg);
        t = next;
    }
}

/* ---- the loop ---- */

/* How long epoll_wait may block: 0 when tasks are queued or a timer is due. When it may block,
 * a post from now on writes the eventfd (will_look false). */
static int wait_timeout_ms(kx_loop *loop)
{
    int wait_ms = -1;
    if (loop->nheap > 0) {
        int64_t wait = loop->heap[0]->when - kx_mono_ms();
        wait_ms = wait <= 0 ? 0 : wait > INT_MAX ? INT_MAX : (int)wait;
    }
    pthread_mutex_lock(&loop->mu);
    if (loop->head != NULL)
        wait_ms = 0;
    loop->will_look = wait_ms == 0;
    pthread_mutex_unlock(&loop->mu);
    return wait_ms;
}

static void looking(kx_loop *loop, bool yes)
{
    pthread_mutex_lock(&loop->mu);
    loop->will_look = yes;
    pthread_mutex_unlock(&loop->mu);
}

static void drain_eventfd(kx_loop *loop)
{
    uint64_t count;
    ssize_t n = read(loop->evfd, &count, sizeof count); /* EAGAIN: nothing to drain */
    (void)n;
}

kx_err kx_loop_run(kx_loop *loop)
{
    loop->thread = pthread_self();
    atomic_store(&loop->has_thread, true);
    struct epoll_event evs[EPOLL_BATCH];
    kx_err result = KX_OK;

    while (!atomic_load(&loop->stop)) {
        int timeout = wait_timeout_ms(loop);
        int n = epoll_wait(loop->epfd, evs, EPOLL_BATCH, timeout);
        if (timeout != 0)
            looking(loop, true);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            kx_error("loop: epoll_wait failed: %s", strerror(errno));
            result = KX_ERR_IO;
            break;
        }
        loop->now = kx_mono_ms();
        for (int i = 0; i < n && !atomic_load(&loop->stop); i++) {
            watch *w = evs[i].data.ptr;
            if (w == NULL) {
                drain_eventfd(loop);
                continue;
            }
            if (w->dead)
                continue;
            w->cb(loop, w->fd, evs[i].events, w->arg);
        }
        run_tasks(loop);
        fire_timers(loop);
        free_dead_watches(loop);
    }
    looking(loop, false);             /* nobody runs the loop: a post writes the eventfd again */
    atomic_store(&loop->stop, false); /* consumed: a later kx_loop_run runs again */
    drain_eventfd(loop);
    return result;
}
