/* test_ready_subscriptions.c — a service says ready only once nats-server knows its
 * subscriptions. Each service under test is started behind a TCP proxy that holds every chunk
 * it sends to nats-server for HOLD_MS before passing it on (answers come back at once), as a
 * busy nats-server that has not read a socket yet would. Right after its /readyz says ready,
 * a message only its subscription can take is sent over a direct connection:
 *   - the tool-executor: kx.tool.schemas must be answered (when it marked itself ready as soon
 *     as its SUBs were written, not confirmed, the request found no responders);
 *   - the scheduler: a kx.run.submit (core, not stored) for a new queued run must dispatch it,
 *     with the sweep and the reaper's admission 10 minutes away (when ready came before NATS
 *     had read the SUB, the submit was dropped and the run waited for the next sweep);
 *   - the gateway: a kx.run.start request must be answered (here refused with 400 for its
 *     reasoning_effort, which needs no other service); before, "no responders";
 *   - the mcp-proxy: kx.mcp.list for a server it does not know must be answered (not_found);
 *   - the sandbox-broker: kx.sandbox.kill of an exec it does not know must be answered.
 * Now each flushes (kx_bus_flush: PING, wait for PONG) before it says ready.
 * A service waiting for Postgres at start stops on SIGTERM (exit 0, within STOP_WITHIN_MS).
 * A nats-server that falls silent with its socket open (a second proxy frozen both ways) is
 * noticed by the bus's PINGs: /readyz says "nats: not connected" within 3 PING intervals, and
 * ready again once the server answers.
 * Last, with every service still connected through the proxy, the proxy goes (nats-server
 * gone for all of them) and each must exit 0 within STOP_WITHIN_MS of SIGTERM (the gateway
 * waited 5 s for a subscription drain that needs the server).
 * One nats-server, one PostgreSQL and one proxy for the binary. */
#include <errno.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "gateway_alone.h"
#include "harness.h"
#include "sandbox_client.h"
#include "suite.h"
#include "kx/bus.h"
#include "kx/pb.h"
#include "kx/time.h"
#include "kx/uuid.h"

#define HOLD_MS 300
#define MAX_CONNS 16
#define STOP_WITHIN_MS 3000 /* SIGTERM to exit with NATS gone */

/* ---- the holding proxy: one listener thread, two threads per connection ---- */

struct holding_proxy;

typedef struct pipe_half {
    int from, to;
    bool hold; /* client -> server: each chunk waits the proxy's hold_ms */
    struct holding_proxy *proxy;
    pthread_t thread;
} pipe_half;

typedef struct holding_proxy {
    int listen_fd;
    uint16_t port, upstream;
    int hold_ms;
    atomic_bool frozen; /* while set, nothing is passed on either way (a paused server) */
    pthread_t acceptor;
    pthread_mutex_t mu;
    int nconns;
    pipe_half halves[2 * MAX_CONNS];
} holding_proxy;

static void *pump(void *arg)
{
    pipe_half *h = arg;
    char buf[65536];
    for (;;) {
        ssize_t n = read(h->from, buf, sizeof buf);
        if (n <= 0)
            break;
        if (h->hold) {
            struct timespec ts = {0, h->proxy->hold_ms * 1000000L};
            nanosleep(&ts, NULL);
        }
        while (atomic_load(&h->proxy->frozen)) {
            struct timespec ts = {0, 20 * 1000000L};
            nanosleep(&ts, NULL);
        }
        for (ssize_t off = 0; off < n;) {
            ssize_t w = write(h->to, buf + off, (size_t)(n - off));
            if (w <= 0)
                goto out;
            off += w;
        }
    }
out:
    shutdown(h->to, SHUT_WR);
    return NULL;
}

static int connect_local(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static void *accept_loop(void *arg)
{
    holding_proxy *p = arg;
    for (;;) {
        int c = accept4(p->listen_fd, NULL, NULL, SOCK_CLOEXEC);
        if (c < 0) {
            if (errno == EINTR)
                continue;
            return NULL; /* the listener was shut down */
        }
        int u = connect_local(p->upstream);
        pthread_mutex_lock(&p->mu);
        bool room = p->nconns < MAX_CONNS && u >= 0;
        if (room) {
            pipe_half *up = &p->halves[2 * p->nconns], *down = up + 1;
            *up = (pipe_half){.from = c, .to = u, .hold = true, .proxy = p};
            *down = (pipe_half){.from = u, .to = c, .hold = false, .proxy = p};
            if (pthread_create(&up->thread, NULL, pump, up) != 0 ||
                pthread_create(&down->thread, NULL, pump, down) != 0)
                abort(); /* a test helper: no threads, no test */
            p->nconns++;
        }
        pthread_mutex_unlock(&p->mu);
        if (!room) {
            close(c);
            if (u >= 0)
                close(u);
        }
    }
}

static holding_proxy *proxy_start(uint16_t upstream, int hold_ms)
{
    holding_proxy *p = calloc(1, sizeof *p);
    if (p == NULL)
        return NULL;
    p->upstream = upstream;
    p->hold_ms = hold_ms;
    pthread_mutex_init(&p->mu, NULL);
    p->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (p->listen_fd < 0 || bind(p->listen_fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        listen(p->listen_fd, 16) != 0 ||
        getsockname(p->listen_fd, (struct sockaddr *)&a, &len) != 0 ||
        pthread_create(&p->acceptor, NULL, accept_loop, p) != 0) {
        if (p->listen_fd >= 0)
            close(p->listen_fd);
        free(p);
        return NULL;
    }
    p->port = ntohs(a.sin_port);
    return p;
}

/* After the executor is gone: every connection has ended, so the pumps end by themselves. */
static void proxy_stop(holding_proxy *p)
{
    shutdown(p->listen_fd, SHUT_RDWR);
    pthread_join(p->acceptor, NULL);
    close(p->listen_fd);
    for (int i = 0; i < p->nconns; i++) {
        pipe_half *up = &p->halves[2 * i];
        shutdown(up->from, SHUT_RDWR);
        shutdown(up->to, SHUT_RDWR);
        pthread_join(up[0].thread, NULL);
        pthread_join(up[1].thread, NULL);
        close(up->from);
        close(up->to);
    }
    pthread_mutex_destroy(&p->mu);
    free(p);
}

/* ---- the tests ---- */

static char *g_tmp;
static kx_th_nats g_nats;
static kx_th_pg g_pg;
static PGconn *g_db;
static kx_bus *g_bus;
static holding_proxy *g_proxy;
static pid_t g_executor, g_scheduler, g_gateway, g_mcp, g_broker, g_runner;

static int group_setup(void **state)
{
    (void)state;
    if (kx_th_suite_open("kx-it-ready-subs", &g_tmp, &g_nats) != KX_OK ||
        kx_th_pg_start(g_tmp, &g_pg) != KX_OK)
        return -1;
    /* connected now: the test's statements after /readyz must not wait for a new session */
    g_db = PQconnectdb(g_pg.url);
    if (PQstatus(g_db) != CONNECTION_OK)
        return -1;
    g_proxy = proxy_start(g_nats.port, HOLD_MS);
    return g_proxy != NULL && kx_th_bus_connect(g_nats.url, "it-ready-subs", &g_bus) == KX_OK ? 0
                                                                                              : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    if (g_db != NULL)
        PQfinish(g_db);
    const pid_t pids[] = {g_executor, g_scheduler, g_gateway, g_mcp, g_broker, g_runner};
    int rc = kx_th_suite_close(g_bus, pids, 6, &g_nats, &g_pg, g_tmp);
    if (g_proxy != NULL)
        proxy_stop(g_proxy);
    return rc == 0 ? 0 : -1;
}

/* Starts service `name` connected to nats-server through the holding proxy, with `env` (a
 * NULL-terminated list, may be NULL) and a 2 s drain; returns its PID (fails the test if it
 * does not start) and, in *ready_ms, how long it took to say ready. */
static pid_t start_behind_proxy(const char *name, const char *const *env, int64_t *ready_ms)
{
    char url[64];
    snprintf(url, sizeof url, "nats://127.0.0.1:%u", g_proxy->port);
    const char *all[8];
    size_t n = 0;
    for (; env != NULL && env[n] != NULL; n++) {
        assert_true(n + 2 < sizeof all / sizeof all[0]);
        all[n] = env[n];
    }
    all[n++] = "KX_DRAIN_TIMEOUT_MS=2000";
    all[n] = NULL;
    int64_t t0 = kx_mono_ms();
    pid_t pid = kx_th_service_start(g_tmp, url, name, all, NULL);
    if (pid <= 0)
        fail_msg("%s did not start behind the holding proxy", name);
    if (ready_ms != NULL)
        *ready_ms = kx_mono_ms() - t0;
    return pid;
}

/* Sends `rq` on `subject` over the test's direct connection and returns the reply; fails the
 * test, naming the subject and how long the service took to say ready, if none came. */
static void *ask_after_ready(const char *subject, const ProtobufCMessage *rq, const char *account,
                             const ProtobufCMessageDescriptor *reply, int64_t ready_ms)
{
    kx_err err = KX_OK;
    void *rep = kx_th_bus_ask(g_bus, subject, rq, account, 5000, reply, NULL, &err);
    if (err != KX_OK)
        fail_msg("%s right after /readyz (ready after %lld ms): %s", subject, (long long)ready_ms,
                 kx_err_str(err));
    assert_non_null(rep);
    return rep;
}

static void test_ready_means_heard(void **state)
{
    (void)state;
    int64_t ready_ms = 0;
    g_executor = start_behind_proxy("tool-executor", NULL, &ready_ms);

    char account[KX_UUID_LEN + 1];
    kx_uuid_new(account);
    Kx__V1__ToolSchemasRequest rq = KX__V1__TOOL_SCHEMAS_REQUEST__INIT;
    Kx__V1__ToolSchemasReply *rep =
        ask_after_ready(KX_SUBJ_TOOL_SCHEMAS, &rq.base, account,
                        &kx__v1__tool_schemas_reply__descriptor, ready_ms);
    assert_non_null(strstr(rep->tools_json, "execute_command"));
    kx_pb_free(rep);
}

static void sql_ok(const char *q, int n, const char *const *params)
{
    PGresult *r = PQexecParams(g_db, q, n, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK)
        fail_msg("%s: %s", q, PQerrorMessage(g_db));
    PQclear(r);
}

static void test_scheduler_hears_a_submit_right_after_ready(void **state)
{
    (void)state;
    char db_env[400];
    snprintf(db_env, sizeof db_env, "KX_DATABASE_URL=%s", g_pg.url);
    /* nothing but the submit may admit the run: the sweep, the reaper's admission pass after
     * each tick and the triggers' poll are all 10 minutes away */
    const char *env[] = {db_env,
                         "KX_SWEEP_INTERVAL_MS=600000",
                         "KX_REAPER_INTERVAL_MS=600000",
                         "KX_TRIGGER_POLL_MS=600000",
                         "KX_MAX_PARALLEL_RUNS=1000",
                         NULL};
    int64_t ready_ms = 0, t0 = kx_mono_ms();
    g_scheduler = start_behind_proxy("scheduler", env, &ready_ms);

    /* a queued run, as the gateway's initiate makes it (the scheduler migrated the schema) */
    char account[KX_UUID_LEN + 1], project[KX_UUID_LEN + 1], thread[KX_UUID_LEN + 1],
        run[KX_UUID_LEN + 1];
    kx_uuid_new(account);
    kx_uuid_new(project);
    kx_uuid_new(thread);
    kx_uuid_new(run);
    const char *const ids[] = {account, project, thread, run};
    sql_ok(
        "WITH p AS (INSERT INTO projects (project_id, name, account_id) VALUES ($2, 'p', $1)), "
        "t AS (INSERT INTO threads (thread_id, account_id, project_id) VALUES ($3, $1, $2)) "
        "INSERT INTO agent_runs (id, thread_id, account_id, project_id) VALUES ($4, $3, $1, $2)",
        4, ids);
    assert_int_equal(kx_th_run_submit(g_bus, run, thread, account), KX_OK);
    int64_t sent_ms = kx_mono_ms() - t0;

    const char *const p[] = {run};
    for (int64_t give_up = kx_mono_ms() + 5000;;) {
        PGresult *r =
            PQexecParams(g_db, "SELECT dispatched_at IS NOT NULL FROM agent_runs WHERE id = $1", 1,
                         NULL, p, NULL, NULL, 0);
        bool dispatched = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 &&
            strcmp(PQgetvalue(r, 0, 0), "t") == 0;
        PQclear(r);
        if (dispatched)
            break;
        if (kx_mono_ms() > give_up)
            fail_msg("the run was not dispatched 5 s after its kx.run.submit (ready after %lld "
                     "ms, submit sent at %lld ms): the scheduler did not hear it",
                     (long long)ready_ms, (long long)sent_ms);
        struct timespec ts = {0, 20 * 1000000L};
        nanosleep(&ts, NULL);
    }
}

static void test_gateway_answers_a_run_start_right_after_ready(void **state)
{
    (void)state;
    char db_env[400], http_env[64], mig_env[600];
    snprintf(db_env, sizeof db_env, "KX_DATABASE_URL=%s", g_pg.url);
    snprintf(http_env, sizeof http_env, "KX_HTTP_PORT=%u", (unsigned)kx_th_free_port());
    snprintf(mig_env, sizeof mig_env, "KX_MIGRATIONS_DIR=%s/deploy/migrations", KX_SOURCE_DIR);
    const char *env[] = {db_env, http_env, mig_env,
                         "KX_JWT_SECRET=it-ready-subscriptions-secret-of-32-bytes", NULL};
    int64_t ready_ms = 0;
    g_gateway = start_behind_proxy("gateway", env, &ready_ms);

    char account[KX_UUID_LEN + 1];
    kx_uuid_new(account);
    Kx__V1__RunStartRequest rq = KX__V1__RUN_START_REQUEST__INIT;
    rq.prompt = "hello";
    rq.reasoning_effort = "extreme"; /* refused by the gateway itself: no other service needed */
    Kx__V1__RunStartReply *rep = ask_after_ready(KX_SUBJ_RUN_START, &rq.base, account,
                                                 &kx__v1__run_start_reply__descriptor, ready_ms);
    assert_int_equal(rep->status, 400);
    assert_non_null(strstr(rep->error, "reasoning_effort"));
    assert_string_equal(rep->agent_run_id, "");
    kx_pb_free(rep);
}

static void test_mcp_proxy_answers_a_list_right_after_ready(void **state)
{
    (void)state;
    int64_t ready_ms = 0;
    g_mcp = start_behind_proxy("mcp-proxy", NULL, &ready_ms);

    char account[KX_UUID_LEN + 1];
    kx_uuid_new(account);
    Kx__V1__McpListToolsRequest rq = KX__V1__MCP_LIST_TOOLS_REQUEST__INIT;
    rq.server = "no-such-server";
    rq.account_id = account;
    Kx__V1__McpListToolsReply *rep =
        ask_after_ready(KX_SUBJ_MCP_LIST, &rq.base, account,
                        &kx__v1__mcp_list_tools_reply__descriptor, ready_ms);
    assert_non_null(rep->error); /* the server is not configured: an answer, not a tool list */
    assert_string_equal(rep->error->code, "not_found");
    assert_int_equal(rep->n_tools, 0);
    kx_pb_free(rep);
}

static void test_broker_answers_a_kill_right_after_ready(void **state)
{
    (void)state;
    char root_env[600];
    snprintf(root_env, sizeof root_env, "KX_SANDBOX_ROOT=%s/sandboxes", g_tmp);
    const char *env[] = {root_env, NULL};
    int64_t ready_ms = 0;
    g_broker = start_behind_proxy("sandbox-broker", env, &ready_ms);

    char exec_id[KX_UUID_LEN + 1], project[KX_UUID_LEN + 1];
    kx_uuid_new(exec_id);
    kx_uuid_new(project);
    Kx__V1__SandboxKillRequest rq = KX__V1__SANDBOX_KILL_REQUEST__INIT;
    rq.exec_id = exec_id;
    rq.project_id = project;
    Kx__V1__SandboxKillReply *rep =
        ask_after_ready(KX_SUBJ_SANDBOX_KILL, &rq.base, NULL,
                        &kx__v1__sandbox_kill_reply__descriptor, ready_ms);
    assert_false(rep->killed); /* nothing of that id runs */
    kx_pb_free(rep);
}

/* Sends pid SIGTERM and waits up to limit_ms for it to exit: true with its *status when it
 * did; *took_ms is the time from the signal either way. */
static bool term_and_wait(pid_t pid, int64_t limit_ms, int *status, int64_t *took_ms)
{
    int64_t t0 = kx_mono_ms();
    assert_int_equal(kill(pid, SIGTERM), 0);
    pid_t got = 0;
    while ((got = waitpid(pid, status, WNOHANG)) == 0 && kx_mono_ms() - t0 < limit_ms) {
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
    *took_ms = kx_mono_ms() - t0;
    return got == pid;
}

/* A service that waits for Postgres at start (its migrations) stops on SIGTERM and exits 0.
 * The agent-runner slept between its retries with SIGTERM blocked and the loop that reads it
 * not yet running: it never stopped (only SIGKILL ended it); the gateway went on for its 30 s
 * of retries and exited 1. */
static void test_stop_while_waiting_for_postgres(void **state)
{
    (void)state;
    char db_env[160], nats_env[128], log_path[600], bin[512];
    snprintf(db_env, sizeof db_env, "KX_DATABASE_URL=postgresql://postgres@127.0.0.1:%u/kortix",
             (unsigned)kx_th_free_port()); /* nobody listens there */
    snprintf(nats_env, sizeof nats_env, "KX_NATS_URL=%s", g_nats.url);
    const char *names[] = {"agent-runner", "gateway"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char port_env[64];
        snprintf(port_env, sizeof port_env, "KX_HEALTH_PORT=%u", (unsigned)kx_th_free_port());
        snprintf(log_path, sizeof log_path, "%s/%s-nopg.log", g_tmp, names[i]);
        snprintf(bin, sizeof bin, "%s/services/%s/%s", KX_BUILD_DIR, names[i], names[i]);
        const char *env[] = {db_env, nats_env, port_env,
                             "KX_JWT_SECRET=it-ready-subscriptions-secret-of-32-bytes", NULL};
        const char *argv[] = {bin, NULL};
        pid_t pid = 0;
        assert_int_equal(kx_th_spawn(argv, env, log_path, &pid), KX_OK);
        struct timespec wait = {1, 500 * 1000000L}; /* into its retries */
        nanosleep(&wait, NULL);
        int status = 0;
        int64_t took = 0;
        if (!term_and_wait(pid, 5000, &status, &took)) {
            kx_th_kill(pid);
            fail_msg("%s waiting for Postgres: still running %lld ms after SIGTERM", names[i],
                     (long long)took);
        }
        print_message("%s waiting for Postgres: exit %d %lld ms after SIGTERM\n", names[i],
                      WIFEXITED(status) ? WEXITSTATUS(status) : -1, (long long)took);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        assert_true(took < STOP_WITHIN_MS);
    }
}

/* Last: nats-server goes away for every service (the proxy closes their connections and
 * refuses new ones), then each gets SIGTERM and must exit 0 promptly. The gateway took ~6 s:
 * it waited 5 s for the drain of its kx.sandbox.state subscription, which needs the server. */
/* GET /readyz on the health port: the HTTP status (0: no answer) and, in why, the body. */
static int readyz(uint16_t port, char *why, size_t whylen)
{
    static const char req[] = "GET /readyz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
    char *answer = NULL;
    int st = kx_th_raw(port, NULL, req, sizeof req - 1, 1000, &answer);
    snprintf(why, whylen, "%s", answer ? kx_th_raw_body(answer) : "");
    free(answer);
    return st;
}

/* Polls /readyz every 50 ms until it answers `want`; how long that took, or -1 after limit_ms. */
static int64_t until_readyz(uint16_t port, int want, int64_t limit_ms, char *why, size_t whylen)
{
    int64_t t0 = kx_mono_ms();
    while (readyz(port, why, whylen) != want) {
        if (kx_mono_ms() - t0 > limit_ms)
            return -1;
        struct timespec ts = {0, 50 * 1000000L};
        nanosleep(&ts, NULL);
    }
    return kx_mono_ms() - t0;
}

/* A nats-server that stops answering with its socket open (paused; a network that drops every
 * packet): the service's PINGs go unanswered and after KX_BUS_PINGS_OUT of them (here 2 of
 * 300 ms) /readyz says "nats: not connected" — it said ready for the 20-30 s of the old 10 s
 * pings, and no setting changed that. When the server answers again the service reconnects
 * and says ready. Its own proxy, frozen both ways, plays the paused server. */
static void test_silent_nats_is_noticed(void **state)
{
    (void)state;
    holding_proxy *p = proxy_start(g_nats.port, 0);
    assert_non_null(p);
    char url[64];
    snprintf(url, sizeof url, "nats://127.0.0.1:%u", p->port);
    const char *env[] = {"KX_BUS_PING_MS=300", "KX_BUS_PINGS_OUT=2", "KX_DRAIN_TIMEOUT_MS=2000",
                         NULL};
    uint16_t hport = 0;
    pid_t pid = kx_th_service_start(g_tmp, url, "tool-executor", env, &hport);
    assert_true(pid > 0);
    char why[256];
    assert_int_equal(readyz(hport, why, sizeof why), 200);

    atomic_store(&p->frozen, true);
    int64_t noticed = until_readyz(hport, 503, 10000, why, sizeof why);
    print_message("a silent nats-server noticed after %lld ms: %s\n", (long long)noticed, why);
    atomic_store(&p->frozen, false);
    if (noticed < 0)
        fail_msg("/readyz still said ready 10 s after nats-server fell silent");
    assert_non_null(strstr(why, "nats"));
    assert_true(noticed < 3000); /* 3 x 300 ms, with room for a busy machine */

    int64_t back = until_readyz(hport, 200, 15000, why, sizeof why);
    print_message("ready again %lld ms after nats-server answered\n", (long long)back);
    assert_true(back >= 0);
    int status = 0;
    int64_t took = 0;
    assert_true(term_and_wait(pid, 15000, &status, &took));
    proxy_stop(p);
}

static void test_services_stop_promptly_without_nats(void **state)
{
    (void)state;
    /* the agent-runner too (it serves no request, so it has no readiness case above) */
    char db_env[400];
    snprintf(db_env, sizeof db_env, "KX_DATABASE_URL=%s", g_pg.url);
    const char *env[] = {db_env, NULL};
    g_runner = start_behind_proxy("agent-runner", env, NULL);

    proxy_stop(g_proxy);
    g_proxy = NULL;
    struct timespec settle = {0, 300 * 1000000L};
    nanosleep(&settle, NULL);
    struct {
        const char *name;
        pid_t *pid;
    } svcs[] = {{"tool-executor", &g_executor}, {"scheduler", &g_scheduler},
                {"gateway", &g_gateway},        {"mcp-proxy", &g_mcp},
                {"sandbox-broker", &g_broker},  {"agent-runner", &g_runner}};
    char report[512] = "";
    bool slow = false;
    for (size_t i = 0; i < sizeof svcs / sizeof svcs[0]; i++) {
        pid_t pid = *svcs[i].pid;
        assert_true(pid > 0);
        int status = 0;
        int64_t took = 0;
        bool exited = term_and_wait(pid, 15000, &status, &took);
        if (exited)
            *svcs[i].pid = 0; /* reaped: teardown has nothing to stop */
        size_t len = strlen(report);
        snprintf(report + len, sizeof report - len, " %s %lld ms%s;", svcs[i].name,
                 (long long)took,
                 !exited                                             ? " (still running)"
                     : WIFEXITED(status) && WEXITSTATUS(status) == 0 ? ""
                                                                     : " (not exit 0)");
        if (!exited || took > STOP_WITHIN_MS || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
            slow = true;
    }
    print_message("stop with NATS gone:%s\n", report);
    if (slow)
        fail_msg("a service did not exit 0 within %d ms of SIGTERM with NATS gone:%s",
                 STOP_WITHIN_MS, report);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ready_means_heard),
        cmocka_unit_test(test_scheduler_hears_a_submit_right_after_ready),
        cmocka_unit_test(test_gateway_answers_a_run_start_right_after_ready),
        cmocka_unit_test(test_mcp_proxy_answers_a_list_right_after_ready),
        cmocka_unit_test(test_broker_answers_a_kill_right_after_ready),
        cmocka_unit_test(test_stop_while_waiting_for_postgres),
        cmocka_unit_test(test_silent_nats_is_noticed),
        cmocka_unit_test(test_services_stop_promptly_without_nats),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
