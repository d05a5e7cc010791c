/* test_runner_heap.c — heap_tune (heap.h): after it, freeing a burst of blocks at the top of the
 * main heap keeps the heap (no brk shrink for the next burst to grow back), and a block of
 * 512 KiB comes from the heap, not from an mmap of its own. glibc's defaults do both (a trim
 * past 128 KiB of free top, an mmap for blocks from 128 KiB). Skipped under the sanitizers:
 * their allocators are not glibc's. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <malloc.h>
#include <stdlib.h>
#include <unistd.h>

#include "heap.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SANITIZED 1
#endif
#endif

static void *volatile g_sink; /* the blocks escape: the compiler may not drop a malloc/free pair */

#define BLOCKS 256
#define BLOCK (8u << 10) /* 2 MiB in all: far past glibc's default trim threshold */

static void test_a_freed_burst_keeps_the_heap(void **state)
{
    (void)state;
#ifdef SANITIZED
    skip();
#endif
    assert_true(heap_tune());
    void *b[BLOCKS];
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < BLOCKS; i++) {
            b[i] = malloc(BLOCK);
            assert_non_null(b[i]);
            g_sink = b[i];
        }
        void *top = sbrk(0);
        for (int i = BLOCKS - 1; i >= 0; i--) /* the top block first: each joins the free top */
            free(b[i]);
        assert_ptr_equal(sbrk(0), top); /* not trimmed */
    }
}

static void test_a_large_block_comes_from_the_heap(void **state)
{
    (void)state;
#ifdef SANITIZED
    skip();
#endif
    assert_true(heap_tune());
    size_t mapped = mallinfo2().hblks;
    void *p = malloc(512u << 10);
    assert_non_null(p);
    g_sink = p;
    assert_int_equal(mallinfo2().hblks, mapped); /* no mmap of its own */
    free(p);
    /* a block larger than any free top the heap may keep: mmapped (and unmapped when freed) */
    void *q = malloc(2 * (size_t)HEAP_TRIM_THRESHOLD);
    assert_non_null(q);
    g_sink = q;
    assert_int_equal(mallinfo2().hblks, mapped + 1);
    free(q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        /* first: the heap's top is still small (the other test leaves megabytes free there) */
        cmocka_unit_test(test_a_large_block_comes_from_the_heap),
        cmocka_unit_test(test_a_freed_burst_keeps_the_heap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
