/* test_gateway_proxy.c — gw_proxy_parse (preview_proxy.c): the answer of a server inside a
 * sandbox, as a preview link passes it on — status, the headers passed on (and no others),
 * the body (chunked ones decoded), and clear refusals of what is not HTTP. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "preview_proxy.h"

static kx_err parse(const char *text, gw_proxy_resp *r, char *why, size_t whylen)
{
    size_t n = strlen(text);
    char *raw = malloc(n + 1);
    memcpy(raw, text, n + 1);
    kx_err err = gw_proxy_parse(raw, n, r, why, whylen);
    r->raw = raw; /* the header values point into it; freed by gw_proxy_resp_free */
    return err;
}

static const char *header(const gw_proxy_resp *r, const char *name)
{
    for (size_t i = 0; i < r->nheaders; i++) {
        if (strcmp(r->names[i], name) == 0)
            return r->values[i];
    }
    return NULL;
}

static void test_plain_answer(void **state)
{
    gw_proxy_resp r;
    char why[200] = "";
    assert_int_equal(parse("HTTP/1.0 200 OK\r\nServer: SimpleHTTP\r\nContent-Type: text/html\r\n"
                           "Set-Cookie: a=b\r\nContent-Length: 5\r\n\r\nhello",
                           &r, why, sizeof why),
                     KX_OK);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, 5);
    assert_string_equal(r.body, "hello");
    assert_string_equal(header(&r, "Content-Type"), "text/html");
    assert_null(header(&r, "Server"));         /* not passed on */
    assert_null(header(&r, "Content-Length")); /* libmicrohttpd sets its own */
    gw_proxy_resp_free(&r);
}

static void test_chunked_body_decoded(void **state)
{
    gw_proxy_resp r;
    char why[200] = "";
    assert_int_equal(parse("HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n"
                           "5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n",
                           &r, why, sizeof why),
                     KX_OK);
    assert_int_equal(r.status, 404);
    assert_string_equal(r.body, "hello world");
    assert_int_equal(r.body_len, 11);
    gw_proxy_resp_free(&r);
}

static void test_refusals_name_why(void **state)
{
    static const char *const bad[] = {
        "SSH-2.0-OpenSSH_9\r\n\r\n",                      /* not HTTP */
        "HTTP/1.0 200 OK\r\nContent-Type: text/html\r\n", /* no end of headers */
        "HTTP/1.0 999 Odd\r\n\r\n",                       /* status out of range */
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffff\r\nab", /* chunk past the end */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        gw_proxy_resp r;
        char why[200] = "";
        assert_int_equal(parse(bad[i], &r, why, sizeof why), KX_ERR_PROTOCOL);
        assert_non_null(strstr(why, "sandbox"));
        gw_proxy_resp_free(&r);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_answer),
        cmocka_unit_test(test_chunked_body_decoded),
        cmocka_unit_test(test_refusals_name_why),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
