/* test_http.c — the blocking client: methods and bodies reach the server (a tiny
 * libmicrohttpd echo server in this file), headers, content type, the body cap, the deadline
 * (a server that never answers), an expired deadline, and refused connections. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "kx/http.h"

typedef struct upload {
    char body[4096];
    size_t len;
} upload;

/* Answers "<method> <path> <x-test header> <body>" as application/x-echo. */
static enum MHD_Result echo(void *cls, struct MHD_Connection *conn, const char *url,
                            const char *method, const char *version, const char *data,
                            size_t *data_size, void **con_cls)
{
    upload *u = *con_cls;
    if (u == NULL) {
        *con_cls = calloc(1, sizeof *u);
        return MHD_YES;
    }
    if (*data_size > 0) {
        size_t n =
            *data_size < sizeof u->body - u->len - 1 ? *data_size : sizeof u->body - u->len - 1;
        memcpy(u->body + u->len, data, n);
        u->len += n;
        *data_size = 0;
        return MHD_YES;
    }
    const char *hdr = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Test");
    char out[8192];
    int n = snprintf(out, sizeof out, "%s %s %s %.*s", method, url, hdr != NULL ? hdr : "-",
                     (int)u->len, u->body);
    struct MHD_Response *r =
        MHD_create_response_from_buffer((size_t)n, out, MHD_RESPMEM_MUST_COPY);
    MHD_add_response_header(r, "Content-Type", "application/x-echo");
    enum MHD_Result ret = MHD_queue_response(conn, strcmp(url, "/teapot") == 0 ? 418 : 200, r);
    MHD_destroy_response(r);
    return ret;
}

static void done(void *cls, struct MHD_Connection *conn, void **con_cls,
                 enum MHD_RequestTerminationCode toe)
{
    free(*con_cls);
    *con_cls = NULL;
}

static struct MHD_Daemon *g_mhd;
static uint16_t g_port;

static int setup(void **state)
{
    if (kx_http_global_init() != KX_OK)
        return -1;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    g_mhd = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO, 0, NULL, NULL, echo,
                             NULL, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
                             MHD_OPTION_NOTIFY_COMPLETED, done, NULL, MHD_OPTION_END);
    if (g_mhd == NULL)
        return -1;
    g_port = MHD_get_daemon_info(g_mhd, MHD_DAEMON_INFO_BIND_PORT)->port;
    return 0;
}

static int teardown(void **state)
{
    MHD_stop_daemon(g_mhd);
    return 0;
}

static void url_of(char *buf, size_t len, const char *path)
{
    snprintf(buf, len, "http://127.0.0.1:%u%s", g_port, path);
}

static void test_methods_bodies_headers(void **state)
{
    char url[128];
    url_of(url, sizeof url, "/a");
    kx_http_resp r;
    const char *hdrs[] = {"X-Test: yes", NULL};
    assert_int_equal(kx_http_request("GET", url, hdrs, NULL, 0, kx_deadline_in(3000), 0, &r),
                     KX_OK);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "GET /a yes ");
    assert_string_equal(r.content_type, "application/x-echo");
    kx_http_resp_free(&r);

    /* A body larger than curl's Expect: 100-continue threshold goes through at once. */
    char big[3000];
    memset(big, 'b', sizeof big);
    assert_int_equal(kx_http_request("POST", url, NULL, big, sizeof big, kx_deadline_in(3000), 0,
                                     &r),
                     KX_OK);
    assert_int_equal(r.len, strlen("POST /a - ") + sizeof big);
    kx_http_resp_free(&r);

    assert_int_equal(kx_http_request("PUT", url, NULL, "{\"x\":1}", 7, kx_deadline_in(3000), 0,
                                     &r),
                     KX_OK);
    assert_string_equal(r.body, "PUT /a - {\"x\":1}");
    kx_http_resp_free(&r);
    assert_int_equal(kx_http_request("DELETE", url, NULL, NULL, 0, kx_deadline_in(3000), 0, &r),
                     KX_OK);
    assert_string_equal(r.body, "DELETE /a - ");
    kx_http_resp_free(&r);

    /* Any status is a completed request. */
    url_of(url, sizeof url, "/teapot");
    assert_int_equal(kx_http_request("GET", url, NULL, NULL, 0, KX_NO_DEADLINE, 0, &r), KX_OK);
    assert_int_equal(r.status, 418);
    kx_http_resp_free(&r);
}

static void test_body_cap(void **state)
{
    char url[128];
    url_of(url, sizeof url, "/0123456789");
    kx_http_resp r;
    assert_int_equal(kx_http_request("GET", url, NULL, NULL, 0, kx_deadline_in(3000), 10, &r),
                     KX_ERR_PROTOCOL);
    assert_null(r.body);
    assert_int_equal(kx_http_request("GET", url, NULL, NULL, 0, kx_deadline_in(3000), 100, &r),
                     KX_OK);
    kx_http_resp_free(&r);
}

static void test_deadline_and_refused(void **state)
{
    /* A listening socket nobody accepts from: the request waits for an answer forever. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(fd, 8), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%u/", ntohs(sa.sin_port));
    kx_http_resp r;
    int64_t t0 = kx_mono_ms();
    assert_int_equal(kx_http_request("GET", url, NULL, NULL, 0, kx_deadline_in(300), 0, &r),
                     KX_ERR_TIMEOUT);
    int64_t took = kx_mono_ms() - t0;
    assert_true(took >= 250 && took < 2000);
    close(fd); /* now nothing listens on that port */
    assert_int_equal(kx_http_request("GET", url, NULL, NULL, 0, kx_deadline_in(1000), 0, &r),
                     KX_ERR_UNAVAILABLE);
    /* A deadline already passed: no request at all. */
    url_of(url, sizeof url, "/");
    assert_int_equal(kx_http_request("GET", url, NULL, NULL, 0, kx_now_ms() - 1, 0, &r),
                     KX_ERR_TIMEOUT);
    assert_int_equal(kx_http_request("GET", "nope://x", NULL, NULL, 0, 0, 0, &r), KX_ERR_INVALID);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_methods_bodies_headers),
        cmocka_unit_test(test_body_cap),
        cmocka_unit_test(test_deadline_and_refused),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
