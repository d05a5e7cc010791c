/* test_gateway_body_errors.c — the gateway's 400 answers for bodies that do not parse
 * (services/gateway/body.c, reply.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "body.h"
#include "reply.h"

/* jansson's error text quotes the body near the error and can cut a UTF-8 character in half:
 * the detail could not be printed as JSON and the client got a 500 instead of a 400. Found by
 * tests/fuzz/gateway_body. */
static void test_invalid_json_near_utf8_is_400(void **state)
{
    static const char body[] = "{\"pu-rt\": \"{+typa\\\xc3\xa9llo W\xc3\xb6\"r:";
    gw_request req;
    memset(&req, 0, sizeof req);
    req.body = body;
    req.body_len = sizeof body - 1;
    gw_reply r = {0};
    assert_null(gw_body_json_object(&req, false, &r));
    assert_int_equal(r.status, 400);
    assert_non_null(r.body);
    json_t *b = json_loads(r.body, 0, NULL);
    assert_true(json_is_string(json_object_get(b, "detail")));
    assert_non_null(strstr(json_string_value(json_object_get(b, "detail")), "Invalid JSON body"));
    json_decref(b);
    gw_reply_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_invalid_json_near_utf8_is_400),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
