/* linebuf.c — line splitting with a length cap (see linebuf.h). Every line is assembled in a
 * kx_buf (one copy), which keeps the code to one path whatever the pipe's piece sizes. */
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
    kx_buf_free(&lb->line);
    memset(lb, 0, sizeof *lb);
}

static kx_err append(mcp_linebuf *lb, const char *data, size_t n)
{
    kx_err err = kx_buf_add(&lb->line, data, n);
    if (err != KX_OK)
        kx_buf_clear(&lb->line); /* out of memory is not sticky here: drop the line */
    return err;
}

/* Delivers line[0, len) as a line (dropping a trailing "\r"); line[len] must exist. */
static void deliver(char *line, size_t len, mcp_line_cb cb, void *arg)
{
    if (len > 0 && line[len - 1] == '\r')
        len--;
    char saved = line[len];
    line[len] = '\0';
    cb(line, len, arg);
    line[len] = saved;
}

kx_err mcp_linebuf_feed(mcp_linebuf *lb, const char *data, size_t len, mcp_line_cb cb, void *arg)
{
    while (len > 0) {
        const char *nl = memchr(data, '\n', len);
        size_t piece = nl ? (size_t)(nl - data) : len;
        if (lb->line.len + piece > lb->max) {
            if (!lb->cut_long) {
                kx_buf_clear(&lb->line);
                return KX_ERR_PROTOCOL;
            }
            size_t room = lb->max - lb->line.len; /* fill up to max, deliver, go on */
            kx_err err = append(lb, data, room);
            if (err != KX_OK)
                return err;
            deliver(lb->line.s, lb->line.len, cb, arg);
            kx_buf_clear(&lb->line);
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
        deliver(lb->line.s, lb->line.len, cb, arg);
        kx_buf_clear(&lb->line);
        data += piece + 1;
        len -= piece + 1;
    }
    return KX_OK;
}

void mcp_linebuf_flush(mcp_linebuf *lb, mcp_line_cb cb, void *arg)
{
    if (lb->line.len > 0)
        deliver(lb->line.s, lb->line.len, cb, arg);
    kx_buf_clear(&lb->line);
}
