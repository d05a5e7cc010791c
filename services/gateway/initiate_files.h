/* initiate_files.h — POST /api/agent/initiate's files[] (Kortix's initiate, step 8): each
 * uploaded file is written into the new project's sandbox under /workspace/uploads/, and the
 * prompt gains Kortix's lines: "\n\n" (when the prompt is not empty), then
 * "[Uploaded File: /workspace/uploads/<name>]\n" per file, in the form's order.
 *
 * Names (gw_upload_name, pure, fuzzed by gateway_form): one path component, whatever the
 * client sent — '/', '\' and control characters (C0, DEL, C1) become '_', bytes that are not
 * UTF-8 become '_', a run of dots becomes one dot, leading dots and spaces and trailing dots
 * and spaces go, an empty result is "file", and a name longer than GW_UPLOAD_NAME_MAX bytes is
 * cut (at a character boundary, keeping a short extension). A name met twice gets "-2", "-3", …
 * before its extension (Kortix overwrote the earlier file).
 *
 * Limits (each a clear error naming the file): at most GW_FORM_MAX_UPLOADS files (400); each at
 * most KX_INITIATE_FILE_MAX_BYTES (413), all at most KX_INITIATE_FILES_MAX_BYTES (413); the
 * body cap KX_MAX_BODY_BYTES (413) comes first, and the broker's own (KX_SANDBOX_MAX_FILE_MB,
 * KX_SANDBOX_DISK_MB) after.
 *
 * The order (routes_runs.c): the plan (names, limits) and the prompt with its lines → a
 * project id made here, its sandbox (ensure_active) and every file written (gw_upload_put) →
 * the run's one transaction with that project id → the sandbox recorded on projects.sandbox.
 * A failed upload or a refused run deletes the sandbox again (best effort): no project, thread,
 * run or sandbox is left half made.
 *
 * Threads: gw_upload_put blocks its worker on the bus (within the sandbox deadlines); the rest
 * is pure. Ownership: a plan borrows the form's bytes (it lives no longer than the request). */
#ifndef GW_INITIATE_FILES_H
#define GW_INITIATE_FILES_H

#include <stdbool.h>
#include <stddef.h>

#include "form.h"
#include "gateway.h"
#include "kx/pb.h"

#define GW_UPLOAD_DIR "/workspace/uploads"
#define GW_UPLOAD_NAME_MAX 200 /* bytes, before a "-N" that makes it unique */

typedef struct gw_upload_file {
    char name[GW_UPLOAD_NAME_MAX + 16]; /* safe and unique among the plan's */
    char path[GW_UPLOAD_NAME_MAX + 48]; /* GW_UPLOAD_DIR "/" name */
    const char *data;                   /* borrowed from the form */
    size_t len;
} gw_upload_file;

typedef struct gw_upload_plan {
    size_t n;
    gw_upload_file files[GW_FORM_MAX_UPLOADS];
} gw_upload_plan;

/* The safe form of a client's file name (raw may be NULL): see above. */
void gw_upload_name(const char *raw, char out[GW_UPLOAD_NAME_MAX + 1]);

/* The form's files[] as a plan (n may be 0). False with a 400/413 in reply when a file is
 * larger than file_max bytes (KX_INITIATE_FILE_MAX_BYTES), all of them than total_max
 * (KX_INITIATE_FILES_MAX_BYTES), or a file part belongs to another field. */
bool gw_upload_plan_make(gw_form *form, int64_t file_max, int64_t total_max, gw_upload_plan *plan,
                         gw_reply *reply);

/* prompt with the plan's lines appended (Kortix's format, above); malloc'd, NULL on OOM. */
char *gw_upload_prompt(const char *prompt, const gw_upload_plan *plan);

/* Makes project's sandbox and writes every file of the plan into it. True with *info (the
 * sandbox, to record once the project row exists; kx_pb_free it); false with the error in
 * reply naming the file (the broker's status: 413 too large, 503 unavailable, …), and the
 * sandbox deleted again. */
bool gw_upload_put(gw_app *app, const gw_request *req, const char *project,
                   const gw_upload_plan *plan, Kx__V1__SandboxInfo **info, gw_reply *reply);

#endif
