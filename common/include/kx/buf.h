/* kx/buf.h — a growable byte buffer, always NUL-terminated, for building bodies and messages
 * and for collecting bytes as they arrive (pipes, sockets, HTTP bodies).
 *
 * Growth doubles the capacity. Out of memory is sticky: the failing call returns KX_ERR_NOMEM,
 * sets b->oom and leaves the contents as they were; every later append is then a no-op that
 * returns KX_ERR_NOMEM too, so a builder may append freely and check once at the end.
 * An optional limit (b->max, 0 = none) refuses an append that would make len exceed it, with
 * KX_ERR_INVALID (not sticky) — for input from outside.
 *
 * Ownership: the struct is the caller's (on the stack or inside another struct, zeroed or
 * KX_BUF_INIT); its memory is freed by kx_buf_free or handed over by kx_buf_take. Not
 * thread-safe. */
#ifndef KX_BUF_H
#define KX_BUF_H

#include <stdbool.h>
#include <stddef.h>
#include "kx/err.h"

typedef struct kx_buf {
    char *s; /* NULL until the first append; then NUL-terminated, s[len] == '\0' */
    size_t len;
    size_t cap;
    size_t max; /* 0: no limit */
    bool oom;
} kx_buf;

#define KX_BUF_INIT          \
    {                        \
        NULL, 0, 0, 0, false \
    }

kx_err kx_buf_add(kx_buf *b, const void *data, size_t n);
kx_err kx_buf_str(kx_buf *b, const char *s);
kx_err kx_buf_printf(kx_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Makes room for extra more bytes without changing the contents. */
kx_err kx_buf_reserve(kx_buf *b, size_t extra);
/* Drops the first n bytes (n >= len empties it); keeps the memory. */
void kx_buf_consume(kx_buf *b, size_t n);
/* len = 0, keeps the memory and the limit; clears oom. */
void kx_buf_clear(kx_buf *b);
/* The contents as a malloc'd string the caller frees ("" when empty), and the buffer is reset;
 * NULL if the buffer ran out of memory at any point (then it is freed). */
char *kx_buf_take(kx_buf *b);
/* Frees the memory and resets everything but the limit. */
void kx_buf_free(kx_buf *b);

#endif
