/* kx/sse.h — incremental parser for text/event-stream (WHATWG "server-sent events").
 *
 * Feed it bytes as they arrive, in any split; it calls back once per dispatched event with the
 * event name ("message" when none), the data (lines joined with "\n") and the last id.
 * Handles \n, \r and \r\n line ends, comments (":"), a leading BOM. A separate function so that
 * a fuzzer can drive it. Not thread-safe; one parser per stream. */
#ifndef KX_SSE_H
#define KX_SSE_H

#include <stddef.h>
#include "kx/err.h"

typedef void (*kx_sse_cb)(const char *event, const char *data, size_t data_len, const char *id,
                          void *arg);

typedef struct kx_sse_parser {
    kx_sse_cb cb;
    void *arg;
    char *line;
    size_t line_len, line_cap;
    char *data;
    size_t data_len, data_cap;
    char event[64];
    char id[128];
    int saw_cr;
    int started;
    size_t max_event_bytes; /* an event larger than this is KX_ERR_PROTOCOL (default 8 MiB) */
    long retry_ms;          /* the last "retry" field (reconnection time), -1 if none */
} kx_sse_parser;

void kx_sse_init(kx_sse_parser *p, kx_sse_cb cb, void *arg);
/* KX_ERR_PROTOCOL when an event exceeds max_event_bytes, KX_ERR_NOMEM on OOM. */
kx_err kx_sse_feed(kx_sse_parser *p, const char *buf, size_t len);
void kx_sse_free(kx_sse_parser *p);

#endif
