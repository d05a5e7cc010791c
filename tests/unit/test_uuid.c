/* test_uuid.c — v4 UUID generation (format, version and variant bits, uniqueness, across
 * threads and a fork), v7 (the timestamp, the order), and strict validation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <pthread.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "kx/uuid.h"

static void test_new_is_valid_v4_and_unique(void **state)
{
    enum {
        N = 1000
    };
    static char ids[N][KX_UUID_LEN + 1];
    for (int i = 0; i < N; i++) {
        kx_uuid_new(ids[i]);
        assert_int_equal(strlen(ids[i]), KX_UUID_LEN);
        assert_true(kx_uuid_valid(ids[i]));
        assert_int_equal(ids[i][14], '4');           /* version */
        assert_non_null(strchr("89ab", ids[i][19])); /* variant 10xx */
        for (int k = 0; k < KX_UUID_LEN; k++)
            assert_false(ids[i][k] >= 'A' && ids[i][k] <= 'F'); /* lowercase */
    }
    for (int i = 0; i < N; i++)
        for (int j = i + 1; j < N; j++)
            assert_string_not_equal(ids[i], ids[j]);
}

/* The random bytes come from a pool per thread: a forked child must not make the ids its parent
 * makes next from the same pool. */
static void test_fork_child_does_not_repeat_the_parent(void **state)
{
    (void)state;
    char first[KX_UUID_LEN + 1], parent_next[KX_UUID_LEN + 1], child_next[KX_UUID_LEN + 1];
    kx_uuid_new(first); /* the pool now holds the bytes of the next ids */
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        char id[KX_UUID_LEN + 1];
        kx_uuid_new(id);
        _exit(write(fds[1], id, KX_UUID_LEN) == KX_UUID_LEN ? 0 : 1);
    }
    close(fds[1]);
    kx_uuid_new(parent_next);
    memset(child_next, 0, sizeof child_next);
    size_t got = 0;
    while (got < KX_UUID_LEN) {
        ssize_t n = read(fds[0], child_next + got, KX_UUID_LEN - got);
        assert_true(n > 0);
        got += (size_t)n;
    }
    close(fds[0]);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_true(kx_uuid_valid(child_next));
    assert_string_not_equal(parent_next, child_next);
    assert_string_not_equal(first, child_next);
}

enum {
    PER_THREAD = 200
};

static void *make_ids(void *arg)
{
    char(*ids)[KX_UUID_LEN + 1] = arg;
    for (int i = 0; i < PER_THREAD; i++)
        kx_uuid_new(ids[i]);
    return NULL;
}

static void test_threads_make_different_ids(void **state)
{
    (void)state;
    static char ids[2][PER_THREAD][KX_UUID_LEN + 1];
    pthread_t t[2];
    for (int k = 0; k < 2; k++)
        assert_int_equal(pthread_create(&t[k], NULL, make_ids, ids[k]), 0);
    for (int k = 0; k < 2; k++)
        assert_int_equal(pthread_join(t[k], NULL), 0);
    for (int i = 0; i < PER_THREAD; i++)
        for (int j = 0; j < PER_THREAD; j++)
            assert_string_not_equal(ids[0][i], ids[1][j]);
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* The first 12 hex digits of a v7 id, as a number: its millisecond timestamp. */
static uint64_t v7_ms(const char *id)
{
    uint64_t ms = 0;
    for (int i = 0; i < 13; i++) {
        if (id[i] == '-')
            continue;
        char c = id[i];
        ms = ms * 16u + (uint64_t)(c <= '9' ? c - '0' : c - 'a' + 10);
    }
    return ms;
}

/* v7: valid lowercase text with version 7 and variant 10xx, the time it was made in its first
 * 48 bits, ids of a later millisecond sort after earlier ones, and no two alike. */
static void test_v7_is_time_ordered_and_unique(void **state)
{
    (void)state;
    enum {
        N = 1000
    };
    static char ids[N][KX_UUID_LEN + 1];
    uint64_t before = now_ms();
    for (int i = 0; i < N; i++) {
        kx_uuid_new_v7(ids[i]);
        assert_true(kx_uuid_valid(ids[i]));
        assert_int_equal(ids[i][14], '7');
        assert_non_null(strchr("89ab", ids[i][19]));
        for (int k = 0; k < KX_UUID_LEN; k++)
            assert_false(ids[i][k] >= 'A' && ids[i][k] <= 'F');
    }
    uint64_t after = now_ms();
    for (int i = 0; i < N; i++) {
        assert_in_range(v7_ms(ids[i]), before, after);
        if (i > 0 && v7_ms(ids[i]) > v7_ms(ids[i - 1]))
            assert_true(strcmp(ids[i], ids[i - 1]) > 0);
    }
    for (int i = 0; i < N; i++)
        for (int j = i + 1; j < N; j++)
            assert_string_not_equal(ids[i], ids[j]);
    /* a millisecond later, a greater id */
    char early[KX_UUID_LEN + 1], late[KX_UUID_LEN + 1];
    kx_uuid_new_v7(early);
    struct timespec two_ms = {0, 2000000};
    nanosleep(&two_ms, NULL);
    kx_uuid_new_v7(late);
    assert_true(strcmp(late, early) > 0);
}

static void test_valid(void **state)
{
    assert_true(kx_uuid_valid("123e4567-e89b-12d3-a456-426614174000"));
    assert_true(kx_uuid_valid("123E4567-E89B-12D3-A456-426614174000"));
    assert_false(kx_uuid_valid(NULL));
    assert_false(kx_uuid_valid(""));
    assert_false(kx_uuid_valid("123e4567-e89b-12d3-a456-42661417400"));   /* short */
    assert_false(kx_uuid_valid("123e4567-e89b-12d3-a456-4266141740000")); /* long */
    assert_false(kx_uuid_valid("123e4567e89b-12d3-a456-4266141740000"));  /* dash moved */
    assert_false(kx_uuid_valid("123e4567-e89b-12d3-a456-42661417400g"));  /* not hex */
    assert_false(kx_uuid_valid("123e4567-e89b-12d3-a456-426614174000 "));
    assert_false(kx_uuid_valid("../../etc/passwd-aaaa-bbbb-cccc-dddddd"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_is_valid_v4_and_unique),
        cmocka_unit_test(test_fork_child_does_not_repeat_the_parent),
        cmocka_unit_test(test_threads_make_different_ids),
        cmocka_unit_test(test_v7_is_time_ordered_and_unique),
        cmocka_unit_test(test_valid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
