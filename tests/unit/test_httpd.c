/* test_httpd.c — the ops server on a real socket: /healthz, /readyz (200, or 503 with the
 * ready function's reason), /metrics (Prometheus content type and registry text), 404, 405,
 * port 0, and the bind address rules. Requests go through kx/http.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kx/http.h"
#include "kx/httpd.h"
#include "kx/metrics.h"

static atomic_bool g_ready;

static bool ready_fn(void *arg, char *why, size_t whylen)
{
    assert_ptr_equal(arg, &g_ready);
    if (atomic_load(&g_ready))
        return true;
    snprintf(why, whylen, "nats: not connected");
    return false;
}

static kx_http_resp get(uint16_t port, const char *method, const char *path, kx_err *err)
{
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%u%s", port, path);
    kx_http_resp r;
    *err = kx_http_request(method, url, NULL, NULL, 0, kx_deadline_in(3000), 0, &r);
    return r;
}

static void test_ops_routes(void **state)
{
    assert_int_equal(kx_http_global_init(), KX_OK);
    kx_counter *c = kx_metrics_counter("kx_test_httpd_total", "", "Test counter.");
    kx_counter_add(c, 41);
    kx_httpd *h = NULL;
    assert_int_equal(kx_httpd_start("127.0.0.1", 0, ready_fn, &g_ready, &h), KX_OK);
    uint16_t port = kx_httpd_port(h);
    assert_true(port > 0);
    kx_err err;

    kx_http_resp r = get(port, "GET", "/healthz", &err);
    assert_int_equal(err, KX_OK);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "ok");
    kx_http_resp_free(&r);

    atomic_store(&g_ready, false);
    r = get(port, "GET", "/readyz", &err);
    assert_int_equal(r.status, 503);
    assert_string_equal(r.body, "nats: not connected");
    kx_http_resp_free(&r);
    atomic_store(&g_ready, true);
    r = get(port, "GET", "/readyz", &err);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "ready");
    kx_http_resp_free(&r);

    kx_counter_add(c, 1);
    r = get(port, "GET", "/metrics", &err);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.content_type, "text/plain; version=0.0.4; charset=utf-8");
    assert_non_null(strstr(r.body,
                           "# TYPE kx_test_httpd_total counter\n"
                           "kx_test_httpd_total 42\n"));
    kx_http_resp_free(&r);

    r = get(port, "GET", "/nope", &err);
    assert_int_equal(r.status, 404);
    kx_http_resp_free(&r);
    r = get(port, "POST", "/healthz", &err);
    assert_int_equal(r.status, 405);
    kx_http_resp_free(&r);
    r = get(port, "HEAD", "/healthz", &err);
    assert_int_equal(err, KX_OK);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.len, 0);
    kx_http_resp_free(&r);

    kx_httpd_stop(h);
    /* Stopped: nothing listens there any more. */
    r = get(port, "GET", "/healthz", &err);
    assert_int_equal(err, KX_ERR_UNAVAILABLE);
    kx_httpd_stop(NULL);
}

static void test_no_ready_fn_means_ready(void **state)
{
    kx_httpd *h = NULL;
    assert_int_equal(kx_httpd_start("127.0.0.1", 0, NULL, NULL, &h), KX_OK);
    kx_err err;
    kx_http_resp r = get(kx_httpd_port(h), "GET", "/readyz", &err);
    assert_int_equal(r.status, 200);
    kx_http_resp_free(&r);
    kx_httpd_stop(h);
}

static void test_bind_address(void **state)
{
    kx_httpd *h = NULL;
    assert_int_equal(kx_httpd_start("not-an-address", 0, NULL, NULL, &h), KX_ERR_INVALID);
    assert_null(h);
    /* NULL address: KX_BIND_ADDR. ::1 works as an IPv6 literal (when the host has it). */
    assert_int_equal(setenv("KX_BIND_ADDR", "::1", 1), 0);
    kx_err err = kx_httpd_start(NULL, 0, NULL, NULL, &h);
    unsetenv("KX_BIND_ADDR");
    if (err == KX_OK) {
        char url[64];
        snprintf(url, sizeof url, "http://[::1]:%u/healthz", kx_httpd_port(h));
        kx_http_resp r;
        assert_int_equal(kx_http_request("GET", url, NULL, NULL, 0, kx_deadline_in(3000), 0, &r),
                         KX_OK);
        assert_int_equal(r.status, 200);
        kx_http_resp_free(&r);
        /* And not on 127.0.0.1. */
        r = get(kx_httpd_port(h), "GET", "/healthz", &err);
        assert_int_equal(err, KX_ERR_UNAVAILABLE);
        kx_httpd_stop(h);
    }
    /* A port in use is an error. */
    kx_httpd *a = NULL, *b = NULL;
    assert_int_equal(kx_httpd_start("127.0.0.1", 0, NULL, NULL, &a), KX_OK);
    assert_int_equal(kx_httpd_start("127.0.0.1", kx_httpd_port(a), NULL, NULL, &b), KX_ERR_IO);
    kx_httpd_stop(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ops_routes),
        cmocka_unit_test(test_no_ready_fn_means_ready),
        cmocka_unit_test(test_bind_address),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
