/* test_gateway_sse_writer.c — the SSE writer threads (services/gateway/sse_writer.h) with
 * socketpairs: every kick is serviced and its reference dropped exactly once, even when
 * producers kick sockets that sit further down a queue being serviced (a queue walked by
 * its next pointers while a kick re-pushed one of them once processed some sockets twice
 * and dropped their references twice: a use-after-free in the gateway); bytes arrive in
 * order; a peer that closes is reported (EPOLLRDHUP/EPOLLHUP) and the socket can be
 * unwatched from the callback; the threads stop cleanly. Runs under TSan in CI. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "kx/time.h"
#include "sse_writer.h"

enum {
    SOCKS = 16,
    PRODUCERS = 4,
    PER_PRODUCER = 5000
};

typedef struct owner {
    gw_sse_sock sock;
    pthread_mutex_t mu;
    int refs;  /* the queue's references, under mu */
    char *buf; /* pending bytes buf[off..len), under mu */
    size_t len, off, cap;
    bool peer_gone; /* under mu */
    bool unwatched; /* under mu */
    int peer;
} owner;

static gw_sse_writers *g_w;
static owner g_o[SOCKS];
static atomic_int g_services;

static void service(gw_sse_sock *s, uint32_t why, void *arg)
{
    owner *o = (owner *)((char *)s - offsetof(owner, sock));
    (void)arg;
    atomic_fetch_add(&g_services, 1);
    pthread_mutex_lock(&o->mu);
    if (o->unwatched) {
        pthread_mutex_unlock(&o->mu);
        return;
    }
    gw_sse_watch(g_w, s);
    if (why != GW_SSE_QUEUED && why != GW_SSE_TICK && (why & (EPOLLRDHUP | EPOLLHUP))) {
        o->peer_gone = true;
        o->unwatched = true;
        gw_sse_unwatch(g_w, s);
    }
    while (!o->unwatched && o->off < o->len) {
        ssize_t n = send(s->fd, o->buf + o->off, o->len - o->off, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n <= 0)
            break; /* EAGAIN: EPOLLOUT calls again */
        o->off += (size_t)n;
    }
    pthread_mutex_unlock(&o->mu);
}

static void unref(gw_sse_sock *s, void *arg)
{
    owner *o = (owner *)((char *)s - offsetof(owner, sock));
    (void)arg;
    pthread_mutex_lock(&o->mu);
    o->refs--;
    assert_true(o->refs >= 0);
    pthread_mutex_unlock(&o->mu);
}

static void *producer(void *arg)
{
    unsigned seed = (unsigned)(uintptr_t)arg;
    for (int i = 0; i < PER_PRODUCER; i++) {
        owner *o = &g_o[rand_r(&seed) % SOCKS];
        pthread_mutex_lock(&o->mu);
        if (o->len + 8 > o->cap) {
            o->cap = o->cap ? o->cap * 2 : 4096;
            o->buf = realloc(o->buf, o->cap);
        }
        memcpy(o->buf + o->len, "event!\n", 7);
        o->len += 7;
        if (gw_sse_writers_kick(g_w, &o->sock))
            o->refs++;
        pthread_mutex_unlock(&o->mu);
    }
    return NULL;
}

static void test_every_kick_serviced_once_and_bytes_arrive(void **state)
{
    (void)state;
    gw_sse_ops ops = {.service = service, .unref = unref, .arg = NULL};
    g_w = gw_sse_writers_new(2, ops);
    assert_non_null(g_w);
    for (int i = 0; i < SOCKS; i++) {
        int sv[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
        memset(&g_o[i], 0, sizeof g_o[i]);
        pthread_mutex_init(&g_o[i].mu, NULL);
        g_o[i].sock.fd = sv[0];
        g_o[i].sock.shard = (unsigned)i;
        g_o[i].peer = sv[1];
    }
    pthread_t th[PRODUCERS];
    for (int p = 0; p < PRODUCERS; p++)
        assert_int_equal(pthread_create(&th[p], NULL, producer, (void *)(uintptr_t)(p + 1)), 0);

    /* Read every peer while the producers run, until all bytes came. */
    size_t want = (size_t)PRODUCERS * PER_PRODUCER * 7, got = 0;
    int64_t give_up = kx_mono_ms() + 30000;
    char buf[65536];
    while (got < want && kx_mono_ms() < give_up) {
        bool any = false;
        for (int i = 0; i < SOCKS; i++) {
            ssize_t n = recv(g_o[i].peer, buf, sizeof buf, MSG_DONTWAIT);
            if (n > 0) {
                for (ssize_t k = 0; k < n; k += 7)
                    assert_memory_equal(buf + k, "event!\n", 7);
                got += (size_t)n;
                any = true;
            }
        }
        if (!any)
            usleep(1000);
    }
    for (int p = 0; p < PRODUCERS; p++)
        pthread_join(th[p], NULL);
    assert_int_equal(got, want);

    /* Every queue reference is dropped exactly once. */
    bool drained = false;
    for (int t = 0; t < 2000 && !drained; t++) {
        drained = true;
        for (int i = 0; i < SOCKS; i++) {
            pthread_mutex_lock(&g_o[i].mu);
            drained = drained && g_o[i].refs == 0;
            pthread_mutex_unlock(&g_o[i].mu);
        }
        if (!drained)
            usleep(1000);
    }
    assert_true(drained);
    assert_true(atomic_load(&g_services) > 0);

    /* Peers close: each socket is reported and unwatched from the callback. */
    for (int i = 0; i < SOCKS; i++)
        close(g_o[i].peer);
    bool gone = false;
    for (int t = 0; t < 3000 && !gone; t++) {
        gone = true;
        for (int i = 0; i < SOCKS; i++) {
            pthread_mutex_lock(&g_o[i].mu);
            gone = gone && g_o[i].unwatched && g_o[i].peer_gone;
            pthread_mutex_unlock(&g_o[i].mu);
        }
        if (!gone)
            usleep(1000);
    }
    assert_true(gone);
    gw_sse_writers_free(g_w);
    g_w = NULL;
    for (int i = 0; i < SOCKS; i++) {
        close(g_o[i].sock.fd);
        free(g_o[i].buf);
        pthread_mutex_destroy(&g_o[i].mu);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_kick_serviced_once_and_bytes_arrive),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
