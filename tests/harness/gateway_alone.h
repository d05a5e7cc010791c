/* tests/harness/gateway_alone.h — the gateway on its own against a real nats-server and
 * PostgreSQL (no other service), for tests of the HTTP edge; plus raw-socket HTTP for the
 * requests a well-behaved client library will not send (huge headers, idle connections,
 * bytes on the wire exactly as written).
 *
 * Ownership: kx_th_gw is caller-owned (zero it first); kx_th_gw_stop frees what
 * kx_th_gw_start allocated. Not thread-safe, except kx_th_raw, which any thread may run. */
#ifndef KX_TEST_GATEWAY_ALONE_H
#define KX_TEST_GATEWAY_ALONE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "stack.h"

typedef struct kx_th_gw {
    kx_th_stack s;        /* dir, nats, pg, http_port, base_url, secret are filled */
    pid_t pid;            /* the gateway */
    uint16_t health_port; /* its KX_HEALTH_PORT */
    char log[600];
} kx_th_gw;

/* Starts nats-server, PostgreSQL and the gateway (with env_extra "K=V", NULL-terminated, may be
 * NULL, added to the defaults KX_SSE_PING_S=1, KX_LOG_LEVEL=debug, KX_DRAIN_TIMEOUT_MS=3000; one
 * with a default's key replaces it) and waits until it is ready (its /readyz on the health
 * port). */
kx_err kx_th_gw_start(kx_th_gw *g, const char *prefix, const char *const *env_extra);
/* Stops the gateway (SIGTERM), nats-server and PostgreSQL; on failure prints the gateway log's
 * tail and keeps the temp dir. */
void kx_th_gw_stop(kx_th_gw *g, bool failed);

/* Sends n bytes to 127.0.0.1:port (from source address src, e.g. "127.0.0.2", or NULL) and
 * reads the answer until the peer closes or timeout_ms passes. Returns the HTTP status of the
 * answer (0 when none came) and, if out is not NULL, the whole answer (headers and body,
 * malloc'd, NUL-terminated). */
int kx_th_raw(uint16_t port, const char *src, const char *bytes, size_t n, int64_t timeout_ms,
              char **out);
/* A connected TCP socket to 127.0.0.1:port from src (NULL: any), or -1. */
int kx_th_raw_connect(uint16_t port, const char *src);
/* The body of a raw HTTP answer (after the blank line), or "" when there is none. */
const char *kx_th_raw_body(const char *answer);

/* ---- SSE with event ids, over a raw socket (HTTP/1.0: no chunking, the end is the close) ---- */

typedef struct kx_th_events {
    int status;             /* HTTP status (0: no answer) */
    size_t n;               /* events */
    char **data;            /* each event's data */
    unsigned long long *id; /* each event's id's stream sequence (0 when it had none) */
    char **id_text;         /* each event's id as sent ("" when it had none): "<seq>" or
                               "<seq>.<index>" (an event of a batch message) */
    bool ended;             /* the server closed the stream */
    char *head;             /* the answer's status line and headers */
    char *body;             /* a non-200 answer's body */
} kx_th_events;

/* Opens GET path with the token (may be NULL) and Last-Event-ID (NULL: none), options such as
 * a small receive buffer applied before connecting (rcvbuf > 0). Returns the socket or -1. */
int kx_th_events_open(uint16_t port, const char *path, const char *token,
                      const char *last_event_id, int rcvbuf);
/* Reads from fd until max_events more events (0: no limit), the close, or timeout_ms; appends
 * to out (zero it before the first call), never more than max_events (the rest of what was
 * received is dropped, as by a client that goes away right after its max_events-th event).
 * Closes fd when it returns. */
void kx_th_events_collect(int fd, size_t max_events, int64_t timeout_ms, kx_th_events *out);
void kx_th_events_free(kx_th_events *e);

#endif
