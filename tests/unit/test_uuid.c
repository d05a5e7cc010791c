/* test_uuid.c — v4 UUID generation (format, version and variant bits, uniqueness) and strict
 * validation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

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
        cmocka_unit_test(test_valid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
