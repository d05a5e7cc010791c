/* events.c — payload builders and the RunEvent publisher (see events.h). */
#include "events.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kx/buf.h"
#include "kx/json.h"
#include "kx/log.h"
#include "kx/time.h"

/* The inner texts (a row's content and metadata printed before they are escaped into the
 * row) are printed into one buffer per thread, kept between events: an event costs one
 * allocation (its own text, grown by doubling), not a jansson tree and three copies. A buffer
 * grown past SCRATCH_KEEP by a large row is let go after it. */
#define SCRATCH_KEEP (256u * 1024u)
static _Thread_local kx_buf scratch;

static void scratch_done(void)
{
    if (scratch.cap > SCRATCH_KEEP)
        kx_buf_free(&scratch);
}

/* Appends the Python text of v as a JSON string literal (the "content": "<text>" form). */
static void put_text_of(kx_buf *b, const json_t *v)
{
    kx_buf_clear(&scratch);
    kx_json_put_py(&scratch, v);
    if (scratch.oom) {
        b->oom = true;
        return;
    }
    kx_json_put_py_str(b, scratch.s, scratch.len);
}

static void put_str(kx_buf *b, const char *s)
{
    kx_json_put_py_str(b, s, strlen(s));
}

/* The text of b (malloc'd) and b reset; NULL when anything ran out of memory. */
static char *finish(kx_buf *b)
{
    scratch_done();
    return kx_buf_take(b);
}

/* The row's JSON text for these content and metadata (see events_row_json); *len its length.
 * Written directly (no jansson tree), byte for byte what json_pack + kx_json_dumps_py made. */
static char *row_text(const char *message_id, const char *thread_id, const char *type, bool is_llm,
                      const json_t *content, const json_t *metadata, const char *created_at,
                      const char *updated_at, size_t *len)
{
    if (message_id == NULL || thread_id == NULL || type == NULL || content == NULL ||
        metadata == NULL || created_at == NULL || updated_at == NULL)
        return NULL;
    kx_buf b = KX_BUF_INIT;
    kx_buf_reserve(&b, 512);
    kx_buf_str(&b, "{\"message_id\": ");
    put_str(&b, message_id);
    kx_buf_str(&b, ", \"thread_id\": ");
    put_str(&b, thread_id);
    kx_buf_str(&b, ", \"type\": ");
    put_str(&b, type);
    kx_buf_str(&b,
               is_llm ? ", \"is_llm_message\": true, \"content\": "
                      : ", \"is_llm_message\": false, \"content\": ");
    put_text_of(&b, content);
    kx_buf_str(&b, ", \"metadata\": ");
    put_text_of(&b, metadata);
    kx_buf_str(&b, ", \"created_at\": ");
    put_str(&b, created_at);
    kx_buf_str(&b, ", \"updated_at\": ");
    put_str(&b, updated_at);
    kx_buf_add(&b, "}", 1);
    *len = b.len;
    return finish(&b);
}

/* Where a cut starts or ends: the largest n <= want on a UTF-8 boundary of s. */
static size_t utf8_floor(const char *s, size_t want)
{
    while (want > 0 && ((unsigned char)s[want] & 0xC0) == 0x80)
        want--;
    return want;
}

static json_t *cap_string(const json_t *v, size_t max, const char *message_id)
{
    size_t len = json_string_length(v);
    const char *s = json_string_value(v);
    if (len <= max)
        return json_incref((json_t *)v);
    size_t head = utf8_floor(s, max / 2);
    size_t tail_start = utf8_floor(s, len - max / 2);
    if (tail_start < head)
        tail_start = head;
    char note[200];
    int nl = snprintf(note, sizeof note,
                      "\n\n[... %zu bytes cut from the middle to fit the event stream; message "
                      "%s has all of it ...]\n\n",
                      tail_start - head, message_id ? message_id : "(unsaved)");
    size_t out_len = head + (size_t)nl + (len - tail_start);
    char *out = malloc(out_len + 1);
    if (out == NULL)
        return NULL;
    memcpy(out, s, head);
    memcpy(out + head, note, (size_t)nl);
    memcpy(out + head + (size_t)nl, s + tail_start, len - tail_start);
    out[out_len] = '\0';
    json_t *r = json_stringn_nocheck(out, out_len);
    free(out);
    return r;
}

json_t *events_cap_strings(const json_t *v, size_t max, const char *message_id)
{
    if (json_is_string(v))
        return cap_string(v, max, message_id);
    if (json_is_object(v)) {
        json_t *o = json_object();
        const char *k;
        json_t *x;
        json_object_foreach((json_t *)v, k, x)
        {
            json_t *c = events_cap_strings(x, max, message_id);
            if (c == NULL || o == NULL || json_object_set_new(o, k, c) != 0) {
                json_decref(o);
                return NULL;
            }
        }
        return o;
    }
    if (json_is_array(v)) {
        json_t *a = json_array();
        size_t i;
        json_t *x;
        json_array_foreach(v, i, x)
        {
            json_t *c = events_cap_strings(x, max, message_id);
            if (c == NULL || a == NULL || json_array_append_new(a, c) != 0) {
                json_decref(a);
                return NULL;
            }
        }
        return a;
    }
    return json_incref((json_t *)v); /* numbers, booleans, null: shared, never changed */
}

char *events_row_json(const char *message_id, const char *thread_id, const char *type, bool is_llm,
                      const json_t *content, const json_t *metadata, const char *created_at,
                      const char *updated_at)
{
    size_t len = 0;
    char *out = row_text(message_id, thread_id, type, is_llm, content, metadata, created_at,
                         updated_at, &len);
    /* Too large for the bus: cut the long strings, keeping less each time, until it fits. */
    for (size_t max = 256u * 1024u; out != NULL && len > EVENTS_INLINE_MAX && max >= 512;
         max /= 2) {
        json_t *c = events_cap_strings(content, max, message_id);
        json_t *m = events_cap_strings(metadata, max, message_id);
        free(out);
        out = c && m
            ? row_text(message_id, thread_id, type, is_llm, c, m, created_at, updated_at, &len)
            : NULL;
        json_decref(c);
        json_decref(m);
    }
    return out;
}

char *events_chunk_json(uint64_t sequence, const char *thread_id, const char *delta, size_t len,
                        const char *thread_run_id)
{
    if (thread_id == NULL || delta == NULL || thread_run_id == NULL)
        return NULL;
    char now[48];
    kx_time_iso(now, sizeof now, kx_now_us());
    char num[32];
    snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT, (json_int_t)sequence);
    kx_buf b = KX_BUF_INIT;
    kx_buf_reserve(&b, 2 * len + 512);
    kx_buf_str(&b, "{\"sequence\": ");
    kx_buf_str(&b, num);
    kx_buf_str(&b, ", \"message_id\": null, \"thread_id\": ");
    put_str(&b, thread_id);
    kx_buf_str(&b, ", \"type\": \"assistant\", \"is_llm_message\": true, \"content\": ");
    /* content: the text of {"role": "assistant", "content": "<delta>"} */
    kx_buf_clear(&scratch);
    kx_buf_str(&scratch, "{\"role\": \"assistant\", \"content\": ");
    kx_json_put_py_str(&scratch, delta, len);
    kx_buf_add(&scratch, "}", 1);
    if (scratch.oom)
        b.oom = true;
    else
        kx_json_put_py_str(&b, scratch.s, scratch.len);
    /* metadata: the text of {"stream_status": "chunk", "thread_run_id": "<T>"} */
    kx_buf_clear(&scratch);
    kx_buf_str(&scratch, "{\"stream_status\": \"chunk\", \"thread_run_id\": ");
    put_str(&scratch, thread_run_id);
    kx_buf_add(&scratch, "}", 1);
    kx_buf_str(&b, ", \"metadata\": ");
    if (scratch.oom)
        b.oom = true;
    else
        kx_json_put_py_str(&b, scratch.s, scratch.len);
    kx_buf_str(&b, ", \"created_at\": ");
    put_str(&b, now);
    kx_buf_str(&b, ", \"updated_at\": ");
    put_str(&b, now);
    kx_buf_add(&b, "}", 1);
    return finish(&b);
}

char *events_status_json(const char *status, const char *message)
{
    if (status == NULL || message == NULL)
        return NULL;
    kx_buf b = KX_BUF_INIT;
    kx_buf_str(&b, "{\"type\": \"status\", \"status\": ");
    put_str(&b, status);
    kx_buf_str(&b, ", \"message\": ");
    put_str(&b, message);
    kx_buf_add(&b, "}", 1);
    return kx_buf_take(&b);
}

char *events_too_large_json(uint64_t seq, const char *payload, size_t len)
{
    json_t *row = json_loadb(payload, len, 0, NULL);
    const json_t *mid = json_object_get(row, "message_id");
    const json_t *tid = json_object_get(row, "thread_id");
    char message[160];
    snprintf(message, sizeof message, "message %llu too large to stream (%zu bytes), fetch it",
             (unsigned long long)seq, len);
    json_t *ev =
        json_pack("{s:s, s:s, s:s, s:O?, s:O?, s:I}", "type", "status", "status", "too_large",
                  "message", message, "message_id", json_is_string(mid) ? mid : NULL, "thread_id",
                  json_is_string(tid) ? tid : NULL, "size", (json_int_t)len);
    json_decref(row);
    char *out = ev ? kx_json_dumps_py(ev) : NULL;
    json_decref(ev);
    return out;
}

kx_err events_publish(publisher *pub, const char *run_id, int64_t epoch, uint64_t seq,
                      Kx__V1__RunEventKind kind, bool terminal, const char *payload_json,
                      const kx_bus_meta *meta)
{
    size_t len = payload_json != NULL ? strlen(payload_json) : 0;
    char *stand_in = NULL;
    if (len > EVENTS_INLINE_MAX) {
        stand_in = events_too_large_json(seq, payload_json, len);
        kx_log(KX_LOG_WARN, run_id, NULL,
               "events: event %llu is %zu bytes, over the %u inline; streamed by reference",
               (unsigned long long)seq, len, EVENTS_INLINE_MAX);
        if (stand_in == NULL)
            return KX_ERR_NOMEM;
        payload_json = stand_in;
    }
    kx_err err = publisher_event(pub, run_id, epoch, seq, kind, terminal, payload_json, meta);
    free(stand_in);
    if (err != KX_OK)
        kx_log(KX_LOG_ERROR, run_id, NULL, "events: could not publish event %llu: %s",
               (unsigned long long)seq, kx_err_str(err));
    return err;
}
