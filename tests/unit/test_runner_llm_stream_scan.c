/* test_runner_llm_stream_scan.c — the scan that folds the common chat.completion.chunk shapes
 * without a jansson tree (services/agent-runner/llm_stream_scan.c) must leave the stream
 * exactly as the tree walk (llm_stream_feed_tree) leaves it: same text, calls, finish_reason,
 * model, usage, counters, result and error words. Checked on canned streams (the demo model's
 * shapes, a real provider's, a non-streamed answer, escapes, duplicates, odd types), on every
 * chunk of them cut short, and on some 60000 chunks mutated at random (fixed seed: a failure
 * prints the chunk). The scan must also take the demo model's chunks itself (else it saves
 * nothing). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "llm_stream.h"
#include "llm_stream_scan.h"

#define HEAD "{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1733100000,"

/* The demo model's shapes (tests/fakes/demo-model/demo_turn.c), then a real provider's. */
static const char *const STREAM_TOOL[] = {
    HEAD "\"model\":\"kortix/demo\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\","
         "\"content\":null,\"tool_calls\":[{\"index\":0,\"id\":\"call_1\",\"type\":\"function\","
         "\"function\":{\"name\":\"view_tasks\",\"arguments\":\"\"}}]},\"finish_reason\":null}]}",
    HEAD
    "\"model\":\"kortix/demo\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\""
    ":0,\"function\":{\"arguments\":\"{\\\"command\\\": \\\"ls\"}}]},\"finish_reason\":null}]}",
    HEAD
    "\"model\":\"kortix/demo\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\""
    ":0,\"function\":{\"arguments\":\" -la\\\\n\\u00e9\\/\\\"}\"}}]},\"finish_reason\":null}]}",
    HEAD "\"model\":\"kortix/demo\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":"
         "\"tool_calls\"}]}",
    HEAD "\"model\":\"kortix/demo\",\"choices\":[],\"usage\":{\"prompt_tokens\":1200,"
         "\"completion_tokens\":34,\"total_tokens\":1234}}",
    "[DONE]",
};

static const char *const STREAM_TEXT[] = {
    HEAD "\"model\":\"kortix/demo\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\","
         "\"content\":\"Done: the \"},\"finish_reason\":null}]}",
    HEAD "\"model\":\"kortix/demo\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"tasks are "
         "\\\"listed\\\"\\n\\t\\u2713 \\u0041\\b\\f\\r \xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"},"
         "\"finish_reason\":null}]}",
    HEAD "\"model\":\"kortix/demo\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":"
         "\"stop\"}]}",
    HEAD "\"model\":\"kortix/demo\",\"choices\":[],\"usage\":{\"prompt_tokens\":-3,"
         "\"completion_tokens\":2.5,\"total_tokens\":null}}",
    "  [DONE]\r\n",
};

static const char *const STREAM_ODD[] = {
    " \n{ \"choices\" : [ { \"delta\" : { \"content\" : \"a\" } , \"index\" : 0 } , 7, {\"delta\":"
    "{\"content\":\"b\"}} ] , \"model\" : \"m\\u00e9\" }\r\n",
    "{\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":2,\"id\":\"b\",\"function\":{\"name\":"
    "\"two\"}},5,{\"id\":\"a\",\"function\":{\"name\":\"zero\",\"arguments\":\"{}\"}},{\"index\":"
    "1.0,\"function\":{\"name\":\"three\"}}]}}]}",
    "{\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":2,\"function\":{\"name\":\"two\","
    "\"arguments\":\"x\"}},{\"index\":2,\"function\":{\"name\":\"tw\",\"arguments\":{\"a\":1}}}]}}]}",
    "{\"choices\":[{\"message\":{\"role\":\"assistant\",\"content\":\"whole\"},\"finish_reason\":"
    "\"length\"}],\"usage\":{\"prompt_tokens\":9223372036854775807,\"completion_tokens\":5}}",
    "{\"choices\":[{\"delta\":\"x\",\"message\":{\"content\":\"m\"}}]}",
    "{\"choices\":[{\"delta\":{\"content\":\"d\"},\"message\":{\"content\":\"m\"}}]}",
    "{\"model\":\"first\",\"model\":\"second\"}",
    "{\"choices\":[{\"delta\":{\"content\":\"a\",\"content\":\"b\"}}]}",
    "{\"choices\":{}}",
    "{\"choices\":[]}{}",
    "{\"error\":null,\"choices\":[{\"delta\":{\"content\":\"after a null error\"}}]}",
    "{\"error\":{\"message\":\"overloaded\",\"type\":\"server_error\"}}",
    "{\"mod\\u0065l\":\"escaped key\",\"choices\":[{\"fin\\u0069sh_reason\":\"x\"}]}",
    "{\"x\":{\"k\\u0065y\":[1,-0,0.5,true,false,null,{\"\":\"\"}]},\"choices\":[{\"delta\":{}}]}",
    "{\"choices\":[{\"delta\":{\"content\":\"\\ud83d\\ude00 pair\"}}]}",
    "{\"choices\":[{\"delta\":{\"content\":\"nul \\u0000\"}}]}",
    "{\"n\":1e5,\"choices\":[{\"delta\":{\"content\":\"exp\"}}]}",
    "{\"n\":12345678901234567890123,\"choices\":[]}",
    "{\"n\":01}",
    "{\"choices\":[{\"delta\":{\"content\":\"bad \xff utf8\"}}]}",
    "{\"choices\":[{\"finish_reason\":\"a_very_long_finish_reason_that_does_not_fit_in_32\"}],"
    "\"model\":\"" /* 150 bytes: cut to the field */
    "mmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmm"
    "mmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmm\"}",
    "[1,2]",
    "",
    "not json",
};

static void same_buf(const kx_buf *a, const kx_buf *b, const char *chunk)
{
    if (a->len != b->len || (a->len > 0 && memcmp(a->s, b->s, a->len) != 0)) {
        print_error("differs after chunk: %s\n", chunk);
        fail();
    }
}

static void same_stream(const llm_stream *a, const llm_stream *b, const char *chunk)
{
    same_buf(&a->content, &b->content, chunk);
    if (a->ncalls != b->ncalls || strcmp(a->finish_reason, b->finish_reason) != 0 ||
        strcmp(a->model, b->model) != 0 || a->done != b->done || a->have_usage != b->have_usage ||
        a->prompt_tokens != b->prompt_tokens || a->completion_tokens != b->completion_tokens ||
        a->total_tokens != b->total_tokens || a->nchunks != b->nchunks ||
        a->received_output != b->received_output || strcmp(a->error, b->error) != 0) {
        print_error("differs after chunk: %s\n", chunk);
        fail();
    }
    for (size_t i = 0; i < a->ncalls; i++) {
        assert_int_equal(a->calls[i].index, b->calls[i].index);
        same_buf(&a->calls[i].id, &b->calls[i].id, chunk);
        same_buf(&a->calls[i].name, &b->calls[i].name, chunk);
        same_buf(&a->calls[i].arguments, &b->calls[i].arguments, chunk);
    }
}

/* Feeds the chunk to both streams; both must answer alike and stay alike. */
static void feed_both(llm_stream *fast, llm_stream *tree, const char *chunk, size_t len)
{
    size_t ff = 7, ft = 9;
    llm_feed_result a = llm_stream_feed(fast, chunk, len, &ff);
    llm_feed_result b = llm_stream_feed_tree(tree, chunk, len, &ft);
    if (a != b || ff != ft) {
        print_error("result %d vs %d after chunk: %.*s\n", a, b, (int)len, chunk);
        fail();
    }
    same_stream(fast, tree, chunk);
}

static void run_stream(const char *const *chunks, size_t n)
{
    llm_stream fast, tree;
    llm_stream_init(&fast);
    llm_stream_init(&tree);
    for (size_t i = 0; i < n; i++)
        feed_both(&fast, &tree, chunks[i], strlen(chunks[i]));
    llm_stream_free(&fast);
    llm_stream_free(&tree);
}

#define N(a) (sizeof(a) / sizeof *(a))

static void test_canned_streams(void **state)
{
    (void)state;
    run_stream(STREAM_TOOL, N(STREAM_TOOL));
    run_stream(STREAM_TEXT, N(STREAM_TEXT));
    run_stream(STREAM_ODD, N(STREAM_ODD));
    for (size_t i = 0; i < N(STREAM_ODD); i++) /* each alone too: a fresh stream */
        run_stream(&STREAM_ODD[i], 1);
}

/* The demo model's chunks (and a provider's usage chunk) are taken by the scan itself. */
static void test_scan_takes_the_common_chunks(void **state)
{
    (void)state;
    const char *const *streams[] = {STREAM_TOOL, STREAM_TEXT};
    const size_t lens[] = {N(STREAM_TOOL) - 1, N(STREAM_TEXT) - 1}; /* not [DONE] */
    for (size_t k = 0; k < 2; k++) {
        llm_stream s;
        llm_stream_init(&s);
        for (size_t i = 0; i < lens[k]; i++)
            assert_int_equal(llm_stream_scan_feed(&s, streams[k][i], strlen(streams[k][i])),
                             LLM_FEED_OK);
        llm_stream_free(&s);
    }
    llm_stream s;
    llm_stream_init(&s);
    assert_int_equal(llm_stream_scan_feed(&s, "{\"error\":{\"message\":\"x\"}}", 26), -1);
    assert_int_equal(s.nchunks, 0); /* left to the tree: untouched */
    llm_stream_free(&s);
}

/* Every chunk cut at every length: the scan refuses what is not whole (or folds what is). */
static void test_cut_chunks(void **state)
{
    (void)state;
    const char *const *streams[] = {STREAM_TOOL, STREAM_TEXT, STREAM_ODD};
    const size_t lens[] = {N(STREAM_TOOL), N(STREAM_TEXT), N(STREAM_ODD)};
    for (size_t k = 0; k < 3; k++)
        for (size_t i = 0; i < lens[k]; i++) {
            size_t len = strlen(streams[k][i]);
            for (size_t cut = 0; cut < len; cut++) {
                llm_stream fast, tree;
                llm_stream_init(&fast);
                llm_stream_init(&tree);
                feed_both(&fast, &tree, streams[k][i], cut);
                llm_stream_free(&fast);
                llm_stream_free(&tree);
            }
        }
}

static uint64_t g_rng = 0x2545F4914F6CDD1DULL;

static uint64_t rnd(void)
{
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return g_rng;
}

/* Random edits that reach the scan's corners: JSON punctuation, escapes, digits, bytes that
 * are not UTF-8, duplicates of a piece of the chunk. */
static size_t mutate(char *buf, size_t len, size_t cap)
{
    static const char *const pieces[] = {
        "\"",
        "\\",
        "\\u00",
        "\\ud800",
        "\\u0000",
        "{",
        "}",
        "[",
        "]",
        ",",
        ":",
        " ",
        "0",
        "-",
        "1e9",
        ".5",
        "null",
        "\xff",
        "\xc3",
        "\"x\":1,",
        "\t",
        "9999999999999999999",
        "\"index\":1,",
        "\"content\":\"z\",",
        "\"model\":\"q\",",
    };
    int edits = 1 + (int)(rnd() % 3);
    for (int e = 0; e < edits && len > 0; e++) {
        size_t at = rnd() % len;
        switch (rnd() % 4) {
        case 0: buf[at] = (char)(rnd() % 256); break;
        case 1: /* delete a short run */
        {
            size_t n = 1 + rnd() % 4;
            if (at + n > len)
                n = len - at;
            memmove(buf + at, buf + at + n, len - at - n);
            len -= n;
            break;
        }
        default: /* insert a piece */
        {
            const char *p = pieces[rnd() % N(pieces)];
            size_t n = strlen(p);
            if (len + n >= cap)
                break;
            memmove(buf + at + n, buf + at, len - at);
            for (size_t j = 0; j < n; j++) /* a piece of the chunk, not a string */
                buf[at + j] = p[j];
            len += n;
            break;
        }
        }
    }
    return len;
}

static void test_mutated_chunks(void **state)
{
    (void)state;
    const char *const *streams[] = {STREAM_TOOL, STREAM_TEXT, STREAM_ODD};
    const size_t lens[] = {N(STREAM_TOOL), N(STREAM_TEXT), N(STREAM_ODD)};
    char buf[1024];
    for (int round = 0; round < 60000; round++) {
        size_t k = rnd() % 3;
        size_t i = rnd() % lens[k];
        size_t len = strlen(streams[k][i]);
        memcpy(buf, streams[k][i], len);
        len = mutate(buf, len, sizeof buf - 1);
        buf[len] = '\0';
        /* after the stream's first chunk, so that calls and text are there already */
        llm_stream fast, tree;
        llm_stream_init(&fast);
        llm_stream_init(&tree);
        feed_both(&fast, &tree, streams[k][0], strlen(streams[k][0]));
        feed_both(&fast, &tree, buf, len);
        llm_stream_free(&fast);
        llm_stream_free(&tree);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_canned_streams),
        cmocka_unit_test(test_scan_takes_the_common_chunks),
        cmocka_unit_test(test_cut_chunks),
        cmocka_unit_test(test_mutated_chunks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
