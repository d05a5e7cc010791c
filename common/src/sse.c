/* sse.c — incremental text/event-stream parser following the WHATWG "interpret the event
 * stream" rules, for reading LLM providers' streaming responses.
 *
 * Bytes are split into lines (\r\n, \n or \r; a \r\n split across two feeds counts once).
 * Each line is: empty (dispatch the event), a comment (starts with ':'), or "field: value"
 * (one space after the colon is dropped; a line without a colon is a field with an empty
 * value). Fields: "data" appends value + "\n" to the data buffer, "event" sets the event type,
 * "id" sets the last event id (kept across events; ignored if it contains NUL), "retry" (ASCII
 * digits only) sets p->retry_ms, the reconnection time the server asks for; anything else is
 * ignored. Dispatch drops the last "\n" of the data and calls back,
 * unless the data buffer is empty, then resets data and event type. An event not followed by
 * a blank line when the stream ends is never dispatched. A UTF-8 BOM at the very start is
 * skipped.
 *
 * p->started counts BOM bytes matched at the start of the stream (0..2); 3 means the start is
 * behind us. */
#include "kx/sse.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_MAX_EVENT (8u << 20)
#define BOM_DONE 3

static const unsigned char BOM[3] = {0xEF, 0xBB, 0xBF};

void kx_sse_init(kx_sse_parser *p, kx_sse_cb cb, void *arg)
{
    memset(p, 0, sizeof *p);
    p->cb = cb;
    p->arg = arg;
    p->max_event_bytes = DEFAULT_MAX_EVENT;
    p->retry_ms = -1;
}

void kx_sse_free(kx_sse_parser *p)
{
    free(p->line);
    free(p->data);
    p->line = p->data = NULL;
    p->line_len = p->line_cap = p->data_len = p->data_cap = 0;
}

/* Appends n bytes to a growing buffer (always NUL-terminated). */
static kx_err append(char **buf, size_t *len, size_t *cap, const char *s, size_t n)
{
    if (*len + n + 1 > *cap) {
        size_t nc = *cap == 0 ? 256 : *cap;
        while (*len + n + 1 > nc)
            nc *= 2;
        char *nb = realloc(*buf, nc);
        if (nb == NULL)
            return KX_ERR_NOMEM;
        *buf = nb;
        *cap = nc;
    }
    memcpy(*buf + *len, s, n);
    *len += n;
    (*buf)[*len] = '\0';
    return KX_OK;
}

static void dispatch(kx_sse_parser *p)
{
    if (p->data_len > 0) {
        p->data_len--; /* the "\n" added after the last data line */
        p->data[p->data_len] = '\0';
        p->cb(p->event[0] != '\0' ? p->event : "message", p->data, p->data_len, p->id, p->arg);
    }
    p->data_len = 0;
    p->event[0] = '\0';
}

/* Copies value into a fixed field, cut to fit. */
static void set_field(char *dst, size_t cap, const char *value, size_t n)
{
    if (n >= cap)
        n = cap - 1;
    memcpy(dst, value, n);
    dst[n] = '\0';
}

/* Interprets the complete line in p->line. */
static kx_err process_line(kx_sse_parser *p)
{
    const char *line = p->line != NULL ? p->line : "";
    size_t len = p->line_len;
    if (len == 0) {
        dispatch(p);
        return KX_OK;
    }
    if (line[0] == ':')
        return KX_OK; /* comment (keep-alive) */
    const char *colon = memchr(line, ':', len);
    size_t name_len = colon != NULL ? (size_t)(colon - line) : len;
    const char *value = colon != NULL ? colon + 1 : line + len;
    size_t value_len = (size_t)(line + len - value);
    if (value_len > 0 && value[0] == ' ') {
        value++;
        value_len--;
    }
    if (name_len == 4 && memcmp(line, "data", 4) == 0) {
        if (p->data_len + value_len + 1 > p->max_event_bytes)
            return KX_ERR_PROTOCOL;
        kx_err err = append(&p->data, &p->data_len, &p->data_cap, value, value_len);
        if (err == KX_OK)
            err = append(&p->data, &p->data_len, &p->data_cap, "\n", 1);
        return err;
    }
    if (name_len == 5 && memcmp(line, "event", 5) == 0) {
        set_field(p->event, sizeof p->event, value, value_len);
    } else if (name_len == 2 && memcmp(line, "id", 2) == 0) {
        if (memchr(value, '\0', value_len) == NULL)
            set_field(p->id, sizeof p->id, value, value_len);
    } else if (name_len == 5 && memcmp(line, "retry", 5) == 0 && value_len > 0 && value_len < 10) {
        long ms = 0;
        size_t i = 0;
        for (; i < value_len && value[i] >= '0' && value[i] <= '9'; i++)
            ms = ms * 10 + (value[i] - '0');
        if (i == value_len)
            p->retry_ms = ms;
    }
    return KX_OK; /* unknown fields are ignored */
}

/* Bytes at the start of the stream: skips a BOM, even one split across feeds. Returns how
 * many bytes of buf were consumed as BOM. */
static size_t skip_bom(kx_sse_parser *p, const char *buf, size_t len, kx_err *err)
{
    size_t i = 0;
    *err = KX_OK;
    while (p->started < BOM_DONE && i < len) {
        if ((unsigned char)buf[i] == BOM[p->started]) {
            p->started++;
            i++;
            continue;
        }
        /* Not a BOM after all: the bytes that looked like one are line content. */
        *err = append(&p->line, &p->line_len, &p->line_cap, (const char *)BOM, (size_t)p->started);
        p->started = BOM_DONE;
    }
    return i;
}

kx_err kx_sse_feed(kx_sse_parser *p, const char *buf, size_t len)
{
    kx_err err = KX_OK;
    size_t i = p->started < BOM_DONE ? skip_bom(p, buf, len, &err) : 0;
    if (err != KX_OK)
        return err;
    while (i < len) {
        char c = buf[i];
        if (c == '\n' && p->saw_cr) { /* the \n of a \r\n */
            p->saw_cr = 0;
            i++;
            continue;
        }
        p->saw_cr = 0;
        if (c == '\r' || c == '\n') {
            p->saw_cr = c == '\r';
            err = process_line(p);
            p->line_len = 0;
            if (err != KX_OK)
                return err;
            i++;
            continue;
        }
        /* Copy the run of ordinary bytes at once. */
        size_t j = i;
        while (j < len && buf[j] != '\r' && buf[j] != '\n')
            j++;
        if (p->line_len + (j - i) > p->max_event_bytes)
            return KX_ERR_PROTOCOL;
        err = append(&p->line, &p->line_len, &p->line_cap, buf + i, j - i);
        if (err != KX_OK)
            return err;
        i = j;
    }
    return KX_OK;
}
