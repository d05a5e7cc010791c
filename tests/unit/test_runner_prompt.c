/* test_runner_prompt.c — prompt_tools() builds the default tool schema once and hands out
 * references to that one array (each run asked for it, and json_pack built it anew every
 * time): the same array on every call, its text what the per-call build printed (the literal
 * below was printed by it), intact after every caller dropped its reference. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdlib.h>

#include "kx/json.h"
#include "prompt.h"

static const char WANT[] =
    "[{\"type\":\"function\",\"function\":{\"name\":\"execute_command\",\"description\":\"Run a "
    "shell command in the project's sandbox workspace (/bin/sh -c). Non-blocking by default: "
    "set blocking to true to wait for the command and get its output.\",\"parameters\":{\"type\":"
    "\"object\",\"properties\":{\"command\":{\"type\":\"string\",\"description\":\"The shell "
    "command to run.\"},\"folder\":{\"type\":\"string\",\"description\":\"Sub-directory of the "
    "workspace to run the command in (default: the workspace).\"},\"session_name\":{\"type\":"
    "\"string\",\"description\":\"Name of the shell session to use.\"},\"blocking\":{\"type\":"
    "\"boolean\",\"default\":false,\"description\":\"Wait for the command to finish and return "
    "its output.\"},\"timeout\":{\"type\":\"integer\",\"default\":60,\"description\":\"Seconds a "
    "blocking command may run before it is killed.\"}},\"required\":[\"command\"]}}}]";

static void test_one_array_the_same_text(void **state)
{
    (void)state;
    json_t *a = prompt_tools();
    json_t *b = prompt_tools();
    assert_non_null(a);
    assert_ptr_equal(a, b);
    char *text = kx_json_dumps_compact(a);
    assert_string_equal(text, WANT);
    free(text);
    json_decref(a);
    json_decref(b);
    json_t *c = prompt_tools(); /* every caller's reference dropped: still there */
    text = kx_json_dumps_compact(c);
    assert_string_equal(text, WANT);
    free(text);
    json_decref(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_array_the_same_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
