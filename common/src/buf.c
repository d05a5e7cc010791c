/* buf.c — the growable byte buffer of kx/buf.h. */
#include "kx/buf.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MIN_CAP 64

kx_err kx_buf_reserve(kx_buf *b, size_t extra)
{
    if (b->oom)
        return KX_ERR_NOMEM;
    if (extra > SIZE_MAX - b->len - 1) {
        b->oom = true;
        return KX_ERR_NOMEM;
    }
    size_t need = b->len + extra + 1; /* + the NUL */
    if (need <= b->cap)
        return KX_OK;
    size_t cap = b->cap ? b->cap : MIN_CAP;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    char *s = realloc(b->s, cap);
    if (s == NULL) {
        b->oom = true;
        return KX_ERR_NOMEM;
    }
    b->s = s;
    b->cap = cap;
    return KX_OK;
}

kx_err kx_buf_add(kx_buf *b, const void *data, size_t n)
{
    if (b->oom)
        return KX_ERR_NOMEM;
    if (b->max > 0 && (n > b->max || b->len > b->max - n))
        return KX_ERR_INVALID;
    kx_err err = kx_buf_reserve(b, n);
    if (err != KX_OK)
        return err;
    if (n > 0)
        memcpy(b->s + b->len, data, n);
    b->len += n;
    b->s[b->len] = '\0';
    return KX_OK;
}

kx_err kx_buf_str(kx_buf *b, const char *s)
{
    return kx_buf_add(b, s, strlen(s));
}

kx_err kx_buf_printf(kx_buf *b, const char *fmt, ...)
{
    if (b->oom)
        return KX_ERR_NOMEM;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return KX_ERR_INVALID;
    if (b->max > 0 && ((size_t)n > b->max || b->len > b->max - (size_t)n))
        return KX_ERR_INVALID;
    kx_err err = kx_buf_reserve(b, (size_t)n);
    if (err != KX_OK)
        return err;
    va_start(ap, fmt);
    vsnprintf(b->s + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return KX_OK;
}

void kx_buf_consume(kx_buf *b, size_t n)
{
    if (n >= b->len) {
        b->len = 0;
    } else {
        memmove(b->s, b->s + n, b->len - n);
        b->len -= n;
    }
    if (b->s != NULL)
        b->s[b->len] = '\0';
}

void kx_buf_clear(kx_buf *b)
{
    b->len = 0;
    b->oom = false;
    if (b->s != NULL)
        b->s[0] = '\0';
}

char *kx_buf_take(kx_buf *b)
{
    if (b->oom) {
        kx_buf_free(b);
        return NULL;
    }
    char *s = b->s != NULL ? b->s : strdup("");
    size_t max = b->max;
    memset(b, 0, sizeof *b);
    b->max = max;
    return s;
}

void kx_buf_free(kx_buf *b)
{
    size_t max = b->max;
    free(b->s);
    memset(b, 0, sizeof *b);
    b->max = max;
}
