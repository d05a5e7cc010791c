/* preview_proxy.h — the gateway's side of a preview link: one HTTP request carried to a port
 * inside a sandbox through the sandbox-broker's relay (services/sandbox-broker/preview.c).
 *
 * gw_proxy_fetch connects to the relay (127.0.0.1:<port>, from kx.sandbox.preview's check),
 * sends the relay's first line "<project_id> <port> <token>\n", then the request as HTTP/1.0
 * with Connection: close (any method; a body with its Content-Type and Content-Length — the
 * server has already bounded it by KX_MAX_BODY_BYTES), and reads the whole answer — at most max_bytes, within timeout_ms —
 * which gw_proxy_parse turns into a status, a few headers and the body (a chunked body is
 * decoded). Nothing answering (the port has no listener: the relay closes at once) is
 * KX_ERR_UNAVAILABLE; a malformed answer KX_ERR_PROTOCOL; too large KX_ERR_NOMEM; too slow
 * KX_ERR_TIMEOUT — each with why.
 *
 * gw_proxy_parse is pure (tests/fuzz/gateway_proxy_response). Ownership: a gw_proxy_resp's
 * body is malloc'd and the caller's (gw_proxy_resp_free); header values point into it. */
#ifndef GW_PREVIEW_PROXY_H
#define GW_PREVIEW_PROXY_H

#include <stddef.h>
#include <stdint.h>
#include "kx/err.h"

#define GW_PROXY_MAX_HEADERS 16

typedef struct gw_proxy_resp {
    unsigned int status;
    const char *names[GW_PROXY_MAX_HEADERS]; /* the headers passed on (Content-Type, ...) */
    const char *values[GW_PROXY_MAX_HEADERS];
    size_t nheaders;
    char *body; /* the answer's body (NUL-terminated, may contain NULs) */
    size_t body_len;
    char *raw; /* the whole answer as read (owns the header strings) */
} gw_proxy_resp;

/* Parses a whole HTTP/1.x answer (raw, len bytes; modified in place). KX_ERR_PROTOCOL with why
 * when it is not one. On KX_OK out->body is a malloc'd copy; the header values
 * point into raw (keep it until done). */
kx_err gw_proxy_parse(char *raw, size_t len, gw_proxy_resp *out, char *why, size_t whylen);

/* The request to carry. Strings are borrowed for the call. */
typedef struct gw_proxy_req {
    const char *method;       /* GET, POST, ... as the browser sent it */
    const char *path_query;   /* "/..." as asked below the preview prefix */
    int port;                 /* in the sandbox */
    const char *accept;       /* may be NULL */
    const char *content_type; /* may be NULL */
    const char *body;         /* body_len bytes (may contain NULs); NULL: none */
    size_t body_len;
} gw_proxy_req;

/* One request through the relay (see above). */
kx_err gw_proxy_fetch(const char *relay, const char *preamble, const gw_proxy_req *rq,
                      size_t max_bytes, int64_t timeout_ms, gw_proxy_resp *out, char *why,
                      size_t whylen);

void gw_proxy_resp_free(gw_proxy_resp *r);

#endif
