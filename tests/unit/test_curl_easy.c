/* test_curl_easy.c — kx_curl_easy_setup: a transfer set up with it delivers its body to the
 * write callback (against kx_httpd's /healthz on a free port) with the error buffer cleared,
 * and a scheme other than http/https is refused with curl's reason in the error buffer. The
 * streams' setup (the agent-runner's LLM calls, the mcp-proxy's transports): no transfer
 * timeout and no error buffer, the same delivery and the same refusal. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "kx/buf.h"

#include "kx/curl_easy.h"
#include "kx/httpd.h"

static kx_httpd *g_httpd;

static int setup(void **state)
{
    (void)state;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    return kx_httpd_start("127.0.0.1", 0, NULL, NULL, &g_httpd) == KX_OK ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    kx_httpd_stop(g_httpd);
    curl_global_cleanup();
    return 0;
}

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
    return kx_buf_add(arg, p, size * n) == KX_OK ? size * n : 0;
}

/* errbuf may be NULL; timeout_ms 0: no transfer timeout */
static CURLcode perform_with(const char *url, kx_buf *s, char *errbuf, int64_t timeout_ms,
                             long *status)
{
    CURL *e = curl_easy_init();
    assert_non_null(e);
    kx_curl_opts o = {.on_body = on_body,
                      .body_arg = s,
                      .errbuf = errbuf,
                      .user_agent = "kortix-test/1",
                      .timeout_ms = timeout_ms,
                      .connect_ms = 60000};
    kx_curl_easy_setup(e, &o);
    if (errbuf != NULL)
        assert_string_equal(errbuf, ""); /* cleared for this transfer */
    curl_easy_setopt(e, CURLOPT_URL, url);
    CURLcode rc = curl_easy_perform(e);
    *status = 0;
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, status);
    curl_easy_cleanup(e);
    return rc;
}

static CURLcode perform(const char *url, kx_buf *s, char errbuf[CURL_ERROR_SIZE], long *status)
{
    return perform_with(url, s, errbuf, 5000, status);
}

static void test_body_delivered(void **state)
{
    (void)state;
    char url[64], errbuf[CURL_ERROR_SIZE] = "stale";
    snprintf(url, sizeof url, "http://127.0.0.1:%u/healthz", kx_httpd_port(g_httpd));
    kx_buf s = KX_BUF_INIT;
    long status = 0;
    assert_int_equal(perform(url, &s, errbuf, &status), CURLE_OK);
    assert_int_equal(status, 200);
    assert_true(s.len > 0);
    assert_string_equal(errbuf, "");
    kx_buf_free(&s);
}

static void test_other_schemes_refused(void **state)
{
    (void)state;
    char errbuf[CURL_ERROR_SIZE] = "stale";
    kx_buf s = KX_BUF_INIT;
    long status = 0;
    assert_int_equal(perform("file:///etc/hostname", &s, errbuf, &status),
                     CURLE_UNSUPPORTED_PROTOCOL);
    assert_int_equal(s.len, 0);
    kx_buf_free(&s);
    assert_non_null(strstr(errbuf, "file"));
}

/* Before, the setup wrote into the error buffer unconditionally: a NULL one crashed here. */
static void test_stream_setup_without_timeout_or_errbuf(void **state)
{
    (void)state;
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%u/healthz", kx_httpd_port(g_httpd));
    kx_buf s = KX_BUF_INIT;
    long status = 0;
    assert_int_equal(perform_with(url, &s, NULL, 0, &status), CURLE_OK);
    assert_int_equal(status, 200);
    assert_true(s.len > 0);
    kx_buf_free(&s);
    assert_int_equal(perform_with("file:///etc/hostname", &s, NULL, 0, &status),
                     CURLE_UNSUPPORTED_PROTOCOL);
    assert_int_equal(s.len, 0);
    kx_buf_free(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_body_delivered),
        cmocka_unit_test(test_other_schemes_refused),
        cmocka_unit_test(test_stream_setup_without_timeout_or_errbuf),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
