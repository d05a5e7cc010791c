/* test_log.c — JSON-lines logging: stderr is captured (dup2 onto a pipe or a file) and every
 * line must be exactly one valid JSON object with the fields in order, strings escaped, the
 * optional fields omitted, levels filtered, long messages cut, and no interleaving between
 * threads. */
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "kx/buf.h"
#include "kx/log.h"

/* Runs fn with fd 2 redirected into a pipe; returns what was written (malloc'd). */
static char *capture(void (*fn)(void *), void *arg)
{
    int p[2];
    assert_int_equal(pipe(p), 0);
    int saved = dup(2);
    assert_true(saved >= 0);
    assert_int_equal(dup2(p[1], 2), 2);
    close(p[1]);
    fn(arg);
    assert_int_equal(dup2(saved, 2), 2); /* closes the pipe's last write end */
    close(saved);
    kx_buf out = KX_BUF_INIT;
    char chunk[4096];
    ssize_t n;
    while ((n = read(p[0], chunk, sizeof chunk)) > 0)
        assert_int_equal(kx_buf_add(&out, chunk, (size_t)n), KX_OK);
    close(p[0]);
    char *text = kx_buf_take(&out);
    assert_non_null(text);
    return text;
}

static size_t count_lines(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

static void log_with_ids(void *arg)
{
    kx_log(KX_LOG_WARN, "run-1", "0af7651916cd43dd8448eb211c80319c", "hello %s \"q\" \\ %d\n\t%c",
           "world", 42, 1);
}

static void test_one_line_fields_in_order(void **state)
{
    unsetenv("KX_LOG_LEVEL");
    kx_log_init("gateway", "gateway-host-1-abcd");
    char *out = capture(log_with_ids, NULL);
    assert_int_equal(count_lines(out), 1);
    assert_int_equal(out[strlen(out) - 1], '\n');
    json_error_t jerr;
    json_t *j = json_loads(out, 0, &jerr);
    if (j == NULL)
        fail_msg("not JSON: %s (%s)", out, jerr.text);
    assert_string_equal(json_string_value(json_object_get(j, "level")), "warn");
    assert_string_equal(json_string_value(json_object_get(j, "service")), "gateway");
    assert_string_equal(json_string_value(json_object_get(j, "instance")), "gateway-host-1-abcd");
    assert_string_equal(json_string_value(json_object_get(j, "run_id")), "run-1");
    assert_string_equal(json_string_value(json_object_get(j, "trace_id")),
                        "0af7651916cd43dd8448eb211c80319c");
    assert_string_equal(json_string_value(json_object_get(j, "msg")),
                        "hello world \"q\" \\ 42\n\t\x01");
    const char *ts = json_string_value(json_object_get(j, "ts"));
    assert_non_null(ts);
    /* 2026-11-21T19:40:13.123456+00:00 */
    assert_int_equal(strlen(ts), 32);
    assert_int_equal(ts[10], 'T');
    assert_int_equal(ts[19], '.');
    assert_string_equal(ts + 26, "+00:00");
    assert_int_equal(json_object_size(j), 7);
    /* order on the wire */
    const char *keys[] = {"\"ts\"",     "\"level\"",    "\"service\"", "\"instance\"",
                          "\"run_id\"", "\"trace_id\"", "\"msg\""};
    const char *prev = out;
    for (size_t i = 0; i < 7; i++) {
        const char *at = strstr(out, keys[i]);
        assert_non_null(at);
        assert_true(at >= prev);
        prev = at;
    }
    json_decref(j);
    free(out);
}

static void log_plain_and_bad_utf8(void *arg)
{
    kx_info("plain");
    kx_error("bad utf8: \xff\xfe end; overlong \xc0\xaf; ok \xc3\xa9");
}

static void test_optional_fields_omitted_and_utf8_made_valid(void **state)
{
    unsetenv("KX_LOG_LEVEL");
    kx_log_init("scheduler", "s-1");
    char *out = capture(log_plain_and_bad_utf8, NULL);
    assert_int_equal(count_lines(out), 2);
    char *second = strchr(out, '\n') + 1;
    json_t *a = json_loadb(out, (size_t)(second - out), 0, NULL);
    json_t *b = json_loads(second, 0, NULL);
    assert_non_null(a);
    assert_non_null(b);
    assert_null(json_object_get(a, "run_id"));
    assert_null(json_object_get(a, "trace_id"));
    assert_int_equal(json_object_size(a), 5);
    assert_string_equal(json_string_value(json_object_get(a, "msg")), "plain");
    assert_string_equal(json_string_value(json_object_get(b, "level")), "error");
    assert_string_equal(
        json_string_value(json_object_get(b, "msg")),
        "bad utf8: \xef\xbf\xbd\xef\xbf\xbd end; overlong \xef\xbf\xbd\xef\xbf\xbd; "
        "ok \xc3\xa9");
    json_decref(a);
    json_decref(b);
    free(out);
}

static void log_each_level(void *arg)
{
    kx_debug("d");
    kx_info("i");
    kx_warn("w");
    kx_error("e");
}

static void init_x(void *arg)
{
    kx_log_init("x", "x-1");
}

static void test_level_from_env(void **state)
{
    assert_int_equal(setenv("KX_LOG_LEVEL", "warn", 1), 0);
    kx_log_init("x", "x-1");
    assert_int_equal(kx_log_get_level(), KX_LOG_WARN);
    char *out = capture(log_each_level, NULL);
    assert_int_equal(count_lines(out), 2);
    assert_non_null(strstr(out, "\"msg\": \"w\""));
    assert_non_null(strstr(out, "\"msg\": \"e\""));
    free(out);

    assert_int_equal(setenv("KX_LOG_LEVEL", "DEBUG", 1), 0);
    kx_log_init("x", "x-1");
    out = capture(log_each_level, NULL);
    assert_int_equal(count_lines(out), 4);
    free(out);

    assert_int_equal(setenv("KX_LOG_LEVEL", "loud", 1), 0); /* invalid: says so and uses info */
    out = capture(init_x, NULL);
    assert_int_equal(count_lines(out), 1);
    assert_non_null(strstr(out, "KX_LOG_LEVEL=loud is not valid"));
    assert_int_equal(kx_log_get_level(), KX_LOG_INFO);
    free(out);
    unsetenv("KX_LOG_LEVEL");
}

static void log_long(void *arg)
{
    char *big = malloc(10000);
    memset(big, 'a', 9999);
    big[9999] = '\0';
    kx_info("%s", big);
    free(big);
}

static void test_long_message_is_cut(void **state)
{
    unsetenv("KX_LOG_LEVEL");
    kx_log_init("x", "x-1");
    char *out = capture(log_long, NULL);
    assert_int_equal(count_lines(out), 1);
    json_t *j = json_loads(out, 0, NULL);
    assert_non_null(j);
    const char *msg = json_string_value(json_object_get(j, "msg"));
    assert_int_equal(strlen(msg), 4096);
    assert_string_equal(msg + 4093, "...");
    assert_int_equal(msg[4092], 'a');
    json_decref(j);
    free(out);
}

enum {
    THREADS = 4,
    PER_THREAD = 500
};

static void *log_many(void *arg)
{
    char pad[300];
    memset(pad, 'x', sizeof pad - 1);
    pad[sizeof pad - 1] = '\0';
    for (int i = 0; i < PER_THREAD; i++)
        kx_log(KX_LOG_INFO, "r", NULL, "thread %d line %d %s", (int)(intptr_t)arg, i, pad);
    return NULL;
}

static void test_threads_never_interleave(void **state)
{
    unsetenv("KX_LOG_LEVEL");
    kx_log_init("x", "x-1");
    char path[] = "/tmp/kx-test-log-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    unlink(path);
    int saved = dup(2);
    assert_int_equal(dup2(fd, 2), 2);
    pthread_t th[THREADS];
    for (int t = 0; t < THREADS; t++)
        assert_int_equal(pthread_create(&th[t], NULL, log_many, (void *)(intptr_t)t), 0);
    for (int t = 0; t < THREADS; t++)
        pthread_join(th[t], NULL);
    assert_int_equal(dup2(saved, 2), 2);
    close(saved);
    assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
    FILE *f = fdopen(fd, "r");
    char *line = NULL;
    size_t cap = 0;
    int lines = 0, per[THREADS] = {0};
    while (getline(&line, &cap, f) > 0) {
        json_t *j = json_loads(line, 0, NULL);
        if (j == NULL)
            fail_msg("line %d is not JSON: %s", lines, line);
        int t = -1, i = -1;
        /* NOLINTNEXTLINE(cert-err34-c): our own "thread %d line %d", t checked just below */
        assert_int_equal(sscanf(json_string_value(json_object_get(j, "msg")), "thread %d line %d",
                                &t, &i),
                         2);
        assert_in_range(t, 0, THREADS - 1);
        assert_int_equal(i, per[t]); /* each thread's lines in its order */
        per[t]++;
        json_decref(j);
        lines++;
    }
    free(line);
    fclose(f);
    assert_int_equal(lines, THREADS * PER_THREAD);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_line_fields_in_order),
        cmocka_unit_test(test_optional_fields_omitted_and_utf8_made_valid),
        cmocka_unit_test(test_level_from_env),
        cmocka_unit_test(test_long_message_is_cut),
        cmocka_unit_test(test_threads_never_interleave),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
