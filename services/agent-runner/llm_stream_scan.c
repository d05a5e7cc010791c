/* llm_stream_scan.c — folds the common shapes of an OpenAI chat.completion.chunk into an
 * llm_stream without building a jansson tree (see llm_stream_scan.h).
 *
 * One pass checks the whole text as JSON the way jansson's parser would take it and notes
 * where the fields the fold reads are (spans into the text); only when the text is accepted
 * and every field is of a shape this file folds is anything applied, in the order
 * llm_stream_feed's tree walk applies it. Everything else is left to the tree: an error
 * object, "choices" that is not an array, an escaped key or name/id/model/finish_reason, a
 * key the fold reads given twice (jansson keeps the last one), arguments sent as an object,
 * more than SCAN_MAX_CALLS calls in one chunk, \u escapes of surrogates or of NUL, exponents
 * and long numbers (jansson fails on overflows), nesting deeper than SCAN_MAX_DEPTH, and text
 * that is not JSON at all (the tree words the error). test_runner_llm_stream_scan.c compares
 * both ways on canned, demo-model and mutated chunks. */
#include "llm_stream_scan.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "kx/json_scan.h"

#define SCAN_MAX_DEPTH 32
#define SCAN_MAX_CALLS 8
#define SCAN_MAX_DIGITS 18 /* fits a long long: longer integers are left to the tree */
#define SCAN_MAX_FRACTION 30

typedef enum vkind {
    V_NONE = 0,
    V_STR,
    V_INT,
    V_NULL,
    V_OTHER,
    V_OBJ,
    V_ARR
} vkind;

/* A value the fold reads: a string as its raw span between the quotes. */
typedef struct val {
    vkind kind;
    const char *s;
    size_t n;
    bool esc; /* the string holds a backslash */
    long long i;
} val;

typedef struct fn_slots {
    val name, arguments;
} fn_slots;

typedef struct call_slots {
    bool object; /* the element is an object (others are skipped, keeping their position) */
    val index, id;
    bool has_fn;
    fn_slots fn;
} call_slots;

typedef struct delta_slots {
    val content;
    bool has_calls; /* "tool_calls" is an array */
    size_t ncalls;
    call_slots calls[SCAN_MAX_CALLS];
} delta_slots;

typedef struct scan {
    const unsigned char *p, *end;
    int depth;
    /* what the fold reads */
    val error, model, choices, usage_v, finish;
    val prompt, completion, total;
    bool has_choice0; /* choices[0] is an object */
    bool has_delta, has_message;
    delta_slots delta, message;
} scan;

static void skip_ws(scan *s)
{
    s->p = kx_json_skip_ws(s->p, s->end);
}

/* The string at s->p ('"') into v; false when it is not one the scan takes
 * (kx/json_scan.h says which). */
static bool scan_string(scan *s, val *v)
{
    const unsigned char *after = kx_json_scan_string(s->p, s->end, &v->esc);
    if (after == NULL)
        return false;
    v->kind = V_STR;
    v->s = (const char *)s->p + 1;
    v->n = (size_t)(after - s->p) - 2;
    s->p = after;
    return true;
}

/* A number: integers of up to SCAN_MAX_DIGITS digits (their value in v), reals of up to
 * SCAN_MAX_FRACTION fraction digits without an exponent; anything else is left to the tree. */
static bool scan_number(scan *s, val *v)
{
    kx_json_number n;
    const unsigned char *after = kx_json_scan_number(s->p, s->end, &n);
    if (after == NULL || n.int_digits > SCAN_MAX_DIGITS || n.frac_digits > SCAN_MAX_FRACTION ||
        n.has_exp)
        return false;
    v->kind = n.frac_digits > 0 ? V_OTHER : V_INT;
    v->i = n.value;
    s->p = after;
    return true;
}

static bool scan_literal(scan *s, const char *word, vkind kind, val *v)
{
    const unsigned char *after = kx_json_scan_literal(s->p, s->end, word);
    if (after == NULL)
        return false;
    s->p = after;
    v->kind = kind;
    return true;
}

static bool scan_value(scan *s, val *v);

/* The key at s->p and the colon after it; false when it is not a string the scan takes. */
static bool scan_key(scan *s, val *k)
{
    skip_ws(s);
    if (s->p >= s->end || *s->p != '"' || !scan_string(s, k))
        return false;
    skip_ws(s);
    if (s->p >= s->end || *s->p != ':')
        return false;
    s->p++;
    skip_ws(s);
    return s->p < s->end;
}

static bool key_is(const val *k, const char *name)
{
    size_t n = strlen(name);
    return k->n == n && memcmp(k->s, name, n) == 0;
}

/* The value of a key the fold reads into slot; false when the key came before (jansson keeps
 * the last) or the value is not one the scan takes. */
static bool take(scan *s, val *slot)
{
    if (slot->kind != V_NONE)
        return false;
    return scan_value(s, slot);
}

/* After a member or an element: 0 when the container closed here (close), 1 after a comma
 * (another item follows), -1 when neither. */
static int after_item(scan *s, char close)
{
    skip_ws(s);
    if (s->p >= s->end)
        return -1;
    if (*s->p == (unsigned char)close) {
        s->p++;
        s->depth--;
        return 0;
    }
    if (*s->p != ',')
        return -1;
    s->p++;
    return 1;
}

/* An object whose members go to member() (which reads the value at s->p); false as soon as
 * one is refused. An escaped key is refused: it could spell a key the fold reads. */
typedef bool (*member_fn)(scan *s, const val *key, void *ctx);

static bool scan_object(scan *s, member_fn member, void *ctx)
{
    if (++s->depth > SCAN_MAX_DEPTH)
        return false;
    s->p++; /* '{' */
    skip_ws(s);
    if (s->p < s->end && *s->p == '}') {
        s->p++;
        s->depth--;
        return true;
    }
    for (;;) {
        val k = {0};
        if (!scan_key(s, &k))
            return false;
        if (member != NULL && k.esc)
            return false;
        if (member != NULL ? !member(s, &k, ctx) : !scan_value(s, &(val){0}))
            return false;
        int next = after_item(s, '}');
        if (next <= 0)
            return next == 0;
    }
}

/* An array whose elements go to element() (index i, value at s->p). */
typedef bool (*element_fn)(scan *s, size_t i, void *ctx);

static bool scan_array(scan *s, element_fn element, void *ctx)
{
    if (++s->depth > SCAN_MAX_DEPTH)
        return false;
    s->p++; /* '[' */
    skip_ws(s);
    if (s->p < s->end && *s->p == ']') {
        s->p++;
        s->depth--;
        return true;
    }
    for (size_t i = 0;; i++) {
        skip_ws(s);
        if (s->p >= s->end)
            return false;
        if (element != NULL ? !element(s, i, ctx) : !scan_value(s, &(val){0}))
            return false;
        int next = after_item(s, ']');
        if (next <= 0)
            return next == 0;
    }
}

/* Any value, checked; its kind (and a string's span, an integer's value) into v. */
static bool scan_value(scan *s, val *v)
{
    if (s->p >= s->end)
        return false;
    switch (*s->p) {
    case '{': v->kind = V_OBJ; return scan_object(s, NULL, NULL);
    case '[': v->kind = V_ARR; return scan_array(s, NULL, NULL);
    case '"': return scan_string(s, v);
    case 't': return scan_literal(s, "true", V_OTHER, v);
    case 'f': return scan_literal(s, "false", V_OTHER, v);
    case 'n': return scan_literal(s, "null", V_NULL, v);
    default: return scan_number(s, v);
    }
}

/* ---- the members the fold reads, level by level ---- */

static bool fn_member(scan *s, const val *k, void *ctx)
{
    fn_slots *f = ctx;
    if (key_is(k, "name"))
        return take(s, &f->name);
    if (key_is(k, "arguments"))
        return take(s, &f->arguments);
    return scan_value(s, &(val){0});
}

static bool call_member(scan *s, const val *k, void *ctx)
{
    call_slots *c = ctx;
    if (key_is(k, "index"))
        return take(s, &c->index);
    if (key_is(k, "id"))
        return take(s, &c->id);
    if (key_is(k, "function")) {
        if (c->has_fn)
            return false;
        c->has_fn = *s->p == '{';
        return c->has_fn ? scan_object(s, fn_member, &c->fn) : scan_value(s, &(val){0});
    }
    return scan_value(s, &(val){0});
}

static bool call_element(scan *s, size_t i, void *ctx)
{
    delta_slots *d = ctx;
    if (i >= SCAN_MAX_CALLS)
        return false;
    call_slots *c = &d->calls[i];
    d->ncalls = i + 1;
    c->object = *s->p == '{';
    return c->object ? scan_object(s, call_member, c) : scan_value(s, &(val){0});
}

static bool delta_member(scan *s, const val *k, void *ctx)
{
    delta_slots *d = ctx;
    if (key_is(k, "content"))
        return take(s, &d->content);
    if (key_is(k, "tool_calls")) {
        if (d->has_calls)
            return false;
        d->has_calls = *s->p == '[';
        return d->has_calls ? scan_array(s, call_element, d) : scan_value(s, &(val){0});
    }
    return scan_value(s, &(val){0});
}

/* "delta" or "message": an object is read into d; has (seen) refuses it twice. */
static bool delta_value(scan *s, bool *has, bool *seen, delta_slots *d)
{
    if (*seen)
        return false;
    *seen = true;
    *has = *s->p == '{';
    return *has ? scan_object(s, delta_member, d) : scan_value(s, &(val){0});
}

typedef struct choice_ctx {
    bool seen_delta, seen_message;
} choice_ctx;

static bool choice_member(scan *s, const val *k, void *ctx)
{
    choice_ctx *c = ctx;
    if (key_is(k, "delta"))
        return delta_value(s, &s->has_delta, &c->seen_delta, &s->delta);
    if (key_is(k, "message"))
        return delta_value(s, &s->has_message, &c->seen_message, &s->message);
    if (key_is(k, "finish_reason"))
        return take(s, &s->finish);
    return scan_value(s, &(val){0});
}

static bool choice_element(scan *s, size_t i, void *ctx)
{
    (void)ctx;
    if (i > 0 || *s->p != '{')
        return scan_value(s, &(val){0});
    s->has_choice0 = true;
    choice_ctx c = {0};
    return scan_object(s, choice_member, &c);
}

static bool usage_member(scan *s, const val *k, void *ctx)
{
    (void)ctx;
    if (key_is(k, "prompt_tokens"))
        return take(s, &s->prompt);
    if (key_is(k, "completion_tokens"))
        return take(s, &s->completion);
    if (key_is(k, "total_tokens"))
        return take(s, &s->total);
    return scan_value(s, &(val){0});
}

static bool root_member(scan *s, const val *k, void *ctx)
{
    (void)ctx;
    if (key_is(k, "error"))
        return take(s, &s->error);
    if (key_is(k, "model"))
        return take(s, &s->model);
    if (key_is(k, "choices")) {
        if (s->choices.kind != V_NONE)
            return false;
        if (*s->p != '[')
            return scan_value(s, &s->choices);
        s->choices.kind = V_ARR;
        return scan_array(s, choice_element, NULL);
    }
    if (key_is(k, "usage")) {
        if (s->usage_v.kind != V_NONE)
            return false;
        if (*s->p != '{')
            return scan_value(s, &s->usage_v);
        s->usage_v.kind = V_OBJ;
        return scan_object(s, usage_member, NULL);
    }
    return scan_value(s, &(val){0});
}

/* ---- applying what the scan found ---- */

/* A string that is an escaped name/id/model/finish_reason is left to the tree. */
static bool plain(const val *v)
{
    return v->kind != V_STR || !v->esc;
}

static bool foldable(const delta_slots *d)
{
    for (size_t i = 0; i < d->ncalls; i++) {
        const call_slots *c = &d->calls[i];
        if (!c->object)
            continue;
        if (!plain(&c->id) || !plain(&c->fn.name) || c->fn.arguments.kind == V_OBJ)
            return false;
    }
    return true;
}

static void put_utf8(char *out, size_t *o, int cp)
{
    if (cp < 0x80) {
        out[(*o)++] = (char)cp;
    } else if (cp < 0x800) {
        out[(*o)++] = (char)(0xC0 | (cp >> 6));
        out[(*o)++] = (char)(0x80 | (cp & 0x3F));
    } else {
        out[(*o)++] = (char)(0xE0 | (cp >> 12));
        out[(*o)++] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[(*o)++] = (char)(0x80 | (cp & 0x3F));
    }
}

/* The decoded text of the string v appended to b (the scan checked its escapes). */
static kx_err add_string(kx_buf *b, const val *v)
{
    if (!v->esc)
        return kx_buf_add(b, v->s, v->n);
    /* decoded text is never longer than the escaped text */
    kx_err err = kx_buf_reserve(b, v->n);
    if (err != KX_OK)
        return err;
    char *out = b->s + b->len;
    size_t o = 0;
    for (size_t i = 0; i < v->n; i++) {
        char c = v->s[i];
        if (c != '\\') {
            out[o++] = c;
            continue;
        }
        char e = v->s[++i];
        switch (e) {
        case 'b': out[o++] = '\b'; break;
        case 'f': out[o++] = '\f'; break;
        case 'n': out[o++] = '\n'; break;
        case 'r': out[o++] = '\r'; break;
        case 't': out[o++] = '\t'; break;
        case 'u':
            put_utf8(out, &o, kx_json_hex4((const unsigned char *)v->s + i + 1));
            i += 4;
            break;
        default: out[o++] = e; break; /* " \ / */
        }
    }
    b->len += o;
    b->s[b->len] = '\0';
    return KX_OK;
}

static llm_feed_result fold_calls(llm_stream *st, const delta_slots *d)
{
    for (size_t i = 0; i < d->ncalls; i++) {
        const call_slots *cs = &d->calls[i];
        if (!cs->object)
            continue;
        llm_tool_call *c;
        llm_feed_result res =
            llm_stream_call_at(st, cs->index.kind == V_INT ? cs->index.i : (long long)i, &c);
        if (res != LLM_FEED_OK)
            return res;
        st->received_output = true;
        if (cs->id.kind == V_STR && cs->id.n > 0 && c->id.len == 0 &&
            kx_buf_add(&c->id, cs->id.s, cs->id.n) != KX_OK)
            return LLM_FEED_NOMEM;
        if (!cs->has_fn)
            continue;
        const val *name = &cs->fn.name;
        if (name->kind == V_STR && name->n > 0 &&
            !(c->name.len == name->n && memcmp(c->name.s, name->s, name->n) == 0) &&
            kx_buf_add(&c->name, name->s, name->n) != KX_OK)
            return LLM_FEED_NOMEM;
        const val *args = &cs->fn.arguments;
        if (args->kind == V_STR && args->n > 0 && add_string(&c->arguments, args) != KX_OK)
            return LLM_FEED_NOMEM;
    }
    return LLM_FEED_OK;
}

int llm_stream_scan_feed(llm_stream *st, const char *data, size_t len)
{
    scan s = {.p = (const unsigned char *)data, .end = (const unsigned char *)data + len};
    skip_ws(&s);
    if (s.p >= s.end || *s.p != '{' || !scan_object(&s, root_member, NULL))
        return -1;
    skip_ws(&s);
    if (s.p != s.end)
        return -1; /* text after the object */
    if (s.error.kind != V_NONE && s.error.kind != V_NULL)
        return -1; /* the provider's error: worded by the tree */
    if (s.choices.kind != V_NONE && s.choices.kind != V_ARR)
        return -1; /* refused by the tree */
    const delta_slots *d = !s.has_choice0 ? NULL
        : s.has_delta                     ? &s.delta
        : s.has_message                   ? &s.message
                                          : NULL;
    if (!plain(&s.model) || !plain(&s.finish) || (d != NULL && !foldable(d)))
        return -1;
    /* accepted: applied as llm_stream_feed applies the tree */
    st->nchunks++;
    if (s.model.kind == V_STR && st->model[0] == '\0')
        llm_field_set(st->model, sizeof st->model, s.model.s, s.model.n);
    if (d != NULL) {
        if (d->content.kind == V_STR && d->content.n > 0) {
            if (add_string(&st->content, &d->content) != KX_OK)
                return LLM_FEED_NOMEM;
            st->received_output = true;
        }
        llm_feed_result res = d->has_calls ? fold_calls(st, d) : LLM_FEED_OK;
        if (res != LLM_FEED_OK)
            return (int)res;
    }
    if (s.has_choice0 && s.finish.kind == V_STR && s.finish.n > 0)
        llm_field_set(st->finish_reason, sizeof st->finish_reason, s.finish.s, s.finish.n);
    if (s.usage_v.kind == V_OBJ)
        llm_usage_set(st, s.prompt.kind == V_INT ? s.prompt.i : 0,
                      s.completion.kind == V_INT ? s.completion.i : 0, s.total.kind == V_INT,
                      s.total.kind == V_INT ? s.total.i : 0);
    return LLM_FEED_OK;
}
