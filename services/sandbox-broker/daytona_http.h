/* daytona_http.h — the Daytona REST client of the daytona provider (daytona.c): one HTTP call
 * to a Daytona-compatible API (DAYTONA_SERVER_URL) with the API key as a bearer token, on the
 * broker's loop through kx_curlm (no call ever blocks the loop), each with its own deadline,
 * behind one circuit breaker for the whole API.
 *
 * A call ends exactly once with done(resp, arg) on the loop thread, or never when it is
 * cancelled (sb_dt_cancel). What failed is mapped to a kx_err the caller can answer with:
 *   the deadline passed (curl's timeout)            KX_ERR_TIMEOUT      (deadline_exceeded)
 *   connection refused / reset, HTTP 5xx, 401/403,  KX_ERR_UNAVAILABLE  (unavailable)
 *   or the breaker open
 *   HTTP 404                                        KX_ERR_NOT_FOUND
 *   HTTP 409                                        KX_ERR_CONFLICT
 *   other 4xx                                       KX_ERR_INVALID
 * and resp->why says which call, and why, in words; the API key is never in it nor logged.
 *
 * Ownership: the client owns every call in flight; a resp and its body live only during done.
 * Loop thread only. */
#ifndef SB_DAYTONA_HTTP_H
#define SB_DAYTONA_HTTP_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#include "kx/err.h"
#include "kx/loop.h"

typedef struct sb_dt_client sb_dt_client;
typedef struct sb_dt_call sb_dt_call;

typedef struct sb_dt_resp {
    kx_err err;       /* KX_OK for HTTP 2xx */
    long status;      /* HTTP status, 0 when none came */
    const char *body; /* the response body (NUL-terminated; may be "") */
    size_t len;
    json_t *json;  /* the body parsed as JSON, or NULL (borrowed: freed after done) */
    char why[400]; /* when err != KX_OK: "daytona: GET /sandbox/..: ..." */
} sb_dt_resp;

typedef void (*sb_dt_done)(const sb_dt_resp *resp, void *arg);

/* url: the API's base ("https://app.daytona.io/api", no trailing slash); key: the bearer token.
 * breaker_failures: failures in a row that open the breaker (base 1 s, at most 30 s). */
kx_err sb_dt_client_new(kx_loop *loop, const char *url, const char *key, int breaker_failures,
                        sb_dt_client **out);
/* Cancels (no callbacks) what is in flight and frees. NULL is a no-op. */
void sb_dt_client_free(sb_dt_client *c);

/* Starts method (GET, POST, DELETE) on url + path ("/sandbox/<id>/start?x=y": the caller
 * escapes the query). body (may be NULL) is sent as content_type (NULL: application/json);
 * upload_path, when not NULL, makes the body a multipart/form-data part "file" instead (the
 * toolbox upload). timeout_ms bounds the whole call. done runs later (never inside this
 * call), even on an early failure (breaker open, no time left): then on the next loop turn.
 * NULL only when out of memory before anything started: done will not run. */
sb_dt_call *sb_dt_request(sb_dt_client *c, const char *method, const char *path, const void *body,
                          size_t len, const char *upload_path, int64_t timeout_ms, sb_dt_done done,
                          void *arg);
/* Stops a call in flight; its done will not run. */
void sb_dt_cancel(const sb_dt_client *c, sb_dt_call *call);

/* Percent-encodes s for a URL query into out (RFC 3986 unreserved kept, '/' kept). */
void sb_dt_escape(const char *s, char *out, size_t cap);

#endif
