/* analyzer_cmocka.h — what clang's static analyzer must know about cmocka: a failed assertion
 * ends the test.
 *
 * cmocka 1.1.5 (Debian 12) declares _assert_true, _assert_int_equal, _fail, ... as plain
 * functions; when a check fails they print and longjmp out of the test, so they never return,
 * but the analyzer cannot see that. It then follows the path on which `assert_non_null(p)`
 * failed and reports the dereference of p on the next line (31 such reports on the tree). This
 * header models each assertion as "holds, or the test ends": the analyzer learns exactly what
 * is true at run time and nothing more.
 *
 * Used only by clang-tidy: tests/lint.sh forces it (-include) into every file that includes
 * <cmocka.h>. Outside the analyzer (__clang_analyzer__) it is empty; no build includes it. */
#ifndef KX_ANALYZER_CMOCKA_H
#define KX_ANALYZER_CMOCKA_H

#ifdef __clang_analyzer__
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

/* Declared, never defined: the analyzer only needs to know it does not return. */
void analyzer_cmocka_test_ends(void) __attribute__((noreturn));

/* The functions cmocka's assert_* / fail* macros expand to, as macros that end the test when
 * the check fails (cmocka's macros are expanded at their use, after these are defined). */
#define analyzer_cmocka_check(cond) ((cond) ? (void)0 : analyzer_cmocka_test_ends())
#define _assert_true(result, expression, file, line) analyzer_cmocka_check(result)
#define _assert_return_code(result, rlen, error, expression, file, line) \
    analyzer_cmocka_check((intmax_t)(result) >= 0)
#define _assert_int_equal(a, b, file, line) analyzer_cmocka_check((a) == (b))
#define _assert_int_not_equal(a, b, file, line) analyzer_cmocka_check((a) != (b))
#define _assert_string_equal(a, b, file, line) \
    analyzer_cmocka_check((a) != NULL && (b) != NULL && strcmp((a), (b)) == 0)
#define _assert_string_not_equal(a, b, file, line) \
    analyzer_cmocka_check((a) != NULL && (b) != NULL && strcmp((a), (b)) != 0)
#define _assert_memory_equal(a, b, size, file, line) \
    analyzer_cmocka_check(memcmp((a), (b), (size)) == 0)
#define _assert_memory_not_equal(a, b, size, file, line) \
    analyzer_cmocka_check(memcmp((a), (b), (size)) != 0)
#define _assert_in_range(value, minimum, maximum, file, line) \
    analyzer_cmocka_check((value) >= (minimum) && (value) <= (maximum))
#define _assert_not_in_range(value, minimum, maximum, file, line) \
    analyzer_cmocka_check((value) < (minimum) || (value) > (maximum))
#define _fail(file, line) analyzer_cmocka_test_ends()
#define _skip(file, line) analyzer_cmocka_test_ends()
#endif

#endif
