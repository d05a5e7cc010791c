/* demo_body.c — reading a chat request body's top-level fields (see demo_body.h): a scan that
 * checks the JSON and finds the fields' values without building a tree, and the full jansson
 * parse it falls back on. */
#include "demo_body.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kx/json_scan.h"
#include "kx/utf8.h"

#define SCAN_MAX_DEPTH 64   /* deeper bodies take the full parse (jansson allows 2048) */
#define SCAN_MAX_NUMBER 15  /* longer numbers take it too: jansson rejects overflows */
#define SCAN_MAX_EXPONENT 2 /* so do exponents of more digits (1e999 overflows) */

/* ---- the scan ---- */

typedef struct scan {
    const unsigned char *p, *end;
    int depth;
} scan;

typedef struct span {
    const char *s; /* NULL: absent */
    size_t len;
} span;

static void skip_ws(scan *s)
{
    s->p = kx_json_skip_ws(s->p, s->end);
}

/* A string at s->p ('"'); *escaped tells whether it held a backslash. False when it is not one
 * the scan accepts (kx/json_scan.h says which). */
static bool scan_string(scan *s, bool *escaped)
{
    const unsigned char *after = kx_json_scan_string(s->p, s->end, escaped);
    if (after == NULL)
        return false;
    s->p = after;
    return true;
}

/* A number of at most SCAN_MAX_NUMBER characters and SCAN_MAX_EXPONENT exponent digits. */
static bool scan_number(scan *s)
{
    kx_json_number n;
    const unsigned char *after = kx_json_scan_number(s->p, s->end, &n);
    if (after == NULL || n.exp_digits > SCAN_MAX_EXPONENT || after - s->p > SCAN_MAX_NUMBER)
        return false;
    s->p = after;
    return true;
}

static bool scan_literal(scan *s, const char *word)
{
    const unsigned char *after = kx_json_scan_literal(s->p, s->end, word);
    if (after == NULL)
        return false;
    s->p = after;
    return true;
}

static bool scan_value(scan *s);

/* An array or an object at s->p; the members of the top-level object (depth 1) named in
 * fields[] get their values' spans in found[] (the last of a repeated key, as jansson keeps). */
static bool scan_container(scan *s, const char *const *fields, span *found)
{
    bool object = *s->p == '{';
    unsigned char close = object ? '}' : ']';
    if (++s->depth > SCAN_MAX_DEPTH)
        return false;
    s->p++;
    skip_ws(s);
    if (s->p < s->end && *s->p == close) {
        s->p++;
        s->depth--;
        return true;
    }
    for (;;) {
        int field = -1;
        if (object) {
            const unsigned char *key = s->p;
            bool escaped;
            if (s->p >= s->end || *s->p != '"' || !scan_string(s, &escaped))
                return false;
            if (s->depth == 1 && fields != NULL) {
                if (escaped) /* "mess\u0061ges" is "messages": leave such keys to jansson */
                    return false;
                size_t klen = (size_t)(s->p - key) - 2;
                for (int i = 0; fields[i] != NULL; i++)
                    if (strlen(fields[i]) == klen && memcmp(key + 1, fields[i], klen) == 0)
                        field = i;
            }
            skip_ws(s);
            if (s->p >= s->end || *s->p != ':')
                return false;
            s->p++;
            skip_ws(s);
        }
        const unsigned char *v = s->p;
        if (!scan_value(s))
            return false;
        if (field >= 0)
            found[field] = (span){(const char *)v, (size_t)(s->p - v)};
        skip_ws(s);
        if (s->p >= s->end)
            return false;
        if (*s->p == close) {
            s->p++;
            s->depth--;
            return true;
        }
        if (*s->p != ',')
            return false;
        s->p++;
        skip_ws(s);
    }
}

static bool scan_value(scan *s)
{
    if (s->p >= s->end)
        return false;
    bool escaped;
    switch (*s->p) {
    case '"': return scan_string(s, &escaped);
    case '{':
    case '[': return scan_container(s, NULL, NULL);
    case 't': return scan_literal(s, "true");
    case 'f': return scan_literal(s, "false");
    case 'n': return scan_literal(s, "null");
    default: return scan_number(s);
    }
}

enum {
    F_MESSAGES,
    F_STREAM,
    F_MODEL,
    F_COUNT
};

/* The scan; false when the body is not one it accepts as it is (the full parse decides). */
static bool read_scanned(const char *text, size_t len, demo_body *out)
{
    static const char *const fields[F_COUNT + 1] = {"messages", "stream", "model", NULL};
    span found[F_COUNT] = {{0}};
    scan s = {(const unsigned char *)text, (const unsigned char *)text + len, 0};
    skip_ws(&s);
    if (s.p >= s.end || *s.p != '{' || !scan_container(&s, fields, found))
        return false;
    skip_ws(&s);
    if (s.p != s.end)
        return false;
    const span *m = &found[F_MESSAGES], *st = &found[F_STREAM], *md = &found[F_MODEL];
    if (m->s == NULL || m->s[0] != '[')
        return false;
    if (st->s != NULL && !(st->len == 4 && memcmp(st->s, "true", 4) == 0) &&
        !(st->len == 5 && memcmp(st->s, "false", 5) == 0) &&
        !(st->len == 4 && memcmp(st->s, "null", 4) == 0))
        return false;
    if (md->s != NULL && md->s[0] != '"')
        return false;
    out->stream = st->s != NULL && st->s[0] == 't';
    if (md->s != NULL) {
        if (memchr(md->s, '\\', md->len) == NULL) {
            out->model = strndup(md->s + 1, md->len - 2);
        } else {
            json_t *v = json_loadb(md->s, md->len, JSON_DECODE_ANY, NULL);
            out->model = json_is_string(v) ? strdup(json_string_value(v)) : NULL;
            json_decref(v);
        }
        if (out->model == NULL)
            return false;
    }
    out->messages = json_loadb(m->s, m->len, 0, NULL);
    if (!json_is_array(out->messages)) {
        demo_body_free(out);
        return false;
    }
    out->scanned = true;
    return true;
}

/* ---- the full parse ---- */

static int read_parsed(const char *text, size_t len, demo_body *out, char *why, size_t whylen)
{
    json_error_t jerr;
    json_t *body = json_loadb(text, len, 0, &jerr);
    int rc = -1;
    if (body == NULL) {
        snprintf(why, whylen, "the request body is not valid JSON: %s (line %d, column %d)",
                 jerr.text, jerr.line, jerr.column);
        return -1;
    }
    const json_t *messages = json_object_get(body, "messages");
    const json_t *stream = json_object_get(body, "stream");
    const json_t *model = json_object_get(body, "model");
    if (!json_is_object(body)) {
        snprintf(why, whylen, "the request body must be a JSON object");
    } else if (!json_is_array(messages)) {
        snprintf(why, whylen, "\"messages\" is %s: it must be an array of messages",
                 messages ? "not an array" : "missing");
    } else if (stream != NULL && !json_is_boolean(stream) && !json_is_null(stream)) {
        snprintf(why, whylen, "\"stream\" must be true or false");
    } else if (model != NULL && !json_is_string(model)) {
        snprintf(why, whylen, "\"model\" must be a string");
    } else {
        out->stream = json_is_true(stream);
        out->model = model ? strdup(json_string_value(model)) : NULL;
        out->messages = json_incref((json_t *)messages);
        if (model != NULL && out->model == NULL) {
            demo_body_free(out);
            snprintf(why, whylen, "out of memory reading the request body");
        } else {
            rc = 0;
        }
    }
    json_decref(body);
    return rc;
}

int demo_body_read(const char *text, size_t len, demo_body *out, char *why, size_t whylen)
{
    memset(out, 0, sizeof *out);
    if (text == NULL)
        text = "";
    if (read_scanned(text, len, out))
        return 0;
    memset(out, 0, sizeof *out);
    return read_parsed(text, len, out, why, whylen);
}

void demo_body_free(demo_body *b)
{
    if (b == NULL)
        return;
    json_decref(b->messages);
    free(b->model);
    memset(b, 0, sizeof *b);
}
