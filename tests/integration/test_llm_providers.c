/* test_llm_providers.c — the agent-runner's LLM providers against a fake provider that speaks
 * the real wire formats over HTTP (tests/fakes/llm-provider/fake-llm.js: OpenAI Chat
 * Completions and Anthropic Messages, streamed).
 *
 * Group "llm" drives llm.c directly on a loop in this process (exact timings, no stack):
 *   1. OpenAI-compatible: text and tool-call deltas, usage, the Bearer key and the body;
 *   2. Anthropic: text and tool_use + input_json_delta, usage, x-api-key, anthropic-version,
 *      system at the top level and tools with input_schema;
 *   3. 429 with Retry-After: 2 (and an HTTP date): the retry waits that long;
 *   4. 500/529 until the fallback model answers; both down: the message names both; a
 *      Retry-After past the run's wall deadline: the fallback at once, or a clear failure;
 *   5. a stream that stops mid-message: failed, not retried, a message that says so;
 *   6. an answer streaming for 3.6 s with an idle timeout of 1 s that never pauses that long:
 *      completes;
 *   7. a provider that goes silent after its first event: fails at the idle timeout;
 *   8. a provider that never answers: fails at the time-to-first-byte timeout;
 *   9. an error event after output: failed with the provider's message;
 *  10. cancel mid-stream: the fake sees its connection closed within 200 ms;
 *  a hostile or broken provider (the fake's h-* scenarios):
 *  11. bytes that are not UTF-8 in a data line: failed, with a message that is UTF-8;
 *  12. a tool call's name growing by 1 MiB a delta: failed at the answer's cap;
 *  13. the answer's end, then the body kept open (pinging or silent): complete within 1 s;
 *  14. an error body (or a whole JSON answer) that never ends: failed at once at its cap;
 *  15. a 200 that is no event stream, a line over the SSE cap: messages that say so.
 * Group "stack" runs the whole stack with the runner pointed at the fake:
 *  16. a run on an alias of an Anthropic model: a tool call round trip (the tool_result goes
 *      back as Anthropic's block), usage recorded in each turn's assistant_response_end;
 *  17. STOP mid-stream: the fake sees the transfer cancelled (within 500 ms of the STOP's
 *      answer; the STOP crosses the gateway and NATS first);
 *  18. a stream cut mid-message: the run fails with the provider, the model and the reason;
 *  19. bytes that are not UTF-8: the run fails with the parser's words (not "out of memory");
 *  20. a call's arguments growing in deltas that each end with '}': the run fails at the cap
 *      within seconds and another run is not held up (execute-on-stream reads them once). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <jansson.h>

#include "config.h"
#include "harness.h"
#include "kx/curlm.h"
#include "kx/loop.h"
#include "kx/time.h"
#include "kx/utf8.h"
#include "kx/uuid.h"
#include "llm.h"
#include "api_client.h"
#include "fake_log.h"
#include "stack.h"

#define FAKE KX_SOURCE_DIR "/tests/fakes/llm-provider/fake-llm.js"
#define STREAM_TIMEOUT_MS 30000

static char *g_dir;
static pid_t g_fake;
static uint16_t g_port;
static kx_th_stack g_stack;

static void sleep_ms(int64_t ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* ---- the fake's request log ------------------------------------------------------------ */

/* The requests the fake got for model (its name as sent), in order: a new array. */
static json_t *requests_for(const char *model)
{
    char cond[128];
    snprintf(cond, sizeof cond, "model=%s", model);
    return kx_th_fake_log(g_port, cond, NULL);
}

static int64_t jint(const json_t *o, const char *k)
{
    return (int64_t)json_integer_value(json_object_get(o, k));
}

static const char *jstr(const json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

/* ---- llm.c on a loop of our own ------------------------------------------------------- */

typedef struct ctx {
    kx_loop *loop;
    kx_curlm *curlm;
    runner_config cfg;
    llm_client *client;
    llm_call *call;
    bool done;
    kx_err err;
    char msg[4096];
    size_t content_events;
    int64_t first_content_mono;
    int64_t cancel_after_ms; /* > 0: cancel that long after the first content */
    int64_t cancelled_at;    /* kx_now_ms of the cancel */
    kx_timer *cancel_timer;
    int64_t wall_ms; /* the call's wall deadline; 0: 60 s */
} ctx;

static void base_cfg(runner_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->provider = PROVIDER_DEMO;
    cfg->provider_name = "demo";
    snprintf(cfg->demo_url, sizeof cfg->demo_url, "http://127.0.0.1:%u/v1", g_port);
    cfg->openai_set = cfg->anthropic_set = true;
    snprintf(cfg->openai_base_url, sizeof cfg->openai_base_url, "http://127.0.0.1:%u/v1", g_port);
    snprintf(cfg->openai_api_key, sizeof cfg->openai_api_key, "sk-openai-test");
    snprintf(cfg->anthropic_base_url, sizeof cfg->anthropic_base_url, "http://127.0.0.1:%u",
             g_port);
    snprintf(cfg->anthropic_api_key, sizeof cfg->anthropic_api_key, "sk-ant-test");
    snprintf(cfg->anthropic_version, sizeof cfg->anthropic_version, "2023-06-01");
    snprintf(cfg->model, sizeof cfg->model, "text");
    cfg->llm_ttfb_ms = 5000;
    cfg->llm_idle_ms = 5000;
    cfg->llm_retries = 2;
    cfg->llm_max_tokens = 1024;
}

static void on_cancel(kx_loop *loop, void *arg)
{
    ctx *c = arg;
    c->cancel_timer = NULL;
    c->cancelled_at = kx_now_ms();
    llm_call_free(c->call);
    c->call = NULL;
    c->done = true;
    kx_loop_stop(loop);
}

static bool on_content(void *arg, const char *delta, size_t len)
{
    (void)delta;
    (void)len;
    ctx *c = arg;
    if (c->content_events++ == 0) {
        c->first_content_mono = kx_mono_ms();
        if (c->cancel_after_ms > 0)
            c->cancel_timer = kx_loop_timer(c->loop, c->cancel_after_ms, on_cancel, c);
    }
    return true;
}

static void on_done(void *arg, llm_call *call, kx_err err, const char *message)
{
    (void)call;
    ctx *c = arg;
    c->done = true;
    c->err = err;
    snprintf(c->msg, sizeof c->msg, "%s", message ? message : "");
    kx_loop_stop(c->loop);
}

static void ctx_init(ctx *c)
{
    memset(c, 0, sizeof *c);
    base_cfg(&c->cfg);
    c->loop = kx_loop_new();
    assert_non_null(c->loop);
    assert_int_equal(kx_curlm_new(c->loop, &c->curlm), KX_OK);
}

/* Runs one call of model to its end; returns how long it took (ms). */
static int64_t ctx_call(ctx *c, const char *model)
{
    assert_int_equal(llm_client_new(&c->cfg, c->loop, c->curlm, &c->client), KX_OK);
    json_t *msgs = json_loads("[{\"role\":\"user\",\"content\":\"hi\"}]", 0, NULL);
    int64_t t0 = kx_mono_ms();
    c->call =
        llm_call_start(c->client, model, msgs, kx_deadline_in(c->wall_ms ? c->wall_ms : 60000),
                       "test", on_content, on_done, c);
    json_decref(msgs);
    assert_non_null(c->call);
    while (!c->done)
        assert_int_equal(kx_loop_run(c->loop), KX_OK);
    return kx_mono_ms() - t0;
}

static void ctx_free(ctx *c)
{
    kx_timer_cancel(c->cancel_timer);
    llm_call_free(c->call);
    llm_client_free(c->client);
    kx_curlm_free(c->curlm);
    kx_loop_free(c->loop);
}

static void test_openai_tool_deltas(void **state)
{
    (void)state;
    ctx c;
    ctx_init(&c);
    ctx_call(&c, "openai/tool:c1");
    assert_int_equal(c.err, KX_OK);
    const llm_stream *s = llm_call_result(c.call);
    assert_string_equal(s->content.s, "Let me run it.");
    assert_int_equal(s->ncalls, 1);
    assert_string_equal(s->calls[0].id.s, "toolu_fake_1");
    assert_string_equal(s->calls[0].name.s, "execute_command");
    assert_string_equal(s->calls[0].arguments.s,
                        "{\"command\": \"echo hi from the fake\", \"blocking\": true}");
    assert_string_equal(s->finish_reason, "tool_calls");
    assert_int_equal(s->prompt_tokens, 31);
    assert_int_equal(s->completion_tokens, 17);
    assert_int_equal(s->total_tokens, 48);
    assert_true(c.content_events >= 2); /* streamed, not at the end */
    json_t *reqs = requests_for("tool:c1");
    assert_int_equal(json_array_size(reqs), 1);
    json_t *r = json_array_get(reqs, 0);
    assert_string_equal(jstr(r, "path"), "/v1/chat/completions");
    assert_string_equal(jstr(json_object_get(r, "headers"), "authorization"),
                        "Bearer sk-openai-test");
    json_t *body = json_object_get(r, "body");
    assert_true(json_is_true(json_object_get(body, "stream")));
    assert_string_equal(jstr(json_array_get(json_object_get(body, "messages"), 0), "role"),
                        "system");
    assert_true(json_array_size(json_object_get(body, "tools")) >= 1);
    json_decref(reqs);
    ctx_free(&c);
}

static void test_anthropic_tool_use(void **state)
{
    (void)state;
    ctx c;
    ctx_init(&c);
    ctx_call(&c, "anthropic/tool:c2");
    assert_int_equal(c.err, KX_OK);
    const llm_stream *s = llm_call_result(c.call);
    assert_string_equal(s->content.s, "Let me run it.");
    assert_int_equal(s->ncalls, 1);
    assert_string_equal(s->calls[0].id.s, "toolu_fake_1");
    assert_string_equal(s->calls[0].name.s, "execute_command");
    assert_string_equal(s->calls[0].arguments.s,
                        "{\"command\": \"echo hi from the fake\", \"blocking\": true}");
    assert_string_equal(s->finish_reason, "tool_calls");
    assert_int_equal(s->prompt_tokens, 55); /* 52 input + 3 cache read */
    assert_int_equal(s->completion_tokens, 21);
    assert_string_equal(llm_call_provider(c.call), "anthropic");
    json_t *reqs = requests_for("tool:c2");
    assert_int_equal(json_array_size(reqs), 1);
    json_t *r = json_array_get(reqs, 0);
    assert_string_equal(jstr(r, "path"), "/v1/messages");
    json_t *h = json_object_get(r, "headers");
    assert_string_equal(jstr(h, "x-api-key"), "sk-ant-test");
    assert_string_equal(jstr(h, "anthropic-version"), "2023-06-01");
    assert_string_equal(jstr(h, "authorization"), "");
    json_t *body = json_object_get(r, "body");
    assert_true(json_is_string(json_object_get(body, "system")));
    assert_int_equal(jint(body, "max_tokens"), 1024);
    json_t *tool = json_array_get(json_object_get(body, "tools"), 0);
    assert_true(json_is_object(json_object_get(tool, "input_schema")));
    assert_null(json_object_get(tool, "function"));
    json_t *m0 = json_array_get(json_object_get(body, "messages"), 0);
    assert_string_equal(jstr(m0, "role"), "user");
    assert_string_equal(jstr(json_array_get(json_object_get(m0, "content"), 0), "text"), "hi");
    json_decref(reqs);
    ctx_free(&c);
}

static void check_retry_after(const char *model, const char *fake_model, int64_t min_wait)
{
    ctx c;
    ctx_init(&c);
    int64_t took = ctx_call(&c, model);
    assert_int_equal(c.err, KX_OK);
    assert_int_equal(llm_call_attempts(c.call), 2);
    json_t *reqs = requests_for(fake_model);
    assert_int_equal(json_array_size(reqs), 2);
    int64_t gap = jint(json_array_get(reqs, 1), "at_ms") - jint(json_array_get(reqs, 0), "at_ms");
    print_message("[ timing   ] %s: retried %lld ms after the 429 (call %lld ms)\n", model,
                  (long long)gap, (long long)took);
    /* it waited what the provider asked; the backoff alone would be 250..500 ms */
    if (gap < min_wait || gap > min_wait + 3000)
        fail_msg("the retry came %lld ms after the 429 (want %lld..%lld)", (long long)gap,
                 (long long)min_wait, (long long)(min_wait + 3000));
    json_decref(reqs);
    ctx_free(&c);
}

static void test_retry_after(void **state)
{
    (void)state;
    check_retry_after("anthropic/retry-after:2:c3", "retry-after:2:c3", 1950);
    /* an HTTP date 2..3 s ahead (dates have whole seconds) */
    check_retry_after("openai/retry-date:2:c3", "retry-date:2:c3", 1500);
}

static void test_fallback(void **state)
{
    (void)state;
    ctx c;
    ctx_init(&c);
    c.cfg.llm_retries = 2;
    snprintf(c.cfg.fallback_model, sizeof c.cfg.fallback_model, "anthropic/text:c4fb");
    ctx_call(&c, "openai/fail500:c4");
    assert_int_equal(c.err, KX_OK);
    assert_string_equal(llm_call_model(c.call), "anthropic/text:c4fb");
    assert_string_equal(llm_call_result(c.call)->content.s,
                        "Hello from the fake provider. It streams in pieces.");
    assert_int_equal(llm_call_attempts(c.call), 4);
    json_t *reqs = requests_for("fail500:c4");
    assert_int_equal(json_array_size(reqs), 3); /* 1 + KX_LLM_RETRIES */
    json_decref(reqs);
    reqs = requests_for("text:c4fb");
    assert_int_equal(json_array_size(reqs), 1);
    json_decref(reqs);
    ctx_free(&c);

    /* both down: the message says what happened to each */
    ctx_init(&c);
    c.cfg.llm_retries = 1;
    snprintf(c.cfg.fallback_model, sizeof c.cfg.fallback_model, "anthropic/fail500:c4b");
    ctx_call(&c, "openai/fail500:c4a");
    assert_int_equal(c.err, KX_ERR_UNAVAILABLE);
    print_message("[ message  ] %s\n", c.msg);
    const char *want[] = {"anthropic model fail500:c4b: HTTP 529 from http://127.0.0.1:",
                          "/v1/messages: the fake is down (overloaded_error) (after 2 attempts)",
                          "before it, the primary model failed: openai model fail500:c4a: "
                          "HTTP 500 from http://127.0.0.1:",
                          "the fake is down (server_error) (after 2 attempts)"};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        if (strstr(c.msg, want[i]) == NULL)
            fail_msg("the message \"%s\" lacks \"%s\"", c.msg, want[i]);
    ctx_free(&c);
}

/* A Retry-After beyond the run's wall deadline is not waited for: the fallback answers at
 * once, or (without one) the call fails at once saying why. */
static void test_retry_after_past_the_deadline(void **state)
{
    (void)state;
    ctx c;
    ctx_init(&c);
    snprintf(c.cfg.fallback_model, sizeof c.cfg.fallback_model, "openai/text:c11fb");
    int64_t took = ctx_call(&c, "anthropic/retry-after:3600:c11");
    assert_int_equal(c.err, KX_OK);
    assert_string_equal(llm_call_model(c.call), "openai/text:c11fb");
    if (took > 10000)
        fail_msg("the fallback answered after %lld ms", (long long)took);
    ctx_free(&c);

    ctx_init(&c);
    took = ctx_call(&c, "anthropic/retry-after:3600:c11b");
    assert_int_equal(c.err, KX_ERR_UNAVAILABLE);
    print_message("[ message  ] %s\n", c.msg);
    assert_non_null(strstr(c.msg, "HTTP 429 from http://127.0.0.1:"));
    assert_non_null(strstr(c.msg,
                           "rate limited by the fake (rate_limit_error); not retried: the "
                           "wait (3600000 ms, the provider's Retry-After) would pass the "
                           "run's wall deadline"));
    if (took > 10000)
        fail_msg("the call failed after %lld ms", (long long)took);
    ctx_free(&c);
}

static void test_cut_mid_message(void **state)
{
    (void)state;
    ctx c;
    ctx_init(&c);
    ctx_call(&c, "anthropic/cut:c5");
    assert_int_not_equal(c.err, KX_OK);
    print_message("[ message  ] %s\n", c.msg);
    assert_non_null(strstr(c.msg, "anthropic model cut:c5: the stream from http://127.0.0.1:"));
    assert_non_null(strstr(c.msg, "ended in the middle of the answer"));
    assert_non_null(strstr(c.msg, "no message_stop"));
    json_t *reqs = requests_for("cut:c5");
    assert_int_equal(json_array_size(reqs), 1); /* text had reached the caller: no retry */
    json_decref(reqs);
    ctx_free(&c);
}

static void test_long_answer_beyond_idle(void **state)
{
    (void)state;
    ctx c;
    ctx_init(&c);
    c.cfg.llm_idle_ms = 1000;
    c.cfg.llm_ttfb_ms = 1000;
    int64_t took = ctx_call(&c, "anthropic/steady:250:14:c6");
    print_message("[ timing   ] a 3.5 s answer with a 1 s idle timeout took %lld ms\n",
                  (long long)took);
    if (c.err != KX_OK)
        fail_msg("the call failed: %s", c.msg);
    assert_true(took >= 3400);
    assert_non_null(strstr(llm_call_result(c.call)->content.s, " tick13"));
    ctx_free(&c);
}

static void test_silent_provider(void **state)
{
    (void)state;
    ctx c;
    ctx_init(&c);
    c.cfg.llm_idle_ms = 1000;
    c.cfg.llm_retries = 0;
    int64_t took = ctx_call(&c, "anthropic/silent:c7");
    print_message("[ timing   ] a silent provider failed after %lld ms: %s\n", (long long)took,
                  c.msg);
    assert_int_equal(c.err, KX_ERR_TIMEOUT);
    assert_non_null(strstr(c.msg, "went silent for 1000 ms in the middle of its answer"));
    if (took < 1000 || took > 4000)
        fail_msg("failed after %lld ms (want 1000..4000)", (long long)took);
    ctx_free(&c);
}

static void test_no_first_byte(void **state)
{
    (void)state;
    ctx c;
    ctx_init(&c);
    c.cfg.llm_ttfb_ms = 1500;
    c.cfg.llm_retries = 0;
    int64_t took = ctx_call(&c, "openai/nohead:c8");
    print_message("[ timing   ] no first byte: failed after %lld ms: %s\n", (long long)took,
                  c.msg);
    assert_int_equal(c.err, KX_ERR_TIMEOUT);
    assert_non_null(strstr(c.msg, "within 1500 ms (KX_LLM_TTFB_MS)"));
    if (took < 1500 || took > 4500)
        fail_msg("failed after %lld ms (want 1500..4500)", (long long)took);
    ctx_free(&c);
}

static void test_error_event_after_output(void **state)
{
    (void)state;
    ctx c;
    ctx_init(&c);
    ctx_call(&c, "openai/error-event:c10");
    assert_int_not_equal(c.err, KX_OK);
    assert_non_null(strstr(c.msg, "the LLM stream reported an error: the fake broke mid-stream"));
    json_t *reqs = requests_for("error-event:c10");
    assert_int_equal(json_array_size(reqs), 1);
    json_decref(reqs);
    ctx_free(&c);
}

static void test_cancel_closes_the_connection(void **state)
{
    (void)state;
    ctx c;
    ctx_init(&c);
    c.cancel_after_ms = 300;
    ctx_call(&c, "anthropic/steady:100:600:c9");
    assert_true(c.cancelled_at > 0);
    int64_t closed = 0;
    for (int i = 0; i < 100 && closed == 0; i++) {
        json_t *reqs = requests_for("steady:100:600:c9");
        assert_int_equal(json_array_size(reqs), 1);
        closed = jint(json_array_get(reqs, 0), "closed_ms");
        json_decref(reqs);
        if (closed == 0)
            sleep_ms(20);
    }
    print_message("[ timing   ] the fake saw the connection closed %lld ms after the cancel\n",
                  (long long)(closed - c.cancelled_at));
    assert_true(closed > 0);
    if (closed - c.cancelled_at > 200)
        fail_msg("closed %lld ms after the cancel (want <= 200)",
                 (long long)(closed - c.cancelled_at));
    ctx_free(&c);
}

/* A data line whose JSON holds bytes that are not UTF-8: the call fails saying so, and its
 * message (which quotes the line) is UTF-8 itself, for both wires. */
static void test_bytes_not_utf8(void **state)
{
    (void)state;
    const char *models[] = {"openai/h-badutf8:c12", "anthropic/h-badutf8:c12"};
    for (size_t i = 0; i < 2; i++) {
        ctx c;
        ctx_init(&c);
        ctx_call(&c, models[i]);
        assert_int_equal(c.err, KX_ERR_PROTOCOL);
        print_message("[ message  ] %s\n", c.msg);
        assert_non_null(strstr(c.msg, "sent data that is not a JSON object"));
        if (!kx_utf8_valid(c.msg, strlen(c.msg)))
            fail_msg("%s: the error message is not UTF-8", models[i]);
        ctx_free(&c);
    }
}

/* A tool call whose name grows by 1 MiB a delta (fragments that differ from the name so far
 * are appended) is held to the answer's cap like text and arguments, not kept whole. */
static void test_growing_name_capped(void **state)
{
    (void)state;
    ctx c;
    ctx_init(&c);
    ctx_call(&c, "openai/h-namegrow:8:c13");
    print_message("[ message  ] %s\n", c.msg);
    if (c.err == KX_OK)
        fail_msg("the call succeeded with a tool name of %zu bytes",
                 llm_call_result(c.call)->ncalls ? llm_call_result(c.call)->calls[0].name.len : 0);
    assert_int_equal(c.err, KX_ERR_PROTOCOL);
    assert_non_null(strstr(c.msg, "the LLM answer exceeded 4194304 bytes"));
    ctx_free(&c);
}

/* A provider that ends its answer ([DONE], message_stop) but keeps the body open (pinging, or
 * silent): the call completes with the answer soon after its end, and the connection is
 * closed. */
static void test_end_then_linger(void **state)
{
    (void)state;
    const char *models[] = {"openai/h-done-linger:ping:c14a", "anthropic/h-done-linger:ping:c14b",
                            "openai/h-done-linger:silent:c14c",
                            "anthropic/h-done-linger:silent:c14d"};
    for (size_t i = 0; i < 4; i++) {
        ctx c;
        ctx_init(&c);
        c.wall_ms = 10000;
        int64_t took = ctx_call(&c, models[i]);
        print_message("[ timing   ] %s: %lld ms: %s\n", models[i], (long long)took, c.msg);
        if (c.err != KX_OK)
            fail_msg("%s: the whole answer failed: %s", models[i], c.msg);
        assert_string_equal(llm_call_result(c.call)->content.s, "Complete, then lingering.");
        if (took > 4000)
            fail_msg("%s: completed %lld ms after the request (want <= 4000)", models[i],
                     (long long)took);
        ctx_free(&c);
        const char *sent = strchr(models[i], '/') + 1;
        json_t *reqs = requests_for(sent);
        int64_t closed = 0;
        for (int k = 0; k < 100 && closed == 0; k++) {
            json_decref(reqs);
            reqs = requests_for(sent);
            closed = jint(json_array_get(reqs, 0), "closed_ms");
            if (closed == 0)
                sleep_ms(20);
        }
        assert_int_equal(json_array_size(reqs), 1);
        assert_true(closed > 0);
        json_decref(reqs);
    }
}

/* An error status whose body never ends: the call fails with the status (and the first bytes
 * of the body) once enough of it came, not at the wall deadline; the same for a whole JSON
 * answer (not a stream) that never ends, past its cap. */
static void test_endless_bodies(void **state)
{
    (void)state;
    ctx c;
    ctx_init(&c);
    c.wall_ms = 10000;
    c.cfg.llm_retries = 0;
    int64_t took = ctx_call(&c, "openai/h-errbody:c15");
    print_message("[ timing   ] %lld ms: %.200s\n", (long long)took, c.msg);
    assert_int_equal(c.err, KX_ERR_UNAVAILABLE);
    assert_non_null(strstr(c.msg, "HTTP 500 from http://127.0.0.1:"));
    if (took > 4000)
        fail_msg("failed %lld ms after the request (want <= 4000)", (long long)took);
    ctx_free(&c);

    ctx_init(&c);
    c.wall_ms = 10000;
    took = ctx_call(&c, "openai/h-bigjson:c15");
    print_message("[ timing   ] %lld ms: %s\n", (long long)took, c.msg);
    assert_int_equal(c.err, KX_ERR_PROTOCOL);
    assert_non_null(strstr(c.msg, "exceeded 16777216 bytes"));
    if (took > 4000)
        fail_msg("failed %lld ms after the request (want <= 4000)", (long long)took);
    ctx_free(&c);

    /* a whole JSON answer under the body's cap holds the streamed answer's cap too (before: 6
     * MiB of text taken, beyond what a streamed answer may hold) */
    ctx_init(&c);
    c.cfg.llm_retries = 0;
    ctx_call(&c, "openai/h-json:6:c15");
    print_message("[ json     ] %s\n", c.msg);
    assert_int_equal(c.err, KX_ERR_PROTOCOL);
    assert_non_null(strstr(c.msg, "the LLM answer exceeded 4194304 bytes"));
    ctx_free(&c);
}

/* A 200 that is not an event stream (a login page at a wrong base URL) and a line longer than
 * the SSE parser takes: the messages say so. */
static void test_not_a_stream_says_so(void **state)
{
    (void)state;
    ctx c;
    ctx_init(&c);
    c.cfg.llm_retries = 0;
    ctx_call(&c, "openai/h-html:c16");
    print_message("[ message  ] %s\n", c.msg);
    assert_int_not_equal(c.err, KX_OK);
    const char *want[] = {"sent no event", "content-type text/html", "<title>Sign in</title>"};
    for (size_t i = 0; i < 3; i++)
        if (strstr(c.msg, want[i]) == NULL)
            fail_msg("the message \"%s\" lacks \"%s\"", c.msg, want[i]);
    ctx_free(&c);

    ctx_init(&c);
    c.cfg.llm_retries = 0;
    ctx_call(&c, "openai/h-hugeline:16:c16");
    print_message("[ message  ] %s\n", c.msg);
    assert_int_equal(c.err, KX_ERR_PROTOCOL);
    if (strstr(c.msg, "a line of more than 8388608 bytes") == NULL)
        fail_msg("the message \"%s\" does not say the line was too long", c.msg);
    ctx_free(&c);
}

/* ---- the whole stack ------------------------------------------------------------------- */

typedef struct run {
    char id[KX_UUID_LEN + 1];
    char thread_id[KX_UUID_LEN + 1];
} run;

static void initiate(const char *token, const char *model, run *r)
{
    const char *pairs[] = {"prompt", "run something", "model_name", model, NULL};
    char *answer = NULL;
    long st = kx_th_initiate_form(&g_stack, token, pairs, true, r->id, r->thread_id, &answer);
    if (st != 200 || r->id[0] == '\0')
        fail_msg("initiate: status %ld: %s", st, answer ? answer : "");
    free(answer);
}

static char *run_col(const run *r, const char *column)
{
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT coalesce((%s)::text, '') FROM agent_runs WHERE id = $1",
             column);
    const char *p[] = {r->id};
    char *v = kx_th_sql_value(&g_stack, sql, 1, p);
    assert_non_null(v);
    return v;
}

static char *wait_final(const run *r, int64_t timeout_ms)
{
    int64_t give_up = kx_mono_ms() + timeout_ms;
    for (;;) {
        char *st = run_col(r, "status");
        if (strcmp(st, "queued") != 0 && strcmp(st, "running") != 0)
            return st;
        if (kx_mono_ms() > give_up)
            fail_msg("run %s still %s after %lld ms", r->id, st, (long long)timeout_ms);
        free(st);
        sleep_ms(50);
    }
}

static char *new_token(void)
{
    char account[KX_UUID_LEN + 1];
    kx_uuid_new(account);
    char *t = kx_th_stack_token(&g_stack, account);
    assert_non_null(t);
    return t;
}

static void test_stack_anthropic_tool_round_trip(void **state)
{
    (void)state;
    char *token = new_token();
    run r;
    initiate(token, "claude", &r); /* KX_MODEL_ALIASES: claude=anthropic/tool:stack */
    char *st = wait_final(&r, STREAM_TIMEOUT_MS);
    if (strcmp(st, "completed") != 0) {
        char *err = run_col(&r, "error");
        fail_msg("run %s: %s (%s)", r.id, st, err);
    }
    free(st);
    /* two turns: the tool call, then the answer quoting the tool's output */
    const char *p[] = {r.thread_id};
    char *answer = kx_th_sql_value(
        &g_stack,
        "SELECT content->>'content' FROM messages WHERE thread_id = $1 AND type = 'assistant' "
        "ORDER BY created_at DESC LIMIT 1",
        1, p);
    assert_non_null(answer);
    if (strncmp(answer, "The tool said: ", 15) != 0 || strstr(answer, "hi from the fake") == NULL)
        fail_msg("the last answer is \"%s\"", answer);
    free(answer);
    json_t *reqs = requests_for("tool:stack");
    size_t n = json_array_size(reqs);
    assert_true(n >= 2);
    /* the second request carried the tool call and its result in Anthropic's blocks */
    json_t *msgs =
        json_object_get(json_object_get(json_array_get(reqs, n - 1), "body"), "messages");
    char *text = json_dumps(msgs, JSON_COMPACT);
    if (strstr(text, "\"type\":\"tool_use\",\"id\":\"toolu_fake_1\"") == NULL ||
        strstr(text, "\"type\":\"tool_result\",\"tool_use_id\":\"toolu_fake_1\"") == NULL)
        fail_msg("the second request's messages: %s", text);
    free(text);
    json_decref(reqs);
    /* usage from the provider, per turn, where the quotas read it */
    char *usage = kx_th_sql_value(
        &g_stack,
        "SELECT string_agg((content->'usage'->>'prompt_tokens') || '/' || "
        "(content->'usage'->>'completion_tokens') || '/' || "
        "(content->'usage'->>'total_tokens'), ',' ORDER BY created_at) FROM messages "
        "WHERE thread_id = $1 AND type = 'assistant_response_end'",
        1, p);
    assert_non_null(usage);
    assert_string_equal(usage, "55/21/76,55/21/76");
    free(usage);
    free(token);
}

static void test_stack_stop_cancels_the_transfer(void **state)
{
    (void)state;
    char *token = new_token();
    run r;
    initiate(token, "anthropic/steady:100:900:stop", &r);
    /* wait until the answer streams */
    int64_t give_up = kx_mono_ms() + 20000;
    for (;;) {
        json_t *reqs = requests_for("steady:100:900:stop");
        size_t n = json_array_size(reqs);
        json_decref(reqs);
        if (n > 0)
            break;
        if (kx_mono_ms() > give_up)
            fail_msg("the fake never got the request");
        sleep_ms(20);
    }
    sleep_ms(500);
    char path[128];
    snprintf(path, sizeof path, "/api/agent-run/%s/stop", r.id);
    long status = 0;
    json_t *v = kx_th_json(&g_stack, "POST", path, token, NULL, &status);
    int64_t stopped_at = kx_now_ms();
    assert_int_equal(status, 200);
    json_decref(v);
    int64_t closed = 0;
    for (int i = 0; i < 150 && closed == 0; i++) {
        json_t *reqs = requests_for("steady:100:900:stop");
        closed = jint(json_array_get(reqs, 0), "closed_ms");
        bool finished = json_is_true(json_object_get(json_array_get(reqs, 0), "finished"));
        json_decref(reqs);
        assert_false(finished);
        if (closed == 0)
            sleep_ms(20);
    }
    assert_true(closed > 0);
    print_message("[ timing   ] STOP answered; the provider's connection closed %lld ms later\n",
                  (long long)(closed - stopped_at));
    if (closed - stopped_at > 500)
        fail_msg("the transfer was cancelled %lld ms after the STOP (want <= 500)",
                 (long long)(closed - stopped_at));
    char *st = run_col(&r, "status");
    assert_string_equal(st, "stopped");
    free(st);
    free(token);
}

static void test_stack_cut_fails_the_run(void **state)
{
    (void)state;
    char *token = new_token();
    run r;
    initiate(token, "anthropic/cut:stack", &r);
    char *st = wait_final(&r, STREAM_TIMEOUT_MS);
    assert_string_equal(st, "failed");
    free(st);
    char *err = run_col(&r, "error");
    print_message("[ message  ] %s\n", err);
    if (strncmp(err, "LLM request failed: anthropic model cut:stack: the stream from ", 63) != 0 ||
        strstr(err, "ended in the middle of the answer") == NULL)
        fail_msg("error \"%s\" does not say what happened", err);
    free(err);
    free(token);
}

/* A stream with bytes that are not UTF-8 fails its run with the parser's words (the message,
 * which quotes those bytes, is saved as the run's error and an error status row). */
static void test_stack_not_utf8_fails_the_run(void **state)
{
    (void)state;
    char *token = new_token();
    run r;
    initiate(token, "openai/h-badutf8:stack", &r);
    char *st = wait_final(&r, STREAM_TIMEOUT_MS);
    char *err = run_col(&r, "error");
    print_message("[ message  ] %s: %s\n", st, err);
    assert_string_equal(st, "failed");
    if (strncmp(err,
                "LLM request failed: openai model h-badutf8:stack: the LLM stream sent data "
                "that is not a JSON object",
                95) != 0)
        fail_msg("error \"%s\" does not say what happened", err);
    free(err);
    free(st);
    const char *p[] = {r.thread_id};
    char *saved = kx_th_sql_value(&g_stack,
                                  "SELECT count(*) FROM messages WHERE thread_id = $1 AND "
                                  "type = 'status' AND content->>'status_type' = 'error' AND "
                                  "content->>'message' LIKE 'LLM request failed: %not a JSON%'",
                                  1, p);
    assert_non_null(saved);
    assert_string_equal(saved, "1");
    free(saved);
    free(token);
}

/* A call whose arguments grow in small deltas that each end with '}' (so that they may look
 * like a whole object, execute-on-stream) costs the runner's loop what the bytes cost, not a
 * parse of all of them per delta: the run fails at the answer's cap within seconds, and a run
 * of another account started meanwhile is not held up. */
static void test_stack_growing_arguments_do_not_stall(void **state)
{
    (void)state;
    char *token = new_token(), *other = new_token();
    run r, peer;
    int64_t t0 = kx_mono_ms();
    initiate(token, "openai/h-argsgrow:1024:stack", &r);
    for (int i = 0; i < 200; i++) { /* until its answer streams */
        json_t *reqs = requests_for("h-argsgrow:1024:stack");
        size_t n = json_array_size(reqs);
        json_decref(reqs);
        if (n > 0)
            break;
        sleep_ms(50);
    }
    sleep_ms(300);
    int64_t t1 = kx_mono_ms();
    initiate(other, "openai/text:argsgrow-peer", &peer);
    char *st = wait_final(&peer, 60000);
    int64_t peer_ms = kx_mono_ms() - t1;
    assert_string_equal(st, "completed");
    free(st);
    st = wait_final(&r, 120000);
    int64_t took = kx_mono_ms() - t0;
    char *err = run_col(&r, "error");
    print_message("[ timing   ] the growing call's run: %s after %lld ms (%s); a run started "
                  "meanwhile: %lld ms\n",
                  st, (long long)took, err, (long long)peer_ms);
    assert_string_equal(st, "failed");
    assert_non_null(strstr(err, "the LLM answer exceeded 4194304 bytes"));
    if (peer_ms > 5000 || took > 15000)
        fail_msg("the loop stalled: the other run took %lld ms, the growing one %lld ms",
                 (long long)peer_ms, (long long)took);
    free(err);
    free(st);
    free(token);
    free(other);
}

/* ---- setup ----------------------------------------------------------------------------- */

static int start_fake(void)
{
    g_dir = kx_th_tmpdir("kx-llm-providers");
    if (g_dir == NULL)
        return -1;
    g_fake = kx_th_node_fake(g_dir, FAKE, NULL, "fake-llm.log", &g_port);
    return g_fake != 0 ? 0 : -1;
}

static int start_stack(void **state)
{
    (void)state;
    char anthropic[96], openai[96];
    snprintf(anthropic, sizeof anthropic, "ANTHROPIC_BASE_URL=http://127.0.0.1:%u", g_port);
    snprintf(openai, sizeof openai, "OPENAI_BASE_URL=http://127.0.0.1:%u/v1", g_port);
    const char *env[] = {anthropic,
                         "ANTHROPIC_API_KEY=sk-ant-stack",
                         openai,
                         "KX_MODEL=text",
                         "KX_MODEL_ALIASES=claude=anthropic/tool:stack",
                         "KX_RUN_MAX_ATTEMPTS=1",
                         NULL};
    kx_th_stack_opts opts = {.env = env};
    return kx_th_stack_start(&opts, &g_stack) == KX_OK ? 0 : -1;
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (start_fake() != 0) {
        fprintf(stderr, "could not start the fake provider (%s)\n", FAKE);
        return 1;
    }
    const struct CMUnitTest llm[] = {
        cmocka_unit_test(test_openai_tool_deltas),
        cmocka_unit_test(test_anthropic_tool_use),
        cmocka_unit_test(test_retry_after),
        cmocka_unit_test(test_fallback),
        cmocka_unit_test(test_retry_after_past_the_deadline),
        cmocka_unit_test(test_cut_mid_message),
        cmocka_unit_test(test_long_answer_beyond_idle),
        cmocka_unit_test(test_silent_provider),
        cmocka_unit_test(test_no_first_byte),
        cmocka_unit_test(test_error_event_after_output),
        cmocka_unit_test(test_cancel_closes_the_connection),
        cmocka_unit_test(test_bytes_not_utf8),
        cmocka_unit_test(test_growing_name_capped),
        cmocka_unit_test(test_end_then_linger),
        cmocka_unit_test(test_endless_bodies),
        cmocka_unit_test(test_not_a_stream_says_so),
    };
    const struct CMUnitTest stack[] = {
        cmocka_unit_test(test_stack_anthropic_tool_round_trip),
        cmocka_unit_test(test_stack_stop_cancels_the_transfer),
        cmocka_unit_test(test_stack_cut_fails_the_run),
        cmocka_unit_test(test_stack_not_utf8_fails_the_run),
        cmocka_unit_test(test_stack_growing_arguments_do_not_stall),
    };
    int failed = cmocka_run_group_tests_name("llm", llm, NULL, NULL);
    int sfailed = cmocka_run_group_tests_name("stack", stack, start_stack, NULL);
    if (kx_th_stack_stop(&g_stack, sfailed != 0) != 0)
        sfailed++;
    kx_th_kill(g_fake);
    if (failed + sfailed == 0)
        kx_th_rmrf(g_dir);
    else
        fprintf(stderr, "fake provider log kept in %s\n", g_dir);
    free(g_dir);
    curl_global_cleanup();
    return failed + sfailed != 0;
}
