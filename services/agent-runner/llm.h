/* llm.h — streaming chat completions from an OpenAI-compatible server, on the loop.
 *
 * One llm_call is one logical LLM request of a run's turn: POST {base}/chat/completions with
 * "stream": true, its body parsed as server-sent events (kx_sse) and folded into an llm_stream
 * (llm_stream.h). The transfer runs on the loop through kx_curlm — no thread per call.
 *
 * Attempts and deadlines: each attempt has the deadline min(now + KX_LLM_TIMEOUT_S, the run's
 * wall deadline), enforced by a loop timer that removes the transfer. HTTP 429, 5xx, transport
 * errors and attempt timeouts are retried after 250 ms x 2^n (up to KX_LLM_RETRIES times) as
 * long as no output has reached the caller; an error after output, or any other HTTP status,
 * ends the call. Error bodies are read for the provider's message.
 *
 * Callbacks run on the loop thread. on_content may run many times (inside libcurl's write
 * callback: it must not free the call); returning false stops reading — the call then
 * completes successfully with what it has. on_done runs exactly once, from a loop timer (never
 * from inside llm_call_start or a libcurl callback); the call may be freed inside it.
 * llm_call_free cancels a call at any time (the transfer is removed, no callback follows). */
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
 * (without the "LLM request failed: " prefix), e.g. "HTTP 401 from http://...: bad key". */
typedef void (*llm_done_cb)(void *arg, llm_call *call, kx_err err, const char *message);

/* cfg, loop and curlm are borrowed and must outlive the client. */
kx_err llm_client_new(const runner_config *cfg, kx_loop *loop, kx_curlm *curlm, llm_client **out);
void llm_client_free(llm_client *c);

/* The request body: {"model", "messages": [system, ...messages], "stream": true, "tools",
 * "tool_choice": "auto", "temperature": 0} (plus stream_options.include_usage for OpenAI).
 * messages is borrowed. malloc'd JSON text, NULL on OOM. */
char *llm_request_body(const llm_client *c, const char *model, const json_t *messages);

/* Starts a call; body is taken over (freed by the call). run_id is for the logs. Returns NULL
 * only when out of memory (body is freed then too). */
llm_call *llm_call_start(llm_client *c, char *body, kx_deadline wall_deadline, const char *run_id,
                         llm_content_cb on_content, llm_done_cb on_done, void *arg);
/* The accumulated answer (valid until llm_call_free). */
const llm_stream *llm_call_result(const llm_call *call);
int llm_call_attempts(const llm_call *call);
/* Wall-clock ms of the first and last output chunk (0 if none), for response_ms. */
int64_t llm_call_first_chunk_ms(const llm_call *call);
int64_t llm_call_last_chunk_ms(const llm_call *call);
/* Cancels if still running; no callback after this. NULL is a no-op. */
void llm_call_free(llm_call *call);

#endif
