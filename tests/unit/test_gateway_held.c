/* test_gateway_held.c — the count of large answers held until read (services/gateway/held.c):
 * the total and each account's share are limits, a refused take counts nothing, a response
 * gives its bytes back when libmicrohttpd frees it, and accounts are counted apart. */
#include <microhttpd.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include "held.h"

#define A "11111111-1111-4111-8111-111111111111"
#define B "22222222-2222-4222-8222-222222222222"

static void test_limits(void **state)
{
    (void)state;
    gw_held *h = gw_held_new(100, 60);
    assert_non_null(h);
    assert_true(gw_held_take(h, A, 60));
    assert_false(gw_held_take(h, A, 1)); /* A's share is full */
    assert_int_equal(gw_held_bytes(h), 60);
    assert_true(gw_held_take(h, B, 40));
    assert_false(gw_held_take(h, B, 1)); /* the total is full, though B has room */
    assert_false(gw_held_take(h, NULL, 1));
    gw_held_give(h, A, 60);
    assert_int_equal(gw_held_bytes(h), 40);
    assert_true(gw_held_take(h, NULL, 60)); /* anonymous readers share the account "" */
    assert_false(gw_held_take(h, "", 1));
    gw_held_give(h, "", 60);
    gw_held_give(h, B, 40);
    assert_int_equal(gw_held_bytes(h), 0);
    assert_false(gw_held_take(h, A, 61)); /* more than a share at once */
    assert_int_equal(gw_held_bytes(h), 0);
    gw_held_free(h);
}

static void test_response_gives_back(void **state)
{
    (void)state;
    gw_held *h = gw_held_new(1 << 20, 1 << 20);
    size_t n = 300 * 1024;
    char *buf = malloc(n);
    assert_non_null(buf);
    assert_true(gw_held_take(h, A, n));
    struct MHD_Response *r = gw_held_response(h, A, buf, n);
    assert_non_null(r);
    assert_int_equal(gw_held_bytes(h), (int64_t)n);
    MHD_destroy_response(r); /* what libmicrohttpd does once the client has it */
    assert_int_equal(gw_held_bytes(h), 0);
    assert_true(gw_held_take(h, A, 1 << 20)); /* A's whole share again */
    gw_held_give(h, A, 1 << 20);
    gw_held_free(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_response_gives_back),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
