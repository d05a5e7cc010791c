/* llm.c — one streamed LLM answer with deadlines, retries and a fallback model, as a small
 * state machine on the loop (see llm.h for the contract).
 *
 *   use_model --> start_attempt --kx_curlm_add--> transfer --(write_cb -> kx_sse -> provider
 *      ^              ^                             |        parser -> on_content)
 *      |              |                             | done (on_transfer_done) or watchdog
 *      |              |                             v      (TTFB / idle / wall deadline)
 *      |          on_retry <-- backoff timer -- attempt_failed --(no retry)--+
 *      +------------------ fallback model (if any, nothing streamed yet) <---+--> finish
 *                                                                                  |
 *                                                                 timer 0 --> on_done
 *
 * Everything here runs on the loop thread. The call owns its easy handle (one per attempt),
 * its timers, its headers and request body; llm_call_free releases whatever is live. An easy
 * handle done with goes back, reset to curl's defaults, to the client's pool of idle handles
 * (up to EASY_POOL): the next attempt takes it instead of allocating a new one (libcurl's
 * handle and its receive buffer, ~1.6 % of the runner's CPU with their frees). */
#include "llm.h"
#include "tool_schemas.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "kx/curl_easy.h"
#include "kx/log.h"
#include "kx/metrics.h"
#include "kx/sse.h"
#include "kx/svc.h"
#include "kx/utf8.h"
#include "llm_provider.h"
#include "llm_route.h"
#include "prompt.h"

#define RETRY_BASE_MS 500
#define RETRY_MAX_MS 20000
#define MAX_RETRY_AFTER_MS (10 * 60 * 1000) /* a longer Retry-After is not waited for */
#define CONNECT_TIMEOUT_MS 10000
#define MAX_ERROR_BODY (64 * 1024)
#define STREAM_HEAD 300 /* bytes of an event stream kept until its first event */
#define MAX_JSON_BODY (16 * 1024 * 1024)
#define MAX_ANSWER_BYTES (4 * 1024 * 1024) /* text + tool calls of one answer */
#define EASY_POOL 64                       /* idle easy handles kept for the next attempts */
#define END_GRACE_MS 1000 /* after the answer's end, how long its body may stay open */

struct llm_client {
    const runner_config *cfg;
    kx_loop *loop;
    kx_curlm *curlm;
    json_t *tools;         /* the tool schemas, OpenAI form */
    uint64_t rng;          /* jitter */
    CURL *idle[EASY_POOL]; /* reset handles, not in a multi */
    int nidle;
};

typedef enum body_mode {
    BODY_UNKNOWN = 0, /* no byte of the body yet */
    BODY_SSE,         /* 200, an event stream */
    BODY_JSON,        /* 200, a whole JSON answer (server ignored "stream") */
    BODY_ERROR,       /* not 200: kept to read the provider's error message */
} body_mode;

struct llm_call {
    llm_client *c;
    json_t *messages;
    char *system;       /* NULL: prompt_system() */
    json_t *tools;      /* NULL: the client's default schemas */
    int64_t max_tokens; /* 0: the provider's default */
    void (*on_calls)(void *arg, const llm_stream *s);
    char run_id[40];
    kx_deadline wall_deadline;
    llm_content_cb on_content;
    llm_done_cb on_done;
    void *arg;

    /* the model in use: 0 the primary, 1 the fallback */
    int model_index;
    llm_route route;
    const llm_provider *prov;
    char *body;
    size_t body_len;
    struct curl_slist *headers;
    int attempt;        /* attempts of this model */
    int total_attempts; /* all models */
    char primary_error[1200];

    /* the live attempt */
    CURL *easy; /* non-NULL while added to the multi */
    kx_timer *watchdog;
    int64_t started_mono, last_byte_mono; /* last_byte_mono 0: nothing received yet */
    int64_t retry_after_ms;               /* from the answer's headers, -1 if none */
    kx_sse_parser sse;
    size_t nevents; /* events the SSE parser dispatched */
    char ctype[64]; /* the response's content type, "" if none */
    body_mode mode;
    kx_buf raw;    /* BODY_ERROR / BODY_JSON bytes; BODY_SSE: its first bytes, for the message
                   when no event comes */
    bool raw_full; /* BODY_ERROR: enough of the body kept, the rest not read */
    bool stop_requested;         /* on_content returned false */
    bool stream_failed;          /* an error event or malformed data in the stream */
    bool stream_error_retryable; /* the provider reported an error (vs. malformed data) */
    char stream_errmsg[600];
    char curl_err[CURL_ERROR_SIZE];

    llm_stream stream; /* the answer (reset per attempt: retries happen only before output) */
    int64_t first_chunk_ms, last_chunk_ms;

    kx_timer *retry_timer;
    kx_timer *notify_timer;
    kx_err result;
    char result_msg[2600];
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
    c->tools = prompt_tools();
    if (c->tools == NULL) {
        free(c);
        return KX_ERR_NOMEM;
    }
    c->rng = (uint64_t)kx_mono_us() ^ ((uint64_t)(uintptr_t)c << 16) ^ 0x9e3779b97f4a7c15ULL;
    *out = c;
    return KX_OK;
}

void llm_client_free(llm_client *c)
{
    if (c == NULL)
        return;
    json_decref(c->tools);
    for (int i = 0; i < c->nidle; i++)
        curl_easy_cleanup(c->idle[i]);
    free(c);
}

/* An easy handle with curl's default options: an idle one, or a new one (NULL: no memory). */
static CURL *easy_get(llm_client *c)
{
    if (c->nidle > 0)
        return c->idle[--c->nidle];
    return curl_easy_init();
}

/* Takes back an easy handle that is in no multi: reset (no option points into a call any
 * more) and kept for the next attempt, or freed when the pool is full. */
static void easy_put(llm_client *c, CURL *e)
{
    if (c->nidle == EASY_POOL) {
        curl_easy_cleanup(e);
        return;
    }
    curl_easy_reset(e);
    c->idle[c->nidle++] = e;
}

static uint64_t next_rand(llm_client *c)
{
    uint64_t x = c->rng; /* xorshift64: jitter only, not secrecy */
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    c->rng = x;
    return x;
}

int64_t llm_retry_after_ms(const char *value, int64_t now_ms)
{
    while (*value == ' ' || *value == '\t')
        value++;
    size_t n = strlen(value);
    while (n > 0 && isspace((unsigned char)value[n - 1]))
        n--;
    if (n == 0)
        return -1;
    char v[128];
    if (n >= sizeof v)
        return -1;
    memcpy(v, value, n);
    v[n] = '\0';
    size_t digits = strspn(v, "0123456789");
    if (digits == n) {
        if (n > 9)
            return 1000000000LL * 1000; /* absurd: the wall deadline will refuse it */
        return strtoll(v, NULL, 10) * 1000;
    }
    time_t t = curl_getdate(v, NULL);
    if (t == (time_t)-1)
        return -1;
    int64_t ms = (int64_t)t * 1000 - now_ms;
    return ms > 0 ? ms : 0;
}

/* ---- results -------------------------------------------------------------------------- */

static void on_notify(kx_loop *loop, void *arg)
{
    (void)loop;
    llm_call *call = arg;
    call->notify_timer = NULL; /* the loop freed it */
    call->on_done(call->arg, call, call->result, call->result_msg);
}

/* Ends the call: on_done runs from a fresh loop iteration. */
static void finish(llm_call *call, kx_err err, const char *msg)
{
    call->result = err;
    if (err == KX_OK) {
        call->result_msg[0] = '\0';
    } else {
        int n = call->attempt > 1 ? snprintf(call->result_msg, sizeof call->result_msg,
                                             "%s (after %d attempts)", msg, call->attempt)
                                  : snprintf(call->result_msg, sizeof call->result_msg, "%s", msg);
        if (call->primary_error[0] != '\0' && n >= 0 && (size_t)n < sizeof call->result_msg)
            snprintf(call->result_msg + n, sizeof call->result_msg - (size_t)n,
                     "; before it, the primary model failed: %s", call->primary_error);
        /* it quotes the provider's bytes and was cut to fit: it goes into JSON rows and a
         * Postgres text column, which take UTF-8 only */
        kx_utf8_scrub(call->result_msg);
    }
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

/* Resolves model and prepares its request; tools_text (borrowed, may be NULL) is the printed
 * call->tools when the caller has it (the first model; a fallback model's body prints the
 * tools from the tree again). false: finished with the reason. */
static bool use_model(llm_call *call, const char *model, const char *tools_text)
{
    llm_client *c = call->c;
    char why[400];
    if (llm_route_resolve(c->cfg, model, &call->route, why, sizeof why) != KX_OK) {
        finish(call, KX_ERR_INVALID, why);
        return false;
    }
    call->prov = llm_provider_of(call->route.wire);
    free(call->body);
    curl_slist_free_all(call->headers);
    call->body =
        call->prov->body(c->cfg, &call->route, call->system ? call->system : prompt_system(),
                         call->tools ? call->tools : c->tools, call->tools ? tools_text : NULL,
                         call->messages, call->max_tokens);
    call->headers = call->prov->headers(c->cfg, &call->route);
    if (call->body == NULL || call->headers == NULL) {
        finish(call, KX_ERR_NOMEM, "out of memory building the LLM request");
        return false;
    }
    call->body_len = strlen(call->body);
    call->attempt = 0;
    return true;
}

static void on_retry(kx_loop *loop, void *arg)
{
    (void)loop;
    llm_call *call = arg;
    call->retry_timer = NULL;
    start_attempt(call);
}

/* Tries the fallback model, if there is one to try. true: it is under way. */
static bool try_fallback(llm_call *call, const char *msg)
{
    const runner_config *cfg = call->c->cfg;
    if (call->model_index != 0 || cfg->fallback_model[0] == '\0')
        return false;
    llm_route fb;
    char why[400];
    if (llm_route_resolve(cfg, cfg->fallback_model, &fb, why, sizeof why) == KX_OK &&
        strcmp(fb.name, call->route.name) == 0)
        return false; /* the fallback is the model that just failed */
    if (call->attempt > 1)
        snprintf(call->primary_error, sizeof call->primary_error, "%.1100s (after %d attempts)",
                 msg, call->attempt);
    else
        snprintf(call->primary_error, sizeof call->primary_error, "%.1150s", msg);
    kx_log(KX_LOG_WARN, call->run_id, NULL, "llm: model %s stays down (%s); falling back to %s",
           call->route.name, msg, cfg->fallback_model);
    kx_counter_add(kx_metrics_counter("kx_runner_llm_fallbacks_total", "",
                                      "LLM calls that went to the fallback model"),
                   1);
    call->model_index = 1;
    if (!use_model(call, cfg->fallback_model, NULL))
        return true; /* finished with the reason */
    call->retry_timer = kx_loop_timer(call->c->loop, 0, on_retry, call);
    if (call->retry_timer == NULL)
        finish(call, KX_ERR_NOMEM, "could not arm a timer for the fallback model");
    return true;
}

/* An attempt failed: retry (if allowed and nothing reached the caller yet), fall back, or
 * finish. msg already names the provider and model. */
static void attempt_failed(llm_call *call, bool retryable, kx_err err, const char *msg)
{
    llm_client *c = call->c;
    const runner_config *cfg = c->cfg;
    if (kx_deadline_expired(call->wall_deadline)) {
        finish(call, KX_ERR_TIMEOUT, msg);
        return;
    }
    if (!retryable || call->stream.received_output) {
        finish(call, err, msg);
        return;
    }
    if (call->attempt <= cfg->llm_retries) {
        int64_t delay;
        bool told = call->retry_after_ms >= 0;
        if (told) {
            delay = call->retry_after_ms;
        } else {
            int shift = call->attempt - 1 < 10 ? call->attempt - 1 : 10;
            int64_t base = (int64_t)RETRY_BASE_MS << shift;
            if (base > RETRY_MAX_MS)
                base = RETRY_MAX_MS;
            delay = base / 2 + (int64_t)(next_rand(c) % (uint64_t)(base / 2 + 1));
        }
        int64_t left = kx_deadline_remaining(call->wall_deadline);
        bool past_wall = call->wall_deadline != KX_NO_DEADLINE && delay >= left;
        if (past_wall || delay > MAX_RETRY_AFTER_MS) {
            /* the model stays down longer than this run can wait: the fallback, or the end */
            char m[1600];
            snprintf(m, sizeof m, "%s; not retried: the wait (%lld ms%s) %s", msg,
                     (long long)delay, told ? ", the provider's Retry-After" : "",
                     past_wall ? "would pass the run's wall deadline" : "is too long");
            if (!try_fallback(call, m))
                finish(call, err, m);
            return;
        }
        kx_log(KX_LOG_WARN, call->run_id, NULL,
               "llm: attempt %d failed (%s); retrying in %lld ms%s", call->attempt, msg,
               (long long)delay, told ? " (Retry-After)" : "");
        kx_counter_add(kx_metrics_counter("kx_runner_llm_retries_total", "",
                                          "LLM attempts retried"),
                       1);
        call->retry_timer = kx_loop_timer(c->loop, delay, on_retry, call);
        if (call->retry_timer != NULL)
            return;
    }
    if (try_fallback(call, msg))
        return;
    finish(call, err, msg);
}

/* "<provider> model <model>: " */
static int prefix(const llm_call *call, char *out, size_t cap)
{
    return snprintf(out, cap, "%s model %s: ", call->route.provider, call->route.model);
}

static void attempt_failedf(llm_call *call, bool retryable, kx_err err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void attempt_failedf(llm_call *call, bool retryable, kx_err err, const char *fmt, ...)
{
    char msg[1400];
    int n = prefix(call, msg, sizeof msg);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg + n, sizeof msg - (size_t)n, fmt, ap);
    va_end(ap);
    attempt_failed(call, retryable, err, msg);
}

/* ---- the transfer ---------------------------------------------------------------------- */

static void watchdog_rearm(llm_call *call, int64_t in_ms);

/* What an answer holds: its text and its tool calls (a call's name and id too: a provider may
 * send a different fragment of the name in every delta, and each is appended). */
static size_t answer_bytes(const llm_stream *s)
{
    size_t n = s->content.len;
    for (size_t i = 0; i < s->ncalls; i++)
        n += s->calls[i].arguments.len + s->calls[i].name.len + s->calls[i].id.len;
    return n;
}

static void on_sse_event(const char *event, const char *data, size_t len, const char *id,
                         void *arg)
{
    (void)id;
    llm_call *call = arg;
    call->nevents++;
    if (call->stop_requested || call->stream_failed || call->stream.done)
        return; /* (after the answer's end: nothing more belongs to it) */
    /* an OpenAI-compatible server's error event (Anthropic's is parsed by its provider) */
    if (call->route.wire == LLM_WIRE_OPENAI && event != NULL && strcmp(event, "error") == 0) {
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
    llm_feed_result r = call->prov->feed(&call->stream, event, data, len, &from);
    switch (r) {
    case LLM_FEED_OK: break;
    case LLM_FEED_DONE:
        /* the body normally ends right after; a provider that keeps it open (pinging or
         * silent) does not hold the answer until the idle or the wall deadline */
        if (call->watchdog != NULL)
            watchdog_rearm(call, END_GRACE_MS);
        break;
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
    if (answer_bytes(&call->stream) > MAX_ANSWER_BYTES) {
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
    if (call->on_calls != NULL && call->stream.ncalls > 0)
        call->on_calls(call->arg, &call->stream);
}

/* Chooses how to read the body from the status and content type of the response. */
static void pick_mode(llm_call *call)
{
    long status = 0;
    curl_easy_getinfo(call->easy, CURLINFO_RESPONSE_CODE, &status);
    const char *ctype = NULL;
    curl_easy_getinfo(call->easy, CURLINFO_CONTENT_TYPE, &ctype);
    snprintf(call->ctype, sizeof call->ctype, "%s", ctype != NULL ? ctype : "");
    if (status != 200)
        call->mode = BODY_ERROR;
    else if (ctype != NULL && strstr(ctype, "json") != NULL)
        call->mode = BODY_JSON;
    else
        call->mode = BODY_SSE;
}

static void on_watchdog(kx_loop *loop, void *arg);
static int64_t watchdog_in(const llm_call *call);

/* The watchdog looks again in in_ms (sooner than it would have). */
static void watchdog_rearm(llm_call *call, int64_t in_ms)
{
    kx_timer *t = kx_loop_timer(call->c->loop, in_ms, on_watchdog, call);
    if (t != NULL) { /* else (out of memory) the old one stays: it re-arms when it fires */
        kx_timer_cancel(call->watchdog);
        call->watchdog = t;
    }
}

/* A byte arrived. The first one switches the watchdog from the first byte's deadline to the
 * idle gap's, which may be sooner. */
static void got_bytes(llm_call *call)
{
    bool first = call->last_byte_mono == 0;
    call->last_byte_mono = kx_mono_ms();
    if (first && call->watchdog != NULL && call->c->cfg->llm_idle_ms < call->c->cfg->llm_ttfb_ms)
        watchdog_rearm(call, watchdog_in(call));
}

static size_t header_cb(char *ptr, size_t size, size_t nmemb, void *arg)
{
    llm_call *call = arg;
    size_t n = size * nmemb;
    got_bytes(call);
    char line[200];
    if (n >= sizeof line)
        return n;
    memcpy(line, ptr, n);
    line[n] = '\0';
    if (strncasecmp(line, "HTTP/", 5) == 0) { /* a new response (e.g. after a 100) */
        call->retry_after_ms = -1;
    } else if (strncasecmp(line, "retry-after-ms:", 15) == 0) { /* OpenAI's, in ms */
        char *end = NULL;
        long long ms = strtoll(line + 15, &end, 10);
        while (end != NULL && isspace((unsigned char)*end))
            end++;
        if (end != NULL && *end == '\0' && ms >= 0 && ms < 1000000000LL)
            call->retry_after_ms = ms;
    } else if (strncasecmp(line, "retry-after:", 12) == 0 && call->retry_after_ms < 0) {
        call->retry_after_ms = llm_retry_after_ms(line + 12, kx_now_ms());
    }
    return n;
}

static size_t write_cb(char *ptr, size_t size, size_t nmemb, void *arg)
{
    llm_call *call = arg;
    size_t n = size * nmemb;
    got_bytes(call);
    if (call->mode == BODY_UNKNOWN)
        pick_mode(call);
    if (call->mode == BODY_SSE) {
        if (call->stream.done) { /* bytes after the answer's end: it is whole, stop reading */
            call->stop_requested = true;
            return 0;
        }
        if (call->nevents == 0 && call->raw.len < STREAM_HEAD &&
            kx_buf_add(&call->raw, ptr,
                       n < STREAM_HEAD - call->raw.len ? n : STREAM_HEAD - call->raw.len) != KX_OK)
            return 0;
        kx_err err = kx_sse_feed(&call->sse, ptr, n);
        if (err == KX_ERR_PROTOCOL && !call->stream_failed) /* kx_sse's only one */
            snprintf(call->stream_errmsg, sizeof call->stream_errmsg,
                     "the LLM stream sent an event or a line of more than %zu bytes",
                     call->sse.max_event_bytes);
        else if (err != KX_OK && !call->stream_failed)
            snprintf(call->stream_errmsg, sizeof call->stream_errmsg,
                     "the LLM stream could not be parsed as server-sent events (%s)",
                     kx_err_str(err));
        if (err != KX_OK)
            call->stream_failed = true;
        if (call->stop_requested || call->stream_failed)
            return 0; /* abort the transfer: on_transfer_done sees why */
        return n;
    }
    size_t cap = call->mode == BODY_JSON ? MAX_JSON_BODY : MAX_ERROR_BODY;
    size_t keep = n < cap - call->raw.len ? n : cap - call->raw.len;
    if (kx_buf_add(&call->raw, ptr, keep) != KX_OK)
        return 0;
    if (keep == n)
        return n;
    /* more than the cap: not read on (a body that never ends would hold the call to its wall
     * deadline); the status and the kept bytes say what happened */
    if (call->mode == BODY_JSON) {
        snprintf(call->stream_errmsg, sizeof call->stream_errmsg,
                 "the LLM answer (one JSON body, not a stream) exceeded %d bytes", MAX_JSON_BODY);
        call->stream_failed = true;
    } else {
        call->raw_full = true;
    }
    return 0;
}

static void release_easy(llm_call *call, bool remove)
{
    if (call->easy == NULL)
        return;
    if (remove)
        kx_curlm_remove(call->c->curlm, call->easy);
    easy_put(call->c, call->easy);
    call->easy = NULL;
}

/* When the watchdog must look next: the first byte's, the idle gap's or the wall deadline. */
static int64_t watchdog_in(const llm_call *call)
{
    const runner_config *cfg = call->c->cfg;
    int64_t now = kx_mono_ms();
    int64_t due = call->last_byte_mono != 0 ? call->last_byte_mono + cfg->llm_idle_ms
                                            : call->started_mono + cfg->llm_ttfb_ms;
    int64_t in = due - now;
    if (call->wall_deadline != KX_NO_DEADLINE) {
        int64_t left = kx_deadline_remaining(call->wall_deadline);
        if (left < in)
            in = left;
    }
    return in > 0 ? in : 0;
}

static void on_watchdog(kx_loop *loop, void *arg)
{
    llm_call *call = arg;
    call->watchdog = NULL;
    if (call->stream.done) { /* the answer ended END_GRACE_MS ago; its body is still open */
        release_easy(call, true);
        finish(call, KX_OK, "");
        return;
    }
    const runner_config *cfg = call->c->cfg;
    int64_t now = kx_mono_ms();
    bool wall = kx_deadline_expired(call->wall_deadline);
    bool ttfb = call->last_byte_mono == 0 && now - call->started_mono >= cfg->llm_ttfb_ms;
    bool idle = call->last_byte_mono != 0 && now - call->last_byte_mono >= cfg->llm_idle_ms;
    if (!wall && !ttfb && !idle) { /* bytes came meanwhile: look again later */
        call->watchdog = kx_loop_timer(loop, watchdog_in(call), on_watchdog, call);
        if (call->watchdog != NULL)
            return;
    }
    release_easy(call, true);
    if (wall)
        attempt_failedf(call, false, KX_ERR_TIMEOUT,
                        "the run's wall-time deadline passed while waiting for %s",
                        call->route.url);
    else if (ttfb)
        attempt_failedf(call, true, KX_ERR_TIMEOUT,
                        "no answer from %s within %lld ms (KX_LLM_TTFB_MS)", call->route.url,
                        (long long)cfg->llm_ttfb_ms);
    else if (idle)
        attempt_failedf(call, true, KX_ERR_TIMEOUT,
                        "%s went silent for %lld ms in the middle of its answer "
                        "(KX_LLM_IDLE_MS)",
                        call->route.url, (long long)cfg->llm_idle_ms);
    else
        attempt_failedf(call, true, KX_ERR_NOMEM, "could not re-arm the LLM watchdog timer");
}

static void on_transfer_done(CURL *easy, CURLcode result, void *arg)
{
    llm_call *call = arg;
    kx_timer_cancel(call->watchdog);
    call->watchdog = NULL;
    long status = 0;
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
    release_easy(call, false); /* kx_curlm already removed it */
    const char *url = call->route.url;

    if (call->stop_requested) { /* the caller has what it needs */
        finish(call, KX_OK, "");
        return;
    }
    if (call->stream_failed) {
        attempt_failedf(call, call->stream_error_retryable, KX_ERR_PROTOCOL, "%s",
                        call->stream_errmsg);
        return;
    }
    if (result != CURLE_OK && !call->raw_full) {
        attempt_failedf(call, true, KX_ERR_UNAVAILABLE, "could not talk to %s: %s%s%s", url,
                        curl_easy_strerror(result), call->curl_err[0] ? ": " : "", call->curl_err);
        return;
    }
    if (status != 200) {
        char detail[500];
        llm_error_message(call->raw.s, call->raw.len, detail, sizeof detail);
        bool retryable = status == 408 || status == 429 || status >= 500;
        attempt_failedf(call, retryable, retryable ? KX_ERR_UNAVAILABLE : KX_ERR_INVALID,
                        "HTTP %ld from %s: %s", status, url, detail);
        return;
    }
    if (call->mode == BODY_JSON) {
        llm_feed_result r = call->prov->feed(&call->stream, NULL, call->raw.s ? call->raw.s : "",
                                             call->raw.len, NULL);
        if (r == LLM_FEED_ERROR || r == LLM_FEED_MALFORMED || r == LLM_FEED_NOMEM) {
            attempt_failedf(call, r == LLM_FEED_ERROR, KX_ERR_PROTOCOL, "%s%s",
                            r == LLM_FEED_ERROR ? "the model reported an error: " : "",
                            r == LLM_FEED_NOMEM ? "out of memory" : call->stream.error);
            return;
        }
        if (answer_bytes(&call->stream) > MAX_ANSWER_BYTES) { /* as a streamed answer's */
            attempt_failedf(call, false, KX_ERR_PROTOCOL, "the LLM answer exceeded %d bytes",
                            MAX_ANSWER_BYTES);
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
        attempt_failedf(call, call->stream_error_retryable, KX_ERR_PROTOCOL, "%s",
                        call->stream_errmsg);
        return;
    }
    if (call->stream.done || call->stream.finish_reason[0] != '\0' || call->stop_requested) {
        finish(call, KX_OK, "");
        return;
    }
    if (call->nevents == 0) { /* not an event stream at all (a page, a compressed body, ...) */
        char head[STREAM_HEAD + 1];
        llm_error_message(call->raw.s, call->raw.len, head, sizeof head);
        attempt_failedf(call, true, KX_ERR_PROTOCOL,
                        "%s answered 200 but sent no event (content-type %s): %s", url,
                        call->ctype[0] != '\0' ? call->ctype : "none", head);
        return;
    }
    attempt_failedf(call, true, KX_ERR_PROTOCOL,
                    "the stream from %s ended in the middle of the answer (%zu bytes of text "
                    "and %zu tool call(s) so far, no %s)",
                    url, call->stream.content.len, call->stream.ncalls,
                    call->route.wire == LLM_WIRE_ANTHROPIC ? "message_stop"
                                                           : "finish_reason and no [DONE]");
}

static void reset_attempt(llm_call *call)
{
    kx_sse_free(&call->sse);
    kx_sse_init(&call->sse, on_sse_event, call);
    kx_buf_free(&call->raw);
    call->raw_full = false;
    call->nevents = 0;
    call->ctype[0] = '\0';
    llm_stream_free(&call->stream);
    llm_stream_init(&call->stream);
    call->mode = BODY_UNKNOWN;
    call->stop_requested = false;
    call->stream_failed = false;
    call->stream_error_retryable = false;
    call->stream_errmsg[0] = '\0';
    call->curl_err[0] = '\0';
    call->first_chunk_ms = call->last_chunk_ms = 0;
    call->last_byte_mono = 0;
    call->retry_after_ms = -1;
}

static void start_attempt(llm_call *call)
{
    llm_client *c = call->c;
    call->attempt++;
    call->total_attempts++;
    reset_attempt(call);
    if (kx_deadline_expired(call->wall_deadline)) {
        finish(call, KX_ERR_TIMEOUT, "the run's wall-time deadline has passed");
        return;
    }
    call->easy = easy_get(c);
    if (call->easy == NULL) {
        finish(call, KX_ERR_NOMEM, "could not create an HTTP transfer (curl_easy_init)");
        return;
    }
    CURL *e = call->easy;
    int64_t connect_ms =
        c->cfg->llm_ttfb_ms < CONNECT_TIMEOUT_MS ? c->cfg->llm_ttfb_ms : CONNECT_TIMEOUT_MS;
    curl_easy_setopt(e, CURLOPT_URL, call->route.url);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, call->headers);
    curl_easy_setopt(e, CURLOPT_POST, 1L);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, call->body);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)call->body_len);
    /* no transfer timeout: the watchdog bounds the stream (first byte, stalls, wall time) */
    kx_curl_opts o = {.on_body = write_cb,
                      .body_arg = call,
                      .errbuf = call->curl_err,
                      .user_agent = "kortix-agent-runner/" KX_VERSION,
                      .timeout_ms = 0,
                      .connect_ms = connect_ms};
    kx_curl_easy_setup(e, &o);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, header_cb);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, call);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    call->started_mono = kx_mono_ms();
    call->watchdog = kx_loop_timer(c->loop, watchdog_in(call), on_watchdog, call);
    if (call->watchdog == NULL) {
        release_easy(call, false);
        finish(call, KX_ERR_NOMEM, "could not arm the LLM deadline timer");
        return;
    }
    kx_err err = kx_curlm_add(c->curlm, e, on_transfer_done, call);
    if (err != KX_OK) {
        kx_timer_cancel(call->watchdog);
        call->watchdog = NULL;
        release_easy(call, false);
        attempt_failedf(call, true, err, "could not start the HTTP transfer to %s (%s)",
                        call->route.url, kx_err_str(err));
        return;
    }
    kx_log(KX_LOG_DEBUG, call->run_id, NULL, "llm: attempt %d: POST %s (%s, model %s, %zu bytes)",
           call->attempt, call->route.url, call->prov->wire_name, call->route.model,
           call->body_len);
}

/* ---- the call --------------------------------------------------------------------------- */

llm_call *llm_call_start(llm_client *c, const char *model, json_t *messages,
                         kx_deadline wall_deadline, const char *run_id, llm_content_cb on_content,
                         llm_done_cb on_done, void *arg)
{
    return llm_call_start_opts(c, model, messages, NULL, wall_deadline, run_id, on_content,
                               on_done, arg);
}

llm_call *llm_call_start_opts(llm_client *c, const char *model, json_t *messages,
                              const llm_opts *opts, kx_deadline wall_deadline, const char *run_id,
                              llm_content_cb on_content, llm_done_cb on_done, void *arg)
{
    llm_call *call = calloc(1, sizeof *call);
    if (call == NULL)
        return NULL;
    call->c = c;
    call->messages = json_incref(messages);
    if (opts != NULL) {
        if (opts->system != NULL && (call->system = strdup(opts->system)) == NULL) {
            json_decref(call->messages);
            free(call);
            return NULL;
        }
        call->tools = opts->tools ? json_incref(opts->tools) : NULL;
        call->max_tokens = opts->max_tokens;
        call->on_calls = opts->on_calls;
    }
    snprintf(call->run_id, sizeof call->run_id, "%s", run_id ? run_id : "");
    call->wall_deadline = wall_deadline;
    call->on_content = on_content;
    call->on_done = on_done;
    call->arg = arg;
    call->retry_after_ms = -1;
    kx_sse_init(&call->sse, on_sse_event, call);
    llm_stream_init(&call->stream);
    /* the tools' text serves the first body only, read here (not copied): a run held in its
     * call holds the body only */
    if (use_model(call, model, opts != NULL ? opts->tools_text : NULL))
        start_attempt(call);
    return call;
}

const llm_stream *llm_call_result(const llm_call *call)
{
    return &call->stream;
}
int llm_call_attempts(const llm_call *call)
{
    return call->total_attempts;
}
const char *llm_call_model(const llm_call *call)
{
    return call->route.name;
}
const char *llm_call_provider(const llm_call *call)
{
    return call->route.provider ? call->route.provider : "";
}
size_t llm_call_request_bytes(const llm_call *call)
{
    return call->body_len;
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
    kx_timer_cancel(call->watchdog);
    kx_timer_cancel(call->retry_timer);
    kx_timer_cancel(call->notify_timer);
    kx_sse_free(&call->sse);
    kx_buf_free(&call->raw);
    llm_stream_free(&call->stream);
    curl_slist_free_all(call->headers);
    json_decref(call->messages);
    free(call->system);
    json_decref(call->tools);
    free(call->body);
    free(call);
}
