/* form.h — HTML form bodies (multipart/form-data and application/x-www-form-urlencoded), as
 * POST /api/agent/initiate receives them.
 *
 * libmicrohttpd's post processor does the parsing; this module keeps the fields the gateway
 * knows (prompt, model_name, enable_thinking, reasoning_effort, stream,
 * enable_context_manager, agent_id, name; path and the uploaded file named "file" of a sandbox
 * upload) and ignores every other field. Uploaded files are counted (gw_form_files); the bytes of
 * any but a sandbox upload's "file" are dropped. When a field appears twice, the last value wins, as in
 * Starlette.
 *
 * Ownership: gw_form is owned by the request that created it (gw_form_free). Values returned
 * by gw_form_get belong to the form. Not thread-safe; one request, one thread at a time. */
#ifndef GW_FORM_H
#define GW_FORM_H

#include <stdbool.h>
#include <stddef.h>
#include "gateway.h"

/* True when content_type (may be NULL) names one of the two form encodings. */
bool gw_form_content_type(const char *content_type);
/* A parser for conn's body. NULL when the body cannot be parsed as a form (e.g. multipart
 * without a boundary) or on OOM; *why then says which. */
gw_form *gw_form_new(struct MHD_Connection *conn, const char **why);
/* Feeds a piece of the body. False when the body is malformed. */
bool gw_form_feed(gw_form *f, const char *data, size_t len);
/* Ends the body. False when it ended in the middle of a field (malformed). */
bool gw_form_finish(gw_form *f);
/* The value of a known field, NUL-terminated, or NULL if absent; *len (may be NULL) gets its
 * length in bytes (it may contain NUL bytes: check with gw_utf8_valid). */
const char *gw_form_get(const gw_form *f, const char *name, size_t *len);
/* How many uploaded file parts the body had. */
size_t gw_form_files(const gw_form *f);
void gw_form_free(gw_form *f); /* NULL is a no-op */

#endif
