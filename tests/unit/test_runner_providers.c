/* test_runner_providers.c — the agent-runner's provider layer without I/O: the Anthropic stream
 * parser (llm_anthropic_stream.c) and the OpenAI one (llm_stream.c) fed through the SSE parser
 * split at every byte boundary, the Anthropic request body (llm_anthropic.c), model routing and
 * aliases (llm_route.c, config.c) and Retry-After (llm.c). The same code against a fake
 * provider over HTTP is it_llm_providers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <jansson.h>

#include "config.h"
#include "kx/sse.h"
#include "kx/utf8.h"
#include "llm.h"
#include "llm_anthropic_stream.h"
#include "llm_provider.h"
#include "llm_route.h"

/* ---- streams fed through kx_sse at every split ----------------------------------------- */

/* What Anthropic streams for "some text, then one tool call" (shape of the API reference). */
static const char ANTHROPIC_TOOL_STREAM[] =
    "event: message_start\n"
    "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\","
    "\"role\":\"assistant\",\"content\":[],\"model\":\"claude-sonnet-4-20250514\","
    "\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":472,"
    "\"cache_creation_input_tokens\":10,\"cache_read_input_tokens\":20,\"output_tokens\":2}}}\n"
    "\n"
    "event: ping\n"
    "data: {\"type\": \"ping\"}\n"
    "\n"
    "event: content_block_start\n"
    "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\","
    "\"text\":\"\"}}\n"
    "\n"
    "event: content_block_delta\n"
    "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\","
    "\"text\":\"Okay, h\\u00e9\"}}\n"
    "\n"
    "event: content_block_delta\n"
    "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\","
    "\"text\":\"re goes.\"}}\n"
    "\n"
    "event: content_block_stop\n"
    "data: {\"type\":\"content_block_stop\",\"index\":0}\n"
    "\n"
    "event: content_block_start\n"
    "data: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":"
    "\"tool_use\",\"id\":\"toolu_01T1x\",\"name\":\"execute_command\",\"input\":{}}}\n"
    "\n"
    "event: content_block_delta\n"
    "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":"
    "\"input_json_delta\",\"partial_json\":\"\"}}\n"
    "\n"
    "event: content_block_delta\n"
    "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":"
    "\"input_json_delta\",\"partial_json\":\"{\\\"comm\"}}\n"
    "\n"
    "event: content_block_delta\n"
    "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":"
    "\"input_json_delta\",\"partial_json\":\"and\\\": \\\"ls -la\\\"}\"}}\n"
    "\n"
    "event: content_block_stop\n"
    "data: {\"type\":\"content_block_stop\",\"index\":1}\n"
    "\n"
    "event: message_delta\n"
    "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\","
    "\"stop_sequence\":null},\"usage\":{\"output_tokens\":89}}\n"
    "\n"
    "event: message_stop\n"
    "data: {\"type\":\"message_stop\"}\n"
    "\n";

static const char OPENAI_TOOL_STREAM[] =
    "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o\",\"choices\":"
    "[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Okay, h\\u00e9\"}}]}\n\n"
    "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"re goes.\"}}]}\n\n"
    ": keep-alive comment\n\n"
    "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":"
    "\"call_1\",\"type\":\"function\",\"function\":{\"name\":\"execute_command\","
    "\"arguments\":\"\"}}]}}]}\n\n"
    "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":"
    "{\"arguments\":\"{\\\"comm\"}}]}}]}\n\n"
    "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":"
    "{\"arguments\":\"and\\\": \\\"ls -la\\\"}\"}}]}}]}\n\n"
    "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\n"
    "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":502,\"completion_tokens\":89,"
    "\"total_tokens\":591}}\n\n"
    "data: [DONE]\n\n";

typedef struct feeder {
    bool anthropic;
    llm_stream s;
    llm_feed_result last;
    bool failed;
    kx_buf text_seen; /* the new text each event reported, concatenated */
} feeder;

static void on_event(const char *event, const char *data, size_t len, const char *id, void *arg)
{
    (void)id;
    feeder *f = arg;
    if (f->failed || f->last == LLM_FEED_DONE)
        return;
    size_t from = 0;
    f->last = f->anthropic ? llm_anthropic_feed(&f->s, event, data, len, &from)
                           : llm_stream_feed(&f->s, data, len, &from);
    if (f->last == LLM_FEED_ERROR || f->last == LLM_FEED_MALFORMED || f->last == LLM_FEED_NOMEM)
        f->failed = true;
    else
        assert_int_equal(kx_buf_add(&f->text_seen, f->s.content.s + from, f->s.content.len - from),
                         KX_OK);
}

/* Feeds text in pieces ending at the given cut points (sorted; 0 = none). */
static void run_feed(feeder *f, const char *text, size_t cut1, size_t step)
{
    kx_sse_parser p;
    kx_sse_init(&p, on_event, f);
    size_t len = strlen(text), at = 0;
    if (step > 0) {
        while (at < len) {
            size_t n = len - at < step ? len - at : step;
            assert_int_equal(kx_sse_feed(&p, text + at, n), KX_OK);
            at += n;
        }
    } else {
        assert_int_equal(kx_sse_feed(&p, text, cut1), KX_OK);
        assert_int_equal(kx_sse_feed(&p, text + cut1, len - cut1), KX_OK);
    }
    kx_sse_free(&p);
}

static void check_tool_answer(feeder *f, bool anthropic)
{
    assert_false(f->failed);
    assert_true(f->s.done);
    assert_int_equal(f->s.content.len, strlen("Okay, h\xc3\xa9re goes."));
    assert_memory_equal(f->s.content.s, "Okay, h\xc3\xa9re goes.", f->s.content.len);
    assert_int_equal(f->text_seen.len, f->s.content.len);
    assert_memory_equal(f->text_seen.s, f->s.content.s, f->s.content.len);
    assert_int_equal(f->s.ncalls, 1);
    const llm_tool_call *c = &f->s.calls[0];
    assert_string_equal(c->id.s, anthropic ? "toolu_01T1x" : "call_1");
    assert_string_equal(c->name.s, "execute_command");
    assert_string_equal(c->arguments.s, "{\"command\": \"ls -la\"}");
    assert_string_equal(f->s.finish_reason, "tool_calls");
    assert_true(f->s.have_usage);
    assert_int_equal(f->s.prompt_tokens, 502); /* Anthropic: 472 + 10 + 20 */
    assert_int_equal(f->s.completion_tokens, 89);
    assert_int_equal(f->s.total_tokens, 591);
    assert_string_equal(f->s.model, anthropic ? "claude-sonnet-4-20250514" : "gpt-4o");
}

static void feeder_reset(feeder *f, bool anthropic)
{
    llm_stream_free(&f->s);
    kx_buf_free(&f->text_seen);
    memset(f, 0, sizeof *f);
    f->anthropic = anthropic;
    llm_stream_init(&f->s);
}

static void every_split(const char *stream, bool anthropic)
{
    feeder f;
    memset(&f, 0, sizeof f);
    feeder_reset(&f, anthropic);
    run_feed(&f, stream, 0, 1); /* byte by byte */
    check_tool_answer(&f, anthropic);
    size_t len = strlen(stream);
    for (size_t cut = 0; cut <= len; cut++) { /* two pieces, cut at every boundary */
        feeder_reset(&f, anthropic);
        run_feed(&f, stream, cut, 0);
        check_tool_answer(&f, anthropic);
    }
    feeder_reset(&f, anthropic);
    llm_stream_free(&f.s);
}

static void test_anthropic_stream_every_split(void **state)
{
    (void)state;
    every_split(ANTHROPIC_TOOL_STREAM, true);
}

static void test_openai_stream_every_split(void **state)
{
    (void)state;
    every_split(OPENAI_TOOL_STREAM, false);
}

static llm_feed_result afeed(llm_stream *s, const char *data)
{
    return llm_anthropic_feed(s, NULL, data, strlen(data), NULL);
}

static void test_anthropic_events(void **state)
{
    (void)state;
    llm_stream s;
    llm_stream_init(&s);
    /* an error event mid-stream: the provider's message and type */
    assert_int_equal(afeed(&s,
                           "{\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\","
                           "\"message\":\"Overloaded\"}}"),
                     LLM_FEED_ERROR);
    assert_string_equal(s.error, "Overloaded (overloaded_error)");
    llm_stream_free(&s);

    /* unknown events, thinking blocks and their deltas are ignored */
    llm_stream_init(&s);
    assert_int_equal(afeed(&s, "{\"type\":\"some_future_event\",\"x\":1}"), LLM_FEED_OK);
    assert_int_equal(afeed(&s,
                           "{\"type\":\"content_block_start\",\"index\":0,"
                           "\"content_block\":{\"type\":\"thinking\",\"thinking\":\"\"}}"),
                     LLM_FEED_OK);
    assert_int_equal(afeed(&s,
                           "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":"
                           "{\"type\":\"thinking_delta\",\"thinking\":\"hmm\"}}"),
                     LLM_FEED_OK);
    assert_int_equal(s.content.len, 0);
    assert_false(s.received_output);
    /* stop reasons in OpenAI's words */
    assert_int_equal(afeed(&s,
                           "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":"
                           "\"max_tokens\"},\"usage\":{\"output_tokens\":7}}"),
                     LLM_FEED_OK);
    assert_string_equal(s.finish_reason, "length");
    assert_int_equal(s.completion_tokens, 7);
    assert_int_equal(afeed(&s,
                           "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":"
                           "\"end_turn\"},\"usage\":{\"output_tokens\":9}}"),
                     LLM_FEED_OK);
    assert_string_equal(s.finish_reason, "stop");
    assert_int_equal(s.completion_tokens, 9); /* cumulative, not added */
    /* malformed: not JSON, a delta for a block that is not a tool_use, no index */
    assert_int_equal(afeed(&s, "{not json"), LLM_FEED_MALFORMED);
    assert_non_null(strstr(s.error, "not a JSON object"));
    assert_int_equal(afeed(&s,
                           "{\"type\":\"content_block_delta\",\"index\":5,\"delta\":"
                           "{\"type\":\"input_json_delta\",\"partial_json\":\"{}\"}}"),
                     LLM_FEED_MALFORMED);
    assert_non_null(strstr(s.error, "not a tool_use"));
    assert_int_equal(afeed(&s,
                           "{\"type\":\"content_block_delta\",\"delta\":"
                           "{\"type\":\"text_delta\",\"text\":\"x\"}}"),
                     LLM_FEED_MALFORMED);
    /* a tool_use whose input came whole is replaced by deltas, not doubled */
    assert_int_equal(afeed(&s,
                           "{\"type\":\"content_block_start\",\"index\":2,\"content_block\":"
                           "{\"type\":\"tool_use\",\"id\":\"t\",\"name\":\"n\","
                           "\"input\":{\"a\":1}}}"),
                     LLM_FEED_OK);
    assert_string_equal(s.calls[0].arguments.s, "{\"a\":1}");
    assert_int_equal(afeed(&s,
                           "{\"type\":\"content_block_delta\",\"index\":2,\"delta\":"
                           "{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"b\\\":2}\"}}"),
                     LLM_FEED_OK);
    assert_string_equal(s.calls[0].arguments.s, "{\"b\":2}");
    assert_int_equal(afeed(&s, "{\"type\":\"message_stop\"}"), LLM_FEED_DONE);
    assert_true(s.done);
    llm_stream_free(&s);

    /* a whole Message (a server that did not stream) */
    llm_stream_init(&s);
    assert_int_equal(afeed(&s,
                           "{\"type\":\"message\",\"model\":\"m\",\"content\":[{\"type\":"
                           "\"text\",\"text\":\"hi\"},{\"type\":\"tool_use\",\"id\":\"t1\","
                           "\"name\":\"x\",\"input\":{\"k\":\"v\"}}],\"stop_reason\":"
                           "\"tool_use\",\"usage\":{\"input_tokens\":3,\"output_tokens\":4}}"),
                     LLM_FEED_DONE);
    assert_string_equal(s.content.s, "hi");
    assert_int_equal(s.ncalls, 1);
    assert_string_equal(s.calls[0].arguments.s, "{\"k\":\"v\"}");
    assert_string_equal(s.finish_reason, "tool_calls");
    assert_int_equal(s.total_tokens, 7);
    llm_stream_free(&s);

    /* a NUL character (\u0000) in text, a tool's id, name or partial JSON: U+FFFD, not a
     * malformed event */
    llm_stream_init(&s);
    assert_int_equal(afeed(&s,
                           "{\"type\":\"content_block_start\",\"index\":0,\"content_block\":"
                           "{\"type\":\"text\",\"text\":\"a\\u0000\"}}"),
                     LLM_FEED_OK);
    assert_int_equal(afeed(&s,
                           "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":"
                           "{\"type\":\"text_delta\",\"text\":\"\\u0000b\"}}"),
                     LLM_FEED_OK);
    assert_int_equal(afeed(&s,
                           "{\"type\":\"content_block_start\",\"index\":1,\"content_block\":"
                           "{\"type\":\"tool_use\",\"id\":\"t\\u0000\",\"name\":\"n\\u0000\","
                           "\"input\":{}}}"),
                     LLM_FEED_OK);
    assert_int_equal(afeed(&s,
                           "{\"type\":\"content_block_delta\",\"index\":1,\"delta\":"
                           "{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"k\\\":"
                           "\\\"\\u0000\\\"}\"}}"),
                     LLM_FEED_OK);
    assert_int_equal(s.content.len, 8);
    assert_memory_equal(s.content.s,
                        "a\xef\xbf\xbd\xef\xbf\xbd"
                        "b",
                        8);
    assert_string_equal(s.calls[0].id.s, "t\xef\xbf\xbd");
    assert_string_equal(s.calls[0].name.s, "n\xef\xbf\xbd");
    assert_string_equal(s.calls[0].arguments.s, "{\"k\":\"\xef\xbf\xbd\"}");
    llm_stream_free(&s);
}

/* ---- the Anthropic request ------------------------------------------------------------- */

/* A model and a stop_reason longer than their fields are cut at a character boundary. */
static void test_anthropic_long_strings_cut_whole(void **state)
{
    (void)state;
    char model[512] = "", reason[128] = "";
    for (int i = 0; i < 150; i++) {
        model[2 * i] = (char)0xc3;
        model[2 * i + 1] = (char)0xa9;
    }
    for (int i = 0; i < 25; i++) {
        reason[2 * i] = (char)0xc3;
        reason[2 * i + 1] = (char)0xa9;
    }
    char ev[1024];
    llm_stream s;
    llm_stream_init(&s);
    snprintf(ev, sizeof ev,
             "{\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"type\":\"message\","
             "\"role\":\"assistant\",\"content\":[],\"model\":\"%s\"}}",
             model);
    assert_int_equal(afeed(&s, ev), LLM_FEED_OK);
    snprintf(ev, sizeof ev,
             "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"%s\"},"
             "\"usage\":{\"output_tokens\":1}}",
             reason);
    assert_int_equal(afeed(&s, ev), LLM_FEED_OK);
    if (!kx_utf8_valid(s.model, strlen(s.model)) ||
        !kx_utf8_valid(s.finish_reason, strlen(s.finish_reason)))
        fail_msg("the model or the stop_reason was cut inside a character");
    assert_true(strlen(s.model) >= sizeof s.model - 2);
    assert_true(strlen(s.finish_reason) >= sizeof s.finish_reason - 2);
    llm_stream_free(&s);
}

/* FNV-1a 64 of "call.b": a stored id Anthropic would refuse (a dot) is sent as this, in the
 * tool_use and its tool_result alike (before: "call.b", a 400 on every turn of the thread). */
#define CALL_B_HASH "5574789a7450f39f"

/* A thread in OpenAI's shape as an Anthropic Messages body: turns, tool_use and tool_result
 * blocks, arguments that are not JSON kept as _raw, ids Anthropic would refuse mapped. */
static void test_anthropic_body(void **state)
{
    (void)state;
    json_t *msgs = json_loads(
        "[{\"role\":\"user\",\"content\":\"list files\"},"
        " {\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":[{\"id\":\"call_a\","
        "   \"type\":\"function\",\"function\":{\"name\":\"execute_command\","
        "   \"arguments\":\"{\\\"command\\\":\\\"ls\\\"}\"}},{\"id\":\"call.b\",\"type\":"
        "   \"function\",\"function\":{\"name\":\"execute_command\",\"arguments\":\"oops\"}}]},"
        " {\"role\":\"tool\",\"tool_call_id\":\"call_a\",\"name\":\"execute_command\","
        "  \"content\":\"a.txt\"},"
        " {\"role\":\"tool\",\"tool_call_id\":\"call.b\",\"content\":\"bad args\"},"
        " {\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"and \"},"
        "   {\"type\":\"text\",\"text\":\"then?\"}]},"
        " {\"role\":\"assistant\",\"content\":\"Done.\",\"tool_calls\":null}]",
        0, NULL);
    json_t *tools =
        json_loads("[{\"type\":\"function\",\"function\":{\"name\":\"execute_command\","
                   "\"description\":\"runs\",\"parameters\":{\"type\":\"object\","
                   "\"properties\":{\"command\":{\"type\":\"string\"}}}}}]",
                   0, NULL);
    assert_non_null(msgs);
    assert_non_null(tools);
    char *body = llm_anthropic_body("claude-x", 4096, "You are a test.", tools, msgs);
    assert_non_null(body);
    json_t *got = json_loads(body, 0, NULL);
    json_t *want = json_loads(
        "{\"model\":\"claude-x\",\"max_tokens\":4096,\"system\":\"You are a test.\","
        " \"stream\":true,\"temperature\":0,\"tool_choice\":{\"type\":\"auto\"},"
        " \"tools\":[{\"name\":\"execute_command\",\"description\":\"runs\",\"input_schema\":"
        "   {\"type\":\"object\",\"properties\":{\"command\":{\"type\":\"string\"}}}}],"
        " \"messages\":["
        "  {\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"list files\"}]},"
        "  {\"role\":\"assistant\",\"content\":["
        "    {\"type\":\"tool_use\",\"id\":\"call_a\",\"name\":\"execute_command\","
        "     \"input\":{\"command\":\"ls\"}},"
        "    {\"type\":\"tool_use\",\"id\":\"kx_" CALL_B_HASH "\",\"name\":\"execute_command\","
        "     \"input\":{\"_raw\":\"oops\"}}]},"
        "  {\"role\":\"user\",\"content\":["
        "    {\"type\":\"tool_result\",\"tool_use_id\":\"call_a\",\"content\":\"a.txt\"},"
        "    {\"type\":\"tool_result\",\"tool_use_id\":\"kx_" CALL_B_HASH "\","
        "     \"content\":\"bad args\"},"
        "    {\"type\":\"text\",\"text\":\"and then?\"}]},"
        "  {\"role\":\"assistant\",\"content\":[{\"type\":\"text\",\"text\":\"Done.\"}]}]}",
        0, NULL);
    assert_non_null(want);
    if (!json_equal(got, want))
        fail_msg("the Anthropic body differs:\n%s", body);
    json_decref(got);
    json_decref(want);
    free(body);
    json_decref(msgs);
    json_decref(tools);
}

/* ---- routes and aliases ---------------------------------------------------------------- */

static void base_config(runner_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->provider = PROVIDER_DEMO;
    cfg->provider_name = "demo";
    snprintf(cfg->demo_url, sizeof cfg->demo_url, "http://127.0.0.1:1/v1");
    snprintf(cfg->openai_base_url, sizeof cfg->openai_base_url, "https://api.openai.com/v1");
    snprintf(cfg->anthropic_base_url, sizeof cfg->anthropic_base_url, "https://api.anthropic.com");
    snprintf(cfg->model, sizeof cfg->model, "kortix/demo");
}

static void test_routes(void **state)
{
    (void)state;
    runner_config cfg;
    base_config(&cfg);
    llm_route rt;
    char why[400];
    /* the demo model by default, whatever the name (the tests' and up.sh's default) */
    assert_int_equal(llm_route_resolve(&cfg, NULL, &rt, why, sizeof why), KX_OK);
    assert_string_equal(rt.url, "http://127.0.0.1:1/v1/chat/completions");
    assert_string_equal(rt.model, "kortix/demo");
    assert_string_equal(rt.provider, "demo");
    assert_int_equal(llm_route_resolve(&cfg, "gpt-4o-mini", &rt, why, sizeof why), KX_OK);
    assert_string_equal(rt.provider, "demo");
    /* a prefix for a provider that is not configured: a clear refusal */
    assert_int_equal(llm_route_resolve(&cfg, "anthropic/claude-x", &rt, why, sizeof why),
                     KX_ERR_INVALID);
    assert_non_null(strstr(why, "ANTHROPIC_API_KEY"));
    assert_int_equal(llm_route_resolve(&cfg, "openai/gpt-4o", &rt, why, sizeof why),
                     KX_ERR_INVALID);
    assert_non_null(strstr(why, "OPENAI_API_KEY"));

    cfg.anthropic_set = cfg.openai_set = true;
    snprintf(cfg.anthropic_api_key, sizeof cfg.anthropic_api_key, "sk-ant");
    snprintf(cfg.openai_api_key, sizeof cfg.openai_api_key, "sk-oa");
    assert_int_equal(llm_route_resolve(&cfg, "anthropic/claude-x", &rt, why, sizeof why), KX_OK);
    assert_int_equal(rt.wire, LLM_WIRE_ANTHROPIC);
    assert_string_equal(rt.url, "https://api.anthropic.com/v1/messages");
    assert_string_equal(rt.model, "claude-x");
    assert_string_equal(rt.api_key, "sk-ant");
    /* OpenRouter-style ids keep their own slashes */
    assert_int_equal(llm_route_resolve(&cfg, "openai/meta-llama/llama-3-70b", &rt, why,
                                       sizeof why),
                     KX_OK);
    assert_int_equal(rt.wire, LLM_WIRE_OPENAI);
    assert_string_equal(rt.url, "https://api.openai.com/v1/chat/completions");
    assert_string_equal(rt.model, "meta-llama/llama-3-70b");
    assert_string_equal(rt.api_key, "sk-oa");
    assert_int_equal(llm_route_resolve(&cfg, "anthropic/", &rt, why, sizeof why), KX_ERR_INVALID);
    assert_non_null(strstr(why, "names no model"));

    /* aliases, chained */
    assert_int_equal(
        runner_config_parse_aliases(&cfg,
                                    " sonnet = anthropic/claude-sonnet-4 ,fast=sonnet,,"
                                    "mini=openai/gpt-4o-mini",
                                    why, sizeof why),
        KX_OK);
    assert_int_equal(cfg.naliases, 3);
    assert_int_equal(llm_route_resolve(&cfg, "fast", &rt, why, sizeof why), KX_OK);
    assert_string_equal(rt.name, "anthropic/claude-sonnet-4");
    assert_string_equal(rt.model, "claude-sonnet-4");
    assert_int_equal(llm_route_resolve(&cfg, "mini", &rt, why, sizeof why), KX_OK);
    assert_string_equal(rt.model, "gpt-4o-mini");
    /* an alias loop ends after a few hops instead of spinning */
    assert_int_equal(runner_config_parse_aliases(&cfg, "a=b,b=a", why, sizeof why), KX_OK);
    assert_int_equal(llm_route_resolve(&cfg, "a", &rt, why, sizeof why), KX_OK);
    /* bad alias text names the bad item */
    assert_int_equal(runner_config_parse_aliases(&cfg, "ok=x,broken", why, sizeof why),
                     KX_ERR_INVALID);
    assert_non_null(strstr(why, "\"broken\""));
    assert_int_equal(runner_config_parse_aliases(&cfg, "=x", why, sizeof why), KX_ERR_INVALID);
    assert_non_null(strstr(why, "empty"));
}

static void test_retry_after(void **state)
{
    (void)state;
    int64_t now = 1700000000000LL; /* Tue, 14 Nov 2023 22:13:20 GMT */
    assert_int_equal(llm_retry_after_ms("2", now), 2000);
    assert_int_equal(llm_retry_after_ms(" 0 \r\n", now), 0);
    assert_int_equal(llm_retry_after_ms("Tue, 14 Nov 2023 22:13:25 GMT\r\n", now), 5000);
    assert_int_equal(llm_retry_after_ms("Tue, 14 Nov 2023 22:13:00 GMT", now), 0); /* past */
    assert_int_equal(llm_retry_after_ms("soon", now), -1);
    assert_int_equal(llm_retry_after_ms("", now), -1);
    assert_int_equal(llm_retry_after_ms("-3", now), -1);
}

/* The runner's configuration refuses a heartbeat slower than half the lease (live runs were
 * reaped mid-tool as "stopped heartbeating") and context budgets it would half-ignore. */
static void test_config_refuses_what_cannot_work(void **state)
{
    (void)state;
    runner_config cfg;
    assert_int_equal(runner_config_load(&cfg), KX_OK); /* the defaults: 1 s against 10 s */
    assert_int_equal(setenv("KX_HEARTBEAT_MS", "15000", 1), 0);
    assert_int_equal(runner_config_load(&cfg), KX_ERR_INVALID);
    assert_int_equal(setenv("KX_HEARTBEAT_MS", "5000", 1), 0);
    assert_int_equal(runner_config_load(&cfg), KX_OK); /* exactly half */
    assert_int_equal(setenv("KX_LEASE_TTL_MS", "9999", 1), 0);
    assert_int_equal(runner_config_load(&cfg), KX_ERR_INVALID);
    unsetenv("KX_HEARTBEAT_MS");
    unsetenv("KX_LEASE_TTL_MS");
    assert_int_equal(setenv("KX_CONTEXT_BUDGETS", "sonnet=abc", 1), 0);
    assert_int_equal(runner_config_load(&cfg), KX_ERR_INVALID);
    assert_int_equal(setenv("KX_CONTEXT_BUDGETS", "sonnet=90000,demo=5000", 1), 0);
    assert_int_equal(runner_config_load(&cfg), KX_OK);
    unsetenv("KX_CONTEXT_BUDGETS");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_anthropic_stream_every_split),
        cmocka_unit_test(test_openai_stream_every_split),
        cmocka_unit_test(test_anthropic_events),
        cmocka_unit_test(test_anthropic_long_strings_cut_whole),
        cmocka_unit_test(test_anthropic_body),
        cmocka_unit_test(test_routes),
        cmocka_unit_test(test_retry_after),
        cmocka_unit_test(test_config_refuses_what_cannot_work),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
