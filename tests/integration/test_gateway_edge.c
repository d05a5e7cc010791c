/* tests/integration/test_gateway_edge.c — the gateway's HTTP edge, alone against a real
 * nats-server and PostgreSQL (tests/harness/gateway_alone.h), each case a regression test of a
 * finding of issue 9:
 *   - CORS from KX_CORS_ORIGINS: preflight (allowed, disallowed origin/method/header), the
 *     origin echoed on answers (the SSE answer included), nothing for other origins;
 *   - answers from the headers alone (preflight, 401, 404, 405) keep a keep-alive connection
 *     (issue 12), the edge's limit refusals close it;
 *   - auth before the body: an unauthenticated 2 MB upload is a 401, not a 413;
 *   - the edge's own limits answer in {"detail": ...} JSON, promptly: URL too long (414),
 *     headers too large (431), ~600 query parameters (400, not 90 s of silence);
 *   - ids normalised: an upper-case run id streams the run's events;
 *   - JWT: a token without exp, or for another audience, is refused;
 *   - size discipline: a prompt or message over KX_MAX_PROMPT_BYTES is a 413 (a trigger's
 *     prompt too); a trigger's name, a message's type, a model_name over their character caps
 *     a 400;
 *   - a bounded fuzz (mutated JSON, urlencoded and multipart bodies, odd content types) of the
 *     body routes: never a 5xx, every error a {"detail": ...};
 *   - nats-server paused: initiate, stop and GET still answer at once while stream opens
 *     wait; PostgreSQL paused: requests that need no dependency answer at once, the others
 *     fail with 503 after the pool wait, all recover;
 *   - connection limits: 2 000 idle connections held (epoll, no FD_SETSIZE cap) while clients
 *     from other addresses keep getting answers; over the per-address cap a connection is
 *     closed at once; an idle connection is closed after KX_HTTP_TIMEOUT_S.
 * Raw sockets (kx_th_raw) send exactly the bytes a case needs. */
#include <ctype.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "gateway_alone.h"
#include "api_client.h"
#include "kx/bus.h"
#include "kx/jwt.h"
#include "kx/log.h"
#include "kx/pb.h"
#include "kx/time.h"
#include "kx/uuid.h"
#include "procstat.h"

#define ORIGIN "https://app.example"

static kx_th_gw g_gw;
static kx_bus *g_bus;
/* What a pause test stopped, so that main resumes it even when an assertion failed. */
static bool g_pg_paused, g_nats_paused;

static int setup(void **state)
{
    kx_log_init("test-gateway-edge", "test");
    kx_log_set_level(KX_LOG_WARN);
    memset(&g_gw, 0, sizeof g_gw);
    /* one variable: two origins, the second ORIGIN with a trailing slash */
    // NOLINTNEXTLINE(bugprone-suspicious-missing-comma)
    const char *env[] = {"KX_CORS_ORIGINS=http://localhost:3000, " ORIGIN "/",
                         "KX_HTTP_MAX_CONNS=2600", "KX_HTTP_MAX_CONNS_PER_IP=2100",
                         "KX_HTTP_TIMEOUT_S=5", NULL};
    struct rlimit rl; /* this test holds 2 200 sockets */
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 8192) {
        rl.rlim_cur = rl.rlim_max < 8192 ? rl.rlim_max : 8192;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (kx_th_gw_start(&g_gw, "kx-it-gw-edge", env) != KX_OK)
        return -1;
    if (kx_bus_connect(g_gw.s.nats.url, "test-gateway-edge", &g_bus) != KX_OK)
        return -1;
    for (int i = 0; i < 100 && !kx_bus_connected(g_bus); i++)
        usleep(20000);
    for (int i = 0; i < 100 && kx_bus_ensure_streams(g_bus) != KX_OK; i++)
        usleep(20000);
    return 0;
}

/* ---- helpers ----------------------------------------------------------------------------- */

static char *new_account(char account[KX_UUID_LEN + 1])
{
    char *token = kx_th_new_account(&g_gw.s, account);
    assert_non_null(token);
    return token;
}

/* A raw request; returns the status and the whole answer in *out (free it). */
static int raw(const char *req, char **out)
{
    return kx_th_raw(g_gw.s.http_port, NULL, req, strlen(req), 10000, out);
}

/* The value of header name in a raw answer (case-sensitive name as we write it), or NULL. */
static char *header_of(const char *answer, const char *name)
{
    static char val[512];
    char key[128];
    snprintf(key, sizeof key, "\r\n%s: ", name);
    const char *end_of_headers = strstr(answer, "\r\n\r\n");
    const char *p = strcasestr(answer, key);
    if (p == NULL || (end_of_headers != NULL && p > end_of_headers))
        return NULL;
    p += strlen(key);
    size_t n = strcspn(p, "\r\n");
    snprintf(val, sizeof val, "%.*s", (int)n, p);
    return val;
}

/* Asserts the answer's body is {"detail": <detail>} JSON. */
static void assert_detail(const char *answer, const char *detail)
{
    json_t *v = json_loads(kx_th_raw_body(answer), 0, NULL);
    if (v == NULL)
        fail_msg("not JSON: %s", answer);
    assert_string_equal(json_string_value(json_object_get(v, "detail")), detail);
    json_decref(v);
}

static void initiate(const char *token, char run[KX_UUID_LEN + 1])
{
    assert_int_equal(kx_th_initiate(&g_gw.s, token, "hello", run, NULL), 200);
}

static void publish_event(const char *run, const char *payload, bool terminal)
{
    assert_int_equal(kx_th_publish_run_event(g_bus, run, payload, terminal), KX_OK);
}

/* ---- CORS -------------------------------------------------------------------------------- */

static bool closed_by_peer(int fd, int wait_ms);

/* Reads one answer (headers and a Content-Length body) from fd into buf; its status, or -1. */
static int read_answer(int fd, char *buf, size_t cap)
{
    size_t len = 0;
    const char *end = NULL;
    size_t want = SIZE_MAX;
    while (len < want && len + 1 < cap) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 5000) <= 0)
            return -1;
        ssize_t r = recv(fd, buf + len, cap - 1 - len, 0);
        if (r <= 0)
            return -1;
        len += (size_t)r;
        buf[len] = '\0';
        if (end == NULL && (end = strstr(buf, "\r\n\r\n")) != NULL) {
            const char *cl = header_of(buf, "Content-Length");
            if (cl == NULL)
                return -1;
            want = (size_t)(end + 4 - buf) + strtoul(cl, NULL, 10);
        }
    }
    return len == want ? (int)strtol(buf + 9, NULL, 10) : -1;
}

/* Answers given from the headers alone (a preflight, a 401, a 404, a 405, the ops routes' 404)
 * keep a keep-alive connection open: libmicrohttpd 0.9.75 closed it after an answer queued on
 * the request's first call, so a browser paid a new connection after every preflight. */
static void test_keep_alive_after_early_answers(void **state)
{
    (void)state;
    static const struct {
        const char *req;
        int status;
    } cases[] = {
        {"OPTIONS /api/agent/initiate HTTP/1.1\r\nHost: x\r\nOrigin: " ORIGIN "\r\n"
         "Access-Control-Request-Method: POST\r\n\r\n",
         200},
        {"GET /api/agent-run/x HTTP/1.1\r\nHost: x\r\n\r\n", 401},
        {"GET /no/such/route HTTP/1.1\r\nHost: x\r\n\r\n", 404},
        {"DELETE /api/health HTTP/1.1\r\nHost: x\r\n\r\n", 405},
        {"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", 404},
        {"POST /api/agent/initiate HTTP/1.1\r\nHost: x\r\nContent-Length: 8\r\n\r\nprompt=x", 401},
        {"GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n", 0}, /* any status: still open */
    };
    int fd = kx_th_raw_connect(g_gw.s.http_port, "127.0.0.1");
    assert_true(fd >= 0);
    char buf[8192];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t n = strlen(cases[i].req);
        assert_int_equal(send(fd, cases[i].req, n, MSG_NOSIGNAL), (ssize_t)n);
        int st = read_answer(fd, buf, sizeof buf);
        if (st < 0 || (cases[i].status != 0 && st != cases[i].status))
            fail_msg("case %zu: status %d, want %d: %s", i, st, cases[i].status, buf);
        const char *conn = header_of(buf, "Connection");
        if (conn != NULL && strcasecmp(conn, "close") == 0)
            fail_msg("case %zu closes the connection: %s", i, buf);
    }
    close(fd);
    /* The edge's limits still close (a client over them gets no second request). */
    fd = kx_th_raw_connect(g_gw.s.http_port, "127.0.0.1");
    assert_true(fd >= 0);
    char req[12000];
    int n = snprintf(req, sizeof req, "GET /api/agent-run/%09000d HTTP/1.1\r\nHost: x\r\n\r\n", 0);
    assert_int_equal(send(fd, req, (size_t)n, MSG_NOSIGNAL), n);
    assert_int_equal(read_answer(fd, buf, sizeof buf), 414);
    assert_true(closed_by_peer(fd, 2000)); /* KX_HTTP_TIMEOUT_S is 5 s here */
    close(fd);
}

static void test_cors(void **state)
{
    char *a = NULL;
    /* Preflight from an allowed origin: before auth, with Kortix's methods and headers. */
    int st = raw("OPTIONS /api/agent/initiate HTTP/1.1\r\nHost: x\r\nOrigin: " ORIGIN "\r\n"
                 "Access-Control-Request-Method: POST\r\n"
                 "Access-Control-Request-Headers: authorization, content-type, x-project-id\r\n"
                 "Connection: close\r\n\r\n",
                 &a);
    assert_int_equal(st, 200);
    assert_string_equal(header_of(a, "Access-Control-Allow-Origin"), ORIGIN);
    assert_string_equal(header_of(a, "Access-Control-Allow-Credentials"), "true");
    assert_non_null(strstr(header_of(a, "Access-Control-Allow-Methods"), "POST"));
    assert_non_null(strstr(header_of(a, "Access-Control-Allow-Headers"), "X-MCP-URL"));
    assert_non_null(strstr(header_of(a, "Access-Control-Allow-Headers"), "Authorization"));
    assert_string_equal(header_of(a, "Access-Control-Max-Age"), "600");
    free(a);
    /* The other configured origin too (the list is trimmed). */
    st = raw("OPTIONS /api/agent-run/x HTTP/1.1\r\nHost: x\r\nOrigin: http://localhost:3000\r\n"
             "Access-Control-Request-Method: GET\r\nConnection: close\r\n\r\n",
             &a);
    assert_int_equal(st, 200);
    assert_string_equal(header_of(a, "Access-Control-Allow-Origin"), "http://localhost:3000");
    free(a);
    /* Disallowed origin, method, header: 400 JSON, no allow headers. */
    st = raw("OPTIONS /api/agent/initiate HTTP/1.1\r\nHost: x\r\nOrigin: https://evil.example\r\n"
             "Access-Control-Request-Method: POST\r\nConnection: close\r\n\r\n",
             &a);
    assert_int_equal(st, 400);
    assert_null(header_of(a, "Access-Control-Allow-Origin"));
    assert_detail(a, "Disallowed CORS origin");
    free(a);
    st = raw("OPTIONS /api/agent/initiate HTTP/1.1\r\nHost: x\r\nOrigin: " ORIGIN "\r\n"
             "Access-Control-Request-Method: TRACE\r\nConnection: close\r\n\r\n",
             &a);
    assert_int_equal(st, 400);
    assert_detail(a, "Disallowed CORS method");
    free(a);
    st = raw("OPTIONS /api/agent/initiate HTTP/1.1\r\nHost: x\r\nOrigin: " ORIGIN "\r\n"
             "Access-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: x-evil\r\n"
             "Connection: close\r\n\r\n",
             &a);
    assert_int_equal(st, 400);
    assert_detail(a, "Disallowed CORS headers");
    free(a);

    /* A plain request from an allowed origin: the origin echoed, even on a 401. */
    st = raw("GET /api/agent-run/x HTTP/1.1\r\nHost: x\r\nOrigin: " ORIGIN "\r\n"
             "Connection: close\r\n\r\n",
             &a);
    assert_int_equal(st, 401);
    assert_string_equal(header_of(a, "Access-Control-Allow-Origin"), ORIGIN);
    assert_string_equal(header_of(a, "Vary"), "Origin");
    free(a);
    st = raw("GET /api/agent-run/x HTTP/1.1\r\nHost: x\r\nOrigin: https://evil.example\r\n"
             "Connection: close\r\n\r\n",
             &a);
    assert_int_equal(st, 401);
    assert_null(header_of(a, "Access-Control-Allow-Origin"));
    free(a);

    /* The SSE answer: the origin instead of Kortix's "*" for an allowed origin. */
    char account[KX_UUID_LEN + 1], run[KX_UUID_LEN + 1];
    char *token = new_account(account);
    initiate(token, run);
    publish_event(run, "{\"type\": \"status\", \"status\": \"completed\"}", true);
    char req[1024];
    snprintf(req, sizeof req,
             "GET /api/agent-run/%s/stream HTTP/1.1\r\nHost: x\r\nOrigin: " ORIGIN "\r\n"
             "Authorization: Bearer %s\r\nConnection: close\r\n\r\n",
             run, token);
    st = raw(req, &a);
    assert_int_equal(st, 200);
    assert_string_equal(header_of(a, "Access-Control-Allow-Origin"), ORIGIN);
    assert_string_equal(header_of(a, "Content-Type"), "text/event-stream");
    free(a);
    free(token);
}

/* ---- auth before the body ---------------------------------------------------------------- */

static void test_auth_before_body(void **state)
{
    size_t big = 2u << 20;
    char *body = malloc(big);
    assert_non_null(body);
    memset(body, 'a', big);
    kx_http_resp r;
    /* No token, 2 MB (over the 1 MiB cap): 401, not 413. */
    assert_int_equal(kx_th_http(&g_gw.s, "POST", "/api/agent/initiate", NULL,
                                "application/x-www-form-urlencoded", body, big, &r),
                     KX_OK);
    assert_int_equal(r.status, 401);
    assert_non_null(strstr(r.body, "No valid authentication credentials found"));
    kx_http_resp_free(&r);
    /* A bad token: 401 too. */
    assert_int_equal(kx_th_http(&g_gw.s, "POST", "/api/agent/initiate", "x.y.z",
                                "application/x-www-form-urlencoded", body, big, &r),
                     KX_OK);
    assert_int_equal(r.status, 401);
    kx_http_resp_free(&r);
    /* With a good token the size is what is wrong. */
    char account[KX_UUID_LEN + 1];
    char *token = new_account(account);
    assert_int_equal(kx_th_http(&g_gw.s, "POST", "/api/agent/initiate", token,
                                "application/x-www-form-urlencoded", body, big, &r),
                     KX_OK);
    assert_int_equal(r.status, 413);
    assert_non_null(strstr(r.body, "Request body too large"));
    kx_http_resp_free(&r);
    free(token);
    free(body);
}

/* ---- limits, in JSON ---------------------------------------------------------------------- */

static void test_limits_answer_json(void **state)
{
    char *a = NULL;
    /* ~600 query parameters, no auth: a prompt 400 (it took 90 s before). */
    size_t cap = 600 * 8 + 256;
    char *req = malloc(cap);
    assert_non_null(req);
    size_t n = (size_t)snprintf(req, cap, "GET /api/agent-run/x?");
    for (int i = 0; i < 600; i++)
        n += (size_t)snprintf(req + n, cap - n, "a%d=1&", i);
    n += (size_t)snprintf(req + n, cap - n, " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    int64_t t0 = kx_mono_ms();
    int st = kx_th_raw(g_gw.s.http_port, NULL, req, n, 10000, &a);
    assert_true(kx_mono_ms() - t0 < 5000); /* it took 90 s before; margin for a busy CI */
    assert_int_equal(st, 400);
    assert_detail(a, "Too many query parameters: the limit is 64");
    free(a);
    free(req);

    /* A URL over 8 KiB: 414 JSON. */
    cap = 12000;
    req = malloc(cap);
    n = (size_t)snprintf(req, cap, "GET /api/agent-run/");
    memset(req + n, 'b', 9000);
    n += 9000;
    n += (size_t)snprintf(req + n, cap - n, " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    st = kx_th_raw(g_gw.s.http_port, NULL, req, n, 10000, &a);
    assert_int_equal(st, 414);
    assert_detail(a, "Request URL too long: the limit is 8192 bytes");
    free(a);
    free(req);

    /* Headers over 16 KiB: 431 JSON (libmicrohttpd's own answer would be HTML). */
    cap = 40000;
    req = malloc(cap);
    n = (size_t)snprintf(req, cap, "GET /api/health HTTP/1.1\r\nHost: x\r\n");
    for (int i = 0; i < 30; i++) {
        n += (size_t)snprintf(req + n, cap - n, "X-Filler-%d: ", i);
        memset(req + n, 'c', 1000);
        n += 1000;
        n += (size_t)snprintf(req + n, cap - n, "\r\n");
    }
    n += (size_t)snprintf(req + n, cap - n, "Connection: close\r\n\r\n");
    st = kx_th_raw(g_gw.s.http_port, NULL, req, n, 10000, &a);
    assert_int_equal(st, 431);
    assert_detail(a, "Request headers too large: the limit is 16384 bytes");
    free(a);
    free(req);

    /* 405 names the allowed methods. */
    st =
        raw("DELETE /api/threads/x/messages HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", &a);
    assert_int_equal(st, 405);
    assert_string_equal(header_of(a, "Allow"), "GET, POST");
    assert_detail(a, "Method Not Allowed");
    free(a);
}

/* ---- ids ---------------------------------------------------------------------------------- */

static void test_uppercase_run_id(void **state)
{
    char account[KX_UUID_LEN + 1], run[KX_UUID_LEN + 1], upper[KX_UUID_LEN + 1];
    char *token = new_account(account);
    initiate(token, run);
    for (int i = 0; i <= KX_UUID_LEN; i++)
        upper[i] = (char)toupper((unsigned char)run[i]);
    publish_event(run, "{\"n\": 1}", false);
    publish_event(run, "{\"type\": \"status\", \"status\": \"completed\"}", true);
    char path[128];
    snprintf(path, sizeof path, "/api/agent-run/%s/stream", upper);
    kx_th_sse e;
    assert_int_equal(kx_th_sse_read(&g_gw.s, path, token, 10000, &e), KX_OK);
    assert_int_equal(e.status, 200);
    assert_int_equal(e.n, 2); /* it replayed nothing before the fix */
    assert_string_equal(e.data[0], "{\"n\": 1}");
    assert_true(e.terminal);
    kx_th_sse_free(&e);
    /* GET with the upper-case id answers the run with its canonical id. */
    snprintf(path, sizeof path, "/api/agent-run/%s", upper);
    long status = 0;
    json_t *v = kx_th_json(&g_gw.s, "GET", path, token, NULL, &status);
    assert_int_equal(status, 200);
    assert_string_equal(json_string_value(json_object_get(v, "id")), run);
    json_decref(v);
    free(token);
}

/* ---- JWT rules ---------------------------------------------------------------------------- */

static void test_jwt_rules(void **state)
{
    char account[KX_UUID_LEN + 1];
    kx_uuid_new(account);
    const char *secret = g_gw.s.secret;
    int64_t now = kx_now_ms() / 1000;
    struct {
        char *token;
        const char *detail;
    } cases[] = {
        {kx_jwt_sign(account, now, 0, secret, strlen(secret)), "Invalid token: missing exp"},
        {kx_jwt_sign_aud(account, "anon", now, now + 60, secret, strlen(secret)),
         "Invalid token: invalid audience"},
        {kx_jwt_sign_aud(account, NULL, now, now + 60, secret, strlen(secret)),
         "Invalid token: invalid audience"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        long status = 0;
        json_t *v = kx_th_json(&g_gw.s, "GET", "/api/agent-run/x", cases[i].token, NULL, &status);
        assert_int_equal(status, 401);
        assert_string_equal(json_string_value(json_object_get(v, "detail")), cases[i].detail);
        json_decref(v);
        free(cases[i].token);
    }
}

/* ---- size discipline --------------------------------------------------------------------- */

/* A prompt or message over KX_MAX_PROMPT_BYTES (256 KiB) is refused up front: before the fix
 * a 1 MB prompt was accepted and its run's events could never reach the stream. */
static void test_prompt_cap(void **state)
{
    char account[KX_UUID_LEN + 1], run[KX_UUID_LEN + 1];
    char *token = new_account(account);
    size_t big = 300 * 1024;
    char *prompt = malloc(big + 1);
    memset(prompt, 'q', big);
    prompt[big] = '\0';
    const char *pairs[] = {"prompt", prompt, NULL};
    size_t len = 0;
    char *body = kx_th_form_urlencoded(pairs, &len);
    kx_http_resp r;
    assert_int_equal(kx_th_http(&g_gw.s, "POST", "/api/agent/initiate", token,
                                "application/x-www-form-urlencoded", body, len, &r),
                     KX_OK);
    assert_int_equal(r.status, 413);
    assert_non_null(strstr(r.body, "prompt is too long: 307200 bytes, the limit is 262144 bytes"));
    kx_http_resp_free(&r);
    free(body);

    initiate(token, run);
    char *thread = NULL;
    {
        char path[128];
        snprintf(path, sizeof path, "/api/agent-run/%s", run);
        long status = 0;
        json_t *v = kx_th_json(&g_gw.s, "GET", path, token, NULL, &status);
        thread = strdup(json_string_value(json_object_get(v, "threadId")));
        json_decref(v);
    }
    json_t *msg = json_pack("{s:s, s:s}", "type", "user", "content", prompt);
    char *json = json_dumps(msg, JSON_COMPACT);
    json_decref(msg);
    char path[128];
    snprintf(path, sizeof path, "/api/threads/%s/messages", thread);
    long status = 0;
    json_t *v = kx_th_json(&g_gw.s, "POST", path, token, json, &status);
    assert_int_equal(status, 413);
    assert_non_null(
        strstr(json_string_value(json_object_get(v, "detail")), "content is too long"));
    json_decref(v);
    snprintf(path, sizeof path, "/api/thread/%s/agent/start", thread);
    char *start = malloc(strlen(prompt) + 32);
    sprintf(start, "{\"prompt\": \"%s\"}", prompt);
    v = kx_th_json(&g_gw.s, "POST", path, token, start, &status);
    assert_int_equal(status, 413);
    json_decref(v);
    free(start);
    free(json);
    free(thread);
    free(prompt);
    free(token);
}

/* A string of n copies of unit (malloc'd). */
static char *repeat(const char *unit, size_t n)
{
    size_t u = strlen(unit);
    char *s = malloc(u * n + 1);
    assert_non_null(s);
    for (size_t i = 0; i < n; i++)
        memcpy(s + i * u, unit, u);
    s[u * n] = '\0';
    return s;
}

/* method path with body (stolen) answers status, with a detail containing want (if not NULL);
 * the answer (the caller frees it). */
static json_t *expect_json(const char *token, const char *method, const char *path, json_t *body,
                           long status, const char *want)
{
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    assert_non_null(text);
    long st = 0;
    json_t *v = kx_th_json(&g_gw.s, method, path, token, text, &st);
    const char *detail = json_string_value(json_object_get(v, "detail"));
    if (st != status || (want != NULL && (detail == NULL || strstr(detail, want) == NULL)))
        fprintf(stderr, "%s %s (%zu bytes): got %ld %s, want %ld \"%s\"\n", method, path,
                strlen(text), st, detail ? detail : "", status, want ? want : "");
    free(text);
    assert_int_equal(st, status);
    if (want != NULL)
        assert_non_null(strstr(detail, want));
    return v;
}

/* The caps on short texts and on a trigger's prompt (docs/api.md, "Validation"): before the fix
 * a trigger took a 900 000-byte prompt and a 50 000-character name, a message a 1 MB type and
 * agent/start a 100 000-character model_name. Characters are counted, not bytes. */
static void test_text_caps(void **state)
{
    char account[KX_UUID_LEN + 1], run[KX_UUID_LEN + 1], path[200];
    char *token = new_account(account);
    initiate(token, run);
    snprintf(path, sizeof path, "/api/agent-run/%s", run);
    long st = 0;
    json_t *v = kx_th_json(&g_gw.s, "GET", path, token, NULL, &st);
    char *thread = strdup(json_string_value(json_object_get(v, "threadId")));
    json_decref(v);
    v = expect_json(token, "POST", "/api/agents",
                    json_pack("{s:s, s:s}", "name", "caps", "system_prompt", ""), 200, NULL);
    char *agent = strdup(json_string_value(json_object_get(v, "agent_id")));
    json_decref(v);

    char *prompt = repeat("p", 300 * 1024), *long_name = repeat("\xc3\xa9", 256);
    char *name_ok = repeat("\xc3\xa9", 255), *model = repeat("m", 257);
    /* triggers: create */
    json_t *base = json_pack("{s:s, s:s, s:s}", "agent_id", agent, "cron_expression", "0 9 * * *",
                             "prompt", "daily");
    json_t *b = json_deep_copy(base);
    json_object_set_new(b, "prompt", json_string(prompt));
    json_decref(expect_json(token, "POST", "/api/triggers", b, 413, "prompt is too long"));
    b = json_deep_copy(base);
    json_object_set_new(b, "name", json_string(long_name));
    json_decref(expect_json(token, "POST", "/api/triggers", b, 400,
                            "name is too long: 256 characters, the limit is 255"));
    b = json_deep_copy(base);
    json_object_set_new(b, "model_name", json_string(model));
    json_decref(expect_json(token, "POST", "/api/triggers", b, 400,
                            "model_name is too long: 257 characters, the limit is 256"));
    b = json_deep_copy(base);
    json_object_set_new(b, "name", json_string(name_ok)); /* 510 bytes, 255 characters */
    v = expect_json(token, "POST", "/api/triggers", b, 200, NULL);
    char tpath[200];
    snprintf(tpath, sizeof tpath, "/api/triggers/%s",
             json_string_value(json_object_get(v, "trigger_id")));
    json_decref(v);
    /* triggers: edit */
    json_decref(expect_json(token, "PATCH", tpath, json_pack("{s:s}", "prompt", prompt), 413,
                            "prompt is too long"));
    json_decref(expect_json(token, "PATCH", tpath, json_pack("{s:s}", "name", long_name), 400,
                            "name is too long"));
    json_decref(base);

    /* a message's type */
    char *type = repeat("t", 65);
    snprintf(path, sizeof path, "/api/threads/%s/messages", thread);
    json_decref(expect_json(token, "POST", path,
                            json_pack("{s:s, s:s}", "type", type, "content", "x"), 400,
                            "type is too long: 65 characters, the limit is 64"));
    /* a run's model_name: agent/start (JSON) and initiate (form) */
    snprintf(path, sizeof path, "/api/thread/%s/agent/start", thread);
    json_decref(expect_json(token, "POST", path, json_pack("{s:s}", "model_name", model), 400,
                            "model_name is too long"));
    const char *pairs[] = {"prompt", "hi", "model_name", model, NULL};
    char *answer = NULL;
    char tid[KX_UUID_LEN + 1];
    assert_int_equal(kx_th_initiate_form(&g_gw.s, token, pairs, false, run, tid, &answer), 400);
    assert_non_null(strstr(answer, "model_name is too long"));
    free(answer);
    free(type);
    free(prompt);
    free(long_name);
    free(name_ok);
    free(model);
    free(agent);
    free(thread);
    free(token);
}

/* ---- a bounded fuzz of the JSON and form routes ------------------------------------------ */

static uint32_t g_rng = 20261130;
static uint32_t rnd(void)
{
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 17;
    g_rng ^= g_rng << 5;
    return g_rng;
}

/* A mutation of seed: bytes flipped, cut, repeated, or special text spliced in. malloc'd. */
static char *mutate(const char *seed, size_t *len)
{
    static const char *const splices[] = {
        "\\u0000",
        "\\ud800",
        "\xff\xfe",
        "{",
        "[",
        "]",
        "}",
        "\"",
        "1e999999",
        "-0",
        "18446744073709551616",
        "null",
        "true",
        "\"prompt\": 5",
        "%",
        "%zz",
        "%00",
        "\r\n--",
        "\r\n\r\n",
        "Content-Disposition: form-data; name=\"prompt\"\r\n\r\n",
        "\xc3\x28",
        "\"\\",
        "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
    };
    size_t n = strlen(seed);
    size_t cap = n * 2 + 512;
    char *out = malloc(cap);
    // NOLINTNEXTLINE(bugprone-not-null-terminated-result): bytes with a length, not a string
    memcpy(out, seed, n);
    int edits = 1 + (int)(rnd() % 4);
    for (int e = 0; e < edits; e++) {
        size_t at = n > 0 ? rnd() % (n + 1) : 0;
        switch (rnd() % 4) {
        case 0: /* flip a byte */
            if (n > 0)
                out[rnd() % n] = (char)(rnd() & 0xff);
            break;
        case 1: /* cut */ n = at; break;
        case 2: { /* splice */
            const char *sp = splices[rnd() % (sizeof splices / sizeof splices[0])];
            size_t sl = strlen(sp);
            if (n + sl < cap) {
                memmove(out + at + sl, out + at, n - at);
                // NOLINTNEXTLINE(bugprone-not-null-terminated-result): as above
                memcpy(out + at, sp, sl);
                n += sl;
            }
            break;
        }
        default: /* duplicate a slice */
            if (n > 0 && n * 2 < cap) {
                size_t from = rnd() % n, k = rnd() % (n - from) + 1;
                char *slice = malloc(k); /* the slice may overlap where it goes */
                assert_non_null(slice);
                memcpy(slice, out + from, k);
                memmove(out + at + k, out + at, n - at);
                memcpy(out + at, slice, k);
                free(slice);
                n += k;
            }
        }
    }
    *len = n;
    return out;
}

static void test_fuzz_no_5xx(void **state)
{
    char account[KX_UUID_LEN + 1], run[KX_UUID_LEN + 1];
    char *token = new_account(account);
    initiate(token, run);
    char path_get[128], thread[KX_UUID_LEN + 1];
    snprintf(path_get, sizeof path_get, "/api/agent-run/%s", run);
    long status = 0;
    json_t *v = kx_th_json(&g_gw.s, "GET", path_get, token, NULL, &status);
    snprintf(thread, sizeof thread, "%s", json_string_value(json_object_get(v, "threadId")));
    json_decref(v);

    const char *json_seed = "{\"prompt\": \"hi \\u00e9\", \"model_name\": \"m\", "
                            "\"enable_thinking\": false, \"reasoning_effort\": \"low\", "
                            "\"stream\": true, \"type\": \"user\", \"content\": \"x\", "
                            "\"is_llm_message\": false}";
    const char *url_seed = "prompt=hello%20world&model_name=m&enable_thinking=false&stream=true";
    const char *mp_ct = "multipart/form-data; boundary=XyZ";
    const char *mp_seed = "--XyZ\r\nContent-Disposition: form-data; name=\"prompt\"\r\n\r\n"
                          "hello\r\n--XyZ\r\nContent-Disposition: form-data; name=\"files\"; "
                          "filename=\"a.txt\"\r\nContent-Type: text/plain\r\n\r\nabc\r\n"
                          "--XyZ--\r\n";
    char p_start[128], p_msgs[128], p_stop[128];
    snprintf(p_start, sizeof p_start, "/api/thread/%s/agent/start", thread);
    snprintf(p_msgs, sizeof p_msgs, "/api/threads/%s/messages", thread);
    snprintf(p_stop, sizeof p_stop, "/api/agent-run/%s/stop", run);
    int counts[6] = {0};
    int64_t until = kx_mono_ms() + 20000; /* bounded in time as well as in count */
    int i;
    for (i = 0; i < 400 && kx_mono_ms() < until; i++) {
        const char *path, *ct, *seed;
        switch (i % 5) {
        case 0:
            path = p_start;
            ct = "application/json";
            seed = json_seed;
            break;
        case 1:
            path = p_msgs;
            ct = "application/json";
            seed = json_seed;
            break;
        case 2:
            path = "/api/agent/initiate";
            ct = "application/x-www-form-urlencoded";
            seed = url_seed;
            break;
        case 3:
            path = "/api/agent/initiate";
            ct = mp_ct;
            seed = mp_seed;
            break;
        default:
            path = p_stop;
            ct = "application/json";
            seed = json_seed;
            break;
        }
        if (rnd() % 10 == 0)
            ct = (const char *[]){"text/plain", "multipart/form-data", "application/json; x",
                                  "multipart/form-data; boundary=", ""}[rnd() % 5];
        size_t len = 0;
        char *body = mutate(seed, &len);
        kx_http_resp r;
        assert_int_equal(kx_th_http(&g_gw.s, "POST", path, token, ct[0] ? ct : NULL, body, len,
                                    &r),
                         KX_OK);
        /* This gateway runs without a sandbox-broker: an initiate that carries files is
         * answered 503 by design (nothing is created); any other 5xx is a defect. */
        bool no_broker = r.status == 503 && r.body != NULL &&
            strstr(r.body, "Sandbox service unavailable") != NULL;
        if (r.status >= 500 && !no_broker)
            fail_msg("POST %s (%s) with %.*s -> %ld %s", path, ct, (int)len, body, r.status,
                     r.body);
        if (r.status >= 400) {
            json_t *d = json_loads(r.body, 0, NULL);
            if (!json_is_string(json_object_get(d, "detail")))
                fail_msg("POST %s -> %ld without a detail: %s", path, r.status, r.body);
            json_decref(d);
        }
        counts[r.status / 100]++;
        kx_http_resp_free(&r);
        free(body);
    }
    print_message("fuzz: %d requests: %d 2xx, %d 4xx, 0 5xx\n", i, counts[2], counts[4]);
    assert_true(i >= 100);
    /* The gateway is still well. */
    v = kx_th_json(&g_gw.s, "GET", path_get, token, NULL, &status);
    assert_int_equal(status, 200);
    json_decref(v);
    free(token);
}

/* ---- a paused nats-server ---------------------------------------------------------------- */

typedef struct timed_call {
    pthread_t thread;
    const char *token;
    const char *method, *path, *ct, *body;
    long status;
    int64_t took_ms;
} timed_call;

static void *do_call(void *arg)
{
    timed_call *c = arg;
    int64_t t0 = kx_mono_ms();
    kx_http_resp r;
    if (kx_th_http(&g_gw.s, c->method, c->path, c->token, c->ct, c->body,
                   c->body ? strlen(c->body) : 0, &r) == KX_OK) {
        c->status = r.status;
        kx_http_resp_free(&r);
    }
    c->took_ms = kx_mono_ms() - t0;
    return NULL;
}

/* With nats-server stopped (SIGSTOP: its sockets stay open, nothing answers), initiate, stop
 * and GET answer at once: the gateway's publishes do not wait for NATS (they blocked an HTTP
 * thread for KX_BUS_TIMEOUT_MS each, and 4 of them stalled every other request). */
static void test_nats_paused(void **state)
{
    char account[KX_UUID_LEN + 1], run[KX_UUID_LEN + 1], victim[KX_UUID_LEN + 1];
    char *token = new_account(account);
    initiate(token, run);
    initiate(token, victim);
    char get_path[128], stop_path[128];
    snprintf(get_path, sizeof get_path, "/api/agent-run/%s", run);
    snprintf(stop_path, sizeof stop_path, "/api/agent-run/%s/stop", victim);

    g_nats_paused = true;
    assert_true(kx_th_freeze(g_gw.s.nats.pid));
    enum {
        N = 16
    };
    timed_call calls[N];
    memset(calls, 0, sizeof calls);
    char stream_path[128];
    snprintf(stream_path, sizeof stream_path, "/api/agent-run/%s/stream", run);
    for (int i = N - 6; i < N; i++) { /* stream opens wait on NATS (consumer creation) */
        calls[i].token = token;
        calls[i].method = "GET";
        calls[i].path = stream_path;
        assert_int_equal(pthread_create(&calls[i].thread, NULL, do_call, &calls[i]), 0);
    }
    usleep(200 * 1000);
    for (int i = 0; i < N - 6; i++) {
        calls[i].token = token;
        if (i < 6) {
            calls[i].method = "POST";
            calls[i].path = "/api/agent/initiate";
            calls[i].ct = "application/x-www-form-urlencoded";
            calls[i].body = "prompt=while+nats+sleeps";
        } else if (i == 6) {
            calls[i].method = "POST";
            calls[i].path = stop_path;
        } else {
            calls[i].method = "GET";
            calls[i].path = get_path;
        }
        assert_int_equal(pthread_create(&calls[i].thread, NULL, do_call, &calls[i]), 0);
    }
    for (int i = 0; i < N - 6; i++)
        pthread_join(calls[i].thread, NULL);
    assert_int_equal(kill(g_gw.s.nats.pid, SIGCONT), 0);
    g_nats_paused = false;
    for (int i = N - 6; i < N; i++)
        pthread_join(calls[i].thread, NULL);
    for (int i = 0; i < N - 6; i++) {
        print_message("%s %s -> %ld in %lld ms\n", calls[i].method, calls[i].path, calls[i].status,
                      (long long)calls[i].took_ms);
        assert_int_equal(calls[i].status, 200);
        assert_true(calls[i].took_ms < 3000); /* KX_BUS_TIMEOUT_MS is 5 s */
    }
    free(token);
}

/* ---- a paused PostgreSQL ----------------------------------------------------------------- */

/* SIGSTOPs (or SIGCONTs) the harness's postmaster and its backends, found by PID file and
 * parent PID: only what this test started. False when the postmaster is not found. */
static void signal_one(pid_t pid, void *arg)
{
    kill(pid, *(int *)arg);
}

static bool signal_postgres(int sig)
{
    char dir[400];
    snprintf(dir, sizeof dir, "%s/pg", g_gw.s.pg.dir);
    pid_t pm = kx_th_postmaster_of(dir);
    if (pm <= 0)
        return false;
    kx_th_each_child(pm, signal_one, &sig);
    return kill(pm, sig) == 0;
}

/* A request that needs no dependency answers within 2.5 s (it stalled until Postgres came
 * back before; the margin is for a busy CI machine). */
static void assert_prompt(const char *req, int want)
{
    int64_t t0 = kx_mono_ms();
    int st = kx_th_raw(g_gw.s.http_port, NULL, req, strlen(req), 5000, NULL);
    assert_int_equal(st, want);
    assert_true(kx_mono_ms() - t0 < 2500);
}

/* With PostgreSQL stopped (its sockets open, nothing answers): requests that need it take
 * workers, not libmicrohttpd's threads — preflights, 401s, 404s keep answering at once, and
 * the GETs beyond the pool's 8 connections fail with 503 after the pool wait instead of
 * stalling everything. Before, 4 blocked handlers stopped the whole API. */
static void test_postgres_paused(void **state)
{
    char account[KX_UUID_LEN + 1], run[KX_UUID_LEN + 1];
    char *token = new_account(account);
    initiate(token, run);
    char get_path[128];
    snprintf(get_path, sizeof get_path, "/api/agent-run/%s", run);

    g_pg_paused = true;
    assert_true(signal_postgres(SIGSTOP));
    enum {
        N = 12
    };
    timed_call calls[N];
    memset(calls, 0, sizeof calls);
    for (int i = 0; i < N; i++) {
        calls[i] = (timed_call){.token = token, .method = "GET", .path = get_path};
        assert_int_equal(pthread_create(&calls[i].thread, NULL, do_call, &calls[i]), 0);
    }
    int64_t until = kx_mono_ms() + 6500; /* past the 5 s pool wait */
    int probes = 0;
    while (kx_mono_ms() < until) {
        assert_prompt("GET /api/agent-run/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                      401);
        assert_prompt("GET /api/nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 404);
        assert_prompt("OPTIONS /api/agent/initiate HTTP/1.1\r\nHost: x\r\nOrigin: " ORIGIN "\r\n"
                      "Access-Control-Request-Method: POST\r\nConnection: close\r\n\r\n",
                      200);
        probes++;
        usleep(200 * 1000);
    }
    assert_true(signal_postgres(SIGCONT));
    g_pg_paused = false;
    int unavailable = 0, ok = 0;
    for (int i = 0; i < N; i++) {
        pthread_join(calls[i].thread, NULL);
        if (calls[i].status == 503) {
            unavailable++;
            assert_true(calls[i].took_ms < 6500);
        }
        ok += calls[i].status == 200;
    }
    print_message("postgres paused: %d prompt probes; GET run: %d x 503 (pool wait), %d x 200 "
                  "once it resumed\n",
                  probes, unavailable, ok);
    assert_true(probes >= 3);
    assert_true(unavailable >= 1);
    assert_int_equal(unavailable + ok, N);
    long status = 0;
    json_t *v = kx_th_json(&g_gw.s, "GET", get_path, token, NULL, &status);
    assert_int_equal(status, 200);
    json_decref(v);
    free(token);
}

/* ---- connection limits ------------------------------------------------------------------- */

/* A GET /api/agent-run/x from src answers 401 within 4 s (no answer at all before). */
static void assert_answered(const char *src)
{
    const char *req = "GET /api/agent-run/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    int64_t t0 = kx_mono_ms();
    int st = kx_th_raw(g_gw.s.http_port, src, req, strlen(req), 5000, NULL);
    assert_int_equal(st, 401);
    assert_true(kx_mono_ms() - t0 < 4000);
}

/* Has the server closed fd (EOF within wait_ms)? */
static bool closed_by_peer(int fd, int wait_ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, wait_ms) <= 0)
        return false;
    char c;
    return recv(fd, &c, 1, MSG_DONTWAIT) <= 0;
}

static void test_idle_connections(void **state)
{
    enum {
        IDLE = 2000,
        OVER = 150
    };
    static int fds[IDLE + OVER];
    for (int i = 0; i < IDLE; i++) {
        fds[i] = kx_th_raw_connect(g_gw.s.http_port, "127.0.0.1");
        assert_true(fds[i] >= 0);
        if (i % 500 == 499)
            assert_answered("127.0.0.2"); /* answers while they pile up */
    }
    usleep(300 * 1000); /* let the server accept them all */
    for (int i = 0; i < 10; i++)
        assert_answered("127.0.0.2");
    /* All 2 000 are held (none closed), beyond the ~1 020 of a select()-based server. */
    int closed = 0;
    for (int i = 0; i < IDLE; i++)
        closed += closed_by_peer(fds[i], 0);
    assert_int_equal(closed, 0);
    /* The same address over its cap (2 100): closed at once. */
    for (int i = IDLE; i < IDLE + OVER; i++) {
        fds[i] = kx_th_raw_connect(g_gw.s.http_port, "127.0.0.1");
        assert_true(fds[i] >= 0); /* the kernel accepts; the server closes */
    }
    closed = 0;
    for (int i = IDLE; i < IDLE + OVER; i++)
        closed += closed_by_peer(fds[i], 2000);
    assert_true(closed >= OVER - 110); /* at least 40 over the cap of 2 100 */
    assert_answered("127.0.0.3");
    for (int i = IDLE; i < IDLE + OVER; i++)
        close(fds[i]);
    /* Idle ones are closed by the server after KX_HTTP_TIMEOUT_S (5 s). */
    int64_t t0 = kx_mono_ms();
    closed = 0;
    for (int i = 0; i < IDLE; i++)
        closed += closed_by_peer(fds[i],
                                 (int)(t0 + 15000 > kx_mono_ms() ? t0 + 15000 - kx_mono_ms() : 0));
    assert_int_equal(closed, IDLE);
    for (int i = 0; i < IDLE; i++)
        close(fds[i]);
    assert_answered("127.0.0.1");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cors),
        cmocka_unit_test(test_keep_alive_after_early_answers),
        cmocka_unit_test(test_auth_before_body),
        cmocka_unit_test(test_limits_answer_json),
        cmocka_unit_test(test_uppercase_run_id),
        cmocka_unit_test(test_jwt_rules),
        cmocka_unit_test(test_prompt_cap),
        cmocka_unit_test(test_text_caps),
        cmocka_unit_test(test_fuzz_no_5xx),
        cmocka_unit_test(test_nats_paused),
        cmocka_unit_test(test_postgres_paused),
        cmocka_unit_test(test_idle_connections),
    };
    int failed = cmocka_run_group_tests(tests, setup, NULL);
    if (g_nats_paused) /* a pause test failed half-way: resume what it stopped */
        kill(g_gw.s.nats.pid, SIGCONT);
    if (g_pg_paused)
        signal_postgres(SIGCONT);
    kx_bus_close(g_bus, 1000);
    kx_th_gw_stop(&g_gw, failed != 0);
    return failed;
}
