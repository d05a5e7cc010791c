/* test_mcp_proxy.c — the mcp-proxy against a real MCP server from npm
 * (@modelcontextprotocol/server-everything, installed into tests/node_modules by tests/run.sh)
 * and a real nats-server: it starts, answers its health request over NATS, lists the server's
 * tools (cold: spawning the server; warm: the same session), and answers clearly for a server
 * it does not know and for a request without a deadline. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"
#include "kx/bus.h"
#include "kx/log.h"
#include "kx/pb.h"
#include "kx/time.h"
#include "sandbox_client.h"

#define EVERYTHING \
    KX_SOURCE_DIR "/tests/node_modules/@modelcontextprotocol/server-everything/dist/index.js"

static char *g_dir;
static kx_th_nats g_nats;
static pid_t g_proxy;
static kx_bus *g_bus;
static char g_log[512];

static int setup(void **state)
{
    (void)state;
    if (access(EVERYTHING, R_OK) != 0) {
        fprintf(stderr, "missing %s: run tests/run.sh (npm install in tests/)\n", EVERYTHING);
        return -1;
    }
    g_dir = kx_th_tmpdir("kx-it-mcp");
    if (g_dir == NULL || kx_th_nats_start(g_dir, &g_nats) != KX_OK)
        return -1;
    char nats_env[128], servers_env[1024], port_env[64];
    snprintf(nats_env, sizeof nats_env, "KX_NATS_URL=%s", g_nats.url);
    snprintf(port_env, sizeof port_env, "KX_HEALTH_PORT=%u", kx_th_free_port());
    snprintf(servers_env, sizeof servers_env,
             "KX_MCP_SERVERS={\"everything\": {\"command\": \"node\", \"args\": [\"%s\", "
             "\"stdio\"]}}",
             EVERYTHING);
    const char *env[] = {nats_env, servers_env, port_env, "KX_LOG_LEVEL=debug", NULL};
    const char *argv[] = {KX_BUILD_DIR "/services/mcp-proxy/mcp-proxy", NULL};
    snprintf(g_log, sizeof g_log, "%s/mcp-proxy.log", g_dir);
    if (kx_th_spawn(argv, env, g_log, &g_proxy) != KX_OK)
        return -1;
    if (kx_bus_connect(g_nats.url, "it-mcp", &g_bus) != KX_OK)
        return -1;
    for (int i = 0; i < 500 && !kx_bus_connected(g_bus); i++)
        usleep(10000);
    return kx_bus_connected(g_bus) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    kx_bus_close(g_bus, 1000);
    int status = g_proxy > 0 ? kx_th_kill(g_proxy) : 0;
    kx_th_nats_stop(&g_nats);
    if (status != 0)
        fprintf(stderr, "mcp-proxy exited with status %d on SIGTERM (log %s)\n", status, g_log);
    kx_th_rmrf(g_dir);
    free(g_dir);
    return status == 0 ? 0 : -1;
}

/* Polls kx.svc.health.mcp-proxy until the proxy answers ready (it may still be starting). */
static void test_health_over_nats(void **state)
{
    (void)state;
    Kx__V1__HealthReply *rep = NULL;
    for (int i = 0; i < 100 && (rep == NULL || !rep->ready); i++) {
        kx_pb_free(rep);
        rep = NULL;
        Kx__V1__HealthRequest req = KX__V1__HEALTH_REQUEST__INIT;
        rep = kx_th_bus_ask(g_bus, KX_SUBJ_HEALTH_PREFIX "mcp-proxy", &req.base, NULL, 500,
                            &kx__v1__health_reply__descriptor, NULL, NULL);
        if (rep == NULL || !rep->ready)
            usleep(50000);
    }
    assert_non_null(rep);
    assert_true(rep->ready);
    assert_string_equal(rep->service, "mcp-proxy");
    assert_true(strncmp(rep->instance_id, "mcp-proxy-", 10) == 0);
    kx_pb_free(rep);
}

/* One kx.mcp.list; returns the decoded reply (caller frees) and the round trip in ms. */
static Kx__V1__McpListToolsReply *list(const char *server, int64_t timeout_ms, double *ms)
{
    Kx__V1__McpListToolsRequest req = KX__V1__MCP_LIST_TOOLS_REQUEST__INIT;
    req.server = (char *)server;
    int64_t us = 0;
    Kx__V1__McpListToolsReply *r =
        kx_th_bus_ask(g_bus, KX_SUBJ_MCP_LIST, &req.base, NULL, timeout_ms,
                      &kx__v1__mcp_list_tools_reply__descriptor, &us, NULL);
    *ms = (double)us / 1000.0;
    return r;
}

static const Kx__V1__McpTool *find_tool(const Kx__V1__McpListToolsReply *r, const char *name)
{
    for (size_t i = 0; i < r->n_tools; i++)
        if (strcmp(r->tools[i]->name, name) == 0)
            return r->tools[i];
    return NULL;
}

static void test_list_tools_of_real_server(void **state)
{
    (void)state;
    double cold_ms = 0, warm_ms = 0;
    Kx__V1__McpListToolsReply *r = list("everything", 20000, &cold_ms);
    assert_non_null(r);
    if (r->error != NULL)
        fail_msg("list failed: %s: %s", r->error->code, r->error->message);
    assert_string_equal(r->server, "everything");
    assert_true(r->n_tools >= 5);
    const Kx__V1__McpTool *echo = find_tool(r, "echo");
    assert_non_null(echo);
    assert_non_null(find_tool(r, "get-sum"));
    assert_true(strlen(echo->description) > 0);
    /* The schema is the server's own JSON: echo takes a "message" string. */
    assert_non_null(strstr(echo->input_schema_json, "\"message\""));
    assert_false(kx_pb_str_empty(r->protocol_version));
    size_t n_cold = r->n_tools;
    kx_pb_free(r);

    /* Warm: the session stays up, so a second list does not spawn node again. */
    r = list("everything", 5000, &warm_ms);
    assert_non_null(r);
    assert_null(r->error);
    assert_int_equal(r->n_tools, n_cold);
    kx_pb_free(r);
    fprintf(stderr, "kx.mcp.list everything: cold %.1f ms, warm %.1f ms, %zu tools\n", cold_ms,
            warm_ms, n_cold);
    assert_true(warm_ms < cold_ms);
}

static void test_unknown_server(void **state)
{
    (void)state;
    double ms = 0;
    Kx__V1__McpListToolsReply *r = list("nope", 2000, &ms);
    assert_non_null(r);
    assert_non_null(r->error);
    assert_string_equal(r->error->code, "not_found");
    assert_non_null(strstr(r->error->message, "nope"));
    kx_pb_free(r);
}

/* A request without Kx-Deadline is refused (every bus request must carry one). */
static void test_request_without_deadline(void **state)
{
    (void)state;
    Kx__V1__McpListToolsRequest req = KX__V1__MCP_LIST_TOOLS_REQUEST__INIT;
    req.server = "everything";
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(kx_pb_pack(&req.base, &buf, &len), KX_OK);
    natsMsg *reply = NULL;
    natsStatus s =
        natsConnection_Request(&reply, kx_bus_conn(g_bus), KX_SUBJ_MCP_LIST, buf, (int)len, 2000);
    free(buf);
    assert_int_equal(s, NATS_OK);
    Kx__V1__McpListToolsReply *r =
        kx_pb_unpack(&kx__v1__mcp_list_tools_reply__descriptor, natsMsg_GetData(reply),
                     (size_t)natsMsg_GetDataLength(reply));
    natsMsg_Destroy(reply);
    assert_non_null(r);
    assert_non_null(r->error);
    assert_string_equal(r->error->code, "invalid_argument");
    kx_pb_free(r);
}

int main(void)
{
    kx_log_init("it-mcp", "it-mcp");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_health_over_nats),
        cmocka_unit_test(test_list_tools_of_real_server),
        cmocka_unit_test(test_unknown_server),
        cmocka_unit_test(test_request_without_deadline),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
