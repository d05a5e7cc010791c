/* test_mcp_calls.c — kx.mcp.call, kx.mcp.cancel and kx.mcp.agent_tools against real MCP
 * servers: @modelcontextprotocol/server-everything from npm over stdio, Streamable HTTP and
 * legacy HTTP+SSE, and misbehaving stdio servers (tests/fakes/mcp/misbehave.js): echo and
 * get-sum on every transport, a long-running operation with progress, a call cancelled
 * mid-way, a call past its deadline, a server crashing mid-call, garbage on stdout, a server
 * that never answers initialize, every content kind, a result larger than NATS's max_payload
 * (also one that only grows past it when escaped as a JSON string),
 * old and unknown protocol versions, an agent's config in Kortix's shapes (names, enabledTools,
 * collisions, the loopback guard), an agent's stdio servers run in the jail (server-everything
 * by node and by `npx -y`; a probing server that cannot read the JWT secret in $KX_DATA_DIR, see
 * the host's processes or connect to NATS and Postgres, while the same server run bare can),
 * the tool-list cache shared by two proxy replicas, and its invalidation by list_changed (over
 * stdio, and over Streamable HTTP's GET stream from an SDK server; 405 on that GET is fine),
 * a tools/list whose pages never end (bounded in memory), a server flooding its stderr (the log
 * stays small), one agent server entry used by two accounts (a process each), two entries
 * whose hashes collided under the old 64-bit key (their own cache entries), an account's
 * config with more stdio servers than it may run at once, an operator's tool list larger than
 * a reply. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "harness.h"
#include "kx/bus.h"
#include "kx/log.h"
#include "kx/pb.h"
#include "kx/time.h"
#include "sandbox_client.h"

#define NM \
    KX_SOURCE_DIR "/tests/node_modules/@modelcontextprotocol/server-everything/dist/index.js"
#define FAKE KX_SOURCE_DIR "/tests/fakes/mcp/misbehave.js"
#define LOOPBACK KX_SOURCE_DIR "/tests/fakes/mcp/loopback.cjs"
#define PROBE KX_SOURCE_DIR "/tests/fakes/mcp/probe.js"
#define NOTIFY KX_SOURCE_DIR "/tests/fakes/mcp/notify_http.mjs"
/* What the operator binds read-only into every user stdio server's jail (KX_MCP_JAIL_RO_BINDS):
 * the npm packages (so `npx -y @modelcontextprotocol/server-everything` finds it without a
 * download) and the fake servers. */
#define JAIL_BINDS                                                                           \
    "KX_MCP_JAIL_RO_BINDS=" KX_SOURCE_DIR "/tests/node_modules:/node_modules," KX_SOURCE_DIR \
    "/tests/fakes/mcp:/fakes"
#define PROXY KX_BUILD_DIR "/services/mcp-proxy/mcp-proxy"

static char *g_dir;
static kx_th_nats g_nats;
static pid_t g_proxy, g_http, g_sse, g_notify, g_noget;
static uint16_t g_http_port, g_sse_port, g_notify_port, g_noget_port;
static kx_bus *g_bus;
static char g_log[512];
static char g_servers_env[4096];
static char g_allow_env[128];
static char g_nats_env[128];
static kx_th_pg g_pg;
static char g_data_env[600], g_secret_path[600], g_deny_env[64];

static kx_err start_node_http(const char *mode, uint16_t port, pid_t *pid)
{
    char port_env[32], log[600];
    snprintf(port_env, sizeof port_env, "PORT=%u", port);
    snprintf(log, sizeof log, "%s/everything-%s.log", g_dir, mode);
    const char *env[] = {port_env, NULL};
    const char *argv[] = {"node", "--require", LOOPBACK, NM, mode, NULL};
    kx_err err = kx_th_spawn(argv, env, log, pid);
    if (err == KX_OK && !kx_th_wait_port(port, 20000))
        return KX_ERR_TIMEOUT;
    return err;
}

/* The proxy's cap on a call, server start included: node starting server-everything took over
 * 4 s on a loaded 2-core machine. Cases that test deadlines set their own, shorter ones. */
static const char *g_timeout_env = "KX_MCP_TIMEOUT_S=12";

/* notify_http.mjs (a Streamable HTTP server on the SDK) in mode ("" or "no-get"). */
static kx_err start_notify(const char *mode, uint16_t port, pid_t *pid)
{
    char port_env[32], log[600];
    snprintf(port_env, sizeof port_env, "PORT=%u", port);
    snprintf(log, sizeof log, "%s/notify-%s.log", g_dir, mode[0] ? mode : "get");
    const char *env[] = {port_env, NULL};
    const char *argv[] = {"node", NOTIFY, mode, NULL};
    kx_err err = kx_th_spawn(argv, env, log, pid);
    if (err == KX_OK && !kx_th_wait_port(port, 20000))
        return KX_ERR_TIMEOUT;
    return err;
}

static kx_err start_proxy(const char *log_name, pid_t *pid)
{
    char port_env[64];
    snprintf(port_env, sizeof port_env, "KX_HEALTH_PORT=%u", kx_th_free_port());
    snprintf(g_log, sizeof g_log, "%s/%s", g_dir, log_name);
    /* The jail for agents' stdio servers: the host's network minus the suite's ports (NATS is
     * added by the proxy itself, Postgres' is listed as up.sh does). */
    const char *env[] = {g_nats_env,
                         g_servers_env,
                         port_env,
                         g_allow_env,
                         g_timeout_env,
                         "KX_LOG_LEVEL=debug",
                         g_data_env,
                         JAIL_BINDS,
                         "KX_SANDBOX_NETWORK=host",
                         g_deny_env,
                         "KX_MCP_JAIL_MAX_SERVERS=6",
                         NULL};
    const char *argv[] = {PROXY, NULL};
    return kx_th_spawn(argv, env, g_log, pid);
}

/* Waits until the proxy answers its health request. */
static bool proxy_ready(void)
{
    for (int i = 0; i < 200; i++) {
        Kx__V1__HealthRequest req = KX__V1__HEALTH_REQUEST__INIT;
        Kx__V1__HealthReply *rep =
            kx_th_bus_ask(g_bus, KX_SUBJ_HEALTH_PREFIX "mcp-proxy", &req.base, NULL, 500,
                          &kx__v1__health_reply__descriptor, NULL, NULL);
        bool ready = rep && rep->ready;
        kx_pb_free(rep);
        if (ready)
            break;
        usleep(50000);
    }
    /* And the responders answer (not "no responders"): kx.mcp.list for a server that does not
     * exist is answered not_found at once. */
    for (int i = 0; i < 100; i++) {
        Kx__V1__McpListToolsRequest req = KX__V1__MCP_LIST_TOOLS_REQUEST__INIT;
        req.server = "no-such-server";
        kx_bus_meta meta;
        kx_bus_meta_init(&meta, kx_deadline_in(1000), NULL);
        natsMsg *reply = NULL;
        if (kx_bus_request_pb(g_bus, KX_SUBJ_MCP_LIST, &req.base, &meta, &reply) == KX_OK) {
            natsMsg_Destroy(reply);
            return true;
        }
        usleep(50000);
    }
    return false;
}

static int setup(void **state)
{
    (void)state;
    if (access(NM, R_OK) != 0) {
        fprintf(stderr, "missing %s: run tests/run.sh (npm install in tests/)\n", NM);
        return -1;
    }
    g_dir = kx_th_tmpdir("kx-it-mcpcall");
    if (g_dir == NULL || kx_th_nats_start(g_dir, &g_nats) != KX_OK)
        return -1;
    g_http_port = kx_th_free_port();
    g_sse_port = kx_th_free_port();
    if (start_node_http("streamableHttp", g_http_port, &g_http) != KX_OK ||
        start_node_http("sse", g_sse_port, &g_sse) != KX_OK)
        return -1;
    g_notify_port = kx_th_free_port();
    g_noget_port = kx_th_free_port();
    if (start_notify("", g_notify_port, &g_notify) != KX_OK ||
        start_notify("no-get", g_noget_port, &g_noget) != KX_OK)
        return -1;
    snprintf(g_nats_env, sizeof g_nats_env, "KX_NATS_URL=%s", g_nats.url);
    if (kx_th_pg_start(g_dir, &g_pg) != KX_OK)
        return -1;
    snprintf(g_deny_env, sizeof g_deny_env, "KX_SANDBOX_DENY_PORTS=%u", g_pg.port);
    /* The suite's data directory with its JWT secret, which no user's server may read. */
    snprintf(g_data_env, sizeof g_data_env, "KX_DATA_DIR=%s/data", g_dir);
    snprintf(g_secret_path, sizeof g_secret_path, "%s/data", g_dir);
    if (mkdir(g_secret_path, 0755) != 0)
        return -1;
    snprintf(g_secret_path, sizeof g_secret_path, "%s/data/jwt-secret", g_dir);
    FILE *f = fopen(g_secret_path, "w");
    if (f == NULL)
        return -1;
    fputs("it-jwt-secret-do-not-leak", f);
    fclose(f);
    /* Agent servers may reach this loopback port only because the test lists it. */
    snprintf(g_allow_env, sizeof g_allow_env, "KX_MCP_ALLOW_LOOPBACK_PORTS=%u", g_http_port);
    snprintf(g_servers_env, sizeof g_servers_env,
             "KX_MCP_SERVERS={"
             "\"everything\": {\"command\": \"node\", \"args\": [\"%s\", \"stdio\"]},"
             "\"http\": {\"type\": \"http\", \"url\": \"http://127.0.0.1:%u/mcp\"},"
             "\"sse\": {\"type\": \"sse\", \"url\": \"http://127.0.0.1:%u/sse\"},"
             "\"crash\": {\"command\": \"node\", \"args\": [\"%s\", \"crash-mid-call\"]},"
             "\"garbage\": {\"command\": \"node\", \"args\": [\"%s\", \"garbage\"]},"
             "\"silent\": {\"command\": \"node\", \"args\": [\"%s\", \"silent-init\"]},"
             "\"kinds\": {\"command\": \"node\", \"args\": [\"%s\", \"kinds\"]},"
             "\"old\": {\"command\": \"node\", \"args\": [\"%s\", \"old-version\"]},"
             "\"bad\": {\"command\": \"node\", \"args\": [\"%s\", \"bad-version\"]},"
             "\"paged\": {\"command\": \"node\", \"args\": [\"%s\", \"paged\"]},"
             "\"endless\": {\"command\": \"node\", \"args\": [\"%s\", \"endless-pages\"]},"
             "\"flood\": {\"command\": \"node\", \"args\": [\"%s\", \"stderr-flood\"]},"
             "\"biglist\": {\"command\": \"node\", \"args\": [\"%s\", \"big-list\"]},"
             "\"bare-probe\": {\"command\": \"node\", \"args\": [\"%s\"]},"
             "\"notify\": {\"type\": \"http\", \"url\": \"http://127.0.0.1:%u/mcp\"},"
             "\"noget\": {\"type\": \"http\", \"url\": \"http://127.0.0.1:%u/mcp\"}}",
             NM, g_http_port, g_sse_port, FAKE, FAKE, FAKE, FAKE, FAKE, FAKE, FAKE, FAKE, FAKE,
             FAKE, PROBE, g_notify_port, g_noget_port);
    if (start_proxy("mcp-proxy-a.log", &g_proxy) != KX_OK)
        return -1;
    if (kx_bus_connect(g_nats.url, "it-mcpcall", &g_bus) != KX_OK)
        return -1;
    for (int i = 0; i < 500 && !kx_bus_connected(g_bus); i++)
        usleep(10000);
    return proxy_ready() ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    kx_bus_close(g_bus, 1000);
    int status = g_proxy > 0 ? kx_th_kill(g_proxy) : 0;
    if (g_http > 0)
        kx_th_kill(g_http);
    if (g_sse > 0)
        kx_th_kill(g_sse);
    if (g_notify > 0)
        kx_th_kill(g_notify);
    if (g_noget > 0)
        kx_th_kill(g_noget);
    kx_th_nats_stop(&g_nats);
    if (g_pg.port != 0)
        kx_th_pg_stop(&g_pg);
    if (status != 0)
        fprintf(stderr, "mcp-proxy exited with status %d on SIGTERM (log %s)\n", status, g_log);
    kx_th_rmrf(g_dir);
    free(g_dir);
    return status == 0 ? 0 : -1;
}

/* Sends a request whose Kx-Deadline is deadline_ms from now and waits up to wait_ms for the
 * reply (longer than the deadline, to see that the proxy answers by the deadline). */
static natsMsg *request(const char *subject, const ProtobufCMessage *msg, int64_t deadline_ms,
                        int64_t wait_ms, double *took_ms)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    if (kx_pb_pack(msg, &buf, &len) != KX_OK)
        return NULL;
    natsMsg *m = NULL, *reply = NULL;
    natsMsg_Create(&m, subject, NULL, (const char *)buf, (int)len);
    free(buf);
    kx_bus_meta meta;
    kx_bus_meta_init(&meta, kx_deadline_in(deadline_ms), NULL);
    kx_bus_meta_write(m, &meta);
    int64_t t0 = kx_mono_us();
    natsStatus s = natsConnection_RequestMsg(&reply, kx_bus_conn(g_bus), m, wait_ms);
    if (took_ms)
        *took_ms = (double)(kx_mono_us() - t0) / 1000.0;
    natsMsg_Destroy(m);
    return s == NATS_OK ? reply : NULL;
}

static const char *g_account; /* McpCallRequest.account_id of the next calls ("" if NULL) */

static Kx__V1__McpCallReply *call_full(const char *server, const char *server_json,
                                       const char *call_id, const char *tool, const char *args,
                                       const char *progress, int64_t deadline_ms, double *took_ms)
{
    Kx__V1__McpCallRequest req = KX__V1__MCP_CALL_REQUEST__INIT;
    req.call_id = (char *)call_id;
    req.server = (char *)(server ? server : "");
    req.server_json = (char *)(server_json ? server_json : "");
    req.custom = true;
    req.tool = (char *)tool;
    req.arguments_json = (char *)args;
    req.progress_subject = (char *)(progress ? progress : "");
    req.account_id = (char *)(g_account ? g_account : "");
    natsMsg *reply =
        request(KX_SUBJ_MCP_CALL, &req.base, deadline_ms, deadline_ms + 3000, took_ms);
    if (reply == NULL)
        return NULL;
    Kx__V1__McpCallReply *r =
        kx_pb_unpack(&kx__v1__mcp_call_reply__descriptor, natsMsg_GetData(reply),
                     (size_t)natsMsg_GetDataLength(reply));
    natsMsg_Destroy(reply);
    return r;
}

static Kx__V1__McpCallReply *call(const char *server, const char *tool, const char *args)
{
    static int n;
    char id[32];
    snprintf(id, sizeof id, "c-%d", ++n);
    return call_full(server, NULL, id, tool, args, NULL, 15000, NULL);
}

/* The text the agent sees: output_json is a JSON string. */
static char *output_text(const Kx__V1__McpCallReply *r)
{
    json_t *j = json_loads(r->result->output_json, JSON_DECODE_ANY, NULL);
    char *s = strdup(json_is_string(j) ? json_string_value(j) : "");
    json_decref(j);
    return s;
}

static void assert_call_ok(const char *server, const char *tool, const char *args,
                           const char *want)
{
    Kx__V1__McpCallReply *r = call(server, tool, args);
    assert_non_null(r);
    if (r->error != NULL)
        fail_msg("%s/%s failed: %s: %s", server, tool, r->error->code, r->error->message);
    assert_false(r->is_error);
    assert_non_null(r->result);
    assert_true(r->result->success);
    char *text = output_text(r);
    if (strstr(text, want) == NULL)
        fail_msg("%s/%s: want \"%s\" in \"%s\"", server, tool, want, text);
    assert_non_null(strstr(r->content_json, "\"type\":\"text\""));
    free(text);
    kx_pb_free(r);
}

static void test_echo_and_sum_over_every_transport(void **state)
{
    (void)state;
    const char *servers[] = {"everything", "http", "sse"};
    for (size_t i = 0; i < 3; i++) {
        assert_call_ok(servers[i], "echo", "{\"message\": \"hi there\"}", "hi there");
        assert_call_ok(servers[i], "get-sum", "{\"a\": 1, \"b\": 2}", "3");
    }
}

/* A tool the server does not have: a JSON-RPC error from the server becomes a failed result
 * the agent can read, and the session stays usable. */
static void test_unknown_tool_is_a_tool_error(void **state)
{
    (void)state;
    Kx__V1__McpCallReply *r = call("everything", "no-such-tool", "{}");
    assert_non_null(r);
    assert_null(r->error);
    assert_true(r->is_error);
    assert_false(r->result->success);
    char *text = output_text(r);
    assert_non_null(strstr(text, "no-such-tool"));
    free(text);
    kx_pb_free(r);
    assert_call_ok("everything", "echo", "{\"message\": \"still here\"}", "still here");
}

static void test_bad_requests(void **state)
{
    (void)state;
    Kx__V1__McpCallReply *r = call("everything", "echo", "[1, 2]");
    assert_non_null(r);
    assert_non_null(r->error);
    assert_string_equal(r->error->code, "invalid_argument");
    assert_non_null(strstr(r->error->message, "arguments_json"));
    kx_pb_free(r);
    r = call("nope", "echo", "{}");
    assert_non_null(r);
    assert_string_equal(r->error->code, "not_found");
    kx_pb_free(r);
    r = call_full("everything", NULL, "", "echo", "{}", NULL, 5000, NULL);
    assert_non_null(r);
    assert_string_equal(r->error->code, "invalid_argument");
    assert_non_null(strstr(r->error->message, "call_id"));
    kx_pb_free(r);
}

typedef struct progress_seen {
    int n;
    double last, total;
} progress_seen;

static void on_progress_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    (void)nc;
    (void)sub;
    progress_seen *p = closure;
    Kx__V1__McpCallProgress *ev =
        kx_pb_unpack(&kx__v1__mcp_call_progress__descriptor, natsMsg_GetData(msg),
                     (size_t)natsMsg_GetDataLength(msg));
    if (ev != NULL) {
        p->n++;
        p->last = ev->progress;
        p->total = ev->total;
    }
    kx_pb_free(ev);
    natsMsg_Destroy(msg);
}

/* trigger-long-running-operation sends notifications/progress per step: they reach the
 * progress subject, on stdio and on Streamable HTTP (SSE response stream). */
static void test_progress_is_passed_on(void **state)
{
    (void)state;
    const char *servers[] = {"everything", "http"};
    for (size_t i = 0; i < 2; i++) {
        progress_seen seen = {0};
        natsSubscription *sub = NULL;
        char subject[64];
        snprintf(subject, sizeof subject, "it.progress.%zu", i);
        assert_int_equal(natsConnection_Subscribe(&sub, kx_bus_conn(g_bus), subject,
                                                  on_progress_msg, &seen),
                         NATS_OK);
        natsConnection_Flush(kx_bus_conn(g_bus));
        char id[32];
        snprintf(id, sizeof id, "progress-%zu", i);
        Kx__V1__McpCallReply *r =
            call_full(servers[i], NULL, id, "trigger-long-running-operation",
                      "{\"duration\": 0.6, \"steps\": 3}", subject, 15000, NULL);
        assert_non_null(r);
        if (r->error)
            fail_msg("%s: %s: %s", servers[i], r->error->code, r->error->message);
        char *text = output_text(r);
        assert_non_null(strstr(text, "Long running operation completed"));
        free(text);
        kx_pb_free(r);
        for (int k = 0; k < 100 && seen.n < 3; k++)
            usleep(20000);
        natsSubscription_Unsubscribe(sub);
        natsSubscription_Destroy(sub);
        if (seen.n != 3)
            fail_msg("%s: %d progress events, want 3", servers[i], seen.n);
        assert_true(seen.last == 3.0);
        assert_true(seen.total == 3.0);
    }
}

typedef struct async_call {
    Kx__V1__McpCallReply *reply;
    double took_ms;
    const char *server;
    const char *id;
    const char *args;
    int64_t deadline_ms;
} async_call;

static void *call_thread(void *arg)
{
    async_call *a = arg;
    a->reply = call_full(a->server, NULL, a->id, "trigger-long-running-operation", a->args, NULL,
                         a->deadline_ms, &a->took_ms);
    return NULL;
}

/* A call cancelled mid-way over kx.mcp.cancel ends at once with "cancelled"; the server gets
 * notifications/cancelled and the session stays usable. */
static void test_cancel_mid_call(void **state)
{
    (void)state;
    const char *servers[] = {"everything", "http"};
    for (size_t i = 0; i < 2; i++) {
        char id[32];
        snprintf(id, sizeof id, "cancel-me-%zu", i);
        async_call a = {.server = servers[i],
                        .id = id,
                        .args = "{\"duration\": 20, \"steps\": 20}",
                        .deadline_ms = 25000};
        pthread_t th;
        assert_int_equal(pthread_create(&th, NULL, call_thread, &a), 0);
        usleep(700000); /* the call is at the server */
        Kx__V1__McpCancelRequest creq = KX__V1__MCP_CANCEL_REQUEST__INIT;
        creq.call_id = id;
        natsMsg *rep = request(KX_SUBJ_MCP_CANCEL, &creq.base, 2000, 2000, NULL);
        assert_non_null(rep);
        Kx__V1__McpCancelReply *cr =
            kx_pb_unpack(&kx__v1__mcp_cancel_reply__descriptor, natsMsg_GetData(rep),
                         (size_t)natsMsg_GetDataLength(rep));
        natsMsg_Destroy(rep);
        assert_non_null(cr);
        assert_true(cr->cancelled);
        kx_pb_free(cr);
        pthread_join(th, NULL);
        assert_non_null(a.reply);
        assert_non_null(a.reply->error);
        assert_string_equal(a.reply->error->code, "cancelled");
        assert_true(a.took_ms < 5000);
        kx_pb_free(a.reply);
        assert_call_ok(servers[i], "echo", "{\"message\": \"after cancel\"}", "after cancel");
    }
    /* A cancel for a call nobody holds gets no answer (no replica claims it). */
    Kx__V1__McpCancelRequest creq = KX__V1__MCP_CANCEL_REQUEST__INIT;
    creq.call_id = "never-was";
    assert_null(request(KX_SUBJ_MCP_CANCEL, &creq.base, 500, 500, NULL));
}

/* A call past its deadline is answered deadline_exceeded (timed_out) by the deadline, not
 * after it; the proxy keeps working. */
static void test_call_past_deadline(void **state)
{
    (void)state;
    async_call a = {.server = "everything",
                    .id = "late-1",
                    .args = "{\"duration\": 10, \"steps\": 5}",
                    .deadline_ms = 1500};
    call_thread(&a);
    assert_non_null(a.reply);
    assert_non_null(a.reply->error);
    assert_string_equal(a.reply->error->code, "deadline_exceeded");
    assert_true(a.reply->result->timed_out);
    fprintf(stderr, "a 1500 ms deadline was answered after %.0f ms\n", a.took_ms);
    /* The proxy answers 100 ms before the deadline; on a loaded 2-core CI machine scheduling
     * can eat that margin, so allow a second more (the caller here waits 3 s longer). */
    assert_true(a.took_ms < 2500);
    assert_true(a.took_ms > 1000);
    kx_pb_free(a.reply);
    assert_call_ok("everything", "echo", "{\"message\": \"after deadline\"}", "after deadline");
}

/* A server that exits mid-call: the call fails with a clear message; the next call starts the
 * server again. */
static void test_crash_mid_call(void **state)
{
    (void)state;
    Kx__V1__McpCallReply *r = call("crash", "boom", "{}");
    assert_non_null(r);
    assert_non_null(r->error);
    assert_string_equal(r->error->code, "unavailable");
    assert_non_null(strstr(r->error->message, "exited (status 3)"));
    assert_non_null(strstr(r->error->message, "outcome is unknown"));
    kx_pb_free(r);
    r = call("crash", "boom", "{}"); /* restarted, and crashes again */
    assert_non_null(r);
    assert_non_null(r->error);
    assert_non_null(strstr(r->error->message, "exited (status 3)"));
    kx_pb_free(r);
    /* The third failure in a row opens the circuit: the next call fails fast. */
    r = call("crash", "boom", "{}");
    kx_pb_free(r);
    double took = 0;
    r = call_full("crash", NULL, "fast-fail", "boom", "{}", NULL, 5000, &took);
    assert_non_null(r);
    assert_non_null(r->error);
    assert_non_null(strstr(r->error->message, "circuit open"));
    assert_true(took < 500);
    kx_pb_free(r);
}

static void test_garbage_on_stdout_is_skipped(void **state)
{
    (void)state;
    assert_call_ok("garbage", "echo", "{\"message\": \"through the noise\"}", "through the noise");
}

static void test_server_that_never_initializes(void **state)
{
    (void)state;
    double took = 0;
    Kx__V1__McpCallReply *r = call_full("silent", NULL, "silent-1", "x", "{}", NULL, 2000, &took);
    assert_non_null(r);
    assert_non_null(r->error);
    assert_string_equal(r->error->code, "deadline_exceeded");
    assert_non_null(strstr(r->error->message, "initialize"));
    assert_true(took < 2000);
    kx_pb_free(r);
}

static void test_every_content_kind(void **state)
{
    (void)state;
    Kx__V1__McpCallReply *r = call("kinds", "kinds", "{}");
    assert_non_null(r);
    assert_null(r->error);
    char *text = output_text(r);
    const char *want[] = {"plain text",
                          "[image: image/png, 12 bytes base64]",
                          "[audio: audio/wav, 8 bytes base64]",
                          "[resource test://doc]\nembedded text",
                          "[resource test://bin (application/octet-stream): 4 bytes base64]",
                          "[resource link: test://link a link]"};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        if (strstr(text, want[i]) == NULL)
            fail_msg("want \"%s\" in \"%s\"", want[i], text);
    free(text);
    assert_string_equal(r->structured_json, "{\"answer\":42}");
    assert_non_null(strstr(r->content_json, "iVBORw0KGgo="));
    assert_false(r->truncated);
    kx_pb_free(r);
}

/* NUL characters (\u0000) in a server's answer: jansson refuses them by default, the answer
 * was dropped as "not usable JSON-RPC" and the call waited for its deadline; Postgres would
 * refuse them in the run's messages too. They arrive as U+FFFD, at once. */
static void test_nul_in_an_answer(void **state)
{
    (void)state;
    double took = 0;
    Kx__V1__McpCallReply *r = call_full("kinds", NULL, "nul-1", "nul", "{}", NULL, 5000, &took);
    assert_non_null(r);
    if (r->error != NULL)
        fail_msg("nul: %s: %s (after %.0f ms)", r->error->code, r->error->message, took);
    char *text = output_text(r);
    assert_string_equal(text,
                        "a\xEF\xBF\xBD"
                        "b");
    free(text);
    assert_string_equal(r->structured_json,
                        "{\"k\":\"x\xEF\xBF\xBD\",\"k\xEF\xBF\xBD\":\"\\\\u0000\"}");
    assert_null(strstr(r->content_json, "\\u0000"));
    assert_true(took < 2000);
    kx_pb_free(r);
}

/* A 3 MB result cannot travel on a 1 MB bus: it is cut, with a note, and the reply fits. */
static void test_result_larger_than_max_payload(void **state)
{
    (void)state;
    Kx__V1__McpCallReply *r = call("kinds", "big", "{\"bytes\": 3000000}");
    assert_non_null(r);
    assert_null(r->error);
    assert_true(r->truncated);
    char *text = output_text(r);
    assert_true(strlen(text) < 1024 * 1024);
    assert_true(strlen(text) > 100000);
    assert_non_null(strstr(text, "[truncated by mcp-proxy:"));
    free(text);
    kx_pb_free(r);
}

/* A text that grows when it is written as a JSON string: output_json is the text escaped, so
 * 500 KB of quotes became 1 MB and 500 KB of control characters 3 MB — over max_payload, the
 * reply could not be sent and the caller waited for its deadline. The text's budget counts it
 * escaped: the reply comes at once, cut, with a note. */
static void test_result_that_grows_when_escaped(void **state)
{
    (void)state;
    const char *args[] = {"{\"bytes\": 2000000, \"char\": \"\\\"\"}",
                          "{\"bytes\": 1500000, \"char\": \"\\u0001\"}",
                          "{\"bytes\": 2000000, \"char\": \"\\n\"}"};
    for (size_t i = 0; i < sizeof args / sizeof args[0]; i++) {
        char id[32];
        snprintf(id, sizeof id, "escaped-%zu", i);
        double took = 0;
        Kx__V1__McpCallReply *r = call_full("kinds", NULL, id, "big", args[i], NULL, 6000, &took);
        if (r == NULL)
            fail_msg("big %s: no reply within %.0f ms", args[i], took);
        if (r->error != NULL)
            fail_msg("big %s: %s: %s", args[i], r->error->code, r->error->message);
        assert_true(r->truncated);
        assert_true(strlen(r->result->output_json) < 1024 * 1024 - 16384);
        char *text = output_text(r);
        assert_true(strlen(text) > 50000);
        assert_non_null(strstr(text, "[truncated by mcp-proxy:"));
        free(text);
        assert_true(took < 5000);
        kx_pb_free(r);
    }
}

static long file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

/* A server's stderr went to the proxy's log line by line without a limit: a server writing
 * 20 MB to it wrote 20 MB (more, as JSON) into the log — an agent's server in a loop fills the
 * operator's disk. Its lines are now logged at a bounded rate, the rest counted. */
static void test_stderr_flood_is_not_logged_whole(void **state)
{
    (void)state;
    long before = file_size(g_log);
    assert_call_ok("flood", "echo", "{\"message\": \"amid the noise\"}", "amid the noise");
    /* the flood runs after initialize; wait until the log stops growing */
    long last = -1, now = file_size(g_log);
    for (int i = 0; i < 100 && now != last; i++) {
        usleep(200000);
        last = now;
        now = file_size(g_log);
    }
    assert_call_ok("flood", "echo", "{\"message\": \"after the noise\"}", "after the noise");
    fprintf(stderr, "the proxy's log grew by %ld bytes during the flood\n", now - before);
    assert_true(now - before < 2 * 1024 * 1024);
}

static void test_protocol_versions(void **state)
{
    (void)state;
    assert_call_ok("old", "echo", "{\"message\": \"from 2024\"}", "from 2024");
    Kx__V1__McpCallReply *r = call("bad", "echo", "{}");
    assert_non_null(r);
    assert_non_null(r->error);
    assert_string_equal(r->error->code, "unavailable");
    assert_non_null(strstr(r->error->message, "1999-01-01"));
    kx_pb_free(r);
}

/* kx.mcp.agent_tools for account (NULL: none) with a deadline of deadline_ms; NULL without a
 * reply. */
static Kx__V1__McpAgentToolsReply *agent_tools_as(const char *account, const char *custom,
                                                  const char *configured, char **reserved,
                                                  size_t n_reserved, int64_t deadline_ms)
{
    Kx__V1__McpAgentToolsRequest req = KX__V1__MCP_AGENT_TOOLS_REQUEST__INIT;
    req.custom_mcps_json = (char *)(custom ? custom : "");
    req.configured_mcps_json = (char *)(configured ? configured : "");
    req.account_id = (char *)(account ? account : "");
    req.reserved_names = reserved;
    req.n_reserved_names = n_reserved;
    natsMsg *reply =
        request(KX_SUBJ_MCP_AGENT_TOOLS, &req.base, deadline_ms, deadline_ms + 3000, NULL);
    if (reply == NULL)
        return NULL;
    Kx__V1__McpAgentToolsReply *r =
        kx_pb_unpack(&kx__v1__mcp_agent_tools_reply__descriptor, natsMsg_GetData(reply),
                     (size_t)natsMsg_GetDataLength(reply));
    natsMsg_Destroy(reply);
    return r;
}

static Kx__V1__McpAgentToolsReply *agent_tools(const char *custom, const char *configured,
                                               char **reserved, size_t n_reserved)
{
    return agent_tools_as(NULL, custom, configured, reserved, n_reserved, 20000);
}

static const Kx__V1__McpAgentTool *agent_tool(const Kx__V1__McpAgentToolsReply *r,
                                              const char *name)
{
    for (size_t i = 0; i < r->n_tools; i++)
        if (strcmp(r->tools[i]->name, name) == 0)
            return r->tools[i];
    return NULL;
}

static const Kx__V1__McpServerStatus *status_of(const Kx__V1__McpAgentToolsReply *r,
                                                const char *server)
{
    for (size_t i = 0; i < r->n_servers; i++)
        if (strcmp(r->servers[i]->server, server) == 0)
            return r->servers[i];
    return NULL;
}

static char g_custom[2048];

/* An agent's custom_mcps: model-visible names as Kortix derives them, enabledTools, names
 * made unique against built-ins, the description suffix; an http entry aimed at another
 * loopback port is refused by the guard. */
static void test_agent_tools_from_kortix_config(void **state)
{
    (void)state;
    snprintf(g_custom, sizeof g_custom,
             "[{\"name\": \"Everything\", \"type\": \"http\", \"config\": {\"url\": "
             "\"http://127.0.0.1:%u/mcp\"}, \"enabledTools\": []},"
             " {\"name\": \"My Srv\", \"customType\": \"http\", \"config\": {\"url\": "
             "\"http://127.0.0.1:%u/mcp\", \"headers\": {\"X-Test\": \"1\"}}, "
             "\"enabledTools\": [\"get-sum\"]},"
             " {\"name\": \"nats\", \"type\": \"http\", \"config\": {\"url\": "
             "\"http://127.0.0.1:%u/\"}}]",
             g_http_port, g_http_port, g_nats.port);
    char *reserved[] = {"echo"};
    Kx__V1__McpAgentToolsReply *r = agent_tools(g_custom, NULL, reserved, 1);
    assert_non_null(r);
    assert_null(r->error);
    assert_int_equal(r->n_servers, 3);
    const Kx__V1__McpServerStatus *st = status_of(r, "custom_http_everything");
    assert_non_null(st);
    assert_null(st->error);
    assert_true(st->tools >= 5);
    st = status_of(r, "custom_http_my_srv");
    assert_non_null(st);
    assert_null(st->error);
    assert_int_equal(st->tools, 1);
    st = status_of(r, "custom_http_nats");
    assert_non_null(st);
    assert_non_null(st->error);
    assert_non_null(strstr(st->error->message, "loopback"));

    /* "echo" is a built-in: the MCP tool becomes echo_2, never overwriting it. */
    assert_null(agent_tool(r, "echo"));
    const Kx__V1__McpAgentTool *t = agent_tool(r, "echo_2");
    assert_non_null(t);
    assert_string_equal(t->tool, "echo");
    assert_string_equal(t->server, "custom_http_everything");
    assert_non_null(strstr(t->description, " (MCP Server: Everything)"));
    assert_non_null(agent_tool(r, "get_sum"));                    /* one-word server: own name */
    const Kx__V1__McpAgentTool *s = agent_tool(r, "srv_get_sum"); /* "My Srv": Kortix's */
    assert_non_null(s);
    assert_string_equal(s->tool, "get-sum");
    assert_null(agent_tool(r, "srv_echo")); /* not in enabledTools */

    /* The tool is called with the server entry the reply handed back. */
    double took = 0;
    Kx__V1__McpCallReply *c = call_full(NULL, s->server_json, "agent-1", "get-sum",
                                        "{\"a\": 20, \"b\": 22}", NULL, 10000, &took);
    assert_non_null(c);
    if (c->error)
        fail_msg("%s: %s", c->error->code, c->error->message);
    char *text = output_text(c);
    assert_non_null(strstr(text, "42"));
    free(text);
    kx_pb_free(c);
    /* ... and only the enabled tools. */
    c = call_full(NULL, s->server_json, "agent-2", "echo", "{\"message\": \"x\"}", NULL, 10000,
                  NULL);
    assert_non_null(c);
    assert_non_null(c->error);
    assert_non_null(strstr(c->error->message, "enabledTools"));
    kx_pb_free(c);
    kx_pb_free(r);
}

/* The tool lists are in the shared KV cache: a second replica, which never talked to the
 * server, answers from it. */
static void test_cache_shared_by_two_replicas(void **state)
{
    (void)state;
    Kx__V1__McpAgentToolsReply *r = agent_tools(g_custom, NULL, NULL, 0);
    assert_non_null(r);
    const Kx__V1__McpServerStatus *st = status_of(r, "custom_http_everything");
    assert_non_null(st);
    assert_true(st->cached); /* listed (and cached) by the previous test */
    kx_pb_free(r);

    /* Replica B replaces A. */
    assert_int_equal(kx_th_kill(g_proxy), 0);
    g_proxy = 0;
    assert_int_equal(start_proxy("mcp-proxy-b.log", &g_proxy), KX_OK);
    assert_true(proxy_ready());
    r = agent_tools(g_custom, NULL, NULL, 0);
    assert_non_null(r);
    st = status_of(r, "custom_http_everything");
    assert_non_null(st);
    assert_null(st->error);
    assert_true(st->cached);
    assert_true(st->tools >= 5);
    kx_pb_free(r);
}

/* kx.mcp.list of the operator server called server, with a deadline of deadline_ms; NULL
 * without a reply (*took_ms: how long the wait was, may be NULL). */
static Kx__V1__McpListToolsReply *list_tools(const char *server, int64_t deadline_ms,
                                             double *took_ms)
{
    Kx__V1__McpListToolsRequest req = KX__V1__MCP_LIST_TOOLS_REQUEST__INIT;
    req.server = (char *)server;
    natsMsg *reply =
        request(KX_SUBJ_MCP_LIST, &req.base, deadline_ms, deadline_ms + 2000, took_ms);
    if (reply == NULL)
        return NULL;
    Kx__V1__McpListToolsReply *r =
        kx_pb_unpack(&kx__v1__mcp_list_tools_reply__descriptor, natsMsg_GetData(reply),
                     (size_t)natsMsg_GetDataLength(reply));
    natsMsg_Destroy(reply);
    return r;
}

static size_t list_count(const char *server)
{
    Kx__V1__McpListToolsReply *r = list_tools(server, 10000, NULL);
    assert_non_null(r);
    assert_null(r->error);
    size_t n = r->n_tools;
    kx_pb_free(r);
    return n;
}

/* notifications/tools/list_changed drops the cached list: the next list asks the server. */
static void test_list_changed_invalidates_the_cache(void **state)
{
    (void)state;
    assert_int_equal(list_count("kinds"), 4);
    assert_int_equal(list_count("kinds"), 4); /* cached: the server is not asked */
    assert_call_ok("kinds", "change", "{}", "changed");
    size_t n = 0;
    for (int i = 0; i < 50 && (n = list_count("kinds")) == 4; i++)
        usleep(20000);
    assert_int_equal(n, 5); /* the server's second list has "added" */
}

/* A Streamable HTTP server (the SDK's) changes its tool list outside any request: the
 * notification comes on the GET stream the proxy opened after initialize, and drops the cached
 * list. A server answering that GET with 405 still works, and is not asked again. */
static void test_list_changed_over_streamable_http(void **state)
{
    (void)state;
    assert_int_equal(list_count("notify"), 2);
    assert_int_equal(list_count("notify"), 2); /* cached */
    assert_call_ok("notify", "add-tool", "{}", "a tool will be added");
    size_t n = 0;
    for (int i = 0; i < 100 && (n = list_count("notify")) == 2; i++)
        usleep(50000);
    assert_int_equal(n, 3); /* "added-1", seen only through the GET stream */

    assert_int_equal(list_count("noget"), 2);
    assert_call_ok("noget", "add-tool", "{}", "a tool will be added");
    for (int i = 0; i < 100; i++) {
        Kx__V1__McpCallReply *r = call("noget", "stats", "{}");
        assert_non_null(r);
        char *text = output_text(r);
        bool one = strstr(text, "\"gets\":1") != NULL;
        free(text);
        kx_pb_free(r);
        if (one)
            break;
        usleep(50000);
    }
    usleep(3000 * 1000); /* longer than a re-open would wait */
    assert_call_ok("noget", "stats", "{}", "{\"gets\":1}");
}

/* The Streamable HTTP server restarts and forgets our session: the next call re-initializes
 * and succeeds (server-everything answers the stale session id with 400; the spec says 404). */
static void test_http_server_restart_reinitializes(void **state)
{
    (void)state;
    assert_call_ok("http", "echo", "{\"message\": \"before restart\"}", "before restart");
    kx_th_kill(g_http);
    g_http = 0;
    assert_int_equal(start_node_http("streamableHttp", g_http_port, &g_http), KX_OK);
    assert_call_ok("http", "echo", "{\"message\": \"after restart\"}", "after restart");
}

/* tools/list follows nextCursor across pages. */
static void test_tools_list_pagination(void **state)
{
    (void)state;
    assert_int_equal(list_count("paged"), 3);
}

/* The proxy's peak resident memory in MiB (VmHWM), or -1. */
static long proxy_peak_mib(void)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)g_proxy);
    FILE *f = fopen(path, "r");
    long kib = -1;
    while (f != NULL && fgets(line, sizeof line, f) != NULL)
        if (strncmp(line, "VmHWM:", 6) == 0)
            kib = strtol(line + 6, NULL, 10);
    if (f != NULL)
        fclose(f);
    return kib < 0 ? -1 : kib / 1024;
}

/* A server whose tools/list pages never end (each with a nextCursor) was collected up to
 * MCP_MAX_PAGES (1000) pages of up to 16 MiB each, all held in memory: ~1 GB of JSON here,
 * GiBs of the proxy's memory. The list now stops at MCP_MAX_LIST_BYTES of pages. */
static void test_endless_tools_list_is_bounded(void **state)
{
    (void)state;
    long before = proxy_peak_mib();
    Kx__V1__McpListToolsReply *r = list_tools("endless", 10000, NULL);
    assert_non_null(r);
    long after = proxy_peak_mib();
    fprintf(stderr, "endless list: %s: %s; proxy peak %ld MiB -> %ld MiB\n",
            r->error ? r->error->code : "ok", r->error ? r->error->message : "", before, after);
    assert_non_null(r->error);
    assert_string_equal(r->error->code, "internal");
    assert_non_null(strstr(r->error->message, "MiB of tools"));
    assert_true(after >= 0 && after < 300);
    kx_pb_free(r);
}

/* An operator server whose tools/list is larger than a bus message: the kx.mcp.list reply
 * could not be sent ("replying failed" in the log) and the caller waited for its deadline.
 * It is answered at once with an error saying so. */
static void test_list_larger_than_a_reply(void **state)
{
    (void)state;
    double took = 0;
    Kx__V1__McpListToolsReply *r = list_tools("biglist", 8000, &took);
    if (r == NULL)
        fail_msg("kx.mcp.list of a 2 MB tool list: no reply within %.0f ms", took);
    assert_non_null(r->error);
    assert_string_equal(r->error->code, "internal");
    assert_non_null(strstr(r->error->message, "more than a reply carries"));
    kx_pb_free(r);
}

/* The tool of server (a qualified name) called tool in an agent_tools reply, or NULL. */
static const Kx__V1__McpAgentTool *server_tool(const Kx__V1__McpAgentToolsReply *r,
                                               const char *server, const char *tool)
{
    for (size_t i = 0; i < r->n_tools; i++)
        if (strcmp(r->tools[i]->server, server) == 0 && strcmp(r->tools[i]->tool, tool) == 0)
            return r->tools[i];
    return NULL;
}

/* Lists custom (one stdio entry called name) and returns the reply once its server has
 * answered. A cold `npx` on a loaded 2-core machine can take longer than one request's 15 s
 * open limit (npm starts, checks the registry, then the server starts): a server still
 * starting is joined by the next request, at most three of them. */
static Kx__V1__McpAgentToolsReply *list_jailed(const char *custom, const char *server)
{
    for (int attempt = 0; attempt < 3; attempt++) {
        Kx__V1__McpAgentToolsReply *r = agent_tools(custom, NULL, NULL, 0);
        assert_non_null(r);
        assert_null(r->error);
        const Kx__V1__McpServerStatus *st = status_of(r, server);
        assert_non_null(st);
        if (st->error == NULL)
            return r;
        fprintf(stderr, "attempt %d: %s: %s\n", attempt + 1, server, st->error->message);
        kx_pb_free(r);
    }
    fail_msg("%s never listed its tools from its jail (log %s)", server, g_log);
    return NULL;
}

static void assert_echo_through(const Kx__V1__McpAgentToolsReply *r, const char *server,
                                const char *call_id)
{
    const Kx__V1__McpAgentTool *t = server_tool(r, server, "echo");
    assert_non_null(t);
    Kx__V1__McpCallReply *c = call_full(NULL, t->server_json, call_id, "echo",
                                        "{\"message\": \"through the jail\"}", NULL, 15000, NULL);
    assert_non_null(c);
    if (c->error)
        fail_msg("%s: %s", c->error->code, c->error->message);
    char *text = output_text(c);
    assert_non_null(strstr(text, "through the jail"));
    free(text);
    kx_pb_free(c);
}

/* An agent's stdio servers run in the jail: server-everything started with node and with
 * `npx -y` (found in the operator's read-only /node_modules, no download) lists its tools and
 * answers echo. Before the jail existed these were refused. */
static void test_user_stdio_server_runs_jailed(void **state)
{
    (void)state;
    /* Replica C, whose servers may take 30 s to initialize (npx under load), replaces B. */
    assert_int_equal(kx_th_kill(g_proxy), 0);
    g_proxy = 0;
    g_timeout_env = "KX_MCP_TIMEOUT_S=30";
    assert_int_equal(start_proxy("mcp-proxy-c.log", &g_proxy), KX_OK);
    assert_true(proxy_ready());
    const char *custom =
        "[{\"name\": \"jailed\", \"type\": \"json\", \"config\": {\"command\": \"node\", "
        "\"args\": [\"/node_modules/@modelcontextprotocol/server-everything/dist/index.js\", "
        "\"stdio\"]}}]";
    Kx__V1__McpAgentToolsReply *r = list_jailed(custom, "custom_json_jailed");
    assert_true(status_of(r, "custom_json_jailed")->tools >= 5);
    assert_echo_through(r, "custom_json_jailed", "jail-1");
    kx_pb_free(r);

    custom = "[{\"name\": \"npx\", \"type\": \"json\", \"config\": {\"command\": \"npx\", "
             "\"args\": [\"-y\", \"@modelcontextprotocol/server-everything\", \"stdio\"]}, "
             "\"enabledTools\": [\"echo\"]}]";
    r = list_jailed(custom, "custom_json_npx");
    assert_int_equal(status_of(r, "custom_json_npx")->tools, 1);
    assert_echo_through(r, "custom_json_npx", "jail-2");
    kx_pb_free(r);
}

/* The probe's report for the file and ports, from server (operator) or server_json. */
static json_t *run_probe(const char *server, const char *server_json, const char *call_id)
{
    char args[1024];
    snprintf(args, sizeof args, "{\"file\": \"%s\", \"ports\": [%u, %u, %u]}", g_secret_path,
             g_nats.port, g_pg.port, g_http_port);
    Kx__V1__McpCallReply *c =
        call_full(server, server_json, call_id, "probe", args, NULL, 20000, NULL);
    assert_non_null(c);
    if (c->error)
        fail_msg("%s: %s", c->error->code, c->error->message);
    char *text = output_text(c);
    json_t *report = json_loads(text, 0, NULL);
    if (report == NULL)
        fail_msg("not a report: %s", text);
    free(text);
    kx_pb_free(c);
    return report;
}

static const char *connect_result(json_t *report, uint16_t port)
{
    char key[8];
    snprintf(key, sizeof key, "%u", port);
    const char *v = json_string_value(json_object_get(json_object_get(report, "connect"), key));
    return v ? v : "(missing)";
}

/* True when some process command line in the report contains what. */
static bool sees_process(json_t *report, const char *what)
{
    size_t i;
    json_t *cmd;
    json_array_foreach(json_object_get(report, "procs"), i, cmd)
    {
        if (strstr(json_string_value(cmd), what) != NULL)
            return true;
    }
    return false;
}

/* The shared tool-list cache was keyed by a 64-bit FNV-1a of the config: two entries differing
 * only in an env value (K below, found by a two-minute search) shared a key, so the tool list
 * of the first listed was served for the second — anyone could craft a config to plant tool
 * descriptions in another account's agents. The key is SHA-256 now. */
static void test_cache_keys_cannot_be_forged(void **state)
{
    (void)state;
    const char *values[] = {"f1ad8aaaaee3b361", "42418c43b7565663"};
    for (int i = 0; i < 2; i++) {
        char custom[400], want[32];
        snprintf(custom, sizeof custom,
                 "[{\"name\": \"envdesc\", \"type\": \"json\", \"config\": {\"command\": "
                 "\"node\", \"args\": [\"/fakes/misbehave.js\", \"env-desc\"], \"env\": {\"K\": "
                 "\"%s\"}}}]",
                 values[i]);
        Kx__V1__McpAgentToolsReply *r = list_jailed(custom, "custom_json_envdesc");
        const Kx__V1__McpAgentTool *t = server_tool(r, "custom_json_envdesc", "echo");
        assert_non_null(t);
        snprintf(want, sizeof want, "K=%s", values[i]);
        if (strstr(t->description, want) == NULL)
            fail_msg("the entry with K=%s got the tool list of another: \"%s\"", values[i],
                     t->description);
        kx_pb_free(r);
    }
}

static int count_started(const char *custom, const char *account);

/* Every stdio entry of an agent's config was started at once, in a jail of its own: a config
 * of 256 entries (varying an env value makes each one new) started 256 processes of up to
 * KX_MCP_JAIL_MAX_MEMORY_MB each, and the next request as many more. An account now runs at
 * most KX_MCP_JAIL_MAX_SERVERS (6 here) at a time; the others are refused at once, saying
 * why. A request without an account is not counted (one bound for all of those would refuse
 * everyone's; the runner's listing names the run's account). The servers here never answer initialize. */
static void test_an_account_runs_a_bounded_number_of_servers(void **state)
{
    (void)state;
    char custom[2048];
    size_t off = (size_t)snprintf(custom, sizeof custom, "[");
    for (int i = 0; i < 8; i++)
        off += (size_t)snprintf(custom + off, sizeof custom - off,
                                "%s{\"name\": \"mute%d\", \"type\": \"json\", \"config\": "
                                "{\"command\": \"sleep\", \"args\": [\"60\"]}}",
                                i ? ", " : "", i);
    snprintf(custom + off, sizeof custom - off, "]");
    /* Without an account nothing is counted: all 8 start. */
    assert_int_equal(count_started(custom, ""), 8);
    assert_int_equal(count_started(custom, "0c0c0c0c-0000-4000-8000-00000000000c"), 6);
}

/* How many of custom's servers agent_tools for account started (the others were refused for
 * the bound); every one of them fails (they never answer). */
static int count_started(const char *custom, const char *account)
{
    Kx__V1__McpAgentToolsReply *r = agent_tools_as(account, custom, NULL, NULL, 0, 3000);
    assert_non_null(r);
    assert_null(r->error);
    int refused = 0, started = 0;
    for (size_t i = 0; i < r->n_servers; i++) {
        const Kx__V1__Error *e = r->servers[i]->error;
        assert_non_null(e);
        fprintf(stderr, "%s: %s: %s\n", r->servers[i]->server, e->code, e->message);
        if (strstr(e->message, "at most 6") != NULL)
            refused++;
        else
            started++;
    }
    kx_pb_free(r);
    assert_int_equal(started + refused, 8);
    return started;
}

/* The text an agent's server answers to tool with args, called by account. */
static char *call_as(const char *account, const char *server_json, const char *call_id,
                     const char *tool, const char *args)
{
    g_account = account;
    Kx__V1__McpCallReply *r = call_full(NULL, server_json, call_id, tool, args, NULL, 20000, NULL);
    g_account = NULL;
    assert_non_null(r);
    if (r->error)
        fail_msg("%s as %s: %s: %s", tool, account, r->error->code, r->error->message);
    char *text = output_text(r);
    kx_pb_free(r);
    return text;
}

/* Two accounts whose agents have the same stdio server entry (a popular server, no env) were
 * given one pooled process: what one account's calls left in it (a memory server's graph, files
 * in its /tmp) was the other's to read. An agent's server is now pooled per account. */
static void test_agent_servers_are_per_account(void **state)
{
    (void)state;
    const char *entry = "{\"name\": \"mem\", \"type\": \"json\", \"config\": {\"command\": "
                        "\"node\", \"args\": [\"/fakes/misbehave.js\", \"stateful\"]}}";
    const char *a = "0a0a0a0a-0000-4000-8000-00000000000a";
    const char *b = "0b0b0b0b-0000-4000-8000-00000000000b";
    char *t = call_as(a, entry, "mem-1", "remember", "{\"text\": \"the secret of A\"}");
    assert_string_equal(t, "kept");
    free(t);
    t = call_as(b, entry, "mem-2", "recall", "{}");
    assert_string_equal(t, "(nothing)");
    free(t);
    t = call_as(a, entry, "mem-3", "recall", "{}");
    assert_string_equal(t, "the secret of A");
    free(t);
}

/* A hostile user's stdio server tries to read the suite's JWT secret in $KX_DATA_DIR, look at
 * the host's processes, learn the proxy's environment, and connect to NATS and Postgres. The
 * same probe run bare (an operator server) does all of it — so every assertion on the jailed
 * run below would fail without the jail. */
static void test_user_stdio_server_cannot_escape(void **state)
{
    (void)state;
    json_t *bare = run_probe("bare-probe", NULL, "probe-bare");
    assert_string_equal(json_string_value(json_object_get(bare, "file")),
                        "it-jwt-secret-do-not-leak");
    assert_true(sees_process(bare, "nats-server"));
    assert_true(sees_process(bare, "mcp-proxy"));
    assert_string_equal(connect_result(bare, g_nats.port), "ok");
    assert_string_equal(connect_result(bare, g_pg.port), "ok");
    assert_string_equal(connect_result(bare, g_http_port), "ok");
    json_decref(bare);

    const char *custom = "[{\"name\": \"probe\", \"type\": \"json\", \"config\": {\"command\": "
                         "\"node\", \"args\": [\"/fakes/probe.js\"], \"env\": {\"FOO\": "
                         "\"bar\"}}}]";
    Kx__V1__McpAgentToolsReply *r = list_jailed(custom, "custom_json_probe");
    const Kx__V1__McpAgentTool *t = server_tool(r, "custom_json_probe", "probe");
    assert_non_null(t);
    json_t *jailed = run_probe(NULL, t->server_json, "probe-jailed");
    kx_pb_free(r);
    char *dump = json_dumps(jailed, JSON_COMPACT);
    fprintf(stderr, "jailed probe: %s\n", dump);
    free(dump);

    /* No suite secret: $KX_DATA_DIR is not in the jail's tree. */
    const char *file = json_string_value(json_object_get(jailed, "file"));
    assert_non_null(file);
    assert_string_equal(file, "ERR:ENOENT");
    /* Only its own processes: a PID namespace with a /proc of its own. */
    assert_false(sees_process(jailed, "nats-server"));
    assert_false(sees_process(jailed, "mcp-proxy"));
    assert_false(sees_process(jailed, "postgres"));
    assert_true(json_array_size(json_object_get(jailed, "procs")) <= 3);
    /* The suite's ports refused, while another loopback port answers (the host's network is
     * there: the refusal is the port rule, not a missing network). */
    assert_string_not_equal(connect_result(jailed, g_nats.port), "ok");
    assert_string_not_equal(connect_result(jailed, g_pg.port), "ok");
    assert_string_equal(connect_result(jailed, g_http_port), "ok");
    /* Its environment is PATH, HOME and the config's env (and PWD, which bwrap sets); HOME is
     * a writable private dir. */
    char *env = json_dumps(json_object_get(jailed, "env"), JSON_COMPACT);
    assert_string_equal(env, "[\"FOO\",\"HOME\",\"PATH\",\"PWD\"]");
    free(env);
    assert_true(json_is_true(json_object_get(jailed, "home_writable")));
    /* Not root on the host (the tests run as root: the jail drops to a uid of its own). */
    if (geteuid() == 0)
        assert_true(json_integer_value(json_object_get(jailed, "uid")) >= 300000);
    json_decref(jailed);
}

int main(void)
{
    kx_log_init("it-mcpcall", "it-mcpcall");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_echo_and_sum_over_every_transport),
        cmocka_unit_test(test_http_server_restart_reinitializes),
        cmocka_unit_test(test_unknown_tool_is_a_tool_error),
        cmocka_unit_test(test_bad_requests),
        cmocka_unit_test(test_progress_is_passed_on),
        cmocka_unit_test(test_cancel_mid_call),
        cmocka_unit_test(test_call_past_deadline),
        cmocka_unit_test(test_crash_mid_call),
        cmocka_unit_test(test_garbage_on_stdout_is_skipped),
        cmocka_unit_test(test_server_that_never_initializes),
        cmocka_unit_test(test_every_content_kind),
        cmocka_unit_test(test_nul_in_an_answer),
        cmocka_unit_test(test_result_larger_than_max_payload),
        cmocka_unit_test(test_result_that_grows_when_escaped),
        cmocka_unit_test(test_stderr_flood_is_not_logged_whole),
        cmocka_unit_test(test_protocol_versions),
        cmocka_unit_test(test_agent_tools_from_kortix_config),
        cmocka_unit_test(test_cache_shared_by_two_replicas),
        cmocka_unit_test(test_list_changed_invalidates_the_cache),
        cmocka_unit_test(test_list_changed_over_streamable_http),
        cmocka_unit_test(test_tools_list_pagination),
        cmocka_unit_test(test_endless_tools_list_is_bounded),
        cmocka_unit_test(test_list_larger_than_a_reply),
        cmocka_unit_test(test_user_stdio_server_runs_jailed),
        cmocka_unit_test(test_user_stdio_server_cannot_escape),
        cmocka_unit_test(test_agent_servers_are_per_account),
        cmocka_unit_test(test_cache_keys_cannot_be_forged),
        cmocka_unit_test(test_an_account_runs_a_bounded_number_of_servers),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
