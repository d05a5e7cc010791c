/* test_tool_executor_tasks.c — the task list's operations (services/tool-executor/tasks.c)
 * against a hostile model, which chooses every argument: the list is bounded (tasks, sections,
 * bytes), one call's id lists are bounded, and a list stored larger than that (before the
 * bounds) can still be shrunk. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kx/time.h"
#include "tasks.h"

/* The bounds (services/tool-executor/README.md, "The catalogue"). */
#define MAX_TASKS 1000
#define MAX_SECTIONS 100
#define MAX_BYTES (512 * 1024)

/* Applies tool with args (JSON text) to *state; the error's message into why. */
static kx_err apply(const char *tool, const char *args, json_t **state, char *why)
{
    json_t *a = json_loads(args, 0, NULL);
    assert_non_null(a);
    json_t *out = NULL;
    why[0] = '\0';
    kx_err err = te_tasks_apply(tool, a, state, &out, why, 256);
    json_decref(a);
    json_decref(out);
    return err;
}

/* {"task_contents": [content x n]} */
static char *contents_args(size_t n, const char *content)
{
    json_t *list = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(list, json_string(content));
    json_t *a = json_pack("{s:o}", "task_contents", list);
    char *text = json_dumps(a, JSON_COMPACT);
    json_decref(a);
    return text;
}

static size_t ntasks(const json_t *state)
{
    return json_array_size(json_object_get(state, "tasks"));
}

/* A model adding tasks call after call grew the list without bound: each create_tasks of ~1 MB
 * of one-letter tasks added ~18 MB of stored JSON, read, parsed and rewritten whole by every
 * later task call on the executor's one database connection, which every run's task tools
 * wait for. */
static void test_the_list_is_bounded(void **state)
{
    (void)state;
    char why[256];
    json_t *st = te_tasks_empty();
    char *args = contents_args(MAX_TASKS, "a");
    assert_int_equal(apply("create_tasks", args, &st, why), KX_OK);
    free(args);
    assert_int_equal(ntasks(st), MAX_TASKS);
    args = contents_args(1, "one more");
    kx_err err = apply("create_tasks", args, &st, why);
    free(args);
    if (err == KX_OK)
        fail_msg("create_tasks made a list of %zu tasks", ntasks(st));
    assert_int_equal(err, KX_ERR_INVALID);
    assert_non_null(strstr(why, "at most"));
    assert_int_equal(ntasks(st), MAX_TASKS); /* unchanged */
    json_decref(st);

    /* bytes: one huge task */
    st = te_tasks_empty();
    char *big = malloc(MAX_BYTES + 1);
    memset(big, 'x', MAX_BYTES);
    big[MAX_BYTES] = '\0';
    args = contents_args(1, big);
    free(big);
    err = apply("create_tasks", args, &st, why);
    free(args);
    if (err == KX_OK)
        fail_msg("create_tasks stored a task of %d bytes", MAX_BYTES);
    assert_non_null(strstr(why, "bytes"));
    assert_int_equal(ntasks(st), 0);

    /* sections */
    json_t *secs = json_array();
    for (int i = 0; i <= MAX_SECTIONS; i++) {
        char title[16];
        snprintf(title, sizeof title, "s%d", i);
        json_array_append_new(secs, json_pack("{s:s, s:[]}", "title", title, "tasks"));
    }
    json_t *a = json_pack("{s:o}", "sections", secs);
    args = json_dumps(a, JSON_COMPACT);
    json_decref(a);
    err = apply("create_tasks", args, &st, why);
    free(args);
    if (err == KX_OK)
        fail_msg("create_tasks made %zu sections",
                 json_array_size(json_object_get(st, "sections")));
    json_decref(st);
}

/* update_tasks looked every id up from the start of the list: 20 000 ids on a list of 20 000
 * tasks were 4e8 string compares on the database thread. One call's id list is bounded now. */
static void test_many_ids_are_refused_at_once(void **state)
{
    (void)state;
    json_t *st = json_object();
    json_t *tasks = json_array();
    for (int i = 0; i < 20000; i++) {
        char id[40];
        snprintf(id, sizeof id, "00000000-0000-4000-8000-%012d", i);
        json_array_append_new(tasks,
                              json_pack("{s:s, s:s, s:s, s:s}", "id", id, "content", "t", "status",
                                        "pending", "section_id", "s"));
    }
    json_object_set_new(st, "tasks", tasks);
    json_object_set_new(st, "sections", json_pack("[{s:s, s:s}]", "id", "s", "title", "General"));
    json_t *ids = json_array();
    for (int i = 0; i < 20000; i++)
        json_array_append_new(ids, json_string("00000000-0000-4000-8000-000000019999"));
    json_t *a = json_pack("{s:o, s:s}", "task_ids", ids, "status", "completed");
    char *args = json_dumps(a, JSON_COMPACT);
    json_decref(a);
    char why[256];
    int64_t t0 = kx_mono_ms();
    kx_err err = apply("update_tasks", args, &st, why);
    int64_t took = kx_mono_ms() - t0;
    free(args);
    if (took > 300)
        fail_msg("update_tasks of 20000 ids on 20000 tasks took %lld ms (%s)", (long long)took,
                 err == KX_OK ? "done" : why);
    assert_int_equal(err, KX_ERR_INVALID);

    /* A list stored larger than the bounds can still shrink, not grow. */
    assert_int_equal(apply("delete_tasks",
                           "{\"task_ids\": [\"00000000-0000-4000-8000-000000000007\"]}", &st, why),
                     KX_OK);
    assert_int_equal(ntasks(st), 19999);
    assert_int_equal(apply("update_tasks",
                           "{\"task_ids\": \"00000000-0000-4000-8000-000000000008\", \"content\": "
                           "\"\"}",
                           &st, why),
                     KX_OK);
    assert_int_not_equal(apply("create_tasks", "{\"task_contents\": [\"more\"]}", &st, why),
                         KX_OK);
    json_decref(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_the_list_is_bounded),
        cmocka_unit_test(test_many_ids_are_refused_at_once),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
