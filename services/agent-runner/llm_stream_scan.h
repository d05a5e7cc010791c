/* llm_stream_scan.h — the fast way to fold an OpenAI chat.completion.chunk into an llm_stream:
 * a scan of the text for the common shapes (text deltas, tool-call fragments, finish_reason,
 * usage) that builds no jansson tree. llm_stream_feed tries it first and folds the chunk
 * through the tree when the scan leaves it (llm_stream_scan.c lists when); either way the
 * stream ends up the same. */
#ifndef RUNNER_LLM_STREAM_SCAN_H
#define RUNNER_LLM_STREAM_SCAN_H

#include <stddef.h>

#include "llm_stream.h"

/* Folds data[0..len) (one chunk, "[DONE]" already handled) into s as llm_stream_feed's tree
 * walk would: LLM_FEED_OK or LLM_FEED_NOMEM; -1 when the scan leaves this chunk to the tree
 * (then s is untouched). */
int llm_stream_scan_feed(llm_stream *s, const char *data, size_t len);

#endif
