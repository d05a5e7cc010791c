/* test_json.c — kx_json_dumps_py prints exactly what Python's json.dumps(v,
 * ensure_ascii=False) prints (expected strings below were produced by CPython 3.11), the
 * compact printer, the typed getters, and kx_json_loads_wide. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "kx/json.h"

/* Prints v the Python way, compares with want, frees both. */
static void expect_py(json_t *v, const char *want)
{
    char *got = kx_json_dumps_py(v);
    assert_non_null(got);
    assert_string_equal(got, want);
    free(got);
    json_decref(v);
}

static void test_terminal_status_event(void **state)
{
    json_t *v = json_object();
    json_object_set_new(v, "type", json_string("status"));
    json_object_set_new(v, "status", json_string("completed"));
    json_object_set_new(v, "message", json_string("Agent run completed successfully"));
    expect_py(v,
              "{\"type\": \"status\", \"status\": \"completed\", "
              "\"message\": \"Agent run completed successfully\"}");
}

static void test_nesting_order_and_scalars(void **state)
{
    /* Keys stay in insertion order, not sorted. */
    json_t *v = json_pack("{s:[i,i],s:{s:n,s:b,s:b},s:[],s:{},s:[[i],{}],s:i}", "z", 1, 2, "a",
                          "x", "t", 1, "f", 0, "empty_a", "empty_o", "deep", 3, "neg", -7);
    expect_py(v,
              "{\"z\": [1, 2], \"a\": {\"x\": null, \"t\": true, \"f\": false}, "
              "\"empty_a\": [], \"empty_o\": {}, \"deep\": [[3], {}], \"neg\": -7}");
    /* Any value, not only containers. */
    expect_py(json_string("x"), "\"x\"");
    expect_py(json_integer(9007199254740993LL), "9007199254740993");
    expect_py(json_null(), "null");
}

static void test_string_escapes_like_python(void **state)
{
    /* Python: short escapes for \" \\ \n \r \t \b \f, \u00xx (lower case) for the other
     * controls, everything else as is (no escaping of '/', DEL, non-ASCII, U+2028). */
    expect_py(json_string("q\"b\\n\nr\rt\tb\bf\f"), "\"q\\\"b\\\\n\\nr\\rt\\tb\\bf\\f\"");
    expect_py(json_string("\x01\x1f\x1b[0m"), "\"\\u0001\\u001f\\u001b[0m\"");
    expect_py(json_string("a/b\x7f"
                          "\xc3\xa9\xe2\x80\xa8\xf0\x9f\x98\x80"),
              "\"a/b\x7f"
              "\xc3\xa9\xe2\x80\xa8\xf0\x9f\x98\x80\"");
    expect_py(json_stringn("a\0b", 3), "\"a\\u0000b\"");
    /* Keys are escaped the same way. */
    json_t *o = json_object();
    json_object_set_new(o, "k\"\x02", json_true());
    expect_py(o, "{\"k\\\"\\u0002\": true}");
}

static void test_reals_like_python_repr(void **state)
{
    static const struct {
        double v;
        const char *want;
    } cases[] = {
        {0.1, "0.1"},
        {1.0, "1.0"},
        {1e16, "1e+16"},
        {1e-5, "1e-05"},
        {123456.789, "123456.789"},
        {1e15, "1000000000000000.0"},
        {-2.5, "-2.5"},
        {0.0001, "0.0001"},
        {1.5e300, "1.5e+300"},
        {5e-324, "5e-324"},
        {0.30000000000000004, "0.30000000000000004"},
        {1e22, "1e+22"},
        {100.0, "100.0"},
        {12345678901234567890.0, "1.2345678901234567e+19"},
        {-0.0, "-0.0"},
        {0.0, "0.0"},
        {2.5e-7, "2.5e-07"},
        {9999999999999998.0, "9999999999999998.0"},
        {1.7976931348623157e308, "1.7976931348623157e+308"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_t *real = json_real(cases[i].v);
        char *got = kx_json_dumps_py(real);
        json_decref(real);
        json_t *arr = json_pack("[f]", cases[i].v);
        char *in_array = kx_json_dumps_py(arr);
        json_decref(arr);
        assert_non_null(got);
        assert_string_equal(got, cases[i].want);
        assert_non_null(strstr(in_array, cases[i].want));
        free(got);
        free(in_array);
    }
}

static void test_compact(void **state)
{
    json_t *v = json_pack("{s:s,s:[i,i],s:{}}", "role", "assistant", "n", 1, 2, "o");
    char *s = kx_json_dumps_compact(v);
    assert_string_equal(s, "{\"role\":\"assistant\",\"n\":[1,2],\"o\":{}}");
    free(s);
    json_decref(v);
    json_t *str = json_string("x");
    s = kx_json_dumps_compact(str);
    assert_string_equal(s, "\"x\"");
    free(s);
    json_decref(str);
    assert_null(kx_json_dumps_py(NULL));
}

/* kx_json_dumps_compact prints by itself (json.c), byte for byte what jansson's json_dumps
 * prints with the same flags: compared on generated trees (every control byte, quotes,
 * backslashes, 2- to 4-byte UTF-8, NUL inside a string, reals of every magnitude, integers at
 * the limits, empty containers, deep nesting), and NULL where jansson fails (invalid UTF-8). */
static uint64_t g_rng = 0x2545f4914f6cdd1dull;

static uint32_t rnd(uint32_t n)
{
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (uint32_t)(g_rng % n);
}

static json_t *rand_string(void)
{
    char s[64];
    size_t n = 0;
    size_t want = rnd(12);
    for (size_t i = 0; i < want; i++) {
        switch (rnd(5)) {
        case 0: s[n++] = (char)rnd(0x20); break; /* any control byte, NUL too */
        case 1: s[n++] = "\"\\/\x7f'"[rnd(5)]; break;
        case 2:
            s[n++] = (char)(0xc2 + rnd(30));
            s[n++] = (char)(0x80 + rnd(64));
            break;
        case 3:
            if (rnd(2)) { /* 3 bytes: U+0800..U+FFFF but for the surrogates */
                s[n++] = (char)(0xe1 + rnd(12));
                s[n++] = (char)(0x80 + rnd(64));
                s[n++] = (char)(0x80 + rnd(64));
                break;
            }
            s[n++] = (char)0xf0;
            s[n++] = (char)(0x90 + rnd(48));
            s[n++] = (char)(0x80 + rnd(64));
            s[n++] = (char)(0x80 + rnd(64));
            break;
        default: s[n++] = (char)(' ' + rnd(95));
        }
    }
    return json_stringn(s, n);
}

static json_t *rand_tree(int depth)
{
    static const double reals[] = {0.1,
                                   -2.5,
                                   1e16,
                                   1.5e-05,
                                   3.141592653589793,
                                   100.0,
                                   -0.0,
                                   1e-7,
                                   1e300,
                                   -1.7976931348623157e308,
                                   5e-324,
                                   123456789.125,
                                   0.30000000000000004,
                                   2.0,
                                   1e22};
    switch (rnd(depth > 0 ? 9 : 6)) {
    case 0:
        return json_integer(rnd(3) == 0 ? (json_int_t)INT64_MIN + rnd(2)
                                        : (json_int_t)rnd(99999) - 500);
    case 1: {
        double x = reals[rnd(sizeof reals / sizeof *reals)];
        return json_real(rnd(2) && x < 1e300 && x > -1e300 ? x * 3.7 : x);
    }
    case 2: return json_boolean(rnd(2));
    case 3: return json_null();
    case 4:
    case 5: return rand_string();
    case 6:
    case 7: {
        json_t *o = json_object();
        size_t n = rnd(5);
        for (size_t i = 0; i < n; i++) {
            json_t *k = rand_string();
            json_object_setn_new(o, json_string_value(k), json_string_length(k),
                                 rand_tree(depth - 1));
            json_decref(k);
        }
        return o;
    }
    default: {
        json_t *a = json_array();
        size_t n = rnd(5);
        for (size_t i = 0; i < n; i++)
            json_array_append_new(a, rand_tree(depth - 1));
        return a;
    }
    }
}

static void test_compact_equals_jansson(void **state)
{
    (void)state;
    for (int i = 0; i < 5000; i++) {
        json_t *v = rand_tree(5);
        char *want = json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);
        char *got = kx_json_dumps_compact(v);
        assert_non_null(want);
        assert_non_null(got);
        assert_string_equal(got, want);
        free(want);
        free(got);
        json_decref(v);
    }
    /* not UTF-8: jansson refuses to print it, and so does the compact printer */
    const char *bad[] = {"\xff", "a\xc0\x80", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xe2\x82"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        json_t *s = json_stringn_nocheck(bad[i], strlen(bad[i]));
        json_t *o = json_pack("{s:[O]}", "k", s);
        assert_null(json_dumps(o, JSON_COMPACT | JSON_ENCODE_ANY));
        assert_null(kx_json_dumps_compact(o));
        json_decref(o);
        json_decref(s);
    }
}

/* A key that is not UTF-8 fails the compact print as a value does. Here the compact printer
 * and jansson 2.14 part: jansson ignores the failure on a key and prints a broken text
 * ({"a":[1,{":1}]}), the compact printer returns NULL. The Python printer copies the bytes of
 * keys and values as they are (it never checks). */
static void test_bad_utf8_key(void **state)
{
    (void)state;
    json_t *o = json_object();
    json_t *inner = json_object();
    json_object_setn_new_nocheck(inner, "k\xc0\x80", 3, json_integer(1));
    json_object_set_new(o, "a", json_pack("[i, o]", 1, inner));
    assert_null(kx_json_dumps_compact(o));
    char *py = kx_json_dumps_py(o);
    assert_string_equal(py, "{\"a\": [1, {\"k\xc0\x80\": 1}]}");
    free(py);
    json_decref(o);
}

/* n arrays inside each other: [[[...]]]. */
static json_t *nested(int n)
{
    json_t *v = json_array();
    for (int i = 1; i < n; i++) {
        json_t *outer = json_array();
        json_array_append_new(outer, v);
        v = outer;
    }
    return v;
}

/* The compact printer stops at 2048 levels below the root (a bound of its own where jansson
 * would recurse on): up to it the text equals jansson's, one deeper is NULL. The Python
 * printer has no bound. */
static void test_depth_bound(void **state)
{
    (void)state;
    json_t *deepest_ok = nested(2049); /* the innermost array is at depth 2048 */
    char *want = json_dumps(deepest_ok, JSON_COMPACT | JSON_ENCODE_ANY);
    char *got = kx_json_dumps_compact(deepest_ok);
    assert_non_null(want);
    assert_non_null(got);
    assert_string_equal(got, want);
    free(want);
    free(got);
    json_decref(deepest_ok);

    json_t *too_deep = nested(2050);
    assert_null(kx_json_dumps_compact(too_deep));
    char *py = kx_json_dumps_py(too_deep);
    assert_non_null(py);
    assert_int_equal(strlen(py), 2 * 2050);
    assert_int_equal(py[0], '[');
    assert_int_equal(py[2049], '[');
    assert_int_equal(py[2050], ']');
    free(py);
    json_decref(too_deep);
}

static void test_typed_getters(void **state)
{
    json_t *v = json_pack("{s:s,s:i,s:b,s:n,s:f}", "s", "str", "i", 42, "b", 1, "n", "f", 1.5);
    assert_string_equal(kx_json_str(v, "s", "def"), "str");
    assert_string_equal(kx_json_str(v, "i", "def"), "def"); /* wrong type */
    assert_string_equal(kx_json_str(v, "missing", "def"), "def");
    assert_null(kx_json_str(v, "n", NULL));
    assert_int_equal(kx_json_int(v, "i", -1), 42);
    assert_int_equal(kx_json_int(v, "f", -1), -1);
    assert_int_equal(kx_json_int(v, "s", -1), -1);
    assert_true(kx_json_bool(v, "b", false));
    assert_false(kx_json_bool(v, "i", false));
    assert_true(kx_json_bool(v, "missing", true));
    /* Not an object at all. */
    json_t *arr = json_array();
    assert_string_equal(kx_json_str(arr, "s", "def"), "def");
    assert_int_equal(kx_json_int(NULL, "i", 7), 7);
    json_decref(arr);
    json_decref(v);
}

/* Postgres prints jsonb's 1e20 as 100000000000000000000: read as a real, the rest as it was
 * (strings that look like big numbers, integers in range, reals); text that is not JSON still
 * fails. */
static void test_loads_wide(void **state)
{
    (void)state;
    json_error_t e;
    const char *text = "{\"big\": 100000000000000000000, \"neg\": -99999999999999999999, "
                       "\"ok\": 9223372036854775807, \"s\": \"100000000000000000000 \\\"1\", "
                       "\"r\": 1.5e30, \"a\": [12345678901234567890123]}";
    assert_null(json_loads(text, 0, &e)); /* what jansson alone does */
    json_t *v = kx_json_loads_wide(text, 0, &e);
    assert_non_null(v);
    assert_true(json_is_real(json_object_get(v, "big")));
    assert_true(json_real_value(json_object_get(v, "big")) == 1e20);
    assert_true(json_real_value(json_object_get(v, "neg")) == -99999999999999999999.0);
    assert_true(json_is_integer(json_object_get(v, "ok")));
    assert_true(json_integer_value(json_object_get(v, "ok")) == 9223372036854775807LL);
    assert_string_equal(json_string_value(json_object_get(v, "s")), "100000000000000000000 \"1");
    assert_true(json_real_value(json_object_get(v, "r")) == 1.5e30);
    assert_true(json_is_real(json_array_get(json_object_get(v, "a"), 0)));
    json_decref(v);
    json_t *plain = kx_json_loads_wide("[1, 2]", 0, NULL);
    assert_true(json_is_integer(json_array_get(plain, 0)));
    json_decref(plain);
    assert_null(kx_json_loads_wide("{\"a\": 1", 0, &e));
    assert_null(kx_json_loads_wide("[100000000000000000000", 0, &e)); /* still not JSON */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_terminal_status_event),
        cmocka_unit_test(test_nesting_order_and_scalars),
        cmocka_unit_test(test_string_escapes_like_python),
        cmocka_unit_test(test_reals_like_python_repr),
        cmocka_unit_test(test_compact),
        cmocka_unit_test(test_compact_equals_jansson),
        cmocka_unit_test(test_bad_utf8_key),
        cmocka_unit_test(test_depth_bound),
        cmocka_unit_test(test_typed_getters),
        cmocka_unit_test(test_loads_wide),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
