/* test_gateway_mcp.c — GET/POST /api/agents/{id}/custom-mcp-tools: the gateway, the mcp-proxy
 * and a real Streamable HTTP MCP server (@modelcontextprotocol/server-everything from npm),
 * with a real nats-server and PostgreSQL: the server's tools come back with "enabled" from the
 * agent's current version; a missing X-MCP-URL is 400; another account's private agent is 404;
 * an unknown agent is 404; a loopback target the proxy does not allow is 502 naming why. POST
 * saves the chosen tools as a new agent version (Kortix's "Auto-updated MCP tools"): the GET then
 * shows them enabled, the version chain and counters follow, a repeated POST writes nothing, a
 * new URL adds an entry, and bad bodies are 400 naming the field. POST /api/mcp/discover-custom-tools
 * lists a server before it is saved anywhere: Kortix's answer with each tool's inputSchema (the
 * body's headers reach the server); each bad body is 400 naming the field; no token is 401; a
 * refused connection and the loopback guard are 502, a server that accepts and never answers is
 * 504 within the proxy's deadline (KX_MCP_TIMEOUT_S=3 here). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "kx/http.h"
#include "kx/log.h"
#include "kx/time.h"
#include "kx/uuid.h"
#include "stack.h"

#define NM \
    KX_SOURCE_DIR "/tests/node_modules/@modelcontextprotocol/server-everything/dist/index.js"
#define LOOPBACK KX_SOURCE_DIR "/tests/fakes/mcp/loopback.cjs"

static kx_th_stack g_s; /* only dir, nats, pg, base_url, secret are used */
static pid_t g_gateway, g_proxy, g_mcp;
static uint16_t g_mcp_port;
static uint16_t g_dead_port;   /* allowed for the proxy, nothing listens: refused */
static uint16_t g_silent_port; /* allowed, listens (backlog), never answers */
static int g_silent_fd = -1;
static char g_agent[KX_UUID_LEN + 1], g_owner[KX_UUID_LEN + 1];
static char g_url[128];

static int start_all(void **state)
{
    (void)state;
    kx_log_init("test-gateway-mcp", "test");
    kx_log_set_level(KX_LOG_WARN);
    if (access(NM, R_OK) != 0) {
        fprintf(stderr, "missing %s: run tests/run.sh (npm install in tests/)\n", NM);
        return -1;
    }
    memset(&g_s, 0, sizeof g_s);
    g_s.dir = kx_th_tmpdir("kx-it-gwmcp");
    if (g_s.dir == NULL || kx_th_nats_start(g_s.dir, &g_s.nats) != KX_OK ||
        kx_th_pg_start(g_s.dir, &g_s.pg) != KX_OK)
        return -1;
    char log[700], e_mport[32];
    g_mcp_port = kx_th_free_port();
    snprintf(e_mport, sizeof e_mport, "PORT=%u", g_mcp_port);
    snprintf(log, sizeof log, "%s/everything.log", g_s.dir);
    const char *menv[] = {e_mport, NULL};
    const char *margv[] = {"node", "--require", LOOPBACK, NM, "streamableHttp", NULL};
    if (kx_th_spawn(margv, menv, log, &g_mcp) != KX_OK || !kx_th_wait_port(g_mcp_port, 20000))
        return -1;
    snprintf(g_url, sizeof g_url, "http://127.0.0.1:%u/mcp", g_mcp_port);

    uint16_t port = kx_th_free_port();
    snprintf(g_s.base_url, sizeof g_s.base_url, "http://127.0.0.1:%u", (unsigned)port);
    snprintf(g_s.secret, sizeof g_s.secret, "gateway-mcp-test-secret");
    char e_port[64], e_nats[128], e_db[320], e_secret[128], e_mig[600], e_allow[96];
    snprintf(e_port, sizeof e_port, "KX_HTTP_PORT=%u", (unsigned)port);
    snprintf(e_nats, sizeof e_nats, "KX_NATS_URL=%s", g_s.nats.url);
    snprintf(e_db, sizeof e_db, "KX_DATABASE_URL=%s", g_s.pg.url);
    snprintf(e_secret, sizeof e_secret, "KX_JWT_SECRET=%s", g_s.secret);
    snprintf(e_mig, sizeof e_mig, "KX_MIGRATIONS_DIR=%s/deploy/migrations", KX_SOURCE_DIR);
    /* The proxy refuses loopback targets for agents' servers; this test's server is allowed
     * explicitly, by its port. */
    g_dead_port = kx_th_free_port();
    g_silent_port = kx_th_free_port();
    g_silent_fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(g_silent_port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (g_silent_fd < 0 || bind(g_silent_fd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
        listen(g_silent_fd, 16) != 0)
        return -1;
    snprintf(e_allow, sizeof e_allow, "KX_MCP_ALLOW_LOOPBACK_PORTS=%u,%u,%u", g_mcp_port,
             g_dead_port, g_silent_port);
    uint16_t proxy_health = kx_th_free_port();
    uint16_t gw_health = kx_th_free_port();
    char e_health[64], e_gw_health[64];
    snprintf(e_health, sizeof e_health, "KX_HEALTH_PORT=%u", proxy_health);
    /* The ops routes live on the health port (the API port answers them only with a token). */
    snprintf(e_gw_health, sizeof e_gw_health, "KX_HEALTH_PORT=%u", gw_health);
    const char *env[] = {e_port,
                         e_nats,
                         e_db,
                         e_secret,
                         e_mig,
                         e_allow,
                         e_gw_health,
                         "KX_HEALTH_TIMEOUT_MS=300",
                         "KX_LOG_LEVEL=debug",
                         "KX_DRAIN_TIMEOUT_MS=3000",
                         NULL};
    /* KX_MCP_TIMEOUT_S=3: the silent server's 504 comes after 3 s, not Kortix's 15 s. */
    const char *penv[] = {e_nats, e_allow, e_health, "KX_MCP_TIMEOUT_S=3", "KX_LOG_LEVEL=debug",
                          NULL};
    const char *gargv[] = {KX_BUILD_DIR "/services/gateway/gateway", NULL};
    const char *pargv[] = {KX_BUILD_DIR "/services/mcp-proxy/mcp-proxy", NULL};
    snprintf(log, sizeof log, "%s/gateway.log", g_s.dir);
    if (kx_th_spawn(gargv, env, log, &g_gateway) != KX_OK)
        return -1;
    snprintf(log, sizeof log, "%s/mcp-proxy.log", g_s.dir);
    if (kx_th_spawn(pargv, penv, log, &g_proxy) != KX_OK)
        return -1;
    /* /readyz of both: Postgres migrated, NATS connected (the proxy then has subscribed). */
    char ready[128];
    snprintf(ready, sizeof ready, "http://127.0.0.1:%u/readyz", gw_health);
    if (kx_th_wait_http(ready, 30000) != KX_OK)
        return -1;
    snprintf(ready, sizeof ready, "http://127.0.0.1:%u/readyz", proxy_health);
    if (kx_th_wait_http(ready, 30000) != KX_OK)
        return -1;

    /* An agent of g_owner whose current version enables only "echo" of this server. */
    kx_uuid_new(g_owner);
    kx_uuid_new(g_agent);
    char version[KX_UUID_LEN + 1], config[600];
    kx_uuid_new(version);
    snprintf(config, sizeof config,
             "{\"system_prompt\": \"\", \"tools\": {}, \"custom_mcps\": [{\"name\": \"ev\", "
             "\"type\": \"http\", \"config\": {\"url\": \"%s\"}, \"enabledTools\": [\"echo\"]}]}",
             g_url);
    const char *p1[] = {g_agent, g_owner};
    PQclear(kx_th_sql(&g_s,
                      "INSERT INTO agents (agent_id, account_id, name) VALUES ($1, $2, "
                      "'mcp agent')",
                      2, p1));
    const char *p2[] = {version, g_agent, g_owner, config};
    PQclear(kx_th_sql(&g_s,
                      "INSERT INTO agent_versions (version_id, agent_id, account_id, "
                      "version_number, version_name, config) VALUES ($1, $2, $3, 1, 'v1', "
                      "$4::jsonb)",
                      4, p2));
    const char *p3[] = {version, g_agent};
    PQclear(
        kx_th_sql(&g_s, "UPDATE agents SET current_version_id = $1 WHERE agent_id = $2", 2, p3));
    char *check = kx_th_sql_value(&g_s,
                                  "SELECT current_version_id::text FROM agents WHERE "
                                  "agent_id = $1",
                                  1, p1);
    bool ok = check != NULL && strcmp(check, version) == 0;
    free(check);
    return ok ? 0 : -1;
}

static int stop_all(void **state)
{
    (void)state;
    int rc = 0;
    if (g_gateway > 0 && kx_th_kill(g_gateway) != 0)
        rc = -1;
    if (g_proxy > 0 && kx_th_kill(g_proxy) != 0)
        rc = -1;
    if (g_mcp > 0)
        kx_th_kill(g_mcp);
    if (g_silent_fd >= 0)
        close(g_silent_fd);
    kx_th_pg_stop(&g_s.pg);
    kx_th_nats_stop(&g_s.nats);
    kx_th_rmrf(g_s.dir);
    free(g_s.dir);
    return rc;
}

/* GET (or POST) the route for agent with the given X-MCP-* headers (NULL = absent). */
static json_t *get_tools(const char *method, const char *agent, const char *account,
                         const char *url, const char *type, long *status)
{
    char *token = kx_th_jwt(g_s.secret, account, 600);
    char auth[1024], h_url[300], h_type[64], path[256];
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
    free(token);
    const char *headers[6];
    int n = 0;
    headers[n++] = auth;
    if (url) {
        snprintf(h_url, sizeof h_url, "X-MCP-URL: %s", url);
        headers[n++] = h_url;
    }
    if (type) {
        snprintf(h_type, sizeof h_type, "X-MCP-Type: %s", type);
        headers[n++] = h_type;
    }
    if (strcmp(method, "POST") == 0)
        headers[n++] = "Content-Type: application/json";
    headers[n] = NULL;
    snprintf(path, sizeof path, "%s/api/agents/%s/custom-mcp-tools", g_s.base_url, agent);
    kx_http_resp r = {0};
    const char *body = strcmp(method, "POST") == 0 ? "{\"url\": \"x\", \"type\": \"http\"}" : NULL;
    kx_err err = kx_http_request(method, path, headers, body, body ? strlen(body) : 0,
                                 kx_deadline_in(30000), 0, &r);
    *status = err == KX_OK ? r.status : 0;
    json_t *j = err == KX_OK && r.body ? json_loads(r.body, 0, NULL) : NULL;
    kx_http_resp_free(&r);
    return j;
}

static void test_lists_tools_with_enabled_flags(void **state)
{
    (void)state;
    long status = 0;
    json_t *j = get_tools("GET", g_agent, g_owner, g_url, "http", &status);
    assert_int_equal(status, 200);
    assert_non_null(j);
    assert_true(json_is_true(json_object_get(j, "has_mcp_config")));
    assert_string_equal(json_string_value(json_object_get(j, "server_type")), "http");
    json_t *tools = json_object_get(j, "tools");
    assert_true(json_array_size(tools) >= 5);
    int seen = 0;
    size_t i;
    json_t *t;
    json_array_foreach(tools, i, t)
    {
        const char *name = json_string_value(json_object_get(t, "name"));
        bool enabled = json_is_true(json_object_get(t, "enabled"));
        if (strcmp(name, "echo") == 0) {
            assert_true(enabled);
            const char *d = json_string_value(json_object_get(t, "description"));
            assert_null(strstr(d, "(MCP Server:"));
            seen++;
        } else if (strcmp(name, "get-sum") == 0) {
            assert_false(enabled);
            seen++;
        }
    }
    assert_int_equal(seen, 2);
    json_decref(j);
}

static void test_errors(void **state)
{
    (void)state;
    long status = 0;
    json_t *j = get_tools("GET", g_agent, g_owner, NULL, NULL, &status);
    assert_int_equal(status, 400);
    assert_non_null(strstr(json_string_value(json_object_get(j, "detail")), "X-MCP-URL"));
    json_decref(j);

    char stranger[KX_UUID_LEN + 1], nobody[KX_UUID_LEN + 1];
    kx_uuid_new(stranger);
    kx_uuid_new(nobody);
    j = get_tools("GET", g_agent, stranger, g_url, "http", &status);
    assert_int_equal(status, 404); /* another account's private agent: "not found" */
    json_decref(j);
    j = get_tools("GET", nobody, g_owner, g_url, "http", &status);
    assert_int_equal(status, 404);
    json_decref(j);
    j = get_tools("GET", "not-a-uuid", g_owner, g_url, "http", &status);
    assert_int_equal(status, 404);
    json_decref(j);
    j = get_tools("GET", g_agent, g_owner, g_url, "json", &status);
    assert_int_equal(status, 400);
    json_decref(j);
    j = get_tools("GET", g_agent, g_owner, "ftp://a.example/", "http", &status);
    assert_int_equal(status, 400); /* the same URL rule as discovery's, before the proxy */
    assert_non_null(strstr(json_string_value(json_object_get(j, "detail")), "X-MCP-URL must be"));
    json_decref(j);

    /* The NATS port: a loopback service the proxy does not let agents' servers reach. */
    char nats_url[128];
    snprintf(nats_url, sizeof nats_url, "http://127.0.0.1:%u/", g_s.nats.port);
    j = get_tools("GET", g_agent, g_owner, nats_url, "http", &status);
    assert_int_equal(status, 502);
    assert_non_null(strstr(json_string_value(json_object_get(j, "detail")), "loopback"));
    json_decref(j);
}

/* POST body (JSON text) for agent as account. */
static json_t *post_tools(const char *agent, const char *account, const char *body, long *status)
{
    char *token = kx_th_jwt(g_s.secret, account, 600);
    char auth[1024], path[256];
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
    free(token);
    const char *headers[] = {auth, "Content-Type: application/json", NULL};
    snprintf(path, sizeof path, "%s/api/agents/%s/custom-mcp-tools", g_s.base_url, agent);
    kx_http_resp r = {0};
    kx_err err =
        kx_http_request("POST", path, headers, body, strlen(body), kx_deadline_in(30000), 0, &r);
    *status = err == KX_OK ? r.status : 0;
    json_t *j = err == KX_OK && r.body ? json_loads(r.body, 0, NULL) : NULL;
    kx_http_resp_free(&r);
    return j;
}

static char *agent_value(const char *sql)
{
    const char *p[] = {g_agent};
    return kx_th_sql_value(&g_s, sql, 1, p);
}

static void assert_agent_value(const char *sql, const char *want)
{
    char *v = agent_value(sql);
    assert_non_null(v);
    assert_string_equal(v, want);
    free(v);
}

/* Saving the chosen tools makes a new active version, as Kortix does. */
static void test_post_saves_tools_as_a_new_version(void **state)
{
    (void)state;
    char *v1 = agent_value("SELECT current_version_id::text FROM agents WHERE agent_id = $1");
    assert_non_null(v1);
    char body[512];
    snprintf(body, sizeof body,
             "{\"url\": \"%s\", \"type\": \"http\", \"enabled_tools\": [\"echo\", \"get-sum\", "
             "\"echo\"]}",
             g_url);
    long status = 0;
    json_t *j = post_tools(g_agent, g_owner, body, &status);
    assert_int_equal(status, 200);
    assert_true(json_is_true(json_object_get(j, "success")));
    assert_true(json_is_true(json_object_get(j, "created")));
    assert_int_equal(json_integer_value(json_object_get(j, "total_tools")), 2); /* de-duplicated */
    char v2[64];
    snprintf(v2, sizeof v2, "%s", json_string_value(json_object_get(j, "version_id")));
    assert_string_not_equal(v2, v1);
    json_decref(j);

    /* The agent now points at v2; v1 is inactive and linked from it. */
    assert_agent_value("SELECT current_version_id::text FROM agents WHERE agent_id = $1", v2);
    assert_agent_value("SELECT version_count::text FROM agents WHERE agent_id = $1", "2");
    char want[128];
    snprintf(want, sizeof want, "v2 Auto-updated MCP tools %s", v1);
    assert_agent_value("SELECT version_name || ' ' || change_description || ' ' || "
                       "previous_version_id::text FROM agent_versions v JOIN agents a ON "
                       "a.current_version_id = v.version_id WHERE a.agent_id = $1",
                       want);
    assert_agent_value("SELECT string_agg(version_name || '=' || is_active::text, ',' ORDER BY "
                       "version_number) FROM agent_versions WHERE agent_id = $1",
                       "v1=false,v2=true");

    /* The GET reads the new version: both tools enabled. */
    j = get_tools("GET", g_agent, g_owner, g_url, "http", &status);
    assert_int_equal(status, 200);
    int enabled = 0;
    size_t i;
    json_t *t;
    json_array_foreach(json_object_get(j, "tools"), i, t)
    {
        if (json_is_true(json_object_get(t, "enabled")))
            enabled++;
    }
    assert_int_equal(enabled, 2);
    json_decref(j);

    /* The same POST again changes nothing: no third version. */
    j = post_tools(g_agent, g_owner, body, &status);
    assert_int_equal(status, 200);
    assert_true(json_is_false(json_object_get(j, "created")));
    assert_string_equal(json_string_value(json_object_get(j, "version_id")), v2);
    json_decref(j);
    assert_agent_value("SELECT version_count::text FROM agents WHERE agent_id = $1", "2");

    /* A server not in the config yet gets its own entry (the first one is kept). */
    j = post_tools(g_agent, g_owner,
                   "{\"url\": \"https://mcp.example.com/sse\", \"enabled_tools\": [\"search\"]}",
                   &status);
    assert_int_equal(status, 200);
    json_decref(j);
    assert_agent_value(
        "SELECT v.config -> 'custom_mcps' -> 1 ->> 'name' || ' ' || (v.config -> 'custom_mcps' "
        "-> 1 ->> 'type') || ' ' || (v.config -> 'custom_mcps' -> 1 -> 'enabledTools')::text || "
        "' ' || jsonb_array_length(v.config -> 'custom_mcps') || ' ' || v.version_name FROM "
        "agent_versions v JOIN agents a ON a.current_version_id = v.version_id WHERE a.agent_id "
        "= $1",
        "Custom MCP (SSE) sse [\"search\"] 2 v3");
    free(v1);
}

/* Bad bodies are 400 naming the field; only the owner may save; nothing is written. */
static void test_post_errors(void **state)
{
    (void)state;
    char *before = agent_value("SELECT version_count::text FROM agents WHERE agent_id = $1");
    static const struct {
        const char *body, *detail;
    } bad[] = {
        {"{\"type\": \"http\", \"enabled_tools\": []}", "URL is required"},
        {"{\"url\": \"ftp://x/\", \"enabled_tools\": []}", "http://"},
        {"{\"url\": \"http://x/\", \"type\": \"json\"}", "'sse' or 'http'"},
        {"{\"url\": \"http://x/\", \"enabled_tools\": \"echo\"}", "enabled_tools"},
        {"{\"url\": \"http://x/\", \"enabled_tools\": [\"echo\", 7]}", "enabled_tools\"[1]"},
        {"[1, 2]", "JSON object"},
    };
    long status = 0;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        json_t *j = post_tools(g_agent, g_owner, bad[i].body, &status);
        assert_int_equal(status, 400);
        const char *d = json_string_value(json_object_get(j, "detail"));
        if (d == NULL || strstr(d, bad[i].detail) == NULL)
            fail_msg("%s: want \"%s\" in the detail, got \"%s\"", bad[i].body, bad[i].detail,
                     d ? d : "(none)");
        json_decref(j);
    }
    char stranger[KX_UUID_LEN + 1];
    kx_uuid_new(stranger);
    json_t *j = post_tools(g_agent, stranger, "{\"url\": \"http://x/\"}", &status);
    assert_int_equal(status, 404);
    json_decref(j);
    j = post_tools("not-a-uuid", g_owner, "{\"url\": \"http://x/\"}", &status);
    assert_int_equal(status, 404);
    json_decref(j);
    char *after = agent_value("SELECT version_count::text FROM agents WHERE agent_id = $1");
    assert_string_equal(before, after);
    free(before);
    free(after);
}

/* POST /api/mcp/discover-custom-tools with body (NULL: none) as account (NULL: no token). */
static json_t *discover(const char *account, const char *body, long *status)
{
    char auth[1024] = "X-No-Auth: 1";
    if (account != NULL) {
        char *token = kx_th_jwt(g_s.secret, account, 600);
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
        free(token);
    }
    const char *headers[] = {auth, "Content-Type: application/json", NULL};
    char path[256];
    snprintf(path, sizeof path, "%s/api/mcp/discover-custom-tools", g_s.base_url);
    kx_http_resp r = {0};
    kx_err err = kx_http_request("POST", path, headers, body, body ? strlen(body) : 0,
                                 kx_deadline_in(30000), 0, &r);
    *status = err == KX_OK ? r.status : 0;
    json_t *j = err == KX_OK && r.body ? json_loads(r.body, 0, NULL) : NULL;
    kx_http_resp_free(&r);
    return j;
}

static void assert_detail(const json_t *j, const char *want, const char *what)
{
    const char *d = json_string_value(json_object_get(j, "detail"));
    if (d == NULL || strstr(d, want) == NULL)
        fail_msg("%s: want \"%s\" in the detail, got \"%s\"", what, want, d ? d : "(none)");
}

/* A server's tools before it is saved anywhere, in Kortix's shape. */
static void test_discover_lists_a_server(void **state)
{
    (void)state;
    char account[KX_UUID_LEN + 1], body[512];
    kx_uuid_new(account);
    snprintf(body, sizeof body,
             "{\"type\": \"http\", \"config\": {\"url\": \"%s\", \"headers\": {\"X-Trace\": "
             "\"discover-1\"}}}",
             g_url);
    long status = 0;
    json_t *j = discover(account, body, &status);
    assert_int_equal(status, 200);
    assert_true(json_is_true(json_object_get(j, "success")));
    assert_string_equal(json_string_value(json_object_get(j, "qualified_name")),
                        "custom_http_mcp");
    char want[200];
    snprintf(want, sizeof want, "Custom HTTP MCP (%s)", g_url);
    assert_string_equal(json_string_value(json_object_get(j, "display_name")), want);
    assert_string_equal(json_string_value(json_object_get(j, "url")), g_url);
    json_t *config = json_object_get(j, "config"); /* the request's, as Kortix echoed it */
    assert_string_equal(json_string_value(json_object_get(config, "url")), g_url);
    assert_string_equal(json_string_value(
                            json_object_get(json_object_get(config, "headers"), "X-Trace")),
                        "discover-1");
    const char *msg = json_string_value(json_object_get(j, "message"));
    assert_non_null(msg);
    assert_non_null(strstr(msg, "Connected via HTTP ("));
    json_t *tools = json_object_get(j, "tools");
    assert_true(json_array_size(tools) >= 5);
    bool echo = false;
    size_t i;
    json_t *t;
    json_array_foreach(tools, i, t)
    {
        if (strcmp(json_string_value(json_object_get(t, "name")), "echo") != 0)
            continue;
        echo = true;
        const char *d = json_string_value(json_object_get(t, "description"));
        assert_non_null(d);
        assert_null(strstr(d, "(MCP Server:"));
        json_t *schema = json_object_get(t, "inputSchema");
        assert_true(json_is_object(schema));
        assert_string_equal(json_string_value(json_object_get(schema, "type")), "object");
        assert_non_null(json_object_get(json_object_get(schema, "properties"), "message"));
    }
    assert_true(echo);
    json_decref(j);
}

/* Each bad body is a 400 naming the field; no token is 401. Nothing reaches a server. */
static void test_discover_refuses_bad_bodies(void **state)
{
    (void)state;
    char account[KX_UUID_LEN + 1];
    kx_uuid_new(account);
    char longurl[2200] = "{\"type\": \"http\", \"config\": {\"url\": \"http://a.example/";
    size_t n = strlen(longurl);
    memset(longurl + n, 'a', 2060);
    snprintf(longurl + n + 2060, sizeof longurl - n - 2060, "\"}}");
    char many[2048] = "{\"type\": \"sse\", \"config\": {\"url\": \"http://a.example/\", "
                      "\"headers\": {";
    for (int k = 0; k < 33; k++)
        snprintf(many + strlen(many), sizeof many - strlen(many), "%s\"H%d\": \"v\"",
                 k ? ", " : "", k);
    snprintf(many + strlen(many), sizeof many - strlen(many), "}}}");
    static const char *const cfg = "\"config\": {\"url\": \"http://a.example/mcp\"}";
    char no_type[128], json_type[128], num_type[128];
    snprintf(no_type, sizeof no_type, "{%s}", cfg);
    snprintf(json_type, sizeof json_type, "{\"type\": \"json\", %s}", cfg);
    snprintf(num_type, sizeof num_type, "{\"type\": 7, %s}", cfg);
    const struct {
        const char *body, *detail;
    } bad[] = {
        {NULL, "body is required"},
        {"{\"type\": ", "Invalid JSON"},
        {"[1]", "expected an object"},
        {no_type, "\"type\" is required"},
        {json_type, "\"type\" must be 'sse' or 'http'"},
        {num_type, "\"type\" must be 'sse' or 'http'"},
        {"{\"type\": \"http\"}", "\"config\" is required"},
        {"{\"type\": \"http\", \"config\": \"http://a.example/\"}", "\"config\" is required"},
        {"{\"type\": \"http\", \"config\": {}}", "\"config.url\""},
        {"{\"type\": \"http\", \"config\": {\"url\": 5}}", "\"config.url\""},
        {"{\"type\": \"http\", \"config\": {\"url\": \"ftp://a.example/\"}}", "http://"},
        {"{\"type\": \"http\", \"config\": {\"url\": \"file:///etc/passwd\"}}", "\"config.url\""},
        {"{\"type\": \"http\", \"config\": {\"url\": \"http://a b/\"}}", "spaces"},
        {longurl, "at most 2048 bytes"},
        {"{\"type\": \"sse\", \"config\": {\"url\": \"http://a.example/\", \"headers\": []}}",
         "\"config.headers\" must be a JSON object"},
        {"{\"type\": \"sse\", \"config\": {\"url\": \"http://a.example/\", \"headers\": "
         "{\"X-A\": 1}}}",
         "header \"X-A\""},
        {"{\"type\": \"sse\", \"config\": {\"url\": \"http://a.example/\", \"headers\": "
         "{\"X-A\": \"a\\r\\nX-B: b\"}}}",
         "without line breaks"},
        {"{\"type\": \"sse\", \"config\": {\"url\": \"http://a.example/\", \"headers\": "
         "{\"Bad Name\": \"v\"}}}",
         "header \"Bad Name\""},
        {many, "at most 32"},
    };
    long status = 0;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        json_t *j = discover(account, bad[i].body, &status);
        if (status != 400)
            fail_msg("%s: status %ld, want 400", bad[i].body ? bad[i].body : "(no body)", status);
        assert_detail(j, bad[i].detail, bad[i].body ? bad[i].body : "(no body)");
        json_decref(j);
    }
    char body[256];
    snprintf(body, sizeof body, "{\"type\": \"http\", \"config\": {\"url\": \"%s\"}}", g_url);
    json_t *j = discover(NULL, body, &status);
    assert_int_equal(status, 401);
    json_decref(j);
}

/* A server that cannot be read is 502 naming why; one that never answers is 504, in time. */
static void test_discover_unreachable_servers(void **state)
{
    (void)state;
    char account[KX_UUID_LEN + 1], body[256];
    kx_uuid_new(account);
    long status = 0;

    /* nothing listens there (the port is allowed for the proxy): refused */
    snprintf(body, sizeof body,
             "{\"type\": \"http\", \"config\": {\"url\": \"http://127.0.0.1:%u/mcp\"}}",
             g_dead_port);
    json_t *j = discover(account, body, &status);
    assert_int_equal(status, 502);
    assert_detail(j, "Failed to list the MCP server's tools", "refused");
    json_decref(j);

    /* the loopback guard: the NATS port is not one agents' servers may reach */
    snprintf(body, sizeof body,
             "{\"type\": \"sse\", \"config\": {\"url\": \"http://127.0.0.1:%u/sse\"}}",
             g_s.nats.port);
    j = discover(account, body, &status);
    assert_int_equal(status, 502);
    assert_detail(j, "loopback", "loopback");
    json_decref(j);

    /* accepted by the kernel, never answered: 504 after the proxy's 3 s, well within ours */
    snprintf(body, sizeof body,
             "{\"type\": \"http\", \"config\": {\"url\": \"http://127.0.0.1:%u/mcp\"}}",
             g_silent_port);
    int64_t t0 = kx_mono_ms();
    j = discover(account, body, &status);
    int64_t took = kx_mono_ms() - t0;
    assert_int_equal(status, 504);
    assert_detail(j, "did not list its tools in time", "silent");
    json_decref(j);
    if (took > 15000)
        fail_msg("the 504 took %lld ms", (long long)took);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lists_tools_with_enabled_flags),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_post_saves_tools_as_a_new_version),
        cmocka_unit_test(test_post_errors),
        cmocka_unit_test(test_discover_lists_a_server),
        cmocka_unit_test(test_discover_refuses_bad_bodies),
        cmocka_unit_test(test_discover_unreachable_servers),
    };
    return cmocka_run_group_tests(tests, start_all, stop_all);
}
