/* linebuf.c — line splitting with a length cap (see linebuf.h). Every line is assembled in the
 * buffer (one copy), which keeps the code to one path whatever the pipe's piece sizes. */
#include "linebuf.h"

#include <stdlib.h>
#include <string.h>

void mcp_linebuf_init(mcp_linebuf *lb, size_t max, bool cut_long)
{
    memset(lb, 0, sizeof *lb);
    lb->max = max > 0 ? max : 1;
    lb->cut_long = cut_long;
}

void mcp_linebuf_free(mcp_linebuf *lb)
{
    free(lb->buf);
    memset(lb, 0, sizeof *lb);
}

static kx_err append(mcp_linebuf *lb, const char *data, size_t n)
{
    if (lb->len + n + 1 > lb->cap) {
        size_t cap = lb->cap ? lb->cap : 4096;
        while (cap < lb->len + n + 1)
            cap *= 2;
        char *g = realloc(lb->buf, cap);
        if (g == NULL)
            return KX_ERR_NOMEM;
        lb->buf = g;
        lb->cap = cap;
    }
    memcpy(lb->buf + lb->len, data, n);
    lb->len += n;
    lb->buf[lb->len] = '\0';
    return KX_OK;
}

/* Delivers buf[0, len) as a line (dropping a trailing "\r"); buf must have room for a NUL. */
static void deliver(char *line, size_t len, mcp_line_cb cb, void *arg)
{
    if (len > 0 && line[len - 1] == '\r')
        len--;
    char saved = line[len];
    line[len] = '\0';
    cb(line, len, arg);
    line[len] = saved;
}

kx_err mcp_linebuf_feed(mcp_linebuf *lb, const char *data, size_t len, mcp_line_cb cb,
                        void *arg)
{
    while (len > 0) {
        const char *nl = memchr(data, '\n', len);
        size_t piece = nl ? (size_t)(nl - data) : len;
        if (lb->len + piece > lb->max) {
            if (!lb->cut_long) {
                lb->len = 0;
                return KX_ERR_PROTOCOL;
            }
            size_t room = lb->max - lb->len;   /* fill up to max, deliver, go on */
            kx_err err = append(lb, data, room);
            if (err != KX_OK)
                return err;
            deliver(lb->buf, lb->len, cb, arg);
            lb->len = 0;
            data += room;
            len -= room;
            continue;
        }
        if (nl == NULL) {
            return append(lb, data, piece);
        }
        kx_err err = append(lb, data, piece);
        if (err != KX_OK)
            return err;
        deliver(lb->buf, lb->len, cb, arg);
        lb->len = 0;
        data += piece + 1;
        len -= piece + 1;
    }
    return KX_OK;
}

void mcp_linebuf_flush(mcp_linebuf *lb, mcp_line_cb cb, void *arg)
{
    if (lb->len > 0)
        deliver(lb->buf, lb->len, cb, arg);
    lb->len = 0;
}
