/* chunks.c — coalescing of text deltas into chunk events (see chunks.h). */
#include "chunks.h"

#include <string.h>

#include "kx/utf8.h"

void chunks_init(chunks *c, kx_loop *loop, int64_t ms, size_t bytes, chunks_emit_fn emit,
                 chunks_busy_fn busy, void *arg)
{
    memset(c, 0, sizeof *c);
    c->loop = loop;
    c->ms = ms;
    c->bytes = bytes > CHUNKS_MAX_EVENT ? CHUNKS_MAX_EVENT : bytes;
    c->emit = emit;
    c->busy = busy;
    c->arg = arg;
}

size_t chunks_utf8_cut(const char *s, size_t len, size_t max)
{
    if (len <= max)
        return len;
    size_t n = kx_utf8_floor(s, len, max);
    return n > 0 ? n : max; /* not UTF-8 at all: cut where asked */
}

/* Emits the gathered text in pieces of at most CHUNKS_MAX_EVENT bytes. */
static void emit_all(chunks *c)
{
    size_t off = 0;
    while (off < c->pending.len) {
        size_t n = chunks_utf8_cut(c->pending.s + off, c->pending.len - off, CHUNKS_MAX_EVENT);
        c->emit(c->arg, c->pending.s + off, n);
        off += n;
    }
    c->pending.len = 0;
    c->pending.s[0] = '\0';
}

static void on_timer(kx_loop *loop, void *arg)
{
    chunks *c = arg;
    c->timer = NULL;
    if (c->busy != NULL && c->busy(c->arg) && c->pending.len < CHUNKS_MAX_EVENT) {
        c->timer = kx_loop_timer(c->loop, c->ms > 0 ? c->ms : 10, on_timer, c);
        if (c->timer != NULL)
            return; /* try again later: the text keeps gathering meanwhile */
    }
    emit_all(c);
}

kx_err chunks_add(chunks *c, const char *delta, size_t len)
{
    if (len == 0)
        return KX_OK;
    if (c->ms <= 0 && c->bytes == 0) { /* coalescing off */
        c->emit(c->arg, delta, len);
        return KX_OK;
    }
    if (kx_buf_add(&c->pending, delta, len) != KX_OK) {
        chunks_flush(c);
        c->emit(c->arg, delta, len);
        return KX_ERR_NOMEM;
    }
    bool full = c->bytes > 0 && c->pending.len >= c->bytes;
    bool busy = c->busy != NULL && c->busy(c->arg);
    if ((full && !busy) || c->pending.len >= CHUNKS_MAX_EVENT || c->ms <= 0) {
        chunks_flush(c);
        return KX_OK;
    }
    if (c->timer == NULL) {
        c->timer = kx_loop_timer(c->loop, c->ms, on_timer, c);
        if (c->timer == NULL)
            chunks_flush(c);
    }
    return KX_OK;
}

void chunks_flush(chunks *c)
{
    kx_timer_cancel(c->timer);
    c->timer = NULL;
    if (c->pending.len > 0)
        emit_all(c);
}

void chunks_clear(chunks *c)
{
    kx_timer_cancel(c->timer);
    c->timer = NULL;
    kx_buf_free(&c->pending);
}
