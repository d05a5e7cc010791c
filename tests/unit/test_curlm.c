/* test_curlm.c — libcurl's multi-socket API on a kx_loop, against kx_httpd on a free port:
 * concurrent transfers complete with their bodies, curl's own timeout fires through the loop
 * timer, kx_curlm_remove cancels without a callback, a done callback may start the next
 * transfer or free the whole multi; the same with several multi handles (shards). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "kx/curlm.h"
#include "kx/httpd.h"
#include "kx/loop.h"
#include "kx/metrics.h"
#include "kx/time.h"

static kx_httpd *g_httpd;

static int setup(void **state)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    kx_counter_add(kx_metrics_counter("kx_test_curlm_total", "", "Something to fetch."), 7);
    return kx_httpd_start("127.0.0.1", 0, NULL, NULL, &g_httpd) == KX_OK ? 0 : -1;
}

static int teardown(void **state)
{
    kx_httpd_stop(g_httpd);
    curl_global_cleanup();
    return 0;
}

typedef struct fetch {
    CURL *easy;
    char body[65536];
    size_t len;
    int done_calls;
    CURLcode result;
} fetch;

typedef struct ctx {
    kx_loop *loop;
    kx_curlm *m;
    fetch f[3];
    int finished;
    int want;       /* stop the loop after this many done callbacks */
    int chain_left; /* test_done_callback_adds: transfers still to start from done */
    bool free_in_done;
} ctx;

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
    fetch *f = arg;
    size_t len = size * n;
    if (f->len + len >= sizeof f->body)
        return 0;
    memcpy(f->body + f->len, p, len);
    f->len += len;
    f->body[f->len] = '\0';
    return len;
}

static CURL *easy_for(fetch *f, const char *url)
{
    CURL *e = curl_easy_init();
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, f);
    f->easy = e;
    f->len = 0;
    f->body[0] = '\0';
    return e;
}

static void url_of(char *buf, size_t len, uint16_t port, const char *path)
{
    snprintf(buf, len, "http://127.0.0.1:%u%s", port, path);
}

static void on_done(CURL *easy, CURLcode result, void *arg);

static void start(ctx *c, int i, const char *path)
{
    char url[128];
    url_of(url, sizeof url, kx_httpd_port(g_httpd), path);
    assert_int_equal(kx_curlm_add(c->m, easy_for(&c->f[i], url), on_done, c), KX_OK);
}

static void on_done(CURL *easy, CURLcode result, void *arg)
{
    ctx *c = arg;
    fetch *f = NULL;
    for (int i = 0; i < 3; i++)
        if (c->f[i].easy == easy)
            f = &c->f[i];
    assert_non_null(f);
    f->done_calls++;
    f->result = result;
    c->finished++;
    if (c->chain_left > 0) {
        c->chain_left--;
        start(c, c->finished, "/metrics"); /* re-entrant add from a done callback */
    }
    if (c->free_in_done) {
        kx_curlm_free(c->m); /* deferred until the dispatch is over */
        c->m = NULL;
    }
    if (c->finished == c->want)
        kx_loop_stop(c->loop);
}

static void give_up(kx_loop *loop, void *arg)
{
    kx_loop_stop(loop);
}

/* Runs the loop until stopped or 5 s passed. */
static void run(ctx *c)
{
    kx_timer *t = kx_loop_timer(c->loop, 5000, give_up, c);
    assert_int_equal(kx_loop_run(c->loop), KX_OK);
    if (c->finished < c->want)
        fail_msg("only %d of %d transfers finished", c->finished, c->want);
    else
        kx_timer_cancel(t);
}

static void ctx_init_shards(ctx *c, int shards)
{
    memset(c, 0, sizeof *c);
    c->loop = kx_loop_new();
    assert_non_null(c->loop);
    if (shards == 1)
        assert_int_equal(kx_curlm_new(c->loop, &c->m), KX_OK);
    else
        assert_int_equal(kx_curlm_new_shards(c->loop, shards, &c->m), KX_OK);
}

static void ctx_init(ctx *c)
{
    ctx_init_shards(c, 1);
}

static void ctx_free(ctx *c)
{
    kx_curlm_free(c->m);
    for (int i = 0; i < 3; i++)
        if (c->f[i].easy != NULL)
            curl_easy_cleanup(c->f[i].easy);
    kx_loop_free(c->loop);
}

static void test_two_concurrent_transfers(void **state)
{
    ctx c;
    ctx_init(&c);
    c.want = 2;
    start(&c, 0, "/healthz");
    start(&c, 1, "/metrics");
    assert_int_equal(kx_curlm_running(c.m), 2);
    run(&c);
    assert_int_equal(kx_curlm_running(c.m), 0);
    assert_int_equal(c.f[0].done_calls, 1);
    assert_int_equal(c.f[1].done_calls, 1);
    assert_int_equal(c.f[0].result, CURLE_OK);
    assert_int_equal(c.f[1].result, CURLE_OK);
    assert_string_equal(c.f[0].body, "ok");
    assert_non_null(strstr(c.f[1].body, "kx_test_curlm_total 7\n"));
    long status = 0;
    curl_easy_getinfo(c.f[1].easy, CURLINFO_RESPONSE_CODE, &status);
    assert_int_equal(status, 200);
    ctx_free(&c);
}

static void test_done_callback_adds_next_transfer(void **state)
{
    ctx c;
    ctx_init(&c);
    c.want = 3;
    c.chain_left = 2;
    start(&c, 0, "/healthz");
    run(&c);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(c.f[i].done_calls, 1);
        assert_int_equal(c.f[i].result, CURLE_OK);
    }
    ctx_free(&c);
}

/* A listening socket that never accepts: transfers to it hang until cancelled. */
static int silent_server(uint16_t *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(fd, 8), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    *port = ntohs(sa.sin_port);
    return fd;
}

static void remove_hanging(kx_loop *loop, void *arg)
{
    ctx *c = arg;
    assert_int_equal(kx_curlm_running(c->m), 2);
    kx_curlm_remove(c->m, c->f[0].easy);
    kx_curlm_remove(c->m, c->f[0].easy); /* twice: no-op */
    assert_int_equal(kx_curlm_running(c->m), 1);
}

static void test_remove_cancels_without_callback_and_timeouts_fire(void **state)
{
    uint16_t port;
    int fd = silent_server(&port);
    ctx c;
    ctx_init(&c);
    char url[128];
    url_of(url, sizeof url, port, "/");
    /* f[0] would hang forever: removed after 100 ms. f[1] has a 300 ms curl timeout, which
     * only fires if the multi's timer reaches the loop. */
    assert_int_equal(kx_curlm_add(c.m, easy_for(&c.f[0], url), on_done, &c), KX_OK);
    CURL *e = easy_for(&c.f[1], url);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 300L);
    assert_int_equal(kx_curlm_add(c.m, e, on_done, &c), KX_OK);
    kx_loop_timer(c.loop, 100, remove_hanging, &c);
    c.want = 1;
    int64_t t0 = kx_mono_ms();
    run(&c);
    int64_t took = kx_mono_ms() - t0;
    assert_int_equal(c.f[0].done_calls, 0);
    assert_int_equal(c.f[1].done_calls, 1);
    assert_int_equal(c.f[1].result, CURLE_OPERATION_TIMEDOUT);
    assert_true(took >= 250 && took < 3000);
    assert_int_equal(kx_curlm_running(c.m), 0);
    ctx_free(&c);
    close(fd);
}

static void test_free_from_done_and_with_transfers_added(void **state)
{
    ctx c;
    ctx_init(&c);
    c.want = 1;
    c.free_in_done = true;
    start(&c, 0, "/healthz");
    run(&c);
    assert_null(c.m);
    ctx_free(&c);

    /* Freed with a transfer still running: no callback, nothing leaks (ASan build). */
    uint16_t port;
    int fd = silent_server(&port);
    ctx_init(&c);
    char url[128];
    url_of(url, sizeof url, port, "/");
    assert_int_equal(kx_curlm_add(c.m, easy_for(&c.f[0], url), on_done, &c), KX_OK);
    c.want = 0;
    kx_loop_timer(c.loop, 50, give_up, &c);
    assert_int_equal(kx_loop_run(c.loop), KX_OK);
    assert_int_equal(c.f[0].done_calls, 0);
    ctx_free(&c);
    close(fd);
}

/* Several multi handles behind one kx_curlm: transfers spread over them (each with its own
 * sockets and timer), adds from a done callback, a remove finds its shard, and the counts are
 * the whole's. */
static void test_shards(void **state)
{
    kx_loop *loop = kx_loop_new();
    kx_curlm *m = NULL;
    assert_int_equal(kx_curlm_new_shards(loop, 0, &m), KX_ERR_INVALID);
    assert_null(m);
    assert_int_equal(kx_curlm_new_shards(loop, 65, &m), KX_ERR_INVALID);
    assert_null(m);
    kx_loop_free(loop);

    ctx c;
    ctx_init_shards(&c, 2);
    c.want = 3;
    start(&c, 0, "/healthz");
    start(&c, 1, "/metrics"); /* the other shard: the first has one transfer */
    start(&c, 2, "/metrics");
    assert_int_equal(kx_curlm_running(c.m), 3);
    run(&c);
    assert_int_equal(kx_curlm_running(c.m), 0);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(c.f[i].done_calls, 1);
        assert_int_equal(c.f[i].result, CURLE_OK);
    }
    assert_string_equal(c.f[0].body, "ok");
    assert_non_null(strstr(c.f[1].body, "kx_test_curlm_total 7\n"));
    assert_non_null(strstr(c.f[2].body, "kx_test_curlm_total 7\n"));
    ctx_free(&c);

    ctx_init_shards(&c, 2); /* adds from done callbacks, over the shards */
    c.want = 3;
    c.chain_left = 2;
    start(&c, 0, "/healthz");
    run(&c);
    for (int i = 0; i < 3; i++)
        assert_int_equal(c.f[i].result, CURLE_OK);
    ctx_free(&c);

    /* a hanging transfer on each of 3 shards: one removed, one timed out by its own shard's
     * timer, one left to kx_curlm_free */
    uint16_t port;
    int fd = silent_server(&port);
    ctx_init_shards(&c, 3);
    char url[128];
    url_of(url, sizeof url, port, "/");
    assert_int_equal(kx_curlm_add(c.m, easy_for(&c.f[0], url), on_done, &c), KX_OK);
    CURL *e = easy_for(&c.f[1], url);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 200L);
    assert_int_equal(kx_curlm_add(c.m, e, on_done, &c), KX_OK);
    assert_int_equal(kx_curlm_add(c.m, easy_for(&c.f[2], url), on_done, &c), KX_OK);
    assert_int_equal(kx_curlm_running(c.m), 3);
    kx_curlm_remove(c.m, c.f[0].easy);
    assert_int_equal(kx_curlm_running(c.m), 2);
    c.want = 1;
    run(&c);
    assert_int_equal(c.f[0].done_calls, 0);
    assert_int_equal(c.f[1].done_calls, 1);
    assert_int_equal(c.f[1].result, CURLE_OPERATION_TIMEDOUT);
    assert_int_equal(c.f[2].done_calls, 0);
    assert_int_equal(kx_curlm_running(c.m), 1);
    ctx_free(&c); /* frees f[2]'s transfer still added (ASan build: nothing leaks) */
    close(fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_two_concurrent_transfers),
        cmocka_unit_test(test_done_callback_adds_next_transfer),
        cmocka_unit_test(test_remove_cancels_without_callback_and_timeouts_fire),
        cmocka_unit_test(test_free_from_done_and_with_transfers_added),
        cmocka_unit_test(test_shards),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
