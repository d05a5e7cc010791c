/* test_runner_xml_calls.c — the agent-runner's parser of XML tool-call blocks
 * (services/agent-runner/xml_calls.c): valid calls, the invokes of a block one by one (each
 * with its own raw_xml, in one linear walk), typed values (and the text as written where the
 * tool's schema wants a string), and the errors a model gets back for blocks that do not parse. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "xml_calls.h"

static xml_calls_result find(const char *text, xml_call *c)
{
    return xml_calls_find(text, strlen(text), c);
}

static void test_valid_call(void **state)
{
    const char *text = "I will list the files.\n"
                       "<function_calls>\n"
                       "<invoke name=\"execute_command\">\n"
                       "<parameter name=\"command\">  ls -la /workspace  </parameter>\n"
                       "<parameter name='folder'>src</parameter>\n"
                       "</invoke>\n"
                       "</function_calls>\n"
                       "trailing text";
    xml_call c;
    assert_int_equal(find(text, &c), XML_CALLS_FOUND);
    assert_string_equal(c.function_name, "execute_command");
    assert_string_equal(json_string_value(json_object_get(c.arguments, "command")),
                        "ls -la /workspace");
    assert_string_equal(json_string_value(json_object_get(c.arguments, "folder")), "src");
    assert_int_equal(json_object_size(c.arguments), 2);
    assert_string_equal(json_string_value(json_object_get(c.raw_parameters, "command")),
                        "ls -la /workspace");
    /* raw_xml is the invoke exactly, block_end is just past the block */
    assert_int_equal(strncmp(c.raw_xml, "<invoke name=\"execute_command\">", 31), 0);
    size_t n = strlen(c.raw_xml);
    assert_true(n > 9);
    assert_string_equal(c.raw_xml + n - 9, "</invoke>");
    assert_int_equal(c.block_start, strlen("I will list the files.\n"));
    assert_string_equal(text + c.block_end, "\ntrailing text");
    xml_call_clear(&c);
}

static void test_case_insensitive_tags(void **state)
{
    const char *text = "<FUNCTION_CALLS><Invoke  name = \"x\" ><PARAMETER name=\"a\">1"
                       "</Parameter></INVOKE></Function_Calls>";
    xml_call c;
    assert_int_equal(find(text, &c), XML_CALLS_FOUND);
    assert_string_equal(c.function_name, "x");
    assert_int_equal(json_integer_value(json_object_get(c.arguments, "a")), 1);
    xml_call_clear(&c);
}

static void test_multiple_invokes_first_only(void **state)
{
    const char *text = "<function_calls>"
                       "<invoke name=\"first\"><parameter name=\"a\">1</parameter></invoke>"
                       "<invoke name=\"second\"><parameter name=\"b\">2</parameter></invoke>"
                       "</function_calls>"
                       "<function_calls><invoke name=\"third\"></invoke></function_calls>";
    xml_call c;
    assert_int_equal(find(text, &c), XML_CALLS_FOUND);
    assert_string_equal(c.function_name, "first");
    assert_int_equal(json_object_size(c.arguments), 1);
    assert_null(json_object_get(c.arguments, "b"));
    /* the block ends at the first </function_calls>; raw_xml is the first invoke alone */
    assert_int_equal(c.block_end, strstr(text, "</function_calls>") - text + 17);
    assert_null(strstr(c.raw_xml, "second"));
    xml_call_clear(&c);
}

static void test_typed_values(void **state)
{
    const char *text = "<function_calls><invoke name=\"t\">"
                       "<parameter name=\"obj\">{\"k\": [1, 2]}</parameter>"
                       "<parameter name=\"arr\"> [\"a\", true] </parameter>"
                       "<parameter name=\"badjson\">{not json</parameter>"
                       "<parameter name=\"yes\">true</parameter>"
                       "<parameter name=\"no\">False</parameter>"
                       "<parameter name=\"int\">-42</parameter>"
                       "<parameter name=\"real\">3.5</parameter>"
                       "<parameter name=\"notnum\">12abc</parameter>"
                       "<parameter name=\"version\">1.2.3</parameter>"
                       "<parameter name=\"empty\"></parameter>"
                       "<parameter name=\"text\">hello world</parameter>"
                       "</invoke></function_calls>";
    xml_call c;
    assert_int_equal(find(text, &c), XML_CALLS_FOUND);
    json_t *a = c.arguments;
    json_t *obj = json_object_get(a, "obj");
    assert_true(json_is_object(obj));
    assert_int_equal(json_array_size(json_object_get(obj, "k")), 2);
    json_t *arr = json_object_get(a, "arr");
    assert_true(json_is_array(arr));
    assert_true(json_is_true(json_array_get(arr, 1)));
    assert_string_equal(json_string_value(json_object_get(a, "badjson")), "{not json");
    assert_true(json_is_true(json_object_get(a, "yes")));
    assert_true(json_is_false(json_object_get(a, "no")));
    assert_true(json_is_integer(json_object_get(a, "int")));
    assert_int_equal(json_integer_value(json_object_get(a, "int")), -42);
    assert_true(json_is_real(json_object_get(a, "real")));
    assert_true(json_real_value(json_object_get(a, "real")) == 3.5);
    assert_string_equal(json_string_value(json_object_get(a, "notnum")), "12abc");
    assert_string_equal(json_string_value(json_object_get(a, "version")), "1.2.3");
    assert_string_equal(json_string_value(json_object_get(a, "empty")), "");
    assert_string_equal(json_string_value(json_object_get(a, "text")), "hello world");
    /* raw parameters keep the text as written (stripped) */
    assert_string_equal(json_string_value(json_object_get(c.raw_parameters, "int")), "-42");
    assert_string_equal(json_string_value(json_object_get(c.raw_parameters, "arr")),
                        "[\"a\", true]");
    xml_call_clear(&c);
}

static void test_no_block(void **state)
{
    xml_call c;
    assert_int_equal(find("just an answer, no tools", &c), XML_CALLS_NONE);
    assert_null(c.function_name);
    assert_int_equal(find("", &c), XML_CALLS_NONE);
    assert_int_equal(find("<invoke name=\"x\"></invoke>", &c), XML_CALLS_NONE);
    assert_false(xml_calls_block_complete("plain text", 10));
}

static void test_unterminated_block(void **state)
{
    const char *text = "<function_calls>\n<invoke name=\"execute_command\">\n"
                       "<parameter name=\"command\">ls</parameter>\n</invoke>\n";
    xml_call c;
    assert_int_equal(find(text, &c), XML_CALLS_ERROR);
    assert_non_null(strstr(c.error, "no closing </function_calls>"));
    assert_int_equal(c.block_end, strlen(text));
    assert_false(xml_calls_block_complete(text, strlen(text)));
    xml_call_clear(&c);

    const char *noinv_close = "<function_calls><invoke name=\"run\"><parameter name=\"a\">1"
                              "</parameter></function_calls>";
    assert_int_equal(find(noinv_close, &c), XML_CALLS_ERROR);
    assert_non_null(strstr(c.error, "</invoke>"));
    assert_string_equal(c.function_name, "run");
    xml_call_clear(&c);

    const char *noparam_close = "<function_calls><invoke name=\"run\"><parameter name=\"cmd\">"
                                "ls</invoke></function_calls>";
    assert_int_equal(find(noparam_close, &c), XML_CALLS_ERROR);
    assert_non_null(strstr(c.error, "\"cmd\""));
    assert_non_null(strstr(c.error, "</parameter>"));
    xml_call_clear(&c);
}

static void test_garbage(void **state)
{
    xml_call c;
    assert_int_equal(find("<function_calls>random words here</function_calls>", &c),
                     XML_CALLS_ERROR);
    assert_non_null(strstr(c.error, "<invoke"));
    assert_true(xml_calls_block_complete("x<function_calls>y</function_calls>", 35));
    xml_call_clear(&c);

    assert_int_equal(find("<function_calls><invoke>no name</invoke></function_calls>", &c),
                     XML_CALLS_ERROR);
    assert_non_null(strstr(c.error, "name="));
    xml_call_clear(&c);

    assert_int_equal(find("<function_calls><invoke name=\"\"></invoke></function_calls>", &c),
                     XML_CALLS_ERROR);
    xml_call_clear(&c);

    assert_int_equal(find("<function_calls><invoke name=\"f\"><parameter>x</parameter>"
                          "</invoke></function_calls>",
                          &c),
                     XML_CALLS_ERROR);
    assert_non_null(strstr(c.error, "<parameter>"));
    xml_call_clear(&c);

    assert_int_equal(find("<function_calls><invoke name=\"f\x01\xff\">\xfe\xfd</invoke>"
                          "</function_calls>",
                          &c),
                     XML_CALLS_FOUND);
    assert_int_equal(json_object_size(c.arguments), 0);
    xml_call_clear(&c);
}

/* A name with a NUL byte cannot become a C string: it was cut at the NUL, so the call went out
 * as "" or with a truncated key. Found by tests/fuzz/xml_calls; not reachable from a provider
 * today (jansson refuses "\u0000" in the stream), but the parser takes (text, len). */
static void test_nul_in_names(void **state)
{
    static const char inv[] = "<function_calls><invoke name=\"\0exec\"></invoke>"
                              "</function_calls>";
    xml_call c;
    assert_int_equal(xml_calls_find(inv, sizeof inv - 1, &c), XML_CALLS_ERROR);
    assert_non_null(strstr(c.error, "NUL"));
    xml_call_clear(&c);

    static const char par[] = "<function_calls><invoke name=\"f\"><parameter name=\"a\0b\">1"
                              "</parameter></invoke></function_calls>";
    assert_int_equal(xml_calls_find(par, sizeof par - 1, &c), XML_CALLS_ERROR);
    assert_non_null(strstr(c.error, "NUL"));
    xml_call_clear(&c);
}

static void test_call_without_parameters(void **state)
{
    xml_call c;
    assert_int_equal(find("<function_calls><invoke name=\"list_commands\"></invoke>"
                          "</function_calls>",
                          &c),
                     XML_CALLS_FOUND);
    assert_string_equal(c.function_name, "list_commands");
    assert_int_equal(json_object_size(c.arguments), 0);
    xml_call_clear(&c);
}

/* Feeds text in pieces of `step` bytes; returns the length at which the scan first saw a
 * complete block (0 if never). */
static size_t scan_in_steps(const char *text, size_t step)
{
    xml_scan st = {0};
    size_t len = strlen(text);
    for (size_t n = step;; n += step) {
        if (n > len)
            n = len;
        if (xml_calls_scan(&st, text, n))
            return n;
        if (n == len)
            return 0;
    }
}

static void test_incremental_scan(void **state)
{
    const char *text = "Let me look.<function_calls><invoke name=\"x\"></invoke>"
                       "</function_calls> and more";
    size_t end = strlen("Let me look.<function_calls><invoke name=\"x\"></invoke>"
                        "</function_calls>");
    /* whatever the split, the block is seen complete exactly when its last byte arrived */
    for (size_t step = 1; step <= 40; step++) {
        size_t at = scan_in_steps(text, step);
        assert_true(at >= end);
        assert_true(at < end + step);
    }
    assert_int_equal(scan_in_steps("no block here at all", 3), 0);
    /* a closing tag before the opening one does not count */
    assert_int_equal(scan_in_steps("</function_calls> then <function_calls> open", 5), 0);
}

/* Every invoke of a block, by index (max_xml_tool_calls > 1); past the last: NONE. */
static void test_invokes_by_index(void **state)
{
    (void)state;
    const char *t = "x <function_calls>\n<invoke name=\"a\"><parameter name=\"n\">1</parameter>"
                    "</invoke>\n<INVOKE name='b'><parameter name=\"s\">[1, 2]</parameter>"
                    "</invoke><invoke name=\"c\"></invoke></function_calls> after";
    const char *names[] = {"a", "b", "c"};
    for (size_t i = 0; i < 3; i++) {
        xml_call c;
        assert_int_equal(xml_calls_find_at(t, strlen(t), i, &c), XML_CALLS_FOUND);
        assert_string_equal(c.function_name, names[i]);
        assert_int_equal(c.block_end, strlen(t) - strlen(" after"));
        if (i == 1)
            assert_int_equal(json_array_size(json_object_get(c.arguments, "s")), 2);
        xml_call_clear(&c);
    }
    xml_call c;
    assert_int_equal(xml_calls_find_at(t, strlen(t), 3, &c), XML_CALLS_NONE);
    /* an invoke that is never closed: index 0 is an error, later indexes NONE */
    const char *bad = "<function_calls><invoke name=\"a\"></function_calls>";
    assert_int_equal(xml_calls_find_at(bad, strlen(bad), 0, &c), XML_CALLS_ERROR);
    xml_call_clear(&c);
    assert_int_equal(xml_calls_find_at(bad, strlen(bad), 1, &c), XML_CALLS_NONE);
}

/* raw_xml is the call's own <invoke ...>...</invoke>, not the whole block: every call of a
 * block was saved with all of it (100 invokes and 1 MB in the block: 100 MB of metadata). */
static void test_raw_xml_is_each_invoke(void **state)
{
    (void)state;
    const char *t = "x <function_calls>\n<invoke name=\"a\"><parameter name=\"n\">1</parameter>"
                    "</invoke>\nsome padding between\n<INVOKE name='b'>\n<parameter name=\"s\">"
                    "ok</parameter>\n</INVOKE>  <invoke name=\"c\"></invoke> tail padding "
                    "</function_calls> after";
    const char *at = t;
    for (size_t k = 0; k < 3; k++) {
        const char *open = strcasestr(at, "<invoke");
        const char *close = strcasestr(open, "</invoke>") + strlen("</invoke>");
        xml_call c;
        assert_int_equal(xml_calls_find_at(t, strlen(t), k, &c), XML_CALLS_FOUND);
        assert_int_equal(strlen(c.raw_xml), close - open);
        assert_memory_equal(c.raw_xml, open, (size_t)(close - open));
        xml_call_clear(&c);
        at = close;
    }
    /* an invoke whose parameter does not parse: still its own span */
    const char *bad = "<function_calls><invoke name=\"f\"><parameter>x</parameter></invoke>"
                      "padding</function_calls>";
    xml_call c;
    assert_int_equal(xml_calls_find(bad, strlen(bad), &c), XML_CALLS_ERROR);
    assert_string_equal(c.raw_xml, "<invoke name=\"f\"><parameter>x</parameter></invoke>");
    xml_call_clear(&c);
}

/* A text of n view_tasks invokes followed by pad bytes of padding in the block (malloc'd). */
static char *many_invokes(size_t n, size_t pad, bool terminated)
{
    static const char inv[] = "<invoke name=\"view_tasks\"></invoke>\n";
    size_t len = 32 + n * (sizeof inv - 1) + pad + 32;
    char *t = malloc(len);
    assert_non_null(t);
    char *p = t + sprintf(t, "Tasks:\n<function_calls>\n");
    for (size_t i = 0; i < n; i++)
        p += sprintf(p, "%s", inv);
    for (size_t i = 0; i < pad; i++)
        *p++ = i % 3 == 0 ? '\xc3' : i % 3 == 1 ? '\xa9' : ' '; /* "é " */
    sprintf(p, "%s", terminated ? "</function_calls>" : "");
    return t;
}

/* Taking every invoke of a block is one walk of it: 100 invokes with 1 MB of padding in the
 * block cost a few times the text, not 100 times (each xml_calls_find_at searched the block
 * from its start again; 100 invokes in 3 MB took 7.9 s under ASan). The work is the walk's own
 * count of the bytes it searched: deterministic. */
static void test_walk_is_linear(void **state)
{
    (void)state;
    char *t = many_invokes(100, 1 << 20, true);
    size_t len = strlen(t);
    xml_walk w = {0};
    size_t found = 0;
    for (;;) {
        xml_call c;
        xml_calls_result res = xml_calls_next(&w, t, len, &c);
        if (res == XML_CALLS_NONE)
            break;
        assert_int_equal(res, XML_CALLS_FOUND);
        assert_string_equal(c.function_name, "view_tasks");
        assert_string_equal(c.raw_xml, "<invoke name=\"view_tasks\"></invoke>");
        assert_int_equal(c.block_end, len);
        xml_call_clear(&c);
        found++;
    }
    assert_int_equal(found, 100);
    print_message("[ walk     ] %zu bytes searched for a text of %zu\n", w.work, len);
    assert_true(w.work <= 3 * len);
    xml_call c;
    assert_int_equal(xml_calls_next(&w, t, len, &c), XML_CALLS_NONE); /* and it stays done */
    free(t);

    /* an unterminated block: its raw_xml is a bounded excerpt, cut between UTF-8 characters */
    t = many_invokes(0, 1 << 20, false);
    memset(&w, 0, sizeof w);
    assert_int_equal(xml_calls_next(&w, t, strlen(t), &c), XML_CALLS_ERROR);
    assert_true(strlen(c.raw_xml) <= XML_CALLS_EXCERPT_MAX);
    assert_int_equal(strncmp(c.raw_xml, "<function_calls>", 16), 0);
    json_t *s = json_string(c.raw_xml); /* NULL for invalid UTF-8 */
    assert_non_null(s);
    json_decref(s);
    xml_call_clear(&c);
    assert_int_equal(xml_calls_next(&w, t, strlen(t), &c), XML_CALLS_NONE);
    free(t);
}

/* A string parameter gets the text as written: the type guesses turned a package.json into an
 * object the executor refused ("'file_contents' must be a string (got an object)"), and "007"
 * into 7, "1.50" into 1.5, "True" into true. Parameters of other types keep their values. */
static void test_schema_strings_stay_text(void **state)
{
    (void)state;
    const char *t = "<function_calls><invoke name=\"create_file\">"
                    "<parameter name=\"file_path\">package.json</parameter>"
                    "<parameter name=\"file_contents\">\n{\n \"name\": \"x\"\n}\n</parameter>"
                    "<parameter name=\"list\">[1, 2]</parameter>"
                    "<parameter name=\"zeros\">007</parameter>"
                    "<parameter name=\"price\">1.50</parameter>"
                    "<parameter name=\"flag_text\">True</parameter>"
                    "<parameter name=\"count\">007</parameter>"
                    "<parameter name=\"ratio\">1.50</parameter>"
                    "<parameter name=\"flag\">True</parameter>"
                    "<parameter name=\"data\">{\"a\": 1}</parameter>"
                    "<parameter name=\"extra\">42</parameter>"
                    "</invoke></function_calls>";
    json_t *params = json_loads(
        "{\"type\": \"object\", \"properties\": {"
        "\"file_path\": {\"type\": \"string\"}, \"file_contents\": {\"type\": \"string\"},"
        "\"list\": {\"type\": [\"string\", \"null\"]}, \"zeros\": {\"type\": \"string\"},"
        "\"price\": {\"type\": \"string\"}, \"flag_text\": {\"type\": \"string\"},"
        "\"count\": {\"type\": \"integer\"}, \"ratio\": {\"type\": \"number\"},"
        "\"flag\": {\"type\": \"boolean\"}, \"data\": {\"type\": [\"object\", \"string\"]}}}",
        0, NULL);
    assert_non_null(params);
    xml_call c;
    assert_int_equal(find(t, &c), XML_CALLS_FOUND);
    assert_true(xml_calls_apply_schema(&c, params));
    json_t *a = c.arguments;
    assert_string_equal(json_string_value(json_object_get(a, "file_path")), "package.json");
    assert_string_equal(json_string_value(json_object_get(a, "file_contents")),
                        "{\n \"name\": \"x\"\n}");
    assert_string_equal(json_string_value(json_object_get(a, "list")), "[1, 2]");
    assert_string_equal(json_string_value(json_object_get(a, "zeros")), "007");
    assert_string_equal(json_string_value(json_object_get(a, "price")), "1.50");
    assert_string_equal(json_string_value(json_object_get(a, "flag_text")), "True");
    /* the other types keep the guesses */
    assert_true(json_is_integer(json_object_get(a, "count")));
    assert_int_equal(json_integer_value(json_object_get(a, "count")), 7);
    assert_true(json_is_real(json_object_get(a, "ratio")));
    assert_true(json_is_true(json_object_get(a, "flag")));
    assert_true(json_is_object(json_object_get(a, "data")));   /* not only a string */
    assert_true(json_is_integer(json_object_get(a, "extra"))); /* not in the schema */
    assert_int_equal(json_object_size(a), 11);
    xml_call_clear(&c);

    /* no schema (a function the model was not offered): the guesses stay */
    assert_int_equal(find(t, &c), XML_CALLS_FOUND);
    assert_true(xml_calls_apply_schema(&c, NULL));
    assert_true(json_is_integer(json_object_get(c.arguments, "zeros")));
    xml_call_clear(&c);
    json_decref(params);
}

/* An optional string as pydantic (MCP servers) writes it: "anyOf" / "oneOf" of a string and
 * null; a branch of another type keeps the guess; nesting is followed only so deep. */
static void test_schema_any_of_strings(void **state)
{
    (void)state;
    const char *t = "<function_calls><invoke name=\"m\">"
                    "<parameter name=\"a\">007</parameter>"
                    "<parameter name=\"b\">{\"k\": 1}</parameter>"
                    "<parameter name=\"c\">1.50</parameter>"
                    "<parameter name=\"d\">42</parameter>"
                    "<parameter name=\"e\">true</parameter>"
                    "<parameter name=\"f\">12</parameter>"
                    "</invoke></function_calls>";
    json_t *params = json_loads(
        "{\"type\": \"object\", \"properties\": {"
        "\"a\": {\"anyOf\": [{\"type\": \"string\"}, {\"type\": \"null\"}], \"default\": null},"
        "\"b\": {\"oneOf\": [{\"type\": \"string\"}]},"
        "\"c\": {\"anyOf\": [{\"anyOf\": [{\"type\": \"string\"}]}, {\"type\": \"null\"}]},"
        "\"d\": {\"anyOf\": [{\"type\": \"string\"}, {\"type\": \"integer\"}]},"
        "\"e\": {\"anyOf\": [{\"type\": \"null\"}]},"
        "\"f\": {\"anyOf\": [{\"anyOf\": [{\"anyOf\": [{\"anyOf\": [{\"anyOf\": "
        "[{\"type\": \"string\"}]}]}]}]}]}}}",
        0, NULL);
    assert_non_null(params);
    xml_call c;
    assert_int_equal(find(t, &c), XML_CALLS_FOUND);
    assert_true(xml_calls_apply_schema(&c, params));
    json_t *a = c.arguments;
    assert_string_equal(json_string_value(json_object_get(a, "a")), "007");
    assert_string_equal(json_string_value(json_object_get(a, "b")), "{\"k\": 1}");
    assert_string_equal(json_string_value(json_object_get(a, "c")), "1.50");
    assert_true(json_is_integer(json_object_get(a, "d"))); /* a string or an integer */
    assert_true(json_is_true(json_object_get(a, "e")));    /* only null: no string */
    assert_true(json_is_integer(json_object_get(a, "f"))); /* deeper than followed */
    xml_call_clear(&c);
    json_decref(params);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_call),
        cmocka_unit_test(test_case_insensitive_tags),
        cmocka_unit_test(test_multiple_invokes_first_only),
        cmocka_unit_test(test_typed_values),
        cmocka_unit_test(test_no_block),
        cmocka_unit_test(test_unterminated_block),
        cmocka_unit_test(test_garbage),
        cmocka_unit_test(test_nul_in_names),
        cmocka_unit_test(test_call_without_parameters),
        cmocka_unit_test(test_incremental_scan),
        cmocka_unit_test(test_invokes_by_index),
        cmocka_unit_test(test_raw_xml_is_each_invoke),
        cmocka_unit_test(test_walk_is_linear),
        cmocka_unit_test(test_schema_strings_stay_text),
        cmocka_unit_test(test_schema_any_of_strings),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
