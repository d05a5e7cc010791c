/* tools_vision.c — Kortix's sb_vision_tool: see_image(file_path*) checks a workspace image
 * through the sandbox-broker's kx.sandbox.files and answers with a reference to it:
 *   1. STAT: the file exists (the broker's not_found names the path), is not a directory, and
 *      holds at most TE_IMAGE_MAX_BYTES (10 MB; larger: invalid_argument naming both sizes);
 *   2. READ of its first 16 bytes: PNG, JPEG, GIF or WebP by their magic bytes (te_image_mime,
 *      pure), else invalid_argument "is not a PNG, JPEG, GIF or WebP image".
 * Output {"message", "file_path", "mime_type", "size", "image": {"file_path", "mime_type",
 * "size"}}: the image itself does not travel in the result (10 MB does not fit the bus); the
 * "image" object is the reference a consumer of the result uses to fetch the bytes through
 * kx.sandbox.files. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "executor.h"
#include "kx/json.h"
#include "kx/pb.h"
#include "registry.h"

#define TE_IMAGE_MAX_BYTES (10 * 1024 * 1024)

const char *te_image_mime(const unsigned char *b, size_t n)
{
    if (n >= 8 && memcmp(b, "\x89PNG\r\n\x1a\n", 8) == 0)
        return "image/png";
    if (n >= 3 && b[0] == 0xff && b[1] == 0xd8 && b[2] == 0xff)
        return "image/jpeg";
    if (n >= 6 && (memcmp(b, "GIF87a", 6) == 0 || memcmp(b, "GIF89a", 6) == 0))
        return "image/gif";
    if (n >= 12 && memcmp(b, "RIFF", 4) == 0 && memcmp(b + 8, "WEBP", 4) == 0)
        return "image/webp";
    return NULL;
}

typedef struct vision_state {
    char path[600]; /* as the broker names it (/workspace/...) */
    int64_t size;
} vision_state;

static void state_free(te_call *c)
{
    free(c->state);
    c->state = NULL;
}

static void fail(te_call *c, kx_err err, const char *msg)
{
    te_outcome o;
    te_outcome_init(&o);
    te_outcome_error(&o, err, "%s", msg);
    te_call_finish(c, &o);
}

static void on_head(te_call *c, kx_err err, natsMsg *reply)
{
    vision_state *st = c->state;
    Kx__V1__SandboxFilesReply *r = te_files_take_reply(c, err, reply);
    if (r == NULL)
        return;
    const char *mime = te_image_mime(r->data.data, r->data.len);
    kx_pb_free(r);
    char msg[900];
    if (mime == NULL) {
        snprintf(msg, sizeof msg,
                 "see_image: '%s' is not a PNG, JPEG, GIF or WebP image (by its first bytes)",
                 st->path);
        fail(c, KX_ERR_INVALID, msg);
        return;
    }
    snprintf(msg, sizeof msg,
             "Image '%s' (%s, %lld bytes) is added to your next model call: look at it there.",
             st->path, mime, (long long)st->size);
    json_t *out =
        json_pack("{s:s, s:s, s:s, s:I, s:{s:s, s:s, s:I}}", "message", msg, "file_path", st->path,
                  "mime_type", mime, "size", (json_int_t)st->size, "image", "file_path", st->path,
                  "mime_type", mime, "size", (json_int_t)st->size);
    te_outcome o;
    te_outcome_init(&o);
    te_outcome_json(&o, out, "see_image");
    te_call_finish(c, &o);
}

static void on_stat(te_call *c, kx_err err, natsMsg *reply)
{
    vision_state *st = c->state;
    Kx__V1__SandboxFilesReply *r = te_files_take_reply(c, err, reply);
    if (r == NULL)
        return;
    char msg[900];
    const char *arg = kx_json_str(c->args, "file_path", "");
    snprintf(st->path, sizeof st->path, "%s",
             r->info != NULL && !kx_pb_str_empty(r->info->path) ? r->info->path : arg);
    bool is_dir = r->info != NULL && r->info->is_dir;
    st->size = r->info != NULL ? r->info->size : 0;
    kx_pb_free(r);
    if (is_dir) {
        snprintf(msg, sizeof msg, "see_image: '%s' is a directory, not an image", st->path);
        fail(c, KX_ERR_INVALID, msg);
        return;
    }
    if (st->size > TE_IMAGE_MAX_BYTES) {
        snprintf(msg, sizeof msg,
                 "see_image: '%s' is too big: %lld bytes; at most %d bytes (10 MB)", st->path,
                 (long long)st->size, TE_IMAGE_MAX_BYTES);
        fail(c, KX_ERR_INVALID, msg);
        return;
    }
    Kx__V1__SandboxFilesRequest rq = KX__V1__SANDBOX_FILES_REQUEST__INIT;
    rq.project_id = c->call->project_id;
    rq.op = KX__V1__SANDBOX_FILE_OP__SANDBOX_FILE_READ;
    rq.path = st->path;
    rq.length = 16;
    te_request(c, "sandbox", KX_SUBJ_SANDBOX_FILES, &rq.base, te_call_deadline(c, 0), on_head);
}

static void vision_start(te_call *c)
{
    vision_state *st = calloc(1, sizeof *st);
    if (st == NULL) {
        fail(c, KX_ERR_NOMEM, "see_image: out of memory");
        return;
    }
    c->state = st;
    c->state_free = state_free;
    Kx__V1__SandboxFilesRequest rq = KX__V1__SANDBOX_FILES_REQUEST__INIT;
    rq.project_id = c->call->project_id;
    rq.op = KX__V1__SANDBOX_FILE_OP__SANDBOX_FILE_STAT;
    rq.path = (char *)kx_json_str(c->args, "file_path", "");
    te_request(c, "sandbox", KX_SUBJ_SANDBOX_FILES, &rq.base, te_call_deadline(c, 0), on_stat);
}

static const char vision_schema[] =
    "{\"type\": \"function\", \"function\": {\"name\": \"see_image\", \"description\": "
    "\"Look at an image file in the workspace (PNG, JPEG, GIF or WebP, at most 10 MB): it is "
    "added to your next model call.\", "
    "\"parameters\": {\"type\": \"object\", \"properties\": {"
    "\"file_path\": {\"type\": \"string\", \"minLength\": 1, \"maxLength\": 4096, "
    "\"description\": \"The image's path, relative to /workspace (e.g. \\\"screenshots/a.png\\\")."
    "\"}}, \"required\": [\"file_path\"]}}}";

const te_tool te_vision_tools[] = {
    {"see_image", "sb_vision_tool", TE_TOOL_SANDBOX, vision_schema, vision_start,
     te_tool_abort_request},
};
const size_t te_vision_tools_n = sizeof te_vision_tools / sizeof te_vision_tools[0];
