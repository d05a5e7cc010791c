/* test_runner_context_budget.c — the thread cut to a model's budget (services/agent-runner/
 * context_budget.c): the per-model budgets, a 2 MB tool result cut with a pointer to
 * expand_message and its message id, the newest message cut in the middle, drops from the
 * middle that keep tool calls paired with a note in their place that counts them, a fit
 * whatever the thread holds, and the note's count of the bytes shown. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "context.h"
#include "context_budget.h"
#include "kx/json.h"

static char *filler(size_t n, char c)
{
    char *s = malloc(n + 1);
    memset(s, c, n);
    s[n] = '\0';
    return s;
}

static json_t *msg(const char *role, const char *content, const char *id)
{
    json_t *m = json_pack("{s:s, s:s}", "role", role, "content", content);
    if (id != NULL)
        json_object_set_new(m, CONTEXT_ID_KEY, json_string(id));
    return m;
}

/* The notes in msgs: how many, and the messages they stand for (from their text); two notes
 * are never next to each other (one gap, one note). */
static size_t notes_in(const json_t *msgs, size_t *left_out)
{
    size_t i, n = 0, last = (size_t)-2;
    const json_t *m;
    *left_out = 0;
    json_array_foreach(msgs, i, m)
    {
        const char *c = json_string_value(json_object_get(m, "content"));
        if (c != NULL && c[0] == '[' && strstr(c, " of this conversation ") != NULL) {
            size_t k = (size_t)strtoull(c + 1, NULL, 10);
            assert_string_equal(json_string_value(json_object_get(m, "role")), "user");
            assert_int_equal(json_integer_value(json_object_get(m, CONTEXT_LEFT_OUT_KEY)), k);
            assert_true(i != last + 1);
            last = i;
            n++;
            *left_out += k;
        }
    }
    return n;
}

static void test_budgets(void **state)
{
    (void)state;
    assert_int_equal(context_budget_for(NULL, "anthropic/claude-sonnet-4-20250514"), 108000);
    assert_int_equal(context_budget_for("", "openai/gpt-4o"), 100000);
    assert_int_equal(context_budget_for(NULL, "gemini-2.5-pro"), 700000);
    assert_int_equal(context_budget_for(NULL, "kortix/demo"), CONTEXT_DEFAULT_BUDGET);
    assert_int_equal(context_budget_for("demo=5000,gpt=9", "kortix/demo"), 5000);
    assert_int_equal(context_budget_for("demo=5000,gpt=9", "gpt-4o"), 9);
    assert_int_equal(context_budget_for("bad,=3,x=-1", "x"), CONTEXT_DEFAULT_BUDGET);
    /* what the runner refuses at start (items it would skip without a word) */
    char why[256];
    assert_true(context_budgets_valid(NULL, why, sizeof why));
    assert_true(context_budgets_valid("", why, sizeof why));
    assert_true(context_budgets_valid("demo=5000,gpt=9", why, sizeof why));
    const char *bad[] = {"sonnet=abc", "sonnet",   "=3",       "x=-1",
                         "x=0",        "a=1,b=2x", "a=1,,b=2", "x=99999999999999999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        why[0] = '\0';
        if (context_budgets_valid(bad[i], why, sizeof why))
            fail_msg("\"%s\" was taken", bad[i]);
        assert_non_null(strstr(why, "is not substring=tokens"));
    }
}

static void test_under_budget_untouched(void **state)
{
    (void)state;
    json_t *msgs = json_array();
    json_array_append_new(msgs, msg("user", "hello", "m1"));
    json_array_append_new(msgs, msg("assistant", "hi", "m2"));
    json_t *copy = json_deep_copy(msgs);
    context_fit_report rep;
    assert_int_equal(context_fit(msgs, 31000, 500, &rep), 0);
    assert_true(json_equal(msgs, copy));
    assert_int_equal(rep.truncated + rep.dropped, 0);
    context_strip_ids(msgs);
    assert_null(json_object_get(json_array_get(msgs, 0), CONTEXT_ID_KEY));
    json_decref(msgs);
    json_decref(copy);
}

/* The thread that broke for good before: a 2 MB tool result, then a new question. */
static void test_two_megabyte_tool_result(void **state)
{
    (void)state;
    char *big = filler(2 * 1024 * 1024, 'x');
    json_t *msgs = json_array();
    json_array_append_new(msgs, msg("user", "print the log", "u1"));
    json_t *a = json_pack("{s:s, s:s, s:[{s:s, s:s, s:{s:s, s:s}}]}", "role", "assistant",
                          "content", "", "tool_calls", "id", "c1", "type", "function", "function",
                          "name", "execute_command", "arguments", "{}");
    json_array_append_new(msgs, a);
    json_t *t = msg("tool", big, "4d2c0e0e-0000-4000-8000-000000000001");
    json_object_set_new(t, "tool_call_id", json_string("c1"));
    json_array_append_new(msgs, t);
    json_array_append_new(msgs, msg("assistant", "done", "a2"));
    json_array_append_new(msgs, msg("user", "and now?", "u2"));
    context_fit_report rep;
    assert_int_equal(context_fit(msgs, 31000, 2000, &rep), 0);
    assert_true(context_messages_tokens(msgs) + 2000 <= 31000);
    assert_int_equal(rep.dropped, 0);
    assert_int_equal(rep.truncated, 1);
    assert_int_equal(json_array_size(msgs), 5);
    const char *cut = json_string_value(json_object_get(json_array_get(msgs, 2), "content"));
    assert_true(strlen(cut) < 20000);
    assert_non_null(strstr(cut, "... (truncated: "));
    assert_non_null(strstr(cut, "message_id \"4d2c0e0e-0000-4000-8000-000000000001\""));
    assert_non_null(strstr(cut, "Use the expand_message tool to see contents"));
    /* the newest message is intact */
    assert_string_equal(json_string_value(json_object_get(json_array_get(msgs, 4), "content")),
                        "and now?");
    json_decref(msgs);
    free(big);
}

static void test_newest_cut_in_the_middle(void **state)
{
    (void)state;
    char *big = filler(600000, 'y');
    big[0] = 'H';
    big[1] = 'E';
    big[2] = 'A';
    big[3] = 'D';
    big[600000 - 4] = 'T';
    big[600000 - 3] = 'A';
    big[600000 - 2] = 'I';
    big[600000 - 1] = 'L';
    json_t *msgs = json_array();
    json_array_append_new(msgs, msg("user", big, "u1"));
    assert_int_equal(context_fit(msgs, 31000, 0, NULL), 0);
    const char *c = json_string_value(json_object_get(json_array_get(msgs, 0), "content"));
    assert_true(context_messages_tokens(msgs) <= 31000);
    assert_int_equal(strncmp(c, "HEAD", 4), 0);
    assert_string_equal(c + strlen(c) - 4, "TAIL");
    json_decref(msgs);
    free(big);
}

/* The note says how many bytes of the text are shown, exactly: the cuts fall on character
 * boundaries, so with 3-byte characters they keep fewer bytes than asked (the note said the
 * bytes asked for). */
static void test_note_counts_the_bytes_shown(void **state)
{
    (void)state;
    enum {
        CHARS = 200000
    };
    char *big = malloc(3 * CHARS + 1);
    for (size_t i = 0; i < CHARS; i++)
        memcpy(big + 3 * i, "\xE2\x82\xAC", 3); /* U+20AC */
    big[3 * CHARS] = '\0';
    for (int middle = 0; middle < 2; middle++) {
        json_t *msgs = json_array();
        json_array_append_new(msgs, msg("user", "x", "u1"));
        json_array_append_new(msgs, msg("user", big, "u2"));
        if (!middle) /* an older message: cut at its head only */
            json_array_append_new(msgs, msg("assistant", "the newest", "a1"));
        assert_int_equal(context_fit(msgs, 31000, 0, NULL), 0);
        const char *c = json_string_value(json_object_get(json_array_get(msgs, 1), "content"));
        const char *note = strstr(c, "\n\n... (truncated: ");
        assert_non_null(note);
        const char *num = note + strlen("\n\n... (truncated: ");
        char *rest = NULL;
        size_t said = strtoul(num, &rest, 10);
        assert_int_equal(strncmp(rest, " of ", 4), 0);
        size_t of = strtoul(rest + 4, &rest, 10);
        assert_int_equal(strncmp(rest, " bytes shown)", 13), 0);
        assert_int_equal(of, 3 * CHARS);
        const char *end = "expand_message tool to see contents";
        const char *after = strstr(note, end);
        assert_non_null(after);
        after += strlen(end);
        size_t shown = (size_t)(note - c) + (middle ? strlen(after + 1) : strlen(after));
        if (middle)
            assert_int_equal(after[0], '\n');
        assert_int_equal(said, shown);
        assert_int_equal(shown % 3, 0); /* whole characters */
        json_decref(msgs);
    }
    free(big);
}

/* Many mid-sized turns: the oldest are dropped from the middle; calls stay paired. */
static void test_drop_from_the_middle(void **state)
{
    (void)state;
    char *mid = filler(300, 'z');
    json_t *msgs = json_array();
    json_array_append_new(msgs, msg("user", "the first request", "u0"));
    for (int i = 0; i < 2000; i++) {
        char id[16];
        snprintf(id, sizeof id, "c%d", i);
        json_t *a = json_pack("{s:s, s:n, s:[{s:s, s:s, s:{s:s, s:s}}]}", "role", "assistant",
                              "content", "tool_calls", "id", id, "type", "function", "function",
                              "name", "execute_command", "arguments", "{}");
        json_array_append_new(msgs, a);
        json_t *t = msg("tool", mid, NULL);
        json_object_set_new(t, "tool_call_id", json_string(id));
        json_array_append_new(msgs, t);
    }
    json_array_append_new(msgs, msg("user", "the newest", "u9"));
    context_fit_report rep;
    assert_int_equal(context_fit(msgs, 31000, 1000, &rep), 0);
    assert_true(context_messages_tokens(msgs) + 1000 <= 31000);
    assert_true(rep.dropped > 0);
    /* one note where they were, counting them (before: dropped without a word) */
    size_t left_out = 0;
    assert_int_equal(notes_in(msgs, &left_out), 1);
    assert_int_equal(left_out, rep.dropped);
    size_t n = json_array_size(msgs);
    assert_int_equal(n + rep.dropped, 2 + 2 * 2000 + 1); /* the rest and the note are all */
    assert_string_equal(json_string_value(json_object_get(json_array_get(msgs, 0), "content")),
                        "the first request");
    assert_string_equal(json_string_value(json_object_get(json_array_get(msgs, n - 1), "content")),
                        "the newest");
    /* every tool message follows an assistant message that has its call */
    for (size_t i = 0; i < n; i++) {
        json_t *m = json_array_get(msgs, i);
        if (strcmp(json_string_value(json_object_get(m, "role")), "tool") != 0)
            continue;
        size_t j = i;
        while (j > 0 &&
               strcmp(json_string_value(json_object_get(json_array_get(msgs, j - 1), "role")),
                      "tool") == 0)
            j--;
        assert_true(j > 0);
        json_t *a = json_array_get(msgs, j - 1);
        assert_string_equal(json_string_value(json_object_get(a, "role")), "assistant");
        assert_non_null(json_object_get(a, "tool_calls"));
    }
    json_decref(msgs);
    free(mid);
}

/* The note the thread's read left (rows between the first and the newest not read) stays and
 * keeps its count; the budget's drops get theirs (one note for the gap, merged with the read's
 * when the gap reaches it: see it_runloop test_long_thread_is_read_within_bounds); a note is
 * never dropped, so a thread of the first message, a note and the newest ends the drops;
 * context_strip_ids takes the count's key away. */
static void test_notes_merge_and_stay(void **state)
{
    (void)state;
    char *mid = filler(20000, 'm');
    json_t *msgs = json_array();
    json_array_append_new(msgs, msg("user", "the task", "u0"));
    json_array_append_new(msgs, context_left_out_note(7));
    for (int i = 0; i < 200; i++) /* cut to 128 tokens each, still over: drops */
        json_array_append_new(msgs, msg(i % 2 ? "user" : "assistant", mid + 18000, NULL));
    json_array_append_new(msgs, msg("user", "the newest", "u9"));
    context_fit_report rep;
    assert_int_equal(context_fit(msgs, 6000, 0, &rep), 0);
    size_t left_out = 0;
    assert_true(notes_in(msgs, &left_out) >= 1);
    const json_t *read_note = json_array_get(msgs, 1); /* the read's, kept */
    assert_true(json_integer_value(json_object_get(read_note, CONTEXT_LEFT_OUT_KEY)) >= 7);
    assert_int_equal(left_out, 7 + rep.dropped);
    assert_true(rep.dropped > 0);
    json_decref(msgs);

    msgs = json_array();
    json_array_append_new(msgs, msg("user", mid, "u0"));
    json_array_append_new(msgs, context_left_out_note(1));
    json_array_append_new(msgs, msg("user", mid, "u9"));
    assert_int_equal(context_fit(msgs, 1000, 0, &rep), 0);
    assert_int_equal(rep.dropped, 0);
    assert_int_equal(json_array_size(msgs), 3);
    assert_true(context_messages_tokens(msgs) <= 1000);
    assert_int_equal(notes_in(msgs, &left_out), 1);
    context_strip_ids(msgs);
    assert_null(json_object_get(json_array_get(msgs, 1), CONTEXT_LEFT_OUT_KEY));
    assert_string_equal(json_string_value(json_object_get(json_array_get(msgs, 1), "content")),
                        "[1 message of this conversation is left out here: it does not fit in "
                        "the model's context.]");
    json_decref(msgs);
    free(mid);
}

/* Whatever the rows hold, the result fits (a small budget, huge first and last messages). */
static void test_always_fits(void **state)
{
    (void)state;
    char *big = filler(3000000, 'w');
    json_t *msgs = json_array();
    json_array_append_new(msgs, msg("user", big, "u1"));
    json_array_append_new(msgs, msg("assistant", big, "a1"));
    json_array_append_new(msgs, msg("user", big, "u2"));
    assert_int_equal(context_fit(msgs, 2000, 500, NULL), 0);
    assert_true(context_messages_tokens(msgs) + 500 <= 2000);
    json_decref(msgs);
    free(big);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_budgets),
        cmocka_unit_test(test_under_budget_untouched),
        cmocka_unit_test(test_two_megabyte_tool_result),
        cmocka_unit_test(test_newest_cut_in_the_middle),
        cmocka_unit_test(test_note_counts_the_bytes_shown),
        cmocka_unit_test(test_drop_from_the_middle),
        cmocka_unit_test(test_notes_merge_and_stay),
        cmocka_unit_test(test_always_fits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
