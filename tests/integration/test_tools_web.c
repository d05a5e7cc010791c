/* test_tools_web.c — the executor's web_search, scrape_webpage, expose_port and see_image end to
 * end on kx.tool.exec, with a real nats-server, sandbox-broker and tool-executor, and the fake
 * Tavily / Firecrawl APIs of tests/fakes/web/fake-web.js (their real JSON over HTTP):
 *   - web_search: the request the API gets (bearer key, advanced depth, max_results), the
 *     answer as the output; no results is a failure; a hung API answered `timeout` at the
 *     call's deadline; bad arguments named;
 *   - scrape_webpage: pages saved as JSON under /workspace/scrape/ (one larger than a bus
 *     message, in chunks), a failing URL beside a good one, a bad URL refused;
 *   - the Firecrawl breaker: 5 HTTP 500s open it, the next call fails fast `unavailable`
 *     without reaching the API, /metrics shows it open; after the open period one probe closes
 *     it;
 *   - a ToolCall carrying the agent's agentpress_tools: a tool of another group is refused;
 *   - expose_port: a preview link for a port, its token accepted by the broker's check;
 *   - see_image: PNG/JPEG/GIF/WebP recognised, a missing file, a text file, a directory and a
 *     file over 10 MB refused with the reason;
 *   - without the API keys (a second executor) the web tools are not in kx.tool.schemas and
 *     their calls are refused.
 * One stack for the whole binary. */
#include <fcntl.h>
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "fake_log.h"
#include "harness.h"
#include "sandbox_client.h"
#include "suite.h"
#include "kx/bus.h"
#include "kx/http.h"
#include "kx/json.h"
#include "kx/pb.h"
#include "kx/time.h"
#include "kx/uuid.h"

#define FAKE_WEB KX_SOURCE_DIR "/tests/fakes/web/fake-web.js"
#define KEY "fake-key-7d1c"

static char *g_tmp;
static kx_th_nats g_nats;
static pid_t g_broker, g_executor, g_fake;
static uint16_t g_exec_port, g_fake_port;
static char g_root[512], g_project[KX_UUID_LEN + 1], g_account[KX_UUID_LEN + 1];
static kx_bus *g_bus;
static char g_env[6][700];

static pid_t start_executor(bool keys)
{
    const char *with[] = {"KX_DRAIN_TIMEOUT_MS=2000",
                          "KX_TOOL_BREAKER_OPEN_MS=1500",
                          "KX_PUBLIC_URL=https://kortix.example",
                          g_env[0],
                          g_env[1],
                          g_env[2],
                          g_env[3],
                          NULL};
    const char *without[] = {"KX_DRAIN_TIMEOUT_MS=2000",
                             "TAVILY_API_KEY=", "FIRECRAWL_API_KEY=", NULL};
    return kx_th_service_start(g_tmp, g_nats.url, "tool-executor", keys ? with : without,
                               &g_exec_port);
}

static int group_setup(void **state)
{
    (void)state;
    if (kx_th_suite_open("kx-it-tools-web", &g_tmp, &g_nats) != KX_OK)
        return -1;
    chmod(g_tmp, 0711);
    snprintf(g_root, sizeof g_root, "%s/sandboxes", g_tmp);
    kx_uuid_new(g_project);
    kx_uuid_new(g_account);
    g_fake = kx_th_node_fake(g_tmp, FAKE_WEB, KEY, "fake-web.log", &g_fake_port);
    if (g_fake == 0)
        return -1;
    snprintf(g_env[0], sizeof g_env[0], "TAVILY_API_KEY=%s", KEY);
    snprintf(g_env[1], sizeof g_env[1], "TAVILY_API_URL=http://127.0.0.1:%u/", g_fake_port);
    snprintf(g_env[2], sizeof g_env[2], "FIRECRAWL_API_KEY=%s", KEY);
    snprintf(g_env[3], sizeof g_env[3], "FIRECRAWL_URL=http://127.0.0.1:%u", g_fake_port);
    snprintf(g_env[4], sizeof g_env[4], "KX_SANDBOX_ROOT=%s", g_root);
    const char *broker_env[] = {g_env[4], NULL};
    g_broker = kx_th_service_start(g_tmp, g_nats.url, "sandbox-broker", broker_env, NULL);
    g_executor = start_executor(true);
    if (g_broker == 0 || g_executor == 0)
        return -1;
    return kx_th_bus_connect(g_nats.url, "it-tools-web", &g_bus) == KX_OK ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    const pid_t pids[] = {g_executor, g_broker, g_fake};
    return kx_th_suite_close(g_bus, pids, 3, &g_nats, NULL, g_tmp) == 0 ? 0 : -1;
}

/* ---- calling tools -------------------------------------------------------------------- */

static kx_th_tool_reply call_as(const char *tool, const char *args, int64_t deadline_ms,
                                const char *agentpress_tools)
{
    char id[KX_UUID_LEN + 1], run[KX_UUID_LEN + 1];
    kx_uuid_new(id);
    kx_uuid_new(run);
    Kx__V1__ToolCall tc = KX__V1__TOOL_CALL__INIT;
    tc.call_id = id;
    tc.run_id = run;
    tc.lease_epoch = 1;
    tc.project_id = g_project;
    tc.account_id = g_account;
    tc.tool_name = (char *)tool;
    tc.arguments_json = (char *)args;
    tc.agentpress_tools_json = (char *)(agentpress_tools != NULL ? agentpress_tools : "");
    kx_th_tool_reply out = kx_th_tool_exec(g_bus, &tc, g_account, deadline_ms);
    /* the executor always answers before the deadline, with a ToolResult */
    assert_int_equal(out.err, KX_OK);
    assert_non_null(out.res);
    return out;
}

static kx_th_tool_reply call(const char *tool, const char *args, int64_t deadline_ms)
{
    return call_as(tool, args, deadline_ms, NULL);
}

static void assert_error(const kx_th_tool_reply *r, const char *code, const char *needle)
{
    assert_false(r->res->success);
    assert_non_null(r->res->error);
    if (strcmp(r->res->error->code, code) != 0 || strstr(r->res->error->message, needle) == NULL)
        fail_msg("expected %s containing \"%s\", got %s: %s", code, needle, r->res->error->code,
                 r->res->error->message);
}

/* The fake's request log, filtered by path. */
static json_t *fake_log(const char *path)
{
    char cond[160];
    snprintf(cond, sizeof cond, "path=%s", path);
    return kx_th_fake_log(g_fake_port, cond, NULL);
}

static char *metrics(void)
{
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%u/metrics", g_exec_port);
    kx_http_resp r = {0};
    assert_int_equal(kx_http_request("GET", url, NULL, NULL, 0, kx_deadline_in(5000), 0, &r),
                     KX_OK);
    char *body = r.body;
    r.body = NULL;
    kx_http_resp_free(&r);
    return body;
}

static json_t *schemas(void)
{
    Kx__V1__ToolSchemasRequest rq = KX__V1__TOOL_SCHEMAS_REQUEST__INIT;
    kx_err err = KX_OK;
    Kx__V1__ToolSchemasReply *rep =
        kx_th_bus_ask(g_bus, KX_SUBJ_TOOL_SCHEMAS, &rq.base, g_account, 5000,
                      &kx__v1__tool_schemas_reply__descriptor, NULL, &err);
    assert_int_equal(err, KX_OK);
    assert_non_null(rep);
    json_t *tools = json_loads(rep->tools_json, 0, NULL);
    kx_pb_free(rep);
    assert_non_null(tools);
    json_t *names = json_object();
    size_t i;
    json_t *t;
    json_array_foreach(tools, i, t)
    {
        json_t *fn = json_object_get(t, "function");
        json_object_set(names, json_string_value(json_object_get(fn, "name")), fn);
    }
    json_decref(tools);
    return names;
}

/* ---- web_search ------------------------------------------------------------------------- */

static void test_offered(void **state)
{
    (void)state;
    json_t *names = schemas();
    assert_non_null(json_object_get(names, "web_search"));
    assert_non_null(json_object_get(names, "scrape_webpage"));
    assert_non_null(json_object_get(names, "expose_port"));
    assert_non_null(json_object_get(names, "see_image"));
    json_decref(names);
}

static void test_search(void **state)
{
    (void)state;
    kx_th_tool_reply r =
        call("web_search", "{\"query\": \"kortix in c\", \"num_results\": 3}", 10000);
    assert_true(r.res->success);
    assert_string_equal(r.res->status, "ok");
    json_t *results = json_object_get(r.output, "results");
    assert_int_equal(json_array_size(results), 3);
    assert_string_equal(json_string_value(json_object_get(json_array_get(results, 0), "title")),
                        "Result 1 for kortix in c");
    assert_string_equal(json_string_value(json_object_get(r.output, "answer")),
                        "The answer about kortix in c.");
    kx_th_tool_reply_free(&r);
    json_t *log = fake_log("/search");
    json_t *last = json_array_get(log, json_array_size(log) - 1);
    assert_string_equal(json_string_value(json_object_get(last, "auth")), "Bearer " KEY);
    json_t *body = json_object_get(last, "body");
    assert_string_equal(json_string_value(json_object_get(body, "query")), "kortix in c");
    assert_int_equal(json_integer_value(json_object_get(body, "max_results")), 3);
    assert_string_equal(json_string_value(json_object_get(body, "search_depth")), "advanced");
    assert_true(json_is_true(json_object_get(body, "include_images")));
    json_decref(log);

    /* the default: 20 results */
    r = call("web_search", "{\"query\": \"defaults\"}", 10000);
    assert_true(r.res->success);
    assert_int_equal(json_array_size(json_object_get(r.output, "results")), 20);
    kx_th_tool_reply_free(&r);
}

static void test_search_failures(void **state)
{
    (void)state;
    kx_th_tool_reply r = call("web_search", "{\"query\": \"empty things\"}", 10000);
    assert_error(&r, "not_found", "no results");
    assert_non_null(json_object_get(r.output, "results")); /* the answer is still there */
    kx_th_tool_reply_free(&r);

    r = call("web_search", "{}", 10000);
    assert_error(&r, "invalid_argument", "'query' is required");
    kx_th_tool_reply_free(&r);
    r = call("web_search", "{\"query\": \"x\", \"num_results\": 0}", 10000);
    assert_error(&r, "invalid_argument", "'num_results' must be between 1 and 50");
    kx_th_tool_reply_free(&r);

    /* a hung API: answered "timeout" at the call's deadline (less the executor's margin) */
    r = call("web_search", "{\"query\": \"please hang\"}", 2500);
    assert_string_equal(r.res->status, "timeout");
    assert_true(r.res->timed_out);
    assert_true(r.elapsed_ms >= 2000 && r.elapsed_ms < 2500);
    kx_th_tool_reply_free(&r);

    /* a slow API within the deadline is waited for */
    r = call("web_search", "{\"query\": \"slow-1200 answer\", \"num_results\": 1}", 10000);
    assert_true(r.res->success);
    assert_true(r.elapsed_ms >= 1200);
    kx_th_tool_reply_free(&r);

    /* a 500 is the API being unavailable */
    r = call("web_search", "{\"query\": \"fail500\"}", 10000);
    assert_error(&r, "unavailable", "HTTP 500");
    kx_th_tool_reply_free(&r);
    r = call("web_search", "{\"query\": \"closes the breaker again\"}", 10000);
    assert_true(r.res->success);
    kx_th_tool_reply_free(&r);
}

/* ---- scrape_webpage --------------------------------------------------------------------- */

static json_t *read_saved(const char *file_path)
{
    char path[1200];
    snprintf(path, sizeof path, "%s/%s%s", g_root, g_project, file_path);
    json_error_t jerr;
    json_t *v = json_load_file(path, 0, &jerr);
    if (v == NULL)
        fail_msg("%s: %s", path, jerr.text);
    return v;
}

static void test_scrape(void **state)
{
    (void)state;
    kx_th_tool_reply r =
        call("scrape_webpage", "{\"urls\": \"https://example.org/a , https://www.example.net/b\"}",
             20000);
    assert_true(r.res->success);
    json_t *results = json_object_get(r.output, "results");
    assert_int_equal(json_array_size(results), 2);
    for (size_t i = 0; i < 2; i++) {
        json_t *e = json_array_get(results, i);
        assert_true(json_is_true(json_object_get(e, "success")));
        const char *fp = json_string_value(json_object_get(e, "file_path"));
        assert_non_null(fp);
        assert_true(strncmp(fp, "/workspace/scrape/", 18) == 0);
        assert_non_null(strstr(fp, i == 0 ? "_example.org.json" : "_www.example.net.json"));
        json_t *page = read_saved(fp);
        const char *url = i == 0 ? "https://example.org/a" : "https://www.example.net/b";
        assert_string_equal(json_string_value(json_object_get(page, "url")), url);
        char want[200];
        snprintf(want, sizeof want, "The content of %s.", url);
        assert_non_null(strstr(json_string_value(json_object_get(page, "text")), want));
        json_decref(page);
    }
    kx_th_tool_reply_free(&r);
    json_t *log = fake_log("/v1/scrape");
    json_t *last = json_array_get(log, json_array_size(log) - 1);
    assert_string_equal(json_string_value(json_object_get(last, "auth")), "Bearer " KEY);
    assert_string_equal(json_string_value(json_array_get(
                            json_object_get(json_object_get(last, "body"), "formats"), 0)),
                        "markdown");
    json_decref(log);
}

static void test_scrape_big_and_partial(void **state)
{
    (void)state;
    /* 1.5 MB of markdown: written in chunks, whole */
    kx_th_tool_reply r =
        call("scrape_webpage", "{\"urls\": \"https://big.example/big-1500000\"}", 20000);
    assert_true(r.res->success);
    json_t *e = json_array_get(json_object_get(r.output, "results"), 0);
    assert_int_equal(json_integer_value(json_object_get(e, "content_length")), 1500000);
    json_t *page = read_saved(json_string_value(json_object_get(e, "file_path")));
    assert_int_equal(strlen(json_string_value(json_object_get(page, "text"))), 1500000);
    json_decref(page);
    kx_th_tool_reply_free(&r);

    /* a hung scrape API: answered "timeout" at the call's deadline, nothing saved */
    r = call("scrape_webpage", "{\"urls\": \"https://slowpoke.example/hang\"}", 2500);
    assert_string_equal(r.res->status, "timeout");
    assert_true(r.res->timed_out);
    assert_true(r.elapsed_ms >= 2000 && r.elapsed_ms < 2500);
    kx_th_tool_reply_free(&r);

    /* one good URL beside two failing ones: success, each failure named (the good one also
     * closes the breaker's count again) */
    r = call("scrape_webpage",
             "{\"urls\": \"https://x.example/fail500,https://ok.example/,"
             "https://y.example/nomarkdown\"}",
             20000);
    assert_true(r.res->success);
    json_t *results = json_object_get(r.output, "results");
    assert_int_equal(json_array_size(results), 3);
    assert_false(json_is_true(json_object_get(json_array_get(results, 0), "success")));
    assert_non_null(strstr(kx_json_str(json_array_get(results, 0), "error", ""), "HTTP 500"));
    assert_true(json_is_true(json_object_get(json_array_get(results, 1), "success")));
    assert_non_null(
        strstr(kx_json_str(json_array_get(results, 2), "error", ""), "Failed to scrape the page"));
    kx_th_tool_reply_free(&r);

    r = call("scrape_webpage", "{\"urls\": \"ftp://example.org/file\"}", 10000);
    assert_error(&r, "invalid_argument", "http:// or https://");
    kx_th_tool_reply_free(&r);
    r = call("scrape_webpage", "{\"urls\": \" , \"}", 10000);
    assert_error(&r, "invalid_argument", "1 to 20 URLs (got 0)");
    kx_th_tool_reply_free(&r);
}

/* ---- breakers --------------------------------------------------------------------------- */

static bool metric_has(const char *line)
{
    char *m = metrics();
    bool has = m != NULL && strstr(m, line) != NULL;
    free(m);
    return has;
}

static void test_breaker(void **state)
{
    (void)state;
    for (int i = 0; i < 5; i++) {
        kx_th_tool_reply r =
            call("scrape_webpage", "{\"urls\": \"https://down.example/fail500\"}", 10000);
        assert_error(&r, "unavailable", "no URL could be scraped");
        kx_th_tool_reply_free(&r);
    }
    assert_true(metric_has("kx_tool_breaker_open{dependency=\"web:firecrawl\"} 1"));
    json_t *log = fake_log("/v1/scrape");
    size_t before = json_array_size(log);
    json_decref(log);
    kx_th_tool_reply r = call("scrape_webpage", "{\"urls\": \"https://ok.example/\"}", 10000);
    assert_error(&r, "unavailable", "circuit breaker is open after 5 failures");
    assert_string_equal(r.res->status, "unavailable");
    assert_true(r.elapsed_ms < 1000);
    kx_th_tool_reply_free(&r);
    log = fake_log("/v1/scrape");
    assert_int_equal(json_array_size(log), before); /* it never reached the API */
    json_decref(log);
    /* the search API's breaker is its own */
    r = call("web_search", "{\"query\": \"still fine\", \"num_results\": 1}", 10000);
    assert_true(r.res->success);
    kx_th_tool_reply_free(&r);
    assert_true(metric_has("kx_tool_breaker_open{dependency=\"web:tavily\"} 0"));

    usleep(1700 * 1000); /* KX_TOOL_BREAKER_OPEN_MS=1500: half-open, one probe */
    r = call("scrape_webpage", "{\"urls\": \"https://ok.example/probe\"}", 10000);
    assert_true(r.res->success);
    kx_th_tool_reply_free(&r);
    assert_true(metric_has("kx_tool_breaker_open{dependency=\"web:firecrawl\"} 0"));
}

/* ---- the agent's tools ------------------------------------------------------------------ */

static void test_agent_tools(void **state)
{
    (void)state;
    kx_th_tool_reply r =
        call_as("web_search", "{\"query\": \"x\"}", 10000, "{\"sb_shell_tool\": true}");
    assert_error(&r, "not_found", "not enabled for this agent");
    assert_non_null(strstr(r.res->error->message, "web_search_tool"));
    kx_th_tool_reply_free(&r);
    r = call_as("web_search", "{\"query\": \"x\", \"num_results\": 1}", 10000,
                "{\"web_search_tool\": {\"enabled\": true}}");
    assert_true(r.res->success);
    kx_th_tool_reply_free(&r);
    /* always-on tools need no group */
    r = call_as("ask", "{\"text\": \"ok?\"}", 10000, "{\"sb_shell_tool\": true}");
    assert_true(r.res->success);
    kx_th_tool_reply_free(&r);
    r = call_as("ask", "{\"text\": \"ok?\"}", 10000, "[1]");
    assert_error(&r, "invalid_argument", "agentpress_tools_json must be a JSON object");
    kx_th_tool_reply_free(&r);
}

/* ---- expose_port -------------------------------------------------------------------------- */

static void test_expose_port(void **state)
{
    (void)state;
    kx_th_tool_reply r = call("expose_port", "{\"port\": 8765}", 20000);
    if (!r.res->success)
        fail_msg("expose_port: %s", r.res->error ? r.res->error->message : "?");
    const char *url = json_string_value(json_object_get(r.output, "url"));
    assert_non_null(url);
    const char *prefix = "https://kortix.example/api/sandboxes/";
    assert_true(strncmp(url, prefix, strlen(prefix)) == 0);
    const char *tok = strstr(url, "/preview/8765/?preview_token=");
    assert_non_null(tok);
    tok += strlen("/preview/8765/?preview_token=");
    assert_int_equal(strlen(tok), 32);
    assert_int_equal(json_integer_value(json_object_get(r.output, "port")), 8765);
    /* the broker accepts the link's token for that port (the gateway's check) */
    Kx__V1__SandboxPreviewRequest rq = KX__V1__SANDBOX_PREVIEW_REQUEST__INIT;
    rq.project_id = g_project;
    rq.port = 8765;
    rq.token = (char *)tok;
    kx_err err = KX_OK;
    /* as the gateway asks it: the account in the metadata (kx_th_preview_request sends the
     * project there) */
    Kx__V1__SandboxPreviewReply *rep =
        kx_th_bus_ask(g_bus, KX_SUBJ_SANDBOX_PREVIEW, &rq.base, g_account, 5000,
                      &kx__v1__sandbox_preview_reply__descriptor, NULL, &err);
    assert_int_equal(err, KX_OK);
    assert_non_null(rep);
    assert_null(rep->error);
    assert_false(kx_pb_str_empty(rep->relay));
    kx_pb_free(rep);
    kx_th_tool_reply_free(&r);

    r = call("expose_port", "{\"port\": 70000}", 10000);
    assert_error(&r, "invalid_argument", "'port' must be between 1 and 65535");
    kx_th_tool_reply_free(&r);
}

/* ---- see_image ---------------------------------------------------------------------------- */

static void write_file(const char *name, const void *data, size_t len, off_t size)
{
    char path[1200];
    snprintf(path, sizeof path, "%s/%s/workspace/%s", g_root, g_project, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    if (size > (off_t)len)
        assert_int_equal(ftruncate(fd, size), 0);
    close(fd);
}

static void test_see_image(void **state)
{
    (void)state;
    /* the sandbox (and its workspace) exists: expose_port started it */
    static const struct {
        const char *name, *magic, *mime;
        size_t n;
    } kinds[] = {
        {"a.png", "\x89PNG\r\n\x1a\n\0\0\0\rIHDR", "image/png", 16},
        {"b.jpg", "\xff\xd8\xff\xe0\0\x10JFIF", "image/jpeg", 10},
        {"c.gif", "GIF89a\x01\0\x01\0", "image/gif", 10},
        {"d.webp", "RIFF\x24\0\0\0WEBPVP8 ", "image/webp", 16},
    };
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        write_file(kinds[i].name, kinds[i].magic, kinds[i].n, 4096);
        char args[200], want[200];
        snprintf(args, sizeof args, "{\"file_path\": \"%s\"}", kinds[i].name);
        kx_th_tool_reply r = call("see_image", args, 10000);
        if (!r.res->success)
            fail_msg("see_image %s: %s", kinds[i].name, r.res->error->message);
        snprintf(want, sizeof want, "/workspace/%s", kinds[i].name);
        json_t *img = json_object_get(r.output, "image");
        assert_string_equal(json_string_value(json_object_get(img, "file_path")), want);
        assert_string_equal(json_string_value(json_object_get(img, "mime_type")), kinds[i].mime);
        assert_int_equal(json_integer_value(json_object_get(img, "size")), 4096);
        kx_th_tool_reply_free(&r);
    }
    kx_th_tool_reply r = call("see_image", "{\"file_path\": \"nope.png\"}", 10000);
    assert_error(&r, "not_found", "nope.png");
    kx_th_tool_reply_free(&r);
    write_file("notes.txt", "just text, not an image", 23, 0);
    r = call("see_image", "{\"file_path\": \"/workspace/notes.txt\"}", 10000);
    assert_error(&r, "invalid_argument", "is not a PNG, JPEG, GIF or WebP image");
    kx_th_tool_reply_free(&r);
    write_file("huge.png", "\x89PNG\r\n\x1a\n", 8, (off_t)10 * 1024 * 1024 + 1);
    r = call("see_image", "{\"file_path\": \"huge.png\"}", 10000);
    assert_error(&r, "invalid_argument", "too big: 10485761 bytes");
    kx_th_tool_reply_free(&r);
    r = call("see_image", "{\"file_path\": \"scrape\"}", 10000);
    assert_error(&r, "invalid_argument", "is a directory");
    kx_th_tool_reply_free(&r);
    r = call("see_image", "{\"file_path\": \"../../etc/passwd\"}", 10000);
    assert_false(r.res->success);
    kx_th_tool_reply_free(&r);
}

/* ---- no keys ---------------------------------------------------------------------------- */

static void test_no_keys(void **state)
{
    (void)state;
    kx_th_kill(g_executor);
    g_executor = start_executor(false);
    assert_true(g_executor > 0);
    json_t *names = schemas();
    assert_null(json_object_get(names, "web_search"));
    assert_null(json_object_get(names, "scrape_webpage"));
    assert_non_null(json_object_get(names, "expose_port"));
    assert_non_null(json_object_get(names, "execute_command"));
    json_decref(names);
    kx_th_tool_reply r = call("web_search", "{\"query\": \"x\"}", 10000);
    assert_error(&r, "not_found", "not configured");
    kx_th_tool_reply_free(&r);
    r = call("scrape_webpage", "{\"urls\": \"https://example.org/\"}", 10000);
    assert_error(&r, "not_found", "not configured");
    kx_th_tool_reply_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_offered),
        cmocka_unit_test(test_search),
        cmocka_unit_test(test_search_failures),
        cmocka_unit_test(test_scrape),
        cmocka_unit_test(test_scrape_big_and_partial),
        cmocka_unit_test(test_breaker),
        cmocka_unit_test(test_agent_tools),
        cmocka_unit_test(test_expose_port),
        cmocka_unit_test(test_see_image),
        cmocka_unit_test(test_no_keys),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
