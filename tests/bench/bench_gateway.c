/* tests/bench/bench_gateway.c — the gateway's HTTP edge under load, against baselines measured
 * in the same run (docs/performance.md, "Gateway edge"):
 *
 *   1. throughput of authenticated GET /api/agent-run/{id} (JWT check, access check and one
 *      Postgres query per request) against a bare libmicrohttpd hello-world (same flags: epoll,
 *      thread pool of 4, in this process), both driven by the same closed-loop client: 64
 *      keep-alive connections for 5 s. Goals: >= 20 000 req/s and >= 1/8 of bare.
 *   2. event publish -> SSE client latency with 1 000 streams open on one run: per event, from
 *      before the JetStream publish to its arrival on a rotating one of the streams (p50, p90,
 *      p99) and to its arrival on all 1 000; baseline: the same publish to a plain core NATS
 *      subscriber in this process; and the floor of such a fan-out here: the same frames sent
 *      by 2 threads, one send per socket, to 1 000 loopback sockets, read by the same client
 *      (no gateway, no NATS). Goal: p50 <= 1 ms.
 *   3. the same goal as 1 000 users each watching their own run see it: 1 000 streams, each on
 *      a run of its own (1 000 feeds); publish -> arrival on that run's stream, one event at a
 *      time (every run in turn) and at a steady rate across all runs (--per-run-rate, events/s
 *      in total for 3 s; 0 skips this part).
 *
 * It starts its own nats-server, PostgreSQL and gateway (tests/harness/gateway_alone.h), talks
 * to 127.0.0.1 only, and is bounded in time (about a minute).
 *   bench_gateway [--results FILE] [--no-run-cache] [--per-run-rate N] [--bare-senders N]
 *                 [--env K=V]...
 *     --results FILE   also append "key value unit" lines to FILE
 *     --per-run-rate N part 3's steady rate, events/s across the 1 000 runs (default 1000)
 *     --bare-senders N threads of part 2's bare fan-out (default 2, as KX_SSE_WRITERS; 1-16)
 *     --env K=V        one more variable for the gateway (up to 8), e.g. to compare settings
 *     --no-run-cache   the gateway with KX_RUN_CACHE_MS=0: every GET reads Postgres on a worker
 *                      (the default answers a run polled this hard from services/gateway/
 *                      run_cache.h, at most 100 ms old) */
#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "api_client.h"
#include "gateway_alone.h"
#include "kx/bus.h"
#include "kx/log.h"
#include "kx/pb.h"
#include "kx/time.h"
#include "kx/uuid.h"

#define CONNS 64
#define LOAD_SECONDS 5
#define STREAMS 1000
#define EVENTS 200

static kx_th_gw g_gw;
static FILE *g_results;
static bool g_no_run_cache;
#define MAX_EXTRA_ENV 8
static const char *g_extra_env[MAX_EXTRA_ENV];
static int g_nextra;

/* Stops what it started (printing the gateway log's tail) and exits. */
static void die(const char *what)
{
    fprintf(stderr, "bench_gateway: %s\n", what);
    kx_th_gw_stop(&g_gw, true);
    exit(1);
}

static void result(const char *key, double v, const char *unit)
{
    if (g_results != NULL)
        fprintf(g_results, "%s %.1f %s\n", key, v, unit);
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static int64_t pct(int64_t *v, size_t n, double p)
{
    qsort(v, n, sizeof *v, cmp_i64);
    size_t i = (size_t)(p * (double)(n - 1) + 0.5);
    return v[i];
}

/* ---- a closed-loop keep-alive load client ------------------------------------------------ */

typedef struct conn {
    int fd;
    char buf[8193];
    size_t len;
} conn;

/* The length of one complete answer at the start of buf (0: not complete yet); *status. */
static size_t answer_len(const char *buf, size_t len, int *status)
{
    const char *eoh = memmem(buf, len, "\r\n\r\n", 4);
    if (eoh == NULL)
        return 0;
    const char *cl = strcasestr(buf, "\r\nContent-Length: ");
    size_t body = cl != NULL && cl < eoh ? strtoul(cl + 18, NULL, 10) : 0;
    size_t total = (size_t)(eoh - buf) + 4 + body;
    if (len < total)
        return 0;
    *status = (int)strtol(buf + 9, NULL, 10);
    return total;
}

/* Requests per second over LOAD_SECONDS; every answer must have status want. */
static double load(uint16_t port, const char *req, int want)
{
    static conn c[CONNS];
    struct pollfd pf[CONNS];
    size_t rl = strlen(req);
    for (int i = 0; i < CONNS; i++) {
        c[i].fd = kx_th_raw_connect(port, NULL);
        c[i].len = 0;
        if (c[i].fd < 0) {
            fprintf(stderr, "cannot connect\n");
            die("see the line above");
        }
        int one = 1;
        setsockopt(c[i].fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (send(c[i].fd, req, rl, MSG_NOSIGNAL) != (ssize_t)rl)
            die("see the line above");
    }
    long done = 0, bad = 0;
    int64_t t0 = kx_mono_us(), until = t0 + LOAD_SECONDS * 1000000LL;
    while (kx_mono_us() < until) {
        for (int i = 0; i < CONNS; i++)
            pf[i] = (struct pollfd){.fd = c[i].fd, .events = POLLIN};
        if (poll(pf, CONNS, 100) <= 0)
            continue;
        for (int i = 0; i < CONNS; i++) {
            if (!(pf[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            ssize_t r = recv(c[i].fd, c[i].buf + c[i].len, sizeof c[i].buf - 1 - c[i].len, 0);
            if (r <= 0) {
                fprintf(stderr, "connection closed by the server after %ld answers (%s): %.*s\n",
                        done, r < 0 ? strerror(errno) : "EOF", (int)c[i].len, c[i].buf);
                die("a load connection was closed");
            }
            c[i].len += (size_t)r;
            c[i].buf[c[i].len] = '\0';
            int status = 0;
            size_t n;
            while ((n = answer_len(c[i].buf, c[i].len, &status)) > 0) {
                done++;
                bad += status != want;
                memmove(c[i].buf, c[i].buf + n, c[i].len - n);
                c[i].len -= n;
                c[i].buf[c[i].len] = '\0';
                if (send(c[i].fd, req, rl, MSG_NOSIGNAL) != (ssize_t)rl)
                    die("see the line above");
            }
        }
    }
    double secs = (double)(kx_mono_us() - t0) / 1e6;
    for (int i = 0; i < CONNS; i++)
        close(c[i].fd);
    if (bad > 0) {
        fprintf(stderr, "%ld answers were not %d\n", bad, want);
        die("see the line above");
    }
    return (double)done / secs;
}

/* The bare libmicrohttpd hello-world. */
static enum MHD_Result hello(void *cls, struct MHD_Connection *conn, const char *url,
                             const char *method, const char *version, const char *data,
                             size_t *size, void **con_cls)
{
    static const char body[] = "Hello, world!";
    static int first;
    if (*con_cls == NULL) { /* headers in: answer once the (empty) body is read too */
        *con_cls = &first;
        return MHD_YES;
    }
    struct MHD_Response *r =
        MHD_create_response_from_buffer(sizeof body - 1, (void *)body, MHD_RESPMEM_PERSISTENT);
    enum MHD_Result ret = MHD_queue_response(conn, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    return ret;
}

/* ---- helpers on the gateway -------------------------------------------------------------- */

static void initiate(const char *token, char run[KX_UUID_LEN + 1])
{
    if (kx_th_initiate(&g_gw.s, token, "bench", run, NULL) != 200 || run[0] == '\0') {
        fprintf(stderr, "initiate failed\n");
        die("see the line above");
    }
}

static void publish(kx_bus *bus, const char *run, const char *payload)
{
    if (kx_th_publish_run_event(bus, run, payload, false) != KX_OK) {
        fprintf(stderr, "publish failed\n");
        die("see the line above");
    }
}

/* The value of the first line of the gateway's /metrics (its ops port) that starts with
 * series; false when there is none. */
static bool metric(const char *series, double *v)
{
    const char req[] = "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    char *a = NULL;
    int st = kx_th_raw(g_gw.health_port, NULL, req, sizeof req - 1, 5000, &a);
    const char *s = a != NULL ? strstr(a, series) : NULL;
    bool ok = st == 200 && s != NULL && strchr(s, ' ') != NULL;
    if (ok)
        *v = strtod(strchr(s, ' ') + 1, NULL);
    free(a);
    return ok;
}

/* ---- 1. throughput ----------------------------------------------------------------------- */

static void bench_throughput(const char *token, const char *run)
{
    struct MHD_Daemon *d =
        MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ERROR_LOG, 0,
                         NULL, NULL, hello, NULL, MHD_OPTION_THREAD_POOL_SIZE, (unsigned int)4,
                         MHD_OPTION_CONNECTION_LIMIT, (unsigned int)1000, MHD_OPTION_END);
    if (d == NULL) {
        fprintf(stderr, "cannot start the bare server\n");
        die("see the line above");
    }
    uint16_t bare_port = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT)->port;
    double bare = load(bare_port, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 200);
    MHD_stop_daemon(d);

    char req[1024];
    snprintf(req, sizeof req,
             "GET /api/agent-run/%s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n", run,
             token);
    double gw = load(g_gw.s.http_port, req, 200);
    printf("baseline: bare libmicrohttpd hello-world: %.0f req/s (%d connections, %d s)\n", bare,
           CONNS, LOAD_SECONDS);
    printf("gateway: authenticated GET /api/agent-run/{id}: %.0f req/s (run cache %s)\n", gw,
           g_no_run_cache ? "off: every request reads Postgres" : "on");
    printf("ratio gateway/bare: %.3f (goal >= 0.125); goal >= 20000 req/s: %s\n", gw / bare,
           gw >= 20000 ? "met" : "NOT met");
    result("gateway.bare_rps", bare, "req/s");
    result("gateway.get_run_rps", gw, "req/s");
    result("gateway.get_run_over_bare", gw / bare, "x");
    double hits = 0, misses = 0;
    if (metric("kx_gateway_run_cache_total{result=\"hit\"}", &hits) &&
        metric("kx_gateway_run_cache_total{result=\"miss\"}", &misses) && hits + misses > 0)
        printf("gateway: run cache hits %.0f, misses %.0f (%.1f %%)\n", hits, misses,
               100.0 * hits / (hits + misses));
}

/* ---- 2. publish -> SSE latency with 1 000 streams ---------------------------------------- */

/* The sum and count of kx_gateway_sse_fanout_seconds: how long the gateway's feed took to hand
 * events to every stream (append, resume). */
static bool fanout_metric(double *sum, double *count)
{
    return metric("kx_gateway_sse_fanout_seconds_sum", sum) &&
        metric("kx_gateway_sse_fanout_seconds_count", count);
}

static bool send_delay_metric(double *sum, double *count)
{
    return metric("kx_gateway_sse_send_delay_seconds_sum", sum) &&
        metric("kx_gateway_sse_send_delay_seconds_count", count);
}

typedef struct nats_probe {
    int64_t got_us;
} nats_probe;

static void on_core(natsConnection *nc, natsSubscription *sub, natsMsg *m, void *arg)
{
    nats_probe *p = arg;
    __atomic_store_n(&p->got_us, kx_mono_us(), __ATOMIC_RELEASE);
    natsMsg_Destroy(m);
}

/* An epoll set watching the STREAMS stream sockets for input, each tagged with its index. */
static int epoll_of_streams(const int *fds)
{
    int ep = epoll_create1(0);
    if (ep < 0)
        die("epoll_create1");
    for (int i = 0; i < STREAMS; i++) {
        struct epoll_event ee = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &ee) != 0)
            die("epoll_ctl");
    }
    return ep;
}

/* Part 2's client and clock: for each of EVENTS events, fire(e) (which makes the frame
 * "data: {"e": <e>}" reach every one of fds), then the time from before fire to its arrival on
 * a rotating one of the streams (one[e]) and on all of them (all[e]). The client waits on epoll
 * for the sockets and reads the watched one first whenever it is ready, so the single-client
 * figure is when its bytes arrived, not when a sweep of 1 000 reads reached it. tail: the last
 * bytes seen per stream (a frame may be split between two reads). */
static void fanout_measure(const int *fds, char (*tail)[64], void (*fire)(int e, void *arg),
                           void *arg, int64_t *one, int64_t *all)
{
    int ep = epoll_of_streams(fds);
    static struct epoll_event ready[STREAMS];
    for (int e = 0; e < EVENTS; e++) {
        char needle[64];
        snprintf(needle, sizeof needle, "data: {\"e\": %d}", e);
        int watch = (e * 37) % STREAMS;
        int64_t t0 = kx_mono_us();
        fire(e, arg);
        int remaining = STREAMS;
        static bool seen[STREAMS];
        memset(seen, 0, sizeof seen);
        one[e] = -1;
        int64_t until = kx_mono_ms() + 10000;
        while (remaining > 0 && kx_mono_ms() < until) {
            int nr = epoll_wait(ep, ready, STREAMS, 100);
            if (nr <= 0)
                continue;
            /* The watched stream first (if it is ready), for the single-client latency. */
            for (int i = -1; i < nr; i++) {
                int k = i < 0 ? watch : (int)ready[i].data.u32;
                if (seen[k] || (i >= 0 && k == watch))
                    continue;
                char buf[512];
                ssize_t r = recv(fds[k], buf, sizeof buf - 1, MSG_DONTWAIT);
                if (r <= 0)
                    continue;
                buf[r] = '\0';
                char joined[640];
                snprintf(joined, sizeof joined, "%s%s", tail[k], buf);
                if (strstr(joined, needle) != NULL) {
                    seen[k] = true;
                    remaining--;
                    if (k == watch)
                        one[e] = kx_mono_us() - t0;
                }
                size_t jl = strlen(joined), keep = jl > 40 ? 40 : jl;
                memcpy(tail[k], joined + jl - keep, keep);
                tail[k][keep] = '\0';
            }
        }
        if (remaining > 0 || one[e] < 0) {
            fprintf(stderr, "event %d reached only %d streams\n", e, STREAMS - remaining);
            die("see the line above");
        }
        all[e] = kx_mono_us() - t0;
    }
    close(ep);
}

typedef struct gw_fire {
    kx_bus *bus;
    const char *run;
} gw_fire;

static void fire_publish(int e, void *arg)
{
    gw_fire *g = arg;
    char payload[64];
    snprintf(payload, sizeof payload, "{\"e\": %d}", e);
    publish(g->bus, g->run, payload);
}

/* The floor of a fan-out on this machine, for part 2's figures: the same kind of frame sent by
 * g_bare_senders threads (2 by default, as the gateway's KX_SSE_WRITERS), woken by one
 * condition variable, to 1 000 loopback TCP sockets (TCP_NODELAY, one send each), read by the
 * same client. No gateway, no NATS: what one send per stream per event costs here. */
#define BARE_SENDERS_MAX 16
static int g_bare_senders = 2; /* --bare-senders */
typedef struct bare_fan {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int gen; /* event to send (-1: none yet); -2: stop */
    char frame[96];
    size_t len;
    int *fds; /* the server's side */
} bare_fan;

typedef struct bare_sender {
    bare_fan *b;
    int index;
} bare_sender;

static void *bare_sender_main(void *arg)
{
    bare_sender *me = arg;
    bare_fan *b = me->b;
    int done = -1;
    for (;;) {
        pthread_mutex_lock(&b->mu);
        while (b->gen == done)
            pthread_cond_wait(&b->cv, &b->mu);
        int gen = b->gen;
        char frame[96];
        size_t len = b->len;
        memcpy(frame, b->frame, len);
        pthread_mutex_unlock(&b->mu);
        if (gen == -2)
            return NULL;
        for (int i = me->index; i < STREAMS; i += g_bare_senders)
            if (send(b->fds[i], frame, len, MSG_NOSIGNAL | MSG_DONTWAIT) != (ssize_t)len)
                fprintf(stderr, "bare fan-out: a send did not take the whole frame\n");
        done = gen;
    }
}

static void fire_bare(int e, void *arg)
{
    bare_fan *b = arg;
    pthread_mutex_lock(&b->mu);
    b->gen = e;
    int n = snprintf(b->frame, sizeof b->frame, "id: %d\ndata: {\"e\": %d}\n\n", e + 1, e);
    b->len = (size_t)n;
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
}

static void bench_bare_fanout(int64_t *one, int64_t *all)
{
    static int srv[STREAMS], cli[STREAMS];
    static char tail[STREAMS][64];
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    socklen_t al = sizeof a;
    if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof a) != 0 || listen(ls, 128) != 0 ||
        getsockname(ls, (struct sockaddr *)&a, &al) != 0)
        die("bare fan-out: cannot listen");
    for (int i = 0; i < STREAMS; i++) {
        cli[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (cli[i] < 0 || connect(cli[i], (struct sockaddr *)&a, sizeof a) != 0)
            die("bare fan-out: cannot connect");
        srv[i] = accept(ls, NULL, NULL);
        if (srv[i] < 0)
            die("bare fan-out: cannot accept");
        int one_ = 1;
        setsockopt(srv[i], IPPROTO_TCP, TCP_NODELAY, &one_, sizeof one_);
        tail[i][0] = '\0';
    }
    close(ls);
    bare_fan b = {.gen = -1, .fds = srv};
    pthread_mutex_init(&b.mu, NULL);
    pthread_cond_init(&b.cv, NULL);
    pthread_t th[BARE_SENDERS_MAX];
    bare_sender ss[BARE_SENDERS_MAX];
    for (int i = 0; i < g_bare_senders; i++) {
        ss[i] = (bare_sender){.b = &b, .index = i};
        if (pthread_create(&th[i], NULL, bare_sender_main, &ss[i]) != 0)
            die("pthread_create");
    }
    fanout_measure(cli, tail, fire_bare, &b, one, all);
    pthread_mutex_lock(&b.mu);
    b.gen = -2;
    pthread_cond_broadcast(&b.cv);
    pthread_mutex_unlock(&b.mu);
    for (int i = 0; i < g_bare_senders; i++)
        pthread_join(th[i], NULL);
    pthread_mutex_destroy(&b.mu);
    pthread_cond_destroy(&b.cv);
    for (int i = 0; i < STREAMS; i++) {
        close(cli[i]);
        close(srv[i]);
    }
}

static void bench_sse(kx_bus *bus, const char *token, const char *run)
{
    static int fds[STREAMS];
    char path[128];
    snprintf(path, sizeof path, "/api/agent-run/%s/stream", run);
    for (int i = 0; i < STREAMS; i++) {
        fds[i] = kx_th_events_open(g_gw.s.http_port, path, token, NULL, 0);
        if (fds[i] < 0) {
            fprintf(stderr, "cannot open stream %d\n", i);
            die("see the line above");
        }
    }
    /* A first event reaches them all (so every stream is open and live). */
    publish(bus, run, "{\"warm\": 1}");
    static char tail[STREAMS][64];
    for (int i = 0; i < STREAMS; i++) {
        char buf[4096];
        int64_t until = kx_mono_ms() + 30000;
        bool ok = false;
        size_t have = 0;
        char acc[8192];
        while (!ok && kx_mono_ms() < until) {
            struct pollfd pf = {.fd = fds[i], .events = POLLIN};
            if (poll(&pf, 1, 100) <= 0)
                continue;
            ssize_t r = recv(fds[i], buf, sizeof buf, 0);
            if (r <= 0)
                break;
            if (have + (size_t)r < sizeof acc) {
                memcpy(acc + have, buf, (size_t)r);
                have += (size_t)r;
                acc[have] = '\0';
            }
            ok = strstr(acc, "{\"warm\": 1}") != NULL;
        }
        if (!ok) {
            fprintf(stderr, "stream %d never got the first event\n", i);
            die("see the line above");
        }
        tail[i][0] = '\0';
    }

    double f_sum0 = 0, f_cnt0 = 0, f_sum1 = 0, f_cnt1 = 0;
    bool have_fanout = fanout_metric(&f_sum0, &f_cnt0);
    double d_sum0 = 0, d_cnt0 = 0, d_sum1 = 0, d_cnt1 = 0;
    bool have_delay = send_delay_metric(&d_sum0, &d_cnt0);
    int64_t one[EVENTS], all[EVENTS], base[EVENTS];
    gw_fire gf = {.bus = bus, .run = run};
    fanout_measure(fds, tail, fire_publish, &gf, one, all);
    have_fanout = have_fanout && fanout_metric(&f_sum1, &f_cnt1) && f_cnt1 > f_cnt0;
    have_delay = have_delay && send_delay_metric(&d_sum1, &d_cnt1) && d_cnt1 > d_cnt0;
    for (int i = 0; i < STREAMS; i++)
        close(fds[i]);

    /* Baseline: the bare fan-out (no gateway, no NATS) with the same client. */
    int64_t bone[EVENTS], ball[EVENTS];
    bench_bare_fanout(bone, ball);

    /* Baseline: the same JetStream publish, received by a core NATS subscriber here. */
    natsConnection *nc = NULL;
    nats_probe probe = {0};
    natsSubscription *sub = NULL;
    char subject[96];
    snprintf(subject, sizeof subject, KX_SUBJ_RUN_EV_PREFIX "%s", run);
    if (natsConnection_ConnectTo(&nc, g_gw.s.nats.url) != NATS_OK ||
        natsConnection_Subscribe(&sub, nc, subject, on_core, &probe) != NATS_OK ||
        natsConnection_Flush(nc) != NATS_OK) {
        fprintf(stderr, "cannot subscribe the baseline\n");
        die("see the line above");
    }
    for (int e = 0; e < EVENTS; e++) {
        __atomic_store_n(&probe.got_us, 0, __ATOMIC_RELEASE);
        int64_t t0 = kx_mono_us();
        publish(bus, run, "{\"b\": 1}");
        while (__atomic_load_n(&probe.got_us, __ATOMIC_ACQUIRE) == 0 &&
               kx_mono_us() - t0 < 5000000)
            ;
        base[e] = __atomic_load_n(&probe.got_us, __ATOMIC_ACQUIRE) - t0;
    }
    natsSubscription_Destroy(sub);
    natsConnection_Destroy(nc);

    printf(
        "baseline: JetStream publish -> core NATS subscriber: p50 %lld us p90 %lld us p99 %lld us\n",
        (long long)pct(base, EVENTS, 0.5), (long long)pct(base, EVENTS, 0.9),
        (long long)pct(base, EVENTS, 0.99));
    printf("baseline: bare fan-out, one send per socket by %d threads to %d loopback sockets -> "
           "one of them: p50 %lld us p90 %lld us p99 %lld us; all: p50 %lld us\n",
           g_bare_senders, STREAMS, (long long)pct(bone, EVENTS, 0.5),
           (long long)pct(bone, EVENTS, 0.9), (long long)pct(bone, EVENTS, 0.99),
           (long long)pct(ball, EVENTS, 0.5));
    printf(
        "gateway: publish -> one SSE client (of %d open): p50 %lld us p90 %lld us p99 %lld us\n",
        STREAMS, (long long)pct(one, EVENTS, 0.5), (long long)pct(one, EVENTS, 0.9),
        (long long)pct(one, EVENTS, 0.99));
    printf("gateway: publish -> all %d SSE clients: p50 %lld us p90 %lld us p99 %lld us\n",
           STREAMS, (long long)pct(all, EVENTS, 0.5), (long long)pct(all, EVENTS, 0.9),
           (long long)pct(all, EVENTS, 0.99));
    if (have_fanout) {
        double mean_us = (f_sum1 - f_sum0) / (f_cnt1 - f_cnt0) * 1e6;
        printf("gateway: its feed's hand-over of one event to all %d streams (append + queue "
               "for the writers; append + resume before them, kx_gateway_sse_fanout_seconds): "
               "mean %.0f us = %.2f us per stream\n",
               STREAMS, mean_us, mean_us / STREAMS);
        result("gateway.sse_fanout_1000.mean", mean_us, "us");
    }
    if (have_delay) {
        double mean_us = (d_sum1 - d_sum0) / (d_cnt1 - d_cnt0) * 1e6;
        printf("gateway: an event's bytes queued on a stream -> handed to the kernel by the "
               "writer threads (kx_gateway_sse_send_delay_seconds): mean %.0f us\n",
               mean_us);
        result("gateway.sse_send_delay.mean", mean_us, "us");
    }
    printf("goal p50 <= 1000 us (one client): %s\n",
           pct(one, EVENTS, 0.5) <= 1000 ? "met" : "NOT met");
    result("gateway.sse_baseline_nats.p50", (double)pct(base, EVENTS, 0.5), "us");
    result("gateway.sse_bare_fanout_one.p50", (double)pct(bone, EVENTS, 0.5), "us");
    result("gateway.sse_one_of_1000.p50", (double)pct(one, EVENTS, 0.5), "us");
    result("gateway.sse_one_of_1000.p99", (double)pct(one, EVENTS, 0.99), "us");
    result("gateway.sse_all_1000.p50", (double)pct(all, EVENTS, 0.5), "us");
}

/* ---- 3. publish -> SSE latency, 1 000 streams each on its own run ------------------------ */

/* What 1 000 users each watching their own run see: every stream is on a run of its own (so the
 * gateway has 1 000 feeds, one JetStream subscription each), and an event of a run goes to one
 * stream. Two loads: a closed loop (one event at a time, every run once, in a shuffled order)
 * and a steady rate across all runs (--per-run-rate events/s for PACED_SECONDS, run i%1000 in
 * the same shuffled order), the rate real runs emit at together. */
#define PACED_SECONDS 3
#define PACED_MAX 60000
static int g_per_run_rate = 1000;

/* A stream's bytes not yet parsed (what follows its last complete frame). */
typedef struct rx {
    char s[2048];
    size_t n;
} rx;

/* Reads what fd has and calls got(p) for every complete frame "data: {"p": <p>}" in it. False
 * when the stream closed or failed. */
static bool rx_read(int fd, rx *r, void (*got)(long long p, void *arg), void *arg)
{
    for (;;) {
        ssize_t n = recv(fd, r->s + r->n, sizeof r->s - 1 - r->n, MSG_DONTWAIT);
        if (n == 0)
            return false;
        if (n < 0)
            return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
        r->n += (size_t)n;
        r->s[r->n] = '\0';
        char *start = r->s, *end;
        while ((end = strstr(start, "\n\n")) != NULL) {
            *end = '\0';
            const char *d = strstr(start, "data: {\"p\": ");
            if (d != NULL)
                got(strtoll(d + 12, NULL, 10), arg);
            start = end + 2;
        }
        size_t left = r->n - (size_t)(start - r->s);
        memmove(r->s, start, left);
        r->n = left;
        if (r->n + 1 >= sizeof r->s)
            r->n = 0; /* a frame this benchmark never sends: drop it */
    }
}

typedef struct paced {
    kx_bus *bus;
    char (*runs)[KX_UUID_LEN + 1];
    int n;        /* events */
    int rate;     /* events/s */
    int64_t *pub; /* kx_mono_us before each publish */
} paced;

static void *paced_publisher(void *arg)
{
    paced *p = arg;
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < p->n; i++) {
        int64_t off_ns = (int64_t)i * 1000000000LL / p->rate;
        struct timespec at = {.tv_sec = t0.tv_sec + (time_t)((t0.tv_nsec + off_ns) / 1000000000LL),
                              .tv_nsec = (long)((t0.tv_nsec + off_ns) % 1000000000LL)};
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &at, NULL) == EINTR)
            ;
        char payload[64];
        snprintf(payload, sizeof payload, "{\"p\": %d}", i);
        p->pub[i] = kx_mono_us();
        publish(p->bus, p->runs[(i * 37) % STREAMS], payload);
    }
    return NULL;
}

typedef struct arrivals {
    int64_t *at; /* per event: kx_mono_us of its arrival, 0: not yet */
    int n;
    int got;
    int bad; /* a frame that is not an event of this pass, or one twice */
} arrivals;

static void on_arrival(long long p, void *arg)
{
    arrivals *a = arg;
    if (p < 0 || p >= a->n || a->at[p] != 0) {
        a->bad++;
        return;
    }
    a->at[p] = kx_mono_us();
    a->got++;
}

static void on_warm(long long p, void *arg)
{
    (void)p;
    (*(int *)arg)++;
}

static void bench_sse_per_run(kx_bus *bus, const char *token)
{
    static char runs[STREAMS][KX_UUID_LEN + 1];
    static int fds[STREAMS];
    static rx rxs[STREAMS];
    int64_t t_setup = kx_mono_ms();
    for (int i = 0; i < STREAMS; i++)
        initiate(token, runs[i]);
    for (int i = 0; i < STREAMS; i++) {
        char path[128];
        snprintf(path, sizeof path, "/api/agent-run/%.36s/stream", runs[i]);
        fds[i] = kx_th_events_open(g_gw.s.http_port, path, token, NULL, 0);
        if (fds[i] < 0) {
            fprintf(stderr, "cannot open stream %d\n", i);
            die("see the line above");
        }
        rxs[i].n = 0;
    }
    int ep = epoll_of_streams(fds);
    /* A first event on every run (each stream live on its run's feed). */
    for (int i = 0; i < STREAMS; i++)
        publish(bus, runs[i], "{\"p\": -1}");
    static int warm[STREAMS];
    static struct epoll_event ready[STREAMS];
    int warmed = 0;
    int64_t until = kx_mono_ms() + 30000;
    while (warmed < STREAMS && kx_mono_ms() < until) {
        int nr = epoll_wait(ep, ready, STREAMS, 100);
        for (int i = 0; i < nr; i++) {
            int k = (int)ready[i].data.u32;
            bool had = warm[k] > 0;
            if (!rx_read(fds[k], &rxs[k], on_warm, &warm[k]))
                die("a stream closed during the warm-up");
            warmed += !had && warm[k] > 0;
        }
    }
    if (warmed < STREAMS) {
        fprintf(stderr, "only %d of %d streams got their run's first event\n", warmed, STREAMS);
        die("see the line above");
    }
    t_setup = kx_mono_ms() - t_setup;

    /* Closed loop: one event at a time, to one run after the other. */
    static int64_t rr[STREAMS];
    double d_sum0 = 0, d_cnt0 = 0, d_sum1 = 0, d_cnt1 = 0;
    bool have_delay = send_delay_metric(&d_sum0, &d_cnt0);
    for (int e = 0; e < STREAMS; e++) {
        int k = (e * 37) % STREAMS;
        int64_t a0 = 0;
        arrivals a = {.at = &a0, .n = 1};
        char payload[64];
        snprintf(payload, sizeof payload, "{\"p\": 0}");
        int64_t t0 = kx_mono_us();
        publish(bus, runs[k], payload);
        until = kx_mono_ms() + 10000;
        while (a.got == 0 && kx_mono_ms() < until) {
            struct pollfd pf = {.fd = fds[k], .events = POLLIN};
            if (poll(&pf, 1, 100) > 0 && !rx_read(fds[k], &rxs[k], on_arrival, &a))
                die("a stream closed");
        }
        if (a.got == 0) {
            fprintf(stderr, "event %d never reached its run's stream\n", e);
            die("see the line above");
        }
        rr[e] = a0 - t0;
    }
    have_delay = have_delay && send_delay_metric(&d_sum1, &d_cnt1) && d_cnt1 > d_cnt0;

    /* A steady rate across all runs. */
    int n = g_per_run_rate * PACED_SECONDS;
    n = n > PACED_MAX ? PACED_MAX : n;
    static int64_t pub[PACED_MAX], at[PACED_MAX], lat[PACED_MAX];
    memset(at, 0, sizeof at);
    paced p = {.bus = bus, .runs = runs, .n = n, .rate = g_per_run_rate, .pub = pub};
    arrivals a = {.at = at, .n = n};
    pthread_t th;
    int64_t t_paced = kx_mono_us();
    if (pthread_create(&th, NULL, paced_publisher, &p) != 0)
        die("pthread_create");
    until = kx_mono_ms() + PACED_SECONDS * 1000 + 20000;
    while (a.got < n && kx_mono_ms() < until) {
        int nr = epoll_wait(ep, ready, STREAMS, 100);
        for (int i = 0; i < nr; i++) {
            int k = (int)ready[i].data.u32;
            if (!rx_read(fds[k], &rxs[k], on_arrival, &a))
                die("a stream closed during the paced pass");
        }
    }
    pthread_join(th, NULL);
    double paced_s = (double)(kx_mono_us() - t_paced) / 1e6;
    close(ep);
    for (int i = 0; i < STREAMS; i++)
        close(fds[i]);
    if (a.got < n || a.bad > 0) {
        fprintf(stderr, "paced pass: %d of %d events arrived, %d unexpected frames\n", a.got, n,
                a.bad);
        die("see the line above");
    }
    for (int i = 0; i < n; i++)
        lat[i] = at[i] - pub[i];

    printf("gateway, per-run streams: %d streams open, each on its own run (%d feeds; set up in "
           "%lld ms)\n",
           STREAMS, STREAMS, (long long)t_setup);
    printf("gateway: publish -> its run's SSE client, one event at a time (%d runs in turn): "
           "p50 %lld us p90 %lld us p99 %lld us\n",
           STREAMS, (long long)pct(rr, STREAMS, 0.5), (long long)pct(rr, STREAMS, 0.9),
           (long long)pct(rr, STREAMS, 0.99));
    if (have_delay)
        printf("gateway: (its writers' share, kx_gateway_sse_send_delay_seconds: mean %.0f us)\n",
               (d_sum1 - d_sum0) / (d_cnt1 - d_cnt0) * 1e6);
    printf("gateway: publish -> its run's SSE client, %d events/s across all %d runs for %d s "
           "(%d events in %.1f s): p50 %lld us p90 %lld us p99 %lld us\n",
           g_per_run_rate, STREAMS, PACED_SECONDS, n, paced_s, (long long)pct(lat, (size_t)n, 0.5),
           (long long)pct(lat, (size_t)n, 0.9), (long long)pct(lat, (size_t)n, 0.99));
    if (paced_s > PACED_SECONDS * 1.2)
        printf("gateway: (the benchmark's publisher fell behind that rate: the events went out "
               "back to back, each timed from its own publish)\n");
    printf("goal p50 <= 1000 us (per-run streams, closed loop / steady rate): %s / %s\n",
           pct(rr, STREAMS, 0.5) <= 1000 ? "met" : "NOT met",
           pct(lat, (size_t)n, 0.5) <= 1000 ? "met" : "NOT met");
    result("gateway.sse_per_run_rr.p50", (double)pct(rr, STREAMS, 0.5), "us");
    result("gateway.sse_per_run_rr.p99", (double)pct(rr, STREAMS, 0.99), "us");
    result("gateway.sse_per_run_paced.p50", (double)pct(lat, (size_t)n, 0.5), "us");
    result("gateway.sse_per_run_paced.p99", (double)pct(lat, (size_t)n, 0.99), "us");
}

/* A whole decimal integer in [lo, hi] into *out; false otherwise. */
static bool int_arg(const char *s, int lo, int hi, int *out)
{
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi)
        return false;
    *out = (int)v;
    return true;
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--results") == 0 && i + 1 < argc) {
            g_results = fopen(argv[++i], "a");
        } else if (strcmp(argv[i], "--per-run-rate") == 0 && i + 1 < argc &&
                   int_arg(argv[i + 1], 0, 100000, &g_per_run_rate)) {
            i++;
        } else if (strcmp(argv[i], "--bare-senders") == 0 && i + 1 < argc &&
                   int_arg(argv[i + 1], 1, BARE_SENDERS_MAX, &g_bare_senders)) {
            i++;
        } else if (strcmp(argv[i], "--no-run-cache") == 0) {
            g_no_run_cache = true;
        } else if (strcmp(argv[i], "--env") == 0 && i + 1 < argc && g_nextra < MAX_EXTRA_ENV &&
                   strchr(argv[i + 1], '=') != NULL) {
            g_extra_env[g_nextra++] = argv[++i];
        } else {
            fprintf(stderr,
                    "usage: bench_gateway [--results FILE] [--no-run-cache] [--per-run-rate N] "
                    "[--bare-senders N] [--env K=V]...\n");
            return 2;
        }
    }
    kx_log_init("bench-gateway", "bench");
    kx_log_set_level(KX_LOG_ERROR);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 8192) {
        rl.rlim_cur = rl.rlim_max < 8192 ? rl.rlim_max : 8192;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    const char *env[8 + MAX_EXTRA_ENV] = {"KX_LOG_LEVEL=warn",
                                          "KX_SSE_MAX_STREAMS_PER_ACCOUNT=2000",
                                          "KX_HTTP_MAX_CONNS_PER_IP=4000", "KX_SSE_PING_S=15",
                                          "KX_DB_POOL_SIZE=8"};
    int nenv = 5;
    if (g_no_run_cache)
        env[nenv++] = "KX_RUN_CACHE_MS=0";
    for (int i = 0; i < g_nextra; i++)
        env[nenv++] = g_extra_env[i]; /* a key set above is not set again */
    env[nenv] = NULL;
    if (kx_th_gw_start(&g_gw, "kx-bench-gateway", env) != KX_OK) {
        fprintf(stderr, "cannot start the gateway\n");
        kx_th_gw_stop(&g_gw, true);
        return 1;
    }
    kx_bus *bus = NULL;
    if (kx_bus_connect(g_gw.s.nats.url, "bench-gateway", &bus) != KX_OK)
        return 1;
    for (int i = 0; i < 100 && !kx_bus_connected(bus); i++)
        usleep(20000);
    for (int i = 0; i < 100 && kx_bus_ensure_streams(bus) != KX_OK; i++)
        usleep(20000);
    char account[KX_UUID_LEN + 1], run[KX_UUID_LEN + 1];
    kx_uuid_new(account);
    char *token = kx_th_jwt(g_gw.s.secret, account, 3600);
    initiate(token, run);

    bench_throughput(token, run);
    bench_sse(bus, token, run);
    if (g_per_run_rate > 0)
        bench_sse_per_run(bus, token);

    free(token);
    kx_bus_close(bus, 1000);
    kx_th_gw_stop(&g_gw, false);
    if (g_results != NULL)
        fclose(g_results);
    return 0;
}
