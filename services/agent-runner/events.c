/* events.c — payload builders and the RunEvent publisher (see events.h). */
#include "events.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kx/json.h"
#include "kx/log.h"
#include "kx/time.h"

/* json_string of a JSON text (the Python form of v); NULL on OOM. */
static json_t *as_json_text(const json_t *v)
{
    char *text = kx_json_dumps_py(v);
    if (text == NULL)
        return NULL;
    json_t *s = json_string(text);
    free(text);
    return s;
}

static char *dump_and_free(json_t *obj)
{
    char *out = obj ? kx_json_dumps_py(obj) : NULL;
    json_decref(obj);
    return out;
}

char *events_row_json(const char *message_id, const char *thread_id, const char *type, bool is_llm,
                      const json_t *content, const json_t *metadata, const char *created_at,
                      const char *updated_at)
{
    json_t *c = as_json_text(content);
    json_t *m = as_json_text(metadata);
    json_t *row = NULL;
    if (c != NULL && m != NULL)
        row = json_pack("{s:s, s:s, s:s, s:b, s:O, s:O, s:s, s:s}", "message_id", message_id,
                        "thread_id", thread_id, "type", type, "is_llm_message", is_llm, "content",
                        c, "metadata", m, "created_at", created_at, "updated_at", updated_at);
    json_decref(c);
    json_decref(m);
    return dump_and_free(row);
}

char *events_chunk_json(uint64_t sequence, const char *thread_id, const char *delta, size_t len,
                        const char *thread_run_id)
{
    char now[48];
    kx_time_iso(now, sizeof now, kx_now_us());
    json_t *content = json_pack("{s:s, s:s%}", "role", "assistant", "content", delta, len);
    json_t *metadata =
        json_pack("{s:s, s:s}", "stream_status", "chunk", "thread_run_id", thread_run_id);
    json_t *c = content ? as_json_text(content) : NULL;
    json_t *m = metadata ? as_json_text(metadata) : NULL;
    json_t *ev = NULL;
    if (c != NULL && m != NULL)
        ev = json_pack("{s:I, s:n, s:s, s:s, s:b, s:O, s:O, s:s, s:s}", "sequence",
                       (json_int_t)sequence, "message_id", "thread_id", thread_id, "type",
                       "assistant", "is_llm_message", 1, "content", c, "metadata", m, "created_at",
                       now, "updated_at", now);
    json_decref(content);
    json_decref(metadata);
    json_decref(c);
    json_decref(m);
    return dump_and_free(ev);
}

char *events_status_json(const char *status, const char *message)
{
    return dump_and_free(
        json_pack("{s:s, s:s, s:s}", "type", "status", "status", status, "message", message));
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
    return dump_and_free(ev);
}

static kx_err publish_one(kx_bus *bus, const char *subject, const char *run_id, int64_t epoch,
                          uint64_t seq, Kx__V1__RunEventKind kind, bool terminal,
                          const char *payload_json, const kx_bus_meta *meta)
{
    Kx__V1__RunEvent ev = KX__V1__RUN_EVENT__INIT;
    ev.run_id = (char *)run_id;
    ev.lease_epoch = epoch;
    ev.seq = seq;
    ev.kind = kind;
    ev.terminal = terminal;
    ev.payload_json = (char *)payload_json;
    return kx_bus_js_publish_pb_async(bus, subject, &ev.base, meta);
}

kx_err events_publish(kx_bus *bus, const char *run_id, int64_t epoch, uint64_t seq,
                      Kx__V1__RunEventKind kind, bool terminal, const char *payload_json,
                      const kx_bus_meta *meta)
{
    char subject[128];
    snprintf(subject, sizeof subject, "%s%s", KX_SUBJ_RUN_EV_PREFIX, run_id);
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
    kx_err err = publish_one(bus, subject, run_id, epoch, seq, kind, terminal, payload_json, meta);
    free(stand_in);
    if (err == KX_OK)
        return KX_OK;
    kx_log(KX_LOG_ERROR, run_id, NULL, "events: could not publish event %llu on %s: %s",
           (unsigned long long)seq, subject, kx_err_str(err));
    /* Never silence: the stream learns that an event is missing. */
    char message[160];
    snprintf(message, sizeof message, "event %llu could not be streamed: %s",
             (unsigned long long)seq, kx_err_str(err));
    char *error = events_status_json("error", message);
    if (error != NULL &&
        publish_one(bus, subject, run_id, epoch, seq,
                    KX__V1__RUN_EVENT_KIND__RUN_EVENT_KIND_STATUS, false, error, meta) != KX_OK)
        kx_log(KX_LOG_ERROR, run_id, NULL, "events: the error event for %llu failed too",
               (unsigned long long)seq);
    free(error);
    return err;
}
