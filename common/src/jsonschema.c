/* jsonschema.c — the JSON Schema subset of tool schemas (see kx/jsonschema.h). */
#include "kx/jsonschema.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_DEPTH 32

/* ---- checking a schema ----------------------------------------------------------------- */

static const char *const type_names[] = {"object", "array",   "string", "integer",
                                         "number", "boolean", "null"};

static bool known_type(const char *t)
{
    for (size_t i = 0; i < sizeof type_names / sizeof type_names[0]; i++) {
        if (strcmp(t, type_names[i]) == 0)
            return true;
    }
    return false;
}

static kx_err bad(char *why, size_t whylen, const char *where, const char *what)
{
    snprintf(why, whylen, "schema%s: %s", where, what);
    return KX_ERR_INVALID;
}

static kx_err check_node(const json_t *s, const char *where, int depth, char *why, size_t whylen)
{
    if (depth > MAX_DEPTH)
        return bad(why, whylen, where, "nested too deeply");
    if (!json_is_object(s))
        return bad(why, whylen, where, "a schema must be an object");
    const char *key;
    const json_t *v;
    char sub[256];
    json_object_foreach((json_t *)s, key, v)
    {
        if (strcmp(key, "description") == 0 || strcmp(key, "title") == 0 ||
            strcmp(key, "default") == 0 || strcmp(key, "examples") == 0)
            continue;
        if (strcmp(key, "type") == 0) {
            if (json_is_string(v)) {
                if (!known_type(json_string_value(v)))
                    return bad(why, whylen, where, "unknown type");
            } else if (json_is_array(v) && json_array_size(v) > 0) {
                size_t i;
                const json_t *t;
                json_array_foreach(v, i, t)
                {
                    if (!json_is_string(t) || !known_type(json_string_value(t)))
                        return bad(why, whylen, where, "unknown type in the type list");
                }
            } else {
                return bad(why, whylen, where, "'type' must be a type name or a list of them");
            }
        } else if (strcmp(key, "properties") == 0) {
            if (!json_is_object(v))
                return bad(why, whylen, where, "'properties' must be an object");
            const char *pk;
            const json_t *pv;
            json_object_foreach((json_t *)v, pk, pv)
            {
                snprintf(sub, sizeof sub, "%s.properties.%.64s", where, pk);
                kx_err e = check_node(pv, sub, depth + 1, why, whylen);
                if (e != KX_OK)
                    return e;
            }
        } else if (strcmp(key, "required") == 0) {
            if (!json_is_array(v))
                return bad(why, whylen, where, "'required' must be a list of names");
            size_t i;
            const json_t *n;
            json_array_foreach(v, i, n)
            {
                if (!json_is_string(n))
                    return bad(why, whylen, where, "'required' must be a list of names");
            }
        } else if (strcmp(key, "additionalProperties") == 0) {
            if (!json_is_boolean(v)) {
                snprintf(sub, sizeof sub, "%s.additionalProperties", where);
                kx_err e = check_node(v, sub, depth + 1, why, whylen);
                if (e != KX_OK)
                    return e;
            }
        } else if (strcmp(key, "items") == 0) {
            snprintf(sub, sizeof sub, "%s.items", where);
            kx_err e = check_node(v, sub, depth + 1, why, whylen);
            if (e != KX_OK)
                return e;
        } else if (strcmp(key, "enum") == 0) {
            if (!json_is_array(v) || json_array_size(v) == 0)
                return bad(why, whylen, where, "'enum' must be a non-empty list");
        } else if (strcmp(key, "minimum") == 0 || strcmp(key, "maximum") == 0) {
            if (!json_is_number(v))
                return bad(why, whylen, where, "'minimum'/'maximum' must be numbers");
        } else if (strcmp(key, "minLength") == 0 || strcmp(key, "maxLength") == 0 ||
                   strcmp(key, "minItems") == 0 || strcmp(key, "maxItems") == 0) {
            if (!json_is_integer(v) || json_integer_value(v) < 0)
                return bad(why, whylen, where, "length bounds must be integers >= 0");
        } else {
            snprintf(sub, sizeof sub, "keyword '%.64s' is not supported", key);
            return bad(why, whylen, where, sub);
        }
    }
    return KX_OK;
}

kx_err kx_jsonschema_check(const json_t *schema, char *why, size_t whylen)
{
    return check_node(schema, "", 0, why, whylen);
}

/* ---- validating ------------------------------------------------------------------------ */

typedef struct vctx {
    unsigned flags;
    char *why;
    size_t whylen;
} vctx;

static const char *kind_of(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "?";
}

static bool is_integral(const json_t *v)
{
    if (json_is_integer(v))
        return true;
    if (!json_is_real(v))
        return false;
    double d = json_real_value(v);
    return isfinite(d) && d > -9.0e15 && d < 9.0e15 && d == (double)(long long)d;
}

static bool matches(const json_t *v, const char *type)
{
    if (strcmp(type, "object") == 0)
        return json_is_object(v);
    if (strcmp(type, "array") == 0)
        return json_is_array(v);
    if (strcmp(type, "string") == 0)
        return json_is_string(v);
    if (strcmp(type, "integer") == 0)
        return is_integral(v);
    if (strcmp(type, "number") == 0)
        return json_is_number(v);
    if (strcmp(type, "boolean") == 0)
        return json_is_boolean(v);
    if (strcmp(type, "null") == 0)
        return json_is_null(v);
    return false;
}

/* The value of a whole string (spaces around allowed) as a number, or NULL. */
static json_t *number_from(const char *s, bool integer)
{
    while (isspace((unsigned char)*s))
        s++;
    if (*s == '\0')
        return NULL;
    char *end = NULL;
    errno = 0;
    if (integer) {
        long long n = strtoll(s, &end, 10);
        if (errno != 0 || end == s)
            return NULL;
        while (isspace((unsigned char)*end))
            end++;
        return *end == '\0' ? json_integer(n) : NULL;
    }
    double d = strtod(s, &end);
    if (errno != 0 || end == s || !isfinite(d))
        return NULL;
    while (isspace((unsigned char)*end))
        end++;
    return *end == '\0' ? json_real(d) : NULL;
}

/* A replacement for v of the wanted type, when v's text says it unambiguously; NULL if none. */
static json_t *coerce(const json_t *v, const char *type)
{
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        if (strcmp(type, "boolean") == 0) {
            if (strcasecmp(s, "true") == 0)
                return json_true();
            if (strcasecmp(s, "false") == 0)
                return json_false();
            return NULL;
        }
        if (strcmp(type, "integer") == 0)
            return number_from(s, true);
        if (strcmp(type, "number") == 0)
            return number_from(s, false);
        if (strcmp(type, "array") == 0 || strcmp(type, "object") == 0) {
            json_t *p = json_loads(s, 0, NULL);
            if (p != NULL && matches(p, type))
                return p;
            json_decref(p);
        }
        return NULL;
    }
    if (strcmp(type, "string") == 0 && (json_is_number(v) || json_is_boolean(v))) {
        char *text = json_dumps(v, JSON_ENCODE_ANY);
        json_t *r = text != NULL ? json_string(text) : NULL;
        free(text);
        return r;
    }
    if (strcmp(type, "integer") == 0 && json_is_real(v) && is_integral(v))
        return json_integer((json_int_t)json_real_value(v));
    return NULL;
}

static void print_expected_types(const json_t *t, char *out, size_t outlen)
{
    if (json_is_string(t)) {
        const char *n = json_string_value(t);
        snprintf(out, outlen, "%s %s", strchr("aeiou", n[0]) != NULL ? "an" : "a", n);
        return;
    }
    size_t used = 0;
    size_t i;
    const json_t *e;
    out[0] = '\0';
    json_array_foreach(t, i, e)
    {
        int k = snprintf(out + used, outlen - used, "%s%s", i ? " or " : "", json_string_value(e));
        if (k < 0 || (size_t)k >= outlen - used)
            break;
        used += (size_t)k;
    }
}

static void short_json(const json_t *v, char *out, size_t outlen)
{
    char *t = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    if (t == NULL) {
        snprintf(out, outlen, "?");
        return;
    }
    if (strlen(t) > 40)
        snprintf(out, outlen, "%.37s...", t);
    else
        snprintf(out, outlen, "%s", t);
    free(t);
}

static kx_err fail(vctx *x, const char *path, const char *fmt, const char *a, const char *b)
{
    char msg[400];
    snprintf(msg, sizeof msg, fmt, a, b);
    if (path[0] != '\0')
        snprintf(x->why, x->whylen, "'%s' %s", path, msg);
    else
        snprintf(x->why, x->whylen, "the arguments %s", msg);
    return KX_ERR_INVALID;
}

static size_t utf8_chars(const char *s, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (((unsigned char)s[i] & 0xC0) != 0x80)
            n++;
    }
    return n;
}

static kx_err validate(vctx *x, const json_t *s, json_t **slot, const char *path, int depth);

static kx_err validate_type(vctx *x, const json_t *s, json_t **slot, const char *path)
{
    const json_t *t = json_object_get(s, "type");
    if (t == NULL)
        return KX_OK;
    size_t n = json_is_array(t) ? json_array_size(t) : 1;
    for (size_t i = 0; i < n; i++) {
        const json_t *ti = json_is_array(t) ? json_array_get(t, i) : t;
        if (matches(*slot, json_string_value(ti)))
            return KX_OK;
    }
    if (x->flags & KX_JS_COERCE) {
        for (size_t i = 0; i < n; i++) {
            const json_t *ti = json_is_array(t) ? json_array_get(t, i) : t;
            json_t *r = coerce(*slot, json_string_value(ti));
            if (r != NULL) {
                json_decref(*slot);
                *slot = r;
                return KX_OK;
            }
        }
    }
    char want[120];
    print_expected_types(t, want, sizeof want);
    return fail(x, path, "must be %s (got %s)", want, kind_of(*slot));
}

static kx_err validate_number(vctx *x, const json_t *s, const json_t *v, const char *path)
{
    const json_t *mn = json_object_get(s, "minimum"), *mx = json_object_get(s, "maximum");
    if (!json_is_number(v) || (mn == NULL && mx == NULL))
        return KX_OK;
    double d = json_number_value(v);
    if ((mn != NULL && d < json_number_value(mn)) || (mx != NULL && d > json_number_value(mx))) {
        char range[120], got[48];
        if (mn != NULL && mx != NULL)
            snprintf(range, sizeof range, "between %g and %g", json_number_value(mn),
                     json_number_value(mx));
        else if (mn != NULL)
            snprintf(range, sizeof range, "at least %g", json_number_value(mn));
        else
            snprintf(range, sizeof range, "at most %g", json_number_value(mx));
        short_json(v, got, sizeof got);
        return fail(x, path, "must be %s (got %s)", range, got);
    }
    return KX_OK;
}

static kx_err validate_string(vctx *x, const json_t *s, const json_t *v, const char *path)
{
    if (!json_is_string(v))
        return KX_OK;
    const json_t *mn = json_object_get(s, "minLength"), *mx = json_object_get(s, "maxLength");
    size_t n = utf8_chars(json_string_value(v), json_string_length(v));
    char lim[64];
    if (mn != NULL && (json_int_t)n < json_integer_value(mn)) {
        snprintf(lim, sizeof lim, "%lld", (long long)json_integer_value(mn));
        return fail(x, path, "must be at least %s character%s long", lim,
                    json_integer_value(mn) == 1 ? "" : "s");
    }
    if (mx != NULL && (json_int_t)n > json_integer_value(mx)) {
        snprintf(lim, sizeof lim, "%lld", (long long)json_integer_value(mx));
        return fail(x, path, "must be at most %s characters long%s", lim, "");
    }
    return KX_OK;
}

static kx_err validate_enum(vctx *x, const json_t *s, const json_t *v, const char *path)
{
    const json_t *e = json_object_get(s, "enum");
    if (e == NULL)
        return KX_OK;
    size_t i;
    const json_t *opt;
    json_array_foreach(e, i, opt)
    {
        if (json_equal((json_t *)opt, (json_t *)v))
            return KX_OK;
    }
    char list[240] = "", got[48];
    size_t used = 0;
    json_array_foreach(e, i, opt)
    {
        char one[48];
        short_json(opt, one, sizeof one);
        int k = snprintf(list + used, sizeof list - used, "%s%s", i ? ", " : "", one);
        if (k < 0 || (size_t)k >= sizeof list - used)
            break;
        used += (size_t)k;
    }
    short_json(v, got, sizeof got);
    char msg[300];
    snprintf(msg, sizeof msg, "%s (got %s)", list, got);
    return fail(x, path, "must be one of %s%s", msg, "");
}

static void join_path(char *out, size_t outlen, const char *path, const char *key)
{
    if (path[0] == '\0')
        snprintf(out, outlen, "%.100s", key);
    else
        snprintf(out, outlen, "%s.%.100s", path, key);
}

static bool is_required(const json_t *req, const char *key)
{
    size_t i;
    const json_t *n;
    json_array_foreach(req, i, n)
    {
        if (strcmp(json_string_value(n), key) == 0)
            return true;
    }
    return false;
}

static bool allows_null(const json_t *s)
{
    const json_t *t = json_object_get(s, "type");
    if (t == NULL)
        return true;
    if (json_is_string(t))
        return strcmp(json_string_value(t), "null") == 0;
    size_t i;
    const json_t *e;
    json_array_foreach(t, i, e)
    {
        if (strcmp(json_string_value(e), "null") == 0)
            return true;
    }
    return false;
}

static kx_err validate_object(vctx *x, const json_t *s, json_t *obj, const char *path, int depth)
{
    if (!json_is_object(obj))
        return KX_OK;
    const json_t *props = json_object_get(s, "properties");
    const json_t *req = json_object_get(s, "required");
    const json_t *addl = json_object_get(s, "additionalProperties");
    char sub[400];
    size_t i;
    const json_t *name;
    json_array_foreach(req, i, name)
    {
        if (json_object_get(obj, json_string_value(name)) == NULL) {
            join_path(sub, sizeof sub, path, json_string_value(name));
            snprintf(x->why, x->whylen, "'%s' is required", sub);
            return KX_ERR_INVALID;
        }
    }
    const char *key;
    json_t *val;
    void *tmp;
    json_object_foreach_safe(obj, tmp, key, val)
    {
        const json_t *ps = props != NULL ? json_object_get(props, key) : NULL;
        join_path(sub, sizeof sub, path, key);
        if ((x->flags & KX_JS_COERCE) && json_is_null(val) && !is_required(req, key) &&
            !allows_null(ps)) {
            json_object_del(obj, key); /* an optional argument given as null: not given */
            continue;
        }
        if (ps == NULL) {
            if (json_is_false(addl))
                return fail(x, sub, "is not an argument of this tool%s%s", "", "");
            if (!json_is_object(addl))
                continue;
            ps = addl;
        }
        json_t *slot = json_incref(val);
        kx_err e = validate(x, ps, &slot, sub, depth + 1);
        if (e == KX_OK && slot != val && json_object_set(obj, key, slot) != 0)
            e = KX_ERR_NOMEM;
        json_decref(slot);
        if (e != KX_OK)
            return e;
    }
    return KX_OK;
}

static kx_err validate_array(vctx *x, const json_t *s, json_t *arr, const char *path, int depth)
{
    if (!json_is_array(arr))
        return KX_OK;
    const json_t *mn = json_object_get(s, "minItems"), *mx = json_object_get(s, "maxItems");
    char lim[64];
    if (mn != NULL && (json_int_t)json_array_size(arr) < json_integer_value(mn)) {
        snprintf(lim, sizeof lim, "%lld", (long long)json_integer_value(mn));
        return fail(x, path, "must have at least %s item%s", lim,
                    json_integer_value(mn) == 1 ? "" : "s");
    }
    if (mx != NULL && (json_int_t)json_array_size(arr) > json_integer_value(mx)) {
        snprintf(lim, sizeof lim, "%lld", (long long)json_integer_value(mx));
        return fail(x, path, "must have at most %s items%s", lim, "");
    }
    const json_t *items = json_object_get(s, "items");
    if (items == NULL)
        return KX_OK;
    char sub[400];
    for (size_t i = 0; i < json_array_size(arr); i++) {
        snprintf(sub, sizeof sub, "%s[%zu]", path[0] ? path : "", i);
        json_t *val = json_array_get(arr, i);
        json_t *slot = json_incref(val);
        kx_err e = validate(x, items, &slot, sub, depth + 1);
        if (e == KX_OK && slot != val && json_array_set(arr, i, slot) != 0)
            e = KX_ERR_NOMEM;
        json_decref(slot);
        if (e != KX_OK)
            return e;
    }
    return KX_OK;
}

static kx_err validate(vctx *x, const json_t *s, json_t **slot, const char *path, int depth)
{
    if (depth > MAX_DEPTH || !json_is_object(s))
        return KX_OK; /* kx_jsonschema_check refused such schemas */
    kx_err e = validate_type(x, s, slot, path);
    if (e == KX_OK)
        e = validate_enum(x, s, *slot, path);
    if (e == KX_OK)
        e = validate_number(x, s, *slot, path);
    if (e == KX_OK)
        e = validate_string(x, s, *slot, path);
    if (e == KX_OK)
        e = validate_array(x, s, *slot, path, depth);
    if (e == KX_OK)
        e = validate_object(x, s, *slot, path, depth);
    return e;
}

kx_err kx_jsonschema_validate(const json_t *schema, json_t **instance, unsigned flags, char *why,
                              size_t whylen)
{
    vctx x = {flags, why, whylen};
    if (whylen > 0)
        why[0] = '\0';
    if (instance == NULL || *instance == NULL) {
        snprintf(why, whylen, "the arguments are missing");
        return KX_ERR_INVALID;
    }
    return validate(&x, schema, instance, "", 0);
}
