/* xml_calls.c — parser of Kortix's XML tool-call blocks (see xml_calls.h for the format and
 * the rules). Plain string scanning, no regular expressions and no XML library: the format is
 * not real XML (no escaping), and Kortix itself cuts blocks out with string search. */
#include "xml_calls.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kx/utf8.h"

#define OPEN_BLOCK "<function_calls>"
#define CLOSE_BLOCK "</function_calls>"
#define CLOSE_INVOKE "</invoke>"
#define CLOSE_PARAM "</parameter>"

/* Case-insensitive search of needle in hay[0..len); returns the offset or -1. Adds the bytes
 * it went over to *work (NULL: not counted). */
static long find_ci(const char *hay, size_t len, const char *needle, size_t *work)
{
    size_t n = strlen(needle);
    if (n == 0 || n > len) {
        if (work != NULL)
            *work += len;
        return -1;
    }
    for (size_t i = 0; i + n <= len; i++) {
        if (strncasecmp(hay + i, needle, n) == 0) {
            if (work != NULL)
                *work += i + n;
            return (long)i;
        }
    }
    if (work != NULL)
        *work += len;
    return -1;
}

/* Copies s[0..len) into a new NUL-terminated string (NULL on OOM). */
static char *dup_n(const char *s, size_t len)
{
    char *out = malloc(len + 1);
    if (out == NULL)
        return NULL;
    memcpy(out, s, len);
    out[len] = '\0';
    return out;
}

static void strip(const char **s, size_t *len)
{
    while (*len > 0 && isspace((unsigned char)(*s)[0])) {
        (*s)++;
        (*len)--;
    }
    while (*len > 0 && isspace((unsigned char)(*s)[*len - 1]))
        (*len)--;
}

/* "-12", "+7", "42": an optional sign and at least one digit, nothing else. */
static bool looks_integer(const char *s)
{
    if (*s == '+' || *s == '-')
        s++;
    if (!isdigit((unsigned char)*s))
        return false;
    /* NOLINTNEXTLINE(clang-analyzer-core.uninitialized.ArraySubscript): glibc ctype table */
    while (isdigit((unsigned char)*s))
        s++;
    return *s == '\0';
}

json_t *xml_calls_value(const char *raw, size_t len)
{
    strip(&raw, &len);
    char *v = dup_n(raw, len);
    if (v == NULL)
        return NULL;
    json_t *out = NULL;
    if (len > 0 && (v[0] == '{' || v[0] == '[')) {
        out = json_loadb(v, len, JSON_DECODE_ANY, NULL);
        if (out == NULL)
            out = json_string(v); /* not valid JSON: kept as written, as Kortix does */
    } else if (strcasecmp(v, "true") == 0) {
        out = json_true();
    } else if (strcasecmp(v, "false") == 0) {
        out = json_false();
    } else if (looks_integer(v)) {
        errno = 0;
        long long n = strtoll(v, NULL, 10);
        out = errno == ERANGE ? json_string(v) : json_integer(n);
    } else if (strchr(v, '.') != NULL && len > 0) {
        char *end = NULL;
        errno = 0;
        double d = strtod(v, &end);
        bool whole = end != NULL && *end == '\0' && errno == 0 && isfinite(d) &&
            !isspace((unsigned char)v[0]);
        out = whole ? json_real(d) : json_string(v);
    } else {
        out = json_string(v);
    }
    if (out == NULL) /* json_string refuses invalid UTF-8: keep the bytes readable anyway */
        out = json_stringn_nocheck(v, len);
    free(v);
    return out;
}

/* Whether a property's schema wants a string: "type": "string"; a list of types whose only one
 * besides "null" is "string"; or "anyOf" / "oneOf" whose branches all want a string or are
 * {"type": "null"}, at least one a string (an optional string as pydantic writes it). depth
 * bounds the nesting a schema from outside (an MCP server) can make us follow. */
static bool wants_string(const json_t *prop, int depth)
{
    const json_t *type = json_object_get(prop, "type");
    if (json_is_string(type))
        return strcmp(json_string_value(type), "string") == 0;
    bool string = false;
    size_t i;
    const json_t *t;
    if (type != NULL) {
        json_array_foreach(type, i, t)
        {
            const char *name = json_string_value(t);
            if (name != NULL && strcmp(name, "string") == 0)
                string = true;
            else if (name == NULL || strcmp(name, "null") != 0)
                return false;
        }
        return string;
    }
    const json_t *branches = json_object_get(prop, "anyOf");
    if (branches == NULL)
        branches = json_object_get(prop, "oneOf");
    if (depth <= 0)
        return false;
    json_array_foreach(branches, i, t)
    {
        const char *only = json_string_value(json_object_get(t, "type"));
        if (only != NULL && strcmp(only, "null") == 0)
            continue;
        if (!wants_string(t, depth - 1))
            return false;
        string = true;
    }
    return string;
}

bool xml_calls_apply_schema(xml_call *c, const json_t *parameters)
{
    const json_t *props = json_object_get(parameters, "properties");
    const char *key;
    json_t *raw;
    json_object_foreach(c->raw_parameters, key, raw)
    {
        if (wants_string(json_object_get(props, key), 4) &&
            json_object_set_nocheck(c->arguments, key, raw) != 0)
            return false;
    }
    return true;
}

/* Parses `name=["']X["']` at *p (after the tag name and its white space). On success *name and
 * *name_len point into the text and *p is moved past the closing '>'. */
static bool parse_name_attr(const char **p, const char *end, const char **name, size_t *name_len)
{
    const char *s = *p;
    if (end - s < 5 || strncasecmp(s, "name", 4) != 0)
        return false;
    s += 4;
    while (s < end && isspace((unsigned char)*s))
        s++;
    if (s >= end || *s != '=')
        return false;
    s++;
    while (s < end && isspace((unsigned char)*s))
        s++;
    if (s >= end || (*s != '"' && *s != '\''))
        return false;
    char quote = *s++;
    const char *start = s;
    while (s < end && *s != quote && *s != '"' && *s != '\'')
        s++;
    if (s >= end || *s != quote)
        return false;
    *name = start;
    *name_len = (size_t)(s - start);
    s++;
    while (s < end && isspace((unsigned char)*s))
        s++;
    if (s >= end || *s != '>')
        return false;
    *p = s + 1;
    return true;
}

/* Finds the next "<tag" followed by white space or '>' in [from, end) (so "<invoke>" is found
 * and then refused for its missing name, but "<invokes" is not a match); start or NULL. */
static const char *find_open_tag(const char *from, const char *end, const char *tag, size_t *work)
{
    size_t n = strlen(tag);
    while (from < end) {
        long at = find_ci(from, (size_t)(end - from), tag, work);
        if (at < 0)
            return NULL;
        const char *t = from + at;
        if (t + n < end && (isspace((unsigned char)t[n]) || t[n] == '>'))
            return t;
        from = t + n;
    }
    return NULL;
}

static xml_calls_result fail(xml_call *c, const char *fmt, const char *detail)
{
    snprintf(c->error, sizeof c->error, fmt, detail ? detail : "");
    return XML_CALLS_ERROR;
}

/* Sets c->raw_xml to s[0..len), cut to XML_CALLS_EXCERPT_MAX bytes when excerpt (at a UTF-8
 * character boundary: the text goes into JSON rows). false on OOM. */
static bool set_raw_xml(xml_call *c, const char *s, size_t len, bool excerpt)
{
    if (excerpt)
        len = kx_utf8_floor(s, len, XML_CALLS_EXCERPT_MAX);
    free(c->raw_xml);
    c->raw_xml = dup_n(s, len);
    return c->raw_xml != NULL;
}

/* Parses the parameters of one invoke body [s, end) into c. */
static xml_calls_result parse_params(xml_call *c, const char *s, const char *end, size_t *work)
{
    for (;;) {
        const char *tag = find_open_tag(s, end, "<parameter", work);
        if (tag == NULL)
            return XML_CALLS_FOUND;
        const char *p = tag + strlen("<parameter");
        while (p < end && isspace((unsigned char)*p))
            p++;
        const char *name;
        size_t name_len;
        if (!parse_name_attr(&p, end, &name, &name_len) || name_len == 0)
            return fail(c, "a <parameter> tag has no name=\"...\" attribute%s", NULL);
        if (memchr(name, '\0', name_len) != NULL)
            return fail(c, "a <parameter> name contains a NUL character%s", NULL);
        long close = find_ci(p, (size_t)(end - p), CLOSE_PARAM, work);
        char pname[128];
        snprintf(pname, sizeof pname, "%.*s", (int)(name_len < 100 ? name_len : 100), name);
        if (close < 0)
            return fail(c, "the parameter \"%s\" has no closing </parameter> tag", pname);
        char *key = dup_n(name, name_len);
        json_t *value = xml_calls_value(p, (size_t)close);
        const char *raw = p;
        size_t raw_len = (size_t)close;
        strip(&raw, &raw_len);
        json_t *raw_value = json_stringn_nocheck(raw, raw_len);
        if (key == NULL || value == NULL || raw_value == NULL ||
            json_object_set_new_nocheck(c->arguments, key, value) != 0 ||
            json_object_set_new_nocheck(c->raw_parameters, key, raw_value) != 0) {
            free(key);
            return fail(c, "out of memory while parsing the tool call%s", NULL);
        }
        free(key);
        s = p + close + strlen(CLOSE_PARAM);
    }
}

/* The walk's first step: finds the block and its end, once. false: there is none. */
static bool walk_open(xml_walk *w, const char *text, size_t len)
{
    w->started = true;
    long open = find_ci(text, len, OPEN_BLOCK, &w->work);
    if (open < 0)
        return false;
    w->block_start = (size_t)open;
    w->from = (size_t)open + strlen(OPEN_BLOCK);
    long close = find_ci(text + w->from, len - w->from, CLOSE_BLOCK, &w->work);
    w->closed = close >= 0;
    w->body_end = close < 0 ? len : w->from + (size_t)close;
    w->block_end = close < 0 ? len : w->body_end + strlen(CLOSE_BLOCK);
    return true;
}

/* The next invoke of the walk's block into c (set up by the caller); moves w->from past it. */
static xml_calls_result walk_invoke(xml_walk *w, const char *text, xml_call *c)
{
    const char *block = text + w->block_start, *end = text + w->body_end;
    size_t block_len = w->block_end - w->block_start;
    if (!w->closed) {
        if (!set_raw_xml(c, block, block_len, true))
            return fail(c, "out of memory while parsing the tool call%s", NULL);
        return fail(c, "the <function_calls> block has no closing </function_calls> tag%s", NULL);
    }
    const char *inv = find_open_tag(text + w->from, end, "<invoke", &w->work);
    if (inv == NULL && w->invokes > 0)
        return XML_CALLS_NONE;
    if (!set_raw_xml(c, inv ? inv : block, inv ? (size_t)(end - inv) : block_len, true))
        return fail(c, "out of memory while parsing the tool call%s", NULL);
    if (inv == NULL)
        return fail(c, "the <function_calls> block has no <invoke name=\"...\"> element%s", NULL);
    w->invokes++;
    const char *p = inv + strlen("<invoke");
    while (p < end && isspace((unsigned char)*p))
        p++;
    const char *name;
    size_t name_len;
    if (!parse_name_attr(&p, end, &name, &name_len) || name_len == 0)
        return fail(c, "the <invoke> tag needs a name=\"function_name\" attribute%s", NULL);
    if (memchr(name, '\0', name_len) != NULL)
        return fail(c, "the <invoke> name contains a NUL character%s", NULL);
    char *fn = dup_n(name, name_len);
    if (fn == NULL)
        return fail(c, "out of memory while parsing the tool call%s", NULL);
    free(c->function_name);
    c->function_name = fn;
    long inv_close = find_ci(p, (size_t)(end - p), CLOSE_INVOKE, &w->work);
    if (inv_close < 0)
        return fail(c, "the invoke of \"%s\" has no closing </invoke> tag", fn);
    const char *inv_end = p + inv_close + strlen(CLOSE_INVOKE);
    w->from = (size_t)(inv_end - text);
    if (!set_raw_xml(c, inv, (size_t)(inv_end - inv), false))
        return fail(c, "out of memory while parsing the tool call%s", NULL);
    return parse_params(c, p, p + inv_close, &w->work);
}

xml_calls_result xml_calls_next(xml_walk *w, const char *text, size_t len, xml_call *c)
{
    memset(c, 0, sizeof *c);
    if (w->done || text == NULL || (!w->started && !walk_open(w, text, len))) {
        w->done = true;
        return XML_CALLS_NONE;
    }
    c->block_start = w->block_start;
    c->block_end = w->block_end;
    c->arguments = json_object();
    c->raw_parameters = json_object();
    c->function_name = strdup("");
    xml_calls_result res =
        c->arguments == NULL || c->raw_parameters == NULL || c->function_name == NULL
        ? fail(c, "out of memory while parsing the tool call%s", NULL)
        : walk_invoke(w, text, c);
    if (res == XML_CALLS_NONE) {
        xml_call_clear(c);
        memset(c, 0, sizeof *c);
    }
    if (res != XML_CALLS_FOUND)
        w->done = true;
    return res;
}

xml_calls_result xml_calls_find(const char *text, size_t len, xml_call *c)
{
    return xml_calls_find_at(text, len, 0, c);
}

xml_calls_result xml_calls_find_at(const char *text, size_t len, size_t index, xml_call *c)
{
    xml_walk w = {0};
    for (size_t k = 0;; k++) {
        xml_calls_result res = xml_calls_next(&w, text, len, c);
        if (k == index || res == XML_CALLS_NONE)
            return res;
        xml_call_clear(c);
        if (res == XML_CALLS_ERROR) { /* the walk ends at an error: no later invoke */
            memset(c, 0, sizeof *c);
            return XML_CALLS_NONE;
        }
    }
}

bool xml_calls_block_complete(const char *text, size_t len)
{
    long open = find_ci(text, len, OPEN_BLOCK, NULL);
    if (open < 0)
        return false;
    size_t from = (size_t)open + strlen(OPEN_BLOCK);
    return find_ci(text + from, len - from, CLOSE_BLOCK, NULL) >= 0;
}

bool xml_calls_scan(xml_scan *st, const char *text, size_t len)
{
    const size_t open_n = strlen(OPEN_BLOCK), close_n = strlen(CLOSE_BLOCK);
    if (!st->open_seen) {
        /* a tag may straddle the previous end: search again from that many bytes before it */
        size_t start = st->from >= open_n - 1 ? st->from - (open_n - 1) : 0;
        if (start > len)
            start = len;
        long at = find_ci(text + start, len - start, OPEN_BLOCK, NULL);
        if (at < 0) {
            st->from = len;
            return false;
        }
        st->open_seen = true;
        st->open_end = start + (size_t)at + open_n;
        st->from = st->open_end;
    }
    size_t start = st->from >= close_n - 1 ? st->from - (close_n - 1) : 0;
    if (start < st->open_end)
        start = st->open_end;
    if (start > len)
        start = len;
    if (find_ci(text + start, len - start, CLOSE_BLOCK, NULL) >= 0)
        return true;
    st->from = len;
    return false;
}

void xml_call_clear(xml_call *c)
{
    if (c == NULL)
        return;
    free(c->function_name);
    free(c->raw_xml);
    json_decref(c->arguments);
    json_decref(c->raw_parameters);
    memset(c, 0, sizeof *c);
}
