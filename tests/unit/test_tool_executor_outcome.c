/* test_tool_executor_outcome.c — how a sandbox result becomes execute_command's ToolResult:
 * success from the exit code, the Kortix output shapes printed like json.dumps, timed-out and
 * background results, broker errors passed through. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "outcome.h"

static Kx__V1__SandboxExecResult result(void)
{
    Kx__V1__SandboxExecResult r = KX__V1__SANDBOX_EXEC_RESULT__INIT;
    r.exec_id = "e1";
    r.started = true;
    r.cwd = "/workspace/app";
    r.session_name = "build";
    return r;
}

static void test_blocking_success_and_failure(void **state)
{
    Kx__V1__SandboxExecResult r = result();
    r.completed = true;
    r.stdout = "hello\n";
    r.stderr = "";
    te_outcome o;
    te_outcome_from_exec(&o, &r, true, 60);
    assert_true(o.success);
    assert_false(o.timed_out);
    assert_string_equal(o.error_code, "");
    assert_string_equal(o.output_json,
                        "{\"output\": \"hello\\n\", \"stderr\": \"\", \"exit_code\": 0, "
                        "\"cwd\": \"/workspace/app\", \"session_name\": \"build\", "
                        "\"completed\": true}");
    te_outcome_free(&o);

    r.exit_code = 2;
    r.stdout = "";
    r.stderr = "no such file\n";
    r.truncated = true;
    te_outcome_from_exec(&o, &r, true, 60);
    assert_false(o.success);
    assert_string_equal(o.error_code, ""); /* the tool ran; it failed */
    assert_string_equal(o.output_json,
                        "{\"output\": \"\", \"stderr\": \"no such file\\n\", \"exit_code\": 2, "
                        "\"cwd\": \"/workspace/app\", \"session_name\": \"build\", "
                        "\"completed\": true, \"truncated\": true}");
    te_outcome_free(&o);
}

static void test_timed_out(void **state)
{
    Kx__V1__SandboxExecResult r = result();
    r.timed_out = true;
    r.term_signal = 9;
    r.exit_code = 137;
    r.stdout = "partial";
    r.stderr = "";
    te_outcome o;
    te_outcome_from_exec(&o, &r, true, 5);
    assert_false(o.success);
    assert_true(o.timed_out);
    assert_string_equal(o.error_code, "deadline_exceeded");
    assert_string_equal(o.error_message,
                        "execute_command timed out after 5 s (process group killed)");
    assert_string_equal(o.output_json,
                        "{\"output\": \"partial\", \"stderr\": \"\", \"cwd\": \"/workspace/app\", "
                        "\"session_name\": \"build\", \"completed\": false, "
                        "\"timed_out\": true}");
    te_outcome_free(&o);
}

static void test_background(void **state)
{
    Kx__V1__SandboxExecResult r = result();
    te_outcome o;
    te_outcome_from_exec(&o, &r, false, 60);
    assert_true(o.success);
    assert_string_equal(o.error_code, "");
    assert_string_equal(o.output_json,
                        "{\"session_name\": \"build\", \"cwd\": \"/workspace/app\", "
                        "\"message\": \"Command sent to session 'build'. Its output is written "
                        "to the session log.\", \"completed\": false}");
    te_outcome_free(&o);
}

static void test_broker_error_and_incomplete(void **state)
{
    Kx__V1__Error e = KX__V1__ERROR__INIT;
    e.code = "invalid_argument";
    e.message = "folder '..' must not contain '..'";
    Kx__V1__SandboxExecResult r = result();
    r.started = false;
    r.error = &e;
    te_outcome o;
    te_outcome_from_exec(&o, &r, true, 60);
    assert_false(o.success);
    assert_null(o.output_json);
    assert_string_equal(o.error_code, "invalid_argument");
    assert_string_equal(o.error_message, "folder '..' must not contain '..'");
    te_outcome_free(&o);

    /* Blocking, no error, but not completed either: never reported as success. */
    Kx__V1__SandboxExecResult r2 = result();
    te_outcome_from_exec(&o, &r2, true, 60);
    assert_false(o.success);
    assert_string_equal(o.error_code, "internal");
    te_outcome_free(&o);
}

static void test_error_helpers(void **state)
{
    te_outcome o;
    te_outcome_init(&o);
    te_outcome_error(&o, KX_ERR_NOT_FOUND, "Tool function '%s' not found", "nope");
    assert_false(o.success);
    assert_string_equal(o.error_code, "not_found");
    assert_string_equal(o.error_message, "Tool function 'nope' not found");
    te_outcome_free(&o);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_blocking_success_and_failure),
        cmocka_unit_test(test_timed_out),
        cmocka_unit_test(test_background),
        cmocka_unit_test(test_broker_error_and_incomplete),
        cmocka_unit_test(test_error_helpers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
