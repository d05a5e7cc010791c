/* test_demo_wire.c — the demo model's streamed chunks, printed as text (demo_turn.c), are byte
 * for byte what the demo model sent when it built each chunk as a jansson tree and dumped it
 * (JSON_COMPACT): the reference renderer below is that former code. Turns cover text with
 * escapes, control characters, non-ASCII and many words, and tool calls whose arguments hold
 * escapes and multi-byte characters at fragment boundaries. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "demo_turn.h"

/* ---- the reference: one jansson tree per chunk, dumped compact ---- */

#define REF_ARG_FRAGMENT_BYTES 24 /* as demo_turn.c */

static void ref_push(json_t *lines, json_t *v)
{
    char *s = json_dumps(v, JSON_COMPACT);
    assert_non_null(s);
    size_t len = strlen(s) + 9;
    char *line = malloc(len);
    assert_non_null(line);
    snprintf(line, len, "data: %s\n\n", s);
    json_array_append_new(lines, json_string(line));
    free(line);
    free(s);
    json_decref(v);
}

static void ref_chunk(json_t *lines, const demo_reply_meta *m, json_t *delta, const char *fr)
{
    json_t *f = fr ? json_string(fr) : json_null();
    ref_push(lines,
             json_pack("{s:s, s:s, s:I, s:s, s:[{s:i, s:o, s:o}]}", "id", m->id, "object",
                       "chat.completion.chunk", "created", (json_int_t)m->created, "model",
                       m->model, "choices", "index", 0, "delta", delta, "finish_reason", f));
}

static json_t *ref_render(const demo_turn *t, const demo_reply_meta *m)
{
    json_t *lines = json_array();
    if (t->tool_call) {
        ref_chunk(lines, m,
                  json_pack("{s:s, s:n, s:[{s:i, s:s, s:s, s:{s:s, s:s}}]}", "role", "assistant",
                            "content", "tool_calls", "index", 0, "id", t->call_id, "type",
                            "function", "function", "name", t->tool, "arguments", ""),
                  NULL);
        const char *args = t->arguments;
        size_t len = strlen(args);
        size_t pieces = (len + REF_ARG_FRAGMENT_BYTES - 1) / REF_ARG_FRAGMENT_BYTES;
        if (pieces < 2)
            pieces = 2;
        size_t step = (len + pieces - 1) / pieces, pos = 0;
        while (pos < len) {
            size_t end = pos + step < len ? pos + step : len;
            while (end < len && ((unsigned char)args[end] & 0xC0) == 0x80)
                end++;
            ref_chunk(lines, m,
                      json_pack("{s:[{s:i, s:{s:s%}}]}", "tool_calls", "index", 0, "function",
                                "arguments", args + pos, end - pos),
                      NULL);
            pos = end;
        }
    } else {
        const char *p = t->content;
        int first = 1;
        do {
            const char *start = p;
            int words = 0;
            while (*p) {
                int space = (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r');
                if (!space &&
                    (p == start || p[-1] == ' ' || p[-1] == '\n' || p[-1] == '\t' ||
                     p[-1] == '\r')) {
                    if (words == DEMO_WORDS_PER_CHUNK)
                        break;
                    words++;
                }
                p++;
            }
            json_t *piece = json_stringn(start, (size_t)(p - start));
            assert_non_null(piece);
            ref_chunk(lines, m,
                      first ? json_pack("{s:s, s:o}", "role", "assistant", "content", piece)
                            : json_pack("{s:o}", "content", piece),
                      NULL);
            first = 0;
        } while (*p);
    }
    ref_chunk(lines, m, json_object(), t->finish_reason);
    size_t out = 0;
    if (t->content)
        out += demo_utf8_chars(t->content);
    if (t->tool)
        out += demo_utf8_chars(t->tool) + demo_utf8_chars(t->arguments);
    json_int_t pr = (json_int_t)((m->prompt_chars + 3) / 4), co = (json_int_t)((out + 3) / 4);
    ref_push(lines,
             json_pack("{s:s, s:s, s:I, s:s, s:[], s:{s:I, s:I, s:I}}", "id", m->id, "object",
                       "chat.completion.chunk", "created", (json_int_t)m->created, "model",
                       m->model, "choices", "usage", "prompt_tokens", pr, "completion_tokens", co,
                       "total_tokens", pr + co));
    json_array_append_new(lines, json_string("data: [DONE]\n\n"));
    return lines;
}

/* ---- comparing ---- */

static void assert_same_wire(const demo_turn *t, const demo_reply_meta *m)
{
    char **chunks = NULL;
    size_t n = 0;
    assert_int_equal(demo_render_stream(t, m, &chunks, &n), 0);
    json_t *want = ref_render(t, m);
    assert_int_equal(n, json_array_size(want));
    for (size_t i = 0; i < n; i++)
        assert_string_equal(chunks[i], json_string_value(json_array_get(want, i)));
    json_decref(want);
    demo_chunks_free(chunks, n);
}

static const demo_reply_meta META = {.id = "chatcmpl-00112233aabbccdd7",
                                     .model = "kortix/demo",
                                     .created = 1764626400,
                                     .prompt_chars = 12345};

/* what a final answer with an image looks like */
static const char FINAL_ANSWER[] =
    "Done. The last tool result was: {\"tool_execution\": {\"result\": \"ok\"}} [images "
    "received: 1: image/png 4096 bytes]";

static void test_text_turns_match_the_jansson_rendering(void **state)
{
    (void)state;
    static const char *const texts[] = {
        "hi",
        "",
        "one two three four five six seven",
        "  leading blanks\tand\ttabs\r\nand lines\n\n",
        "quotes \"inside\" and back\\slashes and a /slash/",
        "controls \x01\x02\x1f\x7f and \b\f end",
        "non-ASCII: é ü 日本語 😀 and U+2028 \xe2\x80\xa8 kept",
        FINAL_ANSWER,
    };
    for (size_t i = 0; i < sizeof texts / sizeof *texts; i++) {
        demo_turn t = {.content = (char *)texts[i], .finish_reason = "stop"};
        assert_same_wire(&t, &META);
    }
    demo_reply_meta odd = META;
    odd.model = "a \"model\"\n\\ with é";
    odd.id = "chatcmpl-x";
    odd.created = 0;
    odd.prompt_chars = 0;
    demo_turn t = {.content = "say it", .finish_reason = "stop"};
    assert_same_wire(&t, &odd);
}

static void test_tool_call_turns_match_the_jansson_rendering(void **state)
{
    (void)state;
    static const char *const args[] = {
        "{}",
        "{\"command\":\"true\",\"blocking\":true}",
        "{\"command\":\"echo \\\"hi\\\" \\\\ there\\n\",\"n\":[1,2.5,null]}",
        "{\"text\":\"ééééééééééééééééééééééééééééééé日本語日本語日本語😀😀😀😀\"}",
    };
    for (size_t i = 0; i < sizeof args / sizeof *args; i++) {
        demo_turn t = {.tool_call = true,
                       .tool = "execute_command",
                       .arguments = (char *)args[i],
                       .call_id = "call_1_0badf00d",
                       .finish_reason = "tool_calls"};
        assert_same_wire(&t, &META);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text_turns_match_the_jansson_rendering),
        cmocka_unit_test(test_tool_call_turns_match_the_jansson_rendering),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
