/* test_gateway_agents.c — agents and versions, the default agent, feature flags and the
 * account's status (GET /api/billing/check-status): the gateway alone against a real
 * nats-server and PostgreSQL (tests/harness/gateway_alone.h), one stack for every case, each
 * case with accounts of its own.
 *   1. the default agent (Suna) is made on the first GET /api/agents, once — also when 8 first
 *      requests race; it cannot be deleted, nor its name or prompt edited (403);
 *   2. create, get, list (search, sort, filters, tools filter, pagination), tools, export and
 *      import, delete; Idempotency-Key makes one agent per key;
 *   3. versions: a metadata change makes none, a config change one, the same change again none;
 *      the list is bounded (8 MiB of configs, 1000 versions; ?before= pages back, ?limit=)
 *      and reads the configs of its page only (the gateway's statement, EXPLAIN's buffers);
 *      8 concurrent config updates make versions 2..9 with distinct numbers and one active;
 *      list, get, compare, activate, rollback (a repeat makes nothing), create with a name, a
 *      taken name (409), a reserved one (400), details (rename, describe);
 *   3b. 8 creates with one Idempotency-Key make one agent; agents made the default at once
 *      (updates and creates) leave exactly one default;
 *   4. every 400 of the bodies and queries names the field; unknown ids are 404;
 *   5. another account: every route on a private agent is 404 and shows nothing of it; a public
 *      agent can be read, not written;
 *   6. feature flags as Kortix answers them; custom_agents off makes the agent routes 403;
 *   7. check-status: no limits, then an operator's runs_per_day reached (can_run false). */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>
#include <libpq-fe.h>

#include "api_client.h"
#include "gateway_alone.h"
#include "kx/http.h"
#include "kx/log.h"
#include "kx/time.h"
#include "kx/uuid.h"
#include "pgplans.h"
#include "store.h"

static kx_th_gw g_gw;
static bool g_failed;

typedef struct account {
    char id[KX_UUID_LEN + 1];
    char *token;
} account;

static void new_account(account *a)
{
    a->token = kx_th_new_account(&g_gw.s, a->id);
    assert_non_null(a->token);
}

/* method path with the account's token (NULL: none), a JSON body (or NULL) and one extra header
 * (or NULL); the answer parsed (NULL when it is not JSON), *status its HTTP status. */
static json_t *call(const account *a, const char *method, const char *path, const char *body,
                    const char *header, long *status)
{
    char url[2048], auth[1200];
    snprintf(url, sizeof url, "%s%s", g_gw.s.base_url, path);
    const char *headers[4] = {NULL, NULL, NULL, NULL};
    size_t n = 0;
    if (a != NULL) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", a->token);
        headers[n++] = auth;
    }
    if (body != NULL)
        headers[n++] = "Content-Type: application/json";
    if (header != NULL)
        headers[n++] = header;
    kx_http_resp r = {0};
    *status = 0;
    if (kx_http_request(method, url, headers, body, body ? strlen(body) : 0, kx_deadline_in(20000),
                        0, &r) != KX_OK)
        return NULL;
    *status = r.status;
    json_t *v = r.body ? json_loads(r.body, JSON_DECODE_ANY, NULL) : NULL;
    kx_http_resp_free(&r);
    return v;
}

/* The call must answer want; returns the body (caller decrefs). */
static json_t *expect(const account *a, const char *method, const char *path, const char *body,
                      long want)
{
    long st = 0;
    json_t *v = call(a, method, path, body, NULL, &st);
    if (st != want) {
        char *t = v ? json_dumps(v, 0) : NULL;
        fprintf(stderr, "%s %s: %ld (want %ld): %s\n", method, path, st, want, t ? t : "-");
        free(t);
    }
    assert_int_equal(st, want);
    assert_non_null(v);
    return v;
}

/* A 4xx whose detail contains what. */
static void expect_error(const account *a, const char *method, const char *path, const char *body,
                         long want, const char *what)
{
    json_t *v = expect(a, method, path, body, want);
    const char *d = json_string_value(json_object_get(v, "detail"));
    if (d == NULL || strstr(d, what) == NULL)
        fprintf(stderr, "%s %s: detail \"%s\" lacks \"%s\"\n", method, path, d ? d : "-", what);
    assert_non_null(d);
    assert_non_null(strstr(d, what));
    json_decref(v);
}

static const char *str(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    assert_non_null(s);
    return s;
}

static char *sql_value(const char *sql, const char *p1)
{
    const char *params[] = {p1};
    return kx_th_sql_value(&g_gw.s, sql, p1 ? 1 : 0, params);
}

static long sql_long(const char *sql, const char *p1)
{
    char *v = sql_value(sql, p1);
    assert_non_null(v);
    long n = strtol(v, NULL, 10);
    free(v);
    return n;
}

/* Creates an agent from body; its id into id. */
static void create_agent(const account *a, const char *body, char id[KX_UUID_LEN + 1])
{
    json_t *v = expect(a, "POST", "/api/agents", body, 200);
    snprintf(id, KX_UUID_LEN + 1, "%s", str(v, "agent_id"));
    json_decref(v);
}

static int setup(void **state)
{
    (void)state;
    kx_log_init("test-gateway-agents", "test");
    kx_log_set_level(KX_LOG_WARN);
    memset(&g_gw, 0, sizeof g_gw);
    return kx_th_gw_start(&g_gw, "kx-it-gw-agents", NULL) == KX_OK ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    kx_th_gw_stop(&g_gw, g_failed);
    return 0;
}

/* ---- 1. the default agent ---- */

typedef struct list_job {
    const account *a;
    long status;
    pthread_t t;
} list_job;

static void *list_agents(void *arg)
{
    list_job *j = arg;
    json_t *v = call(j->a, "GET", "/api/agents", NULL, NULL, &j->status);
    json_decref(v);
    return NULL;
}

static void test_default_agent(void **state)
{
    (void)state;
    g_failed = true;
    account a;
    new_account(&a);
    json_t *v = expect(&a, "GET", "/api/agents", NULL, 200);
    json_t *agents = json_object_get(v, "agents");
    assert_int_equal(json_array_size(agents), 1);
    json_t *suna = json_array_get(agents, 0);
    assert_string_equal(str(suna, "name"), "Suna");
    assert_true(json_is_true(json_object_get(suna, "is_default")));
    assert_true(
        json_is_true(json_object_get(json_object_get(suna, "metadata"), "is_suna_default")));
    assert_true(
        json_is_true(json_object_get(json_object_get(suna, "agentpress_tools"), "sb_shell_tool")));
    assert_int_equal(json_integer_value(json_object_get(suna, "version_count")), 1);
    assert_string_equal(str(json_object_get(suna, "current_version"), "version_name"), "v1");
    assert_int_equal(json_integer_value(
                         json_object_get(json_object_get(v, "pagination"), "total")),
                     1);
    char id[KX_UUID_LEN + 1], path[200];
    snprintf(id, sizeof id, "%s", str(suna, "agent_id"));
    json_decref(v);
    /* a second list makes no second Suna */
    json_decref(expect(&a, "GET", "/api/agents", NULL, 200));
    assert_int_equal(sql_long("SELECT count(*) FROM agents WHERE account_id = $1", a.id), 1);

    /* 8 first requests at once: one Suna */
    account b;
    new_account(&b);
    list_job jobs[8];
    for (int i = 0; i < 8; i++) {
        jobs[i].a = &b;
        assert_int_equal(pthread_create(&jobs[i].t, NULL, list_agents, &jobs[i]), 0);
    }
    for (int i = 0; i < 8; i++) {
        pthread_join(jobs[i].t, NULL);
        assert_int_equal(jobs[i].status, 200);
    }
    assert_int_equal(sql_long("SELECT count(*) FROM agents WHERE account_id = $1", b.id), 1);
    assert_int_equal(sql_long("SELECT count(*) FROM agent_versions WHERE account_id = $1", b.id),
                     1);

    /* the default agent stays; Suna's name and prompt are not the user's to edit */
    snprintf(path, sizeof path, "/api/agents/%s", id);
    expect_error(&a, "DELETE", path, NULL, 400, "Cannot delete default agent");
    expect_error(&a, "PUT", path, "{\"name\": \"Mine\"}", 403, "name cannot be edited");
    expect_error(&a, "PUT", path, "{\"system_prompt\": \"x\"}", 403,
                 "system_prompt cannot be edited");
    /* its MCP servers may change (mcps_editable), and that makes v2 */
    v = expect(&a, "PUT", path,
               "{\"custom_mcps\": [{\"name\": \"s\", \"type\": \"http\", \"config\": {\"url\": "
               "\"https://example.com/mcp\"}, \"enabledTools\": [\"t\"]}]}",
               200);
    assert_int_equal(json_integer_value(json_object_get(v, "version_count")), 2);
    json_decref(v);
    free(a.token);
    free(b.token);
    g_failed = false;
}

/* ---- 2. CRUD, list, tools, export/import ---- */

static void test_agents_crud(void **state)
{
    (void)state;
    g_failed = true;
    account a;
    new_account(&a);
    char alpha[KX_UUID_LEN + 1], beta[KX_UUID_LEN + 1], gamma[KX_UUID_LEN + 1];
    create_agent(&a,
                 "{\"name\": \"Alpha researcher\", \"description\": \"finds papers\", "
                 "\"system_prompt\": \"You research.\", \"model\": \"demo/model\", "
                 "\"agentpress_tools\": {\"sb_shell_tool\": true, \"web_search_tool\": "
                 "{\"enabled\": false}}, \"configured_mcps\": [], \"custom_mcps\": [{\"name\": "
                 "\"docs\", \"type\": \"http\", \"config\": {\"url\": \"https://x.example/mcp\"}, "
                 "\"enabledTools\": [\"search\", \"read\"]}], \"avatar\": \"🔬\", "
                 "\"avatar_color\": \"#112233\", \"tags\": [\"research\"]}",
                 alpha);
    create_agent(&a, "{\"name\": \"beta writer\", \"system_prompt\": \"You write.\"}", beta);
    create_agent(&a,
                 "{\"name\": \"Gamma 100%_sure\", \"system_prompt\": \"\", \"agentpress_tools\": "
                 "{\"sb_files_tool\": true, \"sb_shell_tool\": true, \"web_search_tool\": true}}",
                 gamma);
    char path[300];
    snprintf(path, sizeof path, "/api/agents/%s", alpha);
    json_t *v = expect(&a, "GET", path, NULL, 200);
    assert_string_equal(str(v, "name"), "Alpha researcher");
    assert_string_equal(str(v, "system_prompt"), "You research.");
    assert_string_equal(str(v, "model"), "demo/model");
    assert_string_equal(str(v, "avatar_color"), "#112233");
    assert_false(json_is_true(json_object_get(v, "is_default")));
    assert_string_equal(str(json_object_get(v, "current_version"), "change_description"),
                        "Initial version");
    assert_int_equal(json_array_size(json_object_get(v, "custom_mcps")), 1);
    json_decref(v);
    /* the runner's view of the current version */
    char *cfg = sql_value("SELECT kx_agent_config(current_version_id)::text FROM agents WHERE "
                          "agent_id = $1",
                          alpha);
    assert_non_null(cfg);
    assert_non_null(strstr(cfg, "\"system_prompt\" : \"You research.\""));
    assert_non_null(strstr(cfg, "\"enabledTools\": [\"search\", \"read\"]"));
    free(cfg);

    /* list: Suna + 3; search (ILIKE, % and _ literal), sort, filters, pagination */
    v = expect(&a, "GET", "/api/agents?sort_by=name&sort_order=asc", NULL, 200);
    json_t *agents = json_object_get(v, "agents");
    assert_int_equal(json_array_size(agents), 4);
    assert_string_equal(str(json_array_get(agents, 0), "name"), "Alpha researcher");
    assert_string_equal(str(json_array_get(agents, 1), "name"), "beta writer");
    assert_string_equal(str(json_array_get(agents, 3), "name"), "Suna");
    json_decref(v);
    v = expect(&a, "GET", "/api/agents?search=PAPERS", NULL, 200);
    assert_int_equal(json_array_size(json_object_get(v, "agents")), 1);
    json_decref(v);
    v = expect(&a, "GET", "/api/agents?search=100%25_", NULL, 200);
    assert_int_equal(json_array_size(json_object_get(v, "agents")), 1);
    json_decref(v);
    v = expect(&a, "GET", "/api/agents?search=0%25s", NULL, 200); /* "0%s": % is literal */
    assert_int_equal(json_array_size(json_object_get(v, "agents")), 0);
    json_decref(v);
    v = expect(&a, "GET", "/api/agents?has_default=false&has_mcp_tools=true", NULL, 200);
    assert_int_equal(json_array_size(json_object_get(v, "agents")), 1);
    assert_string_equal(str(json_array_get(json_object_get(v, "agents"), 0), "agent_id"), alpha);
    json_decref(v);
    v = expect(&a, "GET", "/api/agents?has_agentpress_tools=false", NULL, 200);
    assert_int_equal(json_array_size(json_object_get(v, "agents")), 1); /* beta */
    json_decref(v);
    v = expect(&a, "GET", "/api/agents?tools=agentpress:sb_shell_tool,%20mcp:docs", NULL, 200);
    assert_int_equal(json_array_size(json_object_get(v, "agents")), 1);
    json_decref(v);
    v = expect(&a, "GET", "/api/agents?tools=agentpress:web_search_tool", NULL, 200);
    assert_int_equal(json_array_size(json_object_get(v, "agents")), 2); /* gamma, Suna */
    json_decref(v);
    v = expect(&a, "GET", "/api/agents?sort_by=tools_count&sort_order=desc&has_default=false",
               NULL, 200);
    assert_string_equal(str(json_array_get(json_object_get(v, "agents"), 0), "agent_id"), gamma);
    json_decref(v);
    v = expect(&a, "GET", "/api/agents?limit=3&page=2", NULL, 200);
    assert_int_equal(json_array_size(json_object_get(v, "agents")), 1);
    json_t *pg = json_object_get(v, "pagination");
    assert_int_equal(json_integer_value(json_object_get(pg, "total")), 4);
    assert_int_equal(json_integer_value(json_object_get(pg, "pages")), 2);
    assert_int_equal(json_integer_value(json_object_get(pg, "page")), 2);
    json_decref(v);

    /* tools */
    snprintf(path, sizeof path, "/api/agents/%s/tools", alpha);
    v = expect(&a, "GET", path, NULL, 200);
    json_t *ap = json_object_get(v, "agentpress_tools"), *mt = json_object_get(v, "mcp_tools");
    assert_int_equal(json_array_size(ap), 2);
    assert_string_equal(str(json_array_get(ap, 0), "name"), "sb_shell_tool");
    assert_true(json_is_true(json_object_get(json_array_get(ap, 0), "enabled")));
    assert_false(json_is_true(json_object_get(json_array_get(ap, 1), "enabled")));
    assert_int_equal(json_array_size(mt), 2);
    assert_string_equal(str(json_array_get(mt, 1), "name"), "read");
    assert_string_equal(str(json_array_get(mt, 1), "server"), "docs");
    json_decref(v);

    /* export, then import it as a new agent with the same config */
    snprintf(path, sizeof path, "/api/agents/%s/export", alpha);
    v = expect(&a, "GET", path, NULL, 200);
    assert_string_equal(str(v, "export_version"), "1.0");
    assert_string_equal(str(v, "exported_by"), a.id);
    assert_string_equal(str(v, "system_prompt"), "You research.");
    json_t *imp = json_pack("{s:O, s:b}", "import_data", v, "import_as_new", 1);
    json_decref(v);
    char *imp_text = json_dumps(imp, 0);
    json_decref(imp);
    v = expect(&a, "POST", "/api/agents/import", imp_text, 200);
    free(imp_text);
    assert_string_not_equal(str(v, "agent_id"), alpha);
    assert_string_equal(str(v, "name"), "Alpha researcher");
    assert_string_equal(str(v, "model"), "demo/model");
    assert_int_equal(json_array_size(json_object_get(v, "custom_mcps")), 1);
    assert_string_equal(str(json_object_get(v, "current_version"), "change_description"),
                        "Imported agent");
    json_decref(v);

    /* Idempotency-Key: one agent per key, the repeat answers the same one */
    long st1 = 0, st2 = 0;
    const char *body = "{\"name\": \"once\", \"system_prompt\": \"p\"}";
    json_t *v1 = call(&a, "POST", "/api/agents", body, "Idempotency-Key: key-1", &st1);
    json_t *v2 = call(&a, "POST", "/api/agents", body, "Idempotency-Key: key-1", &st2);
    assert_int_equal(st1, 200);
    assert_int_equal(st2, 200);
    assert_string_equal(str(v1, "agent_id"), str(v2, "agent_id"));
    json_decref(v1);
    json_decref(v2);
    assert_int_equal(
        sql_long("SELECT count(*) FROM agents WHERE account_id = $1 AND name = 'once'", a.id), 1);
    v1 = call(&a, "POST", "/api/agents", body, "Idempotency-Key: has space", &st1);
    assert_int_equal(st1, 400);
    assert_non_null(strstr(str(v1, "detail"), "Idempotency-Key"));
    json_decref(v1);

    /* POST custom-mcp-tools (migration 007's kx_agent_save_mcp_tools, with parameters): a
     * URL with quotes, a backslash and non-ASCII is stored as sent; the same tools again write
     * nothing */
    snprintf(path, sizeof path, "/api/agents/%s/custom-mcp-tools", beta);
    const char *save = "{\"url\": \"https://x.example/a'b\\\"c\\\\d/\u00e9?q=');--\", "
                       "\"type\": \"http\", \"enabled_tools\": [\"t'1\", \"t2\"]}";
    v = expect(&a, "POST", path, save, 200);
    assert_true(json_is_true(json_object_get(v, "created")));
    json_decref(v);
    v = expect(&a, "POST", path, save, 200);
    assert_false(json_is_true(json_object_get(v, "created")));
    json_decref(v);
    snprintf(path, sizeof path, "/api/agents/%s", beta);
    v = expect(&a, "GET", path, NULL, 200);
    assert_int_equal(json_integer_value(json_object_get(v, "version_count")), 2);
    json_t *entry = json_array_get(json_object_get(v, "custom_mcps"), 0);
    assert_string_equal(str(json_object_get(entry, "config"), "url"),
                        "https://x.example/a'b\"c\\d/\xc3\xa9?q=');--");
    assert_string_equal(json_string_value(
                            json_array_get(json_object_get(entry, "enabledTools"), 0)),
                        "t'1");
    json_decref(v);

    /* delete */
    snprintf(path, sizeof path, "/api/agents/%s", beta);
    v = expect(&a, "DELETE", path, NULL, 200);
    assert_string_equal(str(v, "message"), "Agent deleted successfully");
    json_decref(v);
    expect_error(&a, "GET", path, NULL, 404, "Agent not found");
    expect_error(&a, "DELETE", path, NULL, 404, "Agent not found");
    assert_int_equal(sql_long("SELECT count(*) FROM agent_versions WHERE agent_id = $1", beta), 0);
    free(a.token);
    g_failed = false;
}

/* ---- 3. versions ---- */

typedef struct update_job {
    const account *a;
    const char *agent;
    int i;
    long status;
    pthread_t t;
} update_job;

static void *update_prompt(void *arg)
{
    update_job *j = arg;
    char path[200], body[100];
    snprintf(path, sizeof path, "/api/agents/%s", j->agent);
    snprintf(body, sizeof body, "{\"system_prompt\": \"prompt %d\"}", j->i);
    json_decref(call(j->a, "PUT", path, body, NULL, &j->status));
    return NULL;
}

static void test_versions(void **state)
{
    (void)state;
    g_failed = true;
    account a;
    new_account(&a);
    char id[KX_UUID_LEN + 1], path[300], v1[KX_UUID_LEN + 1], v2[KX_UUID_LEN + 1];
    create_agent(&a, "{\"name\": \"versioned\", \"system_prompt\": \"one\"}", id);
    snprintf(path, sizeof path, "/api/agents/%s", id);
    /* metadata only: no version */
    json_t *v = expect(&a, "PUT", path,
                       "{\"name\": \"renamed\", \"description\": \"d\", \"tags\": [\"a\"], "
                       "\"avatar\": \"x\"}",
                       200);
    assert_string_equal(str(v, "name"), "renamed");
    assert_int_equal(json_integer_value(json_object_get(v, "version_count")), 1);
    snprintf(v1, sizeof v1, "%s", str(v, "current_version_id"));
    json_decref(v);
    /* keys the API does not edit (the runner's, set by an operator) survive new versions */
    PQclear(kx_th_sql(&g_gw.s,
                      "UPDATE agent_versions SET config = config || "
                      "'{\"tool_execution_strategy\": \"sequential\"}' WHERE version_id = $1",
                      1, (const char *const[]){v1}));
    /* a config change: v2; the same again: nothing */
    v = expect(&a, "PUT", path, "{\"system_prompt\": \"two\", \"model\": \"m2\"}", 200);
    assert_int_equal(json_integer_value(json_object_get(v, "version_count")), 2);
    json_t *cur = json_object_get(v, "current_version");
    assert_string_equal(str(cur, "version_name"), "v2");
    assert_string_equal(str(cur, "change_description"), "Configuration updated");
    assert_string_equal(str(cur, "previous_version_id"), v1);
    snprintf(v2, sizeof v2, "%s", str(v, "current_version_id"));
    json_decref(v);
    v = expect(&a, "PUT", path, "{\"system_prompt\": \"two\"}", 200);
    assert_int_equal(json_integer_value(json_object_get(v, "version_count")), 2);
    json_decref(v);
    char *kept = sql_value("SELECT config ->> 'tool_execution_strategy' FROM agent_versions "
                           "WHERE version_id = $1",
                           v2);
    assert_non_null(kept);
    assert_string_equal(kept, "sequential");
    free(kept);

    /* 8 concurrent config updates: versions 3..10, distinct, one active, the current one */
    update_job jobs[8];
    for (int i = 0; i < 8; i++) {
        jobs[i] = (update_job){.a = &a, .agent = id, .i = i};
        assert_int_equal(pthread_create(&jobs[i].t, NULL, update_prompt, &jobs[i]), 0);
    }
    for (int i = 0; i < 8; i++) {
        pthread_join(jobs[i].t, NULL);
        assert_int_equal(jobs[i].status, 200);
    }
    assert_int_equal(sql_long("SELECT count(DISTINCT version_number) FROM agent_versions WHERE "
                              "agent_id = $1 AND version_number BETWEEN 1 AND 10",
                              id),
                     10);
    assert_int_equal(sql_long("SELECT count(*) FROM agent_versions WHERE agent_id = $1 AND "
                              "is_active",
                              id),
                     1);
    assert_int_equal(sql_long("SELECT count(*) FROM agents a JOIN agent_versions v ON "
                              "v.version_id = a.current_version_id WHERE a.agent_id = $1 AND "
                              "v.is_active AND v.version_number = 10 AND a.version_count = 10",
                              id),
                     1);

    /* list (newest first), get, compare */
    snprintf(path, sizeof path, "/api/agents/%s/versions", id);
    v = expect(&a, "GET", path, NULL, 200);
    assert_int_equal(json_array_size(v), 10);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(v, 0), "version_number")),
                     10);
    assert_string_equal(str(json_array_get(v, 0), "status"), "active");
    assert_string_equal(str(json_array_get(v, 9), "status"), "inactive");
    json_decref(v);
    snprintf(path, sizeof path, "/api/agents/%s/versions/%s", id, v2);
    v = expect(&a, "GET", path, NULL, 200);
    assert_string_equal(str(v, "system_prompt"), "two");
    assert_string_equal(str(v, "model"), "m2");
    json_decref(v);
    snprintf(path, sizeof path, "/api/agents/%s/versions/%s/compare/%s", id, v1, v2);
    v = expect(&a, "GET", path, NULL, 200);
    json_t *d = json_object_get(v, "differences");
    assert_int_equal(json_array_size(d), 2);
    assert_string_equal(str(json_array_get(d, 0), "field"), "system_prompt");
    assert_string_equal(str(json_array_get(d, 0), "old_value"), "one");
    assert_string_equal(str(json_array_get(d, 0), "new_value"), "two");
    assert_string_equal(str(json_array_get(d, 1), "field"), "model");
    json_decref(v);

    /* activate v1: current, the only active one; twice is the same */
    snprintf(path, sizeof path, "/api/agents/%s/versions/%s/activate", id, v1);
    for (int i = 0; i < 2; i++) {
        v = expect(&a, "PUT", path, NULL, 200);
        assert_string_equal(str(v, "message"), "Version activated successfully");
        json_decref(v);
    }
    snprintf(path, sizeof path, "/api/agents/%s", id);
    v = expect(&a, "GET", path, NULL, 200);
    assert_string_equal(str(v, "current_version_id"), v1);
    assert_string_equal(str(v, "system_prompt"), "one");
    json_decref(v);
    assert_int_equal(sql_long("SELECT count(*) FROM agent_versions WHERE agent_id = $1 AND "
                              "is_active",
                              id),
                     1);

    /* rollback to v2: v11 with v2's config; again: nothing new */
    snprintf(path, sizeof path, "/api/agents/%s/versions/%s/rollback", id, v2);
    v = expect(&a, "POST", path, NULL, 200);
    assert_int_equal(json_integer_value(json_object_get(v, "version_number")), 11);
    assert_string_equal(str(v, "change_description"), "Rolled back to version v2");
    assert_string_equal(str(v, "system_prompt"), "two");
    assert_true(json_is_true(json_object_get(v, "created")));
    json_decref(v);
    v = expect(&a, "POST", path, NULL, 200);
    assert_int_equal(json_integer_value(json_object_get(v, "version_number")), 11);
    assert_false(json_is_true(json_object_get(v, "created")));
    json_decref(v);

    /* create a named version; the name again is 409; v<n> names are the automatic ones */
    snprintf(path, sizeof path, "/api/agents/%s/versions", id);
    v = expect(&a, "POST", path,
               "{\"system_prompt\": \"named\", \"version_name\": \"release\", \"description\": "
               "\"first release\", \"agentpress_tools\": {\"sb_shell_tool\": true}}",
               200);
    assert_string_equal(str(v, "version_name"), "release");
    assert_string_equal(str(v, "change_description"), "first release");
    assert_string_equal(str(v, "status"), "active");
    assert_true(
        json_is_true(json_object_get(json_object_get(v, "agentpress_tools"), "sb_shell_tool")));
    json_decref(v);
    expect_error(&a, "POST", path, "{\"system_prompt\": \"x\", \"version_name\": \"release\"}",
                 409, "already used");
    expect_error(&a, "POST", path, "{\"system_prompt\": \"x\", \"version_name\": \"v13\"}", 400,
                 "version_name");
    expect_error(&a, "POST", path, "{\"version_name\": \"n\"}", 400, "system_prompt is required");

    /* details: rename v2 and describe it; a taken name is 409; nothing to change is 400 */
    snprintf(path, sizeof path, "/api/agents/%s/versions/%s/details", id, v2);
    v = expect(&a, "PUT", path,
               "{\"version_name\": \"second\", \"change_description\": \"the second one\"}", 200);
    assert_string_equal(str(v, "version_name"), "second");
    assert_string_equal(str(v, "change_description"), "the second one");
    assert_string_equal(str(v, "system_prompt"), "two");
    json_decref(v);
    expect_error(&a, "PUT", path, "{\"version_name\": \"release\"}", 409, "already used");
    expect_error(&a, "PUT", path, "{}", 400, "nothing to change");
    expect_error(&a, "PUT", path, "{\"change_description\": 3}", 400,
                 "change_description must be a string");

    /* unknown versions and paths */
    char other[KX_UUID_LEN + 1];
    kx_uuid_new(other);
    snprintf(path, sizeof path, "/api/agents/%s/versions/%s", id, other);
    expect_error(&a, "GET", path, NULL, 404, "Version not found");
    snprintf(path, sizeof path, "/api/agents/%s/versions/%s/activate", id, other);
    expect_error(&a, "PUT", path, NULL, 404, "Version not found");
    snprintf(path, sizeof path, "/api/agents/%s/versions/%s/rollback", id, other);
    expect_error(&a, "POST", path, NULL, 404, "Version not found");
    snprintf(path, sizeof path, "/api/agents/%s/versions/%s/details", id, other);
    expect_error(&a, "PUT", path, "{\"version_name\": \"x\"}", 404, "Version not found");
    snprintf(path, sizeof path, "/api/agents/%s/versions/%s/compare/%s", id, v1, other);
    expect_error(&a, "GET", path, NULL, 404, "Version not found");
    snprintf(path, sizeof path, "/api/agents/%s/versions/not-a-uuid", id);
    expect_error(&a, "GET", path, NULL, 404, "Version not found");
    snprintf(path, sizeof path, "/api/agents/%s/versions/%s/bogus", id, v1);
    expect_error(&a, "GET", path, NULL, 404, "Not Found");
    free(a.token);
    g_failed = false;
}

/* ---- 3b. races: one agent per Idempotency-Key, one default agent ---- */

typedef struct race_job {
    const account *a;
    const char *method, *path, *body, *header;
    long status;
    char agent_id[KX_UUID_LEN + 1];
    pthread_t t;
} race_job;

/* The versions list answers the newest versions up to 8 MiB of config (the newest always) and
 * 1000 of them, newest first; ?before=<version_number> pages back, ?limit= takes fewer. It
 * answered every version at once: an agent edited a few thousand times with 256 KiB prompts
 * was a response of a GB for any reader of a public agent. Here 40 versions of ~240 KB. */
static void test_versions_list_is_bounded(void **state)
{
    (void)state;
    account a;
    new_account(&a);
    char id[KX_UUID_LEN + 1], path[256];
    create_agent(&a, "{\"name\": \"many versions\", \"system_prompt\": \"v1\"}", id);
    enum {
        N = 40,
        PROMPT = 240000
    };
    char *body = malloc(PROMPT + 128);
    assert_non_null(body);
    snprintf(path, sizeof path, "/api/agents/%s/versions", id);
    for (int i = 0; i < N; i++) {
        int n = snprintf(body, 64, "{\"system_prompt\": \"%d ", i);
        memset(body + n, 'p', PROMPT);
        snprintf(body + n + PROMPT, 32, "\"}");
        json_decref(expect(&a, "POST", path, body, 200));
    }
    free(body);
    json_t *first = expect(&a, "GET", path, NULL, 200);
    size_t got = json_array_size(first);
    print_message("[ versions ] %zu of %d in the first page\n", got, N + 1);
    assert_true(got >= 30 && got < N + 1); /* 8 MiB of ~240 KB configs: 34 or 35 */
    long newest =
        (long)json_integer_value(json_object_get(json_array_get(first, 0), "version_number"));
    assert_int_equal(newest, N + 1);
    long last = (long)json_integer_value(
        json_object_get(json_array_get(first, got - 1), "version_number"));
    assert_int_equal(last, N + 1 - (long)got + 1); /* contiguous, newest first */
    json_decref(first);

    char page[320];
    snprintf(page, sizeof page, "%s?before=%ld", path, last);
    json_t *rest = expect(&a, "GET", page, NULL, 200);
    assert_int_equal(json_array_size(rest), (size_t)(N + 1) - got);
    assert_int_equal(json_integer_value(
                         json_object_get(json_array_get(rest, 0), "version_number")),
                     last - 1);
    json_decref(rest);

    snprintf(page, sizeof page, "%s?limit=3", path);
    json_t *three = expect(&a, "GET", page, NULL, 200);
    assert_int_equal(json_array_size(three), 3);
    assert_int_equal(json_integer_value(
                         json_object_get(json_array_get(three, 2), "version_number")),
                     N - 1);
    json_decref(three);
    snprintf(page, sizeof page, "%s?limit=0", path);
    expect_error(&a, "GET", page, NULL, 400, "limit");
    snprintf(page, sizeof page, "%s?before=soon", path);
    expect_error(&a, "GET", page, NULL, 400, "before");
    free(a.token);
}

/* A page of versions reads the configs of its own versions only: the page is chosen from
 * version_number and config_bytes, then its versions are read. Before, the window took every
 * version whole, so a list read the config of every version up to ?limit (1000 by default) —
 * or of every version, when the plan sorted them — whatever the 8 MiB of the page: an agent
 * edited thousands of times with 256 KiB prompts made each list read hundreds of MB for any
 * reader of a public agent. Checked on the gateway's own statement, with a page of 100 KB: two
 * of 151 versions of ~40 KB are read, not the 151. */
static void test_versions_list_reads_only_its_page(void **state)
{
    (void)state;
    account a;
    new_account(&a);
    char id[KX_UUID_LEN + 1], path[256];
    create_agent(&a, "{\"name\": \"edited often\", \"system_prompt\": \"v1\"}", id);
    const char *p[] = {id, a.id};
    char *n = kx_th_sql_value(&g_gw.s,
                              "WITH v AS (INSERT INTO agent_versions (agent_id, account_id, "
                              "version_number, version_name, config) SELECT $1::uuid, $2::uuid, "
                              "g, 'bulk ' || g, jsonb_build_object('tools', '{}'::jsonb, "
                              "'system_prompt', (SELECT string_agg(md5(g || '.' || i), '') "
                              "FROM generate_series(1, 1250) i)) FROM generate_series(2, 151) g "
                              "RETURNING 1) SELECT count(*) FROM v",
                              2, p);
    assert_non_null(n);
    assert_string_equal(n, "150");
    free(n);
    snprintf(path, sizeof path, "/api/agents/%s/versions?limit=1", id);
    json_t *one = expect(&a, "GET", path, NULL, 200);
    assert_int_equal(json_array_size(one), 1);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(one, 0), "version_number")),
                     151);
    json_decref(one);

    PGconn *c = PQconnectdb(g_gw.s.pg.url);
    assert_int_equal(PQstatus(c), CONNECTION_OK);
    const char *sql = kx_th_stmt_sql(gw_store_statements, "gw_versions_list");
    assert_non_null(sql);
    PGresult *r = PQprepare(c, "list", sql, 0, NULL);
    assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
    PQclear(r);
    const char *args[] = {id, a.id, NULL, "1000", "100000"};
    r = PQexecPrepared(c, "list", 5, args, NULL, NULL, 0);
    assert_int_equal(PQntuples(r), 1);
    json_t *page = json_loads(PQgetvalue(r, 0, 0), 0, NULL);
    PQclear(r);
    assert_int_equal(json_array_size(page), 2); /* ~40 KB each within 100 KB */
    json_decref(page);
    char explain[200];
    snprintf(explain, sizeof explain, "EXECUTE list('%s', '%s', NULL, 1000, 100000)", id, a.id);
    long blocks = kx_th_plan_buffers(c, explain);
    PQfinish(c);
    print_message("[ versions ] a page of 2 of 151 versions: %ld buffers\n", blocks);
    assert_true(blocks > 0);
    if (blocks > 200) /* ~30 here, over 1000 before */
        fail_msg("a page of 2 versions touched %ld buffers: every version's config read", blocks);
    free(a.token);
}

/* Deleting an agent follows every reference to it and to its versions backwards (runs,
 * messages, versions, agents, triggers, each set to NULL or deleted): each follows an index.
 * None had one, so each was a scan of the whole table — once per version for agent_runs,
 * messages, agent_versions and agents: on a grown database an agent with a few versions could
 * not be deleted within the statement timeout (migration 024). Checked in the deleting
 * transaction (sequential scans discouraged: one still made has no index to use), then rolled
 * back, then the delete through the API. */
static void test_agent_delete_reads_indexes(void **state)
{
    (void)state;
    account a;
    new_account(&a);
    char id[KX_UUID_LEN + 1], path[200];
    create_agent(&a, "{\"name\": \"to delete\", \"system_prompt\": \"v1\"}", id);
    snprintf(path, sizeof path, "/api/agents/%s/versions", id);
    json_decref(expect(&a, "POST", path, "{\"system_prompt\": \"v2\"}", 200));
    json_decref(expect(&a, "POST", path, "{\"system_prompt\": \"v3\"}", 200));
    PGconn *c = PQconnectdb(g_gw.s.pg.url);
    assert_int_equal(PQstatus(c), CONNECTION_OK);
    PQclear(PQexec(c, "BEGIN"));
    PQclear(PQexec(c, "SET LOCAL enable_seqscan = off"));
    const char *p[] = {id};
    PGresult *r =
        PQexecParams(c, "DELETE FROM agents WHERE agent_id = $1::uuid", 1, NULL, p, NULL, NULL, 0);
    assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
    assert_string_equal(PQcmdTuples(r), "1");
    PQclear(r);
    r = PQexec(c,
               "SELECT coalesce(string_agg(relname || ' ' || seq_scan, ', ' ORDER BY relname), "
               "'') FROM pg_stat_xact_user_tables WHERE seq_scan > 0");
    assert_int_equal(PQntuples(r), 1);
    if (PQgetvalue(r, 0, 0)[0] != '\0')
        fail_msg("deleting an agent with 3 versions scanned whole tables: %s",
                 PQgetvalue(r, 0, 0));
    PQclear(r);
    PQclear(PQexec(c, "ROLLBACK"));
    PQfinish(c);
    snprintf(path, sizeof path, "/api/agents/%s", id);
    json_decref(expect(&a, "DELETE", path, NULL, 200));
    free(a.token);
}

static void *race(void *arg)
{
    race_job *j = arg;
    json_t *v = call(j->a, j->method, j->path, j->body, j->header, &j->status);
    const char *id = json_string_value(json_object_get(v, "agent_id"));
    snprintf(j->agent_id, sizeof j->agent_id, "%s", id != NULL ? id : "");
    json_decref(v);
    return NULL;
}

static void run_races(race_job *jobs, int n)
{
    for (int i = 0; i < n; i++)
        assert_int_equal(pthread_create(&jobs[i].t, NULL, race, &jobs[i]), 0);
    for (int i = 0; i < n; i++) {
        pthread_join(jobs[i].t, NULL);
        assert_int_equal(jobs[i].status, 200);
    }
}

static void test_races(void **state)
{
    (void)state;
    g_failed = true;
    account a;
    new_account(&a);
    race_job jobs[8];
    for (int i = 0; i < 8; i++)
        jobs[i] = (race_job){.a = &a,
                             .method = "POST",
                             .path = "/api/agents",
                             .body = "{\"name\": \"raced\", \"system_prompt\": \"p\"}",
                             .header = "Idempotency-Key: race-key"};
    run_races(jobs, 8);
    for (int i = 1; i < 8; i++)
        assert_string_equal(jobs[i].agent_id, jobs[0].agent_id);
    assert_int_equal(sql_long("SELECT count(*) FROM agents WHERE account_id = $1", a.id), 1);
    assert_int_equal(sql_long("SELECT count(*) FROM agent_versions WHERE account_id = $1", a.id),
                     1);

    /* two agents made the default at once, back and forth: always exactly one default */
    char x[KX_UUID_LEN + 1], y[KX_UUID_LEN + 1], px[200], py[200];
    create_agent(&a, "{\"name\": \"x\", \"system_prompt\": \"p\"}", x);
    create_agent(&a, "{\"name\": \"y\", \"system_prompt\": \"p\", \"is_default\": true}", y);
    snprintf(px, sizeof px, "/api/agents/%s", x);
    snprintf(py, sizeof py, "/api/agents/%s", y);
    for (int i = 0; i < 8; i++)
        jobs[i] = (race_job){.a = &a,
                             .method = "PUT",
                             .path = i % 2 ? px : py,
                             .body = "{\"is_default\": true}"};
    run_races(jobs, 8);
    assert_int_equal(sql_long("SELECT count(*) FROM agents WHERE account_id = $1 AND is_default",
                              a.id),
                     1);
    /* and creating with is_default while updating: still one */
    for (int i = 0; i < 8; i++)
        jobs[i] = i % 2
            ? (race_job){.a = &a,
                         .method = "POST",
                         .path = "/api/agents",
                         .body = "{\"name\": \"z\", \"system_prompt\": \"p\", "
                                 "\"is_default\": true}"}
            : (race_job){.a = &a, .method = "PUT", .path = px, .body = "{\"is_default\": true}"};
    run_races(jobs, 8);
    assert_int_equal(sql_long("SELECT count(*) FROM agents WHERE account_id = $1 AND is_default",
                              a.id),
                     1);
    free(a.token);
    g_failed = false;
}

/* ---- 4. validation ---- */

static void test_validation(void **state)
{
    (void)state;
    g_failed = true;
    account a;
    new_account(&a);
    static const struct {
        const char *body, *what;
    } bad[] = {
        {"{\"system_prompt\": \"p\"}", "name is required"},
        {"{\"name\": \"n\"}", "system_prompt is required"},
        {"{\"name\": \"\", \"system_prompt\": \"p\"}", "name must have 1 to 255"},
        {"{\"name\": 5, \"system_prompt\": \"p\"}", "name must be a string"},
        {"{\"name\": \"n\", \"system_prompt\": []}", "system_prompt must be a string"},
        {"{\"name\": \"n\", \"system_prompt\": \"p\", \"avatar_color\": \"red\"}", "avatar_color"},
        {"{\"name\": \"n\", \"system_prompt\": \"p\", \"avatar\": \"12345678901\"}", "avatar"},
        {"{\"name\": \"n\", \"system_prompt\": \"p\", \"is_default\": \"yes\"}",
         "is_default must be a boolean"},
        {"{\"name\": \"n\", \"system_prompt\": \"p\", \"model\": \"\"}", "model"},
        {"{\"name\": \"n\", \"system_prompt\": \"p\", \"agentpress_tools\": []}",
         "agentpress_tools must be an object"},
        {"{\"name\": \"n\", \"system_prompt\": \"p\", \"agentpress_tools\": {\"sb_shell_tool\": "
         "1}}",
         "agentpress_tools.sb_shell_tool"},
        {"{\"name\": \"n\", \"system_prompt\": \"p\", \"agentpress_tools\": {\"Bad Name\": "
         "true}}",
         "is not a tool name"},
        {"{\"name\": \"n\", \"system_prompt\": \"p\", \"configured_mcps\": {}}",
         "configured_mcps must be an array"},
        {"{\"name\": \"n\", \"system_prompt\": \"p\", \"configured_mcps\": [{\"config\": {}}]}",
         "configured_mcps[0].name"},
        {"{\"name\": \"n\", \"system_prompt\": \"p\", \"custom_mcps\": [{\"name\": \"x\", "
         "\"type\": \"ftp\"}]}",
         "custom_mcps[0].type must be one of"},
        {"{\"name\": \"n\", \"system_prompt\": \"p\", \"custom_mcps\": [{\"name\": \"x\", "
         "\"enabledTools\": [\"\"]}]}",
         "custom_mcps[0].enabledTools[0]"},
        {"{\"name\": \"n\", \"system_prompt\": \"p\", \"tags\": \"a\"}", "tags must be an array"},
        {"{\"name\": \"n\", \"system_prompt\": \"p\", \"tags\": [\"\"]}", "tags[0]"},
        {"{\"name\": \"n\\u0000x\", \"system_prompt\": \"p\"}", "NUL"},
        {"[1]", "expected an object"},
        {"{\"name\": ", "Invalid JSON body"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        expect_error(&a, "POST", "/api/agents", bad[i].body, 400, bad[i].what);
    /* a name of 256 characters (2-byte ones: 512 bytes) */
    char body[1200];
    size_t len = (size_t)snprintf(body, sizeof body, "{\"name\": \"");
    for (int i = 0; i < 256; i++)
        len += (size_t)snprintf(body + len, sizeof body - len, "\u00e9");
    snprintf(body + len, sizeof body - len, "\", \"system_prompt\": \"p\"}");
    expect_error(&a, "POST", "/api/agents", body, 400, "it has 256");
    /* a prompt over KX_MAX_PROMPT_BYTES (256 KiB) is a 413 naming it */
    static const char head[] = "{\"name\": \"n\", \"system_prompt\": \"";
    size_t big = 300 * 1024;
    char *huge = malloc(sizeof head + big + 3);
    assert_non_null(huge);
    memcpy(huge, head, sizeof head - 1);
    memset(huge + sizeof head - 1, 'x', big);
    memcpy(huge + sizeof head - 1 + big, "\"}", 3);
    expect_error(&a, "POST", "/api/agents", huge, 413, "system_prompt is too long");
    free(huge);

    char id[KX_UUID_LEN + 1], path[300];
    create_agent(&a, "{\"name\": \"valid\", \"system_prompt\": \"p\"}", id);
    snprintf(path, sizeof path, "/api/agents/%s", id);
    expect_error(&a, "PUT", path, "{}", 400, "nothing to change");
    expect_error(&a, "PUT", path, "{\"unknown\": 1}", 400, "nothing to change");
    expect_error(&a, "PUT", path, "{\"custom_mcps\": [1]}", 400, "custom_mcps[0] must be");
    expect_error(&a, "PUT", "/api/agents/not-a-uuid", "{\"name\": \"x\"}", 404, "Agent not found");
    expect_error(&a, "GET", "/api/agents/not-a-uuid", NULL, 404, "Agent not found");
    expect_error(&a, "POST", "/api/agents/import", "{}", 400, "import_data is required");
    expect_error(&a, "POST", "/api/agents/import",
                 "{\"import_data\": {\"name\": \"x\", \"system_prompt\": \"p\"}, "
                 "\"import_as_new\": false}",
                 400, "import_as_new");
    expect_error(&a, "POST", "/api/agents/import", "{\"import_data\": {\"name\": \"x\"}}", 400,
                 "system_prompt is required");
    /* an import cannot make itself the managed default */
    json_t *v = expect(&a, "POST", "/api/agents/import",
                       "{\"import_data\": {\"name\": \"x\", \"system_prompt\": \"p\", "
                       "\"metadata\": {\"is_suna_default\": true, \"kept\": 1}}}",
                       200);
    json_t *meta = json_object_get(v, "metadata");
    assert_null(json_object_get(meta, "is_suna_default"));
    assert_int_equal(json_integer_value(json_object_get(meta, "kept")), 1);
    json_decref(v);

    static const struct {
        const char *query, *what;
    } badq[] = {
        {"page=0", "page must be an integer"},
        {"page=x", "page must be an integer"},
        {"limit=101", "limit must be an integer from 1 to 100"},
        {"sort_by=size", "sort_by must be one of name, created_at, updated_at, tools_count"},
        {"sort_order=up", "sort_order must be one of asc, desc"},
        {"has_default=maybe", "has_default must be a boolean"},
        {"has_mcp_tools=2", "has_mcp_tools must be a boolean"},
        {"tools=shell", "tools must be a comma-separated list"},
        {"tools=mcp:", "tools must be a comma-separated list"},
    };
    for (size_t i = 0; i < sizeof badq / sizeof badq[0]; i++) {
        snprintf(path, sizeof path, "/api/agents?%s", badq[i].query);
        expect_error(&a, "GET", path, NULL, 400, badq[i].what);
    }
    /* no token */
    expect_error(NULL, "GET", "/api/agents", NULL, 401, "No valid authentication credentials");
    free(a.token);
    g_failed = false;
}

/* ---- 5. another account ---- */

static void test_cross_account(void **state)
{
    (void)state;
    g_failed = true;
    account a, b;
    new_account(&a);
    new_account(&b);
    char id[KX_UUID_LEN + 1], ver[KX_UUID_LEN + 1], path[300];
    create_agent(&a, "{\"name\": \"secret agent\", \"system_prompt\": \"top secret prompt\"}", id);
    char *cv = sql_value("SELECT current_version_id::text FROM agents WHERE agent_id = $1", id);
    assert_non_null(cv);
    snprintf(ver, sizeof ver, "%s", cv);
    free(cv);
    static const struct {
        const char *method, *fmt, *body;
    } routes[] = {
        {"GET", "/api/agents/%s", NULL},
        {"PUT", "/api/agents/%s", "{\"name\": \"stolen\"}"},
        {"PUT", "/api/agents/%s", "{\"system_prompt\": \"stolen\"}"},
        {"DELETE", "/api/agents/%s", NULL},
        {"GET", "/api/agents/%s/export", NULL},
        {"GET", "/api/agents/%s/tools", NULL},
        {"GET", "/api/agents/%s/versions", NULL},
        {"POST", "/api/agents/%s/versions", "{\"system_prompt\": \"stolen\"}"},
        {"GET", "/api/agents/%s/versions/%s", NULL},
        {"GET", "/api/agents/%s/versions/%s/compare/%s", NULL},
        {"PUT", "/api/agents/%s/versions/%s/activate", NULL},
        {"POST", "/api/agents/%s/versions/%s/rollback", NULL},
        {"PUT", "/api/agents/%s/versions/%s/details", "{\"version_name\": \"stolen\"}"},
        {"POST", "/api/agents/%s/custom-mcp-tools",
         "{\"url\": \"https://x.example/mcp\", \"type\": \"http\", \"enabled_tools\": []}"},
    };
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        snprintf(path, sizeof path, routes[i].fmt, id, ver, ver);
        long st = 0;
        json_t *v = call(&b, routes[i].method, path, routes[i].body, NULL, &st);
        char *text = v ? json_dumps(v, 0) : NULL;
        if (st != 404)
            fprintf(stderr, "%s %s by another account: %ld %s\n", routes[i].method, path, st,
                    text ? text : "-");
        assert_int_equal(st, 404);
        assert_non_null(text);
        assert_null(strstr(text, "secret"));
        free(text);
        json_decref(v);
    }
    /* B's list holds only B's Suna */
    json_t *v = expect(&b, "GET", "/api/agents?search=secret", NULL, 200);
    assert_int_equal(json_array_size(json_object_get(v, "agents")), 0);
    json_decref(v);
    /* nothing of A's changed */
    assert_int_equal(sql_long("SELECT count(*) FROM agent_versions WHERE agent_id = $1", id), 1);
    char *name = sql_value("SELECT name FROM agents WHERE agent_id = $1", id);
    assert_string_equal(name, "secret agent");
    free(name);
    /* a public agent can be read by others (as Kortix), not written */
    PQclear(kx_th_sql(&g_gw.s, "UPDATE agents SET is_public = true WHERE agent_id = $1", 1,
                      (const char *const[]){id}));
    snprintf(path, sizeof path, "/api/agents/%s", id);
    v = expect(&b, "GET", path, NULL, 200);
    assert_string_equal(str(v, "name"), "secret agent");
    json_decref(v);
    snprintf(path, sizeof path, "/api/agents/%s/versions", id);
    json_decref(expect(&b, "GET", path, NULL, 200));
    snprintf(path, sizeof path, "/api/agents/%s", id);
    expect_error(&b, "PUT", path, "{\"name\": \"stolen\"}", 404, "Agent not found");
    expect_error(&b, "DELETE", path, NULL, 404, "Agent not found");
    snprintf(path, sizeof path, "/api/agents/%s/export", id);
    expect_error(&b, "GET", path, NULL, 404, "Agent not found");
    free(a.token);
    free(b.token);
    g_failed = false;
}

/* A public agent's MCP credentials are the owner's: another account reading the agent, its
 * versions, one version or a comparison sees which servers and tools, not the headers, API keys
 * or URL tokens (Kortix answered the whole config). */
static void expect_no_secret(const account *reader, const char *path)
{
    json_t *v = expect(reader, "GET", path, NULL, 200);
    char *text = json_dumps(v, JSON_SORT_KEYS);
    assert_non_null(text);
    if (strstr(text, "SECRET") != NULL)
        fprintf(stderr, "GET %s by another account shows a credential: %s\n", path, text);
    assert_null(strstr(text, "SECRET"));
    free(text);
    json_decref(v);
}

static void test_public_agent_hides_mcp_secrets(void **state)
{
    (void)state;
    g_failed = true;
    account a, b;
    new_account(&a);
    new_account(&b);
    char id[KX_UUID_LEN + 1], path[256];
    create_agent(&a,
                 "{\"name\": \"market\", \"system_prompt\": \"p\", \"custom_mcps\": [{\"name\": "
                 "\"docs\", \"type\": \"http\", \"config\": {\"url\": "
                 "\"https://user:SECRET1@mcp.example.com/m?key=SECRET2#SECRET3\", \"headers\": "
                 "{\"Authorization\": \"Bearer SECRET4\"}}, \"enabledTools\": [\"search\"], "
                 "\"note\": \"SECRET5\"}], \"configured_mcps\": [{\"name\": \"exa\", "
                 "\"qualifiedName\": \"exa\", \"config\": {\"exaApiKey\": \"SECRET6\"}, "
                 "\"enabledTools\": [\"web_search\"]}]}",
                 id);
    snprintf(path, sizeof path, "/api/agents/%s", id);
    json_decref(expect(&a, "PUT", path, "{\"system_prompt\": \"p2\"}", 200)); /* version 2 */
    PQclear(kx_th_sql(&g_gw.s, "UPDATE agents SET is_public = true WHERE agent_id = $1", 1,
                      (const char *const[]){id}));
    char *v1 = sql_value("SELECT version_id FROM agent_versions WHERE agent_id = $1 "
                         "AND version_number = 1",
                         id);
    char *v2 = sql_value("SELECT version_id FROM agent_versions WHERE agent_id = $1 "
                         "AND version_number = 2",
                         id);
    assert_non_null(v1);
    assert_non_null(v2);

    /* the reader sees which server and which tools */
    json_t *v = expect(&b, "GET", path, NULL, 200);
    const json_t *custom = json_array_get(json_object_get(v, "custom_mcps"), 0);
    assert_string_equal(str(custom, "name"), "docs");
    assert_string_equal(str(custom, "type"), "http");
    assert_string_equal(str(json_object_get(custom, "config"), "url"),
                        "https://mcp.example.com/m");
    assert_string_equal(json_string_value(
                            json_array_get(json_object_get(custom, "enabledTools"), 0)),
                        "search");
    const json_t *conf = json_array_get(json_object_get(v, "configured_mcps"), 0);
    assert_string_equal(str(conf, "qualifiedName"), "exa");
    assert_int_equal(json_object_size(json_object_get(conf, "config")), 0);
    json_decref(v);
    expect_no_secret(&b, path);
    snprintf(path, sizeof path, "/api/agents/%s/versions", id);
    expect_no_secret(&b, path);
    snprintf(path, sizeof path, "/api/agents/%s/versions/%s", id, v1);
    expect_no_secret(&b, path);
    snprintf(path, sizeof path, "/api/agents/%s/versions/%s/compare/%s", id, v1, v2);
    expect_no_secret(&b, path);

    /* the owner sees all of it */
    snprintf(path, sizeof path, "/api/agents/%s/versions/%s", id, v1);
    v = expect(&a, "GET", path, NULL, 200);
    char *text = json_dumps(v, 0);
    for (int i = 1; i <= 6; i++) {
        char secret[16];
        snprintf(secret, sizeof secret, "SECRET%d", i);
        assert_non_null(strstr(text, secret));
    }
    free(text);
    json_decref(v);
    free(v1);
    free(v2);
    free(a.token);
    free(b.token);
    g_failed = false;
}

/* ---- 6. feature flags ---- */

static void test_feature_flags(void **state)
{
    (void)state;
    g_failed = true;
    json_t *v = expect(NULL, "GET", "/api/feature-flags", NULL, 200);
    json_t *flags = json_object_get(v, "flags");
    assert_true(json_is_true(json_object_get(flags, "custom_agents")));
    assert_true(json_is_false(json_object_get(flags, "knowledge_base")));
    json_decref(v);
    v = expect(NULL, "GET", "/api/feature-flags/custom_agents", NULL, 200);
    assert_string_equal(str(v, "flag_name"), "custom_agents");
    assert_true(json_is_true(json_object_get(v, "enabled")));
    json_t *det = json_object_get(v, "details");
    assert_true(json_is_true(json_object_get(det, "enabled")));
    assert_non_null(json_string_value(json_object_get(det, "description")));
    assert_non_null(json_string_value(json_object_get(det, "updated_at")));
    json_decref(v);
    v = expect(NULL, "GET", "/api/feature-flags/no_such_flag", NULL, 200);
    assert_true(json_is_false(json_object_get(v, "enabled")));
    assert_true(json_is_null(json_object_get(v, "details")));
    json_decref(v);
    expect_error(NULL, "GET", "/api/feature-flags/Bad-Name", NULL, 400, "flag_name");

    /* the operator turns custom_agents off: the agent routes are 403, the flag reads off */
    account a;
    new_account(&a);
    PQclear(kx_th_sql(&g_gw.s,
                      "UPDATE feature_flags SET enabled = false WHERE name = 'custom_agents'", 0,
                      NULL));
    expect_error(&a, "GET", "/api/agents", NULL, 403, "Custom agents currently disabled");
    expect_error(&a, "POST", "/api/agents", "{\"name\": \"n\", \"system_prompt\": \"p\"}", 403,
                 "Custom agents currently disabled");
    v = expect(NULL, "GET", "/api/feature-flags/custom_agents", NULL, 200);
    assert_true(json_is_false(json_object_get(v, "enabled")));
    json_decref(v);
    PQclear(kx_th_sql(&g_gw.s,
                      "UPDATE feature_flags SET enabled = true WHERE name = 'custom_agents'", 0,
                      NULL));
    json_decref(expect(&a, "GET", "/api/agents", NULL, 200));
    free(a.token);
    g_failed = false;
}

/* ---- 7. the account's status ---- */

static void test_check_status(void **state)
{
    (void)state;
    g_failed = true;
    account a;
    new_account(&a);
    json_t *v = expect(&a, "GET", "/api/billing/check-status", NULL, 200);
    assert_true(json_is_true(json_object_get(v, "can_run")));
    assert_false(json_is_true(json_object_get(v, "has_limits")));
    assert_string_equal(str(json_object_get(v, "subscription"), "plan_name"), "Self-hosted");
    json_t *rpd = json_object_get(json_object_get(v, "limits"), "runs_per_day");
    assert_true(json_is_null(json_object_get(rpd, "limit")));
    assert_int_equal(json_integer_value(json_object_get(rpd, "used")), 0);
    json_decref(v);

    /* an operator's quota of 1 run a day, and one run: can_run false, used 1 of 1 */
    PQclear(kx_th_sql(&g_gw.s,
                      "INSERT INTO account_limits (account_id, runs_per_day, allowed_models) "
                      "VALUES ($1, 1, '{demo}')",
                      1, (const char *const[]){a.id}));
    char run[KX_UUID_LEN + 1], thread[KX_UUID_LEN + 1];
    assert_int_equal(kx_th_initiate(&g_gw.s, a.token, "hello", run, thread), 200);
    v = expect(&a, "GET", "/api/billing/check-status", NULL, 200);
    assert_true(json_is_false(json_object_get(v, "can_run")));
    assert_true(json_is_true(json_object_get(v, "has_limits")));
    assert_non_null(strstr(str(v, "message"), "Daily run quota reached"));
    json_t *lim = json_object_get(v, "limits");
    rpd = json_object_get(lim, "runs_per_day");
    assert_int_equal(json_integer_value(json_object_get(rpd, "limit")), 1);
    assert_int_equal(json_integer_value(json_object_get(rpd, "used")), 1);
    assert_string_equal(json_string_value(
                            json_array_get(json_object_get(lim, "allowed_models"), 0)),
                        "demo");
    assert_int_equal(json_integer_value(json_object_get(lim, "active_runs")), 1);
    json_decref(v);
    /* another account sees its own status only */
    account b;
    new_account(&b);
    v = expect(&b, "GET", "/api/billing/check-status", NULL, 200);
    assert_true(json_is_true(json_object_get(v, "can_run")));
    assert_int_equal(json_integer_value(json_object_get(
                         json_object_get(json_object_get(v, "limits"), "runs_per_day"), "used")),
                     0);
    json_decref(v);
    expect_error(NULL, "GET", "/api/billing/check-status", NULL, 401, "credentials");
    free(a.token);
    free(b.token);
    g_failed = false;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_default_agent),
        cmocka_unit_test(test_agents_crud),
        cmocka_unit_test(test_versions),
        cmocka_unit_test(test_versions_list_is_bounded),
        cmocka_unit_test(test_versions_list_reads_only_its_page),
        cmocka_unit_test(test_agent_delete_reads_indexes),
        cmocka_unit_test(test_races),
        cmocka_unit_test(test_validation),
        cmocka_unit_test(test_cross_account),
        cmocka_unit_test(test_public_agent_hides_mcp_secrets),
        cmocka_unit_test(test_feature_flags),
        cmocka_unit_test(test_check_status),
    };
    if (getenv("KX_TEST_FILTER") != NULL)
        cmocka_set_test_filter(getenv("KX_TEST_FILTER"));
    return cmocka_run_group_tests(tests, setup, teardown);
}
