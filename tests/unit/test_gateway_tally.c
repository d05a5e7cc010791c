/* test_gateway_tally.c — the gateway's amount per account (services/gateway/tally.c), which
 * bounds what one account has in flight (held bytes, downloads): an add that would pass the
 * limit adds nothing and leaves no entry, accounts are apart, an entry goes at 0 (the table
 * is as small as what is in flight), NULL is the anonymous account "". */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <cmocka.h>

#include "tally.h"

#define A "11111111-1111-4111-8111-111111111111"
#define B "22222222-2222-4222-8222-222222222222"

static void test_limit_per_account(void **state)
{
    (void)state;
    gw_tally t = {0};
    assert_true(gw_tally_add(&t, A, 3, 4));
    assert_true(gw_tally_add(&t, A, 1, 4));
    assert_false(gw_tally_add(&t, A, 1, 4)); /* A is at its limit */
    assert_int_equal(gw_tally_of(&t, A), 4);
    assert_true(gw_tally_add(&t, B, 4, 4)); /* B is counted apart */
    assert_false(gw_tally_add(&t, NULL, 5, 4));
    assert_int_equal(t.n, 2); /* the refused anonymous add left no entry */
    assert_true(gw_tally_add(&t, NULL, 2, 4));
    assert_int_equal(gw_tally_of(&t, ""), 2);
    gw_tally_free(&t);
    assert_int_equal(t.n, 0);
}

static void test_entries_go_at_zero(void **state)
{
    (void)state;
    gw_tally t = {0};
    assert_true(gw_tally_add(&t, A, 2, 10));
    assert_true(gw_tally_add(&t, B, 1, 10));
    assert_true(gw_tally_sub(&t, A, 1));
    assert_int_equal(t.n, 2);
    assert_true(gw_tally_sub(&t, A, 1));
    assert_int_equal(t.n, 1); /* A's entry went; B's moved into its place */
    assert_int_equal(gw_tally_of(&t, B), 1);
    assert_int_equal(gw_tally_of(&t, A), 0);
    assert_false(gw_tally_sub(&t, A, 1)); /* no entry: nothing taken */
    assert_true(gw_tally_sub(&t, B, 5));  /* below 0 goes too */
    assert_int_equal(t.n, 0);
    gw_tally_free(&t);
}

/* Many accounts at once: the array grows past its first capacity and every entry is found. */
static void test_many_accounts(void **state)
{
    (void)state;
    gw_tally t = {0};
    char ids[100][KX_UUID_LEN + 1];
    for (int i = 0; i < 100; i++) {
        snprintf(ids[i], sizeof ids[i], "%08d-0000-4000-8000-000000000000", i);
        assert_true(gw_tally_add(&t, ids[i], i + 1, 1000));
    }
    assert_int_equal(t.n, 100);
    for (int i = 0; i < 100; i += 2)
        assert_true(gw_tally_sub(&t, ids[i], i + 1));
    assert_int_equal(t.n, 50);
    for (int i = 1; i < 100; i += 2)
        assert_int_equal(gw_tally_of(&t, ids[i]), i + 1);
    gw_tally_free(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_limit_per_account),
        cmocka_unit_test(test_entries_go_at_zero),
        cmocka_unit_test(test_many_accounts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
