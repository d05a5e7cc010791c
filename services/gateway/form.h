/* form.h — HTML form bodies (multipart/form-data and application/x-www-form-urlencoded), as
 * POST /api/agent/initiate receives them.
 *
 * libmicrohttpd's post processor does the parsing; this module keeps the fields the gateway
 * knows (prompt, model_name, enable_thinking, reasoning_effort, stream,
 * enable_context_manager, agent_id, name; path and the uploaded file named "file" of a sandbox
 * upload; the parts of "files" / "files[]", initiate's uploads, each kept whole and in order)
 * and ignores every other field. Uploaded files are counted (gw_form_files); the bytes of any
 * other file part are dropped. When a field appears twice, the last value wins, as in
 * Starlette (files[] excepted: each part is one more file).
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
 * length in bytes (it may contain NUL bytes: check with kx_utf8_valid). */
const char *gw_form_get(const gw_form *f, const char *name, size_t *len);
/* How many uploaded file parts the body had outside files[] (gw_form_uploads). */
size_t gw_form_files(const gw_form *f);

/* The uploaded files of the field "files" (or "files[]"), in the body's order: Kortix's
 * POST /api/agent/initiate files[] (a part without a filename is one, named ""). At most
 * GW_FORM_MAX_UPLOADS are kept; *too_many is set when the body had more (their bytes are
 * dropped). The array and its strings belong to the form. */
#define GW_FORM_MAX_UPLOADS 32
typedef struct gw_form_upload {
    char *filename;   /* as the client named it (not yet made safe) */
    const char *data; /* the bytes (may hold NULs) */
    size_t len;
} gw_form_upload;
size_t gw_form_uploads(gw_form *f, const gw_form_upload **out, bool *too_many);
void gw_form_free(gw_form *f); /* NULL is a no-op */

#endif
