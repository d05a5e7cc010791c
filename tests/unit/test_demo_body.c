/* test_demo_body.c — reading a chat request body (tests/fakes/demo-model/demo_body.c): the scan
 * accepts exactly the bodies a full jansson parse accepts and reads the same fields from them;
 * what it does not take at once goes to the full parse, so every rejected body gets the error
 * message the demo model always gave. Each body below is checked against jansson itself. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "demo_body.h"

/* What jansson says about the whole body: 0 and the fields, or -1. */
static int oracle(const char *text, json_t **messages, const char **model, int *stream)
{
    json_t *b = json_loadb(text, strlen(text), 0, NULL);
    json_t *m = json_object_get(b, "messages"), *s = json_object_get(b, "stream"),
           *md = json_object_get(b, "model");
    if (!json_is_object(b) || !json_is_array(m) ||
        (s != NULL && !json_is_boolean(s) && !json_is_null(s)) ||
        (md != NULL && !json_is_string(md))) {
        json_decref(b);
        return -1;
    }
    static char model_copy[256]; /* b is freed below */
    *messages = json_incref(m);
    *model = NULL;
    if (md != NULL) {
        snprintf(model_copy, sizeof model_copy, "%s", json_string_value(md));
        *model = model_copy;
    }
    *stream = json_is_true(s);
    json_decref(b);
    return 0;
}

/* Reads text both ways and checks they agree; returns whether the scan took it. */
static bool agrees(const char *text)
{
    demo_body b;
    char why[512] = "";
    int rc = demo_body_read(text, strlen(text), &b, why, sizeof why);
    json_t *m = NULL;
    const char *model = NULL;
    int stream = 0;
    int want = oracle(text, &m, &model, &stream);
    if (rc != want)
        fail_msg("body %s: read %d (%s), jansson %d", text, rc, why, want);
    bool scanned = false;
    if (rc == 0) {
        assert_true(json_equal(b.messages, m));
        if (model == NULL)
            assert_null(b.model);
        else
            assert_string_equal(b.model, model);
        assert_int_equal(b.stream, stream);
        scanned = b.scanned;
        demo_body_free(&b);
    } else {
        assert_null(b.messages);
        assert_null(b.model);
    }
    json_decref(m);
    return scanned;
}

static void expect_error(const char *text, const char *why_prefix)
{
    demo_body b;
    char why[512] = "";
    assert_int_equal(demo_body_read(text, strlen(text), &b, why, sizeof why), -1);
    if (strncmp(why, why_prefix, strlen(why_prefix)) != 0)
        fail_msg("body %s: error \"%s\", want it to start \"%s\"", text, why, why_prefix);
}

static void test_real_bodies_are_scanned(void **state)
{
    (void)state;
    /* the shape the agent-runner sends: messages, stream, tools with schemas, numbers */
    assert_true(agrees(
        "{\"model\":\"kortix/demo\",\"messages\":[{\"role\":\"system\",\"content\":\"You are "
        "\\\"Suna\\\".\\n\\tBe brief \\u00e9 \\/ é 日本 😀\"},{\"role\":\"user\",\"content\":"
        "\"call view_tasks {}\"},{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{"
        "\"id\":\"call_0_1\",\"type\":\"function\",\"function\":{\"name\":\"view_tasks\","
        "\"arguments\":\"{}\"}}]},{\"role\":\"tool\",\"tool_call_id\":\"call_0_1\",\"content\":"
        "\"{\\\"tool_execution\\\": {}}\"}],\"stream\":true,\"temperature\":0,\"tools\":[{"
        "\"type\":\"function\",\"function\":{\"name\":\"x\",\"parameters\":{\"type\":\"object\","
        "\"properties\":{\"n\":{\"type\":\"integer\",\"minimum\":-1.5e10,\"maximum\":1E+3,"
        "\"default\":0.25}},\"required\":[],\"additionalProperties\":false}}}],"
        "\"tool_choice\":\"auto\",\"max_tokens\":4096}"));
    assert_true(agrees(" \r\n\t{ \"messages\" : [ ] , \"stream\" : null } \n"));
    assert_true(agrees("{\"messages\":[],\"stream\":false,\"model\":\"a\\\"b\\u00e9\"}"));
    /* a repeated key: the last one counts, as in jansson */
    assert_true(agrees("{\"messages\":5,\"stream\":7,\"messages\":[{\"role\":\"user\"}],"
                       "\"stream\":true}"));
    /* nested objects named like the fields are not the fields */
    assert_true(agrees("{\"x\":{\"messages\":1,\"stream\":2},\"messages\":[]}"));
}

static void test_unusual_bodies_take_the_full_parse(void **state)
{
    (void)state;
    /* accepted by jansson, left to it by the scan: the same result */
    assert_false(agrees("{\"mess\\u0061ges\":[],\"stream\":true}"));
    assert_false(agrees("{\"messages\":[],\"big\":1234567890123456789}"));
    assert_false(agrees("{\"messages\":[],\"r\":1e-300}"));
    assert_false(agrees("{\"messages\":[{\"role\":\"user\",\"content\":\"\\ud83d\\ude00\"}]}"));
    /* rejected by jansson (and so by the scan) */
    agrees("{\"messages\":[],\"big\":123456789012345678901234567890}");
    agrees("{\"messages\":[],\"r\":1e999}");
    agrees("{\"messages\":[],\"nul\":\"a\\u0000b\"}");
    agrees("{\"messages\":[],\"lone\":\"\\ud800\"}");
    agrees("{\"messages\":[],\"bad\":\"\xc3\x28\"}");
    agrees("{\"messages\":[],\"overlong\":\"\xc0\xaf\"}");
    agrees("{\"messages\":[],\"ctl\":\"a\tb\"}");
    agrees("{\"messages\":[],\"esc\":\"\\x\"}");
    agrees("{\"messages\":[],\"n\":01}");
    agrees("{\"messages\":[],\"n\":-}");
    agrees("{\"messages\":[],\"n\":1.}");
    agrees("{\"messages\":[],\"n\":1e}");
    agrees("{\"messages\":[],\"t\":tru}");
    agrees("{\"messages\":[],}");
    agrees("{\"messages\":[1,]}");
    agrees("{\"messages\":[]} x");
    agrees("{\"messages\":[]");
    agrees("{\"messages\" []}");
    agrees("");
    agrees("[]");
    agrees("\"messages\"");
    char deep[600];
    size_t n = 0;
    n += (size_t)snprintf(deep, sizeof deep, "{\"messages\":[],\"d\":");
    for (int i = 0; i < 100; i++)
        deep[n++] = '[';
    for (int i = 0; i < 100; i++)
        deep[n++] = ']';
    deep[n++] = '}';
    deep[n] = '\0';
    assert_false(agrees(deep));
}

static void test_errors_name_the_problem(void **state)
{
    (void)state;
    expect_error("{\"messages\": [", "the request body is not valid JSON: ");
    expect_error("{\"messages\": [}", "the request body is not valid JSON: ");
    expect_error("[1]", "the request body must be a JSON object");
    expect_error("{}", "\"messages\" is missing: it must be an array of messages");
    expect_error("{\"messages\": {}}", "\"messages\" is not an array: it must be an array");
    expect_error("{\"messages\": [], \"stream\": \"yes\"}", "\"stream\" must be true or false");
    expect_error("{\"messages\": [], \"model\": 5}", "\"model\" must be a string");
    /* the position of a syntax error is given */
    demo_body b;
    char why[512];
    assert_int_equal(demo_body_read("{\n \"messages\": x}", 17, &b, why, sizeof why), -1);
    assert_non_null(strstr(why, "(line 2, column"));
    /* a body that is not NUL-terminated is read to its length only */
    const char text[] = "{\"messages\":[]}GARBAGE";
    assert_int_equal(demo_body_read(text, 15, &b, why, sizeof why), 0);
    assert_true(b.scanned);
    demo_body_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_real_bodies_are_scanned),
        cmocka_unit_test(test_unusual_bodies_take_the_full_parse),
        cmocka_unit_test(test_errors_name_the_problem),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
