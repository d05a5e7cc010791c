/* test_runner_context.c — how the agent-runner turns stored thread rows into chat messages
 * (services/agent-runner/context.c): content stored as a jsonb object or as a jsonb string
 * holding JSON, the repair of tool-call sequences a strict OpenAI server would refuse, and the
 * note where the read left rows out. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "context.h"
#include "context_budget.h"
#include "kx/json.h"

static const char *role_of(const json_t *m)
{
    return json_string_value(json_object_get(m, "role"));
}
static const char *content_of(const json_t *m)
{
    return json_string_value(json_object_get(m, "content"));
}

static void test_object_and_string_content(void **state)
{
    json_t *m = context_message_from_row("user", "{\"role\": \"user\", \"content\": \"hi\"}");
    assert_string_equal(role_of(m), "user");
    assert_string_equal(content_of(m), "hi");
    json_decref(m);

    /* a jsonb string holding JSON, as Kortix's /agent/initiate writes it */
    m = context_message_from_row("user",
                                 "\"{\\\"role\\\": \\\"user\\\", \\\"content\\\": \\\"yo\\\"}\"");
    assert_string_equal(role_of(m), "user");
    assert_string_equal(content_of(m), "yo");
    json_decref(m);

    /* a jsonb string that is not JSON: the text itself */
    m = context_message_from_row("user", "\"just text\"");
    assert_string_equal(role_of(m), "user");
    assert_string_equal(content_of(m), "just text");
    json_decref(m);

    /* not an object at all: shown as text, role from the row type */
    m = context_message_from_row("assistant", "42");
    assert_string_equal(role_of(m), "assistant");
    assert_string_equal(content_of(m), "42");
    json_decref(m);
}

static void test_cleaning(void **state)
{
    /* tool_calls null is dropped; object content becomes JSON text; unknown keys dropped */
    json_t *m = context_message_from_row(
        "assistant",
        "{\"role\": \"assistant\", \"content\": {\"a\": 1}, \"tool_calls\": null, "
        "\"message_id\": \"x\"}");
    assert_string_equal(content_of(m), "{\"a\": 1}");
    assert_null(json_object_get(m, "tool_calls"));
    assert_null(json_object_get(m, "message_id"));
    json_decref(m);

    /* an XML tool result is stored with role user: it stays a user message */
    m = context_message_from_row(
        "tool", "{\"role\": \"user\", \"content\": \"{\\\"tool_execution\\\": {}}\"}");
    assert_string_equal(role_of(m), "user");
    json_decref(m);

    /* a native tool result keeps tool_call_id and name */
    m = context_message_from_row("tool",
                                 "{\"role\": \"tool\", \"tool_call_id\": \"c1\", "
                                 "\"name\": \"execute_command\", \"content\": \"ok\"}");
    assert_string_equal(role_of(m), "tool");
    assert_string_equal(json_string_value(json_object_get(m, "tool_call_id")), "c1");
    assert_string_equal(json_string_value(json_object_get(m, "name")), "execute_command");
    json_decref(m);
}

static json_t *assistant_with_calls(const char *id1, const char *id2)
{
    char buf[512];
    snprintf(buf, sizeof buf,
             "{\"role\": \"assistant\", \"content\": \"\", \"tool_calls\": ["
             "{\"id\": \"%s\", \"type\": \"function\", \"function\": {\"name\": \"f\", "
             "\"arguments\": \"{}\"}}, {\"id\": \"%s\", \"type\": \"function\", \"function\": "
             "{\"name\": \"g\", \"arguments\": \"{}\"}}]}",
             id1, id2);
    return context_message_from_row("assistant", buf);
}

static json_t *tool_result(const char *id, const char *text)
{
    char buf[256];
    snprintf(buf, sizeof buf,
             "{\"role\": \"tool\", \"tool_call_id\": \"%s\", \"name\": \"f\", "
             "\"content\": \"%s\"}",
             id, text);
    return context_message_from_row("tool", buf);
}

static void test_repair(void **state)
{
    json_t *a = json_array();
    json_array_append_new(a,
                          context_message_from_row("user",
                                                   "{\"role\": \"user\", \"content\": \"go\"}"));
    json_array_append_new(a, assistant_with_calls("A", "B"));
    json_array_append_new(a, tool_result("B", "b done")); /* A never answered (stopped) */
    json_array_append_new(a, tool_result("Z", "orphan")); /* answers no call */
    json_array_append_new(
        a, context_message_from_row("user", "{\"role\": \"user\", \"content\": \"again\"}"));
    context_repair(a);

    assert_int_equal(json_array_size(a), 6);
    assert_string_equal(role_of(json_array_get(a, 1)), "assistant");
    json_t *t1 = json_array_get(a, 2);
    assert_string_equal(role_of(t1), "tool");
    assert_string_equal(json_string_value(json_object_get(t1, "tool_call_id")), "B");
    json_t *t2 = json_array_get(a, 3); /* the synthetic answer for A, inside the block */
    assert_string_equal(role_of(t2), "tool");
    assert_string_equal(json_string_value(json_object_get(t2, "tool_call_id")), "A");
    assert_string_equal(json_string_value(json_object_get(t2, "name")), "f");
    assert_string_equal(content_of(t2), CONTEXT_MISSING_RESULT);
    json_t *orphan = json_array_get(a, 4); /* demoted to a user message */
    assert_string_equal(role_of(orphan), "user");
    assert_string_equal(content_of(orphan), "Tool result: orphan");
    assert_string_equal(content_of(json_array_get(a, 5)), "again");
    json_decref(a);
}

static void test_repair_leaves_good_threads_alone(void **state)
{
    json_t *a = json_array();
    json_array_append_new(a,
                          context_message_from_row("user",
                                                   "{\"role\": \"user\", \"content\": \"go\"}"));
    json_array_append_new(a, assistant_with_calls("A", "B"));
    json_array_append_new(a, tool_result("A", "a"));
    json_array_append_new(a, tool_result("B", "b"));
    json_array_append_new(
        a,
        context_message_from_row(
            "assistant",
            "{\"role\": \"assistant\", \"content\": \"done\", \"tool_calls\": null}"));
    char *before = kx_json_dumps_py(a);
    context_repair(a);
    char *after = kx_json_dumps_py(a);
    assert_string_equal(before, after);
    free(before);
    free(after);
    json_decref(a);
}

/* Rows 1, 5 and 6 of a thread (the read left 2..4 out: KX_CONTEXT_READ_MAX_MB): the model
 * gets a note in the gap that says 3 messages are left out there (before: the rows were
 * simply adjacent); row 5, a tool result whose call was left out, becomes a user message. */
static void test_gap_gets_a_note(void **state)
{
    (void)state;
    char c1[] = "{\"role\": \"user\", \"content\": \"the task\"}";
    char c5[] = "{\"role\": \"tool\", \"tool_call_id\": \"call_x\", \"content\": \"out\"}";
    char c6[] = "{\"role\": \"user\", \"content\": \"the newest\"}";
    store_msg rows[] = {
        {.type = "user", .message_id = "m1", .content = c1, .nth = 1},
        {.type = "tool", .message_id = "m5", .content = c5, .nth = 5},
        {.type = "user", .message_id = "m6", .content = c6, .nth = 6},
    };
    json_t *msgs = NULL;
    char last[32];
    assert_int_equal(context_from_rows(rows, 3, &msgs, last, sizeof last), KX_OK);
    assert_int_equal(json_array_size(msgs), 4);
    assert_string_equal(content_of(json_array_get(msgs, 0)), "the task");
    json_t *note = json_array_get(msgs, 1);
    assert_string_equal(role_of(note), "user");
    assert_string_equal(content_of(note),
                        "[3 messages of this conversation are left out here: "
                        "they do not fit in the model's context.]");
    assert_int_equal(json_integer_value(json_object_get(note, CONTEXT_LEFT_OUT_KEY)), 3);
    assert_string_equal(role_of(json_array_get(msgs, 2)), "user"); /* the orphan, demoted */
    assert_string_equal(content_of(json_array_get(msgs, 3)), "the newest");
    assert_string_equal(last, "user");
    json_decref(msgs);

    rows[1].nth = 2; /* no gap: no note */
    rows[2].nth = 3;
    assert_int_equal(context_from_rows(rows, 3, &msgs, last, sizeof last), KX_OK);
    assert_int_equal(json_array_size(msgs), 3);
    json_decref(msgs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_object_and_string_content),
        cmocka_unit_test(test_cleaning),
        cmocka_unit_test(test_repair),
        cmocka_unit_test(test_repair_leaves_good_threads_alone),
        cmocka_unit_test(test_gap_gets_a_note),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
