/* tests/bench/bench_lease.c — the run core at scale: N runs in flight on ONE agent-runner
 * (N = 100, 1 000, 10 000 by default, each a real run submitted through the gateway), then:
 *
 *   - dispatch latency: created (the gateway's transaction) → dispatched (scheduler) → claimed
 *     (runner), p50 / p99, from the runs' own Postgres timestamps;
 *   - heartbeat cost while the N runs are held: every NATS message on the server (a ">"
 *     subscriber, by subject family), rows written to Postgres (pg_stat_user_tables deltas)
 *     and WAL bytes, per second, and the CPU of the runner, the scheduler, Postgres and
 *     nats-server — the goal is that none of it grows with N: the ratio N_max / N_min is printed;
 *   - the kill: SIGKILL to the runner (by PID), then the time until the last of its N runs has
 *     left `running` (goal <= 5 s with the 3 s lease TTL used here), and until every terminal
 *     event was published (the reaper's notices cleared).
 *
 * How a run is held open: the runner's model URL points at a server in this process that
 * accepts the LLM request and never answers (an event-driven socket sink: the demo model spends
 * a thread per connection, which 10 000 connections do not afford). Each held run is one LLM
 * connection of the runner, as in production.
 *
 * Settings for this benchmark (and why): KX_LEASE_TTL_MS=3000 (the goal is stated for it),
 * heartbeat 1 s and reaper 1 s (production), KX_RUNNER_CAPACITY=12000 (default 1000),
 * KX_RUN_MAX_ATTEMPTS=1 (a killed runner's runs fail instead of being retried, so every phase
 * ends), KX_MAX_PARALLEL_RUNS raised to 10 000 per account (default 3) with the runs spread
 * over --accounts accounts. A file-descriptor limit of at least N + 2000 is needed, in the
 * runner (its LLM sockets) and in this process (the sink's side of them).
 *
 *   bench_lease [--sizes 100,1000,10000] [--accounts 100] [--threads 8] [--window-ms 10000]
 *               [--results FILE]
 *
 * Bounded: every wait has a deadline (180 s for the runs to be held); the whole benchmark takes
 * about 2 minutes on 2 cores. Exits non-zero when a check failed. See docs/performance.md. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <libpq-fe.h>
#include <nats/nats.h>

#include "kx/http.h"
#include "kx/log.h"
#include "kx/time.h"
#include "kx/uuid.h"
#include "bench_report.h"
#include "procstat.h"
#include "stack.h"

#define MAX_SIZES 8
#define HELD_TIMEOUT_MS 180000
#define REAP_TIMEOUT_MS 60000
#define SETTLE_MS 11000 /* > PostgreSQL's 10 s idle stats flush: pg_stat counts the burst first */
#define KILL_GOAL_MS 5000
#define LEASE_TTL_MS 3000
#define PROMPT "say held open by the benchmark"

static kx_th_stack g_stack;
static void sleep_ms(int64_t ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* ==== the sink: an LLM endpoint that never answers ======================================== */

typedef struct sink {
    int listen_fd, epfd, stop_pipe[2];
    uint16_t port;
    pthread_t thread;
    atomic_int open;      /* connections open now */
    atomic_int requested; /* connections that sent a request (at least one byte) */
    char *seen;           /* per fd: sent a byte already */
    int max_fd;
} sink;

static void *sink_main(void *arg)
{
    sink *s = arg;
    struct epoll_event evs[256];
    char buf[16384];
    for (;;) {
        int n = epoll_wait(s->epfd, evs, 256, -1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return NULL;
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == s->stop_pipe[0])
                return NULL;
            if (fd == s->listen_fd) {
                for (;;) {
                    int c = accept4(s->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                    if (c < 0)
                        break;
                    if (c >= s->max_fd) {
                        close(c);
                        continue;
                    }
                    struct epoll_event ev = {.events = EPOLLIN, .data.fd = c};
                    if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, c, &ev) != 0) {
                        close(c);
                        continue;
                    }
                    s->seen[c] = 0;
                    atomic_fetch_add(&s->open, 1);
                }
                continue;
            }
            ssize_t r;
            bool closed = false;
            while ((r = read(fd, buf, sizeof buf)) > 0) {
                if (!s->seen[fd]) {
                    s->seen[fd] = 1;
                    atomic_fetch_add(&s->requested, 1);
                }
            }
            if (r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK))
                closed = true;
            if (closed) {
                if (s->seen[fd])
                    atomic_fetch_sub(&s->requested, 1);
                s->seen[fd] = 0;
                epoll_ctl(s->epfd, EPOLL_CTL_DEL, fd, NULL);
                close(fd);
                atomic_fetch_sub(&s->open, 1);
            }
        }
    }
}

static bool sink_start(sink *s)
{
    memset(s, 0, sizeof *s);
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    s->max_fd = (int)(rl.rlim_cur > 1000000 ? 1000000 : rl.rlim_cur);
    s->seen = calloc((size_t)s->max_fd, 1);
    s->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(s->listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    if (s->seen == NULL || s->listen_fd < 0 || bind(s->listen_fd, (void *)&a, sizeof a) != 0 ||
        listen(s->listen_fd, 4096) != 0 || getsockname(s->listen_fd, (void *)&a, &alen) != 0 ||
        pipe2(s->stop_pipe, O_CLOEXEC) != 0)
        return false;
    s->port = ntohs(a.sin_port);
    s->epfd = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = s->listen_fd};
    struct epoll_event sev = {.events = EPOLLIN, .data.fd = s->stop_pipe[0]};
    if (s->epfd < 0 || epoll_ctl(s->epfd, EPOLL_CTL_ADD, s->listen_fd, &ev) != 0 ||
        epoll_ctl(s->epfd, EPOLL_CTL_ADD, s->stop_pipe[0], &sev) != 0)
        return false;
    return pthread_create(&s->thread, NULL, sink_main, s) == 0;
}

static void sink_stop(sink *s)
{
    if (write(s->stop_pipe[1], "x", 1) != 1)
        return;
    pthread_join(s->thread, NULL);
    for (int fd = 0; fd < s->max_fd; fd++)
        if (fd != s->listen_fd && fd != s->epfd && fd != s->stop_pipe[0] &&
            fd != s->stop_pipe[1] && epoll_ctl(s->epfd, EPOLL_CTL_DEL, fd, NULL) == 0)
            close(fd);
    close(s->listen_fd);
    close(s->epfd);
    close(s->stop_pipe[0]);
    close(s->stop_pipe[1]);
    free(s->seen);
}

/* ==== NATS: every message on the server, by subject family ================================ */

enum {
    M_HB,
    M_INBOX,
    M_JS,
    M_OTHER,
    M_COUNT
};
static const char *const M_NAMES[M_COUNT] = {"kx.run.hb (heartbeats)",
                                             "_INBOX.* (answers: heartbeat, JetStream API)",
                                             "$JS.* (JetStream API, acks, pulls)", "other"};
static const char *const M_KEYS[M_COUNT] = {"hb", "inbox", "js", "other"};

typedef struct tap {
    natsConnection *nc;
    natsSubscription *sub;
    atomic_llong msgs[M_COUNT], bytes[M_COUNT];
} tap;

static void tap_cb(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *arg)
{
    (void)nc;
    (void)sub;
    tap *t = arg;
    const char *subj = natsMsg_GetSubject(msg);
    int k = strcmp(subj, "kx.run.hb") == 0 ? M_HB
        : strncmp(subj, "_INBOX.", 7) == 0 ? M_INBOX
        : strncmp(subj, "$JS.", 4) == 0    ? M_JS
                                           : M_OTHER;
    atomic_fetch_add(&t->msgs[k], 1);
    atomic_fetch_add(&t->bytes[k], natsMsg_GetDataLength(msg));
    natsMsg_Destroy(msg);
}

static bool tap_start(tap *t)
{
    memset(t, 0, sizeof *t);
    if (natsConnection_ConnectTo(&t->nc, g_stack.nats.url) != NATS_OK)
        return false;
    if (natsConnection_Subscribe(&t->sub, t->nc, ">", tap_cb, t) != NATS_OK)
        return false;
    natsSubscription_SetPendingLimits(t->sub, -1, -1);
    return natsConnection_Flush(t->nc) == NATS_OK;
}

static void tap_stop(tap *t)
{
    if (t->sub != NULL) {
        natsSubscription_Unsubscribe(t->sub);
        natsSubscription_Destroy(t->sub);
    }
    if (t->nc != NULL)
        natsConnection_Destroy(t->nc);
    t->sub = NULL;
    t->nc = NULL;
}

/* ==== CPU of a process (and Postgres: the postmaster and its backends) ===================== */

/* utime + stime of pid in clock ticks; -1 if unreadable. */
static int64_t ticks_of(pid_t pid)
{
    kx_th_pstat st;
    return kx_th_pstat_of(pid, &st) ? st.utime + st.stime : -1;
}

static void add_ticks(pid_t pid, void *arg)
{
    int64_t t = ticks_of(pid);
    if (t > 0)
        *(int64_t *)arg += t;
}

/* The postmaster and its live backends. */
static int64_t postgres_ticks(void)
{
    char dir[400];
    snprintf(dir, sizeof dir, "%s/pg", g_stack.pg.dir);
    pid_t pm = kx_th_postmaster_of(dir);
    if (pm <= 0)
        return 0;
    int64_t sum = 0;
    add_ticks(pm, &sum);
    kx_th_each_child(pm, add_ticks, &sum);
    return sum;
}

enum {
    C_RUNNER,
    C_SCHED,
    C_PG,
    C_NATS,
    C_COUNT
};
static const char *const C_NAMES[C_COUNT] = {"agent-runner", "scheduler", "postgres",
                                             "nats-server"};

static void cpu_take(int64_t out[C_COUNT])
{
    out[C_RUNNER] = ticks_of(kx_th_stack_proc(&g_stack, "agent-runner")->pid);
    out[C_SCHED] = ticks_of(kx_th_stack_proc(&g_stack, "scheduler")->pid);
    out[C_PG] = postgres_ticks();
    out[C_NATS] = ticks_of(g_stack.nats.pid);
}

static long rss_kib(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    long kib = -1;
    if (f == NULL)
        return -1;
    while (fgets(line, sizeof line, f) != NULL)
        if (strncmp(line, "VmRSS:", 6) == 0) {
            kib = strtol(line + 6, NULL, 10);
            break;
        }
    fclose(f);
    return kib;
}

/* ==== Postgres ============================================================================= */

static void quiet_notice(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

static PGconn *g_pg;

static bool pg_open(void)
{
    g_pg = PQconnectdb(g_stack.pg.url);
    if (PQstatus(g_pg) != CONNECTION_OK) {
        kx_bench_fail("postgres: %s", PQerrorMessage(g_pg));
        return false;
    }
    PQsetNoticeProcessor(g_pg, quiet_notice, NULL);
    return true;
}

/* The first value of a one-row query with text parameters, as a double; NAN-free: -1 on error. */
static double pg_num(const char *sql, int n, const char *const *params)
{
    PGresult *r = PQexecParams(g_pg, sql, n, NULL, params, NULL, NULL, 0);
    double v = -1;
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 && !PQgetisnull(r, 0, 0))
        v = strtod(PQgetvalue(r, 0, 0), NULL);
    else if (PQresultStatus(r) != PGRES_TUPLES_OK)
        kx_bench_fail("postgres: %s: %s", sql, PQerrorMessage(g_pg));
    PQclear(r);
    return v;
}

/* Rows written so far (inserted + updated + deleted, every user table) and WAL position. */
static void pg_writes(double *rows, double *wal)
{
    *rows =
        pg_num("SELECT sum(n_tup_ins + n_tup_upd + n_tup_del) FROM pg_stat_user_tables", 0, NULL);
    *wal = pg_num("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn", 0, NULL);
}

/* ==== submitting ============================================================================ */

typedef struct account {
    char id[KX_UUID_LEN + 1];
    char auth[700];
} account;

typedef struct submitter {
    pthread_t thread;
    const account *accs;
    int naccs, first, count, stride, ok;
} submitter;

static bool initiate(const account *a)
{
    const char *pairs[] = {"prompt", PROMPT, NULL};
    size_t len = 0;
    char *body = kx_th_form_urlencoded(pairs, &len);
    if (body == NULL)
        return false;
    char url[128];
    snprintf(url, sizeof url, "%s/api/agent/initiate", g_stack.base_url);
    const char *headers[] = {a->auth, "Content-Type: application/x-www-form-urlencoded", NULL};
    kx_http_resp r = {0};
    kx_err err = kx_http_request("POST", url, headers, body, len, kx_deadline_in(30000), 0, &r);
    free(body);
    bool ok = err == KX_OK && r.status == 200;
    if (!ok)
        kx_bench_fail("POST /api/agent/initiate: %s, status %ld: %s", kx_err_str(err), r.status,
                      r.body ? r.body : "");
    kx_http_resp_free(&r);
    return ok;
}

static void *submit_main(void *arg)
{
    submitter *s = arg;
    for (int i = 0; i < s->count; i++) {
        if (!initiate(&s->accs[(s->first + i * s->stride) % s->naccs]))
            return NULL;
        s->ok++;
    }
    return NULL;
}

/* n runs, spread round-robin over the accounts, from `threads` threads. */
static int submit_all(const account *accs, int naccs, int n, int threads)
{
    submitter *subs = calloc((size_t)threads, sizeof *subs);
    if (subs == NULL)
        return 0;
    for (int i = 0; i < threads; i++) {
        subs[i] = (submitter){.accs = accs,
                              .naccs = naccs,
                              .first = i,
                              .stride = threads,
                              .count = n / threads + (i < n % threads ? 1 : 0)};
        if (pthread_create(&subs[i].thread, NULL, submit_main, &subs[i]) != 0)
            subs[i].count = -1;
    }
    int ok = 0;
    for (int i = 0; i < threads; i++) {
        if (subs[i].count >= 0)
            pthread_join(subs[i].thread, NULL);
        ok += subs[i].ok;
    }
    free(subs);
    return ok;
}

/* A gauge of the runner's /metrics, or -1. */
static long long runner_metric(const char *name)
{
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%u/metrics",
             kx_th_stack_proc(&g_stack, "agent-runner")->port);
    kx_http_resp resp = {0};
    long long v = -1;
    if (kx_http_request("GET", url, NULL, NULL, 0, kx_deadline_in(5000), 4 << 20, &resp) ==
        KX_OK) {
        size_t nlen = strlen(name);
        for (const char *l = resp.body; l != NULL && *l;) {
            if (strncmp(l, name, nlen) == 0 && (l[nlen] == ' ' || l[nlen] == '{')) {
                const char *sp = strchr(l, ' ');
                v = sp ? strtoll(sp + 1, NULL, 10) : -1;
                break;
            }
            const char *nl = strchr(l, '\n');
            l = nl ? nl + 1 : NULL;
        }
    }
    kx_http_resp_free(&resp);
    return v;
}

/* ==== one phase: N runs held, measured, then the runner killed ============================ */

typedef struct phase_out {
    int n;
    double msgs_per_s, hb_bytes_per_msg, rows_per_s, wal_per_s;
    double cpu[C_COUNT]; /* % of a core */
    double kill_ms, events_ms;
} phase_out;

static void print_pcts(const char *key, const char *label, const char *sql, const char *ids)
{
    const char *p[] = {ids};
    PGresult *r = PQexecParams(g_pg, sql, 1, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
        kx_bench_fail("latency query: %s", PQerrorMessage(g_pg));
        PQclear(r);
        return;
    }
    double p50 = strtod(PQgetvalue(r, 0, 0), NULL), p99 = strtod(PQgetvalue(r, 0, 1), NULL),
           mx = strtod(PQgetvalue(r, 0, 2), NULL);
    printf("  %-44s p50 %9.1f ms   p99 %9.1f ms   max %9.1f ms\n", label, p50, p99, mx);
    char k[128];
    snprintf(k, sizeof k, "%s.p50", key);
    kx_bench_result(k, p50, "ms");
    snprintf(k, sizeof k, "%s.p99", key);
    kx_bench_result(k, p99, "ms");
    PQclear(r);
}

#define PCT(expr)                                                                              \
    "SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY v), percentile_disc(0.99) WITHIN "     \
    "GROUP (ORDER BY v), max(v) FROM (SELECT extract(epoch FROM (" expr ")) * 1000 AS v FROM " \
    "agent_runs WHERE account_id = ANY($1::uuid[])) x"

static bool phase(int n, int naccs, int threads, int64_t window_ms, sink *sk, phase_out *out)
{
    memset(out, 0, sizeof *out);
    out->n = n;
    printf("\n== %d runs in flight on one agent-runner\n", n);
    account *accs = calloc((size_t)naccs, sizeof *accs);
    size_t idlen = (size_t)naccs * (KX_UUID_LEN + 1) + 3;
    char *ids = malloc(idlen);
    if (accs == NULL || ids == NULL) {
        free(accs);
        free(ids);
        return false;
    }
    size_t off = 0;
    ids[off++] = '{';
    for (int i = 0; i < naccs; i++) {
        kx_uuid_new(accs[i].id);
        char *tok = kx_th_stack_token(&g_stack, accs[i].id);
        if (tok == NULL) {
            free(accs);
            free(ids);
            return false;
        }
        snprintf(accs[i].auth, sizeof accs[i].auth, "Authorization: Bearer %s", tok);
        free(tok);
        off += (size_t)snprintf(ids + off, idlen - off, "%s%s", i ? "," : "", accs[i].id);
    }
    snprintf(ids + off, idlen - off, "}");
    const char *pids[] = {ids};
    bool ok = true;

    /* ---- submit and wait until every run is held (claimed, in its LLM call) ---- */
    int base_requested = atomic_load(&sk->requested);
    int64_t t0 = kx_mono_ms();
    int submitted = submit_all(accs, naccs, n, threads);
    int64_t t_sub = kx_mono_ms() - t0;
    printf("  submitted %d runs in %.2f s (%.0f POST/s, %d threads, %d accounts)\n", submitted,
           (double)t_sub / 1000.0, submitted * 1000.0 / (double)(t_sub ? t_sub : 1), threads,
           naccs);
    if (submitted != n) {
        kx_bench_fail("only %d of %d runs were accepted", submitted, n);
        ok = false;
        goto done;
    }
    int running = 0, held = 0;
    for (;;) {
        running = (int)pg_num("SELECT count(*) FROM agent_runs WHERE account_id = "
                              "ANY($1::uuid[]) AND status = 'running'",
                              1, pids);
        held = atomic_load(&sk->requested) - base_requested;
        if (running == n && held >= n)
            break;
        if (kx_mono_ms() - t0 > HELD_TIMEOUT_MS) {
            kx_bench_fail("after %d s only %d of %d runs running and %d LLM requests held",
                          HELD_TIMEOUT_MS / 1000, running, n, held);
            ok = false;
            goto done;
        }
        sleep_ms(100);
    }
    int64_t t_held = kx_mono_ms() - t0;
    printf("  all %d running and waiting on the model %.2f s after the first POST\n", n,
           (double)t_held / 1000.0);
    char key[96];
    snprintf(key, sizeof key, "lease.n%d.all_held", n);
    kx_bench_result(key, (double)t_held, "ms");

    printf("  dispatch latency (Postgres timestamps of the %d runs):\n", n);
    snprintf(key, sizeof key, "lease.n%d.submit_to_claim", n);
    print_pcts(key, "created -> claimed (submit -> claim)", PCT("started_at - created_at"), ids);
    snprintf(key, sizeof key, "lease.n%d.created_to_dispatched", n);
    print_pcts(key, "  created -> dispatched (scheduler)", PCT("dispatched_at - created_at"), ids);
    snprintf(key, sizeof key, "lease.n%d.dispatched_to_claimed", n);
    print_pcts(key, "  dispatched -> claimed (runner)", PCT("started_at - dispatched_at"), ids);

    /* ---- heartbeat cost while held ---- */
    sleep_ms(SETTLE_MS);
    tap t;
    if (!tap_start(&t)) {
        kx_bench_fail("cannot subscribe to every NATS subject");
        ok = false;
        goto done;
    }
    double rows0, wal0, rows1, wal1;
    int64_t cpu0[C_COUNT], cpu1[C_COUNT];
    pg_writes(&rows0, &wal0);
    cpu_take(cpu0);
    int64_t w0 = kx_mono_us();
    sleep_ms(window_ms);
    int64_t w_us = kx_mono_us() - w0;
    pg_writes(&rows1, &wal1);
    cpu_take(cpu1);
    long long msgs[M_COUNT], bytes[M_COUNT], all = 0;
    for (int k = 0; k < M_COUNT; k++) {
        msgs[k] = atomic_load(&t.msgs[k]);
        bytes[k] = atomic_load(&t.bytes[k]);
        all += msgs[k];
    }
    tap_stop(&t);
    double secs = (double)w_us / 1e6;
    long long held_now = runner_metric("kx_runner_runs_held");
    printf("  heartbeat cost over %.1f s with %d runs held (runner says it holds %lld):\n", secs,
           n, held_now);
    if (held_now != n) {
        kx_bench_fail("the runner holds %lld runs, not %d", held_now, n);
        ok = false;
    }
    out->msgs_per_s = (double)all / secs;
    printf("    NATS messages/s, every subject        %8.1f\n", out->msgs_per_s);
    for (int k = 0; k < M_COUNT; k++) {
        printf("      %-44s %8.1f msg/s  %9.0f B/s\n", M_NAMES[k], (double)msgs[k] / secs,
               (double)bytes[k] / secs);
        snprintf(key, sizeof key, "lease.n%d.nats.%s_per_s", n, M_KEYS[k]);
        kx_bench_result(key, (double)msgs[k] / secs, "msg/s");
    }
    out->hb_bytes_per_msg = msgs[M_HB] > 0 ? (double)bytes[M_HB] / (double)msgs[M_HB] : 0;
    printf("    heartbeat size                         %8.0f B\n", out->hb_bytes_per_msg);
    out->rows_per_s = (rows1 - rows0) / secs;
    out->wal_per_s = (wal1 - wal0) / secs;
    printf("    Postgres rows written/s, every table   %8.1f   (WAL %0.f B/s)\n", out->rows_per_s,
           out->wal_per_s);
    double tick = (double)sysconf(_SC_CLK_TCK);
    for (int c = 0; c < C_COUNT; c++) {
        out->cpu[c] = 100.0 * (double)(cpu1[c] - cpu0[c]) / tick / secs;
        printf("    CPU %-34s %8.1f %% of a core\n", C_NAMES[c], out->cpu[c]);
        snprintf(key, sizeof key, "lease.n%d.cpu.%s", n, C_NAMES[c]);
        kx_bench_result(key, out->cpu[c], "%");
    }
    pid_t rpid = kx_th_stack_proc(&g_stack, "agent-runner")->pid;
    printf("    agent-runner RSS                       %8ld KiB\n", rss_kib(rpid));
    snprintf(key, sizeof key, "lease.n%d.nats_msgs_per_s", n);
    kx_bench_result(key, out->msgs_per_s, "msg/s");
    snprintf(key, sizeof key, "lease.n%d.pg_rows_per_s", n);
    kx_bench_result(key, out->rows_per_s, "rows/s");
    snprintf(key, sizeof key, "lease.n%d.wal_bytes_per_s", n);
    kx_bench_result(key, out->wal_per_s, "B/s");

    /* ---- the kill ---- */
    kx_th_proc *runner = kx_th_stack_proc(&g_stack, "agent-runner");
    double since_beat = pg_num("SELECT extract(epoch FROM clock_timestamp() - max(heartbeat_at)) "
                               "* 1000 FROM runner_leases",
                               0, NULL);
    int64_t k0 = kx_mono_ms();
    if (kill(runner->pid, SIGKILL) != 0) {
        kx_bench_fail("kill %d: %s", (int)runner->pid, strerror(errno));
        ok = false;
        goto done;
    }
    int ws = 0;
    waitpid(runner->pid, &ws, 0);
    runner->pid = 0;
    runner->exit_status = 128 + SIGKILL;
    int64_t left_ms = -1, events_ms = -1;
    while (kx_mono_ms() - k0 < REAP_TIMEOUT_MS) {
        PGresult *r = PQexecParams(g_pg,
                                   "SELECT count(*) FILTER (WHERE status = 'running'), "
                                   "count(*) FILTER (WHERE notice IS NOT NULL) FROM agent_runs "
                                   "WHERE account_id = ANY($1::uuid[])",
                                   1, NULL, pids, NULL, NULL, 0);
        int64_t now = kx_mono_ms();
        long still = -1, notices = -1;
        if (PQresultStatus(r) == PGRES_TUPLES_OK) {
            still = strtol(PQgetvalue(r, 0, 0), NULL, 10);
            notices = strtol(PQgetvalue(r, 0, 1), NULL, 10);
        }
        PQclear(r);
        if (still == 0 && left_ms < 0)
            left_ms = now - k0;
        if (still == 0 && notices == 0) {
            events_ms = now - k0;
            break;
        }
        sleep_ms(10);
    }
    printf("  SIGKILL to the runner (%.0f ms after its last heartbeat was written; TTL %d ms):\n",
           since_beat, LEASE_TTL_MS);
    if (left_ms < 0 || events_ms < 0) {
        kx_bench_fail("%s %d s after the kill",
                      left_ms < 0 ? "runs still running" : "notices pending",
                      REAP_TIMEOUT_MS / 1000);
        ok = false;
        goto done;
    }
    out->kill_ms = (double)left_ms;
    out->events_ms = (double)events_ms;
    printf("    the last of the %d runs left running   %8lld ms after the kill (goal <= %d ms: "
           "%s)\n",
           n, (long long)left_ms, KILL_GOAL_MS, left_ms <= KILL_GOAL_MS ? "met" : "NOT met");
    printf("    every terminal event published         %8lld ms after the kill\n",
           (long long)events_ms);
    /* the part no reaper can shorten: the runner's lease ran until its last heartbeat + TTL */
    double expiry_ms = LEASE_TTL_MS - since_beat;
    printf("    of which the lease still ran           %8.0f ms; after it expired: %.0f ms to the "
           "last run reaped (reaper interval 1000 ms + the UPDATEs)\n",
           expiry_ms, (double)left_ms - expiry_ms);
    snprintf(key, sizeof key, "lease.n%d.expiry_to_last_reaped", n);
    kx_bench_result(key, (double)left_ms - expiry_ms, "ms");
    snprintf(key, sizeof key, "lease.n%d.kill_to_last_reaped", n);
    kx_bench_result(key, (double)left_ms, "ms");
    snprintf(key, sizeof key, "lease.n%d.kill_to_last_event", n);
    kx_bench_result(key, (double)events_ms, "ms");
    double failed = pg_num("SELECT count(*) FROM agent_runs WHERE account_id = ANY($1::uuid[]) "
                           "AND status = 'failed' AND error LIKE 'reaped: runner % stopped "
                           "heartbeating at %'",
                           1, pids);
    if ((int)failed != n) {
        kx_bench_fail("%d of %d runs failed with the reaper's error", (int)failed, n);
        ok = false;
    }
    /* the sink sees the runner's sockets close */
    for (int i = 0; i < 100 && atomic_load(&sk->open) > 0; i++)
        sleep_ms(50);
    if (kx_th_stack_proc_start(&g_stack, runner, 30000) != KX_OK) {
        kx_bench_fail("the agent-runner did not start again");
        ok = false;
    }
done:
    free(accs);
    free(ids);
    return ok;
}

/* ==== main ================================================================================== */

static void usage(void)
{
    fprintf(stderr,
            "usage: bench_lease [--sizes 100,1000,10000] [--accounts N] [--threads N] "
            "[--window-ms MS] [--results FILE]\n");
}

int main(int argc, char **argv)
{
    int sizes[MAX_SIZES] = {100, 1000, 10000}, nsizes = 3, naccs = 100, threads = 8;
    int64_t window_ms = 10000;
    const char *results = NULL;
    for (int i = 1; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(argv[i], "--sizes") == 0 && v != NULL) {
            nsizes = 0;
            char *copy = strdup(v), *save = NULL;
            for (char *tok = strtok_r(copy, ",", &save); tok && nsizes < MAX_SIZES;
                 tok = strtok_r(NULL, ",", &save))
                sizes[nsizes++] = (int)strtol(tok, NULL, 10);
            free(copy);
        } else if (strcmp(argv[i], "--accounts") == 0 && v != NULL) {
            naccs = (int)strtol(v, NULL, 10);
        } else if (strcmp(argv[i], "--threads") == 0 && v != NULL) {
            threads = (int)strtol(v, NULL, 10);
        } else if (strcmp(argv[i], "--window-ms") == 0 && v != NULL) {
            window_ms = strtoll(v, NULL, 10);
        } else if (strcmp(argv[i], "--results") == 0 && v != NULL) {
            results = v;
        } else {
            usage();
            return 2;
        }
        i++;
    }
    int maxn = 0;
    for (int i = 0; i < nsizes; i++) {
        if (sizes[i] < 1 || sizes[i] > 100000) {
            usage();
            return 2;
        }
        maxn = sizes[i] > maxn ? sizes[i] : maxn;
    }
    if (naccs < 1 || threads < 1 || window_ms < 1000) {
        usage();
        return 2;
    }
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < rl.rlim_max) { /* the services inherit it */
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur < (rlim_t)maxn + 2000) {
        fprintf(stderr,
                "bench_lease: %d runs need a file-descriptor limit of at least %d (ulimit -n "
                "is %llu)\n",
                maxn, maxn + 2000, (unsigned long long)rl.rlim_cur);
        return 2;
    }
    if (!kx_bench_open_results("bench_lease", results))
        return 2;
    setvbuf(stdout, NULL, _IOLBF, 0);
    kx_log_init("bench", "bench");
    kx_log_set_level(KX_LOG_ERROR);
    signal(SIGPIPE, SIG_IGN);

    sink sk;
    if (!sink_start(&sk)) {
        fprintf(stderr, "bench_lease: cannot start the model sink: %s\n", strerror(errno));
        free(sk.seen);
        return 1;
    }
    char model_url[96], cap[48], limit[48], ttl[48];
    snprintf(model_url, sizeof model_url, "KX_MODEL_URL=http://127.0.0.1:%u/v1", sk.port);
    snprintf(cap, sizeof cap, "KX_RUNNER_CAPACITY=%d", maxn + maxn / 5);
    snprintf(limit, sizeof limit, "KX_MAX_PARALLEL_RUNS=%d", maxn);
    snprintf(ttl, sizeof ttl, "KX_LEASE_TTL_MS=%d", LEASE_TTL_MS);
    const char *env[] = {"KX_LOG_LEVEL=warn",
                         "KX_HEARTBEAT_MS=1000",
                         ttl,
                         "KX_REAPER_INTERVAL_MS=1000",
                         "KX_SWEEP_INTERVAL_MS=5000",
                         "KX_RUN_MAX_ATTEMPTS=1",
                         "KX_LLM_TIMEOUT_S=900",
                         "KX_LLM_RETRIES=0",
                         cap,
                         limit,
                         model_url,
                         NULL};
    kx_th_stack_opts so = {.env = env};
    int64_t t_start = kx_mono_ms();
    if (kx_th_stack_start(&so, &g_stack) != KX_OK) {
        fprintf(stderr, "bench_lease: the stack did not start\n");
        return 1;
    }
    kx_log_set_level(KX_LOG_WARN);
    printf("bench_lease: stack up in %lld ms; %ld cores; heartbeat 1 s, lease TTL %d ms, reaper "
           "1 s; %s, %s, KX_RUN_MAX_ATTEMPTS=1; ulimit -n %llu\n",
           (long long)(kx_mono_ms() - t_start), sysconf(_SC_NPROCESSORS_ONLN), LEASE_TTL_MS, cap,
           limit, (unsigned long long)rl.rlim_cur);
    bool ok = pg_open();
    phase_out outs[MAX_SIZES];
    int done = 0;
    for (int i = 0; ok && i < nsizes; i++) {
        ok = phase(sizes[i], naccs < sizes[i] ? naccs : sizes[i], threads, window_ms, &sk,
                   &outs[i]);
        if (ok)
            done++;
    }
    if (done >= 2) {
        const phase_out *a = &outs[0], *b = &outs[done - 1];
        printf("\n== per runner, %d runs against %d runs (ratio; goal: about 1)\n", b->n, a->n);
        printf("  NATS messages/s        %8.1f vs %8.1f   ratio %.2f\n", b->msgs_per_s,
               a->msgs_per_s, b->msgs_per_s / (a->msgs_per_s > 0 ? a->msgs_per_s : 1));
        printf("  heartbeat size (B)     %8.0f vs %8.0f   ratio %.2f\n", b->hb_bytes_per_msg,
               a->hb_bytes_per_msg,
               b->hb_bytes_per_msg / (a->hb_bytes_per_msg > 0 ? a->hb_bytes_per_msg : 1));
        printf("  Postgres rows/s        %8.1f vs %8.1f   ratio %.2f\n", b->rows_per_s,
               a->rows_per_s, b->rows_per_s / (a->rows_per_s > 0 ? a->rows_per_s : 1));
        printf("  WAL B/s                %8.0f vs %8.0f   ratio %.2f\n", b->wal_per_s,
               a->wal_per_s, b->wal_per_s / (a->wal_per_s > 0 ? a->wal_per_s : 1));
        for (int c = 0; c < C_COUNT; c++)
            printf("  CPU %-18s %8.1f vs %8.1f %% of a core\n", C_NAMES[c], b->cpu[c], a->cpu[c]);
        printf("  kill -> last reaped    %8.0f vs %8.0f ms\n", b->kill_ms, a->kill_ms);
        kx_bench_result("lease.ratio.nats_msgs_per_s",
                        b->msgs_per_s / (a->msgs_per_s > 0 ? a->msgs_per_s : 1), "x");
        kx_bench_result("lease.ratio.pg_rows_per_s",
                        b->rows_per_s / (a->rows_per_s > 0 ? a->rows_per_s : 1), "x");
    }
    if (g_pg != NULL)
        PQfinish(g_pg);
    printf("\nbench_lease: %s in %.1f s\n", ok && !kx_bench_failed() ? "done" : "FAILED",
           (double)(kx_mono_ms() - t_start) / 1000.0);
    int bad = kx_th_stack_stop(&g_stack, !ok || kx_bench_failed());
    sink_stop(&sk);
    kx_bench_close();
    return ok && !kx_bench_failed() && bad == 0 ? 0 : 1;
}
