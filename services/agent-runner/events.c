/* events.c — payload builders and the RunEvent publisher (see events.h). */
#include "events.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kx/buf.h"
#include "kx/json.h"
#include "kx/log.h"
#include "kx/time.h"
#include "kx/utf8.h"

/* The inner texts (a row's content and metadata printed before they are escaped into the
 * row) and the row itself are printed into two buffers per thread, kept between events: an
 * event costs one allocation of its exact size (the row's copy handed to the caller), not a
 * jansson tree and three copies, nor a chain of reallocations as the row grows. A buffer grown
 * past SCRATCH_KEEP by a large row is let go after it. */
#define SCRATCH_KEEP (256u * 1024u)
static _Thread_local kx_buf scratch;
static _Thread_local kx_buf rowbuf;

static void scratch_done(void)
{
    if (scratch.cap > SCRATCH_KEEP)
        kx_buf_free(&scratch);
    if (rowbuf.cap > SCRATCH_KEEP)
        kx_buf_free(&rowbuf);
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

/* A malloc'd copy of the row buffer's text (b stays, cleared, for the next row); NULL when
 * anything ran out of memory. */
static char *finish_row(kx_buf *b)
{
    char *out = b->oom ? NULL : malloc(b->len + 1);
    if (out != NULL) {
        memcpy(out, b->s, b->len);
        out[b->len] = '\0';
    }
    kx_buf_clear(b);
    scratch_done();
    return out;
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
    kx_buf *b = &rowbuf;
    kx_buf_clear(b);
    kx_buf_reserve(b, 512);
    kx_buf_str(b, "{\"message_id\": ");
    put_str(b, message_id);
    kx_buf_str(b, ", \"thread_id\": ");
    put_str(b, thread_id);
    kx_buf_str(b, ", \"type\": ");
    put_str(b, type);
    kx_buf_str(b,
               is_llm ? ", \"is_llm_message\": true, \"content\": "
                      : ", \"is_llm_message\": false, \"content\": ");
    put_text_of(b, content);
    kx_buf_str(b, ", \"metadata\": ");
    put_text_of(b, metadata);
    kx_buf_str(b, ", \"created_at\": ");
    put_str(b, created_at);
    kx_buf_str(b, ", \"updated_at\": ");
    put_str(b, updated_at);
    kx_buf_add(b, "}", 1);
    *len = b->len;
    return finish_row(b);
}

static json_t *cap_string(const json_t *v, size_t max, const char *message_id)
{
    size_t len = json_string_length(v);
    const char *s = json_string_value(v);
    if (len <= max)
        return json_incref((json_t *)v);
    size_t head = kx_utf8_floor(s, len, max / 2);
    size_t tail_start = kx_utf8_floor(s, len, len - max / 2);
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

/* ---- batches ---- */

static kx_err send_pub(void *arg, const Kx__V1__RunEvent *m, const kx_bus_meta *meta)
{
    return publisher_publish(arg, m, meta);
}

void events_batch_begin(events_batch *b, events_send_fn send, void *send_arg, const char *run_id,
                        int64_t epoch, const kx_bus_meta *meta)
{
    memset(b, 0, sizeof *b);
    b->send = send;
    b->send_arg = send_arg;
    b->evs = b->inline_evs;
    b->ptrs = b->inline_ptrs;
    b->cap = EVENTS_BATCH_INLINE;
    snprintf(b->run_id, sizeof b->run_id, "%s", run_id);
    b->epoch = epoch;
    if (meta != NULL) {
        b->meta = *meta;
        b->has_meta = true;
    }
}

void events_batch_begin_pub(events_batch *b, publisher *pub, const char *run_id, int64_t epoch,
                            const kx_bus_meta *meta)
{
    events_batch_begin(b, send_pub, pub, run_id, epoch, meta);
}

/* The bytes a length-delimited field of len bytes takes (tag, length, value). */
static size_t field_size(size_t len)
{
    size_t n = 2; /* a one-byte tag and at least one byte of length */
    for (size_t v = len >> 7; v != 0; v >>= 7)
        n++;
    return n + len;
}

static void drop_entries(events_batch *b)
{
    for (size_t i = 0; i < b->n; i++)
        free(b->evs[i].payload_json);
    b->n = 0;
    b->bytes = 0;
}

kx_err events_batch_flush(events_batch *b)
{
    if (b->n == 0)
        return KX_OK;
    kx_err err;
    const kx_bus_meta *meta = b->has_meta ? &b->meta : NULL;
    if (b->n == 1) {
        err = b->send(b->send_arg, &b->evs[0], meta);
    } else {
        const Kx__V1__RunEvent *last = &b->evs[b->n - 1];
        Kx__V1__RunEvent m = KX__V1__RUN_EVENT__INIT;
        m.run_id = b->run_id;
        m.lease_epoch = last->lease_epoch;
        m.seq = last->seq;
        m.kind = last->kind;
        m.terminal = last->terminal;
        for (size_t i = 0; i < b->n; i++)
            b->ptrs[i] = &b->evs[i];
        m.n_events = b->n;
        m.events = b->ptrs;
        err = b->send(b->send_arg, &m, meta);
    }
    if (err != KX_OK)
        kx_log(KX_LOG_ERROR, b->run_id, NULL, "events: could not publish events %llu-%llu: %s",
               (unsigned long long)b->evs[0].seq, (unsigned long long)b->evs[b->n - 1].seq,
               kx_err_str(err));
    b->messages++;
    drop_entries(b);
    return err;
}

kx_err events_batch_add(events_batch *b, uint64_t seq, Kx__V1__RunEventKind kind, bool terminal,
                        char *payload_json)
{
    size_t len = payload_json != NULL ? strlen(payload_json) : 0;
    if (len > EVENTS_INLINE_MAX) {
        char *stand_in = events_too_large_json(seq, payload_json, len);
        kx_log(KX_LOG_WARN, b->run_id, NULL,
               "events: event %llu is %zu bytes, over the %u inline; streamed by reference",
               (unsigned long long)seq, len, EVENTS_INLINE_MAX);
        free(payload_json);
        if (stand_in == NULL)
            return KX_ERR_NOMEM;
        payload_json = stand_in;
    }
    if (b->n == b->cap) {
        size_t cap = b->cap * 2;
        bool inl = b->evs == b->inline_evs;
        Kx__V1__RunEvent *evs = realloc(inl ? NULL : b->evs, cap * sizeof *evs);
        if (evs != NULL) {
            if (inl)
                memcpy(evs, b->evs, b->n * sizeof *evs);
            b->evs = evs;
        }
        bool inl_ptrs = b->ptrs == b->inline_ptrs; /* the entries' pointers: set at flush */
        Kx__V1__RunEvent **ptrs =
            evs != NULL ? realloc(inl_ptrs ? NULL : b->ptrs, cap * sizeof *ptrs) : NULL;
        if (ptrs == NULL) {
            kx_log(KX_LOG_ERROR, b->run_id, NULL,
                   "events: out of memory batching event %llu; not published",
                   (unsigned long long)seq);
            free(payload_json);
            return KX_ERR_NOMEM;
        }
        b->ptrs = ptrs;
        b->cap = cap;
    }
    Kx__V1__RunEvent *ev = &b->evs[b->n];
    *ev = (Kx__V1__RunEvent)KX__V1__RUN_EVENT__INIT;
    ev->run_id = b->run_id;
    ev->lease_epoch = b->epoch;
    ev->seq = seq;
    ev->kind = kind;
    ev->terminal = terminal;
    ev->payload_json = payload_json != NULL ? payload_json : strdup("");
    if (ev->payload_json == NULL)
        return KX_ERR_NOMEM;
    size_t size = field_size(kx__v1__run_event__get_packed_size(ev));
    if (b->n > 0 && b->bytes + size > EVENTS_BATCH_MAX) {
        Kx__V1__RunEvent keep = *ev; /* flush frees the entries before it, not this one */
        events_batch_flush(b);
        b->evs[0] = keep;
    }
    b->n++;
    b->bytes += size;
    return KX_OK;
}

kx_err events_batch_end(events_batch *b)
{
    kx_err err = events_batch_flush(b);
    if (b->evs != b->inline_evs)
        free(b->evs);
    if (b->ptrs != b->inline_ptrs)
        free(b->ptrs);
    b->evs = b->inline_evs;
    b->ptrs = b->inline_ptrs;
    b->cap = EVENTS_BATCH_INLINE;
    return err;
}

kx_err events_publish(publisher *pub, const char *run_id, int64_t epoch, uint64_t seq,
                      Kx__V1__RunEventKind kind, bool terminal, const char *payload_json,
                      const kx_bus_meta *meta)
{
    char *copy = strdup(payload_json != NULL ? payload_json : "");
    if (copy == NULL)
        return KX_ERR_NOMEM;
    events_batch b;
    events_batch_begin_pub(&b, pub, run_id, epoch, meta);
    kx_err err = events_batch_add(&b, seq, kind, terminal, copy);
    kx_err err2 = events_batch_end(&b);
    return err != KX_OK ? err : err2;
}
