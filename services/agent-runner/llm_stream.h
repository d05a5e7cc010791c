/* llm_stream.h — the accumulator of one streamed LLM answer, and its OpenAI-compatible parser.
 *
 * The llm_stream struct is what every provider's parser fills (llm_anthropic_stream.h folds
 * Anthropic's events into the same struct) and what run.c reads: the text, the native tool
 * calls (at most LLM_MAX_CALLS, in the order their first fragments came: run.c starts a call
 * while the answer streams and finds it again by its position), the finish_reason in OpenAI's words, usage and the model.
 *
 * Each SSE event's data is one `chat.completion.chunk` JSON object (or the literal "[DONE]").
 * llm_stream_feed folds it into the accumulated answer: the text (choices[0].delta.content),
 * the tool calls by their index (id, function.name, and arguments that arrive in fragments),
 * the finish_reason, usage (often in a last chunk with no choices) and the model name.
 * A whole non-streamed `chat.completion` (choices[0].message) is accepted too, for servers
 * that ignore "stream": true.
 *
 * Pure: no I/O, no globals; one accumulator per LLM attempt; not thread-safe. */
#ifndef RUNNER_LLM_STREAM_H
#define RUNNER_LLM_STREAM_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "kx/buf.h"
#include "kx/err.h"

/* One native tool call as assembled from its fragments. */
typedef struct llm_tool_call {
    int index; /* the provider's index; calls are kept in the order they began */
    kx_buf id;
    kx_buf name;
    kx_buf arguments; /* the JSON text of the arguments, as the model wrote it */
    bool args_whole;  /* Anthropic: the arguments came whole at the block's start (replaced by
                         the first input_json_delta, if any) */
} llm_tool_call;

/* Native tool calls one answer may hold; more is a malformed answer (each call is a row, an
 * event and a request to the tool-executor, all started at once with the parallel strategy). */
#define LLM_MAX_CALLS 128

typedef struct llm_stream {
    kx_buf content;
    llm_tool_call *calls;
    size_t ncalls, capcalls;
    char finish_reason[32]; /* "" until a chunk says it */
    char model[128];        /* from the chunks' "model", "" if none */
    bool done;              /* "[DONE]" seen */
    bool have_usage;
    long long prompt_tokens, completion_tokens, total_tokens;
    size_t nchunks;       /* chunks folded in (not counting [DONE]) */
    bool received_output; /* any text or tool-call fragment arrived */
    char error[512];      /* LLM_FEED_ERROR / LLM_FEED_MALFORMED: what was wrong */
    /* Anthropic's usage parts (prompt_tokens is their sum; message_delta may update them) */
    long long input_tokens, cache_creation_tokens, cache_read_tokens;
} llm_stream;

typedef enum llm_feed_result {
    LLM_FEED_OK = 0,    /* folded in (maybe nothing new) */
    LLM_FEED_DONE,      /* "[DONE]": the stream is complete */
    LLM_FEED_ERROR,     /* the provider sent {"error": {...}} in the stream; see ->error */
    LLM_FEED_MALFORMED, /* not JSON, or not the shape of a chunk; see ->error */
    LLM_FEED_NOMEM,
} llm_feed_result;

void llm_stream_init(llm_stream *s);
void llm_stream_free(llm_stream *s); /* frees what it holds; s itself is the caller's */

/* The tool call with the provider's index, created (after the others) if new, into *out.
 * LLM_FEED_MALFORMED (s->error says why) for an index outside 0..INT_MAX or a call beyond
 * LLM_MAX_CALLS; LLM_FEED_NOMEM; else LLM_FEED_OK. */
llm_feed_result llm_stream_call_at(llm_stream *s, long long index, llm_tool_call **out);
/* The tool call with this index, or NULL. */
llm_tool_call *llm_stream_find_call(llm_stream *s, int index);

/* Folds one event's data in. *content_from (may be NULL) receives the content length before
 * this chunk, so the new text is s->content.s[*content_from .. s->content.len). */
llm_feed_result llm_stream_feed(llm_stream *s, const char *data, size_t len, size_t *content_from);
/* The same, always through a jansson tree (llm_stream_feed scans the common chunks without
 * one, llm_stream_scan.h): the reference the tests compare the scan with. */
llm_feed_result llm_stream_feed_tree(llm_stream *s, const char *data, size_t len,
                                     size_t *content_from);

/* Both parsers read a chunk with JSON_ALLOW_NUL: a provider may stream \u0000 (a model quoting
 * a binary file), which jansson refuses otherwise, and the whole answer would fail. Strings are
 * read with llm_json_str and folded in with llm_text_add, which turns each NUL into U+FFFD
 * (Postgres text and jsonb hold no NUL). */
#define LLM_JSON_FLAGS JSON_ALLOW_NUL
/* The string member key of obj and its length (*len; it may hold NUL bytes), or NULL when it
 * is absent, null or not a string. */
const char *llm_json_str(const json_t *obj, const char *key, size_t *len);
/* Copies the provider's string s[0..n) (up to a NUL byte) into the fixed field dst of cap
 * bytes, NUL-terminated, cut at a UTF-8 character boundary when it does not fit (the fields
 * go into JSON rows, which take UTF-8 only). */
void llm_field_set(char *dst, size_t cap, const char *s, size_t n);
/* Whether a tool call id (len bytes) can be sent back to any provider: 1..max bytes of
 * [A-Za-z0-9_-] (Anthropic refuses any other tool_use id with a 400). */
bool llm_call_id_valid(const char *id, size_t len, size_t max);
/* An OpenAI usage object's counts into s (have_usage set): each below 0 is 0 (a count; a
 * negative one would be saved in the turn's row as it came), total_tokens when given
 * (has_total) else the sum, saturating at LLONG_MAX. */
void llm_usage_set(llm_stream *s, long long prompt, long long completion, bool has_total,
                   long long total);
/* Appends s[0..n) (a jansson string: UTF-8, maybe with NUL bytes) to b with every NUL byte as
 * U+FFFD (kx_utf8_sanitize). KX_ERR_NOMEM or KX_OK. */
kx_err llm_text_add(kx_buf *b, const char *s, size_t n);

/* The message of an OpenAI-style error body ({"error": {"message": ...}} or {"error": "..."}
 * or {"message": ...} or {"detail": ...}) into out; if body is not such JSON, its first bytes
 * as text. Always NUL-terminates out. */
void llm_error_message(const char *body, size_t len, char *out, size_t outlen);

#endif
