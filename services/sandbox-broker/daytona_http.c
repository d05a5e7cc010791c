/* daytona_http.c — one call to the Daytona REST API on the loop (see daytona_http.h). */
#include "daytona_http.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <curl/curl.h>

#include "kx/breaker.h"
#include "kx/buf.h"
#include "kx/curl_easy.h"
#include "kx/curlm.h"
#include "kx/log.h"
#include "kx/metrics.h"
#include "kx/svc.h"
#include "kx/time.h"

#define DT_MAX_BODY (64 * 1024 * 1024) /* a download larger than this fails the call */
#define DT_CONNECT_MS 5000

struct sb_dt_call {
    sb_dt_client *c;
    CURL *easy;
    struct curl_slist *hdrs;
    curl_mime *mime;
    char *body; /* the request body (owned) */
    kx_buf resp;
    char what[260]; /* "GET /sandbox/..." for messages (no query, no key) */
    char curl_err[CURL_ERROR_SIZE];
    int64_t timeout_ms;
    kx_timer *early; /* an early failure, answered on the next loop turn */
    kx_err early_err;
    char early_why[200];
    sb_dt_done done;
    void *arg;
    sb_dt_call *prev, *next;
};

struct sb_dt_client {
    kx_loop *loop;
    kx_curlm *curlm;
    char url[512];
    char auth[1100]; /* "Authorization: Bearer <key>" */
    kx_breaker breaker;
    sb_dt_call *calls; /* in flight */
};

kx_err sb_dt_client_new(kx_loop *loop, const char *url, const char *key, int breaker_failures,
                        sb_dt_client **out)
{
    sb_dt_client *c = calloc(1, sizeof *c);
    if (c == NULL)
        return KX_ERR_NOMEM;
    c->loop = loop;
    snprintf(c->url, sizeof c->url, "%s", url);
    snprintf(c->auth, sizeof c->auth, "Authorization: Bearer %s", key);
    kx_breaker_init(&c->breaker, breaker_failures, 1000, 30000);
    kx_err err = kx_curlm_new(loop, &c->curlm);
    if (err != KX_OK) {
        free(c);
        return err;
    }
    *out = c;
    return KX_OK;
}

static void call_free(sb_dt_call *k)
{
    sb_dt_client *c = k->c;
    if (k->prev != NULL)
        k->prev->next = k->next;
    else
        c->calls = k->next;
    if (k->next != NULL)
        k->next->prev = k->prev;
    if (k->easy != NULL) {
        kx_curlm_remove(c->curlm, k->easy); /* a no-op once curlm removed it */
        curl_easy_cleanup(k->easy);
    }
    kx_timer_cancel(k->early);
    curl_slist_free_all(k->hdrs);
    curl_mime_free(k->mime);
    free(k->body);
    kx_buf_free(&k->resp);
    free(k);
}

void sb_dt_client_free(sb_dt_client *c)
{
    if (c == NULL)
        return;
    sb_dt_call *k = c->calls;
    while (k != NULL) {
        sb_dt_call *next = k->next;
        call_free(k);
        k = next;
    }
    kx_curlm_free(c->curlm);
    memset(c->auth, 0, sizeof c->auth);
    free(c);
}

void sb_dt_cancel(const sb_dt_client *c, sb_dt_call *call)
{
    if (call != NULL && call->c == c)
        call_free(call);
}

void sb_dt_escape(const char *s, char *out, size_t cap)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (; *s != '\0' && o + 4 < cap; s++) {
        unsigned char ch = (unsigned char)*s;
        if ((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
            ch == '-' || ch == '_' || ch == '.' || ch == '~' || ch == '/') {
            out[o++] = (char)ch;
        } else {
            out[o++] = '%';
            out[o++] = hex[ch >> 4];
            out[o++] = hex[ch & 15];
        }
    }
    if (cap > 0)
        out[o < cap ? o : cap - 1] = '\0';
}

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *arg)
{
    sb_dt_call *k = arg;
    size_t n = size * nmemb;
    if (k->resp.len + n > DT_MAX_BODY || kx_buf_add(&k->resp, ptr, n) != KX_OK)
        return 0; /* curl fails the transfer: CURLE_WRITE_ERROR */
    return n;
}

/* Hands resp to the caller, then frees the call. */
static void finish(sb_dt_call *k, sb_dt_resp *r)
{
    char labels[48];
    snprintf(labels, sizeof labels, "outcome=\"%s\"",
             r->err == KX_OK ? "ok" : kx_err_code(r->err));
    kx_counter_add(kx_metrics_counter("kx_sandbox_daytona_calls_total", labels,
                                      "Calls to the Daytona API, by outcome"),
                   1);
    sb_dt_done done = k->done;
    void *arg = k->arg;
    r->body = k->resp.s != NULL ? k->resp.s : "";
    r->len = k->resp.len;
    r->json = r->len > 0 ? json_loadb(r->body, r->len, 0, NULL) : NULL;
    done(r, arg);
    json_decref(r->json);
    call_free(k);
}

static kx_err status_err(long status)
{
    if (status >= 200 && status < 300)
        return KX_OK;
    if (status == 404)
        return KX_ERR_NOT_FOUND;
    if (status == 409)
        return KX_ERR_CONFLICT;
    if (status == 401 || status == 403 || status >= 500 || status == 429)
        return KX_ERR_UNAVAILABLE;
    return KX_ERR_INVALID;
}

/* The API's own words for an error ({"message": ...} as NestJS answers), or "". */
static const char *api_message(const sb_dt_resp *r)
{
    const json_t *m = r->json != NULL ? json_object_get(r->json, "message") : NULL;
    if (json_is_string(m))
        return json_string_value(m);
    if (json_is_array(m) && json_is_string(json_array_get(m, 0)))
        return json_string_value(json_array_get(m, 0));
    return "";
}

static void on_done(CURL *easy, CURLcode rc, void *arg)
{
    sb_dt_call *k = arg;
    sb_dt_client *c = k->c;
    sb_dt_resp r;
    memset(&r, 0, sizeof r);
    int64_t now = kx_mono_ms();
    if (rc != CURLE_OK) {
        kx_breaker_failure(&c->breaker, now);
        if (rc == CURLE_OPERATION_TIMEDOUT) {
            r.err = KX_ERR_TIMEOUT;
            snprintf(r.why, sizeof r.why,
                     "daytona: %.250s: no answer within its deadline of %lld ms", k->what,
                     (long long)k->timeout_ms);
        } else {
            r.err = KX_ERR_UNAVAILABLE;
            snprintf(r.why, sizeof r.why, "daytona: %.250s: %.120s", k->what,
                     k->curl_err[0] != '\0' ? k->curl_err : curl_easy_strerror(rc));
        }
        finish(k, &r);
        return;
    }
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &r.status);
    r.err = status_err(r.status);
    if (r.status >= 500 || r.status == 429)
        kx_breaker_failure(&c->breaker, now);
    else
        kx_breaker_success(&c->breaker);
    if (r.err == KX_OK) {
        finish(k, &r);
        return;
    }
    /* finish() parses the body; the message needs it first */
    r.body = k->resp.s != NULL ? k->resp.s : "";
    r.len = k->resp.len;
    r.json = r.len > 0 ? json_loadb(r.body, r.len, 0, NULL) : NULL;
    const char *msg = api_message(&r);
    snprintf(r.why, sizeof r.why, "daytona: %.250s: HTTP %ld%s%.80s%s", k->what, r.status,
             r.status == 401 || r.status == 403 ? " (the API key was refused)" : "",
             msg[0] != '\0' ? ": " : "", msg);
    json_decref(r.json);
    r.json = NULL;
    finish(k, &r);
}

static void on_early(kx_loop *loop, void *arg)
{
    (void)loop;
    sb_dt_call *k = arg;
    k->early = NULL;
    sb_dt_resp r;
    memset(&r, 0, sizeof r);
    r.err = k->early_err;
    snprintf(r.why, sizeof r.why, "daytona: %.250s: %.120s", k->what, k->early_why);
    finish(k, &r);
}

/* Fails k on the next loop turn (the caller's state is settled by then). */
static sb_dt_call *fail_early(sb_dt_call *k, kx_err err, const char *why)
{
    k->early_err = err;
    snprintf(k->early_why, sizeof k->early_why, "%s", why);
    if (k->easy != NULL) {
        curl_easy_cleanup(k->easy);
        k->easy = NULL;
    }
    k->early = kx_loop_timer(k->c->loop, 0, on_early, k);
    if (k->early == NULL) {
        call_free(k);
        return NULL;
    }
    return k;
}

static bool setup_body(sb_dt_call *k, const char *method, const void *body, size_t len,
                       const char *upload_path)
{
    CURL *e = k->easy;
    if (upload_path != NULL) {
        k->mime = curl_mime_init(e);
        curl_mimepart *part = k->mime != NULL ? curl_mime_addpart(k->mime) : NULL;
        if (part == NULL || curl_mime_name(part, "file") != CURLE_OK ||
            curl_mime_filename(part, upload_path) != CURLE_OK ||
            curl_mime_data(part, body != NULL ? body : "", body != NULL ? len : 0) != CURLE_OK ||
            curl_mime_type(part, "application/octet-stream") != CURLE_OK)
            return false;
        return curl_easy_setopt(e, CURLOPT_MIMEPOST, k->mime) == CURLE_OK;
    }
    if (body == NULL) { /* a POST without a body still says Content-Length: 0 */
        if (strcmp(method, "POST") == 0) {
            curl_easy_setopt(e, CURLOPT_POSTFIELDS, "");
            curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)0);
        }
        return true;
    }
    k->body = malloc(len + 1);
    if (k->body == NULL)
        return false;
    memcpy(k->body, body, len);
    k->body[len] = '\0';
    struct curl_slist *h = curl_slist_append(k->hdrs, "Content-Type: application/json");
    if (h == NULL)
        return false;
    k->hdrs = h;
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, k->body);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    return true;
}

sb_dt_call *sb_dt_request(sb_dt_client *c, const char *method, const char *path, const void *body,
                          size_t len, const char *upload_path, int64_t timeout_ms, sb_dt_done done,
                          void *arg)
{
    sb_dt_call *k = calloc(1, sizeof *k);
    if (k == NULL)
        return NULL;
    k->c = c;
    k->done = done;
    k->arg = arg;
    k->timeout_ms = timeout_ms;
    size_t plen = strcspn(path, "?");
    snprintf(k->what, sizeof k->what, "%s %.*s", method, (int)(plen < 240 ? plen : 240), path);
    k->next = c->calls;
    if (c->calls != NULL)
        c->calls->prev = k;
    c->calls = k;

    int64_t retry_ms = 0;
    if (timeout_ms <= 0)
        return fail_early(k, KX_ERR_TIMEOUT, "no time left before the request's deadline");
    if (!kx_breaker_allow(&c->breaker, kx_mono_ms(), &retry_ms)) {
        char why[160];
        snprintf(why, sizeof why,
                 "the API failed %d times in a row: not called for %lld ms more (circuit open)",
                 c->breaker.failures, (long long)retry_ms);
        return fail_early(k, KX_ERR_UNAVAILABLE, why);
    }
    size_t ulen = strlen(c->url) + strlen(path) + 1;
    char *url = malloc(ulen); /* a files path may be 3 KiB once escaped: never cut */
    if (url == NULL)
        return fail_early(k, KX_ERR_NOMEM, "out of memory");
    snprintf(url, ulen, "%s%s", c->url, path);
    k->easy = curl_easy_init();
    k->hdrs = curl_slist_append(NULL, c->auth);
    if (k->easy == NULL || k->hdrs == NULL || !setup_body(k, method, body, len, upload_path)) {
        free(url);
        return fail_early(k, KX_ERR_NOMEM, "out of memory");
    }
    CURL *e = k->easy;
    curl_easy_setopt(e, CURLOPT_URL, url); /* curl keeps its own copy */
    free(url);
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
    if (strcmp(method, "GET") == 0)
        curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, k->hdrs);
    kx_curl_opts o = {.on_body = on_body,
                      .body_arg = k,
                      .errbuf = k->curl_err,
                      .user_agent = "kortix-sandbox-broker/" KX_VERSION,
                      .timeout_ms = timeout_ms,
                      .connect_ms = DT_CONNECT_MS};
    kx_curl_easy_setup(e, &o);
    if (kx_curlm_add(c->curlm, e, on_done, k) != KX_OK)
        return fail_early(k, KX_ERR_UNAVAILABLE, "could not start the HTTP request");
    kx_debug("daytona: %s (deadline %lld ms)", k->what, (long long)timeout_ms);
    return k;
}
