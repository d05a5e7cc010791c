/* text.c — UTF-8 validation and character-counted truncation (see text.h). */
#include "text.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Length of the valid UTF-8 sequence at p[0..avail) (1..4), 0 if none starts there. NUL is
 * not valid (Postgres text cannot hold it). */
static size_t seq_len(const unsigned char *p, size_t avail)
{
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
        return 0;   /* a continuation byte where a sequence should start, or 0xF8+ */
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

bool gw_utf8_valid(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        size_t n = seq_len(p + i, len - i);
        if (n == 0)
            return false;
        i += n;
    }
    return true;
}

void gw_utf8_scrub(char *s)
{
    unsigned char *p = (unsigned char *)s;
    size_t len = strlen(s), i = 0;
    while (i < len) {
        size_t n = seq_len(p + i, len - i);
        if (n == 0) {
            p[i] = '?';
            n = 1;
        }
        i += n;
    }
}

char *gw_project_name(const char *s, size_t max_chars)
{
    size_t len = strlen(s);
    size_t chars = 0, cut = len;
    for (size_t i = 0; i < len; i++) {
        if (((unsigned char)s[i] & 0xC0) == 0x80)
            continue;   /* continuation byte: part of the current character */
        if (chars == max_chars) {
            cut = i;    /* the (max_chars+1)-th character starts here */
            break;
        }
        chars++;
    }
    if (cut == len)
        return strdup(s);
    char *out = malloc(cut + 4);
    if (out == NULL)
        return NULL;
    memcpy(out, s, cut);
    memcpy(out + cut, "...", 4);
    return out;
}
