/* test_mcp_agent.c — an agent's MCP tools end to end, through the whole stack (gateway,
 * scheduler, agent-runner, tool-executor, mcp-proxy, the demo model) and a real MCP server from
 * npm (@modelcontextprotocol/server-everything over Streamable HTTP), plus an SDK-built server
 * (tests/fakes/mcp/notify_http.mjs collide) whose tools are named like server-everything's and
 * like a built-in:
 *   1. the schemas the runner gets for an agent (kx.tool.schemas with its custom_mcps): the
 *      built-ins and the MCP tools named as Kortix presents them, with their routes;
 *      an agent whose demo-model script calls get_sum: the result (42) is in the thread and
 *      the model read it;
 *   2. collisions: two servers with an "echo" and one with a "complete" (a built-in): echo,
 *      echo_2, echo_3 and complete_2 — nothing overwritten; the run calls echo_2 and
 *      complete_2 and each reaches its own server; complete_2 does not end the run;
 *   3. a tool that does not answer (trigger_long_running_operation for 30 s) ends at the
 *      call's deadline (KX_TOOL_TIMEOUT_S = 5) as a timed-out result; the run goes on;
 *   4. STOP during an MCP call: the run is stopped at once and the mcp-proxy cancels the call
 *      at the server (kx.mcp.cancel from the tool-executor);
 *   5. a server that cannot be reached is skipped with its error; the run goes on with the
 *      other tools;
 *   6. the listing of a run's MCP servers (kx.mcp.agent_tools, from the runner through the
 *      executor) names the run's account, one request per account: the mcp-proxy lists in the
 *      account's own sessions and counts them against the account's limit. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include <pthread.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <jansson.h>

#include "api_client.h"
#include "harness.h"
#include "kx/bus.h"
#include "kx/pb.h"
#include "kx/time.h"
#include "kx/uuid.h"
#include "stack.h"

#define NM \
    KX_SOURCE_DIR "/tests/node_modules/@modelcontextprotocol/server-everything/dist/index.js"
#define LOOPBACK KX_SOURCE_DIR "/tests/fakes/mcp/loopback.cjs"
#define NOTIFY KX_SOURCE_DIR "/tests/fakes/mcp/notify_http.mjs"
#define RUN_TIMEOUT_MS 60000

static char *g_dir;
static kx_th_stack g_stack;
static pid_t g_everything, g_collide;
static uint16_t g_everything_port, g_collide_port;
static kx_bus *g_bus;

static kx_err start_node(const char *const *argv, uint16_t port, const char *name, pid_t *pid)
{
    char port_env[32], log[600];
    snprintf(port_env, sizeof port_env, "PORT=%u", port);
    snprintf(log, sizeof log, "%s/%s.log", g_dir, name);
    const char *env[] = {port_env, NULL};
    kx_err err = kx_th_spawn(argv, env, log, pid);
    if (err == KX_OK && !kx_th_wait_port(port, 20000))
        return KX_ERR_TIMEOUT;
    return err;
}

/* ---- helpers -------------------------------------------------------------------------------- */

/* The whole file (malloc'd), or NULL. */
static char *read_file(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    while (buf != NULL) {
        n += fread(buf + n, 1, cap - n - 1, f);
        if (n < cap - 1)
            break;
        char *grown = realloc(buf, cap * 2);
        if (grown == NULL) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = grown;
        cap *= 2;
    }
    fclose(f);
    if (buf != NULL)
        buf[n] = '\0';
    return buf;
}

static char *sql1(const char *sql, const char *param)
{
    const char *p[] = {param};
    char *v = kx_th_sql_value(&g_stack, sql, 1, p);
    assert_non_null(v);
    return v;
}

static char *run_status(const char *run)
{
    return sql1("SELECT status FROM agent_runs WHERE id = $1", run);
}

static void expect_final(const char *run, const char *want)
{
    int64_t give_up = kx_mono_ms() + RUN_TIMEOUT_MS;
    for (;;) {
        char *st = run_status(run);
        if (strcmp(st, "queued") != 0 && strcmp(st, "running") != 0) {
            if (strcmp(st, want) != 0) {
                char *err = sql1("SELECT coalesce(error, '') FROM agent_runs WHERE id = $1", run);
                fail_msg("run %s ended %s, want %s (error: %s)", run, st, want, err);
            }
            free(st);
            return;
        }
        free(st);
        if (kx_mono_ms() > give_up)
            fail_msg("run %s did not end within %d ms", run, RUN_TIMEOUT_MS);
        usleep(50 * 1000);
    }
}

/* The results of the run's tool calls, one per line: "function=success:output". */
static char *tool_results(const char *run)
{
    return sql1("SELECT coalesce(string_agg((metadata #>> '{frontend_content,tool_execution,"
                "function_name}') || '=' || (metadata #>> '{frontend_content,tool_execution,"
                "result,success}') || ':' || (metadata #>> '{frontend_content,tool_execution,"
                "result,output}') || coalesce(' / ' || (metadata #>> '{frontend_content,"
                "tool_execution,result,error}'), ''), E'\\n' ORDER BY created_at), '') "
                "FROM messages WHERE agent_run_id = $1 AND type = 'tool'",
                run);
}

static char *last_answer(const char *run)
{
    return sql1("SELECT coalesce((SELECT content->>'content' FROM messages WHERE agent_run_id = "
                "$1 AND type = 'assistant' ORDER BY created_at DESC LIMIT 1), '')",
                run);
}

static void assert_contains(const char *hay, const char *needle)
{
    if (strstr(hay, needle) == NULL)
        fail_msg("\"%s\" not found in: %.3000s", needle, hay);
}

/* The account's default agent with config (JSON) as its current version. */
static void make_default_agent(const char *account, const char *config)
{
    char aid[KX_UUID_LEN + 1], vid[KX_UUID_LEN + 1];
    kx_uuid_new(aid);
    kx_uuid_new(vid);
    const char *p[] = {account, config, aid, vid};
    char *v = kx_th_sql_value(
        &g_stack,
        "WITH v AS (INSERT INTO agent_versions (version_id, agent_id, account_id, "
        "version_number, version_name, config) VALUES ($4::uuid, $3::uuid, $1::uuid, 1, 'v1', "
        "$2::jsonb) RETURNING version_id) "
        "INSERT INTO agents (agent_id, account_id, name, is_default, current_version_id) "
        "SELECT $3::uuid, $1::uuid, 'Tester', true, version_id FROM v RETURNING agent_id::text",
        4, p);
    assert_non_null(v);
    free(v);
}

/* A new account whose default agent has these custom_mcps; starts a run with prompt. */
static char *start_run(const char *custom_mcps, const char *prompt, char run[KX_UUID_LEN + 1])
{
    char account[KX_UUID_LEN + 1], thread[KX_UUID_LEN + 1];
    char *token = kx_th_new_account(&g_stack, account);
    assert_non_null(token);
    char config[4096];
    snprintf(config, sizeof config,
             "{\"system_prompt\": \"You test MCP.\", \"tools\": {}, \"custom_mcps\": %s}",
             custom_mcps);
    make_default_agent(account, config);
    long st = kx_th_initiate(&g_stack, token, prompt, run, thread);
    if (st != 200)
        fail_msg("initiate: status %ld", st);
    return token;
}

static char g_one[512], g_three[2048];

/* kx.tool.schemas as the runner asks it, for these custom_mcps. */
static Kx__V1__ToolSchemasReply *schemas(const char *custom_mcps)
{
    Kx__V1__ToolSchemasRequest rq = KX__V1__TOOL_SCHEMAS_REQUEST__INIT;
    rq.agentpress_tools_json = "";
    rq.custom_mcps_json = (char *)custom_mcps;
    kx_bus_meta meta;
    kx_bus_meta_init(&meta, kx_deadline_in(25000), NULL);
    natsMsg *reply = NULL;
    assert_int_equal(kx_bus_request_pb(g_bus, KX_SUBJ_TOOL_SCHEMAS, &rq.base, &meta, &reply),
                     KX_OK);
    const char *herr = NULL;
    if (natsMsgHeader_Get(reply, KX_HDR_ERROR, &herr) == NATS_OK && herr != NULL)
        fail_msg("kx.tool.schemas: %s", herr);
    Kx__V1__ToolSchemasReply *r =
        kx_pb_unpack(&kx__v1__tool_schemas_reply__descriptor, natsMsg_GetData(reply),
                     (size_t)natsMsg_GetDataLength(reply));
    natsMsg_Destroy(reply);
    assert_non_null(r);
    if (r->error != NULL)
        fail_msg("kx.tool.schemas: %s: %s", r->error->code, r->error->message);
    return r;
}

static const Kx__V1__McpToolSchema *mcp_tool(const Kx__V1__ToolSchemasReply *r, const char *name)
{
    for (size_t i = 0; i < r->n_mcp_tools; i++)
        if (strcmp(r->mcp_tools[i]->name, name) == 0)
            return r->mcp_tools[i];
    return NULL;
}

/* The description of the built-in called name in tools_json, or NULL. */
static char *builtin_description(const Kx__V1__ToolSchemasReply *r, const char *name)
{
    json_t *tools = json_loads(r->tools_json, 0, NULL);
    assert_true(json_is_array(tools));
    char *out = NULL;
    size_t i;
    json_t *t;
    json_array_foreach(tools, i, t)
    {
        json_t *f = json_object_get(t, "function");
        if (out == NULL && strcmp(json_string_value(json_object_get(f, "name")), name) == 0)
            out = strdup(json_string_value(json_object_get(f, "description")));
    }
    json_decref(tools);
    return out;
}

/* ---- tests ------------------------------------------------------------------------------- */

/* The accounts the kx.mcp.agent_tools requests carrying marker named (a tap beside the
 * mcp-proxy's queue subscription: it answers nothing). */
typedef struct listing_tap {
    pthread_mutex_t mu;
    const char *marker;
    int n;
    char accounts[8][KX_UUID_LEN + 1];
} listing_tap;

static void on_listing(natsMsg *msg, void *arg)
{
    listing_tap *t = arg;
    Kx__V1__McpAgentToolsRequest *rq =
        kx_pb_unpack(&kx__v1__mcp_agent_tools_request__descriptor, natsMsg_GetData(msg),
                     (size_t)natsMsg_GetDataLength(msg));
    if (rq != NULL && rq->custom_mcps_json != NULL && strstr(rq->custom_mcps_json, t->marker)) {
        pthread_mutex_lock(&t->mu);
        if (t->n < 8)
            snprintf(t->accounts[t->n++], KX_UUID_LEN + 1, "%s",
                     rq->account_id != NULL ? rq->account_id : "");
        pthread_mutex_unlock(&t->mu);
    }
    kx_pb_free(rq);
    natsMsg_Destroy(msg);
}

static char *run_account(const char *run)
{
    const char *p[] = {run};
    char *a = kx_th_sql_value(&g_stack,
                              "SELECT account_id::text FROM agent_runs WHERE id = $1::uuid", 1, p);
    assert_non_null(a);
    return a;
}

/* Two accounts whose agents have the same MCP server: the runner asks for each account's
 * listing, naming it (before: one request, without an account — the runner's cache was per
 * server config and the request named none — so the proxy listed every account's servers in
 * one shared session and counted none against an account's KX_MCP_JAIL_MAX_SERVERS). */
static void test_listing_names_the_account(void **state)
{
    (void)state;
    static listing_tap tap = {.mu = PTHREAD_MUTEX_INITIALIZER, .marker = "listing_tap"};
    natsSubscription *sub = NULL;
    assert_int_equal(kx_bus_subscribe(g_bus, KX_SUBJ_MCP_AGENT_TOOLS, NULL, on_listing, &tap,
                                      &sub),
                     KX_OK);
    natsConnection_Flush(kx_bus_conn(g_bus));
    char mcps[512];
    snprintf(mcps, sizeof mcps,
             "[{\"name\": \"listing_tap\", \"type\": \"http\", \"config\": {\"url\": "
             "\"http://127.0.0.1:%u/mcp\"}, \"enabledTools\": []}]",
             g_everything_port);
    char runs[2][KX_UUID_LEN + 1];
    char *accounts[2];
    for (int i = 0; i < 2; i++) {
        free(start_run(mcps, "call get_sum {\"a\": 1, \"b\": 2}", runs[i]));
        expect_final(runs[i], "completed");
        accounts[i] = run_account(runs[i]);
    }
    natsConnection_Flush(kx_bus_conn(g_bus));
    natsSubscription_Destroy(sub);
    pthread_mutex_lock(&tap.mu);
    print_message("[ listing  ] %d request(s): %s %s\n", tap.n, tap.n > 0 ? tap.accounts[0] : "",
                  tap.n > 1 ? tap.accounts[1] : "");
    for (int i = 0; i < 2; i++) {
        bool named = false;
        for (int k = 0; k < tap.n; k++)
            named = named || strcmp(tap.accounts[k], accounts[i]) == 0;
        if (!named)
            fail_msg("no listing named the account of run %d (%s): %d request(s), the first "
                     "naming \"%s\"",
                     i + 1, accounts[i], tap.n, tap.n > 0 ? tap.accounts[0] : "(none)");
    }
    pthread_mutex_unlock(&tap.mu);
    free(accounts[0]);
    free(accounts[1]);
}

static void test_agent_calls_its_mcp_tool(void **state)
{
    (void)state;
    Kx__V1__ToolSchemasReply *r = schemas(g_one);
    assert_int_equal(r->n_mcp_servers, 1);
    assert_null(r->mcp_servers[0]->error);
    assert_string_equal(r->mcp_servers[0]->server, "custom_http_everything");
    const Kx__V1__McpToolSchema *t = mcp_tool(r, "get_sum"); /* one-word server: own name */
    assert_non_null(t);
    assert_string_equal(t->route->tool, "get-sum");
    assert_string_equal(t->route->server, "custom_http_everything");
    assert_true(t->route->custom);
    assert_contains(t->schema_json, "(MCP Server: everything)");
    assert_contains(t->schema_json, "\"parameters\":{");
    assert_non_null(mcp_tool(r, "trigger_long_running_operation"));
    char *d = builtin_description(r, "execute_command"); /* the built-ins come too */
    assert_non_null(d);
    free(d);
    kx_pb_free(r);

    char run[KX_UUID_LEN + 1];
    char *token = start_run(g_one,
                            "call get_sum {\"a\": 20, \"b\": 22}\n"
                            "call echo {\"message\": \"through the whole stack\"}",
                            run);
    expect_final(run, "completed");
    char *res = tool_results(run);
    print_message("[ results  ] %s\n", res);
    assert_contains(res, "get_sum=true:");
    assert_contains(res, "42");
    assert_contains(res, "echo=true:");
    assert_contains(res, "through the whole stack");
    free(res);
    char *answer = last_answer(run);
    assert_contains(answer, "through the whole stack"); /* the model read the last result */
    free(answer);
    free(token);
}

static void test_name_collisions(void **state)
{
    (void)state;
    Kx__V1__ToolSchemasReply *r = schemas(g_three);
    assert_int_equal(r->n_mcp_servers, 3);
    for (size_t i = 0; i < r->n_mcp_servers; i++)
        if (r->mcp_servers[i]->error != NULL)
            fail_msg("%s: %s", r->mcp_servers[i]->server, r->mcp_servers[i]->error->message);
    const Kx__V1__McpToolSchema *e1 = mcp_tool(r, "echo"), *e2 = mcp_tool(r, "echo_2"),
                                *e3 = mcp_tool(r, "echo_3"), *c2 = mcp_tool(r, "complete_2");
    assert_non_null(e1);
    assert_non_null(e2);
    assert_non_null(e3);
    assert_non_null(c2);
    assert_string_equal(e1->route->server, "custom_http_everything");
    assert_string_equal(e2->route->server, "custom_http_other");
    assert_string_equal(e3->route->server, "custom_http_collide");
    assert_string_equal(c2->route->server, "custom_http_collide");
    assert_string_equal(c2->route->tool, "complete");
    assert_null(mcp_tool(r, "complete")); /* the built-in keeps its name and its schema */
    char *d = builtin_description(r, "complete");
    assert_non_null(d);
    assert_null(strstr(d, "MCP Server"));
    free(d);
    /* every name once among all the tools */
    for (size_t i = 0; i < r->n_mcp_tools; i++) {
        char *b = builtin_description(r, r->mcp_tools[i]->name);
        bool taken = b != NULL;
        free(b);
        if (taken)
            fail_msg("MCP tool %s has a built-in's name", r->mcp_tools[i]->name);
        for (size_t j = i + 1; j < r->n_mcp_tools; j++)
            assert_string_not_equal(r->mcp_tools[i]->name, r->mcp_tools[j]->name);
    }
    kx_pb_free(r);

    char run[KX_UUID_LEN + 1];
    char *token = start_run(g_three,
                            "call echo_2 {\"message\": \"to the other one\"}\n"
                            "call complete_2 {}\n"
                            "call echo_3 {}",
                            run);
    expect_final(run, "completed");
    char *res = tool_results(run);
    print_message("[ results  ] %s\n", res);
    assert_contains(res, "echo_2=true:");
    assert_contains(res, "to the other one");
    assert_contains(res, "complete_2=true:collide complete");
    assert_contains(res, "echo_3=true:collide echo"); /* after complete_2: the run went on */
    free(res);
    char *answer = last_answer(run);
    assert_contains(answer, "collide echo");
    free(answer);
    free(token);
}

static void test_hanging_call_ends_at_its_deadline(void **state)
{
    (void)state;
    char run[KX_UUID_LEN + 1];
    int64_t t0 = kx_mono_ms();
    char *token = start_run(g_one,
                            "call trigger_long_running_operation {\"duration\": 30, \"steps\": "
                            "30}",
                            run);
    expect_final(run, "completed");
    int64_t took = kx_mono_ms() - t0;
    char *res = tool_results(run);
    print_message("[ results  ] %s (run %lld ms)\n", res, (long long)took);
    assert_contains(res, "trigger_long_running_operation=false:");
    assert_contains(res, "timed out after");
    free(res);
    /* KX_TOOL_TIMEOUT_S = 5: well before the operation's 30 s */
    assert_true(took < 20000);
    free(token);
}

static void test_stop_during_mcp_call(void **state)
{
    (void)state;
    char run[KX_UUID_LEN + 1];
    char *token = start_run(g_one,
                            "call trigger_long_running_operation {\"duration\": 30, \"steps\": "
                            "30}",
                            run);
    int64_t give_up = kx_mono_ms() + RUN_TIMEOUT_MS;
    for (;;) { /* until the call is under way */
        char *n = sql1("SELECT count(*)::text FROM messages WHERE agent_run_id = $1 AND "
                       "content->>'status_type' = 'tool_started'",
                       run);
        bool started = strcmp(n, "0") != 0;
        free(n);
        if (started)
            break;
        if (kx_mono_ms() > give_up)
            fail_msg("the MCP call of run %s did not start", run);
        usleep(50 * 1000);
    }
    usleep(500 * 1000); /* the call is at the server */
    char path[128];
    snprintf(path, sizeof path, "/api/agent-run/%s/stop", run);
    int64_t t0 = kx_mono_ms();
    long status = 0;
    json_t *v = kx_th_json(&g_stack, "POST", path, token, NULL, &status);
    json_decref(v);
    assert_int_equal(status, 200);
    expect_final(run, "stopped");
    /* the mcp-proxy was told to cancel the call (and told the server) */
    kx_th_proc *proxy = kx_th_stack_proc(&g_stack, "mcp-proxy");
    assert_non_null(proxy);
    bool cancelled = false;
    while (!cancelled && kx_mono_ms() - t0 < 5000) {
        char *log = read_file(proxy->log);
        cancelled = log != NULL && strstr(log, "kx.mcp.cancel") != NULL &&
            strstr(log,
                   "cancelling the call to 'custom_http_everything'/"
                   "'trigger-long-running-operation'") != NULL;
        free(log);
        if (!cancelled)
            usleep(100 * 1000);
    }
    if (!cancelled)
        fail_msg("the mcp-proxy's log has no cancel of the call (%s)", proxy->log);
    free(token);
}

/* A server that cannot be reached (a loopback port not allowed) is skipped with its error, as
 * Kortix skipped it: the run goes on with the built-ins and the other server's tools; a call
 * of the skipped server's tool is an unknown tool the model reads. */
static void test_broken_server_is_skipped(void **state)
{
    (void)state;
    char mcps[1024];
    snprintf(mcps, sizeof mcps,
             "[{\"name\": \"gone\", \"type\": \"http\", \"config\": {\"url\": "
             "\"http://127.0.0.1:%u/mcp\"}},"
             " {\"name\": \"everything\", \"type\": \"http\", \"config\": {\"url\": "
             "\"http://127.0.0.1:%u/mcp\"}, \"enabledTools\": [\"get-sum\"]}]",
             g_stack.nats.port, g_everything_port);
    Kx__V1__ToolSchemasReply *r = schemas(mcps);
    assert_int_equal(r->n_mcp_servers, 2);
    assert_non_null(r->mcp_servers[0]->error);
    assert_contains(r->mcp_servers[0]->error->message, "loopback");
    assert_null(r->mcp_servers[1]->error);
    assert_int_equal(r->n_mcp_tools, 1);
    assert_non_null(mcp_tool(r, "get_sum"));
    kx_pb_free(r);

    char run[KX_UUID_LEN + 1];
    char *token =
        start_run(mcps, "call echo {\"message\": \"x\"}\ncall get_sum {\"a\": 1, \"b\": 2}", run);
    expect_final(run, "completed");
    char *res = tool_results(run);
    print_message("[ results  ] %s\n", res);
    assert_contains(res, "echo=false:Tool function 'echo' not found");
    assert_contains(res, "get_sum=true:The sum of 1 and 2 is 3");
    free(res);
    free(token);
}

/* ---- setup ---------------------------------------------------------------------------------- */

static int setup(void **state)
{
    (void)state;
    g_dir = kx_th_tmpdir("kx-mcp-agent");
    if (g_dir == NULL)
        return -1;
    g_everything_port = kx_th_free_port();
    g_collide_port = kx_th_free_port();
    const char *ev[] = {"node", "--require", LOOPBACK, NM, "streamableHttp", NULL};
    const char *co[] = {"node", NOTIFY, "collide", NULL};
    if (start_node(ev, g_everything_port, "everything", &g_everything) != KX_OK ||
        start_node(co, g_collide_port, "collide", &g_collide) != KX_OK) {
        fprintf(stderr, "could not start the MCP servers (logs in %s)\n", g_dir);
        return -1;
    }
    snprintf(g_one, sizeof g_one,
             "[{\"name\": \"everything\", \"type\": \"http\", \"config\": {\"url\": "
             "\"http://127.0.0.1:%u/mcp\"}, \"enabledTools\": []}]",
             g_everything_port);
    snprintf(g_three, sizeof g_three,
             "[{\"name\": \"everything\", \"type\": \"http\", \"config\": {\"url\": "
             "\"http://127.0.0.1:%u/mcp\"}, \"enabledTools\": []},"
             " {\"name\": \"other\", \"type\": \"http\", \"config\": {\"url\": "
             "\"http://127.0.0.1:%u/mcp\"}, \"enabledTools\": [\"echo\"]},"
             " {\"name\": \"collide\", \"type\": \"http\", \"config\": {\"url\": "
             "\"http://127.0.0.1:%u/mcp\"}, \"enabledTools\": []}]",
             g_everything_port, g_everything_port, g_collide_port);
    char allow[96];
    snprintf(allow, sizeof allow, "KX_MCP_ALLOW_LOOPBACK_PORTS=%u,%u", g_everything_port,
             g_collide_port);
    const char *env[] = {allow, "KX_TOOL_TIMEOUT_S=5", NULL};
    kx_th_stack_opts opts = {.env = env};
    if (kx_th_stack_start(&opts, &g_stack) != KX_OK)
        return -1;
    return kx_bus_connect(g_stack.nats.url, "it_mcp_agent", &g_bus) == KX_OK ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_agent_calls_its_mcp_tool),
        cmocka_unit_test(test_name_collisions),
        cmocka_unit_test(test_hanging_call_ends_at_its_deadline),
        cmocka_unit_test(test_stop_during_mcp_call),
        cmocka_unit_test(test_broken_server_is_skipped),
        cmocka_unit_test(test_listing_names_the_account),
    };
    int failed = cmocka_run_group_tests_name("mcp_agent", tests, setup, NULL);
    if (g_bus != NULL)
        kx_bus_close(g_bus, 2000);
    if (kx_th_stack_stop(&g_stack, failed != 0) != 0)
        failed++;
    if (g_everything > 0)
        kx_th_kill(g_everything);
    if (g_collide > 0)
        kx_th_kill(g_collide);
    if (g_dir != NULL) {
        if (failed == 0)
            kx_th_rmrf(g_dir);
        else
            fprintf(stderr, "MCP servers' logs kept in %s\n", g_dir);
    }
    free(g_dir);
    return failed != 0;
}
