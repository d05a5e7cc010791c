/* test_sandbox_broker_capture.c — capture.c: a short stream is kept whole; a long one keeps
 * its head and tail, says how much was cut, and spills all of it (or up to the spill cap);
 * a failed spill is said too; sbproto.c: RUN round trip, malformed datagrams refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "capture.h"
#include "sbproto.h"

static char g_spill[4096];
static int g_spill_fd = -1;

static int open_memfd(void *arg, const char *stream, char *visible, size_t vlen)
{
    snprintf(visible, vlen, "/workspace/.kx-output/x.%s", stream);
    g_spill_fd = memfd_create("spill", 0);
    return dup(g_spill_fd);
}

static int open_fails(void *arg, const char *stream, char *visible, size_t vlen)
{
    return -1;
}

static size_t spilled(void)
{
    ssize_t n = pread(g_spill_fd, g_spill, sizeof g_spill - 1, 0);
    g_spill[n > 0 ? n : 0] = '\0';
    return n > 0 ? (size_t)n : 0;
}

static void test_short_stream_is_whole(void **state)
{
    sb_capture c;
    sb_capture_init(&c, "stdout", 100, 1000, open_memfd, NULL);
    sb_capture_add(&c, "hello ", 6);
    sb_capture_add(&c, "world", 5);
    size_t len;
    char *t = sb_capture_text(&c, &len);
    assert_string_equal(t, "hello world");
    assert_false(sb_capture_cut(&c));
    free(t);
    sb_capture_free(&c);
}

static void test_long_stream_head_tail_note_spill(void **state)
{
    sb_capture c;
    sb_capture_init(&c, "stdout", 10, 1000, open_memfd, NULL); /* head 5, tail 5 */
    const char *chunks[] = {"0123", "456789", "abcdefghij", "KLMNO", "pq"};
    for (size_t i = 0; i < 5; i++)
        sb_capture_add(&c, chunks[i], strlen(chunks[i]));
    size_t len;
    char *t = sb_capture_text(&c, &len);
    assert_true(sb_capture_cut(&c));
    assert_memory_equal(t, "01234", 5);
    assert_non_null(strstr(t,
                           "[... 17 bytes of stdout cut (27 in all; the first 5 and the "
                           "last 5 are shown) ... the full output is in "
                           "/workspace/.kx-output/x.stdout]\n"));
    assert_memory_equal(t + len - 5, "MNOpq", 5);
    assert_int_equal(spilled(), 27);
    assert_string_equal(g_spill, "0123456789abcdefghijKLMNOpq");
    free(t);
    sb_capture_free(&c);
    close(g_spill_fd);
}

static void test_spill_cap_and_failure(void **state)
{
    sb_capture c;
    sb_capture_init(&c, "stderr", 4, 8, open_memfd, NULL);
    sb_capture_add(&c, "0123456789ABCDEF", 16);
    size_t len;
    char *t = sb_capture_text(&c, &len);
    assert_non_null(strstr(t, "the first 8 bytes are in /workspace/.kx-output/x.stderr"));
    assert_int_equal(spilled(), 8);
    free(t);
    sb_capture_free(&c);
    close(g_spill_fd);

    sb_capture_init(&c, "stdout", 4, 8, open_fails, NULL);
    sb_capture_add(&c, "0123456789", 10);
    t = sb_capture_text(&c, &len);
    assert_non_null(strstr(t, "the full output could not be saved"));
    assert_memory_equal(t, "01", 2);
    assert_memory_equal(t + len - 2, "89", 2);
    free(t);
    sb_capture_free(&c);
}

static void test_sbproto_round_trip(void **state)
{
    char buf[1024];
    sbp_msg m = {.op = SBP_RUN, .id = 42, .a = 7, .b = -1, .fds = {-1, -1}};
    m.strs[0] = "sub/dir";
    m.strs[1] = "echo hi";
    m.strs[2] = "PATH=/bin";
    m.nstrs = 3;
    size_t n = sbp_encode(&m, buf, sizeof buf);
    assert_true(n > 0);
    sbp_msg d;
    assert_true(sbp_decode(buf, n, &d));
    assert_int_equal(d.op, SBP_RUN);
    assert_int_equal(d.id, 42);
    assert_int_equal(d.a, 7);
    assert_int_equal(d.b, -1);
    assert_int_equal(d.nstrs, 3);
    assert_string_equal(d.strs[1], "echo hi");
    assert_false(sbp_decode(buf, n - 1, &d)); /* last string not terminated */
    assert_false(sbp_decode(buf, 10, &d));    /* short header */
    buf[0] = 99;                              /* unknown op */
    assert_false(sbp_decode(buf, n, &d));
    assert_int_equal(sbp_encode(&m, buf, 20), 0); /* does not fit */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_short_stream_is_whole),
        cmocka_unit_test(test_long_stream_head_tail_note_spill),
        cmocka_unit_test(test_spill_cap_and_failure),
        cmocka_unit_test(test_sbproto_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
