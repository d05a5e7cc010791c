/* test_runner_tools_text.c — a run's tool schemas printed from the per-schema text cache
 * (tools_text.h) are byte for byte kx_json_dumps_compact of the array: for arrays sharing their
 * schema objects (as agent_config_filter_tools makes them), for new objects at addresses a
 * freed one had (the cache holds its keys), past the cache's bound, and for an empty array. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kx/json.h"
#include "tools_text.h"

static json_t *schema(int i)
{
    char name[32];
    snprintf(name, sizeof name, "tool_%d_\xc3\xa9", i);
    return json_pack("{s:s, s:{s:s, s:s, s:{s:s, s:{s:{s:s, s:f}}}}}", "type", "function",
                     "function", "name", name, "description", "Does \"it\"\n\x01", "parameters",
                     "type", "object", "properties", "x", "type", "number", "default", 0.1 * i);
}

static void expect_same(const json_t *arr)
{
    char *want = kx_json_dumps_compact(arr);
    char *got = tools_text_print(arr);
    assert_non_null(want);
    assert_non_null(got);
    assert_string_equal(got, want);
    free(want);
    free(got);
}

static void test_matches_compact_print(void **state)
{
    (void)state;
    json_t *all = json_array();
    for (int i = 0; i < 40; i++)
        json_array_append_new(all, schema(i));
    for (int round = 0; round < 3; round++) { /* cached the second and third time */
        expect_same(all);
        json_t *some = json_array(); /* a filtered view: the same objects */
        for (size_t i = (size_t)round; i < json_array_size(all); i += 3)
            json_array_append(some, json_array_get(all, i));
        expect_same(some);
        json_decref(some);
    }
    json_t *empty = json_array();
    expect_same(empty);
    json_decref(empty);
    assert_null(tools_text_print(NULL));
    json_decref(all);
    tools_text_clear();
}

/* A schema freed by its owner, and a new one (maybe at the same address): the new text. */
static void test_new_objects_never_get_an_old_text(void **state)
{
    (void)state;
    for (int i = 0; i < 2000; i++) { /* crosses the cache's bound many times */
        json_t *arr = json_array();
        json_array_append_new(arr, schema(i));
        json_array_append_new(arr, schema(i + 1));
        expect_same(arr);
        json_decref(arr);
    }
    tools_text_clear();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matches_compact_print),
        cmocka_unit_test(test_new_objects_never_get_an_old_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
