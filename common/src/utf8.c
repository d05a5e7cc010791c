/* utf8.c — UTF-8 validation, in-place repair and cutting at a character boundary (see
 * kx/utf8.h). */
#include "kx/utf8.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

size_t kx_utf8_seq_len(const unsigned char *p, size_t avail)
{
    if (avail == 0)
        return 0;
    unsigned char c = p[0];
    size_t n;
    uint32_t cp;
    if (c == 0)
        return 0;
    if (c < 0x80)
        return 1;
    if ((c & 0xE0) == 0xC0) {
        n = 1;
        cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
        n = 2;
        cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
        n = 3;
        cp = c & 0x07;
    } else {
        return 0; /* a continuation byte where a sequence should start, or 0xF8+ */
    }
    for (size_t k = 1; k <= n; k++) {
        if (k >= avail || (p[k] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[k] & 0x3F);
    }
    /* overlong forms, surrogates and values beyond U+10FFFF are not UTF-8 */
    if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
        (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF)
        return 0;
    return n + 1;
}

bool kx_utf8_valid(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        size_t n = kx_utf8_seq_len(p + i, len - i);
        if (n == 0)
            return false;
        i += n;
    }
    return true;
}

void kx_utf8_scrub(char *s)
{
    unsigned char *p = (unsigned char *)s;
    size_t len = strlen(s), i = 0;
    while (i < len) {
        size_t n = kx_utf8_seq_len(p + i, len - i);
        if (n == 0) {
            p[i] = '?';
            n = 1;
        }
        i += n;
    }
}

char *kx_utf8_sanitize(const char *s, size_t len, size_t *out_len)
{
    /* the worst case: every byte becomes the 3-byte U+FFFD */
    if (len > (SIZE_MAX - 1) / 3)
        return NULL;
    char *out = malloc(len * 3 + 1);
    if (out == NULL)
        return NULL;
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0, o = 0;
    while (i < len) {
        size_t n = kx_utf8_seq_len(p + i, len - i);
        if (n == 0) {
            memcpy(out + o, "\xef\xbf\xbd", 3);
            o += 3;
            i += 1;
        } else {
            memcpy(out + o, p + i, n);
            o += n;
            i += n;
        }
    }
    out[o] = '\0';
    if (out_len != NULL)
        *out_len = o;
    return out;
}

size_t kx_utf8_floor(const char *s, size_t len, size_t n)
{
    if (n >= len)
        return len;
    const unsigned char *p = (const unsigned char *)s;
    while (n > 0 && (p[n] & 0xC0) == 0x80)
        n--;
    return n;
}

size_t kx_utf8_ceil(const char *s, size_t len, size_t n)
{
    if (n >= len)
        return len;
    const unsigned char *p = (const unsigned char *)s;
    while (n < len && (p[n] & 0xC0) == 0x80)
        n++;
    return n;
}
