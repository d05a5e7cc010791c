/* reply.c — JSON answers and {"detail": ...} errors for the gateway's routes.
 *
 * Every answer goes through here so that all bodies share one printer (Python-like spacing,
 * keys in insertion order) and every error has FastAPI's shape. */
#include "reply.h"

#include <microhttpd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "kx/json.h"
#include "kx/log.h"
#include "kx/utf8.h"

void gw_reply_json(gw_reply *r, unsigned int status, json_t *v)
{
    free(r->body);
    r->body = NULL;
    r->status = status;
    if (v == NULL) {
        r->status = MHD_HTTP_INTERNAL_SERVER_ERROR;
        return; /* the server sends its static "out of memory" error */
    }
    r->body = kx_json_dumps_py(v);
    json_decref(v);
    if (r->body == NULL)
        r->status = MHD_HTTP_INTERNAL_SERVER_ERROR;
}

void gw_reply_error(gw_reply *r, unsigned int status, const char *fmt, ...)
{
    char detail[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    kx_utf8_scrub(detail); /* quoted client bytes or the cut above may not be UTF-8 */
    gw_reply_json(r, status, json_pack("{s:s}", "detail", detail));
}

void gw_reply_db_error(gw_reply *r, kx_err err, const char *what)
{
    switch (err) {
    case KX_ERR_UNAVAILABLE:
        gw_reply_error(r, MHD_HTTP_SERVICE_UNAVAILABLE, "%s: database unavailable", what);
        break;
    case KX_ERR_TIMEOUT:
        gw_reply_error(r, MHD_HTTP_GATEWAY_TIMEOUT, "%s: database timeout", what);
        break;
    case KX_ERR_INVALID:
        gw_reply_error(r, MHD_HTTP_BAD_REQUEST, "%s: the database refused the data", what);
        break;
    default:
        gw_reply_error(r, MHD_HTTP_INTERNAL_SERVER_ERROR, "%s: %s", what, kx_err_str(err));
        break;
    }
}

void gw_reply_free(gw_reply *r)
{
    free(r->body);
    r->body = NULL;
    if (r->resp != NULL) {
        MHD_destroy_response(r->resp);
        r->resp = NULL;
    }
}

json_t *gw_json_from_sql(const char *text)
{
    json_error_t jerr;
    json_t *v = kx_json_loads_wide(text, JSON_DECODE_ANY, &jerr);
    if (v == NULL)
        kx_error("gateway: Postgres returned text that is not JSON (%s at %d:%d)", jerr.text,
                 jerr.line, jerr.column);
    return v;
}

void gw_reply_page(gw_reply *r, const char *page, const char *key)
{
    json_t *v = gw_json_from_sql(page);
    if (json_is_true(json_object_get(v, "unknown_before"))) {
        json_decref(v);
        gw_reply_error(r, MHD_HTTP_BAD_REQUEST, "before is not one of the listed %s", key);
        return;
    }
    json_t *rows = json_object_get(v, "rows");
    json_t *out = json_is_array(rows)
        ? json_pack("{s:O, s:b}", key, rows, "has_more", json_is_true(json_object_get(v, "more")))
        : NULL;
    json_decref(v);
    gw_reply_json(r, MHD_HTTP_OK, out);
}
