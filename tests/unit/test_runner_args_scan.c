/* test_runner_args_scan.c — whether a streaming call's arguments are one whole JSON object yet
 * (services/agent-runner/args_scan.c): fed whole and one byte at a time, strings with braces
 * and escapes, what can never become an object, a text scanned again after it was replaced,
 * and the cost: each byte read once, one parse per close. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <jansson.h>

#include "args_scan.h"

/* The verdict for text fed whole; fed one byte more at a time, every prefix's verdict must be
 * jansson's (one JSON object, white space around it allowed) and the last one the same. */
static bool whole(const char *text)
{
    size_t n = strlen(text);
    args_scan a;
    args_scan_reset(&a);
    bool at_once = args_scan_whole(&a, text, n);
    args_scan_reset(&a);
    for (size_t i = 1; i <= n; i++) {
        json_t *v = json_loadb(text, i, 0, NULL);
        bool want = json_is_object(v);
        json_decref(v);
        if (args_scan_whole(&a, text, i) != want)
            fail_msg("\"%.*s\" (a prefix of \"%s\"): %s", (int)i, text, text,
                     want ? "an object, not taken" : "taken, not an object");
    }
    return at_once;
}

static void test_objects(void **state)
{
    (void)state;
    assert_true(whole("{}"));
    assert_true(whole("{\"command\": \"ls -la\", \"blocking\": true}"));
    assert_true(whole("  {\"a\": {\"b\": [1, {\"c\": null}]}}  \n"));
    assert_true(whole("{\"s\": \"}}}{{{]]\"}"));                 /* braces in a string */
    assert_true(whole("{\"s\": \"a \\\"quoted\\\" } brace\"}")); /* escaped quotes */
    assert_true(whole("{\"s\": \"ends with a backslash \\\\\"}"));
    assert_true(whole("{\"u\": \"\\u00e9\\n\"}"));
}

static void test_never_objects(void **state)
{
    (void)state;
    assert_false(whole(""));
    assert_false(whole("   "));
    assert_false(whole("[1, 2]"));
    assert_false(whole("\"text\""));
    assert_false(whole("42"));
    assert_false(whole("{\"a\": 1}}"));   /* more after the close */
    assert_false(whole("{\"a\": 1} {}")); /* two objects */
    assert_false(whole("{\"a\": 1]"));    /* closed by the wrong bracket: the parse says no */
    assert_false(whole("{\"a\": tru}"));
    assert_false(whole("{\"a\": \"unterminated}"));
}

/* A text replaced by a shorter one (Anthropic's whole input, then its deltas) is read again. */
static void test_shorter_text_rescanned(void **state)
{
    (void)state;
    args_scan a;
    args_scan_reset(&a);
    const char *first = "{\"x\": \"long value\"";
    assert_false(args_scan_whole(&a, first, strlen(first)));
    assert_true(args_scan_whole(&a, "{}", 2));
}

/* 4 MiB of arguments in 1 KiB deltas that each end with '}': every byte is read once and the
 * text parsed at most once (before: a parse of the whole text per delta, ~45 s of the loop). */
static void test_cost_is_linear(void **state)
{
    (void)state;
    size_t total = 4u << 20, step = 1024;
    char *text = malloc(total + 1);
    assert_non_null(text);
    memcpy(text, "{\"command\": \"echo ", 18);
    for (size_t i = 18; i < total; i++)
        text[i] = (i + 1) % step == 0 ? '}' : 'x';
    text[total] = '\0';
    args_scan a;
    args_scan_reset(&a);
    for (size_t n = step; n <= total; n += step)
        assert_false(args_scan_whole(&a, text, n));
    assert_int_equal(a.pos, total);
    assert_int_equal(a.verdict, 0); /* never closed: never parsed */
    /* the same deltas after a close: the first stray byte ends it, with one parse */
    memcpy(text, "{\"a\": 1}  ", 10);
    args_scan_reset(&a);
    assert_true(args_scan_whole(&a, text, 10));
    for (size_t n = step; n <= total; n += step)
        assert_false(args_scan_whole(&a, text, n));
    assert_true(a.never);
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_objects),
        cmocka_unit_test(test_never_objects),
        cmocka_unit_test(test_shorter_text_rescanned),
        cmocka_unit_test(test_cost_is_linear),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
