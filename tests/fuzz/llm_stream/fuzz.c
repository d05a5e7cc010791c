/* fuzz.c — the agent-runner's accumulator of streamed chat completions (llm_stream.c): the
 * chunks an OpenAI-compatible provider sends, and the error bodies it answers with.
 *
 * The input is split at '\n' into chunks (each one SSE event's data), folded in one by one
 * until [DONE] or an error, as the runner does; then the whole input goes through
 * llm_error_message. Properties: the text only grows and *content_from marks where the new
 * text starts; tool calls stay sorted by index without duplicates; an error or malformed chunk
 * always says why; the error message is always NUL-terminated and fits its buffer. And
 * llm_stream_feed (which folds the common chunks by a scan without a tree, llm_stream_scan.c)
 * leaves the stream exactly as llm_stream_feed_tree (always a jansson tree) does. */
#include <string.h>

#include "fuzz_util.h"
#include "llm_stream.h"

static bool same_buf(const kx_buf *a, const kx_buf *b)
{
    return a->len == b->len && (a->len == 0 || memcmp(a->s, b->s, a->len) == 0);
}

/* The scan and the tree folded the same chunks alike. */
static bool same_stream(const llm_stream *a, const llm_stream *b)
{
    if (!same_buf(&a->content, &b->content) || a->ncalls != b->ncalls ||
        strcmp(a->finish_reason, b->finish_reason) != 0 || strcmp(a->model, b->model) != 0 ||
        a->done != b->done || a->have_usage != b->have_usage ||
        a->prompt_tokens != b->prompt_tokens || a->completion_tokens != b->completion_tokens ||
        a->total_tokens != b->total_tokens || a->nchunks != b->nchunks ||
        a->received_output != b->received_output || strcmp(a->error, b->error) != 0)
        return false;
    for (size_t i = 0; i < a->ncalls; i++)
        if (a->calls[i].index != b->calls[i].index ||
            !same_buf(&a->calls[i].id, &b->calls[i].id) ||
            !same_buf(&a->calls[i].name, &b->calls[i].name) ||
            !same_buf(&a->calls[i].arguments, &b->calls[i].arguments))
            return false;
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    llm_stream st, tree;
    llm_stream_init(&st);
    llm_stream_init(&tree);
    size_t at = 0;
    while (at < size) {
        const char *nl = memchr(s + at, '\n', size - at);
        size_t n = nl != NULL ? (size_t)(nl - (s + at)) : size - at;
        size_t before = st.content.len, from = (size_t)-1;
        llm_feed_result r = llm_stream_feed(&st, s + at, n, &from);
        FUZZ_CHECK(llm_stream_feed_tree(&tree, s + at, n, NULL) == r);
        FUZZ_CHECK(same_stream(&st, &tree));
        FUZZ_CHECK(from == before && st.content.len >= before);
        /* at most LLM_MAX_CALLS, in the order they began: each index once, none negative */
        FUZZ_CHECK(st.ncalls <= LLM_MAX_CALLS);
        for (size_t i = 0; i < st.ncalls; i++) {
            FUZZ_CHECK(st.calls[i].index >= 0);
            for (size_t j = 0; j < i; j++)
                FUZZ_CHECK(st.calls[j].index != st.calls[i].index);
        }
        FUZZ_CHECK(memchr(st.finish_reason, '\0', sizeof st.finish_reason) != NULL);
        FUZZ_CHECK(memchr(st.model, '\0', sizeof st.model) != NULL);
        if (r == LLM_FEED_ERROR || r == LLM_FEED_MALFORMED)
            FUZZ_CHECK(st.error[0] != '\0' || r == LLM_FEED_ERROR);
        if (r != LLM_FEED_OK)
            break;
        at += n + 1;
    }
    llm_stream_free(&st);
    llm_stream_free(&tree);

    char msg[64];
    memset(msg, 'x', sizeof msg);
    llm_error_message(s, size, msg, sizeof msg);
    FUZZ_CHECK(memchr(msg, '\0', sizeof msg) != NULL);
    char one[1] = {'x'};
    llm_error_message(s, size, one, sizeof one);
    FUZZ_CHECK(one[0] == '\0');
    return 0;
}
