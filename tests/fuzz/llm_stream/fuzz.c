/* fuzz.c — the agent-runner's accumulator of streamed chat completions (llm_stream.c): the
 * chunks an OpenAI-compatible provider sends, and the error bodies it answers with.
 *
 * The input is split at '\n' into chunks (each one SSE event's data), folded in one by one
 * until [DONE] or an error, as the runner does; then the whole input goes through
 * llm_error_message. Properties: the text only grows and *content_from marks where the new
 * text starts; tool calls stay sorted by index without duplicates; an error or malformed chunk
 * always says why; the error message is always NUL-terminated and fits its buffer. */
#include <string.h>

#include "fuzz_util.h"
#include "llm_stream.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    llm_stream st;
    llm_stream_init(&st);
    size_t at = 0;
    while (at < size) {
        const char *nl = memchr(s + at, '\n', size - at);
        size_t n = nl != NULL ? (size_t)(nl - (s + at)) : size - at;
        size_t before = st.content.len, from = (size_t)-1;
        llm_feed_result r = llm_stream_feed(&st, s + at, n, &from);
        FUZZ_CHECK(from == before && st.content.len >= before);
        for (size_t i = 1; i < st.ncalls; i++)
            FUZZ_CHECK(st.calls[i - 1].index < st.calls[i].index);
        FUZZ_CHECK(memchr(st.finish_reason, '\0', sizeof st.finish_reason) != NULL);
        FUZZ_CHECK(memchr(st.model, '\0', sizeof st.model) != NULL);
        if (r == LLM_FEED_ERROR || r == LLM_FEED_MALFORMED)
            FUZZ_CHECK(st.error[0] != '\0' || r == LLM_FEED_ERROR);
        if (r != LLM_FEED_OK)
            break;
        at += n + 1;
    }
    llm_stream_free(&st);

    char msg[64];
    memset(msg, 'x', sizeof msg);
    llm_error_message(s, size, msg, sizeof msg);
    FUZZ_CHECK(memchr(msg, '\0', sizeof msg) != NULL);
    char one[1] = {'x'};
    llm_error_message(s, size, one, sizeof one);
    FUZZ_CHECK(one[0] == '\0');
    return 0;
}
