/* tools_web.c — Kortix's web_search_tool: web_search against a Tavily-compatible API and
 * scrape_webpage against a Firecrawl-compatible API, its results saved as JSON files under
 * /workspace/scrape/ through the sandbox-broker's kx.sandbox.files.
 *
 * Configuration (read once at start, te_web_config_load): TAVILY_API_KEY, TAVILY_API_URL
 * (https://api.tavily.com), FIRECRAWL_API_KEY, FIRECRAWL_URL (https://api.firecrawl.dev). A tool
 * whose key is not set is not offered (not in kx.tool.schemas; a call is refused).
 *
 *   web_search(query*, num_results 1..50 = 20)
 *       POST <TAVILY_API_URL>/search {"query", "max_results", "search_depth": "advanced",
 *       "include_answer": "advanced", "include_images": true}, Authorization: Bearer <key>.
 *       Output: the API's answer as it came; success when it has at least one result.
 *   scrape_webpage(urls*): comma-separated http(s) URLs, at most WEB_MAX_URLS, one after the
 *       other: POST <FIRECRAWL_URL>/v1/scrape {"url", "formats": ["markdown"]} (each at most
 *       WEB_SCRAPE_TIMEOUT_MS, within the call's deadline), then the page is written to
 *       /workspace/scrape/<YYYYmmdd_HHMMSS_mmm>_<domain>.json ({"url", "title", "text",
 *       "metadata"}) in chunks that fit the bus. Output {"message", "results": [{"url",
 *       "success", "file_path", "title", "content_length"} | {"url", "success": false,
 *       "error"}]}; success when at least one page was saved.
 *
 * HTTP runs on the executor's kx_curlm (kx/curlm.h): the loop never blocks, and the transfer's
 * timeout is what is left of the call's deadline T. Each API has its own circuit breaker
 * ("web:tavily", "web:firecrawl"): no answer, a transport error, HTTP 429 or 5xx or a body that
 * is not JSON count as failures; while open, a call fails at once with `unavailable`. */
#include <ctype.h>
#include <curl/curl.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "deadline.h"
#include "executor.h"
#include "kx/buf.h"
#include "kx/curl_easy.h"
#include "kx/curlm.h"
#include "kx/json.h"
#include "kx/log.h"
#include "kx/pb.h"
#include "registry.h"

#define WEB_MAX_BODY (8u * 1024u * 1024u) /* an API answer larger than this is refused */
#define WEB_MAX_URLS 20
#define WEB_SCRAPE_TIMEOUT_MS 30000
#define WEB_WRITE_CHUNK (512u * 1024u) /* bytes of a saved page per kx.sandbox.files request */
#define WEB_CONNECT_TIMEOUT_MS 10000

#define DEP_TAVILY "web:tavily"
#define DEP_FIRECRAWL "web:firecrawl"

typedef struct web_config {
    char *tavily_key, *tavily_url, *firecrawl_key, *firecrawl_url;
} web_config;

static web_config g_web; /* set once before the loop runs */

static char *env_copy(const char *name, const char *def)
{
    const char *v = getenv(name);
    if (v == NULL || v[0] == '\0')
        v = def;
    if (v == NULL)
        return NULL;
    char *s = strdup(v);
    size_t n = s != NULL ? strlen(s) : 0;
    while (n > 0 && s[n - 1] == '/') /* "https://host/" + "/search" */
        s[--n] = '\0';
    return s;
}

void te_web_config_load(void)
{
    free(g_web.tavily_key);
    free(g_web.tavily_url);
    free(g_web.firecrawl_key);
    free(g_web.firecrawl_url);
    g_web.tavily_key = env_copy("TAVILY_API_KEY", NULL);
    g_web.tavily_url = env_copy("TAVILY_API_URL", "https://api.tavily.com");
    g_web.firecrawl_key = env_copy("FIRECRAWL_API_KEY", NULL);
    g_web.firecrawl_url = env_copy("FIRECRAWL_URL", "https://api.firecrawl.dev");
}

static bool search_offered(void)
{
    return g_web.tavily_key != NULL && g_web.tavily_url != NULL;
}

static bool scrape_offered(void)
{
    return g_web.firecrawl_key != NULL && g_web.firecrawl_url != NULL;
}

/* ---- the call's state ------------------------------------------------------------------- */

typedef struct web_state {
    CURL *easy; /* the transfer in flight, or NULL */
    struct curl_slist *hdrs;
    char *body;
    kx_buf resp;
    char curl_err[CURL_ERROR_SIZE];
    const char *dep; /* the breaker of the transfer in flight */
    kx_deadline t;   /* the call's tool deadline T */
    int64_t xfer_ms; /* the transfer in flight's timeout */
    /* scrape_webpage */
    json_t *urls;    /* array of strings */
    size_t idx;      /* the URL being scraped */
    json_t *results; /* one entry per URL done */
    size_t saved;
    char *page; /* the JSON being written */
    size_t page_len, page_off;
    char file_path[300];
    char title[300];
    size_t content_length;
    char last_code[40]; /* error code of the last failed URL */
} web_state;

static void end_transfer(te_call *c)
{
    web_state *st = c->state;
    if (st->easy != NULL) {
        kx_curlm_remove(c->ex->curlm, st->easy); /* no-op when curlm already removed it */
        curl_easy_cleanup(st->easy);
        st->easy = NULL;
    }
    curl_slist_free_all(st->hdrs);
    st->hdrs = NULL;
    free(st->body);
    st->body = NULL;
    kx_buf_free(&st->resp);
}

static void state_free(te_call *c)
{
    web_state *st = c->state;
    if (st == NULL)
        return;
    end_transfer(c);
    json_decref(st->urls);
    json_decref(st->results);
    free(st->page);
    free(st);
    c->state = NULL;
}

static web_state *state_new(te_call *c)
{
    web_state *st = calloc(1, sizeof *st);
    if (st == NULL)
        return NULL;
    c->state = st;
    c->state_free = state_free;
    st->resp.max = WEB_MAX_BODY;
    st->t = te_call_deadline(c, 0);
    return st;
}

static void fail(te_call *c, kx_err err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void fail(te_call *c, kx_err err, const char *fmt, ...)
{
    char msg[480];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    te_outcome o;
    te_outcome_init(&o);
    te_outcome_error(&o, err, "%s", msg);
    te_call_finish(c, &o);
}

static void web_abort(te_call *c, te_outcome *o)
{
    web_state *st = c->state;
    if (st != NULL && st->easy != NULL)
        te_breaker_release(c->ex, st->dep); /* no verdict on the API */
    if (c->req_active) {
        kx_bus_async_cancel(c->ex->async, c->req_id);
        c->req_active = false;
    }
    te_call_finish(c, o); /* state_free ends the transfer */
}

/* ---- one HTTP POST on the loop ---------------------------------------------------------- */

static size_t on_body(char *ptr, size_t size, size_t n, void *arg)
{
    web_state *st = arg;
    return kx_buf_add(&st->resp, ptr, size * n) == KX_OK ? size * n : 0;
}

/* What a finished transfer came to. */
typedef struct web_answer {
    bool ok;           /* 2xx with a JSON body: json is set */
    json_t *json;      /* owned by the caller when set */
    bool timed_out;    /* no answer by the transfer's timeout */
    bool dep_failed;   /* counts against the API's breaker */
    char code[40];     /* the error code when !ok */
    char message[400]; /* why, when !ok */
} web_answer;

static void judge(te_call *c, CURLcode rc, web_answer *a, const char *what)
{
    web_state *st = c->state;
    memset(a, 0, sizeof *a);
    long status = 0;
    curl_easy_getinfo(st->easy, CURLINFO_RESPONSE_CODE, &status);
    if (rc == CURLE_OPERATION_TIMEDOUT) {
        a->timed_out = a->dep_failed = true;
        snprintf(a->code, sizeof a->code, "deadline_exceeded");
        snprintf(a->message, sizeof a->message, "%s: no answer within %lld s", what,
                 (long long)te_seconds_for_message(st->xfer_ms));
    } else if (rc == CURLE_WRITE_ERROR && st->resp.len + CURL_MAX_WRITE_SIZE > WEB_MAX_BODY) {
        a->dep_failed = true;
        snprintf(a->code, sizeof a->code, "internal");
        snprintf(a->message, sizeof a->message, "%s: the answer is larger than %u bytes", what,
                 WEB_MAX_BODY);
    } else if (rc != CURLE_OK) {
        a->dep_failed = true;
        snprintf(a->code, sizeof a->code, "unavailable");
        snprintf(a->message, sizeof a->message, "%s: %s", what,
                 st->curl_err[0] ? st->curl_err : curl_easy_strerror(rc));
    } else if (status == 429 || status >= 500) {
        a->dep_failed = true;
        snprintf(a->code, sizeof a->code, "unavailable");
        snprintf(a->message, sizeof a->message, "%s: HTTP %ld: %.200s", what, status,
                 st->resp.s ? st->resp.s : "");
    } else if (status < 200 || status > 299) {
        snprintf(a->code, sizeof a->code,
                 status == 401 || status == 403 ? "permission_denied" : "invalid_argument");
        snprintf(a->message, sizeof a->message, "%s: HTTP %ld: %.200s", what, status,
                 st->resp.s ? st->resp.s : "");
    } else if ((a->json = json_loadb(st->resp.s ? st->resp.s : "", st->resp.len, 0, NULL)) ==
               NULL) {
        a->dep_failed = true;
        snprintf(a->code, sizeof a->code, "internal");
        snprintf(a->message, sizeof a->message, "%s: the answer (HTTP %ld) is not JSON", what,
                 status);
    } else {
        a->ok = true;
    }
    te_breaker_record(c->ex, st->dep, !a->dep_failed);
}

/* POSTs body (consumed) as JSON to url with the bearer key; done runs on the loop. The
 * transfer ends at min(T, now + limit_ms) (limit_ms 0: T). False with the call finished when it
 * could not start (breaker open, no time left, out of memory). */
static bool post(te_call *c, const char *dep, const char *url, const char *key, char *body,
                 int64_t limit_ms, kx_curlm_done_cb done)
{
    web_state *st = c->state;
    char why[300];
    int64_t now = kx_now_ms();
    int64_t left = st->t - now;
    if (body == NULL) {
        fail(c, KX_ERR_NOMEM, "%s: out of memory", c->tool->name);
        return false;
    }
    st->body = body;
    if (left <= 0) {
        te_outcome o;
        te_outcome_init(&o);
        o.timed_out = true;
        te_outcome_error(&o, KX_ERR_TIMEOUT, "%s: no time left before the call's deadline",
                         c->tool->name);
        te_call_finish(c, &o);
        return false;
    }
    if (!te_breaker_allow(c->ex, dep, why, sizeof why)) {
        fail(c, KX_ERR_UNAVAILABLE, "%s: %s", c->tool->name, why);
        return false;
    }
    if (limit_ms > 0 && limit_ms < left)
        left = limit_ms;
    st->dep = dep;
    st->xfer_ms = left;
    kx_buf_clear(&st->resp);
    char auth[600];
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", key);
    st->hdrs = curl_slist_append(NULL, "Content-Type: application/json");
    struct curl_slist *h = st->hdrs != NULL ? curl_slist_append(st->hdrs, auth) : NULL;
    st->easy = h != NULL ? curl_easy_init() : NULL;
    if (st->easy == NULL) {
        te_breaker_release(c->ex, dep);
        fail(c, KX_ERR_NOMEM, "%s: out of memory", c->tool->name);
        return false;
    }
    st->hdrs = h;
    CURL *e = st->easy;
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, st->hdrs);
    curl_easy_setopt(e, CURLOPT_POST, 1L);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, st->body);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(st->body));
    kx_curl_opts o = {.on_body = on_body,
                      .body_arg = st,
                      .errbuf = st->curl_err,
                      .user_agent = "kortix-tool-executor/" KX_VERSION,
                      .timeout_ms = left,
                      .connect_ms = WEB_CONNECT_TIMEOUT_MS};
    kx_curl_easy_setup(e, &o);
    if (kx_curlm_add(c->ex->curlm, e, done, c) != KX_OK) {
        te_breaker_release(c->ex, dep);
        fail(c, KX_ERR_UNAVAILABLE, "%s: could not start the HTTP request to %s", c->tool->name,
             url);
        return false;
    }
    return true;
}

/* The transfer is over (curlm removed it): frees it, keeping nothing but the answer. */
static void answer_of(te_call *c, CURLcode rc, web_answer *a, const char *what)
{
    judge(c, rc, a, what);
    end_transfer(c);
}

static void finish_answer_error(te_call *c, const web_answer *a)
{
    te_outcome o;
    te_outcome_init(&o);
    o.timed_out = a->timed_out;
    if (a->timed_out)
        te_outcome_error(&o, KX_ERR_TIMEOUT, "%s", a->message);
    else
        te_outcome_error_code(&o, a->code, a->message);
    te_call_finish(c, &o);
}

/* ---- web_search ------------------------------------------------------------------------- */

static void on_search_done(CURL *easy, CURLcode rc, void *arg)
{
    (void)easy;
    te_call *c = arg;
    web_answer a;
    answer_of(c, rc, &a, "web_search: the search API");
    if (!a.ok) {
        finish_answer_error(c, &a);
        return;
    }
    te_outcome o;
    te_outcome_init(&o);
    json_t *results = json_object_get(a.json, "results");
    o.output_json = kx_json_dumps_py(a.json);
    if (o.output_json == NULL)
        te_outcome_error(&o, KX_ERR_NOMEM, "web_search: out of memory");
    else if (!json_is_array(results) || json_array_size(results) == 0)
        te_outcome_error(&o, KX_ERR_NOT_FOUND, "web_search: no results for the query");
    else
        o.success = true;
    json_decref(a.json);
    te_call_finish(c, &o);
}

static void search_start(te_call *c)
{
    if (state_new(c) == NULL) {
        fail(c, KX_ERR_NOMEM, "%s: out of memory", c->tool->name);
        return;
    }
    json_t *rq =
        json_pack("{s:s, s:I, s:s, s:s, s:b}", "query", kx_json_str(c->args, "query", ""),
                  "max_results", (json_int_t)kx_json_int(c->args, "num_results", 20),
                  "search_depth", "advanced", "include_answer", "advanced", "include_images", 1);
    char *body = rq != NULL ? json_dumps(rq, JSON_COMPACT) : NULL;
    json_decref(rq);
    char url[600];
    snprintf(url, sizeof url, "%s/search", g_web.tavily_url);
    post(c, DEP_TAVILY, url, g_web.tavily_key, body, 0, on_search_done);
}

/* ---- scrape_webpage ---------------------------------------------------------------------- */

static void scrape_next(te_call *c);

static void url_failed(te_call *c, const char *code, const char *message)
{
    web_state *st = c->state;
    json_t *url = json_array_get(st->urls, st->idx);
    json_array_append_new(st->results,
                          json_pack("{s:O, s:b, s:s}", "url", url, "success", 0, "error",
                                    message));
    snprintf(st->last_code, sizeof st->last_code, "%s", code);
    st->idx++;
    scrape_next(c);
}

static void write_chunk(te_call *c);

static void on_chunk_written(te_call *c, kx_err err, natsMsg *reply)
{
    web_state *st = c->state;
    Kx__V1__SandboxFilesReply *r = te_files_take_reply(c, err, reply);
    if (r == NULL)
        return; /* the call is finished: the sandbox failed */
    st->page_off = r->next_offset > 0 && (size_t)r->next_offset <= st->page_len
        ? (size_t)r->next_offset
        : st->page_off +
            (st->page_len - st->page_off < WEB_WRITE_CHUNK ? st->page_len - st->page_off
                                                           : WEB_WRITE_CHUNK);
    kx_pb_free(r);
    if (st->page_off < st->page_len) {
        write_chunk(c);
        return;
    }
    json_t *url = json_array_get(st->urls, st->idx);
    json_array_append_new(st->results,
                          json_pack("{s:O, s:b, s:s, s:s, s:I}", "url", url, "success", 1,
                                    "file_path", st->file_path, "title", st->title,
                                    "content_length", (json_int_t)st->content_length));
    free(st->page);
    st->page = NULL;
    st->saved++;
    st->idx++;
    scrape_next(c);
}

static void write_chunk(te_call *c)
{
    web_state *st = c->state;
    size_t n = st->page_len - st->page_off;
    if (n > WEB_WRITE_CHUNK)
        n = WEB_WRITE_CHUNK;
    Kx__V1__SandboxFilesRequest rq = KX__V1__SANDBOX_FILES_REQUEST__INIT;
    rq.project_id = c->call->project_id;
    rq.op = KX__V1__SANDBOX_FILE_OP__SANDBOX_FILE_WRITE;
    rq.path = st->file_path;
    rq.mode = st->page_off == 0 ? KX__V1__SANDBOX_WRITE_MODE__SANDBOX_WRITE_OVERWRITE
                                : KX__V1__SANDBOX_WRITE_MODE__SANDBOX_WRITE_AT;
    rq.offset = (int64_t)st->page_off;
    rq.data.data = (uint8_t *)st->page + st->page_off;
    rq.data.len = n;
    /* on failure te_request finishes the call */
    te_request(c, "sandbox", KX_SUBJ_SANDBOX_FILES, &rq.base, st->t, on_chunk_written);
}

/* "https://www.example.com:8080/a" -> "www.example.com" with anything but [A-Za-z0-9.-]
 * replaced by '_'. */
static void domain_of(const char *url, char *out, size_t outlen)
{
    const char *p = strstr(url, "://");
    p = p != NULL ? p + 3 : url;
    const char *at = strpbrk(p, "@/?#");
    if (at != NULL && *at == '@')
        p = at + 1;
    size_t n = 0;
    for (; *p && *p != '/' && *p != ':' && *p != '?' && *p != '#' && n + 1 < outlen; p++)
        out[n++] = isalnum((unsigned char)*p) || *p == '.' || *p == '-' ? *p : '_';
    if (n == 0)
        out[n++] = '_';
    out[n] = '\0';
}

static void on_scrape_done(CURL *easy, CURLcode rc, void *arg)
{
    (void)easy;
    te_call *c = arg;
    web_state *st = c->state;
    web_answer a;
    answer_of(c, rc, &a, "the scrape API");
    if (!a.ok) {
        if (a.timed_out && kx_now_ms() >= st->t - 50) { /* the call's own deadline */
            json_decref(a.json);
            finish_answer_error(c, &a);
            return;
        }
        url_failed(c, a.code, a.message);
        return;
    }
    json_t *data = json_object_get(a.json, "data");
    json_t *md = json_object_get(data, "markdown");
    if (json_is_false(json_object_get(a.json, "success")) || !json_is_string(md)) {
        const char *e = kx_json_str(a.json, "error", "the answer has no data.markdown");
        char msg[400];
        snprintf(msg, sizeof msg, "the scrape API: %.300s", e);
        json_decref(a.json);
        url_failed(c, "internal", msg);
        return;
    }
    const char *url = json_string_value(json_array_get(st->urls, st->idx));
    json_t *meta = json_object_get(data, "metadata");
    snprintf(st->title, sizeof st->title, "%s", kx_json_str(meta, "title", ""));
    st->content_length = json_string_length(md);
    json_t *page = json_pack("{s:s, s:s, s:O, s:O}", "url", url, "title", st->title, "text", md,
                             "metadata", json_is_object(meta) ? meta : json_object());
    free(st->page);
    st->page = page != NULL ? kx_json_dumps_py(page) : NULL;
    json_decref(page);
    json_decref(a.json);
    if (st->page == NULL) {
        fail(c, KX_ERR_NOMEM, "%s: out of memory", c->tool->name);
        return;
    }
    st->page_len = strlen(st->page);
    st->page_off = 0;
    char domain[128], stamp[40];
    domain_of(url, domain, sizeof domain);
    int64_t ms = kx_now_ms();
    time_t secs = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    strftime(stamp, sizeof stamp, "%Y%m%d_%H%M%S", &tm);
    snprintf(st->file_path, sizeof st->file_path, "/workspace/scrape/%s_%03d_%s.json", stamp,
             (int)(ms % 1000), domain);
    write_chunk(c);
}

static void scrape_finish(te_call *c)
{
    web_state *st = c->state;
    size_t n = json_array_size(st->urls);
    char msg[300];
    snprintf(msg, sizeof msg,
             st->saved > 0 ? "Scraped %zu of %zu URL(s); the pages are saved under "
                             "/workspace/scrape/."
                           : "Scraped %zu of %zu URL(s): none could be scraped.",
             st->saved, n);
    json_t *out = json_pack("{s:s, s:O}", "message", msg, "results", st->results);
    te_outcome o;
    te_outcome_init(&o);
    o.output_json = out != NULL ? kx_json_dumps_py(out) : NULL;
    json_decref(out);
    if (o.output_json == NULL)
        te_outcome_error(&o, KX_ERR_NOMEM, "scrape_webpage: out of memory");
    else if (st->saved == 0)
        te_outcome_error_code(&o, st->last_code[0] ? st->last_code : "internal",
                              "scrape_webpage: no URL could be scraped (see the results)");
    else
        o.success = true;
    te_call_finish(c, &o);
}

static void scrape_next(te_call *c)
{
    web_state *st = c->state;
    if (st->idx >= json_array_size(st->urls)) {
        scrape_finish(c);
        return;
    }
    const char *url = json_string_value(json_array_get(st->urls, st->idx));
    char why[300];
    if (st->idx > 0 && !te_breaker_allow(c->ex, DEP_FIRECRAWL, why, sizeof why)) {
        url_failed(c, "unavailable", why); /* the first URL's refusal ends the call */
        return;
    }
    if (st->idx > 0)
        te_breaker_release(c->ex, DEP_FIRECRAWL); /* post() asks again */
    json_t *rq = json_pack("{s:s, s:[s]}", "url", url, "formats", "markdown");
    char *body = rq != NULL ? json_dumps(rq, JSON_COMPACT) : NULL;
    json_decref(rq);
    char api[600];
    snprintf(api, sizeof api, "%s/v1/scrape", g_web.firecrawl_url);
    post(c, DEP_FIRECRAWL, api, g_web.firecrawl_key, body, WEB_SCRAPE_TIMEOUT_MS, on_scrape_done);
}

static void scrape_start(te_call *c)
{
    web_state *st = state_new(c);
    if (st == NULL) {
        fail(c, KX_ERR_NOMEM, "%s: out of memory", c->tool->name);
        return;
    }
    st->urls = json_array();
    st->results = json_array();
    const char *list = kx_json_str(c->args, "urls", "");
    char *copy = strdup(list);
    if (copy == NULL || st->urls == NULL || st->results == NULL) {
        free(copy);
        fail(c, KX_ERR_NOMEM, "%s: out of memory", c->tool->name);
        return;
    }
    char *save = NULL;
    for (char *tok = strtok_r(copy, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
        while (isspace((unsigned char)*tok))
            tok++;
        size_t n = strlen(tok);
        while (n > 0 && isspace((unsigned char)tok[n - 1]))
            tok[--n] = '\0';
        if (n == 0)
            continue;
        if (strncmp(tok, "http://", 7) != 0 && strncmp(tok, "https://", 8) != 0) {
            char shown[120];
            snprintf(shown, sizeof shown, "%.100s", tok);
            fail(c, KX_ERR_INVALID,
                 "scrape_webpage: 'urls' must be http:// or https:// URLs separated by "
                 "commas (got \"%s\")",
                 shown);
            free(copy);
            return;
        }
        json_array_append_new(st->urls, json_string(tok));
    }
    free(copy);
    size_t n = json_array_size(st->urls);
    if (n == 0 || n > WEB_MAX_URLS) {
        fail(c, KX_ERR_INVALID, "scrape_webpage: 'urls' must hold 1 to %d URLs (got %zu)",
             WEB_MAX_URLS, n);
        return;
    }
    scrape_next(c);
}

/* ---- the table --------------------------------------------------------------------------- */

static const char search_schema[] =
    "{\"type\": \"function\", \"function\": {\"name\": \"web_search\", \"description\": "
    "\"Search the web for up-to-date information with the Tavily API. Returns titles, URLs, "
    "content snippets, an answer and images. Use scrape_webpage to read a page in full.\", "
    "\"parameters\": {\"type\": \"object\", \"properties\": {"
    "\"query\": {\"type\": \"string\", \"minLength\": 1, \"maxLength\": 2000, \"description\": "
    "\"The search query: specific keywords, names, dates.\"}, "
    "\"num_results\": {\"type\": \"integer\", \"minimum\": 1, \"maximum\": 50, \"default\": 20, "
    "\"description\": \"How many results to return (default 20).\"}}, "
    "\"required\": [\"query\"]}}}";

static const char scrape_schema[] =
    "{\"type\": \"function\", \"function\": {\"name\": \"scrape_webpage\", \"description\": "
    "\"Fetch the full content of web pages as markdown with the Firecrawl API; each page is "
    "saved as a JSON file under /workspace/scrape/ (read it with the file tools).\", "
    "\"parameters\": {\"type\": \"object\", \"properties\": {"
    "\"urls\": {\"type\": \"string\", \"minLength\": 1, \"maxLength\": 20000, \"description\": "
    "\"URLs to scrape, separated by commas (at most 20).\"}}, "
    "\"required\": [\"urls\"]}}}";

const te_tool te_web_tools[] = {
    {"web_search", "web_search_tool", TE_TOOL_BUILTIN, search_schema, search_start, web_abort},
    {"scrape_webpage", "web_search_tool", TE_TOOL_BUILTIN, scrape_schema, scrape_start, web_abort},
};
const size_t te_web_tools_n = sizeof te_web_tools / sizeof te_web_tools[0];

bool te_tool_offered(const te_tool *t)
{
    if (t == &te_web_tools[0])
        return search_offered();
    if (t == &te_web_tools[1])
        return scrape_offered();
    return true;
}
