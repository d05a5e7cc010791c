/* http.c — one blocking HTTP request over a libcurl easy handle, bounded by a deadline and a
 * body cap. For callers that may block their thread (tests, health fan-out, start-up checks);
 * transfers on the event loop use curlm.c.
 *
 * Transport failures map to kx_err: deadline passed → KX_ERR_TIMEOUT, nothing listening or
 * name not resolvable → KX_ERR_UNAVAILABLE, body over the cap → KX_ERR_PROTOCOL, other
 * transport errors → KX_ERR_IO. Any HTTP status is a successful request. */
#include "kx/http.h"

#include <curl/curl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "kx/buf.h"
#include "kx/log.h"

#define DEFAULT_MAX_BODY (16u << 20)

kx_err kx_http_global_init(void)
{
    CURLcode rc = curl_global_init(CURL_GLOBAL_DEFAULT);
    if (rc != CURLE_OK) {
        kx_error("http: curl_global_init: %s", curl_easy_strerror(rc));
        return KX_ERR_INTERNAL;
    }
    return KX_OK;
}

typedef struct sink {
    kx_buf body; /* body.max is the cap */
    bool too_big;
} sink;

static size_t on_body(char *data, size_t size, size_t nmemb, void *arg)
{
    sink *s = arg;
    size_t n = size * nmemb;
    kx_err err = kx_buf_add(&s->body, data, n);
    if (err == KX_ERR_INVALID)
        s->too_big = true;
    return err == KX_OK ? n : 0; /* 0 makes curl abort with CURLE_WRITE_ERROR */
}

static kx_err map_curl_error(CURLcode rc, const sink *s)
{
    if (s->too_big)
        return KX_ERR_PROTOCOL;
    if (s->body.oom)
        return KX_ERR_NOMEM;
    switch (rc) {
    case CURLE_OPERATION_TIMEDOUT: return KX_ERR_TIMEOUT;
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY: return KX_ERR_UNAVAILABLE;
    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL: return KX_ERR_INVALID;
    default: return KX_ERR_IO;
    }
}

kx_err kx_http_request(const char *method, const char *url, const char *const *headers,
                       const char *body, size_t body_len, kx_deadline deadline, size_t max_body,
                       kx_http_resp *out)
{
    memset(out, 0, sizeof *out);
    int64_t left = kx_deadline_remaining(deadline);
    if (left <= 0) {
        kx_warn("http: %s %s: deadline already passed", method, url);
        return KX_ERR_TIMEOUT;
    }
    CURL *c = curl_easy_init();
    if (c == NULL)
        return KX_ERR_NOMEM;
    /* "Expect:" turns off the 100-continue round trip curl makes before larger bodies. */
    struct curl_slist *hdrs = curl_slist_append(NULL, "Expect:");
    for (size_t i = 0; hdrs != NULL && headers != NULL && headers[i] != NULL; i++) {
        struct curl_slist *more = curl_slist_append(hdrs, headers[i]);
        if (more == NULL) {
            curl_slist_free_all(hdrs);
            hdrs = NULL;
        }
        hdrs = more;
    }
    if (hdrs == NULL) {
        curl_easy_cleanup(c);
        return KX_ERR_NOMEM;
    }

    sink s = {.body = KX_BUF_INIT};
    s.body.max = max_body != 0 ? max_body : DEFAULT_MAX_BODY;
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &s);
    if (deadline != KX_NO_DEADLINE)
        curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)(left < 1 ? 1 : left));
    if (strcmp(method, "HEAD") == 0) {
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    } else if (body != NULL) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        if (strcmp(method, "POST") != 0)
            curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    } else if (strcmp(method, "GET") != 0) {
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    }

    CURLcode rc = curl_easy_perform(c);
    kx_err err = KX_OK;
    if (rc != CURLE_OK) {
        err = map_curl_error(rc, &s);
        kx_warn("http: %s %s failed: %s%s", method, url, curl_easy_strerror(rc),
                s.too_big ? " (response body over the size cap)" : "");
    } else {
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out->status);
        char *ct = NULL;
        curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &ct);
        if (ct != NULL && (out->content_type = strdup(ct)) == NULL)
            err = KX_ERR_NOMEM;
        if (err == KX_OK) {
            out->len = s.body.len;
            out->body = kx_buf_take(&s.body); /* an empty body is still a string: "" */
            if (out->body == NULL)
                err = KX_ERR_NOMEM;
        }
    }
    kx_buf_free(&s.body);
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(c);
    if (err != KX_OK)
        kx_http_resp_free(out);
    return err;
}

void kx_http_resp_free(kx_http_resp *r)
{
    if (r == NULL)
        return;
    free(r->body);
    free(r->content_type);
    memset(r, 0, sizeof *r);
}
