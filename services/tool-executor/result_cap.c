/* result_cap.c — head + tail + note for outputs too large for the bus (see result_cap.h). */
#include "result_cap.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kx/json.h"
#include "kx/utf8.h"

#define RESULT_OVERHEAD (16 * 1024) /* call id, error, headers, protobuf framing */
#define MIN_BUDGET 1024

size_t te_result_budget(size_t max_payload)
{
    if (max_payload <= RESULT_OVERHEAD + MIN_BUDGET)
        return MIN_BUDGET;
    return max_payload - RESULT_OVERHEAD;
}

/* The text shown: when the output is a JSON string, its value; otherwise the JSON text.
 * Made valid UTF-8 without NUL (each bad byte, NUL included, becomes U+FFFD). */
static char *source_text(const char *output_json, size_t *len)
{
    json_t *v = json_loads(output_json, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    char *text = json_is_string(v)
        ? kx_utf8_sanitize(json_string_value(v), json_string_length(v), len)
        : kx_utf8_sanitize(output_json, strlen(output_json), len);
    json_decref(v);
    return text;
}

static char *capped(const char *text, size_t len, size_t keep, size_t total)
{
    size_t head = kx_utf8_floor(text, len, keep / 2);
    size_t tail_start = len - (keep - keep / 2 < len ? keep - keep / 2 : len);
    tail_start = kx_utf8_floor(text, len, tail_start);
    if (tail_start < head)
        tail_start = head;
    char note[200];
    snprintf(note, sizeof note,
             "\n\n[... output cut to fit the bus: %zu of %zu bytes not shown; head and tail "
             "kept ...]\n\n",
             tail_start - head, total);
    size_t nlen = strlen(note);
    size_t blen = head + nlen + (len - tail_start);
    char *buf = malloc(blen + 1);
    if (buf == NULL)
        return NULL;
    memcpy(buf, text, head);
    memcpy(buf + head, note, nlen);
    memcpy(buf + head + nlen, text + tail_start, len - tail_start);
    buf[blen] = '\0';
    json_t *s = json_stringn(buf, blen);
    free(buf);
    char *out = s != NULL ? kx_json_dumps_compact(s) : NULL;
    json_decref(s);
    return out;
}

bool te_result_cap(char **output_json, size_t budget)
{
    if (*output_json == NULL || strlen(*output_json) <= budget)
        return false;
    size_t total = strlen(*output_json);
    size_t len = 0;
    char *text = source_text(*output_json, &len);
    char *out = NULL;
    if (text != NULL) {
        /* Escaping may grow the text up to 6x: shrink what is kept until it fits. */
        size_t keep = budget > 512 ? budget - 512 : budget / 2;
        for (int i = 0; i < 12 && keep > 0; i++) {
            out = capped(text, len, keep, total);
            if (out == NULL || strlen(out) <= budget)
                break;
            free(out);
            out = NULL;
            keep /= 2;
        }
        free(text);
    }
    free(*output_json);
    *output_json = out != NULL
        ? out
        : strdup("\"[output too large for the bus and could not be cut: out of memory]\"");
    return out != NULL;
}
