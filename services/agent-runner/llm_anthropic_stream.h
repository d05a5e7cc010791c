/* llm_anthropic_stream.h — folds the Anthropic Messages API's streamed events into an
 * llm_stream (llm_stream.h), so run.c reads an Anthropic answer exactly like an OpenAI one.
 *
 *   message_start        message.model, message.usage (input and cache tokens)
 *   content_block_start  a "text" block (its initial text), or a "tool_use" block: a tool call
 *                        at the block's index with its id and name (and its input, if whole)
 *   content_block_delta  text_delta -> the text; input_json_delta -> the arguments of the
 *                        tool call at that index (partial JSON, appended); others ignored
 *                        (thinking_delta, signature_delta, citations_delta)
 *   content_block_stop   nothing to do
 *   message_delta        delta.stop_reason -> finish_reason (end_turn/stop_sequence/pause_turn
 *                        -> "stop", max_tokens -> "length", tool_use -> "tool_calls",
 *                        refusal -> "content_filter"); usage (output tokens, cumulative)
 *   message_stop         the answer is complete (LLM_FEED_DONE)
 *   error                LLM_FEED_ERROR with the provider's message and type
 *   ping, anything else  ignored (the API may add event types)
 * The event's name comes from the data's "type" (the SSE event: line is only a fallback).
 * A whole non-streamed Message object ({"type": "message", ...}) is accepted too.
 *
 * Pure: no I/O, no globals; not thread-safe. */
#ifndef RUNNER_LLM_ANTHROPIC_STREAM_H
#define RUNNER_LLM_ANTHROPIC_STREAM_H

#include <stddef.h>

#include "llm_stream.h"

/* event: the SSE event name or NULL. *content_from as in llm_stream_feed. */
llm_feed_result llm_anthropic_feed(llm_stream *s, const char *event, const char *data, size_t len,
                                   size_t *content_from);

#endif
