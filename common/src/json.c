/* json.c — one printer in two styles over jansson values, plus typed getters.
 *
 * The Python style prints what Python's json.dumps(v, ensure_ascii=False) prints. Why not
 * jansson's own printer for it: the spacing matches, but jansson writes control characters as
 * "\u001F" (Python: "\u001f") and floats with 17 significant digits ("0.10000000000000001";
 * Python: "0.1"), and Kortix's frontend matches substrings of the Python text. So this file
 * walks the json_t tree itself:
 *   - separators ", " and ": ", keys in insertion order (jansson 2.14 keeps it);
 *   - strings: \" \\ \n \r \t \b \f, other bytes below 0x20 as \u00xx, everything else
 *     (UTF-8, DEL, U+2028) as is;
 *   - reals as Python's repr(): the shortest digits that read back as the same double,
 *     positional when the decimal exponent is in [-4, 16), else "1e+16" / "1.5e-05".
 * The compact style is jansson's own compact output, byte for byte, faster (STYLE_COMPACT).
 * The two differ only in what json_style holds: separators, the case of \u00xx, whether
 * strings must be valid UTF-8, how reals are written and the depth bound. */
#include "kx/json.h"

#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kx/buf.h"

/* The text grows in a kx_buf; its out-of-memory state (sticky) is checked once, at the end. */

/* ---- escapes ------------------------------------------------------------------------- */

/* What each byte of a string needs: 0 = copied as is, 'x' = the first byte of a UTF-8
 * sequence to check, else the letter after the backslash ('u' for \u00xx). Only '"', '\\'
 * and the bytes below 0x20 are escaped (both styles agree); the style that checks UTF-8 looks
 * at every byte from 0x80 up, the other copies them. One lookup per byte either way. */
#define ESC_LOW                                                                         \
    ['"'] = '"', ['\\'] = '\\', ['\b'] = 'b', ['\f'] = 'f', ['\n'] = 'n', ['\r'] = 'r', \
    ['\t'] = 't', [0x00] = 'u', [0x01] = 'u', [0x02] = 'u', [0x03] = 'u', [0x04] = 'u', \
    [0x05] = 'u', [0x06] = 'u', [0x07] = 'u', [0x0b] = 'u', [0x0e] = 'u', [0x0f] = 'u', \
    [0x10] = 'u', [0x11] = 'u', [0x12] = 'u', [0x13] = 'u', [0x14] = 'u', [0x15] = 'u', \
    [0x16] = 'u', [0x17] = 'u', [0x18] = 'u', [0x19] = 'u', [0x1a] = 'u', [0x1b] = 'u', \
    [0x1c] = 'u', [0x1d] = 'u', [0x1e] = 'u', [0x1f] = 'u'
#define X16 'x', 'x', 'x', 'x', 'x', 'x', 'x', 'x', 'x', 'x', 'x', 'x', 'x', 'x', 'x', 'x'
static const char ESC_PLAIN[256] = {ESC_LOW};
static const char ESC_UTF8[256] = {ESC_LOW, [0x80] = X16, X16, X16, X16, X16, X16, X16, X16};

/* ---- the two styles ------------------------------------------------------------------- */

/* What differs between the Python printer and the compact one; one walk prints both. */
typedef struct json_style {
    const char *item_sep; /* between the items of an array or object */
    const char *key_sep;  /* between a key and its value */
    size_t item_sep_len, key_sep_len;
    const char *hex;   /* the digits of \u00xx */
    const char *esc;   /* ESC_UTF8: fail on a string that is not valid UTF-8; ESC_PLAIN: bytes
                      * go as they are */
    bool python_reals; /* reals as Python's repr(), else as jansson's "%.17g" */
    int max_depth;     /* fail on nesting deeper than this (INT_MAX: no bound) */
} json_style;

/* Python's json.dumps(v, ensure_ascii=False); never fails but for memory. */
static const json_style STYLE_PY = {
    .item_sep = ", ",
    .key_sep = ": ",
    .item_sep_len = 2,
    .key_sep_len = 2,
    .hex = "0123456789abcdef",
    .esc = ESC_PLAIN,
    .python_reals = true,
    .max_depth = INT_MAX,
};

/* Byte for byte json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY): separators
 * "," and ":", \u00XX upper case, reals as jansson's "%.17g" with ".0" added to a bare integer
 * and the exponent's '+' and leading zeros dropped. Like jansson it fails on a string that is
 * not valid UTF-8 (only *_nocheck strings can hold one) and on nesting deeper than
 * COMPACT_MAX_DEPTH (jansson fails on a cycle). Written because jansson's printer decodes
 * every code point and calls back per fragment: on the runner's request bodies and rows it was
 * most of the JSON time. */
#define COMPACT_MAX_DEPTH 2048
static const json_style STYLE_COMPACT = {
    .item_sep = ",",
    .key_sep = ":",
    .item_sep_len = 1,
    .key_sep_len = 1,
    .hex = "0123456789ABCDEF",
    .esc = ESC_UTF8,
    .python_reals = false,
    .max_depth = COMPACT_MAX_DEPTH,
};

/* ---- strings --------------------------------------------------------------------------- */

/* Length of the valid UTF-8 sequence at s (n bytes left), 0 if invalid; as jansson's
 * utf8_check_first / utf8_check_full (no overlongs, no surrogates, nothing past U+10FFFF).
 * Not inlined: put_string stays small for the many short strings of either style (callgrind,
 * bench_events: 2 % fewer instructions on both the compact print and the Python row than
 * with it inlined). */
__attribute__((noinline)) static size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t len;
    uint32_t cp;
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
        cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff) || (len == 3 && cp < 0x800) ||
        (len == 4 && cp < 0x10000))
        return 0;
    return len;
}

/* str[0..n) as a string literal; false (b unchanged past what was written) when the style
 * checks UTF-8 and it is not, or when memory ran out. */
static bool put_string(kx_buf *b, const char *str, size_t n, const json_style *st)
{
    const unsigned char *s = (const unsigned char *)str;
    const char *esc = st->esc;
    /* room for the common case (nothing escaped) at once; escapes grow it as they come */
    if (kx_buf_reserve(b, n + 2) != KX_OK)
        return false;
    kx_buf_add(b, "\"", 1);
    size_t run = 0; /* start of the current run of bytes copied as is */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = s[i];
        char e = esc[c];
        if (e == 0)
            continue;
        if (e == 'x') {
            size_t l = utf8_seq(s + i, n - i);
            if (l == 0)
                return false;
            i += l - 1;
            continue;
        }
        kx_buf_add(b, str + run, i - run);
        char u[6] = {'\\', e};
        size_t ul = 2;
        if (e == 'u') {
            u[2] = '0';
            u[3] = '0';
            u[4] = st->hex[c >> 4];
            u[5] = st->hex[c & 15];
            ul = 6;
        }
        kx_buf_add(b, u, ul);
        run = i + 1;
    }
    kx_buf_add(b, str + run, n - run);
    kx_buf_add(b, "\"", 1);
    return true;
}

/* ---- reals as Python's repr ------------------------------------------------------------ */

/* The shortest decimal digits of v (no sign, no dot) that read back as v, and the decimal
 * exponent of the first digit. digits must hold 18 bytes. */
static void shortest_digits(double v, char *digits, int *exp10)
{
    char tmp[40];
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*e", prec - 1, v);
        if (strtod(tmp, NULL) == v || prec == 17)
            break;
    }
    /* tmp is "d.ddde[+-]xx" (or "de[+-]xx" for one digit). */
    size_t n = 0;
    const char *p = tmp;
    for (; *p != 'e'; p++)
        if (*p >= '0' && *p <= '9')
            digits[n++] = *p;
    while (n > 1 && digits[n - 1] == '0')
        n--;
    digits[n] = '\0';
    /* NOLINTNEXTLINE(cert-err34-c): our own snprintf wrote "e[+-]dd" right here */
    *exp10 = atoi(p + 1);
}

static void put_real_py(kx_buf *b, double v)
{
    if (!isfinite(v)) {
        /* jansson cannot hold these; Python would print NaN/Infinity (not JSON). */
        kx_buf_str(b, isnan(v) ? "NaN" : (v < 0 ? "-Infinity" : "Infinity"));
        return;
    }
    if (v == 0) {
        kx_buf_str(b, signbit(v) ? "-0.0" : "0.0");
        return;
    }
    if (v < 0) {
        kx_buf_add(b, "-", 1);
        v = -v;
    }
    char d[18];
    int e;
    /* NOLINTBEGIN(clang-analyzer-core.uninitialized.Assign): shortest_digits fills d */
    shortest_digits(v, d, &e);
    int n = (int)strlen(d);
    char out[64];
    size_t o = 0;
    if (e >= -4 && e < 16) {
        if (e < 0) {
            out[o++] = '0';
            out[o++] = '.';
            for (int i = 0; i < -e - 1; i++)
                out[o++] = '0';
            for (int i = 0; i < n; i++)
                out[o++] = d[i];
        } else {
            for (int i = 0; i <= e; i++)
                out[o++] = i < n ? d[i] : '0';
            out[o++] = '.';
            if (n > e + 1)
                for (int i = e + 1; i < n; i++)
                    out[o++] = d[i];
            else
                out[o++] = '0';
        }
        out[o] = '\0';
    } else {
        out[o++] = d[0];
        if (n > 1) {
            out[o++] = '.';
            for (int i = 1; i < n; i++)
                out[o++] = d[i];
        }
        snprintf(out + o, sizeof out - o, "e%c%02d", e < 0 ? '-' : '+', e < 0 ? -e : e);
    }
    /* NOLINTEND(clang-analyzer-core.uninitialized.Assign) */
    kx_buf_str(b, out);
}

/* ---- reals as jansson's jsonp_dtostr at its default precision (17) --------------------- */

static void put_real_jansson(kx_buf *b, double v)
{
    char buf[48];
    int ret = snprintf(buf, sizeof buf - 3, "%.17g", v);
    if (ret < 0 || (size_t)ret >= sizeof buf - 3) {
        b->oom = true;
        return;
    }
    size_t len = (size_t)ret;
    if (strchr(buf, '.') == NULL && strchr(buf, 'e') == NULL) {
        buf[len++] = '.';
        buf[len++] = '0';
        buf[len] = '\0';
    }
    char *start = strchr(buf, 'e');
    if (start != NULL) {
        start++;
        char *end = start + 1;
        if (*start == '-')
            start++;
        while (*end == '0')
            end++;
        if (end != start) {
            memmove(start, end, len - (size_t)(end - buf) + 1);
            len -= (size_t)(end - start);
        }
    }
    kx_buf_add(b, buf, len);
}

/* ---- the walk -------------------------------------------------------------------------- */

/* v appended to b in style st; false when st refuses it (bad UTF-8, too deep) or memory ran
 * out (then b->oom is set too). */
static bool put_value(kx_buf *b, const json_t *v, const json_style *st, int depth)
{
    char num[32];
    if (depth > st->max_depth)
        return false;
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        kx_buf_add(b, "{", 1);
        const char *key;
        size_t key_len;
        json_t *item;
        bool first = true;
        /* json_object_foreach on a const object: jansson's macros take non-const. */
        json_object_keylen_foreach((json_t *)v, key, key_len, item)
        {
            if (!first)
                kx_buf_add(b, st->item_sep, st->item_sep_len);
            first = false;
            if (!put_string(b, key, key_len, st))
                return false;
            kx_buf_add(b, st->key_sep, st->key_sep_len);
            if (!put_value(b, item, st, depth + 1))
                return false;
        }
        kx_buf_add(b, "}", 1);
        return true;
    }
    case JSON_ARRAY:
        kx_buf_add(b, "[", 1);
        for (size_t i = 0; i < json_array_size(v); i++) {
            if (i > 0)
                kx_buf_add(b, st->item_sep, st->item_sep_len);
            if (!put_value(b, json_array_get(v, i), st, depth + 1))
                return false;
        }
        kx_buf_add(b, "]", 1);
        return true;
    case JSON_STRING: return put_string(b, json_string_value(v), json_string_length(v), st);
    case JSON_INTEGER:
        snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        kx_buf_str(b, num);
        return true;
    case JSON_REAL:
        if (st->python_reals)
            put_real_py(b, json_real_value(v));
        else
            put_real_jansson(b, json_real_value(v));
        return true;
    case JSON_TRUE: kx_buf_str(b, "true"); return true;
    case JSON_FALSE: kx_buf_str(b, "false"); return true;
    case JSON_NULL: kx_buf_str(b, "null"); return true;
    }
    return false;
}

/* The whole text of v in style st, malloc'd; NULL when st refuses it or memory ran out. */
static char *dumps(const json_t *v, const json_style *st)
{
    if (v == NULL)
        return NULL;
    kx_buf b = KX_BUF_INIT;
    if (!put_value(&b, v, st, 0)) {
        kx_buf_free(&b);
        return NULL;
    }
    return kx_buf_take(&b); /* NULL if it ran out of memory */
}

/* ---- the API --------------------------------------------------------------------------- */

void kx_json_put_py(kx_buf *b, const json_t *v)
{
    /* as kx_json_dumps_py(NULL): nothing to print is a failure; the Python style refuses
     * nothing else, so false can only be memory, already in b->oom */
    if (v == NULL || !put_value(b, v, &STYLE_PY, 0))
        b->oom = true;
}

void kx_json_put_py_str(kx_buf *b, const char *s, size_t n)
{
    put_string(b, s, n, &STYLE_PY);
}

char *kx_json_dumps_py(const json_t *v)
{
    return dumps(v, &STYLE_PY);
}

char *kx_json_dumps_compact(const json_t *v)
{
    return dumps(v, &STYLE_COMPACT);
}

bool kx_json_put_compact(kx_buf *b, const json_t *v)
{
    return v != NULL && put_value(b, v, &STYLE_COMPACT, 0) && !b->oom;
}

bool kx_json_put_compact_str(kx_buf *b, const char *s, size_t n)
{
    return put_string(b, s, n, &STYLE_COMPACT) && !b->oom;
}

/* ---- typed getters --------------------------------------------------------------------- */

const char *kx_json_str(const json_t *obj, const char *key, const char *def)
{
    const json_t *v = json_is_object(obj) ? json_object_get(obj, key) : NULL;
    return json_is_string(v) ? json_string_value(v) : def;
}

long long kx_json_int(const json_t *obj, const char *key, long long def)
{
    const json_t *v = json_is_object(obj) ? json_object_get(obj, key) : NULL;
    return json_is_integer(v) ? (long long)json_integer_value(v) : def;
}

bool kx_json_bool(const json_t *obj, const char *key, bool def)
{
    const json_t *v = json_is_object(obj) ? json_object_get(obj, key) : NULL;
    return json_is_boolean(v) ? json_is_true(v) : def;
}
