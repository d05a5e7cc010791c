/* test_jsonschema.c — kx/jsonschema: the subset (types, required, properties,
 * additionalProperties, items, min/maxItems, enum, minimum/maximum, min/maxLength), the
 * coercions of XML tool calls, error messages that name the field and what was expected, and
 * schemas with keywords outside the subset refused. */
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "kx/jsonschema.h"

static json_t *load(const char *text)
{
    json_t *v = json_loads(text, JSON_DECODE_ANY, NULL);
    if (v == NULL)
        fail_msg("not JSON: %s", text);
    return v;
}

static const char *EXEC =
    "{\"type\": \"object\", \"properties\": {"
    "\"command\": {\"type\": \"string\", \"minLength\": 1, \"description\": \"x\"},"
    "\"blocking\": {\"type\": \"boolean\", \"default\": false},"
    "\"timeout\": {\"type\": \"integer\", \"minimum\": 1, \"maximum\": 3600},"
    "\"ratio\": {\"type\": \"number\"},"
    "\"status\": {\"type\": \"string\", \"enum\": [\"pending\", \"completed\", \"cancelled\"]},"
    "\"ids\": {\"type\": [\"string\", \"array\"], \"items\": {\"type\": \"string\"}},"
    "\"tasks\": {\"type\": \"array\", \"maxItems\": 2, \"items\": {\"type\": \"object\","
    "  \"properties\": {\"content\": {\"type\": \"string\", \"maxLength\": 3}},"
    "  \"required\": [\"content\"], \"additionalProperties\": false}}},"
    "\"required\": [\"command\"]}";

/* Validates text; returns "" when valid (and *out gets the coerced instance) or the reason. */
static char g_why[256];
static const char *check(const char *text, unsigned flags, json_t **out)
{
    json_t *schema = load(EXEC);
    char why[256];
    assert_int_equal(kx_jsonschema_check(schema, why, sizeof why), KX_OK);
    json_t *v = load(text);
    kx_err err = kx_jsonschema_validate(schema, &v, flags, g_why, sizeof g_why);
    json_decref(schema);
    if (err == KX_OK) {
        g_why[0] = '\0';
        if (out != NULL)
            *out = v;
        else
            json_decref(v);
    } else {
        assert_int_equal(err, KX_ERR_INVALID);
        assert_true(g_why[0] != '\0');
        json_decref(v);
    }
    return g_why;
}

static void test_valid(void **state)
{
    (void)state;
    assert_string_equal(check("{\"command\": \"ls\"}", 0, NULL), "");
    assert_string_equal(check("{\"command\": \"ls\", \"blocking\": true, \"timeout\": 3600, "
                              "\"ratio\": 0.5, \"status\": \"completed\", \"ids\": \"a\", "
                              "\"tasks\": [{\"content\": \"abc\"}], \"other\": 1}",
                              0, NULL),
                        "");
    assert_string_equal(check("{\"command\": \"ls\", \"ids\": [\"a\", \"b\"], \"timeout\": 60.0}",
                              0, NULL),
                        "");
}

static void test_errors_name_the_field(void **state)
{
    (void)state;
    assert_string_equal(check("{}", 0, NULL), "'command' is required");
    assert_string_equal(check("[]", 0, NULL), "the arguments must be an object (got an array)");
    assert_string_equal(check("{\"command\": \"\"}", 0, NULL),
                        "'command' must be at least 1 character long");
    assert_string_equal(check("{\"command\": 5}", 0, NULL),
                        "'command' must be a string (got an integer)");
    assert_string_equal(check("{\"command\": \"x\", \"timeout\": 0}", 0, NULL),
                        "'timeout' must be between 1 and 3600 (got 0)");
    assert_string_equal(check("{\"command\": \"x\", \"timeout\": 1.5}", 0, NULL),
                        "'timeout' must be an integer (got a number)");
    assert_string_equal(check("{\"command\": \"x\", \"blocking\": \"yes\"}", KX_JS_COERCE, NULL),
                        "'blocking' must be a boolean (got a string)");
    assert_string_equal(check("{\"command\": \"x\", \"status\": \"done\"}", 0, NULL),
                        "'status' must be one of \"pending\", \"completed\", \"cancelled\" "
                        "(got \"done\")");
    assert_string_equal(check("{\"command\": \"x\", \"ids\": 3}", 0, NULL),
                        "'ids' must be string or array (got an integer)");
    assert_string_equal(check("{\"command\": \"x\", \"ids\": [\"a\", 2]}", 0, NULL),
                        "'ids[1]' must be a string (got an integer)");
    assert_string_equal(check("{\"command\": \"x\", \"tasks\": [{}]}", 0, NULL),
                        "'tasks[0].content' is required");
    assert_string_equal(check("{\"command\": \"x\", \"tasks\": [{\"content\": \"abcd\"}]}", 0,
                              NULL),
                        "'tasks[0].content' must be at most 3 characters long");
    assert_string_equal(check("{\"command\": \"x\", \"tasks\": [{\"content\": \"\xe2\x82\xac\xe2"
                              "\x82\xac\xe2\x82\xac\"}]}",
                              0, NULL),
                        ""); /* characters, not bytes */
    assert_string_equal(check("{\"command\": \"x\", \"tasks\": [{\"content\": \"a\", \"x\": 1}]}",
                              0, NULL),
                        "'tasks[0].x' is not an argument of this tool");
    assert_string_equal(check("{\"command\": \"x\", \"tasks\": [{\"content\": \"a\"}, "
                              "{\"content\": \"b\"}, {\"content\": \"c\"}]}",
                              0, NULL),
                        "'tasks' must have at most 2 items");
}

static void test_xml_coercions(void **state)
{
    (void)state;
    json_t *v = NULL;
    /* what Kortix's XML parser produces: strings for booleans and numbers, numbers for text,
     * JSON arrays as text */
    assert_string_equal(check("{\"command\": 123, \"blocking\": \"True\", \"timeout\": \" 60 \", "
                              "\"ratio\": \"2.5\", \"tasks\": \"[{\\\"content\\\": \\\"a\\\"}]\"}",
                              KX_JS_COERCE, &v),
                        "");
    assert_string_equal(json_string_value(json_object_get(v, "command")), "123");
    assert_true(json_is_true(json_object_get(v, "blocking")));
    assert_int_equal(json_integer_value(json_object_get(v, "timeout")), 60);
    assert_true(json_real_value(json_object_get(v, "ratio")) == 2.5);
    assert_true(json_is_array(json_object_get(v, "tasks")));
    json_decref(v);
    /* an optional argument given as null is not given; a required one is still refused */
    assert_string_equal(check("{\"command\": \"x\", \"timeout\": null, \"ids\": null}",
                              KX_JS_COERCE, &v),
                        "");
    assert_null(json_object_get(v, "timeout"));
    json_decref(v);
    assert_string_equal(check("{\"command\": null}", KX_JS_COERCE, NULL),
                        "'command' must be a string (got null)");
    /* without the flag they are refused */
    assert_string_equal(check("{\"command\": \"x\", \"timeout\": \"60\"}", 0, NULL),
                        "'timeout' must be an integer (got a string)");
    /* a coerced value still meets its bounds */
    assert_string_equal(check("{\"command\": \"x\", \"timeout\": \"9999\"}", KX_JS_COERCE, NULL),
                        "'timeout' must be between 1 and 3600 (got 9999)");
    assert_string_equal(check("{\"command\": \"x\", \"timeout\": \"60s\"}", KX_JS_COERCE, NULL),
                        "'timeout' must be an integer (got a string)");
    /* the whole instance may be replaced: a string holding the object */
    json_t *schema = load("{\"type\": \"object\", \"required\": [\"a\"]}");
    json_t *inst = json_string("{\"a\": 1}");
    char why[256];
    assert_int_equal(kx_jsonschema_validate(schema, &inst, KX_JS_COERCE, why, sizeof why), KX_OK);
    assert_true(json_is_object(inst));
    json_decref(inst);
    json_decref(schema);
}

static void test_schema_subset_enforced(void **state)
{
    (void)state;
    const char *bad[] = {
        "{\"type\": \"object\", \"pattern\": \"^a\"}",
        "{\"type\": \"objekt\"}",
        "{\"properties\": {\"a\": {\"oneOf\": []}}}",
        "{\"items\": 5}",
        "{\"required\": \"a\"}",
        "{\"enum\": []}",
        "{\"minLength\": -1}",
        "{\"maximum\": \"3\"}",
        "[]",
    };
    char why[256];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        json_t *s = load(bad[i]);
        if (kx_jsonschema_check(s, why, sizeof why) != KX_ERR_INVALID)
            fail_msg("accepted: %s", bad[i]);
        assert_non_null(strstr(why, "schema"));
        json_decref(s);
    }
    json_t *s = load("{\"properties\": {\"a\": {\"oneOf\": []}}}");
    assert_int_equal(kx_jsonschema_check(s, why, sizeof why), KX_ERR_INVALID);
    assert_string_equal(why, "schema.properties.a: keyword 'oneOf' is not supported");
    json_decref(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid),
        cmocka_unit_test(test_errors_name_the_field),
        cmocka_unit_test(test_xml_coercions),
        cmocka_unit_test(test_schema_subset_enforced),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
