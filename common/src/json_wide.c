/* json_wide.c — reading JSON whose integers may not fit jansson's json_int_t (see kx/json.h).
 *
 * PostgreSQL's jsonb keeps numbers as numeric and prints a large one without a decimal point
 * or exponent (1e20 comes back as 100000000000000000000); jansson refuses such an integer
 * ("too big integer") and with it the whole text. When, and only when, the plain parse fails
 * that way, every integer token out of long long's range is rewritten as a real (".0"
 * appended) and the text parsed again: that number becomes the nearest double, every other
 * value stays as it was. */
#include "kx/json.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "kx/buf.h"

static bool digit(char c)
{
    return c >= '0' && c <= '9';
}

/* text with each integer token out of long long's range followed by ".0"; malloc'd, NULL on
 * OOM. Bytes inside strings are copied as they are. */
static char *widen(const char *text)
{
    kx_buf b = KX_BUF_INIT;
    const char *copied = text; /* text[copied..c) is still to be copied */
    bool in_string = false, ok = true;
    for (const char *c = text; *c != '\0' && ok;) {
        if (in_string) {
            if (*c == '\\' && c[1] != '\0')
                c += 2;
            else
                in_string = *c++ != '"';
            continue;
        }
        if (*c == '"') {
            in_string = true;
            c++;
            continue;
        }
        if (*c != '-' && !digit(*c)) {
            c++;
            continue;
        }
        const char *start = c;
        c += *c == '-';
        while (digit(*c))
            c++;
        if (*c == '.' || *c == 'e' || *c == 'E') { /* a real already: skip the rest of it */
            while (*c != '\0' && strchr("0123456789.eE+-", *c) != NULL)
                c++;
            continue;
        }
        errno = 0;
        (void)strtoll(start, NULL, 10);
        if (errno == ERANGE) {
            ok = kx_buf_add(&b, copied, (size_t)(c - copied)) == KX_OK &&
                kx_buf_str(&b, ".0") == KX_OK;
            copied = c;
        }
    }
    if (!ok || kx_buf_str(&b, copied) != KX_OK) {
        kx_buf_free(&b);
        return NULL;
    }
    return kx_buf_take(&b);
}

json_t *kx_json_loads_wide(const char *text, size_t flags, json_error_t *error)
{
    json_error_t local = {.line = 0}; /* filled by json_loads */
    json_error_t *e = error != NULL ? error : &local;
    json_t *v = json_loads(text, flags, e);
    if (v != NULL || json_error_code(e) != json_error_numeric_overflow)
        return v;
    char *wide = widen(text);
    if (wide == NULL)
        return NULL; /* e still says why the plain parse failed */
    v = json_loads(wide, flags, e);
    free(wide);
    return v;
}
