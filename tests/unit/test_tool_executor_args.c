/* test_tool_executor_args.c — execute_command argument validation (types, defaults, the
 * string forms XML tool calls produce, error messages that name the argument) and the tool
 * deadline T = min(D - 250 ms, now + limit, now + timeout). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "deadline.h"
#include "tool_args.h"

static void parse_ok(const char *json, te_exec_args *a)
{
    char why[256] = "";
    kx_err err = te_exec_args_parse(json, a, why, sizeof why);
    if (err != KX_OK)
        fail_msg("%s: %s", json, why);
}

static void parse_fails(const char *json, const char *want_why)
{
    te_exec_args a;
    char why[256] = "";
    assert_int_equal(te_exec_args_parse(json, &a, why, sizeof why), KX_ERR_INVALID);
    assert_string_equal(why, want_why);
    assert_null(a.command);
}

static void test_defaults(void **state)
{
    te_exec_args a;
    parse_ok("{\"command\": \"ls -la\"}", &a);
    assert_string_equal(a.command, "ls -la");
    assert_string_equal(a.folder, "");
    assert_string_equal(a.session_name, "");
    assert_false(a.blocking); /* Kortix's default */
    assert_int_equal(a.timeout_s, 60);
    te_exec_args_free(&a);
    assert_null(a.command);
}

static void test_all_arguments(void **state)
{
    te_exec_args a;
    parse_ok("{\"command\": \"make\", \"folder\": \"app\", \"session_name\": \"build\", "
             "\"blocking\": true, \"timeout\": 120, \"unknown\": [1, 2]}",
             &a);
    assert_string_equal(a.command, "make");
    assert_string_equal(a.folder, "app");
    assert_string_equal(a.session_name, "build");
    assert_true(a.blocking);
    assert_int_equal(a.timeout_s, 120);
    te_exec_args_free(&a);

    /* nulls are "not given" */
    parse_ok("{\"command\": \"x\", \"folder\": null, \"blocking\": null, \"timeout\": null}", &a);
    assert_string_equal(a.folder, "");
    assert_false(a.blocking);
    assert_int_equal(a.timeout_s, 60);
    te_exec_args_free(&a);
}

static void test_string_forms_from_xml(void **state)
{
    te_exec_args a;
    parse_ok("{\"command\": \"x\", \"blocking\": \"true\", \"timeout\": \"30\"}", &a);
    assert_true(a.blocking);
    assert_int_equal(a.timeout_s, 30);
    te_exec_args_free(&a);
    parse_ok("{\"command\": \"x\", \"blocking\": \"False\", \"timeout\": \" 3600 \"}", &a);
    assert_false(a.blocking);
    assert_int_equal(a.timeout_s, 3600);
    te_exec_args_free(&a);
    parse_ok("{\"command\": \"x\", \"timeout\": 45.0}", &a);
    assert_int_equal(a.timeout_s, 45);
    te_exec_args_free(&a);
}

static void test_errors_name_the_argument(void **state)
{
    parse_fails(NULL, "execute_command: arguments must be a JSON object");
    parse_fails("", "execute_command: arguments must be a JSON object");
    parse_fails("[1]", "execute_command: arguments must be a JSON object");
    parse_fails("{not json", "execute_command: arguments must be a JSON object");
    parse_fails("{}", "execute_command: 'command' is required and must be a non-empty string");
    parse_fails("{\"command\": \"\"}",
                "execute_command: 'command' is required and must be a non-empty string");
    parse_fails("{\"command\": 5}",
                "execute_command: 'command' is required and must be a non-empty string");
    parse_fails("{\"command\": \"x\", \"folder\": 3}",
                "execute_command: 'folder' must be a string");
    parse_fails("{\"command\": \"x\", \"session_name\": {}}",
                "execute_command: 'session_name' must be a string");
    parse_fails("{\"command\": \"x\", \"blocking\": \"yes\"}",
                "execute_command: 'blocking' must be a boolean (true or false)");
    parse_fails("{\"command\": \"x\", \"blocking\": 1}",
                "execute_command: 'blocking' must be a boolean (true or false)");
    const char *timeout_why = "execute_command: 'timeout' must be an integer between 1 and 3600";
    parse_fails("{\"command\": \"x\", \"timeout\": 0}", timeout_why);
    parse_fails("{\"command\": \"x\", \"timeout\": 3601}", timeout_why);
    parse_fails("{\"command\": \"x\", \"timeout\": -5}", timeout_why);
    parse_fails("{\"command\": \"x\", \"timeout\": 1.5}", timeout_why);
    parse_fails("{\"command\": \"x\", \"timeout\": \"ten\"}", timeout_why);
    parse_fails("{\"command\": \"x\", \"timeout\": \"10s\"}", timeout_why);
    parse_fails("{\"command\": \"x\", \"timeout\": \"\"}", timeout_why);
    parse_fails("{\"command\": \"x\", \"timeout\": true}", timeout_why);
    parse_fails("{\"command\": \"x\", \"timeout\": 1e300}", timeout_why);
}

static void test_tool_deadline(void **state)
{
    const int64_t now = 1000000;
    /* The caller's deadline is far: the tool limit or the call's timeout wins. */
    assert_int_equal(te_tool_deadline(now + 3600000, now, 180, false, 60), now + 180000);
    assert_int_equal(te_tool_deadline(now + 3600000, now, 180, true, 60), now + 60000);
    assert_int_equal(te_tool_deadline(now + 3600000, now, 180, true, 600), now + 180000);
    /* The caller's deadline is near: 250 ms before it. */
    assert_int_equal(te_tool_deadline(now + 3000, now, 180, true, 600), now + 2750);
    assert_int_equal(te_tool_deadline(now + 3000, now, 180, false, 1), now + 2750);
    assert_int_equal(te_tool_deadline(now + 3000, now, 180, true, 1), now + 1000);
    /* No time left: T <= now. */
    assert_true(te_tool_deadline(now + 100, now, 180, true, 60) <= now);
    /* The executor's wait (T + grace) always ends before the caller's deadline. */
    for (int64_t d = 300; d < 5000; d += 37) {
        kx_deadline t = te_tool_deadline(now + d, now, 180, true, 60);
        assert_true(t + TE_BROKER_GRACE_MS < now + d);
    }

    assert_int_equal(te_seconds_for_message(1000), 1);
    assert_int_equal(te_seconds_for_message(200), 1);
    assert_int_equal(te_seconds_for_message(1001), 2);
    assert_int_equal(te_seconds_for_message(60000), 60);
    assert_int_equal(te_seconds_for_message(4750), 5);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_all_arguments),
        cmocka_unit_test(test_string_forms_from_xml),
        cmocka_unit_test(test_errors_name_the_argument),
        cmocka_unit_test(test_tool_deadline),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
