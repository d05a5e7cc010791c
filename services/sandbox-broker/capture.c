/* capture.c — head + tail of an output stream, the rest spilled to the workspace (capture.h). */
#include "capture.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void sb_capture_init(sb_capture *c, const char *stream, size_t keep, uint64_t spill_max,
                     sb_spill_open_fn spill_open, void *spill_arg)
{
    memset(c, 0, sizeof *c);
    c->stream = stream;
    c->head_max = keep / 2;
    c->tail_max = keep - c->head_max;
    c->spill_open = spill_open;
    c->spill_arg = spill_arg;
    c->spill_fd = -1;
    c->spill_max = spill_max;
}

static void spill_write(sb_capture *c, const char *data, size_t n)
{
    if (c->spill_fd < 0 || c->spilled >= c->spill_max)
        return;
    if (n > c->spill_max - c->spilled)
        n = (size_t)(c->spill_max - c->spilled);
    while (n > 0) {
        ssize_t w = write(c->spill_fd, data, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) { /* disk full, file size limit: keep what was written */
            close(c->spill_fd);
            c->spill_fd = -1;
            return;
        }
        c->spilled += (uint64_t)w;
        data += w;
        n -= (size_t)w;
    }
}

/* First overflow: open the spill file and write what the stream said so far. */
static void spill_start(sb_capture *c)
{
    c->spill_tried = true;
    if (c->spill_open == NULL || c->spill_max == 0)
        return;
    c->spill_fd = c->spill_open(c->spill_arg, c->stream, c->spill_path, sizeof c->spill_path);
    if (c->spill_fd < 0)
        return;
    spill_write(c, c->head.s ? c->head.s : "", c->head.len);
    /* The ring holds everything after the head so far (it has not wrapped yet). */
    spill_write(c, c->tail ? c->tail : "", c->tail_len);
}

static void ring_add(sb_capture *c, const char *data, size_t n)
{
    if (c->tail_max == 0)
        return;
    if (n >= c->tail_max) {
        memcpy(c->tail, data + n - c->tail_max, c->tail_max);
        c->tail_len = c->tail_max;
        c->tail_pos = 0;
        return;
    }
    size_t first = c->tail_max - c->tail_pos;
    if (first > n)
        first = n;
    memcpy(c->tail + c->tail_pos, data, first);
    memcpy(c->tail, data + first, n - first);
    c->tail_pos = (c->tail_pos + n) % c->tail_max;
    c->tail_len = c->tail_len + n > c->tail_max ? c->tail_max : c->tail_len + n;
}

void sb_capture_add(sb_capture *c, const char *data, size_t n)
{
    c->total += n;
    if (c->head.len < c->head_max) {
        size_t k = c->head_max - c->head.len;
        if (k > n)
            k = n;
        (void)kx_buf_add(&c->head, data, k);
        data += k;
        n -= k;
    }
    if (n == 0)
        return;
    if (c->tail == NULL) {
        c->tail = malloc(c->tail_max ? c->tail_max : 1);
        if (c->tail == NULL)
            return; /* out of memory: the count still says what was cut */
    }
    bool overflows = c->tail_len + n > c->tail_max;
    if (overflows && !c->spill_tried)
        spill_start(c);
    if (c->spill_tried)
        spill_write(c, data, n);
    ring_add(c, data, n);
}

bool sb_capture_cut(const sb_capture *c)
{
    return c->total > (uint64_t)c->head.len + c->tail_len;
}

char *sb_capture_text(const sb_capture *c, size_t *len)
{
    kx_buf out = KX_BUF_INIT;
    (void)kx_buf_add(&out, c->head.s ? c->head.s : "", c->head.len);
    if (sb_capture_cut(c)) {
        uint64_t cut = c->total - c->head.len - c->tail_len;
        (void)kx_buf_printf(&out,
                            "\n[... %llu bytes of %s cut (%llu in all; the first %zu and "
                            "the last %zu are shown) ... ",
                            (unsigned long long)cut, c->stream, (unsigned long long)c->total,
                            c->head.len, c->tail_len);
        if (c->spilled == c->total)
            (void)kx_buf_printf(&out, "the full output is in %s]\n", c->spill_path);
        else if (c->spilled > 0)
            (void)kx_buf_printf(&out, "the first %llu bytes are in %s (KX_SANDBOX_SPILL_MAX)]\n",
                                (unsigned long long)c->spilled, c->spill_path);
        else
            (void)kx_buf_printf(&out, "the full output could not be saved]\n");
    }
    if (c->tail_len > 0 && c->tail_len < c->tail_max) {
        (void)kx_buf_add(&out, c->tail, c->tail_len); /* not wrapped: oldest at 0 */
    } else if (c->tail_len > 0) {
        (void)kx_buf_add(&out, c->tail + c->tail_pos, c->tail_max - c->tail_pos);
        (void)kx_buf_add(&out, c->tail, c->tail_pos);
    }
    *len = out.len;
    return kx_buf_take(&out);
}

void sb_capture_free(sb_capture *c)
{
    kx_buf_free(&c->head);
    free(c->tail);
    c->tail = NULL;
    if (c->spill_fd >= 0)
        close(c->spill_fd);
    c->spill_fd = -1;
}
