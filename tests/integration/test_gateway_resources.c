/* tests/integration/test_gateway_resources.c — the gateway alone (real nats-server and
 * PostgreSQL, no scheduler, no runner) through the routes of API keys, threads, projects and
 * the run options (docs/api.md):
 *   - API keys: create (the secret shown once, stored as a keyed digest only), list, X-API-Key
 *     acting as the key's account, wrong / malformed / unknown / expired / revoked keys (401,
 *     revocation effective on the next request), delete, another account's key (404), each
 *     field's 400;
 *   - threads: create, paginated list (newest first), get (project, message_count,
 *     recent_agent_runs), patch, delete with a queued run (stopped: its stream ends with the
 *     stop event; messages gone; the run row stays), message delete (LLM messages only);
 *   - projects: create, list, get, patch, delete (its threads and their runs too); a public
 *     project's threads and messages readable by anyone, nothing of it writable;
 *   - runs: agent_id (another account's agent: 404, nothing created; the default agent),
 *     GET /thread/{id}/agent, reasoning_effort / booleans validated, a model the account may
 *     not use (Kortix's 403 body, nothing created), files[] with no sandbox-broker (503,
 *     nothing created);
 *   - numbers of 2^63 or more in a body: 400 naming their place; one stored anyway (older
 *     data) still reads (GET thread, threads, agents: no 500);
 *   - a start racing the delete of its thread or project: 404, no run left on the thread;
 *   - a message added while its thread is deleted and purged: 404, no message left;
 *   - what a page reads: the purger's take, a messages page (EXPLAIN's buffers of the gateway's
 *     statements); the purger across a Postgres restart;
 *   - every route: another account's object is 404, as one that does not exist. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <libpq-fe.h>
#include <jansson.h>

#include "gateway_alone.h"
#include "kx/http.h"
#include "kx/log.h"
#include "kx/time.h"
#include "kx/uuid.h"
#include "pgplans.h"
#include "store.h"
#include "stack.h"

static kx_th_gw g_gw;
static char *g_tok_a, *g_tok_b;
static char g_acct_a[KX_UUID_LEN + 1], g_acct_b[KX_UUID_LEN + 1];

#define STOPPED \
    "{\"type\": \"status\", \"status\": \"stopped\", \"message\": \"Agent run stopped by user\"}"

static int setup(void **state)
{
    (void)state;
    kx_log_init("test-gateway-resources", "test");
    kx_log_set_level(KX_LOG_WARN);
    memset(&g_gw, 0, sizeof g_gw);
    /* the purger's interval as deployed (60 s, the default): a delete wakes it, and a batch
     * that failed is tried again after its backoff (1 s, doubling), not the interval */
    const char *env[] = {"KX_PURGE_INTERVAL_MS=60000", NULL};
    if (kx_th_gw_start(&g_gw, "kx-it-gw-res", env) != KX_OK)
        return -1;
    kx_uuid_new(g_acct_a);
    kx_uuid_new(g_acct_b);
    g_tok_a = kx_th_stack_token(&g_gw.s, g_acct_a);
    g_tok_b = kx_th_stack_token(&g_gw.s, g_acct_b);
    return g_tok_a && g_tok_b ? 0 : -1;
}

/* ---- HTTP helpers --------------------------------------------------------------------------- */

/* method path with the auth header given as a whole line ("Authorization: Bearer …",
 * "X-API-Key: …" or NULL), an optional second header, a body with its type. The answer's
 * JSON (NULL if not JSON); *status the HTTP status. */
static json_t *call2(const char *method, const char *path, const char *auth, const char *extra,
                     const char *ctype, const char *body, size_t len, long *status)
{
    char url[1024], ct[512];
    snprintf(url, sizeof url, "%s%s", g_gw.s.base_url, path);
    const char *headers[4] = {NULL, NULL, NULL, NULL};
    size_t nh = 0;
    if (auth != NULL)
        headers[nh++] = auth;
    if (extra != NULL)
        headers[nh++] = extra;
    if (ctype != NULL) {
        snprintf(ct, sizeof ct, "Content-Type: %s", ctype);
        headers[nh++] = ct;
    }
    kx_http_resp r;
    memset(&r, 0, sizeof r);
    *status = 0;
    if (kx_http_request(method, url, headers, body, len, kx_deadline_in(10000), 0, &r) != KX_OK)
        return NULL;
    *status = r.status;
    json_t *v = r.body ? json_loads(r.body, 0, NULL) : NULL;
    if (v == NULL && r.body != NULL && r.status != 200)
        fprintf(stderr, "%s %s -> %ld %s\n", method, path, r.status, r.body);
    kx_http_resp_free(&r);
    return v;
}

static char g_auth_line[2][600];
/* "Authorization: Bearer <token>" for account a (0) or b (1). */
static const char *bearer(int who)
{
    snprintf(g_auth_line[who], sizeof g_auth_line[who], "Authorization: Bearer %s",
             who == 0 ? g_tok_a : g_tok_b);
    return g_auth_line[who];
}

/* JSON body (or none) as account who (0 a, 1 b, -1 anonymous). */
static json_t *jcall(int who, const char *method, const char *path, const char *json_body,
                     long *status)
{
    return call2(method, path, who < 0 ? NULL : bearer(who), NULL,
                 json_body ? "application/json" : NULL, json_body,
                 json_body ? strlen(json_body) : 0, status);
}

/* The detail text of an error answer (borrowed from v), or "". */
static const char *detail(const json_t *v)
{
    const char *d = json_string_value(json_object_get(v, "detail"));
    return d ? d : "";
}

/* Asserts method path answers status with a detail containing want; frees the answer. */
static void expect_error(int who, const char *method, const char *path, const char *body,
                         long want_status, const char *want)
{
    long st = 0;
    json_t *v = jcall(who, method, path, body, &st);
    if (st != want_status || strstr(detail(v), want) == NULL)
        fprintf(stderr, "%s %s %s: got %ld %s, want %ld \"%s\"\n", method, path, body ? body : "",
                st, detail(v), want_status, want);
    assert_int_equal(st, want_status);
    assert_non_null(strstr(detail(v), want));
    json_decref(v);
}

static char *sql1(const char *sql, const char *p1, const char *p2)
{
    const char *params[] = {p1, p2};
    int n = p2 ? 2 : p1 ? 1 : 0;
    return kx_th_sql_value(&g_gw.s, sql, n, params);
}

static long sql_long(const char *sql, const char *p1, const char *p2)
{
    char *v = sql1(sql, p1, p2);
    long n = -1;
    if (v != NULL && !kx_th_parse_long(v, &n))
        n = -1;
    free(v);
    return n;
}

/* A deleted thread's messages are removed by the gateway's purger, after the delete: waits up
 * to limit_ms for none of them to be left (and its queue entry gone); false if some stay. */
static bool purged(const char *thread_id, int64_t limit_ms)
{
    int64_t until = kx_mono_ms() + limit_ms;
    for (;;) {
        if (sql_long("SELECT (SELECT count(*) FROM messages WHERE thread_id = $1::uuid) + "
                     "(SELECT count(*) FROM message_purges WHERE thread_id = $1::uuid)",
                     thread_id, NULL) == 0)
            return true;
        if (kx_mono_ms() > until)
            return false;
        usleep(50 * 1000);
    }
}

/* Fills account a's thread tid with n status messages and locks one of them (the newest when
 * newest: a purge blocks mid-way; else the first found: its first batch blocks) FOR UPDATE in
 * the open transaction of the connection returned (the caller ends it). */
static PGconn *fill_and_lock(const char *tid, int n, bool newest)
{
    char count[16], sql[400];
    snprintf(count, sizeof count, "%d", n);
    snprintf(sql, sizeof sql,
             "WITH m AS (INSERT INTO messages (thread_id, account_id, type, is_llm_message, "
             "content) SELECT $1::uuid, $2::uuid, 'status', false, jsonb_build_object('n', g) "
             "FROM generate_series(1, %d) g RETURNING 1) SELECT count(*) FROM m",
             n);
    char *got = sql1(sql, tid, g_acct_a);
    assert_non_null(got);
    assert_string_equal(got, count);
    free(got);
    PGconn *locker = PQconnectdb(g_gw.s.pg.url);
    assert_int_equal(PQstatus(locker), CONNECTION_OK);
    PQclear(PQexec(locker, "BEGIN"));
    const char *lp[] = {tid};
    PGresult *r = PQexecParams(locker,
                               newest ? "SELECT 1 FROM messages WHERE thread_id = $1::uuid "
                                        "ORDER BY created_at DESC LIMIT 1 FOR UPDATE"
                                      : "SELECT 1 FROM messages WHERE thread_id = $1::uuid "
                                        "LIMIT 1 FOR UPDATE",
                               1, NULL, lp, NULL, NULL, 0);
    assert_int_equal(PQntuples(r), 1);
    PQclear(r);
    return locker;
}

/* POST /api/agent/initiate (urlencoded pairs) as who; the answer. */
static json_t *initiate(int who, const char *const *pairs, long *status)
{
    size_t len = 0;
    char *body = kx_th_form_urlencoded(pairs, &len);
    json_t *v = call2("POST", "/api/agent/initiate", bearer(who), NULL,
                      "application/x-www-form-urlencoded", body, len, status);
    free(body);
    return v;
}

/* ---- API keys ------------------------------------------------------------------------------- */

static json_t *with_key(const char *key, const char *method, const char *path, long *status)
{
    char line[300];
    snprintf(line, sizeof line, "X-API-Key: %s", key);
    return call2(method, path, line, NULL, NULL, NULL, 0, status);
}

static void test_api_keys(void **state)
{
    (void)state;
    long st = 0;
    /* each field's 400, auth first */
    expect_error(-1, "POST", "/api/api-keys", "{\"title\": \"x\"}", 401,
                 "No valid authentication credentials found");
    expect_error(0, "POST", "/api/api-keys", "{}", 400, "title is required");
    expect_error(0, "POST", "/api/api-keys", "{\"title\": 5}", 400, "title");
    expect_error(0, "POST", "/api/api-keys", "{\"title\": \"\"}", 400, "title is required");
    char long_title[400];
    memset(long_title, 'x', 300);
    long_title[300] = '\0';
    char body[600];
    snprintf(body, sizeof body, "{\"title\": \"%s\"}", long_title);
    expect_error(0, "POST", "/api/api-keys", body, 400, "title");
    expect_error(0, "POST", "/api/api-keys", "{\"title\": \"t\", \"expires_in_days\": 0}", 400,
                 "expires_in_days");
    expect_error(0, "POST", "/api/api-keys", "{\"title\": \"t\", \"expires_in_days\": \"3\"}", 400,
                 "expires_in_days");
    expect_error(0, "POST", "/api/api-keys", "{\"title\": \"t\", \"description\": []}", 400,
                 "description");
    expect_error(0, "POST", "/api/api-keys", "not json", 400, "");
    assert_int_equal(sql_long("SELECT count(*) FROM api_keys", NULL, NULL), 0);

    /* create: the secret once, in Kortix's order */
    json_t *k =
        jcall(0, "POST", "/api/api-keys",
              "{\"title\": \"ci\", \"description\": \"the CI\", \"expires_in_days\": 30}", &st);
    assert_int_equal(st, 200);
    const char *pub = json_string_value(json_object_get(k, "public_key"));
    const char *sec = json_string_value(json_object_get(k, "secret_key"));
    const char *kid = json_string_value(json_object_get(k, "key_id"));
    assert_non_null(pub);
    assert_non_null(sec);
    assert_non_null(kid);
    assert_int_equal(strlen(pub), 35);
    assert_int_equal(strlen(sec), 67);
    assert_memory_equal(pub, "pk_", 3);
    assert_memory_equal(sec, "sk_", 3);
    assert_string_equal(json_string_value(json_object_get(k, "status")), "active");
    assert_non_null(json_string_value(json_object_get(k, "expires_at")));
    const char *keys[3] = {"", "", ""};
    size_t nk = 0;
    const char *name;
    json_t *val;
    json_object_foreach(k, name, val)
    {
        (void)val;
        if (nk < 3)
            keys[nk] = name;
        nk++;
    }
    assert_true(nk >= 3);
    assert_string_equal(keys[1], "public_key");
    assert_string_equal(keys[2], "secret_key");
    char key[200], bad[200];
    snprintf(key, sizeof key, "%s:%s", pub, sec);
    char kid_s[KX_UUID_LEN + 1];
    snprintf(kid_s, sizeof kid_s, "%s", kid);

    /* stored: a 64-hex digest that is not the secret, and the secret nowhere in the row */
    assert_int_equal(sql_long("SELECT count(*) FROM api_keys WHERE strpos(row_to_json(api_keys)"
                              "::text, substr($1, 4)) > 0",
                              sec, NULL),
                     0);
    assert_int_equal(sql_long("SELECT count(*) FROM api_keys WHERE secret_hash ~ '^[0-9a-f]{64}$'",
                              NULL, NULL),
                     1);

    /* list: no secret */
    json_t *list = jcall(0, "GET", "/api/api-keys", NULL, &st);
    assert_int_equal(st, 200);
    assert_int_equal(json_array_size(list), 1);
    assert_null(json_object_get(json_array_get(list, 0), "secret_key"));
    assert_null(json_object_get(json_array_get(list, 0), "secret_hash"));
    assert_string_equal(json_string_value(json_object_get(json_array_get(list, 0), "title")),
                        "ci");
    json_decref(list);

    /* X-API-Key acts as account a */
    json_t *v = with_key(key, "GET", "/api/threads", &st);
    assert_int_equal(st, 200);
    assert_non_null(json_object_get(v, "pagination"));
    json_decref(v);
    /* ... but cannot manage keys: a leaked key must not mint a successor or revoke others */
    v = with_key(key, "GET", "/api/api-keys", &st);
    assert_int_equal(st, 403);
    assert_non_null(strstr(detail(v), "session token"));
    json_decref(v);
    char line[300];
    snprintf(line, sizeof line, "X-API-Key: %s", key);
    v = call2("POST", "/api/projects", line, NULL, "application/json", "{\"name\": \"by key\"}",
              strlen("{\"name\": \"by key\"}"), &st);
    assert_int_equal(st, 200);
    assert_string_equal(json_string_value(json_object_get(v, "account_id")), g_acct_a);
    json_decref(v);
    /* the key decides even next to another account's bearer token (Kortix's order) */
    v = call2("GET", "/api/projects", line, bearer(1), NULL, NULL, 0, &st);
    assert_int_equal(st, 200);
    assert_string_equal(json_string_value(
                            json_object_get(json_array_get(json_object_get(v, "projects"), 0),
                                            "account_id")),
                        g_acct_a);
    json_decref(v);
    assert_int_equal(sql_long("SELECT count(*) FROM api_keys WHERE last_used_at IS NOT NULL", NULL,
                              NULL),
                     1);

    /* wrong secret, malformed, unknown public key */
    snprintf(bad, sizeof bad, "%s", key);
    bad[strlen(bad) - 1] = bad[strlen(bad) - 1] == '0' ? '1' : '0';
    v = with_key(bad, "GET", "/api/threads", &st);
    assert_int_equal(st, 401);
    assert_non_null(strstr(detail(v), "Invalid API key"));
    json_decref(v);
    v = with_key("pk_abc:sk_def", "GET", "/api/threads", &st);
    assert_int_equal(st, 401);
    assert_string_equal(detail(v), "Invalid API key format. Expected format: pk_xxx:sk_xxx");
    json_decref(v);
    snprintf(bad, sizeof bad, "%s", key);
    bad[3] = bad[3] == 'a' ? 'b' : 'a';
    v = with_key(bad, "GET", "/api/threads", &st);
    assert_int_equal(st, 401);
    assert_non_null(strstr(detail(v), "Invalid API key"));
    json_decref(v);

    /* another account cannot see, revoke or delete it */
    list = jcall(1, "GET", "/api/api-keys", NULL, &st);
    assert_int_equal(st, 200);
    assert_int_equal(json_array_size(list), 0);
    json_decref(list);
    char path[200];
    snprintf(path, sizeof path, "/api/api-keys/%s/revoke", kid_s);
    expect_error(1, "PATCH", path, NULL, 404, "API key not found");
    snprintf(path, sizeof path, "/api/api-keys/%s", kid_s);
    expect_error(1, "DELETE", path, NULL, 404, "API key not found");
    expect_error(0, "DELETE", "/api/api-keys/not-a-uuid", NULL, 404, "API key not found");
    v = with_key(key, "GET", "/api/threads", &st); /* still works */
    assert_int_equal(st, 200);
    json_decref(v);

    /* expired */
    json_t *k2 = jcall(0, "POST", "/api/api-keys", "{\"title\": \"short\"}", &st);
    assert_int_equal(st, 200);
    assert_true(json_is_null(json_object_get(k2, "expires_at")));
    char key2[200];
    snprintf(key2, sizeof key2, "%s:%s", json_string_value(json_object_get(k2, "public_key")),
             json_string_value(json_object_get(k2, "secret_key")));
    v = with_key(key2, "GET", "/api/threads", &st);
    assert_int_equal(st, 200);
    json_decref(v);
    char *upd = sql1("UPDATE api_keys SET expires_at = now() - interval '1 second' "
                     "WHERE key_id = $1::uuid RETURNING 1",
                     json_string_value(json_object_get(k2, "key_id")), NULL);
    free(upd);
    v = with_key(key2, "GET", "/api/threads", &st);
    assert_int_equal(st, 401);
    assert_non_null(strstr(detail(v), "revoked or expired"));
    json_decref(v);
    json_decref(k2);

    /* revoke: the next request fails */
    snprintf(path, sizeof path, "/api/api-keys/%s/revoke", kid_s);
    v = jcall(0, "PATCH", path, NULL, &st);
    assert_int_equal(st, 200);
    assert_string_equal(json_string_value(json_object_get(v, "message")),
                        "API key revoked successfully");
    json_decref(v);
    v = with_key(key, "GET", "/api/threads", &st);
    assert_int_equal(st, 401);
    assert_non_null(strstr(detail(v), "revoked or expired"));
    json_decref(v);
    list = jcall(0, "GET", "/api/api-keys", NULL, &st);
    bool seen_revoked = false, seen_expired = false;
    for (size_t i = 0; i < json_array_size(list); i++) {
        const char *s = json_string_value(json_object_get(json_array_get(list, i), "status"));
        seen_revoked |= s && strcmp(s, "revoked") == 0;
        seen_expired |= s && strcmp(s, "expired") == 0;
    }
    assert_true(seen_revoked);
    assert_true(seen_expired);
    json_decref(list);

    /* delete */
    snprintf(path, sizeof path, "/api/api-keys/%s", kid_s);
    v = jcall(0, "DELETE", path, NULL, &st);
    assert_int_equal(st, 200);
    assert_string_equal(json_string_value(json_object_get(v, "message")),
                        "API key deleted successfully");
    json_decref(v);
    expect_error(0, "DELETE", path, NULL, 404, "API key not found");
    json_decref(k);
}

/* ---- threads -------------------------------------------------------------------------------- */

/* POST /api/threads with form name (NULL: no body) as who; fills ids. */
static void new_thread(int who, const char *name, char tid[KX_UUID_LEN + 1],
                       char pid[KX_UUID_LEN + 1])
{
    long st = 0;
    size_t len = 0;
    const char *pairs[] = {"name", name, NULL};
    char *body = name ? kx_th_form_urlencoded(pairs, &len) : NULL;
    json_t *v = call2("POST", "/api/threads", bearer(who), NULL,
                      name ? "application/x-www-form-urlencoded" : NULL, body, len, &st);
    free(body);
    assert_int_equal(st, 200);
    snprintf(tid, KX_UUID_LEN + 1, "%s", json_string_value(json_object_get(v, "thread_id")));
    snprintf(pid, KX_UUID_LEN + 1, "%s", json_string_value(json_object_get(v, "project_id")));
    assert_true(kx_uuid_valid(tid));
    json_decref(v);
}

static void test_threads(void **state)
{
    (void)state;
    long st = 0;
    char t1[KX_UUID_LEN + 1], p1[KX_UUID_LEN + 1], t2[KX_UUID_LEN + 1], p2[KX_UUID_LEN + 1];
    char t3[KX_UUID_LEN + 1], p3[KX_UUID_LEN + 1], path[300];
    new_thread(0, NULL, t1, p1);
    new_thread(0, "second", t2, p2);
    new_thread(0, "third", t3, p3);
    char *pname = sql1("SELECT name FROM projects WHERE project_id = $1::uuid", p1, NULL);
    assert_string_equal(pname, "New Project");
    free(pname);
    char long_name[400], body[600];
    memset(long_name, 'n', 300);
    long_name[300] = '\0';
    snprintf(body, sizeof body, "name=%s", long_name);
    json_t *v = call2("POST", "/api/threads", bearer(0), NULL, "application/x-www-form-urlencoded",
                      body, strlen(body), &st);
    assert_int_equal(st, 400);
    assert_non_null(strstr(detail(v), "name"));
    json_decref(v);

    /* list: newest first, paginated; another account sees none of them */
    v = jcall(0, "GET", "/api/threads?limit=2&page=1", NULL, &st);
    assert_int_equal(st, 200);
    json_t *threads = json_object_get(v, "threads");
    assert_int_equal(json_array_size(threads), 2);
    assert_string_equal(json_string_value(
                            json_object_get(json_array_get(threads, 0), "thread_id")),
                        t3);
    assert_string_equal(json_string_value(
                            json_object_get(json_array_get(threads, 1), "thread_id")),
                        t2);
    json_t *proj = json_object_get(json_array_get(threads, 0), "project");
    assert_string_equal(json_string_value(json_object_get(proj, "name")), "third");
    json_t *pg = json_object_get(v, "pagination");
    long long total = json_integer_value(json_object_get(pg, "total"));
    assert_true(total >= 3);
    assert_int_equal(json_integer_value(json_object_get(pg, "pages")), (total + 1) / 2);
    json_decref(v);
    v = jcall(0, "GET", "/api/threads?limit=2&page=2", NULL, &st);
    assert_int_equal(st, 200);
    assert_string_equal(json_string_value(
                            json_object_get(json_array_get(json_object_get(v, "threads"), 0),
                                            "thread_id")),
                        t1);
    json_decref(v);
    expect_error(0, "GET", "/api/threads?limit=0", NULL, 400, "limit");
    expect_error(0, "GET", "/api/threads?limit=1001", NULL, 400, "limit");
    expect_error(0, "GET", "/api/threads?page=abc", NULL, 400, "page");
    expect_error(-1, "GET", "/api/threads", NULL, 401, "No valid authentication");
    v = jcall(1, "GET", "/api/threads", NULL, &st);
    assert_int_equal(st, 200);
    assert_int_equal(json_integer_value(
                         json_object_get(json_object_get(v, "pagination"), "total")),
                     0);
    json_decref(v);

    /* get */
    snprintf(path, sizeof path, "/api/threads/%s", t2);
    v = jcall(0, "GET", path, NULL, &st);
    assert_int_equal(st, 200);
    assert_string_equal(json_string_value(json_object_get(v, "thread_id")), t2);
    assert_int_equal(json_integer_value(json_object_get(v, "message_count")), 0);
    assert_true(json_is_array(json_object_get(v, "recent_agent_runs")));
    assert_string_equal(json_string_value(json_object_get(json_object_get(v, "project"), "name")),
                        "second");
    json_decref(v);
    expect_error(1, "GET", path, NULL, 404, "Thread not found");
    expect_error(-1, "GET", path, NULL, 401, "No valid authentication");
    expect_error(0, "GET", "/api/threads/nope", NULL, 404, "Thread not found");

    /* patch */
    expect_error(0, "PATCH", path, "{\"is_public\": \"yes\"}", 400, "is_public");
    expect_error(0, "PATCH", path, "{\"metadata\": []}", 400, "metadata");
    expect_error(0, "PATCH", path, "{\"name\": \"x\"}", 400, "unknown field: name");
    expect_error(1, "PATCH", path, "{\"is_public\": true}", 404, "Thread not found");
    v = jcall(0, "PATCH", path, "{\"metadata\": {\"pinned\": true}}", &st);
    assert_int_equal(st, 200);
    assert_true(json_is_true(json_object_get(json_object_get(v, "metadata"), "pinned")));
    assert_true(json_is_false(json_object_get(v, "is_public")));
    json_decref(v);

    /* messages: delete an LLM message; a non-LLM one stays; another account: 404 */
    char mpath[300];
    snprintf(mpath, sizeof mpath, "/api/threads/%s/messages", t2);
    v = jcall(0, "POST", mpath, "{\"type\": \"assistant\", \"content\": \"hi\"}", &st);
    assert_int_equal(st, 200);
    char mid[KX_UUID_LEN + 1];
    snprintf(mid, sizeof mid, "%s", json_string_value(json_object_get(v, "message_id")));
    json_decref(v);
    v = jcall(0, "POST", mpath,
              "{\"type\": \"status\", \"content\": \"s\", \"is_llm_message\": false}", &st);
    assert_int_equal(st, 200);
    char mid2[KX_UUID_LEN + 1];
    snprintf(mid2, sizeof mid2, "%s", json_string_value(json_object_get(v, "message_id")));
    json_decref(v);
    snprintf(mpath, sizeof mpath, "/api/threads/%s/messages/%s", t2, mid);
    expect_error(1, "DELETE", mpath, NULL, 404, "Thread not found");
    v = jcall(0, "DELETE", mpath, NULL, &st);
    assert_int_equal(st, 200);
    assert_string_equal(json_string_value(json_object_get(v, "message")),
                        "Message deleted successfully");
    json_decref(v);
    expect_error(0, "DELETE", mpath, NULL, 404, "Message not found");
    snprintf(mpath, sizeof mpath, "/api/threads/%s/messages/%s", t2, mid2);
    expect_error(0, "DELETE", mpath, NULL, 400, "not an LLM message");
    snprintf(mpath, sizeof mpath, "/api/threads/%s/messages/%s", t1, mid2); /* other thread */
    expect_error(0, "DELETE", mpath, NULL, 404, "Message not found");
    snprintf(mpath, sizeof mpath, "/api/threads/%s/messages/xyz", t2);
    expect_error(0, "DELETE", mpath, NULL, 404, "Message not found");
    assert_int_equal(sql_long("SELECT count(*) FROM messages WHERE thread_id = $1::uuid", t2,
                              NULL),
                     1);

    /* Kortix's query form of adding a user message */
    snprintf(mpath, sizeof mpath, "/api/threads/%s/messages/add?message=hello%%20there", t2);
    v = jcall(0, "POST", mpath, NULL, &st);
    assert_int_equal(st, 200);
    assert_string_equal(json_string_value(json_object_get(v, "type")), "user");
    assert_string_equal(json_string_value(
                            json_object_get(json_object_get(v, "content"), "content")),
                        "hello there");
    json_decref(v);
    expect_error(1, "POST", mpath, NULL, 404, "Thread not found");
    snprintf(mpath, sizeof mpath, "/api/threads/%s/messages/add", t2);
    expect_error(0, "POST", mpath, NULL, 400, "message is required");

    /* delete with a queued run: the run is stopped (its stream ends with the stop event), the
     * messages are gone, the thread is 404 everywhere; the run row stays (usage) */
    const char *pairs[] = {"prompt", "to be deleted", NULL};
    v = initiate(0, pairs, &st);
    assert_int_equal(st, 200);
    char tr[KX_UUID_LEN + 1], run[KX_UUID_LEN + 1];
    snprintf(tr, sizeof tr, "%s", json_string_value(json_object_get(v, "thread_id")));
    snprintf(run, sizeof run, "%s", json_string_value(json_object_get(v, "agent_run_id")));
    json_decref(v);
    snprintf(path, sizeof path, "/api/threads/%s", tr);
    expect_error(1, "DELETE", path, NULL, 404, "Thread not found");
    v = jcall(0, "DELETE", path, NULL, &st);
    assert_int_equal(st, 200);
    assert_string_equal(json_string_value(json_object_get(v, "message")),
                        "Thread deleted successfully");
    assert_int_equal(json_integer_value(json_object_get(v, "stopped_runs")), 1);
    json_decref(v);
    char *status = sql1("SELECT status FROM agent_runs WHERE id = $1::uuid", run, NULL);
    assert_string_equal(status, "stopped");
    free(status);
    assert_int_equal(sql_long("SELECT lease_epoch FROM agent_runs WHERE id = $1::uuid", run, NULL),
                     1);
    assert_true(purged(tr, 10000));
    char spath[200];
    snprintf(spath, sizeof spath, "/api/agent-run/%s/stream", run);
    kx_th_sse sse;
    assert_int_equal(kx_th_sse_read(&g_gw.s, spath, g_tok_a, 10000, &sse), KX_OK);
    assert_int_equal(sse.status, 200);
    assert_true(sse.n >= 1);
    assert_string_equal(sse.data[sse.n - 1], STOPPED);
    kx_th_sse_free(&sse);
    expect_error(0, "GET", path, NULL, 404, "Thread not found");
    expect_error(0, "DELETE", path, NULL, 404, "Thread not found");
    snprintf(mpath, sizeof mpath, "/api/threads/%s/messages", tr);
    expect_error(0, "GET", mpath, NULL, 404, "Thread not found");
    snprintf(mpath, sizeof mpath, "/api/thread/%s/agent/start", tr);
    expect_error(0, "POST", mpath, "{}", 404, "Thread not found");
}

/* ---- projects ------------------------------------------------------------------------------- */

static void test_projects(void **state)
{
    (void)state;
    long st = 0;
    char path[300], tpath[300], mpath[300];
    expect_error(0, "POST", "/api/projects", "{}", 400, "name is required");
    expect_error(0, "POST", "/api/projects", "{\"name\": \"\"}", 400, "name");
    expect_error(0, "POST", "/api/projects", "{\"name\": \"p\", \"is_public\": \"no\"}", 400,
                 "is_public");
    expect_error(0, "POST", "/api/projects", "{\"name\": \"p\", \"description\": 5}", 400,
                 "description");
    expect_error(0, "POST", "/api/projects", "{\"name\": \"p\", \"sandbox\": {}}", 400,
                 "unknown field: sandbox");
    expect_error(-1, "POST", "/api/projects", "{\"name\": \"p\"}", 401, "No valid");

    json_t *p =
        jcall(0, "POST", "/api/projects", "{\"name\": \"proj\", \"description\": \"d\"}", &st);
    assert_int_equal(st, 200);
    char pid[KX_UUID_LEN + 1];
    snprintf(pid, sizeof pid, "%s", json_string_value(json_object_get(p, "project_id")));
    assert_string_equal(json_string_value(json_object_get(p, "description")), "d");
    assert_true(json_is_false(json_object_get(p, "is_public")));
    json_decref(p);

    json_t *v = jcall(0, "GET", "/api/projects", NULL, &st);
    assert_int_equal(st, 200);
    assert_string_equal(json_string_value(
                            json_object_get(json_array_get(json_object_get(v, "projects"), 0),
                                            "project_id")),
                        pid);
    json_decref(v);
    v = jcall(1, "GET", "/api/projects", NULL, &st);
    assert_int_equal(json_array_size(json_object_get(v, "projects")), 0);
    json_decref(v);

    snprintf(path, sizeof path, "/api/projects/%s", pid);
    expect_error(1, "GET", path, NULL, 404, "Project not found");
    expect_error(-1, "GET", path, NULL, 401, "No valid authentication");
    expect_error(1, "PATCH", path, "{\"name\": \"mine\"}", 404, "Project not found");
    expect_error(1, "DELETE", path, NULL, 404, "Project not found");
    expect_error(0, "GET", "/api/projects/123", NULL, 404, "Project not found");
    expect_error(0, "PATCH", path, "{\"name\": 7}", 400, "name");

    v = jcall(0, "PATCH", path, "{\"name\": \"renamed\", \"description\": null}", &st);
    assert_int_equal(st, 200);
    assert_string_equal(json_string_value(json_object_get(v, "name")), "renamed");
    assert_true(json_is_null(json_object_get(v, "description")));
    json_decref(v);

    /* a thread in it, with a message; made public: readable by anyone, writable by nobody else */
    char *tid = sql1("INSERT INTO threads (account_id, project_id) VALUES ($1::uuid, $2::uuid) "
                     "RETURNING thread_id::text",
                     g_acct_a, pid);
    assert_non_null(tid);
    snprintf(tpath, sizeof tpath, "/api/threads/%s", tid);
    snprintf(mpath, sizeof mpath, "/api/threads/%s/messages", tid);
    v = jcall(0, "POST", mpath, "{\"type\": \"user\", \"content\": \"public words\"}", &st);
    assert_int_equal(st, 200);
    json_decref(v);
    expect_error(1, "GET", tpath, NULL, 404, "Thread not found");
    expect_error(1, "GET", mpath, NULL, 404, "Thread not found");
    expect_error(-1, "GET", mpath, NULL, 401, "No valid authentication");

    v = jcall(0, "PATCH", path, "{\"is_public\": true}", &st);
    assert_int_equal(st, 200);
    assert_true(json_is_true(json_object_get(v, "is_public")));
    json_decref(v);
    v = jcall(-1, "GET", path, NULL, &st);
    assert_int_equal(st, 200);
    assert_string_equal(json_string_value(json_object_get(v, "name")), "renamed");
    json_decref(v);
    v = jcall(1, "GET", tpath, NULL, &st);
    assert_int_equal(st, 200);
    assert_int_equal(json_integer_value(json_object_get(v, "message_count")), 1);
    json_decref(v);
    v = jcall(-1, "GET", mpath, NULL, &st);
    assert_int_equal(st, 200);
    assert_int_equal(json_array_size(json_object_get(v, "messages")), 1);
    json_decref(v);
    /* a bad token is still a 401 on a public read */
    v = call2("GET", mpath, "Authorization: Bearer not.a.jwt", NULL, NULL, NULL, 0, &st);
    assert_int_equal(st, 401);
    json_decref(v);
    /* nothing of it writable by another account */
    expect_error(1, "PATCH", path, "{\"is_public\": false}", 404, "Project not found");
    expect_error(1, "DELETE", path, NULL, 404, "Project not found");
    expect_error(1, "PATCH", tpath, "{\"is_public\": false}", 404, "Thread not found");
    expect_error(1, "DELETE", tpath, NULL, 404, "Thread not found");
    expect_error(1, "POST", mpath, "{\"type\": \"user\", \"content\": \"x\"}", 404,
                 "Thread not found");
    char sp[300];
    snprintf(sp, sizeof sp, "/api/thread/%s/agent/start", tid);
    expect_error(1, "POST", sp, "{\"prompt\": \"x\"}", 404, "Thread not found");
    snprintf(sp, sizeof sp, "/api/thread/%s/agent", tid);
    expect_error(1, "GET", sp, NULL, 404, "Thread not found");

    /* delete: its thread's queued run is stopped, the thread and project are gone */
    snprintf(sp, sizeof sp, "/api/thread/%s/agent/start", tid);
    v = jcall(0, "POST", sp, "{\"prompt\": \"work\"}", &st);
    assert_int_equal(st, 200);
    char run[KX_UUID_LEN + 1];
    snprintf(run, sizeof run, "%s", json_string_value(json_object_get(v, "agent_run_id")));
    json_decref(v);
    v = jcall(0, "DELETE", path, NULL, &st);
    assert_int_equal(st, 200);
    assert_string_equal(json_string_value(json_object_get(v, "message")),
                        "Project deleted successfully");
    assert_int_equal(json_integer_value(json_object_get(v, "stopped_runs")), 1);
    json_decref(v);
    char *status = sql1("SELECT status FROM agent_runs WHERE id = $1::uuid", run, NULL);
    assert_string_equal(status, "stopped");
    free(status);
    expect_error(0, "GET", path, NULL, 404, "Project not found");
    expect_error(-1, "GET", tpath, NULL, 401, "No valid authentication");
    expect_error(0, "GET", tpath, NULL, 404, "Thread not found");
    expect_error(0, "DELETE", path, NULL, 404, "Project not found");
    assert_true(purged(tid, 10000));
    free(tid);
}

/* ---- run options ---------------------------------------------------------------------------- */

/* An agent of account with a version; its id (malloc'd). */
static char *make_agent(const char *account, const char *name, bool is_default)
{
    const char *params[] = {account, name, is_default ? "true" : "false"};
    char *aid = kx_th_sql_value(&g_gw.s,
                                "INSERT INTO agents (account_id, name, is_default) VALUES "
                                "($1::uuid, $2, $3::boolean) RETURNING agent_id::text",
                                3, params);
    assert_non_null(aid);
    const char *vp[] = {aid, account};
    char *vid = kx_th_sql_value(
        &g_gw.s,
        "INSERT INTO agent_versions (agent_id, account_id, version_number, version_name, config) "
        "VALUES ($1::uuid, $2::uuid, 1, 'v1', "
        "'{\"system_prompt\": \"be brief\", \"tools\": {\"agentpress\": {\"web\": true}}}') "
        "RETURNING version_id::text",
        2, vp);
    assert_non_null(vid);
    free(sql1("UPDATE agents SET current_version_id = $2::uuid WHERE agent_id = $1::uuid "
              "RETURNING 1",
              aid, vid));
    free(vid);
    return aid;
}

static void test_run_options(void **state)
{
    (void)state;
    long st = 0;
    char *agent_a = make_agent(g_acct_a, "helper", false);
    char *agent_b = make_agent(g_acct_b, "theirs", false);
    long projects = sql_long("SELECT count(*) FROM projects", NULL, NULL);

    /* another account's agent, or no agent at all: 404, nothing created */
    const char *p1[] = {"prompt", "hello", "agent_id", agent_b, NULL};
    json_t *v = initiate(0, p1, &st);
    assert_int_equal(st, 404);
    assert_string_equal(detail(v), "Agent not found or access denied");
    json_decref(v);
    const char *p2[] = {"prompt", "hello", "agent_id", "not-an-id", NULL};
    v = initiate(0, p2, &st);
    assert_int_equal(st, 404);
    json_decref(v);
    /* bad option values name their field */
    const char *p3[] = {"prompt", "hello", "reasoning_effort", "extreme", NULL};
    v = initiate(0, p3, &st);
    assert_int_equal(st, 400);
    assert_non_null(strstr(detail(v), "reasoning_effort"));
    json_decref(v);
    const char *p4[] = {"prompt", "hello", "enable_thinking", "maybe", NULL};
    v = initiate(0, p4, &st);
    assert_int_equal(st, 400);
    assert_non_null(strstr(detail(v), "enable_thinking"));
    json_decref(v);
    const char *p5[] = {"prompt", "hello", "stream", "sometimes", NULL};
    v = initiate(0, p5, &st);
    assert_int_equal(st, 400);
    assert_non_null(strstr(detail(v), "stream"));
    json_decref(v);
    /* files[] without a sandbox-broker on the bus: 503 naming the sandbox, nothing created
     * (the uploads themselves: test_initiate_files.c) */
    const char *mp = "--XyZ\r\nContent-Disposition: form-data; name=\"prompt\"\r\n\r\nread it\r\n"
                     "--XyZ\r\nContent-Disposition: form-data; name=\"files\"; "
                     "filename=\"a.txt\"\r\nContent-Type: text/plain\r\n\r\nabc\r\n--XyZ--\r\n";
    v = call2("POST", "/api/agent/initiate", bearer(0), NULL, "multipart/form-data; boundary=XyZ",
              mp, strlen(mp), &st);
    assert_int_equal(st, 503);
    assert_non_null(strstr(detail(v), "Sandbox service unavailable"));
    json_decref(v);
    assert_int_equal(sql_long("SELECT count(*) FROM projects", NULL, NULL), projects);

    /* the account's agent: stored on the run with its version */
    const char *p6[] = {"prompt", "with agent",       "agent_id", agent_a, "enable_thinking",
                        "true",   "reasoning_effort", "high",     NULL};
    v = initiate(0, p6, &st);
    assert_int_equal(st, 200);
    char tid[KX_UUID_LEN + 1], run[KX_UUID_LEN + 1];
    snprintf(tid, sizeof tid, "%s", json_string_value(json_object_get(v, "thread_id")));
    snprintf(run, sizeof run, "%s", json_string_value(json_object_get(v, "agent_run_id")));
    json_decref(v);
    char *got = sql1("SELECT agent_id::text || ' ' || (agent_version_id IS NOT NULL)::text || ' ' "
                     "|| (metadata ->> 'reasoning_effort') || ' ' || "
                     "(metadata ->> 'enable_thinking') FROM agent_runs WHERE id = $1::uuid",
                     run, NULL);
    char want[200];
    snprintf(want, sizeof want, "%s true high true", agent_a);
    assert_string_equal(got, want);
    free(got);

    /* GET /thread/{id}/agent */
    char path[300];
    snprintf(path, sizeof path, "/api/thread/%s/agent", tid);
    v = jcall(0, "GET", path, NULL, &st);
    assert_int_equal(st, 200);
    assert_string_equal(json_string_value(json_object_get(v, "source")), "recent");
    json_t *ag = json_object_get(v, "agent");
    assert_string_equal(json_string_value(json_object_get(ag, "agent_id")), agent_a);
    assert_string_equal(json_string_value(json_object_get(ag, "name")), "helper");
    assert_string_equal(json_string_value(json_object_get(ag, "system_prompt")), "be brief");
    json_decref(v);
    expect_error(1, "GET", path, NULL, 404, "Thread not found");
    expect_error(0, "GET", "/api/thread/abc/agent", NULL, 404, "Thread not found");

    /* start on the thread: another account's agent 404, a bad strategy 400, reject 409 */
    snprintf(path, sizeof path, "/api/thread/%s/agent/start", tid);
    char body[300];
    snprintf(body, sizeof body, "{\"agent_id\": \"%s\"}", agent_b);
    expect_error(0, "POST", path, body, 404, "Agent not found or access denied");
    expect_error(0, "POST", path, "{\"multitask_strategy\": \"later\"}", 400,
                 "multitask_strategy");
    expect_error(0, "POST", path, "{\"agent_id\": 5}", 400, "agent_id");
    expect_error(0, "POST", path, "{\"multitask_strategy\": \"reject\"}", 409,
                 "already has an active agent run");
    assert_int_equal(sql_long("SELECT count(*) FROM agent_runs WHERE thread_id = $1::uuid", tid,
                              NULL),
                     1);

    /* no agent named: the account's default agent */
    char *agent_d = make_agent(g_acct_a, "default one", true);
    v = jcall(0, "POST", path, "{\"multitask_strategy\": \"interrupt\"}", &st);
    assert_int_equal(st, 200);
    char run2[KX_UUID_LEN + 1];
    snprintf(run2, sizeof run2, "%s", json_string_value(json_object_get(v, "agent_run_id")));
    json_decref(v);
    got = sql1("SELECT agent_id::text FROM agent_runs WHERE id = $1::uuid", run2, NULL);
    assert_string_equal(got, agent_d);
    free(got);

    /* a model the account may not use: Kortix's 403 body, nothing created */
    free(sql1("INSERT INTO account_limits (account_id, allowed_models) VALUES ($1::uuid, "
              "ARRAY['model-a']) RETURNING 1",
              g_acct_a, NULL));
    long runs = sql_long("SELECT count(*) FROM agent_runs", NULL, NULL);
    projects = sql_long("SELECT count(*) FROM projects", NULL, NULL);
    const char *p7[] = {"prompt", "x", "model_name", "model-b", NULL};
    v = initiate(0, p7, &st);
    assert_int_equal(st, 403);
    json_t *d = json_object_get(v, "detail");
    assert_non_null(strstr(json_string_value(json_object_get(d, "message")), "model-b"));
    assert_string_equal(json_string_value(json_array_get(json_object_get(d, "allowed_models"), 0)),
                        "model-a");
    json_decref(v);
    assert_int_equal(sql_long("SELECT count(*) FROM agent_runs", NULL, NULL), runs);
    assert_int_equal(sql_long("SELECT count(*) FROM projects", NULL, NULL), projects);
    free(sql1("DELETE FROM account_limits WHERE account_id = $1::uuid RETURNING 1", g_acct_a,
              NULL));

    /* a thread whose runs had no agent: source none */
    free(sql1("UPDATE agents SET is_default = false WHERE agent_id = $1::uuid RETURNING 1",
              agent_d, NULL));
    const char *p8[] = {"prompt", "plain", NULL};
    v = initiate(0, p8, &st);
    assert_int_equal(st, 200);
    snprintf(path, sizeof path, "/api/thread/%s/agent",
             json_string_value(json_object_get(v, "thread_id")));
    json_decref(v);
    v = jcall(0, "GET", path, NULL, &st);
    assert_int_equal(st, 200);
    assert_true(json_is_null(json_object_get(v, "agent")));
    assert_string_equal(json_string_value(json_object_get(v, "source")), "none");
    json_decref(v);
    free(agent_a);
    free(agent_b);
    free(agent_d);
}

/* Numbers that jsonb would print back as integers too big for jansson (>= 2^63): refused on
 * input with a 400 naming their place; one already stored (another writer, older data) is
 * read back as a real, not a 500 for the whole answer. */
static void test_big_numbers(void **state)
{
    (void)state;
    long st = 0;
    char t[KX_UUID_LEN + 1], p[KX_UUID_LEN + 1], path[300];
    new_thread(0, "numbers", t, p);
    snprintf(path, sizeof path, "/api/threads/%s", t);
    expect_error(0, "PATCH", path, "{\"metadata\": {\"a\": 1e20}}", 400, "metadata.a");
    expect_error(0, "PATCH", path, "{\"metadata\": {\"b\": [1, -1e19]}}", 400, "metadata.b[1]");
    json_t *v = jcall(0, "PATCH", path, "{\"metadata\": {\"c\": 9e18, \"d\": 1.5}}", &st);
    assert_int_equal(st, 200); /* below 2^63: stored, read back */
    json_decref(v);
    v = jcall(0, "GET", path, NULL, &st);
    assert_int_equal(st, 200);
    json_decref(v);
    char *agent = make_agent(g_acct_a, "numbers", false);
    expect_error(0, "POST", "/api/agents",
                 "{\"name\": \"n\", \"system_prompt\": \"s\", \"agentpress_tools\": "
                 "{\"sb_files_tool\": {\"enabled\": true, \"x\": 1e20}}}",
                 400, "agentpress_tools.sb_files_tool.x");
    char apath[300];
    snprintf(apath, sizeof apath, "/api/agents/%s", agent);
    expect_error(0, "PUT", apath, "{\"agentpress_tools\": {\"sb_files_tool\": {\"x\": -1e300}}}",
                 400, "agentpress_tools.sb_files_tool.x");

    /* stored anyway (not through the API): every answer that carries it still reads */
    free(sql1("UPDATE threads SET metadata = '{\"a\": 1e20, \"n\": -123456789012345678901}' "
              "WHERE thread_id = $1::uuid RETURNING 1",
              t, NULL));
    free(sql1("UPDATE agents SET metadata = '{\"x\": 1e20}' WHERE agent_id = $1::uuid "
              "RETURNING 1",
              agent, NULL));
    v = jcall(0, "GET", path, NULL, &st);
    assert_int_equal(st, 200);
    json_t *meta = json_object_get(v, "metadata");
    assert_true(json_is_real(json_object_get(meta, "a")));
    assert_true(json_real_value(json_object_get(meta, "a")) == 1e20);
    assert_true(json_real_value(json_object_get(meta, "n")) < -1.2e20);
    json_decref(v);
    v = jcall(0, "GET", "/api/threads", NULL, &st);
    assert_int_equal(st, 200);
    json_decref(v);
    v = jcall(0, "GET", "/api/agents", NULL, &st);
    assert_int_equal(st, 200);
    json_decref(v);
    free(agent);
}

/* ---- deleting a long thread ------------------------------------------------------------------ */

/* Deleting a thread does not wait for its messages: the delete marks it deleted and queues it,
 * and the purger removes the messages a batch at a time. Before, one DELETE of every message
 * ran in the request under the 5 s statement timeout: a thread of a million rows could never
 * be deleted. Shown here with a message row locked by another session (as a long thread's
 * DELETE would take long): the answer comes at once, the thread is gone for readers, and once
 * the lock goes the purger (its blocked batch timed out, tried again) removes everything
 * (before: the DELETE waited for the timeout and failed, the thread stayed). The purger's run
 * that failed is counted for the operator (kx_gateway_purge_failures_total; before: logged
 * only). */
static void test_delete_does_not_wait_for_messages(void **state)
{
    (void)state;
    char tid[KX_UUID_LEN + 1], pid[KX_UUID_LEN + 1], path[200];
    new_thread(0, "a long thread", tid, pid);
    PGconn *locker = fill_and_lock(tid, 20000, false);

    snprintf(path, sizeof path, "/api/threads/%s", tid);
    int64_t t0 = kx_mono_ms();
    long st = 0;
    json_t *v = jcall(0, "DELETE", path, NULL, &st);
    int64_t took = kx_mono_ms() - t0;
    print_message("[ delete   ] %ld in %lld ms with a message row locked\n", st, (long long)took);
    json_decref(v);
    assert_int_equal(st, 200);
    assert_true(took < 2500);
    expect_error(0, "GET", path, NULL, 404, "Thread not found");
    snprintf(path, sizeof path, "/api/threads/%s/messages", tid);
    expect_error(0, "GET", path, NULL, 404, "Thread not found");

    /* the blocked batch ends at the statement timeout: a failed run, counted */
    int64_t until = kx_mono_ms() + 30000;
    long long failures = -1;
    while ((failures = kx_th_metric(g_gw.health_port, "kx_gateway_purge_failures_total")) < 1 &&
           kx_mono_ms() < until)
        usleep(100 * 1000);
    print_message("[ purge    ] kx_gateway_purge_failures_total %lld with the row locked\n",
                  failures);
    assert_true(failures >= 1);
    PQclear(PQexec(locker, "COMMIT"));
    PQfinish(locker);
    int64_t t1 = kx_mono_ms();
    assert_true(purged(tid, 30000));
    print_message("[ purge    ] 20000 messages gone %lld ms after the lock went\n",
                  (long long)(kx_mono_ms() - t1));
}

/* ---- long lists ---------------------------------------------------------------------------- */

/* GET path as account b: the array under key must have want rows and has_more must be more. */
static void expect_page(const char *path, const char *key, size_t want, bool more)
{
    long st = 0;
    json_t *v = jcall(1, "GET", path, NULL, &st);
    assert_int_equal(st, 200);
    size_t got = json_array_size(json_object_get(v, key));
    if (got != want || json_is_true(json_object_get(v, "has_more")) != more)
        fail_msg("GET %s: %zu %s, has_more %s (want %zu, %s)", path, got, key,
                 json_is_true(json_object_get(v, "has_more")) ? "true" : "false", want,
                 more ? "true" : "false");
    json_decref(v);
}

/* A thread's runs and an account's projects are answered a page at a time: at most 1000
 * (Supabase's default row cap, which bounded Kortix's answers), newest first, with has_more,
 * ?limit= and ?offset=. They were answered whole: a thread with a trigger firing every minute
 * gathers half a million runs a year, an account a project per initiate. So are API keys, and
 * triggers also within 8 MiB of prompts (1000 triggers of 256 KiB prompts were 256 MB). */
static void test_long_lists_are_paged(void **state)
{
    (void)state;
    char tid[KX_UUID_LEN + 1], pid[KX_UUID_LEN + 1], path[200];
    new_thread(1, "many runs", tid, pid);
    char *n = sql1("WITH r AS (INSERT INTO agent_runs (thread_id, account_id, project_id, status, "
                   "started_at, completed_at, created_at) SELECT t.thread_id, t.account_id, "
                   "t.project_id, 'completed', now(), now(), now() - g * interval '1 ms' "
                   "FROM threads t, generate_series(1, 1003) g WHERE t.thread_id = $1::uuid "
                   "RETURNING 1) SELECT count(*) FROM r",
                   tid, NULL);
    assert_string_equal(n, "1003");
    free(n);
    snprintf(path, sizeof path, "/api/thread/%s/agent-runs", tid);
    expect_page(path, "agent_runs", 1000, true);
    snprintf(path, sizeof path, "/api/thread/%s/agent-runs?offset=1000", tid);
    expect_page(path, "agent_runs", 3, false);
    snprintf(path, sizeof path, "/api/thread/%s/agent-runs?limit=2&offset=1", tid);
    expect_page(path, "agent_runs", 2, true);
    snprintf(path, sizeof path, "/api/thread/%s/agent-runs?limit=0", tid);
    expect_error(1, "GET", path, NULL, 400, "limit");
    snprintf(path, sizeof path, "/api/thread/%s/agent-runs?offset=-1", tid);
    expect_error(1, "GET", path, NULL, 400, "offset");

    long before = sql_long("SELECT count(*) FROM projects WHERE account_id = $1::uuid AND "
                           "deleted_at IS NULL",
                           g_acct_b, NULL);
    n = sql1("WITH p AS (INSERT INTO projects (account_id, name) SELECT $1::uuid, 'p' || g "
             "FROM generate_series(1, 1001) g RETURNING 1) SELECT count(*) FROM p",
             g_acct_b, NULL);
    assert_string_equal(n, "1001");
    free(n);
    size_t total = (size_t)before + 1001;
    expect_page("/api/projects", "projects", 1000, true);
    snprintf(path, sizeof path, "/api/projects?offset=1000");
    expect_page(path, "projects", total - 1000, false);
    expect_page("/api/projects?limit=5", "projects", 5, true);
    expect_error(1, "GET", "/api/projects?limit=1001", NULL, 400, "limit");

    /* API keys: the same 1000 (a bare array, as Kortix's) */
    before = sql_long("SELECT count(*) FROM api_keys WHERE account_id = $1::uuid", g_acct_b, NULL);
    n = sql1(
        "WITH k AS (INSERT INTO api_keys (account_id, public_key, secret_hash, title) "
        "SELECT $1::uuid, 'pk_' || md5($1::text || g), md5('a' || g) || md5('b' || g), 'k' || g "
        "FROM generate_series(1, 1002) g RETURNING 1) SELECT count(*) FROM k",
        g_acct_b, NULL);
    assert_non_null(n);
    assert_string_equal(n, "1002");
    free(n);
    long st = 0;
    json_t *keys = jcall(1, "GET", "/api/api-keys", NULL, &st);
    assert_int_equal(st, 200);
    assert_int_equal(json_array_size(keys), 1000);
    json_decref(keys);
    keys = jcall(1, "GET", "/api/api-keys?offset=1000", NULL, &st);
    assert_int_equal(json_array_size(keys), (size_t)before + 2);
    json_decref(keys);

    /* triggers: also at most 8 MiB of their prompts (each up to KX_MAX_PROMPT_BYTES) */
    char *agent = make_agent(g_acct_b, "lists", false);
    const char *tp[] = {g_acct_b, agent};
    n = kx_th_sql_value(&g_gw.s,
                        "WITH t AS (INSERT INTO run_triggers (account_id, agent_id, name, "
                        "cron_expression, prompt, is_active, created_at) SELECT $1::uuid, "
                        "$2::uuid, 't' || g, '0 * * * *', g || repeat('x', 300000), false, "
                        "now() - g * interval '1 ms' FROM generate_series(1, 30) g "
                        "RETURNING 1) SELECT count(*) FROM t",
                        2, tp);
    assert_non_null(n);
    assert_string_equal(n, "30");
    free(n);
    free(agent);
    expect_page("/api/triggers", "triggers", 27, true); /* 27 x 300 KB <= 8 MiB < 28 x */
    expect_page("/api/triggers?offset=27", "triggers", 3, false);
    expect_page("/api/triggers?limit=2", "triggers", 2, true);
}

/* ---- a start racing a delete ------------------------------------------------------------------ */

typedef struct http_job {
    pthread_t t;
    const char *method, *body;
    char path[200];
    long status;
    json_t *answer;
} http_job;

static void *http_job_run(void *arg) /* as account a; its own header line (bearer's is shared) */
{
    http_job *j = arg;
    char auth[600];
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", g_tok_a);
    j->answer = call2(j->method, j->path, auth, NULL, j->body ? "application/json" : NULL, j->body,
                      j->body ? strlen(j->body) : 0, &j->status);
    return NULL;
}

/* Waits up to limit_ms for n sessions to wait for a lock; false if fewer do. */
static bool lock_waiters_within(long n, int64_t limit_ms)
{
    int64_t until = kx_mono_ms() + limit_ms;
    while (sql_long("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND datname = current_database()",
                    NULL, NULL) < n) {
        if (kx_mono_ms() > until)
            return false;
        usleep(20 * 1000);
    }
    return true;
}

/* A start on a thread whose delete (of the thread, or of its project) is under way must not
 * leave a run on the deleted thread: the delete stops the runs it sees, and a run the start
 * committed after that was left queued — the scheduler would run it, its messages written
 * after the purge and never removed. Made deterministic here: a session holds a lock on the
 * thread's first run, so the delete waits inside its transaction while the start comes. */
static void start_during_delete(bool project)
{
    char tid[KX_UUID_LEN + 1], pid[KX_UUID_LEN + 1];
    new_thread(0, project ? "race: project" : "race: thread", tid, pid);
    long st = 0;
    char start[200];
    snprintf(start, sizeof start, "/api/thread/%s/agent/start", tid);
    json_t *v = jcall(0, "POST", start, "{\"prompt\": \"first\"}", &st);
    assert_int_equal(st, 200);
    char first[KX_UUID_LEN + 1];
    snprintf(first, sizeof first, "%s", json_string_value(json_object_get(v, "agent_run_id")));
    json_decref(v);

    PGconn *locker = PQconnectdb(g_gw.s.pg.url);
    assert_int_equal(PQstatus(locker), CONNECTION_OK);
    PQclear(PQexec(locker, "BEGIN"));
    const char *lp[] = {first};
    PGresult *r = PQexecParams(locker, "SELECT 1 FROM agent_runs WHERE id = $1::uuid FOR UPDATE",
                               1, NULL, lp, NULL, NULL, 0);
    assert_int_equal(PQntuples(r), 1);
    PQclear(r);

    http_job del = {.method = "DELETE"},
             late = {.method = "POST", .body = "{\"prompt\": \"late\"}"};
    snprintf(del.path, sizeof del.path, "/api/%s/%s", project ? "projects" : "threads",
             project ? pid : tid);
    snprintf(late.path, sizeof late.path, "%s", start);
    assert_int_equal(pthread_create(&del.t, NULL, http_job_run, &del), 0);
    assert_true(lock_waiters_within(1, 10000)); /* the delete waits for the run's lock */
    assert_int_equal(pthread_create(&late.t, NULL, http_job_run, &late), 0);
    (void)lock_waiters_within(2, 2000); /* the start waits for the delete, or it answered */
    PQclear(PQexec(locker, "COMMIT"));
    PQfinish(locker);
    pthread_join(del.t, NULL);
    pthread_join(late.t, NULL);
    print_message("[ race     ] %s delete %ld, start meanwhile %ld %s\n",
                  project ? "project" : "thread", del.status, late.status,
                  late.status == 200 ? "" : detail(late.answer));
    assert_int_equal(del.status, 200);
    json_decref(del.answer);
    long left = sql_long("SELECT count(*) FROM agent_runs WHERE thread_id = $1::uuid "
                         "AND status IN ('queued', 'running')",
                         tid, NULL);
    if (left != 0)
        fail_msg("%ld run(s) %s on the deleted thread (the start meanwhile answered %ld)", left,
                 "queued", late.status);
    assert_int_equal(late.status, 404);
    assert_string_equal(detail(late.answer), "Thread not found");
    json_decref(late.answer);
    assert_true(purged(tid, 10000));
}

static void test_start_racing_a_delete(void **state)
{
    (void)state;
    start_during_delete(false);
    start_during_delete(true);
}

/* Runs the gateway's statement name (store.c's table) on c with n parameters; its rows. */
static int gw_stmt_rows(PGconn *c, const char *name, int n, const char *const *params)
{
    PGresult *r =
        PQexecParams(c, kx_th_stmt_sql(gw_store_statements, name), n, NULL, params, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK)
        fail_msg("%s: %s", name, PQresultErrorMessage(r));
    int rows = st == PGRES_TUPLES_OK ? PQntuples(r) : (int)strtol(PQcmdTuples(r), NULL, 10);
    PQclear(r);
    return rows;
}

/* A message added to a thread (POST /api/threads/{id}/messages, or /messages/add?message=)
 * while the thread is deleted and its messages purged must not outlive the purge. The route
 * checked the thread (live, the account's) with one statement and inserted with another: a
 * delete and its finished purge between the two left the message on a deleted thread whose
 * purge was done — an orphan nothing removes. Made deterministic here: a session takes the
 * thread's row lock as the gateway's delete does (gw_thread_lock) before the message comes,
 * so the insert waits for it; then, in the same transaction, it marks the thread deleted
 * (gw_thread_forget) and purges it as the purger does (gw_purge_batch, gw_purge_done). The
 * gateway's own delete would queue behind the insert's wait on the row, so the delete and the
 * purge are the gateway's statements run by this session. Now: the insert's statement locks
 * the live thread FOR SHARE, waits for the delete, finds it deleted: 404, nothing left. */
static void message_during_delete(bool query_form)
{
    char tid[KX_UUID_LEN + 1], pid[KX_UUID_LEN + 1];
    new_thread(0, query_form ? "race: message/add" : "race: messages", tid, pid);
    PGconn *deleter = PQconnectdb(g_gw.s.pg.url);
    assert_int_equal(PQstatus(deleter), CONNECTION_OK);
    PQclear(PQexec(deleter, "BEGIN"));
    const char *lp[] = {tid, g_acct_a};
    assert_int_equal(gw_stmt_rows(deleter, "gw_thread_lock", 2, lp), 1);

    http_job add = {.method = "POST",
                    .body = query_form ? NULL : "{\"type\": \"user\", \"content\": \"late\"}"};
    snprintf(add.path, sizeof add.path,
             query_form ? "/api/threads/%s/messages/add?message=late" : "/api/threads/%s/messages",
             tid);
    assert_int_equal(pthread_create(&add.t, NULL, http_job_run, &add), 0);
    bool waited = lock_waiters_within(1, 10000); /* the insert waits for the thread's row */
    const char *pp[] = {tid, "5000"};
    assert_int_equal(gw_stmt_rows(deleter, "gw_thread_forget", 1, pp), 1);
    (void)gw_stmt_rows(deleter, "gw_purge_batch", 2, pp);
    assert_int_equal(gw_stmt_rows(deleter, "gw_purge_done", 1, pp), 1);
    PQclear(PQexec(deleter, "COMMIT"));
    PQfinish(deleter);
    pthread_join(add.t, NULL);
    print_message("[ race     ] thread deleted and purged, %s meanwhile: %ld %s\n",
                  query_form ? "messages/add" : "messages", add.status,
                  add.status == 200 ? "" : detail(add.answer));
    assert_true(waited);
    long left = sql_long("SELECT count(*) FROM messages WHERE thread_id = $1::uuid", tid, NULL);
    long queued =
        sql_long("SELECT count(*) FROM message_purges WHERE thread_id = $1::uuid", tid, NULL);
    if (left != 0)
        fail_msg("%ld message(s) left on the deleted thread after its purge (%ld purge queued; "
                 "the message meanwhile answered %ld)",
                 left, queued, add.status);
    assert_int_equal(add.status, 404);
    assert_string_equal(detail(add.answer), "Thread not found");
    json_decref(add.answer);
}

static void test_message_racing_a_delete(void **state)
{
    (void)state;
    message_during_delete(false);
    message_during_delete(true);
}

/* A page of messages reads the contents of its own rows only: each row's size (for the page's
 * ~8 MiB) is the stored llm_bytes of an LLM message (migration 021), not its content made text
 * again — which read every row up to ?limit (1000 by default), whatever the page kept: a public
 * thread of a thousand 1 MB tool results cost Postgres a GB of detoasting per request (of
 * anyone: public threads need no credentials), and a longer one ran past the statement
 * timeout, so the thread could not be shown. The gateway's statement, a page of 100 KB of 100
 * messages of ~40 KB. */
static void test_messages_page_reads_only_its_rows(void **state)
{
    (void)state;
    char tid[KX_UUID_LEN + 1], pid[KX_UUID_LEN + 1];
    new_thread(0, "long tool results", tid, pid);
    char *n = sql1("WITH m AS (INSERT INTO messages (thread_id, account_id, type, "
                   "is_llm_message, content) SELECT $1::uuid, $2::uuid, 'tool', true, "
                   "jsonb_build_object('role', 'tool', 'content', (SELECT string_agg(md5(g || "
                   "'.' || i), '') FROM generate_series(1, 1250) i)) "
                   "FROM generate_series(1, 100) g RETURNING 1) SELECT count(*) FROM m",
                   tid, g_acct_a);
    assert_string_equal(n, "100");
    free(n);
    PGconn *c = PQconnectdb(g_gw.s.pg.url);
    assert_int_equal(PQstatus(c), CONNECTION_OK);
    PGresult *r =
        PQprepare(c, "page", kx_th_stmt_sql(gw_store_statements, "gw_messages_desc"), 0, NULL);
    assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
    PQclear(r);
    const char *args[] = {tid, "1000", NULL, "100000"};
    r = PQexecPrepared(c, "page", 4, args, NULL, NULL, 0);
    assert_int_equal(PQntuples(r), 1);
    json_t *page = json_loads(PQgetvalue(r, 0, 0), 0, NULL);
    PQclear(r);
    assert_int_equal(json_array_size(json_object_get(page, "rows")), 2); /* ~40 KB each */
    assert_int_equal(json_integer_value(json_object_get(page, "more")), 98);
    json_decref(page);
    char explain[200];
    snprintf(explain, sizeof explain, "EXECUTE page('%s', 1000, NULL, 100000)", tid);
    long blocks = kx_th_plan_buffers(c, explain);
    PQfinish(c);
    print_message("[ messages ] a page of 2 of 100 messages: %ld buffers\n", blocks);
    assert_true(blocks > 0);
    if (blocks > 200)
        fail_msg("a page of 2 messages touched %ld buffers: every message's content read", blocks);
}

/* A Postgres restart while the purger deletes a thread's messages (its batch waiting on a row
 * another session locked, so the restart cuts it mid-statement): the purger's next look, on a
 * new connection, removes them all — within seconds, its retry backing off from 1 s. Before, a
 * failed run waited the whole KX_PURGE_INTERVAL_MS (60 s here, the default) for the next. */
static void test_purger_survives_a_postgres_restart(void **state)
{
    (void)state;
    char tid[KX_UUID_LEN + 1], pid[KX_UUID_LEN + 1], path[200];
    new_thread(0, "purged across a restart", tid, pid);
    PGconn *locker = fill_and_lock(tid, 12000, true);
    snprintf(path, sizeof path, "/api/threads/%s", tid);
    long st = 0;
    json_decref(jcall(0, "DELETE", path, NULL, &st));
    assert_int_equal(st, 200);
    assert_true(lock_waiters_within(1, 10000)); /* the purger's batch waits for the row */
    assert_int_equal(kx_th_pg_restart(&g_gw.s.pg), KX_OK); /* mid-batch; the locker goes */
    PQfinish(locker);
    int64_t t0 = kx_mono_ms();
    bool ok = purged(tid, 10000);
    print_message("[ purge    ] after a restart: %s in %lld ms\n", ok ? "gone" : "NOT gone",
                  (long long)(kx_mono_ms() - t0));
    assert_true(ok);
}

/* The purger takes the oldest queued thread from the queue's head (migration 025's index):
 * with the primary key alone, each take (ORDER BY created_at LIMIT 1 FOR UPDATE SKIP LOCKED:
 * a full sort under FOR UPDATE) read and sorted the whole queue, so emptying a queue of n
 * deleted threads (a bulk delete of projects) cost n whole sorts — an hour of the database's
 * time at 100 000. The gateway's statement on a queue of 20 000 (uncommitted, in this session:
 * the purger never sees them), analyzed. */
static void test_purge_take_reads_the_queue_head(void **state)
{
    (void)state;
    PGconn *c = PQconnectdb(g_gw.s.pg.url);
    assert_int_equal(PQstatus(c), CONNECTION_OK);
    PQclear(PQexec(c, "BEGIN"));
    PGresult *r = PQexec(c,
                         "INSERT INTO message_purges (thread_id, created_at) "
                         "SELECT gen_random_uuid(), now() + g * interval '1 ms' "
                         "FROM generate_series(1, 20000) g");
    assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
    PQclear(r);
    PQclear(PQexec(c, "ANALYZE message_purges"));
    r = PQprepare(c, "take", kx_th_stmt_sql(gw_store_statements, "gw_purge_next"), 0, NULL);
    assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
    PQclear(r);
    long blocks = kx_th_plan_buffers(c, "EXECUTE take");
    PQclear(PQexec(c, "ROLLBACK"));
    PQfinish(c);
    print_message("[ purge    ] a take from a queue of 20000: %ld buffers\n", blocks);
    assert_true(blocks > 0);
    if (blocks > 20)
        fail_msg("a take from a queue of 20000 touched %ld buffers: the whole queue read", blocks);
}

/* GET path as account b: the ids (under idkey) of the page's items under key appended to ids
 * (a JSON array); the last one into last; whether more follow. */
static bool page_ids(const char *path, const char *key, const char *idkey, json_t *ids,
                     char last[KX_UUID_LEN + 1])
{
    long st = 0;
    json_t *v = jcall(1, "GET", path, NULL, &st);
    if (st != 200)
        fail_msg("GET %s: %ld", path, st);
    size_t i;
    json_t *item;
    json_array_foreach(json_object_get(v, key), i, item)
    {
        const char *id = json_string_value(json_object_get(item, idkey));
        assert_non_null(id);
        json_array_append_new(ids, json_string(id));
        snprintf(last, KX_UUID_LEN + 1, "%s", id);
    }
    bool more = json_is_true(json_object_get(v, "has_more"));
    json_decref(v);
    return more;
}

/* Walking a list by ?before=<the last id> neither repeats nor skips an item when items are
 * created and deleted between the pages (an offset repeats as many items as were created
 * since: every trigger fire creates a project). The projects made here share their created_at
 * three by three, and the runs two by two: the id orders them. */
static void test_pages_by_cursor(void **state)
{
    (void)state;
    const char *acct[] = {g_acct_b};
    char *n = kx_th_sql_value(&g_gw.s,
                              "WITH p AS (INSERT INTO projects (account_id, name, created_at) "
                              "SELECT $1::uuid, 'cursor ' || g, now() + interval '1 day' + "
                              "(g / 3) * interval '1 ms' FROM generate_series(1, 25) g "
                              "RETURNING 1) SELECT count(*) FROM p",
                              1, acct);
    assert_string_equal(n, "25");
    free(n);
    json_t *ids = json_array();
    char last[KX_UUID_LEN + 1] = "", path[200];
    assert_true(page_ids("/api/projects?limit=10", "projects", "project_id", ids, last));
    /* between the pages: three newer projects, and one not yet listed deleted */
    free(kx_th_sql_value(&g_gw.s,
                         "INSERT INTO projects (account_id, name, created_at) SELECT $1::uuid, "
                         "'newer', now() + interval '2 days' FROM generate_series(1, 3) "
                         "RETURNING 'ok'",
                         1, acct));
    free(kx_th_sql_value(&g_gw.s,
                         "UPDATE projects SET deleted_at = now() WHERE project_id = (SELECT "
                         "project_id FROM projects WHERE account_id = $1::uuid AND name LIKE "
                         "'cursor %' ORDER BY created_at, project_id LIMIT 1) RETURNING 'ok'",
                         1, acct));
    for (int pages = 1; pages < 200; pages++) { /* the account's other projects too */
        snprintf(path, sizeof path, "/api/projects?limit=%d&before=%s", pages < 3 ? 10 : 1000,
                 last);
        if (!page_ids(path, "projects", "project_id", ids, last))
            break;
    }
    /* every "cursor" project but the deleted one once, in order, and no newer one */
    char *want = kx_th_sql_value(&g_gw.s,
                                 "SELECT json_agg(project_id ORDER BY created_at DESC, "
                                 "project_id)::text FROM projects WHERE account_id = $1::uuid "
                                 "AND deleted_at IS NULL AND name <> 'newer'",
                                 1, acct);
    char *got = json_dumps(ids, JSON_COMPACT);
    json_t *w = json_loads(want, 0, NULL);
    char *want_text = json_dumps(w, JSON_COMPACT);
    if (strcmp(got, want_text) != 0)
        fail_msg("projects by cursor: %zu listed, want %zu (repeated or skipped)",
                 json_array_size(ids), json_array_size(w));
    free(want_text);
    json_decref(w);
    free(want);
    free(got);
    json_decref(ids);

    /* a thread's runs by cursor: 1003 runs, pages of 400 */
    char tid[KX_UUID_LEN + 1], pid[KX_UUID_LEN + 1];
    new_thread(1, "runs by cursor", tid, pid);
    n = sql1("WITH r AS (INSERT INTO agent_runs (thread_id, account_id, project_id, status, "
             "started_at, completed_at, created_at) SELECT t.thread_id, t.account_id, "
             "t.project_id, 'completed', now(), now(), now() - (g / 2) * interval '1 ms' "
             "FROM threads t, generate_series(1, 1003) g WHERE t.thread_id = $1::uuid "
             "RETURNING 1) SELECT count(*) FROM r",
             tid, NULL);
    assert_string_equal(n, "1003");
    free(n);
    ids = json_array();
    snprintf(path, sizeof path, "/api/thread/%s/agent-runs?limit=400", tid);
    bool more = page_ids(path, "agent_runs", "id", ids, last);
    for (int pages = 0; more && pages < 20; pages++) { /* bounded: a cursor ignored repeats */
        snprintf(path, sizeof path, "/api/thread/%s/agent-runs?limit=400&before=%s", tid, last);
        more = page_ids(path, "agent_runs", "id", ids, last);
    }
    char *listed = json_dumps(ids, JSON_COMPACT);
    long distinct = sql_long("SELECT count(DISTINCT x) FROM json_array_elements_text($1::json) x",
                             listed, NULL);
    free(listed);
    assert_int_equal(json_array_size(ids), 1003);
    assert_int_equal(distinct, 1003);
    json_decref(ids);

    char apid[KX_UUID_LEN + 1], atid[KX_UUID_LEN + 1];
    new_thread(0, "another account's", atid, apid);
    /* API keys (a bare array) and triggers by cursor: every one once */
    long keys =
        sql_long("SELECT count(*) FROM api_keys WHERE account_id = $1::uuid", g_acct_b, NULL);
    long st = 0;
    json_t *page = jcall(1, "GET", "/api/api-keys?limit=600", NULL, &st);
    assert_int_equal(st, 200);
    json_t *all = json_array();
    for (int pages = 0; json_array_size(page) > 0 && pages < 20; pages++) { /* bounded */
        json_array_extend(all, page);
        const char *lastkey = json_string_value(
            json_object_get(json_array_get(page, json_array_size(page) - 1), "key_id"));
        snprintf(path, sizeof path, "/api/api-keys?limit=600&before=%s", lastkey);
        json_decref(page);
        page = jcall(1, "GET", path, NULL, &st);
        assert_int_equal(st, 200);
    }
    json_decref(page);
    listed = json_dumps(all, JSON_COMPACT);
    distinct = sql_long("SELECT count(DISTINCT x->>'key_id') FROM json_array_elements($1::json) x",
                        listed, NULL);
    free(listed);
    print_message("[ cursor   ] %zu API keys listed, %ld distinct, of %ld\n", json_array_size(all),
                  distinct, keys);
    assert_int_equal(json_array_size(all), keys);
    assert_int_equal(distinct, keys);
    json_decref(all);
    snprintf(path, sizeof path, "/api/api-keys?before=%s", apid);
    expect_error(1, "GET", path, NULL, 400, "before is not one of the listed keys");
    ids = json_array();
    more = page_ids("/api/triggers?limit=7", "triggers", "trigger_id", ids, last);
    for (int pages = 0; more && pages < 20; pages++) {
        snprintf(path, sizeof path, "/api/triggers?limit=7&before=%s", last);
        more = page_ids(path, "triggers", "trigger_id", ids, last);
    }
    long triggers =
        sql_long("SELECT count(*) FROM run_triggers WHERE account_id = $1::uuid", g_acct_b, NULL);
    listed = json_dumps(ids, JSON_COMPACT);
    distinct = sql_long("SELECT count(DISTINCT x) FROM json_array_elements_text($1::json) x",
                        listed, NULL);
    free(listed);
    assert_int_equal(json_array_size(ids), triggers);
    assert_int_equal(distinct, triggers);
    json_decref(ids);
    snprintf(path, sizeof path, "/api/triggers?before=%s", apid);
    expect_error(1, "GET", path, NULL, 400, "before is not one of the listed triggers");

    expect_error(1, "GET", "/api/projects?before=not-a-uuid", NULL, 400,
                 "before must be the id of the last item of the previous page");
    snprintf(path, sizeof path, "/api/projects?before=%s", pid); /* b's: the 1001 older ones */
    expect_page(path, "projects", 1000, true);
    snprintf(path, sizeof path, "/api/projects?before=%s", apid);
    expect_error(1, "GET", path, NULL, 400, "before is not one of the listed projects");
    snprintf(path, sizeof path, "/api/thread/%s/agent-runs?before=%s", tid, apid);
    expect_error(1, "GET", path, NULL, 400, "before is not one of the listed agent_runs");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_api_keys),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_projects),
        cmocka_unit_test(test_run_options),
        cmocka_unit_test(test_big_numbers),
        cmocka_unit_test(test_long_lists_are_paged),
        cmocka_unit_test(test_pages_by_cursor),
        cmocka_unit_test(test_delete_does_not_wait_for_messages),
        cmocka_unit_test(test_start_racing_a_delete),
        cmocka_unit_test(test_message_racing_a_delete),
        cmocka_unit_test(test_purge_take_reads_the_queue_head),
        cmocka_unit_test(test_messages_page_reads_only_its_rows),
        cmocka_unit_test(test_purger_survives_a_postgres_restart), /* last: restarts Postgres */
    };
    if (getenv("KX_TEST_FILTER") != NULL)
        cmocka_set_test_filter(getenv("KX_TEST_FILTER"));
    int failed = cmocka_run_group_tests(tests, setup, NULL);
    kx_th_gw_stop(&g_gw, failed != 0);
    free(g_tok_a);
    free(g_tok_b);
    return failed == 0 ? 0 : 1;
}
