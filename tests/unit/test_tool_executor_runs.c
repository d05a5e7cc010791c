/* test_tool_executor_runs.c — the executor's memory of runs (runs.h: STOPs that arrive before
 * their call, stale epochs, expiry and the bound) and the cap that makes every result fit the
 * bus (result_cap.h: head + tail + note, valid JSON, never over the budget). */
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "result_cap.h"
#include "runs.h"

static void test_stop_before_call(void **state)
{
    (void)state;
    te_runs *t = te_runs_new(16, 60000);
    assert_non_null(t);
    const char *why = NULL;
    te_runs_stop(t, "run-a", 0, "stopped by user", 1000);
    assert_int_equal(te_runs_check(t, "run-a", 1, 1001, &why), TE_RUN_STOPPED);
    assert_string_equal(why, "stopped by user");
    assert_int_equal(te_runs_check(t, "run-a", 7, 1002, &why), TE_RUN_STOPPED);
    /* another run is not touched */
    assert_int_equal(te_runs_check(t, "run-b", 1, 1003, &why), TE_RUN_OK);
    assert_true(te_runs_stopped(t, "run-a", 3, 1004));
    assert_false(te_runs_stopped(t, "run-b", 1, 1004));
    te_runs_free(t);
}

static void test_stop_fences_epochs(void **state)
{
    (void)state;
    te_runs *t = te_runs_new(16, 60000);
    const char *why = NULL;
    te_runs_stop(t, "r", 2, "lease expired", 0); /* the reaper fenced epochs <= 2 */
    assert_int_equal(te_runs_check(t, "r", 1, 1, &why), TE_RUN_STOPPED);
    assert_int_equal(te_runs_check(t, "r", 2, 2, &why), TE_RUN_STOPPED);
    assert_string_equal(why, "lease expired");
    assert_int_equal(te_runs_check(t, "r", 3, 3, &why), TE_RUN_OK); /* the retry's lease */
    /* a later STOP of all epochs widens the fence */
    te_runs_stop(t, "r", 0, "stopped by user", 4);
    assert_int_equal(te_runs_check(t, "r", 3, 5, &why), TE_RUN_STOPPED);
    /* a narrower STOP never narrows it again */
    te_runs_stop(t, "r", 1, "x", 6);
    assert_int_equal(te_runs_check(t, "r", 9, 7, &why), TE_RUN_STOPPED);
    te_runs_free(t);
}

static void test_stale_epoch(void **state)
{
    (void)state;
    te_runs *t = te_runs_new(16, 60000);
    const char *why = NULL;
    assert_int_equal(te_runs_check(t, "r", 2, 0, &why), TE_RUN_OK);
    assert_int_equal(te_runs_check(t, "r", 2, 1, &why), TE_RUN_OK); /* same epoch: fine */
    assert_int_equal(te_runs_check(t, "r", 1, 2, &why), TE_RUN_STALE);
    assert_non_null(strstr(why, "epoch 1"));
    assert_non_null(strstr(why, "epoch 2 has called"));
    assert_int_equal(te_runs_check(t, "r", 3, 3, &why), TE_RUN_OK);
    assert_int_equal(te_runs_check(t, "r", 2, 4, &why), TE_RUN_STALE);
    /* calls without a run id (tests, tools called by hand) are not tracked */
    assert_int_equal(te_runs_check(t, "", 0, 5, &why), TE_RUN_OK);
    assert_int_equal(te_runs_check(t, NULL, 0, 5, &why), TE_RUN_OK);
    te_runs_free(t);
}

static void test_expiry_and_bound(void **state)
{
    (void)state;
    te_runs *t = te_runs_new(4, 1000);
    te_runs_stop(t, "old", 0, "s", 0);
    assert_true(te_runs_stopped(t, "old", 1, 999));
    assert_false(te_runs_stopped(t, "old", 1, 1000)); /* forgotten after the ttl */
    assert_int_equal(te_runs_count(t), 0);

    char id[32];
    for (int i = 0; i < 100; i++) {
        snprintf(id, sizeof id, "run-%d", i);
        te_runs_stop(t, id, 0, "s", 2000 + i);
        assert_true(te_runs_count(t) <= 4);
    }
    assert_true(te_runs_stopped(t, "run-99", 1, 2100));
    assert_true(te_runs_stopped(t, "run-96", 1, 2100));
    assert_false(te_runs_stopped(t, "run-95", 1, 2100)); /* the oldest went first */
    /* use keeps an entry: run-96 checked now outlives run-97 */
    const char *why = NULL;
    assert_int_equal(te_runs_check(t, "run-96", 1, 2101, &why), TE_RUN_STOPPED);
    te_runs_stop(t, "new", 0, "s", 2102);
    assert_true(te_runs_stopped(t, "run-96", 1, 2103));
    assert_false(te_runs_stopped(t, "run-97", 1, 2103));
    te_runs_free(t);
}

/* ---- result cap ---------------------------------------------------------------------- */

static char *dup(const char *s)
{
    char *d = strdup(s);
    assert_non_null(d);
    return d;
}

static void test_cap_small_untouched(void **state)
{
    (void)state;
    char *o = dup("{\"output\": \"hello\"}");
    assert_false(te_result_cap(&o, 4096));
    assert_string_equal(o, "{\"output\": \"hello\"}");
    free(o);
    o = NULL;
    assert_false(te_result_cap(&o, 10));
    assert_true(te_result_budget(1024 * 1024) < 1024 * 1024);
    assert_true(te_result_budget(1024 * 1024) > 1000 * 1000);
}

/* A JSON object whose "output" is n copies of c (quotes double in JSON). */
static char *big_object(size_t n, char c)
{
    char *raw = malloc(n + 1);
    assert_non_null(raw);
    memset(raw, c, n);
    raw[n] = '\0';
    memcpy(raw, "HEAD", 4);
    memcpy(raw + n - 4, "TAIL", 4);
    json_t *obj = json_pack("{s:s, s:i}", "output", raw, "exit_code", 0);
    free(raw);
    char *s = json_dumps(obj, JSON_COMPACT);
    json_decref(obj);
    return s;
}

static void test_cap_head_tail_note(void **state)
{
    (void)state;
    size_t budget = 100 * 1000;
    char *o = big_object(300 * 1000, '"'); /* ~600 KB of JSON */
    size_t before = strlen(o);
    assert_true(before > 2 * budget);
    assert_true(te_result_cap(&o, budget));
    assert_true(strlen(o) <= budget);
    json_t *v = json_loads(o, JSON_DECODE_ANY, NULL);
    assert_non_null(v); /* valid JSON: a string */
    assert_true(json_is_string(v));
    const char *s = json_string_value(v);
    assert_non_null(strstr(s, "HEAD"));
    assert_non_null(strstr(s, "TAIL"));
    assert_non_null(strstr(s, "output cut to fit the bus"));
    char want[64];
    snprintf(want, sizeof want, "of %zu bytes", before);
    assert_non_null(strstr(s, want));
    json_decref(v);
    free(o);
}

static void test_cap_string_output_and_utf8(void **state)
{
    (void)state;
    /* a JSON string of multi-byte characters and control bytes: cut on character
     * boundaries, still valid */
    size_t n = 50000;
    char *raw = malloc(n * 3 + 1);
    assert_non_null(raw);
    for (size_t i = 0; i < n; i++)
        memcpy(raw + i * 3, i % 7 == 0 ? "\xe2\x82\xac" : "a\x01b", 3);
    raw[n * 3] = '\0';
    json_t *str = json_string(raw);
    free(raw);
    assert_non_null(str);
    char *o = json_dumps(str, JSON_ENCODE_ANY | JSON_COMPACT);
    json_decref(str);
    for (size_t budget = 1024; budget < 200000; budget = budget * 3 + 7) {
        char *c = dup(o);
        bool cut = te_result_cap(&c, budget);
        assert_true(strlen(c) <= budget || !cut);
        assert_true(strlen(c) <= budget || strlen(o) <= budget);
        json_t *v = json_loads(c, JSON_DECODE_ANY, NULL);
        assert_non_null(v);
        json_decref(v);
        free(c);
    }
    free(o);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stop_before_call),
        cmocka_unit_test(test_stop_fences_epochs),
        cmocka_unit_test(test_stale_epoch),
        cmocka_unit_test(test_expiry_and_bound),
        cmocka_unit_test(test_cap_small_untouched),
        cmocka_unit_test(test_cap_head_tail_note),
        cmocka_unit_test(test_cap_string_output_and_utf8),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
