/* demo_turn.h — one model turn of the demo model, and its OpenAI wire forms.
 *
 * demo_turn_build turns a script step (or the final answer, when the steps have run out) into
 * a demo_turn: text, or a native tool call. The renderers print it exactly as OpenAI's Chat
 * Completions API does:
 *   - demo_render_completion: a "chat.completion" object (stream false), with usage;
 *   - demo_render_stream: the "data: {chunk}\n\n" lines of stream true: the first delta carries
 *     "role": "assistant"; text comes a few words per chunk (DEMO_WORDS_PER_CHUNK), tool-call
 *     arguments in two or more fragments; the last choice chunk carries finish_reason; then a
 *     chunk with "usage" and "choices": [], then "data: [DONE]\n\n".
 * Usage is an estimate: characters / 4, rounded up.
 *
 * Pure (no I/O, no globals). Ownership: every returned string and the chunk array are
 * malloc'd and the caller's; demo_turn_free frees a turn's strings. */
#ifndef KX_DEMO_TURN_H
#define KX_DEMO_TURN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "demo_conv.h"
#include "demo_script.h"

#define DEMO_WORDS_PER_CHUNK 3
#define DEMO_RESULT_QUOTE_CHARS 200 /* how much of the last tool result the final answer quotes */
#define DEMO_MODEL_NAME "kortix/demo"

typedef struct demo_turn {
    bool tool_call;            /* a native tool call: content is NULL */
    char *content;             /* the text (say, xml, final answer); NULL for a tool call */
    char *tool;                /* tool call: the function name */
    char *arguments;           /* tool call: the arguments as compact JSON text */
    char *call_id;             /* tool call: "call_<step>_<8 hex>" */
    const char *finish_reason; /* static: "tool_calls" or "stop" */
} demo_turn;

/* step is the due step, or NULL for the final answer; conv supplies the last tool result and the
 * hash for the call id. Returns 0, or -1 when out of memory. */
int demo_turn_build(const demo_step *step, size_t step_index, const demo_conv *conv,
                    demo_turn *out);
void demo_turn_free(demo_turn *t);

/* The Kortix XML form of a call: see the top of demo_turn.c. malloc'd; NULL on OOM. */
char *demo_xml_call(const char *tool, const json_t *args);

/* What every rendered object repeats. */
typedef struct demo_reply_meta {
    const char *id;      /* "chatcmpl-..." */
    const char *model;   /* the request's model, or DEMO_MODEL_NAME */
    int64_t created;     /* unix seconds */
    size_t prompt_chars; /* for usage.prompt_tokens */
} demo_reply_meta;

char *demo_render_completion(const demo_turn *t, const demo_reply_meta *meta);
/* *chunks: array of *n malloc'd "data: ...\n\n" strings; free with demo_chunks_free. */
int demo_render_stream(const demo_turn *t, const demo_reply_meta *meta, char ***chunks, size_t *n);
void demo_chunks_free(char **chunks, size_t n);

/* {"error": {"message", "type", "code"}}; type follows the status (invalid_request_error,
 * authentication_error, not_found_error, rate_limit_error, server_error). malloc'd. */
char *demo_render_error(int status, const char *message, const char *code);

#endif
