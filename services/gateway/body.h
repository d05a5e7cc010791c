/* body.h — reading request bodies: a JSON object, and typed optional fields of it or of a form,
 * each failure answered with a 400 whose detail names the field. */
#ifndef GW_BODY_H
#define GW_BODY_H

#include <jansson.h>
#include <stdbool.h>
#include "gateway.h"
#include "store.h"

/* The body as a JSON object (new reference). An empty body is {} when allow_empty. NULL with a
 * 400 reply when the body is not JSON or not an object, or when a number anywhere in it is not
 * finite or at least 2^63 in magnitude (jsonb would print it back as an integer that jansson
 * cannot read): the detail names its place, e.g. "metadata.a" or "tags[2]". */
json_t *gw_body_json_object(const gw_request *req, bool allow_empty, gw_reply *reply);

/* obj[key] as a string: absent or null gives def (true returned); another type is a 400. The
 * string is borrowed from obj. */
bool gw_body_str(const json_t *obj, const char *key, const char *def, const char **out,
                 gw_reply *reply);
/* obj[key] as a boolean: absent or null gives def; another type is a 400. */
bool gw_body_bool(const json_t *obj, const char *key, bool def, bool *out, gw_reply *reply);

/* A form field as a boolean as FastAPI reads one: true/false, 1/0, yes/no, on/off (any case);
 * absent gives def; anything else is a 400 naming the field. */
bool gw_form_bool(const gw_form *form, const char *key, bool def, bool *out, gw_reply *reply);
/* A form field as UTF-8 text: absent (or empty when empty_is_absent) gives NULL; invalid UTF-8
 * is a 400 naming the field. Borrowed from the form. */
bool gw_form_text(const gw_form *form, const char *key, bool empty_is_absent, const char **out,
                  gw_reply *reply);

/* A query parameter as an integer in [lo, hi]; absent gives def; anything else is a 400
 * naming it. */
bool gw_query_int(const gw_request *req, const char *name, long def, long lo, long hi, long *out,
                  gw_reply *reply);
/* A list's page: ?limit= (1..GW_PAGE_MAX, default GW_PAGE_MAX), ?offset= (0..10^9, default 0)
 * and ?before= the id of the last item of the previous page (a UUID; absent: NULL, from the
 * newest; unlike an offset it neither repeats nor skips items created or deleted between the
 * pages); a 400 naming the parameter otherwise. GW_PAGE_MAX is Supabase's default row cap,
 * which bounded every list Kortix's API answered. */
#define GW_PAGE_MAX 1000
bool gw_query_page(const gw_request *req, gw_page *page, gw_reply *reply);
/* Every key of obj must be one of allowed (NULL-terminated); else a 400 naming the first
 * other one. */
bool gw_body_only(const json_t *obj, const char *const *allowed, gw_reply *reply);

#endif
