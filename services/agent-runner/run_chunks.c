/* run_chunks.c — a run's streamed text as chunk events: the glue between the run (run.h), the
 * coalescer (chunks.h) and the publisher. Kept out of run.c so the agent loop only says "here
 * is text" (run_stream_text) and "flush before the next event" (chunks_flush in its publish). */
#include <stdlib.h>

#include "events.h"
#include "kx/log.h"
#include "run.h"

static void emit(void *arg, const char *text, size_t len)
{
    run *r = arg;
    char *payload = events_chunk_json(r->chunk_seq++, r->thread_id, text, len, r->thread_run_id);
    if (payload == NULL) {
        kx_log(KX_LOG_ERROR, r->id, NULL, "run: out of memory building chunk event %llu",
               (unsigned long long)r->ev_seq);
        return;
    }
    /* after the rows still being written (run_ops.h): the stream keeps its order */
    run_ops_publish(r, KX__V1__RUN_EVENT_KIND__RUN_EVENT_KIND_CHUNK, false, payload);
}

static bool busy(void *arg)
{
    run *r = arg;
    return publisher_busy(r->owner->events);
}

void run_chunks_init(run *r)
{
    const runner_config *cfg = r->owner->cfg;
    chunks_init(&r->chunks, r->owner->loop, cfg->event_coalesce_ms,
                (size_t)cfg->event_coalesce_bytes, emit, busy, r);
}

void run_stream_text(run *r, const char *delta, size_t len)
{
    if (chunks_add(&r->chunks, delta, len) != KX_OK)
        kx_log(KX_LOG_WARN, r->id, NULL, "run: out of memory coalescing text; sent as it came");
}
