/* test_file.c — kx_file_read (common/src/file.c): a file's bytes with a NUL after them, a
 * missing file or a directory as not found, a file over the bound refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "kx/file.h"

static void test_read(void **state)
{
    (void)state;
    char dir[] = "/tmp/kx-file-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[300];
    snprintf(path, sizeof path, "%s/f", dir);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite("ab\0cd", 1, 5, f), 5);
    assert_int_equal(fclose(f), 0);
    char *buf = NULL;
    size_t len = 0;
    assert_int_equal(kx_file_read(path, 5, &buf, &len), KX_OK);
    assert_int_equal(len, 5);
    assert_memory_equal(buf, "ab\0cd", 6); /* and the NUL after */
    free(buf);
    assert_int_equal(kx_file_read(path, 4, &buf, &len), KX_ERR_INVALID);
    assert_null(buf);
    assert_int_equal(kx_file_read(dir, 1 << 20, &buf, &len), KX_ERR_NOT_FOUND);
    assert_int_equal(unlink(path), 0);
    assert_int_equal(kx_file_read(path, 1 << 20, &buf, &len), KX_ERR_NOT_FOUND);
    assert_int_equal(rmdir(dir), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_read),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
