/* curlm.c — libcurl's multi-socket API driven by a kx_loop: the loop watches the sockets
 * curl asks for and arms one timer for curl's timeout; on every event curl does its work and
 * finished transfers are handed to their done callbacks.
 *
 * Flow: CURLMOPT_SOCKETFUNCTION → kx_loop_watch / kx_loop_unwatch (CURL_POLL_IN/OUT/INOUT/
 * REMOVE); CURLMOPT_TIMERFUNCTION → cancel the previous loop timer and arm a new one
 * (-1 = none). A socket event or the timer calls curl_multi_socket_action, then every
 * CURLMSG_DONE message is dispatched: remove the easy handle from the multi, forget it, call
 * done(easy, result, arg).
 *
 * Shards: a kx_curlm may be several multi handles (kx_curlm_new_shards), each with its own
 * sockets, timer and connection cache; a new transfer goes to the shard with the fewest
 * transfers. libcurl 7.x looks for a reusable connection by walking every connection it holds
 * to the host (in use or not), so with 1 500 streams to one model server each new transfer
 * walked ~1 500 connections on the loop thread; with n shards it walks ~1 500 / n.
 *
 * Each added transfer has a record (easy, shard, done, arg) in a doubly-linked list; while the
 * transfer is added, the easy handle's CURLOPT_PRIVATE points at that record, so finding it is
 * O(1) however many transfers run (10 000 LLM streams in one runner). Re-entrancy: a done
 * callback may add or remove transfers (curl drops a removed handle's pending message itself)
 * and may even call kx_curlm_free: the free is then deferred until the dispatch loop is done. */
#include "kx/curlm.h"

#include <stdbool.h>
#include <stdlib.h>
#include <sys/epoll.h>

#include "kx/log.h"

#define MAX_SHARDS 64

/* One multi handle: its sockets, its timer, its connections. */
typedef struct shard {
    struct kx_curlm *m;
    CURLM *multi;
    kx_timer *timer; /* curl's timeout, or NULL */
    int count;       /* transfers added to this multi */
} shard;

typedef struct xfer {
    struct xfer *next, *prev;
    CURL *easy;
    struct kx_curlm *owner;
    shard *sh;
    kx_curlm_done_cb done;
    void *arg;
} xfer;

struct kx_curlm {
    kx_loop *loop;
    shard *shards;
    int nshards;
    xfer *xfers;
    int count;
    int dispatching;   /* depth of process_events() on the stack */
    bool free_pending; /* kx_curlm_free was called from a done callback */
    bool closing;      /* in kx_curlm_free: arm no timers */
};

static void destroy(kx_curlm *m);

static void link_xfer(kx_curlm *m, xfer *x)
{
    x->prev = NULL;
    x->next = m->xfers;
    if (m->xfers != NULL)
        m->xfers->prev = x;
    m->xfers = x;
    m->count++;
    x->sh->count++;
}

static void unlink_xfer(kx_curlm *m, xfer *x)
{
    if (x->prev != NULL)
        x->prev->next = x->next;
    else
        m->xfers = x->next;
    if (x->next != NULL)
        x->next->prev = x->prev;
    m->count--;
    x->sh->count--;
}

/* Unlinks and returns the record of easy (found through CURLOPT_PRIVATE), or NULL when easy is
 * not one of this multi's transfers. */
static xfer *take(kx_curlm *m, CURL *easy)
{
    char *priv = NULL;
    if (curl_easy_getinfo(easy, CURLINFO_PRIVATE, &priv) != CURLE_OK || priv == NULL)
        return NULL;
    xfer *x = (xfer *)(void *)priv;
    if (x->easy != easy || x->owner != m)
        return NULL;
    unlink_xfer(m, x);
    curl_easy_setopt(easy, CURLOPT_PRIVATE, NULL);
    return x;
}

/* Dispatches the finished transfers of shard sh. */
static void check_done(kx_curlm *m, shard *sh)
{
    CURLMsg *msg;
    int left = 0;
    while (!m->free_pending && (msg = curl_multi_info_read(sh->multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        CURL *easy = msg->easy_handle;
        CURLcode result = msg->data.result; /* msg is invalid after remove_handle */
        xfer *x = take(m, easy);
        curl_multi_remove_handle(sh->multi, easy);
        if (x == NULL)
            continue;
        x->done(easy, result, x->arg);
        free(x);
    }
}

/* Lets shard sh's curl act on fd (or on its timeout when fd is CURL_SOCKET_TIMEOUT). */
static void process_events(shard *sh, curl_socket_t fd, int ev_bitmask)
{
    kx_curlm *m = sh->m;
    int running = 0;
    m->dispatching++;
    CURLMcode rc = curl_multi_socket_action(sh->multi, fd, ev_bitmask, &running);
    if (rc != CURLM_OK)
        kx_error("curlm: curl_multi_socket_action: %s", curl_multi_strerror(rc));
    check_done(m, sh);
    m->dispatching--;
    if (m->dispatching == 0 && m->free_pending)
        destroy(m);
}

static void on_fd(kx_loop *loop, int fd, uint32_t events, void *arg)
{
    int mask = 0;
    if (events & EPOLLIN)
        mask |= CURL_CSELECT_IN;
    if (events & EPOLLOUT)
        mask |= CURL_CSELECT_OUT;
    if (events & (EPOLLERR | EPOLLHUP))
        mask |= CURL_CSELECT_ERR;
    process_events(arg, fd, mask);
}

static void on_timer(kx_loop *loop, void *arg)
{
    shard *sh = arg;
    sh->timer = NULL; /* the loop freed it before calling us */
    process_events(sh, CURL_SOCKET_TIMEOUT, 0);
}

/* CURLMOPT_SOCKETFUNCTION */
static int socket_cb(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
    shard *sh = userp;
    kx_curlm *m = sh->m;
    if (what == CURL_POLL_REMOVE) {
        kx_loop_unwatch(m->loop, s);
        return 0;
    }
    uint32_t events = 0;
    if (what == CURL_POLL_IN || what == CURL_POLL_INOUT)
        events |= EPOLLIN;
    if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT)
        events |= EPOLLOUT;
    if (kx_loop_watch(m->loop, s, events, on_fd, sh) != KX_OK) {
        /* A stale registration (fd closed and reused without CURL_POLL_REMOVE): start over. */
        kx_loop_unwatch(m->loop, s);
        if (kx_loop_watch(m->loop, s, events, on_fd, sh) != KX_OK) {
            kx_error("curlm: cannot watch curl's socket %d", (int)s);
            return -1;
        }
    }
    return 0;
}

/* CURLMOPT_TIMERFUNCTION */
static int timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    shard *sh = userp;
    kx_timer_cancel(sh->timer);
    sh->timer = NULL;
    if (timeout_ms < 0 || sh->m->closing)
        return 0;
    /* Never call curl back from here: 0 ms means "on the next loop iteration". */
    sh->timer = kx_loop_timer(sh->m->loop, timeout_ms, on_timer, sh);
    return sh->timer != NULL ? 0 : -1;
}

static void destroy(kx_curlm *m);

kx_err kx_curlm_new_shards(kx_loop *loop, int shards, kx_curlm **out)
{
    *out = NULL;
    if (shards < 1 || shards > MAX_SHARDS) {
        kx_error("curlm: %d shards asked for (1 to %d)", shards, MAX_SHARDS);
        return KX_ERR_INVALID;
    }
    kx_curlm *m = calloc(1, sizeof *m);
    if (m == NULL)
        return KX_ERR_NOMEM;
    m->loop = loop;
    m->shards = calloc((size_t)shards, sizeof *m->shards);
    if (m->shards == NULL) {
        free(m);
        return KX_ERR_NOMEM;
    }
    for (int i = 0; i < shards; i++) {
        shard *sh = &m->shards[i];
        sh->m = m;
        sh->multi = curl_multi_init();
        if (sh->multi == NULL) {
            destroy(m);
            return KX_ERR_NOMEM;
        }
        m->nshards++;
        curl_multi_setopt(sh->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
        curl_multi_setopt(sh->multi, CURLMOPT_SOCKETDATA, sh);
        curl_multi_setopt(sh->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
        curl_multi_setopt(sh->multi, CURLMOPT_TIMERDATA, sh);
    }
    *out = m;
    return KX_OK;
}

kx_err kx_curlm_new(kx_loop *loop, kx_curlm **out)
{
    return kx_curlm_new_shards(loop, 1, out);
}

static void destroy(kx_curlm *m)
{
    m->closing = true;
    while (m->xfers != NULL) {
        xfer *x = m->xfers;
        /* NOLINTNEXTLINE(clang-analyzer-unix.Malloc): x is the unlinked head, freed below, not before */
        unlink_xfer(m, x);
        curl_easy_setopt(x->easy, CURLOPT_PRIVATE, NULL);
        curl_multi_remove_handle(x->sh->multi, x->easy);
        free(x);
    }
    for (int i = 0; i < m->nshards; i++) {
        curl_multi_cleanup(m->shards[i].multi);
        kx_timer_cancel(m->shards[i].timer);
    }
    free(m->shards);
    free(m);
}

void kx_curlm_free(kx_curlm *m)
{
    if (m == NULL)
        return;
    if (m->dispatching > 0) {
        m->free_pending = true; /* finished by process_events() */
        return;
    }
    destroy(m);
}

kx_err kx_curlm_add(kx_curlm *m, CURL *easy, kx_curlm_done_cb done, void *arg)
{
    if (easy == NULL || done == NULL)
        return KX_ERR_INVALID;
    xfer *x = calloc(1, sizeof *x);
    if (x == NULL)
        return KX_ERR_NOMEM;
    shard *sh = &m->shards[0]; /* the least busy: its connections are walked the least */
    for (int i = 1; i < m->nshards; i++)
        if (m->shards[i].count < sh->count)
            sh = &m->shards[i];
    x->easy = easy;
    x->owner = m;
    x->sh = sh;
    x->done = done;
    x->arg = arg;
    /* Linked first: adding makes curl call timer_cb, whose timer may dispatch soon. */
    link_xfer(m, x);
    curl_easy_setopt(easy, CURLOPT_PRIVATE, (char *)x);
    CURLMcode rc = curl_multi_add_handle(sh->multi, easy);
    if (rc != CURLM_OK) {
        take(m, easy);
        free(x);
        kx_error("curlm: curl_multi_add_handle: %s", curl_multi_strerror(rc));
        return rc == CURLM_OUT_OF_MEMORY ? KX_ERR_NOMEM : KX_ERR_INVALID;
    }
    return KX_OK;
}

void kx_curlm_remove(kx_curlm *m, CURL *easy)
{
    xfer *x = take(m, easy);
    if (x == NULL)
        return;
    curl_multi_remove_handle(x->sh->multi, easy);
    free(x);
}

int kx_curlm_running(const kx_curlm *m)
{
    return m->count;
}
