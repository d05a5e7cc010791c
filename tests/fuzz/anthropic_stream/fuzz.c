/* fuzz.c — the agent-runner's parser of Anthropic's streamed Messages events
 * (llm_anthropic_stream.c), driven as the runner drives it: the input is a text/event-stream
 * body, fed through kx_sse in pieces whose size the first byte picks, each event's data folded
 * in until message_stop or an error.
 *
 * Properties: the text only grows and *content_from marks where the new text starts; tool
 * calls stay sorted by index with no duplicate; finish_reason and model stay NUL-terminated; a
 * malformed event or an error event always says why; token counts are never negative and the
 * total is the sum of prompt and completion (saturating). */
#include <limits.h>
#include <string.h>

#include "fuzz_util.h"
#include "kx/sse.h"
#include "llm_anthropic_stream.h"

typedef struct state {
    llm_stream s;
    bool stopped;
} state;

static void check(const llm_stream *s)
{
    /* at most LLM_MAX_CALLS, in the order they began: each index once, none negative */
    FUZZ_CHECK(s->ncalls <= LLM_MAX_CALLS);
    for (size_t i = 0; i < s->ncalls; i++) {
        FUZZ_CHECK(s->calls[i].index >= 0);
        for (size_t j = 0; j < i; j++)
            FUZZ_CHECK(s->calls[j].index != s->calls[i].index);
    }
    FUZZ_CHECK(memchr(s->finish_reason, '\0', sizeof s->finish_reason) != NULL);
    FUZZ_CHECK(memchr(s->model, '\0', sizeof s->model) != NULL);
    FUZZ_CHECK(s->prompt_tokens >= 0 && s->completion_tokens >= 0 && s->total_tokens >= 0);
    if (s->have_usage) {
        long long sum;
        if (__builtin_add_overflow(s->prompt_tokens, s->completion_tokens, &sum))
            sum = LLONG_MAX;
        FUZZ_CHECK(s->total_tokens == sum);
    }
}

static void on_event(const char *event, const char *data, size_t len, const char *id, void *arg)
{
    (void)id;
    state *st = arg;
    if (st->stopped)
        return;
    size_t before = st->s.content.len, from = (size_t)-1;
    llm_feed_result r = llm_anthropic_feed(&st->s, event, data, len, &from);
    FUZZ_CHECK(from == before && st->s.content.len >= before);
    check(&st->s);
    if (r == LLM_FEED_MALFORMED || r == LLM_FEED_ERROR)
        FUZZ_CHECK(st->s.error[0] != '\0' || r == LLM_FEED_ERROR);
    if (r == LLM_FEED_DONE)
        FUZZ_CHECK(st->s.done);
    if (r != LLM_FEED_OK)
        st->stopped = true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    size_t step = (size_t)(data[0] % 16) + 1;
    const char *s = (const char *)data + 1;
    size--;
    state st;
    memset(&st, 0, sizeof st);
    llm_stream_init(&st.s);
    kx_sse_parser p;
    kx_sse_init(&p, on_event, &st);
    for (size_t at = 0; at < size && !st.stopped; at += step) {
        size_t n = size - at < step ? size - at : step;
        if (kx_sse_feed(&p, s + at, n) != KX_OK)
            break;
    }
    if (!st.stopped)
        kx_sse_feed(&p, "\n\n", 2);
    kx_sse_free(&p);
    llm_stream_free(&st.s);

    /* the same bytes as one event's data */
    llm_stream one;
    llm_stream_init(&one);
    llm_feed_result r = llm_anthropic_feed(&one, NULL, s, size, NULL);
    check(&one);
    if (r == LLM_FEED_MALFORMED)
        FUZZ_CHECK(one.error[0] != '\0');
    llm_stream_free(&one);
    return 0;
}
