/* test_runner_llm_stream.c — the agent-runner's accumulator of OpenAI chat.completion.chunk
 * objects (services/agent-runner/llm_stream.c): content deltas, tool-call fragments by index
 * (kept in the order they began, at most LLM_MAX_CALLS, indices within int),
 * finish_reason, usage, [DONE], errors in the stream and error bodies. */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "kx/utf8.h"
#include "llm_stream.h"

static llm_feed_result feed(llm_stream *s, const char *data, size_t *from)
{
    return llm_stream_feed(s, data, strlen(data), from);
}

static void test_content_deltas(void **state)
{
    llm_stream s;
    llm_stream_init(&s);
    size_t from = 99;
    assert_int_equal(feed(&s,
                          "{\"id\":\"c1\",\"object\":\"chat.completion.chunk\","
                          "\"model\":\"kortix/demo\",\"choices\":[{\"index\":0,\"delta\":"
                          "{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}",
                          &from),
                     LLM_FEED_OK);
    assert_int_equal(from, 0);
    assert_int_equal(s.content.len, 0);
    assert_false(s.received_output);
    assert_int_equal(feed(&s, "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"}}]}",
                          &from),
                     LLM_FEED_OK);
    assert_int_equal(from, 0);
    assert_int_equal(feed(&s,
                          "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo \\u00e9\"}}]}",
                          &from),
                     LLM_FEED_OK);
    assert_int_equal(from, 3);
    assert_string_equal(s.content.s + from, "lo \xc3\xa9");
    assert_string_equal(s.content.s, "Hello \xc3\xa9");
    assert_true(s.received_output);
    assert_string_equal(s.model, "kortix/demo");
    assert_string_equal(s.finish_reason, "");
    assert_int_equal(s.ncalls, 0);
    assert_int_equal(s.nchunks, 3);
    llm_stream_free(&s);
}

static void test_finish_usage_done(void **state)
{
    llm_stream s;
    llm_stream_init(&s);
    assert_int_equal(feed(&s, "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"ok\"}}]}",
                          NULL),
                     LLM_FEED_OK);
    assert_int_equal(feed(&s,
                          "{\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}",
                          NULL),
                     LLM_FEED_OK);
    assert_string_equal(s.finish_reason, "stop");
    assert_false(s.have_usage);
    /* OpenAI's include_usage chunk: empty choices, usage set */
    assert_int_equal(feed(&s,
                          "{\"choices\":[],\"usage\":{\"prompt_tokens\":12,"
                          "\"completion_tokens\":3,\"total_tokens\":15}}",
                          NULL),
                     LLM_FEED_OK);
    assert_true(s.have_usage);
    assert_int_equal(s.prompt_tokens, 12);
    assert_int_equal(s.completion_tokens, 3);
    assert_int_equal(s.total_tokens, 15);
    assert_false(s.done);
    assert_int_equal(feed(&s, " [DONE] ", NULL), LLM_FEED_DONE);
    assert_true(s.done);
    assert_string_equal(s.content.s, "ok");
    llm_stream_free(&s);
}

/* Usage without total_tokens: the sum of two provider numbers overflowed (undefined behaviour,
 * found by tests/fuzz/llm_stream); it saturates now. A negative count is 0 (before: saved in
 * the turn's row as it came, -9223372036854775809 in total here). */
static void test_usage_sum_saturates(void **state)
{
    llm_stream s;
    llm_stream_init(&s);
    assert_int_equal(feed(&s,
                          "{\"choices\":[],\"usage\":{\"prompt_tokens\":"
                          "9223372036854775807,\"completion_tokens\":1}}",
                          NULL),
                     LLM_FEED_OK);
    assert_true(s.total_tokens == LLONG_MAX);
    assert_int_equal(feed(&s,
                          "{\"usage\":{\"prompt_tokens\":-9223372036854775807,"
                          "\"completion_tokens\":-2}}",
                          NULL),
                     LLM_FEED_OK);
    assert_true(s.prompt_tokens == 0 && s.completion_tokens == 0 && s.total_tokens == 0);
    assert_int_equal(feed(&s, "{\"usage\":{\"prompt_tokens\":7,\"total_tokens\":-1}}", NULL),
                     LLM_FEED_OK);
    assert_true(s.prompt_tokens == 7 && s.total_tokens == 0);
    assert_int_equal(feed(&s, "{\"usage\":{\"prompt_tokens\":2,\"completion_tokens\":3}}", NULL),
                     LLM_FEED_OK);
    assert_int_equal(s.total_tokens, 5);
    llm_stream_free(&s);
}

static void test_tool_call_fragments(void **state)
{
    llm_stream s;
    llm_stream_init(&s);
    /* index 1 arrives first, then index 0; arguments split mid-token across chunks */
    assert_int_equal(feed(&s,
                          "{\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\","
                          "\"content\":null,\"tool_calls\":[{\"index\":1,\"id\":\"call_B\","
                          "\"type\":\"function\",\"function\":{\"name\":\"execute_command\","
                          "\"arguments\":\"\"}}]}}]}",
                          NULL),
                     LLM_FEED_OK);
    assert_int_equal(feed(&s,
                          "{\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,"
                          "\"id\":\"call_A\",\"function\":{\"name\":\"execute_command\","
                          "\"arguments\":\"{\\\"comm\"}}]}}]}",
                          NULL),
                     LLM_FEED_OK);
    assert_int_equal(feed(&s,
                          "{\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,"
                          "\"function\":{\"arguments\":\"and\\\": \\\"ls\"}}]}}]}",
                          NULL),
                     LLM_FEED_OK);
    assert_int_equal(feed(&s,
                          "{\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":1,"
                          "\"function\":{\"arguments\":\"{}\"}},{\"index\":0,\"function\":"
                          "{\"arguments\":\"\\\"}\"}}]}}]}",
                          NULL),
                     LLM_FEED_OK);
    assert_int_equal(feed(&s,
                          "{\"choices\":[{\"index\":0,\"delta\":{},"
                          "\"finish_reason\":\"tool_calls\"}]}",
                          NULL),
                     LLM_FEED_OK);
    assert_int_equal(feed(&s, "[DONE]", NULL), LLM_FEED_DONE);

    /* in the order the calls began, not by index: the runner starts calls while the answer
     * streams and finds them again by position (kept sorted by index, index 0 took index 1's
     * place under it: one call ran twice, the other never) */
    assert_int_equal(s.ncalls, 2);
    assert_int_equal(s.calls[1].index, 0);
    assert_string_equal(s.calls[1].id.s, "call_A");
    assert_string_equal(s.calls[1].name.s, "execute_command");
    assert_string_equal(s.calls[1].arguments.s, "{\"command\": \"ls\"}");
    assert_int_equal(s.calls[0].index, 1);
    assert_string_equal(s.calls[0].id.s, "call_B");
    assert_string_equal(s.calls[0].arguments.s, "{}");
    assert_string_equal(s.finish_reason, "tool_calls");
    assert_true(s.received_output);
    assert_int_equal(s.content.len, 0);
    llm_stream_free(&s);
}

static void test_repeated_name_not_doubled(void **state)
{
    llm_stream s;
    llm_stream_init(&s);
    assert_int_equal(feed(&s,
                          "{\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"x\","
                          "\"function\":{\"name\":\"f\",\"arguments\":\"{\"}}]}}]}",
                          NULL),
                     LLM_FEED_OK);
    assert_int_equal(feed(&s,
                          "{\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"x\","
                          "\"function\":{\"name\":\"f\",\"arguments\":\"}\"}}]}}]}",
                          NULL),
                     LLM_FEED_OK);
    assert_string_equal(s.calls[0].name.s, "f");
    assert_string_equal(s.calls[0].id.s, "x");
    assert_string_equal(s.calls[0].arguments.s, "{}");
    llm_stream_free(&s);
}

static void test_whole_completion(void **state)
{
    llm_stream s;
    llm_stream_init(&s);
    assert_int_equal(feed(&s,
                          "{\"object\":\"chat.completion\",\"choices\":[{\"index\":0,"
                          "\"message\":{\"role\":\"assistant\",\"content\":\"hi\"},"
                          "\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":1,"
                          "\"completion_tokens\":1}}",
                          NULL),
                     LLM_FEED_OK);
    assert_string_equal(s.content.s, "hi");
    assert_string_equal(s.finish_reason, "stop");
    assert_int_equal(s.total_tokens, 2);
    llm_stream_free(&s);
}

static void test_errors(void **state)
{
    llm_stream s;
    llm_stream_init(&s);
    assert_int_equal(feed(&s,
                          "{\"error\":{\"message\":\"Rate limit reached\","
                          "\"type\":\"rate_limit_error\"}}",
                          NULL),
                     LLM_FEED_ERROR);
    assert_string_equal(s.error, "Rate limit reached (rate_limit_error)");
    assert_int_equal(feed(&s, "not json at all", NULL), LLM_FEED_MALFORMED);
    assert_non_null(strstr(s.error, "not a JSON object"));
    assert_int_equal(feed(&s, "[1,2]", NULL), LLM_FEED_MALFORMED);
    assert_int_equal(feed(&s, "{\"choices\":\"nope\"}", NULL), LLM_FEED_MALFORMED);
    assert_int_equal(s.content.len, 0);
    llm_stream_free(&s);

    char msg[128];
    const char *b1 = "{\"error\":{\"message\":\"Incorrect API key provided\","
                     "\"type\":\"invalid_request_error\",\"code\":\"invalid_api_key\"}}";
    llm_error_message(b1, strlen(b1), msg, sizeof msg);
    assert_string_equal(msg, "Incorrect API key provided (invalid_request_error)");
    const char *b2 = "{\"detail\":\"model not found\"}";
    llm_error_message(b2, strlen(b2), msg, sizeof msg);
    assert_string_equal(msg, "model not found");
    const char *b3 = "<html>502 Bad Gateway\n</html>";
    llm_error_message(b3, strlen(b3), msg, sizeof msg);
    assert_string_equal(msg, "<html>502 Bad Gateway </html>");
    llm_error_message(NULL, 0, msg, sizeof msg);
    assert_string_equal(msg, "(empty body)");
}

/* One chunk of n calls with the indices first..first+n-1, each with its name. */
static char *calls_chunk(int first, int n)
{
    size_t cap = 64 + (size_t)n * 64;
    char *out = malloc(cap);
    assert_non_null(out);
    size_t len =
        (size_t)snprintf(out, cap, "{\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[");
    for (int i = 0; i < n; i++)
        len += (size_t)snprintf(out + len, cap - len,
                                "%s{\"index\":%d,\"function\":{\"name\":\"t\"}}", i ? "," : "",
                                first + i);
    snprintf(out + len, cap - len, "]}}]}");
    return out;
}

/* At most LLM_MAX_CALLS calls an answer: each becomes a row, an event and an executor request,
 * and an answer of bare {"index": N} entries (nothing against the answer's byte limit) made
 * hundreds of thousands of them in quadratic time on the runner's loop. Both parsers (the scan
 * takes chunks of up to 8 calls, the tree the rest). */
static void test_too_many_calls(void **state)
{
    (void)state;
    for (int per_chunk = 4; per_chunk <= 64; per_chunk *= 16) {
        llm_stream s;
        llm_stream_init(&s);
        for (int first = 0; first < LLM_MAX_CALLS; first += per_chunk) {
            char *c = calls_chunk(first, per_chunk);
            assert_int_equal(feed(&s, c, NULL), LLM_FEED_OK);
            free(c);
        }
        assert_int_equal(s.ncalls, LLM_MAX_CALLS);
        char *again = calls_chunk(0, 1); /* a known index is not a new call */
        assert_int_equal(feed(&s, again, NULL), LLM_FEED_OK);
        free(again);
        char *c = calls_chunk(LLM_MAX_CALLS, per_chunk);
        assert_int_equal(feed(&s, c, NULL), LLM_FEED_MALFORMED);
        free(c);
        assert_non_null(strstr(s.error, "more than 128 tool calls"));
        assert_int_equal(s.ncalls, LLM_MAX_CALLS);
        llm_stream_free(&s);
    }
}

/* An index beyond int is refused, not cut to an int that merges it with another call. */
static void test_index_out_of_range(void **state)
{
    (void)state;
    const char *chunks[] = {
        "{\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"A\","
        "\"function\":{\"name\":\"x\",\"arguments\":\"{\\\"a\\\":\"}},{\"index\":4294967296,"
        "\"id\":\"B\",\"function\":{\"name\":\"y\",\"arguments\":\"1}\"}}]}}]}",
        "{\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":-1,"
        "\"function\":{\"name\":\"y\"}}]}}]}",
    };
    for (size_t i = 0; i < sizeof chunks / sizeof chunks[0]; i++) {
        llm_stream s;
        llm_stream_init(&s);
        assert_int_equal(feed(&s, chunks[i], NULL), LLM_FEED_MALFORMED);
        assert_non_null(strstr(s.error, "tool call with index"));
        llm_stream_free(&s);
        llm_stream_init(&s); /* the tree's reading of the same chunk */
        assert_int_equal(llm_stream_feed_tree(&s, chunks[i], strlen(chunks[i]), NULL),
                         LLM_FEED_MALFORMED);
        assert_non_null(strstr(s.error, "tool call with index"));
        llm_stream_free(&s);
    }
}

/* A NUL character (\u0000) in a chunk's strings: folded in as U+FFFD (Postgres holds no NUL),
 * not a malformed chunk; the same through the scan and the tree. */
static void test_nul_characters(void **state)
{
    (void)state;
    const char *chunk =
        "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\\u0000b\\u0000\","
        "\"tool_calls\":[{\"index\":0,\"id\":\"c\\u00001\",\"function\":{\"name\":\"x\\u0000\","
        "\"arguments\":\"{\\\"k\\\": \\\"v\\u0000\\\"}\"}}]}}]}";
    for (int tree = 0; tree < 2; tree++) {
        llm_stream s;
        llm_stream_init(&s);
        llm_feed_result r =
            tree ? llm_stream_feed_tree(&s, chunk, strlen(chunk), NULL) : feed(&s, chunk, NULL);
        if (r != LLM_FEED_OK)
            fail_msg("%s: %s", tree ? "tree" : "scan", s.error);
        assert_int_equal(s.content.len, 8);
        assert_memory_equal(s.content.s,
                            "a\xef\xbf\xbd"
                            "b\xef\xbf\xbd",
                            8);
        assert_int_equal(s.ncalls, 1);
        assert_string_equal(s.calls[0].id.s,
                            "c\xef\xbf\xbd"
                            "1");
        assert_string_equal(s.calls[0].name.s, "x\xef\xbf\xbd");
        assert_string_equal(s.calls[0].arguments.s, "{\"k\": \"v\xef\xbf\xbd\"}");
        llm_stream_free(&s);
    }
}

/* A provider's model and finish_reason longer than their fields are cut at a character
 * boundary (they go into JSON rows, which take UTF-8 only), by the scan and the tree alike. */
static void test_long_strings_cut_whole(void **state)
{
    (void)state;
    char model[512] = "", reason[128] = "";
    for (int i = 0; i < 150; i++) { /* 300 bytes of e-acute */
        model[2 * i] = (char)0xc3;
        model[2 * i + 1] = (char)0xa9;
    }
    for (int i = 0; i < 25; i++) {
        reason[2 * i] = (char)0xc3;
        reason[2 * i + 1] = (char)0xa9;
    }
    char chunk[1024];
    snprintf(chunk, sizeof chunk,
             "{\"model\":\"%s\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"},"
             "\"finish_reason\":\"%s\"}]}",
             model, reason);
    for (int tree = 0; tree < 2; tree++) {
        llm_stream s;
        llm_stream_init(&s);
        llm_feed_result r = tree ? llm_stream_feed_tree(&s, chunk, strlen(chunk), NULL)
                                 : llm_stream_feed(&s, chunk, strlen(chunk), NULL);
        assert_int_equal(r, LLM_FEED_OK);
        if (!kx_utf8_valid(s.model, strlen(s.model)) ||
            !kx_utf8_valid(s.finish_reason, strlen(s.finish_reason)))
            fail_msg("%s: the model or the finish_reason was cut inside a character",
                     tree ? "tree" : "scan");
        assert_true(strlen(s.model) >= sizeof s.model - 2);
        assert_memory_equal(s.model, model, strlen(s.model));
        assert_true(strlen(s.finish_reason) >= sizeof s.finish_reason - 2);
        assert_memory_equal(s.finish_reason, reason, strlen(s.finish_reason));
        llm_stream_free(&s);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_content_deltas),
        cmocka_unit_test(test_finish_usage_done),
        cmocka_unit_test(test_usage_sum_saturates),
        cmocka_unit_test(test_tool_call_fragments),
        cmocka_unit_test(test_repeated_name_not_doubled),
        cmocka_unit_test(test_whole_completion),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_too_many_calls),
        cmocka_unit_test(test_index_out_of_range),
        cmocka_unit_test(test_nul_characters),
        cmocka_unit_test(test_long_strings_cut_whole),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
