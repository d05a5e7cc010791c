/* test_runner_chunks.c — the coalescing of text deltas into chunk events (chunks.h), on a real
 * loop: deltas gathered until KX_EVENT_COALESCE_MS or _BYTES, a flush before other events, held
 * back while the publisher is busy (up to CHUNKS_MAX_EVENT), cut at UTF-8 boundaries, and off
 * when both settings are 0. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "chunks.h"
#include "kx/loop.h"
#include "kx/time.h"

typedef struct sink {
    int n;
    size_t bytes, last;
    int64_t first_at;
    bool busy;
    bool utf8_ok;
} sink;

static void emit(void *arg, const char *text, size_t len)
{
    sink *s = arg;
    if (s->n == 0)
        s->first_at = kx_mono_ms();
    s->n++;
    s->bytes += len;
    s->last = len;
    if (len > 0 && ((unsigned char)text[0] & 0xC0) == 0x80)
        s->utf8_ok = false; /* a piece starting inside a code point */
}

static bool busy(void *arg)
{
    return ((sink *)arg)->busy;
}

static void stop(kx_loop *loop, void *arg)
{
    kx_loop_stop(loop);
}

static void run_for(kx_loop *loop, int64_t ms)
{
    kx_loop_timer(loop, ms, stop, NULL);
    kx_loop_run(loop);
}

/* 100 deltas of 10 bytes at once: one chunk of 1 000 bytes, ~50 ms later. */
static void test_gathers_until_the_time(void **state)
{
    kx_loop *loop = kx_loop_new();
    sink s = {.utf8_ok = true};
    chunks c;
    chunks_init(&c, loop, 50, 4096, emit, busy, &s);
    int64_t t0 = kx_mono_ms();
    for (int i = 0; i < 100; i++)
        assert_int_equal(chunks_add(&c, "0123456789", 10), KX_OK);
    assert_int_equal(s.n, 0);
    run_for(loop, 300);
    assert_int_equal(s.n, 1);
    assert_int_equal(s.bytes, 1000);
    assert_true(s.first_at - t0 >= 45);
    chunks_clear(&c);
    kx_loop_free(loop);
}

/* 5 000 bytes in deltas of 100: one chunk as soon as 4 096 are gathered, the rest on the
 * timer; a flush emits at once and disarms the timer. */
static void test_bytes_and_flush(void **state)
{
    kx_loop *loop = kx_loop_new();
    sink s = {.utf8_ok = true};
    chunks c;
    chunks_init(&c, loop, 50, 4096, emit, busy, &s);
    char d[100];
    memset(d, 'x', sizeof d);
    for (int i = 0; i < 50; i++)
        chunks_add(&c, d, sizeof d);
    assert_int_equal(s.n, 1);
    assert_int_equal(s.bytes, 4100);
    chunks_flush(&c);
    assert_int_equal(s.n, 2);
    assert_int_equal(s.bytes, 5000);
    run_for(loop, 150); /* the timer was disarmed: nothing more */
    assert_int_equal(s.n, 2);
    chunks_clear(&c);
    kx_loop_free(loop);
}

/* While the publisher is busy nothing is emitted on time; text keeps gathering and goes out
 * once it is not busy (or at CHUNKS_MAX_EVENT). */
static void test_held_back_while_busy(void **state)
{
    kx_loop *loop = kx_loop_new();
    sink s = {.busy = true, .utf8_ok = true};
    chunks c;
    chunks_init(&c, loop, 20, 4096, emit, busy, &s);
    char d[1000];
    memset(d, 'y', sizeof d);
    for (int i = 0; i < 10; i++)
        chunks_add(&c, d, sizeof d);
    run_for(loop, 150);
    assert_int_equal(s.n, 0); /* busy: held back, even past 4 096 bytes */
    s.busy = false;
    run_for(loop, 150);
    assert_int_equal(s.n, 1);
    assert_int_equal(s.bytes, 10000);
    s.busy = true;
    char *big = malloc(CHUNKS_MAX_EVENT);
    memset(big, 'z', CHUNKS_MAX_EVENT);
    chunks_add(&c, big, CHUNKS_MAX_EVENT); /* the cap is emitted even while busy */
    assert_int_equal(s.n, 2);
    assert_int_equal(s.last, CHUNKS_MAX_EVENT);
    free(big);
    chunks_clear(&c);
    kx_loop_free(loop);
}

/* Pieces are cut on UTF-8 boundaries; with both settings 0 each delta goes at once. */
static void test_utf8_cut_and_off(void **state)
{
    const char *s = "a\xc3\xa9"
                    "b";                           /* a é b */
    assert_int_equal(chunks_utf8_cut(s, 4, 2), 1); /* not inside é */
    assert_int_equal(chunks_utf8_cut(s, 4, 3), 3);
    assert_int_equal(chunks_utf8_cut(s, 4, 10), 4);

    kx_loop *loop = kx_loop_new();
    sink k = {.utf8_ok = true};
    chunks c;
    chunks_init(&c, loop, 0, 0, emit, busy, &k);
    chunks_add(&c, "ab", 2);
    chunks_add(&c, "cd", 2);
    assert_int_equal(k.n, 2);
    chunks_clear(&c);

    sink u = {.utf8_ok = true};
    chunks_init(&c, loop, 1000, 65536, emit, busy, &u);
    size_t n = CHUNKS_MAX_EVENT + 1000;
    char *text = malloc(n);
    for (size_t i = 0; i + 1 < n; i += 2) {
        text[i] = (char)0xc3;
        text[i + 1] = (char)0xa9;
    }
    chunks_add(&c, text, n);
    chunks_flush(&c);
    assert_true(u.n >= 2);
    assert_int_equal(u.bytes, n);
    assert_true(u.utf8_ok);
    free(text);
    chunks_clear(&c);
    kx_loop_free(loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gathers_until_the_time),
        cmocka_unit_test(test_bytes_and_flush),
        cmocka_unit_test(test_held_back_while_busy),
        cmocka_unit_test(test_utf8_cut_and_off),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
