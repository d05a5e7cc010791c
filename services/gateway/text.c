/* text.c — UTF-8 validation, character counts and caps, character-counted truncation (see
 * text.h). */
#include "text.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <microhttpd.h>

#include "reply.h"

char *gw_project_name(const char *s, size_t max_chars)
{
    size_t len = strlen(s);
    size_t chars = 0, cut = len;
    for (size_t i = 0; i < len; i++) {
        if (((unsigned char)s[i] & 0xC0) == 0x80)
            continue; /* continuation byte: part of the current character */
        if (chars == max_chars) {
            cut = i; /* the (max_chars+1)-th character starts here */
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

size_t gw_utf8_chars(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

bool gw_text_chars_fit(const char *field, const char *s, size_t max_chars, struct gw_reply *reply)
{
    size_t n = s != NULL ? gw_utf8_chars(s) : 0;
    if (n <= max_chars)
        return true;
    gw_reply_error(reply, MHD_HTTP_BAD_REQUEST,
                   "%s is too long: %zu characters, the limit is %zu characters", field, n,
                   max_chars);
    return false;
}

bool gw_text_fits(const char *field, const char *s, size_t max_bytes, struct gw_reply *reply)
{
    size_t n = strlen(s);
    if (n <= max_bytes)
        return true;
    gw_reply_error(reply, MHD_HTTP_CONTENT_TOO_LARGE,
                   "%s is too long: %zu bytes, the limit is %zu bytes", field, n, max_bytes);
    return false;
}
