/* llm.h — one streamed LLM answer for a run's turn, on the loop, from whichever provider the
 * model name routes to (llm_route.h), with deadlines, retries and a fallback model.
 *
 * A call resolves the model name, builds the provider's request (llm_provider.h) and POSTs it
 * through kx_curlm (no thread per call); the body's server-sent events are folded into an
 * llm_stream by the provider's parser.
 *
 * Deadlines (a loop timer; nothing caps the length of a whole answer):
 *   - time to first byte: KX_LLM_TTFB_MS from the start of an attempt to the first byte of the
 *     response (status line, headers or body);
 *   - idle: KX_LLM_IDLE_MS, the longest gap between two received bytes (SSE comments and
 *     Anthropic's pings count: they prove the provider is alive);
 *   - the run's wall deadline;
 *   - after the answer's end ([DONE], Anthropic's message_stop) the body may stay open 1 s at
 *     most: the call then completes with the answer (as it does at once when more bytes come).
 * Retries: HTTP 429, 5xx, 529, transport errors, the two timeouts above and a provider's error
 * event are retried (KX_LLM_RETRIES times per model) only while no output has reached the
 * caller, after Retry-After / retry-after-ms when the provider sent one (seconds or an HTTP
 * date), else after an exponential backoff with jitter (500 ms x 2^n, from half to all of it,
 * at most 20 s); never past the run's wall deadline. When the model stays down and
 * KX_LLM_FALLBACK_MODEL names another model, the same request goes to that model (with its
 * own retries). Any other HTTP status, or an error after output, ends the call. The error
 * message names the provider, the model, the URL, the HTTP status and the provider's own
 * message (and the primary's error when the fallback failed too).
 *
 * Callbacks run on the loop thread. on_content may run many times (inside libcurl's write
 * callback: it must not free the call); returning false stops reading — the call then
 * completes successfully with what it has. on_done runs exactly once, from a loop timer (never
 * from inside llm_call_start or a libcurl callback); the call may be freed inside it.
 * llm_call_free cancels a call at any time (the transfer is removed and its connection closed
 * at once; no callback follows). */
#ifndef RUNNER_LLM_H
#define RUNNER_LLM_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include "config.h"
#include "kx/curlm.h"
#include "kx/err.h"
#include "kx/loop.h"
#include "kx/time.h"
#include "llm_stream.h"

typedef struct llm_client llm_client;
typedef struct llm_call llm_call;

typedef bool (*llm_content_cb)(void *arg, const char *delta, size_t len);
/* err == KX_OK: llm_call_result(call) holds the answer. Otherwise message says what failed
 * (without the "LLM request failed: " prefix; UTF-8: bytes of the provider's it quotes that
 * are not are replaced with '?'), e.g. "anthropic model claude-x: HTTP 401 from
 * https://...: invalid x-api-key (authentication_error)". */
typedef void (*llm_done_cb)(void *arg, llm_call *call, kx_err err, const char *message);

/* cfg, loop and curlm are borrowed and must outlive the client. */
kx_err llm_client_new(const runner_config *cfg, kx_loop *loop, kx_curlm *curlm, llm_client **out);
void llm_client_free(llm_client *c);

/* Starts a call for model (NULL or "" = KX_MODEL) over the thread's messages (OpenAI chat
 * shape, context.h; a reference is kept for the fallback). run_id is for the logs. Returns
 * NULL only when out of memory; a bad model name is reported through on_done. */
llm_call *llm_call_start(llm_client *c, const char *model, json_t *messages,
                         kx_deadline wall_deadline, const char *run_id, llm_content_cb on_content,
                         llm_done_cb on_done, void *arg);
/* What a call may set apart from the model and the thread (every field optional). */
typedef struct llm_opts {
    const char *system;     /* the system prompt (copied); NULL: the default (prompt.h) */
    json_t *tools;          /* OpenAI-form schemas (a reference is kept); NULL: the default;
                           an empty array: no tools in the request */
    const char *tools_text; /* tools as kx_json_dumps_compact prints them (read while the
                               call starts, not copied: the first model's body only), or NULL:
                               spares the provider printing the same schemas every turn */
    int64_t max_tokens;     /* the answer's cap; 0: the provider's default */
    /* Called (with the call's arg) after every event of an answer that has native tool calls,
     * to start the complete ones (execute-on-stream). Same rules as on_content: inside
     * libcurl's write callback, must not free the call. NULL: not called. */
    void (*on_calls)(void *arg, const llm_stream *s);
} llm_opts;

/* llm_call_start with options (opts may be NULL). */
llm_call *llm_call_start_opts(llm_client *c, const char *model, json_t *messages,
                              const llm_opts *opts, kx_deadline wall_deadline, const char *run_id,
                              llm_content_cb on_content, llm_done_cb on_done, void *arg);

/* The accumulated answer (valid until llm_call_free). */
const llm_stream *llm_call_result(const llm_call *call);
int llm_call_attempts(const llm_call *call); /* all attempts, fallback included */
/* The model name that answered (after aliases; the fallback's when it took over). */
const char *llm_call_model(const llm_call *call);
const char *llm_call_provider(const llm_call *call); /* "demo", "openai", "anthropic" */
size_t llm_call_request_bytes(const llm_call *call); /* of the last request body */
/* Wall-clock ms of the first and last output chunk (0 if none), for response_ms. */
int64_t llm_call_first_chunk_ms(const llm_call *call);
int64_t llm_call_last_chunk_ms(const llm_call *call);
/* Cancels if still running; no callback after this. NULL is a no-op. */
void llm_call_free(llm_call *call);

/* A Retry-After value (delta-seconds or an HTTP date) as ms from now_ms; -1 when it is neither.
 * A date in the past is 0. Exposed for the unit tests. */
int64_t llm_retry_after_ms(const char *value, int64_t now_ms);

#endif
