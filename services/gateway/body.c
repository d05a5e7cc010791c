/* body.c — JSON and form bodies into typed values, with 400s that name the field. */
#include "body.h"

#include <math.h>
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "form.h"
#include "reply.h"
#include "text.h"
#include "kx/uuid.h"
#include "kx/utf8.h"

static bool blank(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n')
            return false;
    return true;
}

/* 2^63. A number at least this large (or not finite) cannot be stored: Postgres' jsonb prints
 * it back as an integer that jansson refuses, here and in the services that read it. */
#define NUMBER_LIMIT 9223372036854775808.0

/* Every number inside v fits (see above); else a 400 naming its place, path[0..len) (cap
 * bytes) the place of v itself ("" for the body). */
static bool numbers_fit(const json_t *v, char *path, size_t len, size_t cap, gw_reply *reply)
{
    if (json_is_real(v)) {
        double d = json_real_value(v);
        if (isfinite(d) && fabs(d) < NUMBER_LIMIT)
            return true;
        gw_reply_error(reply, MHD_HTTP_BAD_REQUEST,
                       "%s: the number %g cannot be stored: numbers must be finite and below "
                       "2^63 in magnitude",
                       len > 0 ? path : "body", d);
        return false;
    }
    const char *key;
    json_t *item;
    size_t i;
    if (json_is_object(v)) {
        json_object_foreach((json_t *)v, key, item)
        {
            int n = snprintf(path + len, cap - len, "%s%s", len > 0 ? "." : "", key);
            size_t next = n < 0 || len + (size_t)n >= cap ? cap - 1 : len + (size_t)n;
            if (!numbers_fit(item, path, next, cap, reply))
                return false;
        }
    } else if (json_is_array(v)) {
        json_array_foreach(v, i, item)
        {
            int n = snprintf(path + len, cap - len, "[%zu]", i);
            size_t next = n < 0 || len + (size_t)n >= cap ? cap - 1 : len + (size_t)n;
            if (!numbers_fit(item, path, next, cap, reply))
                return false;
        }
    }
    path[len] = '\0';
    return true;
}

json_t *gw_body_json_object(const gw_request *req, bool allow_empty, gw_reply *reply)
{
    if (req->body == NULL || blank(req->body, req->body_len)) {
        if (allow_empty)
            return json_object();
        gw_reply_error(reply, MHD_HTTP_BAD_REQUEST, "Request body is required (a JSON object)");
        return NULL;
    }
    json_error_t jerr;
    json_t *v = json_loadb(req->body, req->body_len, 0, &jerr);
    if (v == NULL) {
        gw_reply_error(reply, MHD_HTTP_BAD_REQUEST, "Invalid JSON body: %s (line %d, column %d)",
                       jerr.text, jerr.line, jerr.column);
        return NULL;
    }
    if (!json_is_object(v)) {
        json_decref(v);
        gw_reply_error(reply, MHD_HTTP_BAD_REQUEST, "Invalid JSON body: expected an object");
        return NULL;
    }
    char path[256] = "";
    if (!numbers_fit(v, path, 0, sizeof path, reply)) {
        json_decref(v);
        return NULL;
    }
    return v;
}

bool gw_body_str(const json_t *obj, const char *key, const char *def, const char **out,
                 gw_reply *reply)
{
    const json_t *v = json_object_get(obj, key);
    if (v == NULL || json_is_null(v)) {
        *out = def;
        return true;
    }
    if (!json_is_string(v)) {
        gw_reply_error(reply, MHD_HTTP_BAD_REQUEST, "%s must be a string", key);
        return false;
    }
    if (strlen(json_string_value(v)) != json_string_length(v)) {
        gw_reply_error(reply, MHD_HTTP_BAD_REQUEST, "%s must not contain NUL characters", key);
        return false;
    }
    *out = json_string_value(v);
    return true;
}

bool gw_body_bool(const json_t *obj, const char *key, bool def, bool *out, gw_reply *reply)
{
    const json_t *v = json_object_get(obj, key);
    if (v == NULL || json_is_null(v)) {
        *out = def;
        return true;
    }
    if (!json_is_boolean(v)) {
        gw_reply_error(reply, MHD_HTTP_BAD_REQUEST, "%s must be a boolean", key);
        return false;
    }
    *out = json_is_true(v);
    return true;
}

bool gw_form_bool(const gw_form *form, const char *key, bool def, bool *out, gw_reply *reply)
{
    static const char *const yes[] = {"true", "1", "yes", "on"};
    static const char *const no[] = {"false", "0", "no", "off"};
    const char *v = gw_form_get(form, key, NULL);
    *out = def;
    if (v == NULL)
        return true;
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        if (strcasecmp(v, yes[i]) == 0) {
            *out = true;
            return true;
        }
        if (strcasecmp(v, no[i]) == 0) {
            *out = false;
            return true;
        }
    }
    gw_reply_error(reply, MHD_HTTP_BAD_REQUEST, "%s must be a boolean (true or false)", key);
    return false;
}

bool gw_form_text(const gw_form *form, const char *key, bool empty_is_absent, const char **out,
                  gw_reply *reply)
{
    size_t len = 0;
    const char *v = gw_form_get(form, key, &len);
    *out = NULL;
    if (v == NULL || (empty_is_absent && len == 0))
        return true;
    if (!kx_utf8_valid(v, len)) {
        gw_reply_error(reply, MHD_HTTP_BAD_REQUEST, "%s is not valid UTF-8 text", key);
        return false;
    }
    *out = v;
    return true;
}

/* A query parameter as an integer in [lo, hi]; absent gives def. A 400 naming it otherwise. */
bool gw_query_int(const gw_request *req, const char *name, long def, long lo, long hi, long *out,
                  gw_reply *reply)
{
    const char *v = MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, name);
    *out = def;
    if (v == NULL)
        return true;
    char *end = NULL;
    long n = strtol(v, &end, 10);
    if (v[0] == '\0' || end == NULL || *end != '\0' || n < lo || n > hi) {
        gw_reply_error(reply, MHD_HTTP_BAD_REQUEST, "%s must be an integer from %ld to %ld", name,
                       lo, hi);
        return false;
    }
    *out = n;
    return true;
}

bool gw_query_page(const gw_request *req, gw_page *page, gw_reply *reply)
{
    if (!gw_query_int(req, "limit", GW_PAGE_MAX, 1, GW_PAGE_MAX, &page->limit, reply) ||
        !gw_query_int(req, "offset", 0, 0, 1000000000L, &page->offset, reply))
        return false;
    page->before = MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, "before");
    if (page->before == NULL || kx_uuid_valid(page->before))
        return true;
    gw_reply_error(reply, MHD_HTTP_BAD_REQUEST,
                   "before must be the id of the last item of the previous page");
    return false;
}

/* A JSON object's keys must all be among allowed (NULL-terminated); a 400 names the first
 * other one. */
bool gw_body_only(const json_t *obj, const char *const *allowed, gw_reply *reply)
{
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)obj, k, v)
    {
        (void)v;
        bool ok = false;
        for (size_t i = 0; allowed[i] != NULL && !ok; i++)
            ok = strcmp(allowed[i], k) == 0;
        if (!ok) {
            gw_reply_error(reply, MHD_HTTP_BAD_REQUEST, "unknown field: %s", k);
            return false;
        }
    }
    return true;
}
