/* test_demo_script.c — unit tests of the demo model's pure parts (tests/fakes/demo-model):
 * the script parser (each directive, modifiers attaching to the next step, malformed lines),
 * step selection from a request's messages (native and XML mode), the turn it produces and its
 * OpenAI wire forms, and the attempt counter behind `fail`. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "demo_attempts.h"
#include "demo_conv.h"
#include "demo_script.h"
#include "demo_turn.h"

/* ---- helpers ---- */

static demo_script parse(const char *text)
{
    demo_script s;
    assert_int_equal(demo_script_parse(text, &s), 0);
    return s;
}

static char *args_text(const demo_step *st)
{
    char *s = json_dumps(st->args, JSON_COMPACT);
    assert_non_null(s);
    return s;
}

static json_t *load(const char *text)
{
    json_error_t e;
    json_t *v = json_loads(text, 0, &e);
    if (v == NULL)
        fail_msg("bad test JSON: %s: %s", e.text, text);
    return v;
}

static demo_conv conv_of(const char *messages_json)
{
    json_t *m = load(messages_json);
    demo_conv c;
    char err[256];
    assert_int_equal(demo_conv_read(m, &c, err, sizeof err), 0);
    json_decref(m);
    return c;
}

/* ---- the directives ---- */

static void test_call_directive(void **state)
{
    demo_script s = parse("call execute_command {\"command\": \"ls -la\", \"timeout\": 5}");
    assert_int_equal(s.nsteps, 1);
    assert_int_equal(s.nerrors, 0);
    const demo_step *st = demo_script_step(&s, 0);
    assert_int_equal(st->kind, DEMO_STEP_CALL);
    assert_string_equal(st->tool, "execute_command");
    char *a = args_text(st);
    assert_string_equal(a, "{\"command\":\"ls -la\",\"timeout\":5}"); /* written order */
    free(a);
    assert_int_equal(st->line, 1);
    assert_null(demo_script_step(&s, 1));
    demo_script_free(&s);
}

static void test_xml_directive(void **state)
{
    demo_script s = parse("xml create_file {\"file_path\": \"a.txt\", \"n\": 2, \"tags\": [1]}");
    assert_int_equal(s.nsteps, 1);
    const demo_step *st = demo_script_step(&s, 0);
    assert_int_equal(st->kind, DEMO_STEP_XML);
    assert_string_equal(st->tool, "create_file");
    char *x = demo_xml_call(st->tool, st->args);
    assert_string_equal(x,
                        "<function_calls>\n<invoke name=\"create_file\">\n"
                        "<parameter name=\"file_path\">a.txt</parameter>\n"
                        "<parameter name=\"n\">2</parameter>\n"
                        "<parameter name=\"tags\">[1]</parameter>\n"
                        "</invoke>\n</function_calls>");
    free(x);
    demo_script_free(&s);
}

static void test_say_directive_and_prose(void **state)
{
    demo_script s = parse("Please do this:\r\n"
                          "  say Hello there, world  \r\n"
                          "saying is not a directive\n"
                          "callback neither\n"
                          "\n"
                          "say second");
    assert_int_equal(s.nsteps, 2);
    assert_int_equal(s.nerrors, 0);
    assert_int_equal(s.steps[0].kind, DEMO_STEP_SAY);
    assert_string_equal(s.steps[0].text, "Hello there, world  "); /* CR stripped, rest kept */
    assert_int_equal(s.steps[0].line, 2);
    assert_string_equal(s.steps[1].text, "second");
    assert_int_equal(s.steps[1].line, 6);
    demo_script_free(&s);
}

static void test_no_directives(void **state)
{
    demo_script s = parse("What is the weather like?\nJust chatting.");
    assert_int_equal(s.nsteps, 0);
    assert_null(demo_script_step(&s, 0));
    const demo_mods *m = demo_script_mods(&s, 0);
    assert_int_equal(m->sleep_ms, 0);
    assert_int_equal(m->fail_status, 0);
    assert_false(m->hang);
    demo_script_free(&s);

    s = parse(NULL);
    assert_int_equal(s.nsteps, 0);
    demo_script_free(&s);
}

/* ---- modifiers ---- */

static void test_modifiers_attach_to_next_step(void **state)
{
    demo_script s = parse("sleep 250\n"
                          "fail 503 2\n"
                          "call a {}\n"
                          "say no modifiers here\n"
                          "hang\n"
                          "xml b {}\n"
                          "hang 1\n"
                          "fail 429 1\n"
                          "sleep 10\n");
    assert_int_equal(s.nsteps, 3);
    const demo_mods *m0 = demo_script_mods(&s, 0);
    assert_int_equal(m0->sleep_ms, 250);
    assert_int_equal(m0->fail_status, 503);
    assert_int_equal(m0->fail_count, 2);
    assert_false(m0->hang);

    const demo_mods *m1 = demo_script_mods(&s, 1);
    assert_int_equal(m1->sleep_ms, 0);
    assert_int_equal(m1->fail_status, 0);
    assert_false(m1->hang);

    const demo_mods *m2 = demo_script_mods(&s, 2);
    assert_true(m2->hang);
    assert_int_equal(m2->hang_count, 0); /* every attempt */

    /* modifiers after the last step belong to the final answer, for every later index */
    const demo_mods *fm = demo_script_mods(&s, 3);
    assert_ptr_equal(fm, &s.final_mods);
    assert_ptr_equal(demo_script_mods(&s, 7), &s.final_mods);
    assert_true(fm->hang);
    assert_int_equal(fm->hang_count, 1);
    assert_int_equal(fm->fail_status, 429);
    assert_int_equal(fm->fail_count, 1);
    assert_int_equal(fm->sleep_ms, 10);
    demo_script_free(&s);
}

static void test_later_modifier_overrides(void **state)
{
    demo_script s = parse("sleep 5\nsleep 7\nsay x");
    assert_int_equal(demo_script_mods(&s, 0)->sleep_ms, 7);
    demo_script_free(&s);
}

/* ---- malformed lines ---- */

static void assert_error_step(const demo_step *st, int line, const char *needle)
{
    assert_int_equal(st->kind, DEMO_STEP_SAY);
    assert_true(st->is_error);
    assert_int_equal(st->line, line);
    if (strstr(st->text, needle) == NULL)
        fail_msg("error text \"%s\" does not contain \"%s\"", st->text, needle);
    char where[32];
    snprintf(where, sizeof where, "line %d", line);
    if (strstr(st->text, where) == NULL)
        fail_msg("error text \"%s\" does not name %s", st->text, where);
}

static void test_malformed_call_becomes_error_step(void **state)
{
    demo_script s = parse("sleep 100\n"
                          "call execute_command {\"command\": \"ls\"\n"
                          "say still here");
    assert_int_equal(s.nsteps, 2);
    assert_int_equal(s.nerrors, 1);
    assert_error_step(&s.steps[0], 2, "not valid JSON");
    assert_int_equal(s.steps[0].mods.sleep_ms, 100); /* the error step took the modifier */
    assert_int_equal(s.steps[1].kind, DEMO_STEP_SAY);
    assert_false(s.steps[1].is_error);
    assert_string_equal(s.steps[1].text, "still here");
    assert_int_equal(s.steps[1].mods.sleep_ms, 0);
    demo_script_free(&s);
}

static void test_malformed_lines(void **state)
{
    demo_script s = parse("call\n"                        /* 1: no tool */
                          "call ls\n"                     /* 2: no arguments */
                          "xml ls [1, 2]\n"               /* 3: not an object */
                          "call bad.name {}\n"            /* 4: invalid tool name */
                          "call t {\"a\": 1, \"a\": 2}\n" /* 5: duplicate key */
                          "call t {} trailing\n"          /* 6: text after the JSON */
                          "say\n"                         /* 7: no text */
                          "sleep soon\n"                  /* 8 */
                          "sleep -5\n"                    /* 9 */
                          "fail 200 1\n"                  /* 10: not an error status */
                          "fail 503\n"                    /* 11: no count */
                          "fail 503 0\n"                  /* 12: zero attempts */
                          "hang forever\n"                /* 13 */
                          "sleep 1 2\n");                 /* 14: extra word */
    assert_int_equal(s.nsteps, 14);
    assert_int_equal(s.nerrors, 14);
    assert_error_step(&s.steps[0], 1, "needs a tool name");
    assert_error_step(&s.steps[1], 2, "needs a JSON object");
    assert_error_step(&s.steps[2], 3, "must be a JSON object, not an array");
    assert_error_step(&s.steps[3], 4, "tool name");
    assert_error_step(&s.steps[4], 5, "not valid JSON");
    assert_error_step(&s.steps[5], 6, "not valid JSON");
    assert_error_step(&s.steps[6], 7, "`say` needs the text");
    assert_error_step(&s.steps[7], 8, "`sleep` needs");
    assert_error_step(&s.steps[8], 9, "`sleep` needs");
    assert_error_step(&s.steps[9], 10, "`fail` needs");
    assert_error_step(&s.steps[10], 11, "`fail` needs");
    assert_error_step(&s.steps[11], 12, "`fail` needs");
    assert_error_step(&s.steps[12], 13, "`hang` takes");
    assert_error_step(&s.steps[13], 14, "`sleep` needs");
    /* no malformed modifier took effect */
    assert_int_equal(s.final_mods.sleep_ms, 0);
    assert_int_equal(s.final_mods.fail_status, 0);
    assert_false(s.final_mods.hang);
    demo_script_free(&s);
}

static void test_error_quotes_long_line_cut(void **state)
{
    char line[300];
    memset(line, 'x', sizeof line);
    memcpy(line, "call t {", 8);
    line[sizeof line - 1] = '\0';
    demo_script s = parse(line);
    assert_int_equal(s.nerrors, 1);
    assert_non_null(strstr(s.steps[0].text, "...)"));
    assert_true(strlen(s.steps[0].text) < 300);
    demo_script_free(&s);
}

/* The cut fell inside a two-byte character: the error text was not UTF-8, and the demo model
 * could not render its answer (found by tests/fuzz/demo_script). */
static void test_error_quote_cut_keeps_utf8(void **state)
{
    char line[200] = "fail ";
    size_t n = strlen(line);
    for (int i = 0; i < 60; i++, n += 2)
        memcpy(line + n, "\xc3\xa9", 3); /* é, and the NUL after it */
    demo_script s = parse(line);
    assert_int_equal(s.nerrors, 1);
    json_t *t = json_string(s.steps[0].text); /* NULL for invalid UTF-8 */
    assert_non_null(t);
    json_decref(t);
    assert_non_null(strstr(s.steps[0].text, "...)"));
    demo_script_free(&s);
}

/* ---- step selection from messages ---- */

static void test_step_index_native(void **state)
{
    demo_conv c =
        conv_of("[{\"role\": \"system\", \"content\": \"You are Suna\"},"
                " {\"role\": \"user\", \"content\": \"first question\"},"
                " {\"role\": \"assistant\", \"content\": \"first answer\"},"
                " {\"role\": \"user\", \"content\": \"call a {}\\ncall b {}\\nsay done\"},"
                " {\"role\": \"assistant\", \"content\": null, \"tool_calls\": []},"
                " {\"role\": \"tool\", \"tool_call_id\": \"x\", \"content\": \"result A\"},"
                " {\"role\": \"assistant\", \"content\": null, \"tool_calls\": []},"
                " {\"role\": \"tool\", \"tool_call_id\": \"y\", \"content\": \"result B\"}]");
    assert_string_equal(c.first_user, "first question");
    assert_string_equal(c.script, "call a {}\ncall b {}\nsay done");
    assert_int_equal(c.step_index, 2);
    assert_string_equal(c.last_tool_result, "result B");
    demo_conv_free(&c);
}

static void test_step_index_xml_mode_skips_tool_results(void **state)
{
    demo_conv c = conv_of(
        "[{\"role\": \"user\", \"content\": \"xml a {}\\nxml b {}\"},"
        " {\"role\": \"assistant\", \"content\": \"<function_calls>...</function_calls>\"},"
        " {\"role\": \"user\", \"content\": \"{\\\"tool_execution\\\": {\\\"result\\\": 1}}\"}]");
    assert_string_equal(c.script, "xml a {}\nxml b {}");
    assert_int_equal(c.step_index, 1);
    assert_string_equal(c.last_tool_result, "{\"tool_execution\": {\"result\": 1}}");
    assert_true(demo_is_tool_result(c.last_tool_result));
    assert_false(demo_is_tool_result("{\"other\": 1}"));
    assert_false(demo_is_tool_result("tool_execution"));
    demo_conv_free(&c);
}

static void test_newest_user_message_restarts_steps(void **state)
{
    demo_conv c = conv_of(
        "[{\"role\": \"user\", \"content\": \"call a {}\"},"
        " {\"role\": \"assistant\", \"content\": null},"
        " {\"role\": \"tool\", \"content\": \"old\"},"
        " {\"role\": \"assistant\", \"content\": \"Done.\"},"
        " {\"role\": \"user\", \"content\": [{\"type\": \"text\", \"text\": \"say one\"},"
        "                                   {\"type\": \"text\", \"text\": \"say two\"}]}]");
    assert_string_equal(c.first_user, "call a {}");
    assert_string_equal(c.script, "say one\nsay two"); /* parts joined by lines */
    assert_int_equal(c.step_index, 0);
    assert_string_equal(c.last_tool_result, "old");
    demo_conv_free(&c);

    c = conv_of("[{\"role\": \"system\", \"content\": \"s\"}]");
    assert_null(c.script);
    assert_string_equal(c.first_user, "");
    assert_null(c.last_tool_result);
    demo_conv_free(&c);
}

static void test_bad_messages_named(void **state)
{
    char err[256];
    demo_conv c;
    json_t *m = load("[{\"role\": \"user\", \"content\": \"x\"}, 5]");
    assert_int_equal(demo_conv_read(m, &c, err, sizeof err), -1);
    assert_string_equal(err, "messages[1] is not an object");
    json_decref(m);
    m = load("[{\"content\": \"x\"}]");
    assert_int_equal(demo_conv_read(m, &c, err, sizeof err), -1);
    assert_string_equal(err, "messages[0] has no \"role\" string");
    json_decref(m);
}

static void test_conversation_key(void **state)
{
    demo_conv a = conv_of("[{\"role\": \"user\", \"content\": \"fail 503 1\\nsay x\"}]");
    demo_conv b = conv_of("[{\"role\": \"user\", \"content\": \"fail 503 1\\nsay x\"}]");
    demo_conv other = conv_of("[{\"role\": \"user\", \"content\": \"hello\"},"
                              " {\"role\": \"user\", \"content\": \"fail 503 1\\nsay x\"}]");
    assert_true(demo_conv_key(&a, 0) == demo_conv_key(&b, 0));
    assert_true(demo_conv_key(&a, 0) != demo_conv_key(&a, 1));
    assert_true(demo_conv_key(&a, 0) != demo_conv_key(&other, 0));
    demo_conv_free(&a);
    demo_conv_free(&b);
    demo_conv_free(&other);
}

/* ---- turns and their wire forms ---- */

static void test_final_answer_quotes_last_result(void **state)
{
    demo_conv c = {0};
    demo_turn t;
    assert_int_equal(demo_turn_build(NULL, 0, &c, &t), 0);
    assert_string_equal(t.content, "Done. There was no tool result.");
    assert_string_equal(t.finish_reason, "stop");
    assert_false(t.tool_call);
    demo_turn_free(&t);

    /* 250 two-byte characters: the answer quotes the first 200 characters (400 bytes) */
    char result[501];
    for (int i = 0; i < 250; i++)
        memcpy(result + 2 * i, "\xc3\xa9", 2);
    result[500] = '\0';
    c.last_tool_result = result;
    assert_int_equal(demo_turn_build(NULL, 3, &c, &t), 0);
    const char *prefix = "Done. The last tool result was: ";
    assert_int_equal(strncmp(t.content, prefix, strlen(prefix)), 0);
    assert_int_equal(strlen(t.content), strlen(prefix) + 400);
    demo_turn_free(&t);
}

/* Every chunk line parsed: checks the framing and returns the JSON objects (no [DONE]). */
static json_t *parse_chunks(char **chunks, size_t n)
{
    assert_true(n >= 3);
    assert_string_equal(chunks[n - 1], "data: [DONE]\n\n");
    json_t *all = json_array();
    for (size_t i = 0; i + 1 < n; i++) {
        size_t len = strlen(chunks[i]);
        assert_int_equal(strncmp(chunks[i], "data: ", 6), 0);
        assert_string_equal(chunks[i] + len - 2, "\n\n");
        json_t *v = json_loadb(chunks[i] + 6, len - 8, 0, NULL);
        assert_non_null(v);
        assert_string_equal(json_string_value(json_object_get(v, "object")),
                            "chat.completion.chunk");
        assert_string_equal(json_string_value(json_object_get(v, "id")), "chatcmpl-t");
        assert_string_equal(json_string_value(json_object_get(v, "model")), "kortix/demo");
        json_array_append_new(all, v);
    }
    /* the last object: usage, no choices; the one before: finish_reason */
    json_t *usage = json_array_get(all, json_array_size(all) - 1);
    assert_int_equal(json_array_size(json_object_get(usage, "choices")), 0);
    json_t *u = json_object_get(usage, "usage");
    assert_true(json_integer_value(json_object_get(u, "total_tokens")) ==
                json_integer_value(json_object_get(u, "prompt_tokens")) +
                    json_integer_value(json_object_get(u, "completion_tokens")));
    assert_int_equal(json_integer_value(json_object_get(u, "prompt_tokens")), 3); /* 10/4 up */
    return all;
}

static json_t *choice(json_t *chunk)
{
    return json_array_get(json_object_get(chunk, "choices"), 0);
}

static void test_stream_say_three_words_per_chunk(void **state)
{
    demo_script s = parse("say one two three four five six seven");
    demo_conv c = {0};
    demo_turn t;
    assert_int_equal(demo_turn_build(demo_script_step(&s, 0), 0, &c, &t), 0);
    demo_reply_meta meta = {.id = "chatcmpl-t",
                            .model = "kortix/demo",
                            .created = 1,
                            .prompt_chars = 10};
    char **chunks;
    size_t n;
    assert_int_equal(demo_render_stream(&t, &meta, &chunks, &n), 0);
    json_t *all = parse_chunks(chunks, n);
    /* 3 text chunks + finish + usage */
    assert_int_equal(json_array_size(all), 5);
    json_t *d0 = json_object_get(choice(json_array_get(all, 0)), "delta");
    assert_string_equal(json_string_value(json_object_get(d0, "role")), "assistant");
    assert_string_equal(json_string_value(json_object_get(d0, "content")), "one two three ");
    assert_true(json_is_null(json_object_get(choice(json_array_get(all, 0)), "finish_reason")));
    json_t *d1 = json_object_get(choice(json_array_get(all, 1)), "delta");
    assert_null(json_object_get(d1, "role"));
    assert_string_equal(json_string_value(json_object_get(d1, "content")), "four five six ");
    json_t *d2 = json_object_get(choice(json_array_get(all, 2)), "delta");
    assert_string_equal(json_string_value(json_object_get(d2, "content")), "seven");
    json_t *fin = choice(json_array_get(all, 3));
    assert_string_equal(json_string_value(json_object_get(fin, "finish_reason")), "stop");
    assert_int_equal(json_object_size(json_object_get(fin, "delta")), 0);
    json_decref(all);
    demo_chunks_free(chunks, n);
    demo_turn_free(&t);
    demo_script_free(&s);
}

static void test_stream_tool_call_fragments(void **state)
{
    demo_script s = parse("call execute_command {\"command\": \"echo hi\"}");
    demo_conv c = {.first_user = "u", .script = "s"};
    demo_turn t;
    assert_int_equal(demo_turn_build(demo_script_step(&s, 0), 0, &c, &t), 0);
    assert_true(t.tool_call);
    assert_string_equal(t.finish_reason, "tool_calls");
    assert_int_equal(strncmp(t.call_id, "call_0_", 7), 0);
    assert_int_equal(strlen(t.call_id), 7 + 8);
    demo_reply_meta meta = {.id = "chatcmpl-t",
                            .model = "kortix/demo",
                            .created = 1,
                            .prompt_chars = 10};
    char **chunks;
    size_t n;
    assert_int_equal(demo_render_stream(&t, &meta, &chunks, &n), 0);
    json_t *all = parse_chunks(chunks, n);
    size_t nobj = json_array_size(all);
    json_t *first = json_object_get(choice(json_array_get(all, 0)), "delta");
    assert_string_equal(json_string_value(json_object_get(first, "role")), "assistant");
    json_t *tc0 = json_array_get(json_object_get(first, "tool_calls"), 0);
    assert_int_equal(json_integer_value(json_object_get(tc0, "index")), 0);
    assert_string_equal(json_string_value(json_object_get(tc0, "id")), t.call_id);
    assert_string_equal(json_string_value(json_object_get(tc0, "type")), "function");
    json_t *fn = json_object_get(tc0, "function");
    assert_string_equal(json_string_value(json_object_get(fn, "name")), "execute_command");

    /* the argument fragments (objects 1 .. nobj-3) add up to the arguments; at least two */
    char joined[256] = "";
    size_t fragments = 0;
    for (size_t i = 1; i + 2 < nobj; i++) {
        json_t *d = json_object_get(choice(json_array_get(all, i)), "delta");
        json_t *f =
            json_object_get(json_array_get(json_object_get(d, "tool_calls"), 0), "function");
        const char *frag = json_string_value(json_object_get(f, "arguments"));
        assert_non_null(frag);
        size_t len = strlen(joined);
        assert_true(strlen(frag) < sizeof joined - len);
        memcpy(joined + len, frag, strlen(frag) + 1);
        fragments++;
    }
    assert_true(fragments >= 2);
    assert_string_equal(joined, "{\"command\":\"echo hi\"}");
    json_t *fin = choice(json_array_get(all, nobj - 2));
    assert_string_equal(json_string_value(json_object_get(fin, "finish_reason")), "tool_calls");
    json_decref(all);
    demo_chunks_free(chunks, n);

    /* non-stream form */
    char *body = demo_render_completion(&t, &meta);
    json_t *v = load(body);
    assert_string_equal(json_string_value(json_object_get(v, "object")), "chat.completion");
    json_t *ch = choice(v);
    assert_string_equal(json_string_value(json_object_get(ch, "finish_reason")), "tool_calls");
    json_t *msg = json_object_get(ch, "message");
    assert_true(json_is_null(json_object_get(msg, "content")));
    json_t *call = json_array_get(json_object_get(msg, "tool_calls"), 0);
    assert_string_equal(json_string_value(
                            json_object_get(json_object_get(call, "function"), "arguments")),
                        "{\"command\":\"echo hi\"}");
    assert_non_null(json_object_get(json_object_get(v, "usage"), "total_tokens"));
    json_decref(v);
    free(body);
    demo_turn_free(&t);
    demo_script_free(&s);
}

static void test_error_body(void **state)
{
    char *b = demo_render_error(503, "boom", "demo_scripted_failure");
    json_t *v = load(b);
    json_t *e = json_object_get(v, "error");
    assert_string_equal(json_string_value(json_object_get(e, "message")), "boom");
    assert_string_equal(json_string_value(json_object_get(e, "type")), "server_error");
    assert_string_equal(json_string_value(json_object_get(e, "code")), "demo_scripted_failure");
    json_decref(v);
    free(b);
    b = demo_render_error(429, "slow down", "x");
    assert_non_null(strstr(b, "rate_limit_error"));
    free(b);
}

static void test_attempts_count_per_key(void **state)
{
    demo_attempts *a = demo_attempts_new();
    assert_non_null(a);
    assert_int_equal(demo_attempts_next(a, 42), 1);
    assert_int_equal(demo_attempts_next(a, 42), 2);
    assert_int_equal(demo_attempts_next(a, 43), 1);
    assert_int_equal(demo_attempts_next(a, 42), 3);
    assert_int_equal(demo_attempts_next(a, 0), 1);
    demo_attempts_free(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_call_directive),
        cmocka_unit_test(test_xml_directive),
        cmocka_unit_test(test_say_directive_and_prose),
        cmocka_unit_test(test_no_directives),
        cmocka_unit_test(test_modifiers_attach_to_next_step),
        cmocka_unit_test(test_later_modifier_overrides),
        cmocka_unit_test(test_malformed_call_becomes_error_step),
        cmocka_unit_test(test_malformed_lines),
        cmocka_unit_test(test_error_quotes_long_line_cut),
        cmocka_unit_test(test_error_quote_cut_keeps_utf8),
        cmocka_unit_test(test_step_index_native),
        cmocka_unit_test(test_step_index_xml_mode_skips_tool_results),
        cmocka_unit_test(test_newest_user_message_restarts_steps),
        cmocka_unit_test(test_bad_messages_named),
        cmocka_unit_test(test_conversation_key),
        cmocka_unit_test(test_final_answer_quotes_last_result),
        cmocka_unit_test(test_stream_say_three_words_per_chunk),
        cmocka_unit_test(test_stream_tool_call_fragments),
        cmocka_unit_test(test_error_body),
        cmocka_unit_test(test_attempts_count_per_key),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
