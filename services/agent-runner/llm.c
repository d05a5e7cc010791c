/* llm.c — one streamed chat completion with retries, as a small state machine on the loop
 * (see llm.h for the contract).
 *
 *   start_attempt --kx_curlm_add--> transfer --(write_cb -> kx_sse -> on_sse_event)--> ...
 *       ^                              |  done (on_transfer_done) or deadline (on_deadline)
 *       |                              v
 *   on_retry <-- backoff timer -- attempt_failed --(no retry)--> finish --timer 0--> on_done
 *
 * Everything here runs on the loop thread. The call owns its easy handle (one per attempt),
 * its timers and its request body; llm_call_free releases whatever is live. */
#include "llm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kx/json.h"
#include "kx/log.h"
#include "kx/metrics.h"
#include "kx/sse.h"
#include "kx/svc.h"
#include "prompt.h"

#define RETRY_BASE_MS 250
#define CONNECT_TIMEOUT_MS 10000
#define MAX_ERROR_BODY (64 * 1024)
#define MAX_JSON_BODY (16 * 1024 * 1024)
#define MAX_ANSWER_BYTES (4 * 1024 * 1024) /* text + tool-call arguments of one answer */

struct llm_client {
    const runner_config *cfg;
    kx_loop *loop;
    kx_curlm *curlm;
    char url[600];              /* {base}/chat/completions */
    struct curl_slist *headers; /* shared by every easy handle; freed with the client */
};

typedef enum body_mode {
    BODY_UNKNOWN = 0, /* no byte of the body yet */
    BODY_SSE,         /* 200, an event stream */
    BODY_JSON,        /* 200, a whole JSON completion (server ignored "stream") */
    BODY_ERROR,       /* not 200: kept to read the provider's error message */
} body_mode;

struct llm_call {
    llm_client *c;
    char *body;
    char run_id[40];
    kx_deadline wall_deadline;
    llm_content_cb on_content;
    llm_done_cb on_done;
    void *arg;
    int attempt; /* attempts started so far */

    /* the live attempt */
    CURL *easy; /* non-NULL while added to the multi */
    kx_timer *deadline_timer;
    int64_t attempt_timeout_ms;
    kx_sse_parser sse;
    body_mode mode;
    kx_buf raw;                  /* BODY_ERROR / BODY_JSON bytes */
    bool stop_requested;         /* on_content returned false */
    bool stream_failed;          /* an error event or malformed data in the stream */
    bool stream_error_retryable; /* the provider reported an error (vs. malformed data) */
    char stream_errmsg[600];
    char curl_err[CURL_ERROR_SIZE];

    llm_stream stream; /* the answer (reset per attempt: retries happen only
                                      before any output) */
    int64_t first_chunk_ms, last_chunk_ms;

    kx_timer *retry_timer;
    kx_timer *notify_timer;
    kx_err result;
    char result_msg[2400];
};

static void start_attempt(llm_call *call);

/* ---- client ------------------------------------------------------------------------- */

kx_err llm_client_new(const runner_config *cfg, kx_loop *loop, kx_curlm *curlm, llm_client **out)
{
    *out = NULL;
    llm_client *c = calloc(1, sizeof *c);
    if (c == NULL)
        return KX_ERR_NOMEM;
    c->cfg = cfg;
    c->loop = loop;
    c->curlm = curlm;
    snprintf(c->url, sizeof c->url, "%s/chat/completions", cfg->llm_base_url);
    const char *fixed[] = {"Content-Type: application/json", "Accept: text/event-stream",
                           "Expect:", NULL};
    for (size_t i = 0; fixed[i] != NULL; i++) {
        struct curl_slist *n = curl_slist_append(c->headers, fixed[i]);
        if (n == NULL)
            goto oom;
        c->headers = n;
    }
    if (cfg->api_key[0] != '\0') {
        char auth[600];
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", cfg->api_key);
        struct curl_slist *n = curl_slist_append(c->headers, auth);
        if (n == NULL)
            goto oom;
        c->headers = n;
    }
    *out = c;
    return KX_OK;
oom:
    curl_slist_free_all(c->headers);
    free(c);
    return KX_ERR_NOMEM;
}

void llm_client_free(llm_client *c)
{
    if (c == NULL)
        return;
    curl_slist_free_all(c->headers);
    free(c);
}

char *llm_request_body(const llm_client *c, const char *model, const json_t *messages)
{
    json_t *root = json_object();
    json_t *msgs = json_array();
    json_t *sys = json_pack("{s:s, s:s}", "role", "system", "content", prompt_system());
    json_t *tools = prompt_tools();
    char *out = NULL;
    if (root == NULL || msgs == NULL || sys == NULL || tools == NULL)
        goto done;
    if (json_array_append(msgs, sys) != 0 || json_array_extend(msgs, (json_t *)messages) != 0)
        goto done;
    json_object_set_new(root, "model", json_string(model));
    json_object_set(root, "messages", msgs);
    json_object_set_new(root, "stream", json_true());
    if (c->cfg->provider == PROVIDER_OPENAI) /* OpenAI sends usage only when asked */
        json_object_set_new(root, "stream_options", json_pack("{s:b}", "include_usage", 1));
    json_object_set(root, "tools", tools);
    json_object_set_new(root, "tool_choice", json_string("auto"));
    json_object_set_new(root, "temperature", json_integer(0));
    out = kx_json_dumps_compact(root);
done:
    json_decref(root);
    json_decref(msgs);
    json_decref(sys);
    json_decref(tools);
    return out;
}

/* ---- results -------------------------------------------------------------------------- */

static void on_notify(kx_loop *loop, void *arg)
{
    llm_call *call = arg;
    call->notify_timer = NULL; /* the loop freed it */
    call->on_done(call->arg, call, call->result, call->result_msg);
}

/* Ends the call: on_done runs from a fresh loop iteration. */
static void finish(llm_call *call, kx_err err, const char *msg)
{
    call->result = err;
    if (err == KX_OK)
        call->result_msg[0] = '\0';
    else if (call->attempt > 1)
        snprintf(call->result_msg, sizeof call->result_msg, "%s (after %d attempts)", msg,
                 call->attempt);
    else
        snprintf(call->result_msg, sizeof call->result_msg, "%s", msg);
    kx_counter_add(kx_metrics_counter("kx_runner_llm_calls_total",
                                      err == KX_OK ? "result=\"ok\"" : "result=\"error\"",
                                      "LLM calls by outcome (after retries)"),
                   1);
    call->notify_timer = kx_loop_timer(call->c->loop, 0, on_notify, call);
    if (call->notify_timer == NULL) { /* out of memory: better late than never */
        kx_error("llm: could not arm a timer; reporting the result of the call inline");
        call->on_done(call->arg, call, err, call->result_msg);
    }
}

static void on_retry(kx_loop *loop, void *arg)
{
    llm_call *call = arg;
    call->retry_timer = NULL;
    start_attempt(call);
}

/* An attempt failed: retry (if allowed and nothing reached the caller yet) or finish. */
static void attempt_failed(llm_call *call, bool retryable, kx_err err, const char *msg)
{
    const runner_config *cfg = call->c->cfg;
    bool output = call->stream.received_output;
    if (retryable && !output && call->attempt <= cfg->llm_retries &&
        !kx_deadline_expired(call->wall_deadline)) {
        int64_t delay = (int64_t)RETRY_BASE_MS << (call->attempt - 1);
        kx_log(KX_LOG_WARN, call->run_id, NULL, "llm: attempt %d failed (%s); retrying in %lld ms",
               call->attempt, msg, (long long)delay);
        kx_counter_add(kx_metrics_counter("kx_runner_llm_retries_total", "",
                                          "LLM attempts retried"),
                       1);
        call->retry_timer = kx_loop_timer(call->c->loop, delay, on_retry, call);
        if (call->retry_timer != NULL)
            return;
    }
    finish(call, err, msg);
}

/* ---- the transfer ---------------------------------------------------------------------- */

static void on_sse_event(const char *event, const char *data, size_t len, const char *id,
                         void *arg)
{
    llm_call *call = arg;
    if (call->stop_requested || call->stream_failed)
        return;
    if (event != NULL && strcmp(event, "error") == 0) { /* a provider's error event */
        char msg[400];
        llm_error_message(data, len, msg, sizeof msg);
        snprintf(call->stream_errmsg, sizeof call->stream_errmsg,
                 "the LLM stream reported an error: %s", msg);
        call->stream_failed = true;
        call->stream_error_retryable = true;
        return;
    }
    size_t from = 0;
    bool had_output = call->stream.received_output;
    llm_feed_result r = llm_stream_feed(&call->stream, data, len, &from);
    switch (r) {
    case LLM_FEED_OK: break;
    case LLM_FEED_DONE: return;
    case LLM_FEED_ERROR:
        snprintf(call->stream_errmsg, sizeof call->stream_errmsg,
                 "the LLM stream reported an error: %s", call->stream.error);
        call->stream_failed = true;
        call->stream_error_retryable = true;
        return;
    case LLM_FEED_MALFORMED:
        snprintf(call->stream_errmsg, sizeof call->stream_errmsg, "%s", call->stream.error);
        call->stream_failed = true;
        return;
    case LLM_FEED_NOMEM:
        snprintf(call->stream_errmsg, sizeof call->stream_errmsg,
                 "out of memory while reading the LLM stream");
        call->stream_failed = true;
        return;
    }
    size_t answer = call->stream.content.len;
    for (size_t i = 0; i < call->stream.ncalls; i++)
        answer += call->stream.calls[i].arguments.len;
    if (answer > MAX_ANSWER_BYTES) {
        snprintf(call->stream_errmsg, sizeof call->stream_errmsg,
                 "the LLM answer exceeded %d bytes", MAX_ANSWER_BYTES);
        call->stream_failed = true;
        return;
    }
    if (call->stream.received_output) {
        call->last_chunk_ms = kx_now_ms();
        if (!had_output)
            call->first_chunk_ms = call->last_chunk_ms;
    }
    size_t n = call->stream.content.len - from;
    if (n > 0 && !call->on_content(call->arg, call->stream.content.s + from, n))
        call->stop_requested = true;
}

/* Chooses how to read the body from the status and content type of the response. */
static void pick_mode(llm_call *call)
{
    long status = 0;
    curl_easy_getinfo(call->easy, CURLINFO_RESPONSE_CODE, &status);
    const char *ctype = NULL;
    curl_easy_getinfo(call->easy, CURLINFO_CONTENT_TYPE, &ctype);
    if (status != 200)
        call->mode = BODY_ERROR;
    else if (ctype != NULL && strstr(ctype, "json") != NULL)
        call->mode = BODY_JSON;
    else
        call->mode = BODY_SSE;
}

static size_t write_cb(char *ptr, size_t size, size_t nmemb, void *arg)
{
    llm_call *call = arg;
    size_t n = size * nmemb;
    if (call->mode == BODY_UNKNOWN)
        pick_mode(call);
    if (call->mode == BODY_SSE) {
        kx_err err = kx_sse_feed(&call->sse, ptr, n);
        if (err != KX_OK && !call->stream_failed) {
            snprintf(call->stream_errmsg, sizeof call->stream_errmsg,
                     "the LLM stream could not be parsed as server-sent events (%s)",
                     kx_err_str(err));
            call->stream_failed = true;
        }
        if (call->stop_requested || call->stream_failed)
            return 0; /* abort the transfer: on_transfer_done sees why */
        return n;
    }
    size_t cap = call->mode == BODY_JSON ? MAX_JSON_BODY : MAX_ERROR_BODY;
    size_t keep = call->raw.len >= cap ? 0 : (n < cap - call->raw.len ? n : cap - call->raw.len);
    if (keep > 0 && kx_buf_add(&call->raw, ptr, keep) != KX_OK)
        return 0;
    return n;
}

static void release_easy(llm_call *call, bool remove)
{
    if (call->easy == NULL)
        return;
    if (remove)
        kx_curlm_remove(call->c->curlm, call->easy);
    curl_easy_cleanup(call->easy);
    call->easy = NULL;
}

static void on_deadline(kx_loop *loop, void *arg)
{
    llm_call *call = arg;
    call->deadline_timer = NULL;
    release_easy(call, true);
    char msg[800];
    if (kx_deadline_expired(call->wall_deadline))
        snprintf(msg, sizeof msg,
                 "the run's wall-time deadline passed while waiting for the "
                 "model");
    else
        snprintf(msg, sizeof msg, "no complete answer from %s within %lld s", call->c->url,
                 (long long)((call->attempt_timeout_ms + 999) / 1000));
    attempt_failed(call, true, KX_ERR_TIMEOUT, msg);
}

static void on_transfer_done(CURL *easy, CURLcode result, void *arg)
{
    llm_call *call = arg;
    kx_timer_cancel(call->deadline_timer);
    call->deadline_timer = NULL;
    long status = 0;
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
    release_easy(call, false); /* kx_curlm already removed it */
    char msg[2048];
    const char *url = call->c->url;

    if (call->stop_requested) { /* the caller has what it needs */
        finish(call, KX_OK, "");
        return;
    }
    if (call->stream_failed) {
        attempt_failed(call, call->stream_error_retryable, KX_ERR_PROTOCOL, call->stream_errmsg);
        return;
    }
    if (result != CURLE_OK) {
        snprintf(msg, sizeof msg, "could not talk to %s: %s%s%s", url, curl_easy_strerror(result),
                 call->curl_err[0] ? ": " : "", call->curl_err);
        attempt_failed(call, true, KX_ERR_UNAVAILABLE, msg);
        return;
    }
    if (status != 200) {
        char detail[500];
        llm_error_message(call->raw.s, call->raw.len, detail, sizeof detail);
        snprintf(msg, sizeof msg, "HTTP %ld from %s: %s", status, url, detail);
        bool retryable = status == 429 || status >= 500;
        attempt_failed(call, retryable,
                       status == 429 || status >= 500 ? KX_ERR_UNAVAILABLE : KX_ERR_INVALID, msg);
        return;
    }
    if (call->mode == BODY_JSON) {
        llm_feed_result r =
            llm_stream_feed(&call->stream, call->raw.s ? call->raw.s : "", call->raw.len, NULL);
        if (r == LLM_FEED_ERROR || r == LLM_FEED_MALFORMED) {
            snprintf(msg, sizeof msg, "%s%s",
                     r == LLM_FEED_ERROR ? "the model reported an "
                                           "error: "
                                         : "",
                     call->stream.error);
            attempt_failed(call, r == LLM_FEED_ERROR, KX_ERR_PROTOCOL, msg);
            return;
        }
        if (call->stream.content.len > 0 &&
            !call->on_content(call->arg, call->stream.content.s, call->stream.content.len))
            call->stop_requested = true;
        finish(call, KX_OK, "");
        return;
    }
    kx_sse_feed(&call->sse, "\n\n", 2); /* dispatch a last event that had no blank line */
    if (call->stream_failed) {
        attempt_failed(call, call->stream_error_retryable, KX_ERR_PROTOCOL, call->stream_errmsg);
        return;
    }
    if (call->stream.done || call->stream.finish_reason[0] != '\0' || call->stop_requested) {
        finish(call, KX_OK, "");
        return;
    }
    snprintf(msg, sizeof msg,
             "the stream from %s ended before the answer was complete (no "
             "finish_reason and no [DONE])",
             url);
    attempt_failed(call, true, KX_ERR_PROTOCOL, msg);
}

static void reset_attempt(llm_call *call)
{
    kx_sse_free(&call->sse);
    kx_sse_init(&call->sse, on_sse_event, call);
    kx_buf_free(&call->raw);
    llm_stream_free(&call->stream);
    llm_stream_init(&call->stream);
    call->mode = BODY_UNKNOWN;
    call->stop_requested = false;
    call->stream_failed = false;
    call->stream_error_retryable = false;
    call->stream_errmsg[0] = '\0';
    call->curl_err[0] = '\0';
    call->first_chunk_ms = call->last_chunk_ms = 0;
}

static void start_attempt(llm_call *call)
{
    llm_client *c = call->c;
    call->attempt++;
    reset_attempt(call);
    int64_t remaining = kx_deadline_remaining(
        kx_deadline_min(kx_deadline_in(c->cfg->llm_timeout_s * 1000), call->wall_deadline));
    if (remaining <= 0) {
        finish(call, KX_ERR_TIMEOUT, "the run's wall-time deadline has passed");
        return;
    }
    call->attempt_timeout_ms = remaining;
    call->easy = curl_easy_init();
    if (call->easy == NULL) {
        finish(call, KX_ERR_NOMEM, "could not create an HTTP transfer (curl_easy_init)");
        return;
    }
    CURL *e = call->easy;
    curl_easy_setopt(e, CURLOPT_URL, c->url);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, c->headers);
    curl_easy_setopt(e, CURLOPT_POST, 1L);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, call->body);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(call->body));
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, call);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, call->curl_err);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "kortix-agent-runner/" KX_VERSION);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
                     (long)(remaining < CONNECT_TIMEOUT_MS ? remaining : CONNECT_TIMEOUT_MS));
    call->deadline_timer = kx_loop_timer(c->loop, remaining, on_deadline, call);
    if (call->deadline_timer == NULL) {
        release_easy(call, false);
        finish(call, KX_ERR_NOMEM, "could not arm the LLM deadline timer");
        return;
    }
    kx_err err = kx_curlm_add(c->curlm, e, on_transfer_done, call);
    if (err != KX_OK) {
        kx_timer_cancel(call->deadline_timer);
        call->deadline_timer = NULL;
        release_easy(call, false);
        char msg[800];
        snprintf(msg, sizeof msg, "could not start the HTTP transfer to %s (%s)", c->url,
                 kx_err_str(err));
        attempt_failed(call, true, err, msg);
        return;
    }
    kx_log(KX_LOG_DEBUG, call->run_id, NULL, "llm: attempt %d: POST %s (%zu bytes, %lld ms)",
           call->attempt, c->url, strlen(call->body), (long long)remaining);
}

/* ---- the call --------------------------------------------------------------------------- */

llm_call *llm_call_start(llm_client *c, char *body, kx_deadline wall_deadline, const char *run_id,
                         llm_content_cb on_content, llm_done_cb on_done, void *arg)
{
    llm_call *call = calloc(1, sizeof *call);
    if (call == NULL) {
        free(body);
        return NULL;
    }
    call->c = c;
    call->body = body;
    snprintf(call->run_id, sizeof call->run_id, "%s", run_id ? run_id : "");
    call->wall_deadline = wall_deadline;
    call->on_content = on_content;
    call->on_done = on_done;
    call->arg = arg;
    kx_sse_init(&call->sse, on_sse_event, call);
    llm_stream_init(&call->stream);
    start_attempt(call);
    return call;
}

const llm_stream *llm_call_result(const llm_call *call)
{
    return &call->stream;
}
int llm_call_attempts(const llm_call *call)
{
    return call->attempt;
}
int64_t llm_call_first_chunk_ms(const llm_call *call)
{
    return call->first_chunk_ms;
}
int64_t llm_call_last_chunk_ms(const llm_call *call)
{
    return call->last_chunk_ms;
}

void llm_call_free(llm_call *call)
{
    if (call == NULL)
        return;
    release_easy(call, true);
    kx_timer_cancel(call->deadline_timer);
    kx_timer_cancel(call->retry_timer);
    kx_timer_cancel(call->notify_timer);
    kx_sse_free(&call->sse);
    kx_buf_free(&call->raw);
    llm_stream_free(&call->stream);
    free(call->body);
    free(call);
}
