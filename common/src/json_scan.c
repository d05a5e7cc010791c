/* json_scan.c — JSON white space, literals, numbers and strings checked without a tree (see
 * kx/json_scan.h). */
#include "kx/json_scan.h"

#include <limits.h>
#include <stddef.h>
#include <string.h>

#include "kx/utf8.h"

int kx_json_hex4(const unsigned char *p)
{
    int v = 0;
    for (int k = 0; k < 4; k++) {
        unsigned char c = p[k];
        int d = c >= '0' && c <= '9' ? c - '0'
            : c >= 'a' && c <= 'f'   ? c - 'a' + 10
            : c >= 'A' && c <= 'F'   ? c - 'A' + 10
                                     : -1;
        if (d < 0)
            return -1;
        v = v * 16 + d;
    }
    return v;
}

const unsigned char *kx_json_scan_string(const unsigned char *p, const unsigned char *end,
                                         bool *escaped)
{
    *escaped = false;
    p++;
    while (p < end) {
        unsigned char c = *p;
        if (c == '"')
            return p + 1;
        if (c < 0x20)
            return NULL;
        if (c == '\\') {
            *escaped = true;
            if (end - p < 2)
                return NULL;
            unsigned char e = p[1];
            if (e == 'u') {
                if (end - p < 6)
                    return NULL;
                int v = kx_json_hex4(p + 2);
                if (v <= 0 || (v >= 0xD800 && v <= 0xDFFF))
                    return NULL;
                p += 6;
            } else if (e == '"' || e == '\\' || e == '/' || e == 'b' || e == 'f' || e == 'n' ||
                       e == 'r' || e == 't') {
                p += 2;
            } else {
                return NULL;
            }
            continue;
        }
        if (c < 0x80) {
            p++;
            continue;
        }
        size_t n = kx_utf8_seq_len(p, (size_t)(end - p));
        if (n == 0)
            return NULL;
        p += n;
    }
    return NULL;
}

const unsigned char *kx_json_skip_ws(const unsigned char *p, const unsigned char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

const unsigned char *kx_json_scan_literal(const unsigned char *p, const unsigned char *end,
                                          const char *word)
{
    size_t n = strlen(word);
    if ((size_t)(end - p) < n || memcmp(p, word, n) != 0)
        return NULL;
    return p + n;
}

static bool is_digit(const unsigned char *p, const unsigned char *end)
{
    return p < end && *p >= '0' && *p <= '9';
}

const unsigned char *kx_json_scan_number(const unsigned char *p, const unsigned char *end,
                                         kx_json_number *out)
{
    *out = (kx_json_number){0};
    bool neg = p < end && *p == '-';
    if (neg)
        p++;
    if (!is_digit(p, end))
        return NULL;
    if (*p == '0' && is_digit(p + 1, end))
        return NULL; /* a leading zero */
    /* the magnitude, while it fits: up to LLONG_MAX, or one more when negative */
    unsigned long long limit = neg ? (unsigned long long)LLONG_MAX + 1 : LLONG_MAX;
    unsigned long long x = 0;
    bool fits = true;
    for (; is_digit(p, end); p++) {
        unsigned d = (unsigned)(*p - '0');
        out->int_digits++;
        if (fits && x <= (limit - d) / 10)
            x = x * 10 + d;
        else
            fits = false;
    }
    if (p < end && *p == '.') {
        p++;
        for (; is_digit(p, end); p++)
            out->frac_digits++;
        if (out->frac_digits == 0)
            return NULL;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        out->has_exp = true;
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            p++;
        for (; is_digit(p, end); p++)
            out->exp_digits++;
        if (out->exp_digits == 0)
            return NULL;
    }
    out->in_range = fits && out->frac_digits == 0 && !out->has_exp;
    if (out->in_range)
        out->value = !neg                            ? (long long)x
            : x == (unsigned long long)LLONG_MAX + 1 ? LLONG_MIN
                                                     : -(long long)x;
    return p;
}
