/* tests/integration/test_gateway_api.c — the gateway alone, through its HTTP API, against a
 * real nats-server and PostgreSQL (no scheduler, no runner: this test plays their part on the
 * bus where it needs to).
 *
 * What it proves, each against docs/api.md and docs/architecture.md:
 *   - POST /api/agent/initiate (multipart and urlencoded) creates project (named after the
 *     prompt, cut to 30 characters + "..." without breaking UTF-8), thread, user message
 *     ({"role": "user", "content": ...} as a jsonb object) and a queued run with its metadata,
 *     and publishes RunSubmit on kx.run.submit with Kx-Deadline, traceparent and Kx-Account;
 *   - messages (add, list in both orders, in pages bounded in rows and bytes), agent/start (with a prompt in the same statement),
 *     GET agent-run (camelCase), thread agent-runs (newest first);
 *   - stop: the compare-and-set, STOP on kx.run.ctl.<id>, the exact terminal event; a second
 *     stop answers the final status;
 *   - the SSE stream: replay of events published before it opened, live events, the stopped
 *     event last; an identical replay afterwards; the Postgres status for a run whose events
 *     are gone; headers;
 *   - errors: 400/401/403/404/405/413 with their exact details;
 *   - /api/health (503 "degraded" naming the missing services, fast), ops routes;
 *   - SIGTERM with an open stream: the stream ends and the gateway exits 0.
 *
 * It uses the stack helpers of tests/harness/stack.h for HTTP, SSE and SQL on a kx_th_stack
 * whose base_url, pg and secret it fills itself (only the gateway runs). The gateway binary is
 * KX_BUILD_DIR/services/gateway/gateway unless KX_TEST_GATEWAY_BIN names another one. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "api_client.h"
#include "kx/bus.h"
#include "kx/jwt.h"
#include "kx/log.h"
#include "kx/pb.h"
#include "kx/time.h"
#include "kx/uuid.h"
#include "stack.h"

#define STOPPED \
    "{\"type\": \"status\", \"status\": \"stopped\", \"message\": \"Agent run stopped by user\"}"
#define COMPLETED \
    "{\"type\": \"status\", \"status\": \"completed\", \"message\": \"Agent run completed successfully\"}"

static kx_th_stack g_s; /* only dir, nats, pg, base_url, secret are used */
static pid_t g_gateway;
static char g_log[600];
static kx_bus *g_bus;

/* ---- setup ------------------------------------------------------------------------------- */

static int start_all(void **state)
{
    kx_log_init("test-gateway", "test");
    kx_log_set_level(KX_LOG_WARN);
    memset(&g_s, 0, sizeof g_s);
    g_s.dir = kx_th_tmpdir("kx-it-gateway");
    if (g_s.dir == NULL || kx_th_nats_start(g_s.dir, &g_s.nats) != KX_OK ||
        kx_th_pg_start(g_s.dir, &g_s.pg) != KX_OK)
        return -1;
    uint16_t port = kx_th_free_port(), hport = kx_th_free_port();
    snprintf(g_s.base_url, sizeof g_s.base_url, "http://127.0.0.1:%u", (unsigned)port);
    snprintf(g_s.secret, sizeof g_s.secret, "gateway-test-secret");

    char e_port[64], e_hport[64], e_nats[128], e_db[320], e_secret[128], e_mig[600];
    snprintf(e_port, sizeof e_port, "KX_HTTP_PORT=%u", (unsigned)port);
    snprintf(e_hport, sizeof e_hport, "KX_HEALTH_PORT=%u", (unsigned)hport);
    snprintf(e_nats, sizeof e_nats, "KX_NATS_URL=%s", g_s.nats.url);
    snprintf(e_db, sizeof e_db, "KX_DATABASE_URL=%s", g_s.pg.url);
    snprintf(e_secret, sizeof e_secret, "KX_JWT_SECRET=%s", g_s.secret);
    snprintf(e_mig, sizeof e_mig, "KX_MIGRATIONS_DIR=%s/deploy/migrations", KX_SOURCE_DIR);
    const char *env[] = {e_port,
                         e_nats,
                         e_db,
                         e_secret,
                         e_mig,
                         e_hport,
                         "KX_OPS_TOKEN=ops-test",
                         "KX_HEALTH_TIMEOUT_MS=300",
                         "KX_SSE_PING_S=1",
                         "KX_LOG_LEVEL=debug",
                         "KX_DRAIN_TIMEOUT_MS=3000",
                         NULL};
    const char *bin = getenv("KX_TEST_GATEWAY_BIN");
    char path[512];
    snprintf(path, sizeof path, "%s", bin ? bin : KX_BUILD_DIR "/services/gateway/gateway");
    const char *argv[] = {path, NULL};
    snprintf(g_log, sizeof g_log, "%s/gateway.log", g_s.dir);
    if (kx_th_spawn(argv, env, g_log, &g_gateway) != KX_OK)
        return -1;
    /* /readyz: Postgres migrated and NATS connected (a submit made before the bus is up is
     * skipped and left to the scheduler's sweep, which this test does not run). */
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%u/readyz", (unsigned)hport);
    if (kx_th_wait_http(url, 30000) != KX_OK)
        return -1;
    if (kx_bus_connect(g_s.nats.url, "test-gateway", &g_bus) != KX_OK)
        return -1;
    for (int i = 0; i < 100 && !kx_bus_connected(g_bus); i++)
        usleep(20000);
    /* The gateway creates the streams right after it starts listening. */
    for (int i = 0; i < 100 && kx_bus_ensure_streams(g_bus) != KX_OK; i++)
        usleep(20000);
    return 0;
}

static void stop_all(bool failed)
{
    kx_bus_close(g_bus, 1000);
    if (g_gateway > 0)
        kx_th_kill(g_gateway);
    if (failed) {
        char cmd[700];
        snprintf(cmd, sizeof cmd, "tail -n 60 %s >&2", g_log);
        if (system(cmd) != 0)
            fprintf(stderr, "(cannot print %s)\n", g_log);
    }
    kx_th_nats_stop(&g_s.nats);
    kx_th_pg_stop(&g_s.pg);
    if (!failed)
        kx_th_rmrf(g_s.dir);
    else
        fprintf(stderr, "kept %s\n", g_s.dir);
    free(g_s.dir);
}

/* ---- helpers ----------------------------------------------------------------------------- */

static char *new_account(char account[KX_UUID_LEN + 1])
{
    char *token = kx_th_new_account(&g_s, account);
    assert_non_null(token);
    return token;
}

static const char *jstr(const json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

/* A JSON answer of a request with a form body; *status gets the HTTP status. */
static json_t *post_form(const char *token, bool multipart, const char *const *pairs, long *status)
{
    size_t len = 0;
    char *ct = NULL, *body;
    if (multipart) {
        body = kx_th_form_multipart(pairs, &ct, &len);
    } else {
        body = kx_th_form_urlencoded(pairs, &len);
        ct = strdup("application/x-www-form-urlencoded");
    }
    assert_non_null(body);
    kx_http_resp r;
    assert_int_equal(kx_th_http(&g_s, "POST", "/api/agent/initiate", token, ct, body, len, &r),
                     KX_OK);
    *status = r.status;
    json_t *v = json_loads(r.body, 0, NULL);
    kx_http_resp_free(&r);
    free(body);
    free(ct);
    return v;
}

/* POSTs a prompt to initiate and returns the run id (and the thread id into thread). */
static void initiate(const char *token, const char *prompt, char run[KX_UUID_LEN + 1],
                     char thread[KX_UUID_LEN + 1])
{
    assert_int_equal(kx_th_initiate(&g_s, token, prompt, run, thread), 200);
}

/* Asserts a {"detail": detail} answer with that status. */
static void expect_error(const char *method, const char *path, const char *token, const char *body,
                         long status, const char *detail)
{
    long got = 0;
    json_t *v = kx_th_json(&g_s, method, path, token, body, &got);
    assert_int_equal(got, status);
    assert_non_null(v);
    assert_string_equal(jstr(v, "detail"), detail);
    json_decref(v);
}

static void publish_event(const char *run, const char *payload, bool terminal)
{
    assert_int_equal(kx_th_publish_run_event(g_bus, run, payload, terminal), KX_OK);
}

static char *sql_value1(const char *sql, const char *p1)
{
    const char *params[] = {p1};
    return kx_th_sql_value(&g_s, sql, 1, params);
}

/* out = unit n times, then tail (the test fails if that does not fit in cap bytes). */
static void repeat_then(char *out, size_t cap, const char *unit, int n, const char *tail)
{
    size_t len = 0;
    for (int i = 0; i <= n; i++) {
        int w = snprintf(out + len, cap - len, "%s", i < n ? unit : tail);
        assert_true(w >= 0 && (size_t)w < cap - len);
        len += (size_t)w;
    }
}

/* ---- tests ------------------------------------------------------------------------------- */

static void test_initiate_creates_rows_and_submits(void **state)
{
    char account[KX_UUID_LEN + 1];
    char *token = new_account(account);

    /* multipart, with options */
    char prompt[256];
    /* é (2 bytes) 29 times, then 日本 tail: char 30 is 日 */
    repeat_then(prompt, sizeof prompt, "\xc3\xa9", 29, "\xe6\x97\xa5\xe6\x9c\xac tail");
    const char *pairs[] = {
        "prompt",           prompt, "model_name", "gpt-4o-mini", "enable_thinking", "true",
        "reasoning_effort", "high", NULL}; /* agent_id: test_gateway_resources.c */
    /* kx.run.submit is a core subject (no stream stores it): listen before the POST */
    natsSubscription *submits = NULL;
    assert_int_equal(natsConnection_SubscribeSync(&submits, kx_bus_conn(g_bus),
                                                  KX_SUBJ_RUN_SUBMIT),
                     NATS_OK);
    assert_int_equal(natsConnection_Flush(kx_bus_conn(g_bus)), NATS_OK);
    long status = 0;
    json_t *v = post_form(token, true, pairs, &status);
    assert_int_equal(status, 200);
    const char *run = jstr(v, "agent_run_id"), *thread = jstr(v, "thread_id");
    assert_true(kx_uuid_valid(run) && kx_uuid_valid(thread));

    char *name = sql_value1("SELECT p.name FROM projects p JOIN threads t USING (project_id) "
                            "WHERE t.thread_id = $1",
                            thread);
    char expect_name[256];
    repeat_then(expect_name, sizeof expect_name, "\xc3\xa9", 29, "\xe6\x97\xa5...");
    assert_string_equal(name, expect_name);
    free(name);
    char *content = sql_value1("SELECT content::text FROM messages WHERE thread_id = $1 "
                               "AND type = 'user' AND is_llm_message",
                               thread);
    json_t *c = json_loads(content, 0, NULL);
    assert_string_equal(jstr(c, "role"), "user");
    assert_string_equal(jstr(c, "content"), prompt);
    json_decref(c);
    free(content);
    char *row = sql_value1("SELECT status || ' ' || account_id || ' ' || "
                           "(metadata->>'model_name') || ' ' || (metadata->>'enable_thinking') "
                           "|| ' ' || (metadata->>'reasoning_effort') || ' ' || "
                           "(metadata->>'enable_context_manager') FROM agent_runs WHERE id = $1",
                           run);
    char expect_row[200];
    snprintf(expect_row, sizeof expect_row, "queued %s gpt-4o-mini true high false", account);
    assert_string_equal(row, expect_row);
    free(row);

    /* RunSubmit is on kx.run.submit (no scheduler here) with the three headers */
    natsMsg *m = NULL;
    assert_int_equal(natsSubscription_NextMsg(&m, submits, 5000), NATS_OK);
    natsSubscription_Destroy(submits);
    Kx__V1__RunSubmit *sub = kx_pb_unpack(&kx__v1__run_submit__descriptor, natsMsg_GetData(m),
                                          (size_t)natsMsg_GetDataLength(m));
    assert_non_null(sub);
    assert_string_equal(sub->run_id, run);
    assert_string_equal(sub->thread_id, thread);
    assert_string_equal(sub->account_id, account);
    kx_bus_meta meta;
    assert_int_equal(kx_bus_meta_read(m, &meta), KX_OK);
    assert_true(meta.deadline > kx_now_ms());
    assert_string_equal(meta.account, account);
    assert_int_equal(strlen(meta.traceparent), 55);
    kx_pb_free(sub);
    natsMsg_Destroy(m);
    json_decref(v);

    /* urlencoded: defaults */
    const char *pairs2[] = {"prompt", "short prompt", "enable_context_manager", "1", NULL};
    v = post_form(token, false, pairs2, &status);
    assert_int_equal(status, 200);
    row = sql_value1("SELECT p.name || '|' || coalesce(r.metadata->>'model_name', 'null') || '|' "
                     "|| (r.metadata->>'reasoning_effort') || '|' || "
                     "(r.metadata->>'enable_context_manager') FROM agent_runs r "
                     "JOIN projects p USING (project_id) WHERE r.id = $1",
                     jstr(v, "agent_run_id"));
    assert_string_equal(row, "short prompt|null|low|true");
    free(row);
    json_decref(v);

    /* a missing or empty prompt, a bad boolean, a JSON body */
    const char *none[] = {"model_name", "x", NULL};
    v = post_form(token, false, none, &status);
    assert_int_equal(status, 400);
    assert_string_equal(jstr(v, "detail"), "prompt is required");
    json_decref(v);
    const char *bad[] = {"prompt", "x", "enable_thinking", "maybe", NULL};
    v = post_form(token, true, bad, &status);
    assert_int_equal(status, 400);
    assert_string_equal(jstr(v, "detail"), "enable_thinking must be a boolean (true or false)");
    json_decref(v);
    expect_error("POST", "/api/agent/initiate", token, "{\"prompt\": \"x\"}", 400,
                 "Content-Type must be multipart/form-data or application/x-www-form-urlencoded");
    free(token);
}

static void test_messages_start_and_runs(void **state)
{
    char account[KX_UUID_LEN + 1], run[KX_UUID_LEN + 1], thread[KX_UUID_LEN + 1];
    char *token = new_account(account);
    initiate(token, "first", run, thread);
    char path[160];

    snprintf(path, sizeof path, "/api/threads/%s/messages", thread);
    long status = 0;
    json_t *row = kx_th_json(&g_s, "POST", path, token,
                             "{\"type\": \"assistant\", \"content\": \"an answer\", "
                             "\"is_llm_message\": true}",
                             &status);
    assert_int_equal(status, 200);
    assert_string_equal(jstr(row, "thread_id"), thread);
    assert_string_equal(jstr(row, "type"), "assistant");
    json_t *content = json_object_get(row, "content");
    assert_string_equal(jstr(content, "role"), "assistant");
    assert_string_equal(jstr(content, "content"), "an answer");
    /* "2026-11-21T19:40:13.123456+00:00" */
    const char *ts = jstr(row, "created_at");
    assert_int_equal(strlen(ts), 32);
    assert_string_equal(ts + 26, "+00:00");
    json_decref(row);
    expect_error("POST", path, token, "{\"type\": \"user\", \"content\": 5}", 400,
                 "content must be a string");
    json_t *e = kx_th_json(&g_s, "POST", path, token, "{\"type\": \"user\"", &status);
    assert_int_equal(status, 400);
    assert_non_null(strstr(jstr(e, "detail"), "Invalid JSON body: '}' expected"));
    json_decref(e);

    json_t *list = kx_th_json(&g_s, "GET", path, token, NULL, &status);
    assert_int_equal(status, 200);
    json_t *msgs = json_object_get(list, "messages");
    assert_int_equal(json_array_size(msgs), 2); /* newest first by default */
    assert_string_equal(jstr(json_array_get(msgs, 0), "type"), "assistant");
    json_decref(list);
    snprintf(path, sizeof path, "/api/threads/%s/messages?order=asc", thread);
    list = kx_th_json(&g_s, "GET", path, token, NULL, &status);
    assert_string_equal(jstr(json_array_get(json_object_get(list, "messages"), 0), "type"),
                        "user");
    json_decref(list);
    snprintf(path, sizeof path, "/api/threads/%s/messages?order=up", thread);
    expect_error("GET", path, token, NULL, 400, "order must be 'asc' or 'desc'");

    /* start with a prompt: the message and the run come together */
    snprintf(path, sizeof path, "/api/thread/%s/agent/start", thread);
    json_t *started = kx_th_json(&g_s, "POST", path, token,
                                 "{\"prompt\": \"second turn\", \"model_name\": \"m2\"}", &status);
    assert_int_equal(status, 200);
    assert_string_equal(jstr(started, "status"), "queued");
    const char *run2 = jstr(started, "agent_run_id");
    char *n = sql_value1("SELECT count(*) FROM messages WHERE thread_id = $1 AND "
                         "content->>'content' = 'second turn' AND type = 'user'",
                         thread);
    assert_string_equal(n, "1");
    free(n);
    /* and without a body */
    json_t *started2 = kx_th_json(&g_s, "POST", path, token, NULL, &status);
    assert_int_equal(status, 200);

    snprintf(path, sizeof path, "/api/thread/%s/agent-runs", thread);
    json_t *runs = kx_th_json(&g_s, "GET", path, token, NULL, &status);
    json_t *arr = json_object_get(runs, "agent_runs");
    assert_int_equal(json_array_size(arr), 3);
    assert_string_equal(jstr(json_array_get(arr, 0), "id"), jstr(started2, "agent_run_id"));
    assert_string_equal(jstr(json_array_get(arr, 1), "id"), run2);
    assert_string_equal(jstr(json_array_get(arr, 2), "id"), run);
    json_decref(runs);
    json_decref(started);
    json_decref(started2);

    snprintf(path, sizeof path, "/api/agent-run/%s", run);
    json_t *r = kx_th_json(&g_s, "GET", path, token, NULL, &status);
    assert_int_equal(status, 200);
    const char *keys[] = {"id", "threadId", "status", "startedAt", "completedAt", "error"};
    size_t i = 0;
    const char *key;
    json_t *val;
    json_object_foreach(r, key, val)
    {
        assert_true(i < 6);
        assert_string_equal(key, keys[i++]);
    }
    assert_int_equal(i, 6);
    assert_string_equal(jstr(r, "threadId"), thread);
    assert_true(json_is_null(json_object_get(r, "startedAt")));
    json_decref(r);
    free(token);
}

/* The messages of a thread come in pages: at most `limit` rows (1..1000, default 1000) and
 * about 8 MiB of content, then "has_more" and the next page from `after` (the last row's
 * message_id). Before, every message of the thread came in one answer, whatever its size: an
 * anonymous reader of a public thread made the gateway hold it several times over per request. */
static void test_messages_pages(void **state)
{
    (void)state;
    char account[KX_UUID_LEN + 1], run[KX_UUID_LEN + 1], thread[KX_UUID_LEN + 1];
    char *token = new_account(account);
    initiate(token, "pages", run, thread); /* row 0: the user message */
    /* rows 1..3 of 3 MiB each, then rows 4..9 small, in that order */
    char *n = sql_value1(
        "WITH ins AS (INSERT INTO messages (thread_id, account_id, type, is_llm_message, content, "
        "metadata, created_at) SELECT t.thread_id, t.account_id, 'assistant', true, "
        "jsonb_build_object('role', 'assistant', 'content', CASE WHEN g <= 3 THEN "
        "repeat('x', 3145728) ELSE 'small ' || g END), jsonb_build_object('g', g), "
        "now() + g * interval '1 second' FROM threads t, generate_series(1, 9) g "
        "WHERE t.thread_id = $1::uuid RETURNING 1) SELECT count(*) FROM ins",
        thread);
    assert_string_equal(n, "9");
    free(n);

    char path[256], after[KX_UUID_LEN + 1] = "";
    long status = 0;
    int seen = 0, pages = 0;
    size_t first_page = 0;
    for (bool more = true; more; pages++) {
        snprintf(path, sizeof path, "/api/threads/%s/messages?order=asc&limit=4%s%s", thread,
                 after[0] ? "&after=" : "", after);
        json_t *page = kx_th_json(&g_s, "GET", path, token, NULL, &status);
        assert_int_equal(status, 200);
        json_t *msgs = json_object_get(page, "messages");
        size_t k = json_array_size(msgs);
        assert_in_range(k, 1, 4);
        size_t bytes = 0;
        for (size_t i = 0; i < k; i++) {
            json_t *m = json_array_get(msgs, i);
            json_int_t g =
                json_integer_value(json_object_get(json_object_get(m, "metadata"), "g"));
            assert_int_equal(g, seen); /* every row once, in order (row 0 has no "g": 0) */
            bytes += strlen(jstr(json_object_get(m, "content"), "content"));
            seen++;
        }
        assert_true(k == 1 || bytes <= 8u * 1024 * 1024); /* the page's byte bound */
        if (pages == 0)
            first_page = k;
        snprintf(after, sizeof after, "%s", jstr(json_array_get(msgs, k - 1), "message_id"));
        more = json_is_true(json_object_get(page, "has_more"));
        json_decref(page);
        assert_true(pages < 20);
    }
    assert_int_equal(seen, 10);
    /* rows 0-2 (the third big row would pass 8 MiB), 3-6 (the limit), 7-9 (the last page) */
    assert_int_equal(pages, 3);
    assert_int_equal(first_page, 3);

    /* newest first, two at a time: the last two rows */
    snprintf(path, sizeof path, "/api/threads/%s/messages?limit=2", thread);
    json_t *page = kx_th_json(&g_s, "GET", path, token, NULL, &status);
    assert_int_equal(status, 200);
    json_t *msgs = json_object_get(page, "messages");
    assert_int_equal(json_array_size(msgs), 2);
    assert_int_equal(json_integer_value(
                         json_object_get(json_object_get(json_array_get(msgs, 0), "metadata"),
                                         "g")),
                     9);
    assert_true(json_is_true(json_object_get(page, "has_more")));
    json_decref(page);

    snprintf(path, sizeof path, "/api/threads/%s/messages?limit=0", thread);
    expect_error("GET", path, token, NULL, 400, "limit must be an integer from 1 to 1000");
    snprintf(path, sizeof path, "/api/threads/%s/messages?limit=1001", thread);
    expect_error("GET", path, token, NULL, 400, "limit must be an integer from 1 to 1000");
    snprintf(path, sizeof path, "/api/threads/%s/messages?after=xyz", thread);
    expect_error("GET", path, token, NULL, 400, "after must be a message_id");
    char other[KX_UUID_LEN + 1], detail[160];
    kx_uuid_new(other);
    snprintf(path, sizeof path, "/api/threads/%s/messages?after=%s", thread, other);
    snprintf(detail, sizeof detail, "after: no message %s in this thread", other);
    expect_error("GET", path, token, NULL, 400, detail);
    free(token);
}

static void test_access_and_errors(void **state)
{
    char account[KX_UUID_LEN + 1], other[KX_UUID_LEN + 1];
    char run[KX_UUID_LEN + 1], thread[KX_UUID_LEN + 1];
    char *token = new_account(account);
    char *token2 = new_account(other);
    initiate(token, "mine", run, thread);
    char path[160];

    snprintf(path, sizeof path, "/api/agent-run/%s", run);
    expect_error("GET", path, NULL, NULL, 401, "No valid authentication credentials found");
    expect_error("GET", path, token2, NULL, 404, "Agent run not found");
    char *bad = kx_th_jwt("another-secret", account, 3600);
    expect_error("GET", path, bad, NULL, 401, "Invalid token: bad signature");
    free(bad);
    char *expired = kx_th_jwt(g_s.secret, account, -3600);
    expect_error("GET", path, expired, NULL, 401, "Invalid token: token expired");
    free(expired);
    char *notuuid = kx_th_jwt(g_s.secret, "bob", 3600);
    expect_error("GET", path, notuuid, NULL, 401, "Invalid token payload");
    free(notuuid);
    expect_error("GET", "/api/agent-run/not-a-uuid", token, NULL, 404, "Agent run not found");
    expect_error("GET", "/api/agent-run/00000000-0000-4000-8000-000000000000", token, NULL, 404,
                 "Agent run not found");
    snprintf(path, sizeof path, "/api/agent-run/%s/stop", run);
    expect_error("POST", path, token2, NULL, 404, "Agent run not found");
    snprintf(path, sizeof path, "/api/threads/%s/messages", thread);
    expect_error("GET", path, token2, NULL, 404, "Thread not found");
    snprintf(path, sizeof path, "/api/thread/%s/agent/start", thread);
    expect_error("POST", path, token2, NULL, 404, "Thread not found");
    expect_error("GET", "/api/threads/xyz/messages", token, NULL, 404, "Thread not found");
    expect_error("DELETE", "/api/agent-run/x", token, NULL, 405, "Method Not Allowed");
    expect_error("GET", "/api/nope", token, NULL, 404, "Not Found");

    /* a body over KX_MAX_BODY_BYTES (1 MiB) */
    size_t big = (1u << 20) + 10;
    char *body = malloc(big + 1);
    assert_non_null(body);
    memset(body, 'a', big);
    body[big] = '\0';
    kx_http_resp r;
    assert_int_equal(kx_th_http(&g_s, "POST", path, token, "application/json", body, big, &r),
                     KX_OK);
    assert_int_equal(r.status, 413);
    assert_non_null(strstr(r.body, "Request body too large"));
    kx_http_resp_free(&r);
    free(body);
    free(token);
    free(token2);
}

/* The status of a run as GET /api/agent-run/{id} answers it (asserting a 200). malloc'd. */
static char *run_status(const char *path, const char *token)
{
    long st = 0;
    json_t *v = kx_th_json(&g_s, "GET", path, token, NULL, &st);
    assert_int_equal(st, 200);
    char *s = strdup(jstr(v, "status"));
    json_decref(v);
    return s;
}

/* GET /api/agent-run/{id} may be answered from memory (services/gateway/run_cache.h and
 * token_cache.h, KX_RUN_CACHE_MS 100 ms by default): never to another account, never stale
 * after this gateway's own stop or after an event of the run reached it, never more than the
 * TTL behind a change it could not see; a token it remembers stops working at its exp. */
static void test_cached_reads_keep_isolation_and_freshness(void **state)
{
    char account[KX_UUID_LEN + 1], other[KX_UUID_LEN + 1], run[KX_UUID_LEN + 1];
    char *token = new_account(account);
    char *token2 = new_account(other);
    initiate(token, "cache me", run, NULL);
    char path[160];
    snprintf(path, sizeof path, "/api/agent-run/%s", run);

    /* the owner's first GET fills the cache; the other account still gets the 404 */
    for (int i = 0; i < 3; i++) {
        char *s = run_status(path, token);
        assert_string_equal(s, "queued");
        free(s);
        expect_error("GET", path, token2, NULL, 404, "Agent run not found");
    }

    /* a change made behind the gateway's back (no stream, no event): seen after the TTL */
    char *row =
        sql_value1("UPDATE agent_runs SET status = 'running' WHERE id = $1 RETURNING status", run);
    assert_string_equal(row, "running");
    free(row);
    usleep(300 * 1000); /* 3 x KX_RUN_CACHE_MS */
    char *s = run_status(path, token);
    assert_string_equal(s, "running");
    free(s);

    /* an event of the run reaching one of the gateway's feeds: seen at once */
    char spath[160];
    snprintf(spath, sizeof spath, "/api/agent-run/%s/stream", run);
    kx_th_sse_reader *reader = kx_th_sse_start(&g_s, spath, token, 15000);
    assert_non_null(reader);
    usleep(400 * 1000);          /* the stream is attached to the run's feed */
    s = run_status(path, token); /* cached: running */
    assert_string_equal(s, "running");
    free(s);
    row = sql_value1("UPDATE agent_runs SET status = 'completed', completed_at = now() "
                     "WHERE id = $1 RETURNING status",
                     run);
    free(row);
    publish_event(run, COMPLETED, true);
    kx_th_sse got;
    assert_int_equal(kx_th_sse_join(reader, &got), KX_OK);
    assert_true(got.terminal); /* the feed had the event (and dropped the entry) */
    kx_th_sse_free(&got);
    s = run_status(path, token);
    assert_string_equal(s, "completed");
    free(s);

    /* this gateway's own stop: the next GET says stopped */
    char run2[KX_UUID_LEN + 1], stop[160];
    initiate(token, "stop me", run2, NULL);
    snprintf(path, sizeof path, "/api/agent-run/%s", run2);
    snprintf(stop, sizeof stop, "/api/agent-run/%s/stop", run2);
    s = run_status(path, token);
    assert_string_equal(s, "queued");
    free(s);
    long st = 0;
    json_t *v = kx_th_json(&g_s, "POST", stop, token, NULL, &st);
    assert_int_equal(st, 200);
    json_decref(v);
    s = run_status(path, token);
    assert_string_equal(s, "stopped");
    free(s);

    /* a token the gateway has verified (and remembers) is refused once it expires: this one
     * is valid for 1-2 s more (kx_jwt_verify allows 30 s past exp) */
    char *short_lived = kx_th_jwt(g_s.secret, account, -(KX_JWT_LEEWAY_S - 1));
    s = run_status(path, short_lived);
    assert_string_equal(s, "stopped");
    free(s);
    usleep(2500 * 1000);
    expect_error("GET", path, short_lived, NULL, 401, "Invalid token: token expired");
    free(short_lived);
    free(token);
    free(token2);
}

static void test_stop_and_stream(void **state)
{
    char account[KX_UUID_LEN + 1], run[KX_UUID_LEN + 1];
    char *token = new_account(account);
    initiate(token, "stream me", run, NULL);
    char path[160];

    /* the runner's events before anyone listens: replayed */
    publish_event(run, "{\"type\": \"status\", \"status_type\": \"thread_run_start\"}", false);

    natsSubscription *ctl = NULL;
    char subject[96];
    snprintf(subject, sizeof subject, KX_SUBJ_RUN_CTL_PREFIX "%s", run);
    assert_int_equal(natsConnection_SubscribeSync(&ctl, kx_bus_conn(g_bus), subject), NATS_OK);
    assert_int_equal(natsConnection_Flush(kx_bus_conn(g_bus)), NATS_OK);

    snprintf(path, sizeof path, "/api/agent-run/%s/stream", run);
    kx_th_sse_reader *reader = kx_th_sse_start(&g_s, path, token, 15000);
    assert_non_null(reader);
    usleep(400 * 1000);
    publish_event(run, "{\"sequence\": 0, \"content\": \"h\\u00e9\"}", false);
    usleep(200 * 1000);

    snprintf(path, sizeof path, "/api/agent-run/%s/stop", run);
    long status = 0;
    json_t *v = kx_th_json(&g_s, "POST", path, token, NULL, &status);
    assert_int_equal(status, 200);
    assert_string_equal(jstr(v, "status"), "stopped");
    json_decref(v);

    kx_th_sse got;
    assert_int_equal(kx_th_sse_join(reader, &got), KX_OK);
    assert_int_equal(got.status, 200);
    assert_string_equal(got.content_type, "text/event-stream");
    assert_false(got.timed_out);
    assert_true(got.terminal);
    assert_int_equal(got.n, 3);
    assert_string_equal(got.data[0],
                        "{\"type\": \"status\", \"status_type\": \"thread_run_start\"}");
    assert_string_equal(got.data[1], "{\"sequence\": 0, \"content\": \"h\\u00e9\"}");
    assert_string_equal(got.data[2], STOPPED);

    /* STOP went to the runner's control subject */
    natsMsg *m = NULL;
    assert_int_equal(natsSubscription_NextMsg(&m, ctl, 2000), NATS_OK);
    Kx__V1__RunControl *c = kx_pb_unpack(&kx__v1__run_control__descriptor, natsMsg_GetData(m),
                                         (size_t)natsMsg_GetDataLength(m));
    assert_non_null(c);
    assert_int_equal(c->signal, KX__V1__RUN_SIGNAL__RUN_SIGNAL_STOP);
    assert_string_equal(c->reason, "stopped by user");
    kx_pb_free(c);
    natsMsg_Destroy(m);
    natsSubscription_Destroy(ctl);

    /* the database: stopped, epoch bumped, completed_at set */
    char *row = sql_value1("SELECT status || ' ' || lease_epoch || ' ' || "
                           "(completed_at IS NOT NULL) FROM agent_runs WHERE id = $1",
                           run);
    assert_string_equal(row, "stopped 1 true");
    free(row);

    /* a second stop changes nothing and says so */
    v = kx_th_json(&g_s, "POST", path, token, NULL, &status);
    assert_int_equal(status, 200);
    assert_string_equal(jstr(v, "status"), "stopped");
    json_decref(v);
    row = sql_value1("SELECT lease_epoch::text FROM agent_runs WHERE id = $1", run);
    assert_string_equal(row, "1");
    free(row);

    /* the same events again, after the fact (token in the query this time) */
    char qpath[1024];
    snprintf(qpath, sizeof qpath, "/api/agent-run/%s/stream?token=%s", run, token);
    kx_th_sse again;
    assert_int_equal(kx_th_sse_read(&g_s, qpath, NULL, 10000, &again), KX_OK);
    assert_int_equal(again.status, 200);
    assert_int_equal(again.n, got.n);
    for (size_t i = 0; i < got.n; i++)
        assert_string_equal(again.data[i], got.data[i]);
    kx_th_sse_free(&again);
    kx_th_sse_free(&got);
    free(token);
}

static void test_stream_of_ended_run_without_events(void **state)
{
    char account[KX_UUID_LEN + 1], run[KX_UUID_LEN + 1];
    char *token = new_account(account);
    initiate(token, "already done", run, NULL);
    /* as if the run completed a day ago and its events expired */
    PGresult *res = kx_th_sql(&g_s,
                              "UPDATE agent_runs SET status = 'completed', "
                              "completed_at = now() - interval '1 day' WHERE id = $1",
                              1, (const char *const[]){run});
    assert_non_null(res);
    PQclear(res);
    char path[160];
    snprintf(path, sizeof path, "/api/agent-run/%s/stream", run);
    kx_th_sse got;
    assert_int_equal(kx_th_sse_read(&g_s, path, token, 10000, &got), KX_OK);
    assert_int_equal(got.status, 200);
    assert_int_equal(got.n, 1);
    assert_string_equal(got.data[0], COMPLETED);
    kx_th_sse_free(&got);

    expect_error("GET", path, NULL, NULL, 401, "No valid authentication credentials found");
    free(token);
}

/* A writer updates Postgres first and its last events reach the stream moments later (the
 * runner publishes them asynchronously). A stream opened in between must wait for them, not
 * end at once with a status made up from Postgres and lose the events still in flight. */
static void test_stream_of_just_ended_run_waits_for_its_events(void **state)
{
    char account[KX_UUID_LEN + 1], run[KX_UUID_LEN + 1];
    char *token = new_account(account);
    initiate(token, "just done", run, NULL);
    publish_event(run, "{\"type\": \"status\", \"status_type\": \"thread_run_start\"}", false);
    PGresult *res = kx_th_sql(&g_s,
                              "UPDATE agent_runs SET status = 'completed', completed_at = now() "
                              "WHERE id = $1",
                              1, (const char *const[]){run});
    assert_non_null(res);
    PQclear(res);
    char path[160];
    snprintf(path, sizeof path, "/api/agent-run/%s/stream", run);
    kx_th_sse_reader *reader = kx_th_sse_start(&g_s, path, token, 10000);
    assert_non_null(reader);
    usleep(200 * 1000); /* the stream is open and has replayed the one stored event */
    publish_event(run, "{\"type\": \"status\", \"status_type\": \"thread_run_end\"}", false);
    publish_event(run, COMPLETED, true);
    kx_th_sse got;
    assert_int_equal(kx_th_sse_join(reader, &got), KX_OK);
    assert_int_equal(got.status, 200);
    assert_int_equal(got.n, 3);
    assert_non_null(strstr(got.data[0], "thread_run_start"));
    assert_non_null(strstr(got.data[1], "thread_run_end"));
    assert_string_equal(got.data[2], COMPLETED);
    kx_th_sse_free(&got);
    free(token);
}

static void test_health(void **state)
{
    long status = 0;
    int64_t t0 = kx_mono_ms();
    json_t *v = kx_th_json(&g_s, "GET", "/api/health", NULL, NULL, &status);
    int64_t took = kx_mono_ms() - t0;
    assert_int_equal(status, 503);
    assert_string_equal(jstr(v, "status"), "degraded");
    json_t *parts = json_object_get(v, "parts");
    assert_string_equal(jstr(parts, "database"), "ok");
    assert_string_equal(jstr(parts, "nats"), "ok");
    assert_string_equal(jstr(parts, "scheduler"),
                        "unavailable: no instance answers on kx.svc.health.scheduler");
    assert_non_null(jstr(parts, "mcp-proxy"));
    assert_non_null(jstr(v, "timestamp"));
    assert_non_null(strstr(jstr(v, "instance_id"), "gateway"));
    assert_true(took < 1000); /* no responders: answered at once, not after the timeout */
    json_decref(v);
    /* Kortix's container check: the same answer */
    v = kx_th_json(&g_s, "GET", "/api/health-docker", NULL, NULL, &status);
    assert_int_equal(status, 503);
    assert_string_equal(jstr(json_object_get(v, "parts"), "database"), "ok");
    json_decref(v);

    /* The ops routes on the API port: only with the ops token (KX_OPS_TOKEN). */
    kx_http_resp r;
    assert_int_equal(kx_th_http(&g_s, "GET", "/readyz", NULL, NULL, NULL, 0, &r), KX_OK);
    assert_int_equal(r.status, 404);
    kx_http_resp_free(&r);
    assert_int_equal(kx_th_http(&g_s, "GET", "/metrics", "not-the-ops-token", NULL, NULL, 0, &r),
                     KX_OK);
    assert_int_equal(r.status, 404);
    assert_null(strstr(r.body, "kx_gateway"));
    kx_http_resp_free(&r);
    assert_int_equal(kx_th_http(&g_s, "GET", "/readyz", "ops-test", NULL, NULL, 0, &r), KX_OK);
    assert_int_equal(r.status, 200);
    kx_http_resp_free(&r);
    assert_int_equal(kx_th_http(&g_s, "GET", "/metrics", "ops-test", NULL, NULL, 0, &r), KX_OK);
    assert_non_null(strstr(r.body, "kx_gateway_http_requests_total{route=\"GET /api/health\""));
    kx_http_resp_free(&r);
}

/* The value of one series (its name and labels, as printed) in the gateway's /metrics, or -1. */
static long long metric(const char *series)
{
    kx_http_resp r;
    long long v = -1;
    if (kx_th_http(&g_s, "GET", "/metrics", "ops-test", NULL, NULL, 0, &r) != KX_OK)
        return -1;
    char key[256];
    snprintf(key, sizeof key, "\n%s ", series);
    const char *at = r.status == 200 && r.body != NULL ? strstr(r.body, key) : NULL;
    if (at != NULL)
        v = strtoll(at + strlen(key), NULL, 10);
    kx_http_resp_free(&r);
    return v;
}

/* kx_gateway_http_requests_total counts every answer on its own (route, status) series, also
 * when the server finds the series in its per-route table instead of the registry. */
static void test_answer_counters(void **state)
{
    (void)state;
    const char *nf = "kx_gateway_http_requests_total{route=\"unmatched\",status=\"404\"}";
    const char *ok = "kx_gateway_http_requests_total{route=\"GET /api/health-docker\","
                     "status=\"503\"}";
    const char *na = "kx_gateway_http_requests_total{route=\"unmatched\",status=\"405\"}";
    long status = 0;
    json_t *v = kx_th_json(&g_s, "GET", "/no/such/route", NULL, NULL, &status);
    assert_int_equal(status, 404);
    json_decref(v);
    v = kx_th_json(&g_s, "GET", "/api/health-docker", NULL, NULL, &status);
    json_decref(v);
    long long nf0 = metric(nf), ok0 = metric(ok), na0 = metric(na);
    assert_true(nf0 >= 1);
    assert_true(ok0 >= 1);
    for (int i = 0; i < 3; i++) {
        v = kx_th_json(&g_s, "GET", "/no/such/route", NULL, NULL, &status);
        assert_int_equal(status, 404);
        json_decref(v);
        v = kx_th_json(&g_s, "GET", "/api/health-docker", NULL, NULL, &status);
        assert_int_equal(status, 503);
        json_decref(v);
    }
    /* POST on a GET-only path: the same route slot ("unmatched"), another status */
    v = kx_th_json(&g_s, "POST", "/api/health-docker", NULL, "{}", &status);
    assert_int_equal(status, 405);
    json_decref(v);
    assert_int_equal(metric(nf), nf0 + 3);
    assert_int_equal(metric(ok), ok0 + 3);
    assert_int_equal(metric(na), (na0 < 0 ? 0 : na0) + 1);
}

/* Last: stops the gateway. */
static void test_sigterm_ends_open_streams(void **state)
{
    char account[KX_UUID_LEN + 1], run[KX_UUID_LEN + 1];
    char *token = new_account(account);
    initiate(token, "still running", run, NULL);
    char path[160];
    snprintf(path, sizeof path, "/api/agent-run/%s/stream", run);
    kx_th_sse_reader *reader = kx_th_sse_start(&g_s, path, token, 10000);
    assert_non_null(reader);
    usleep(500 * 1000);
    int64_t t0 = kx_mono_ms();
    int exit_status = kx_th_kill(g_gateway);
    g_gateway = 0;
    assert_int_equal(exit_status, 0);
    kx_th_sse got;
    assert_int_equal(kx_th_sse_join(reader, &got), KX_OK);
    assert_int_equal(got.status, 200);
    assert_false(got.timed_out); /* the server ended it */
    assert_false(got.terminal);
    assert_true(kx_mono_ms() - t0 < 5000);
    kx_th_sse_free(&got);
    free(token);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_initiate_creates_rows_and_submits),
        cmocka_unit_test(test_messages_start_and_runs),
        cmocka_unit_test(test_messages_pages),
        cmocka_unit_test(test_access_and_errors),
        cmocka_unit_test(test_stop_and_stream),
        cmocka_unit_test(test_cached_reads_keep_isolation_and_freshness),
        cmocka_unit_test(test_stream_of_ended_run_without_events),
        cmocka_unit_test(test_stream_of_just_ended_run_waits_for_its_events),
        cmocka_unit_test(test_health),
        cmocka_unit_test(test_answer_counters),
        cmocka_unit_test(test_sigterm_ends_open_streams),
    };
    int failed = cmocka_run_group_tests(tests, start_all, NULL);
    stop_all(failed != 0);
    return failed != 0;
}
