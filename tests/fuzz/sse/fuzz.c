/* fuzz.c — the text/event-stream parser of libkx (common/src/sse.c): LLM providers' streams.
 *
 * Input: byte 0 seeds the split of the stream into feeds, byte 1 picks the event size cap,
 * the rest is the stream. The stream is parsed twice, in one feed and in pieces of 1..16 bytes;
 * both must dispatch the same events (name, data, id) and end with the same status: where a
 * stream is cut must never change what it means. */
#include <stdbool.h>
#include <string.h>

#include "fuzz_util.h"
#include "kx/buf.h"
#include "kx/sse.h"

typedef struct events {
    kx_buf log; /* every event as name \0 data-length data \0 id \0 */
    size_t n;
} events;

static void on_event(const char *event, const char *data, size_t data_len, const char *id,
                     void *arg)
{
    events *ev = arg;
    FUZZ_CHECK(event != NULL && data != NULL && id != NULL);
    FUZZ_CHECK(event[0] != '\0' && data[data_len] == '\0');
    char len[32];
    int n = snprintf(len, sizeof len, "%zu:", data_len);
    FUZZ_CHECK(kx_buf_add(&ev->log, event, strlen(event) + 1) == KX_OK);
    FUZZ_CHECK(kx_buf_add(&ev->log, len, (size_t)n) == KX_OK);
    FUZZ_CHECK(kx_buf_add(&ev->log, data, data_len + 1) == KX_OK);
    FUZZ_CHECK(kx_buf_add(&ev->log, id, strlen(id) + 1) == KX_OK);
    ev->n++;
}

static kx_err parse(const char *s, size_t len, size_t cap, unsigned seed, events *ev)
{
    kx_sse_parser p;
    kx_sse_init(&p, on_event, ev);
    p.max_event_bytes = cap;
    kx_err err = KX_OK;
    if (seed == 0) {
        err = kx_sse_feed(&p, s, len);
    } else {
        size_t at = 0;
        unsigned x = seed;
        while (at < len && err == KX_OK) {
            x = x * 1103515245u + 12345u;
            size_t n = (size_t)((x >> 16) % 16u) + 1;
            if (n > len - at)
                n = len - at;
            err = kx_sse_feed(&p, s + at, n);
            at += n;
        }
    }
    kx_sse_free(&p);
    return err;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    unsigned seed = data[0] | 1u;
    size_t cap = data[1] < 128 ? (size_t)data[1] * 4 + 1 : (size_t)8 << 20;
    const char *s = (const char *)data + 2;
    size_t len = size - 2;

    events whole = {0}, pieces = {0};
    kx_err e1 = parse(s, len, cap, 0, &whole);
    kx_err e2 = parse(s, len, cap, seed, &pieces);
    FUZZ_CHECK(e1 == e2);
    FUZZ_CHECK(e1 == KX_OK || e1 == KX_ERR_PROTOCOL);
    FUZZ_CHECK(whole.n == pieces.n);
    FUZZ_CHECK(whole.log.len == pieces.log.len);
    FUZZ_CHECK(whole.log.len == 0 || memcmp(whole.log.s, pieces.log.s, whole.log.len) == 0);
    kx_buf_free(&whole.log);
    kx_buf_free(&pieces.log);
    return 0;
}
