/* routes_sandbox.c — a project's sandbox over HTTP (Kortix's backend/sandbox/api.py shapes,
 * docs/api.md), each route one request to the sandbox-broker (docs/subjects.md):
 *   GET    /api/sandboxes/{id}/files?path=          {"files": [{name, path, is_dir, size,
 *                                                    mod_time, permissions}]}   (LIST)
 *   GET    /api/sandboxes/{id}/files/content?path=  the bytes, application/octet-stream, as an
 *                                                    attachment (READs of one message each; a
 *                                                    file larger than one is streamed with its
 *                                                    Content-Length by download.c, at most
 *                                                    KX_SANDBOX_DOWNLOAD_MAX_MB, 1024, in all;
 *                                                    429 past KX_SANDBOX_DOWNLOADS_PER_ACCOUNT
 *                                                    of the account's in flight)
 *   POST   /api/sandboxes/{id}/files                form: path, file → {"status": "success",
 *                                                    "created": true, "path"} (a file larger than
 *                                                    one bus message is written in chunks: WRITE
 *                                                    OVERWRITE, then WRITE AT next_offset; a
 *                                                    failed chunk deletes the partial file)
 *   DELETE /api/sandboxes/{id}/files?path=          {"status": "success", "deleted": true, "path"}
 *   DELETE /api/sandboxes/{id}                      kx.sandbox.delete → {"status": "success",
 *                                                    "deleted": true, "sandbox_id"}
 *   POST   /api/project/{id}/sandbox/ensure-active   kx.sandbox.ensure_active → {"status":
 *                                                    "success", "sandbox_id", "message": "Sandbox
 *                                                    is active"}
 *   GET    /api/sandboxes/{id}/preview/{port}/...   a preview link (kx.sandbox.preview check,
 *                                                    then preview_proxy.c); also POST, PUT,
 *                                                    PATCH, DELETE with their body
 * Paths: a path (query or form field) that is not UTF-8 is a 400 before the broker is asked;
 * names in a listing that are not UTF-8 have their invalid bytes as U+FFFD.
 * Access: the sandbox id is looked up on projects.sandbox->>'id' (409's index); unknown, not a
 * UUID, or deleted: 404 "Sandbox not found". The project must be the caller's account's: another
 * account's sandbox is 404 as well, never a hint that it exists (Kortix answered 403); reads of
 * a public project's files are allowed, as in Kortix; a preview link of another account is 404.
 * The broker is asked on behalf of the project's owner (its account on the bus), also for another
 * account's read: a sandbox such a read starts counts for the owner (KX_SANDBOX_MAX_PER_ACCOUNT).
 * Recording: gw_sandbox_record writes the broker's SandboxInfo on projects.sandbox (only when
 * not older than what is there); ensure-active and delete record their replies, sandbox_state.c
 * records the broker's events.
 * Handlers run on the gateway's worker threads (work.h): the bus requests block this thread
 * only, each within its deadline (KX_SANDBOX_{GET,START,CREATE,PREVIEW}_TIMEOUT_MS, default
 * 10/30/60/10 s; file operations use the get budget, each READ of a streamed download too). */
#include <jansson.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "access.h"
#include "download.h"
#include "form.h"
#include "gateway.h"
#include "held.h"
#include "kx/bus.h"
#include "kx/log.h"
#include "kx/pb.h"
#include "kx/utf8.h"
#include "kx/uuid.h"
#include "preview_proxy.h"
#include "reply.h"
#include "sandbox_routes.h"
#include "text.h"

#define PREVIEW_MAX_BYTES ((size_t)32 << 20)
#define PREVIEW_FETCH_MS 30000

/* ---- access ----------------------------------------------------------------------------- */

typedef enum access_kind {
    FOR_READ,    /* the owner, or anyone for a public project */
    FOR_WRITE,   /* the owner */
    FOR_PREVIEW, /* the owner; anyone else sees 404 */
} access_kind;

/* The project of sandbox req->id, checked for req->account, and its owner (owner may be NULL:
 * the caller's own project). false with the reply set. */
static bool find_sandbox(gw_app *app, gw_request *req, access_kind kind,
                         char project[KX_UUID_LEN + 1], char owner[KX_UUID_LEN + 1],
                         gw_reply *reply)
{
    if (!kx_uuid_valid(req->id)) {
        gw_reply_error(reply, MHD_HTTP_NOT_FOUND, "Sandbox not found");
        return false;
    }
    kx_db *db = gw_db_get(app, reply);
    if (db == NULL)
        return false;
    const char *params[] = {req->id};
    kx_err err = KX_OK;
    PGresult *r = kx_db_exec(db, "gw_sandbox_find", 1, params, &err);
    bool ok = false;
    if (r == NULL) {
        gw_reply_db_error(reply, err, "Failed to find the sandbox");
    } else if (PQntuples(r) == 0 || strcmp(PQgetvalue(r, 0, 3), "deleted") == 0) {
        gw_reply_error(reply, MHD_HTTP_NOT_FOUND, "Sandbox not found");
    } else if (strcmp(PQgetvalue(r, 0, 1), req->account) != 0 &&
               !(kind == FOR_READ && strcmp(PQgetvalue(r, 0, 2), "t") == 0)) {
        gw_reply_error(reply, MHD_HTTP_NOT_FOUND, "Sandbox not found"); /* not a hint */
    } else {
        snprintf(project, KX_UUID_LEN + 1, "%s", PQgetvalue(r, 0, 0));
        if (owner != NULL)
            snprintf(owner, KX_UUID_LEN + 1, "%s", PQgetvalue(r, 0, 1));
        ok = true;
    }
    PQclear(r);
    gw_db_put(app, db);
    return ok;
}

/* ---- recording projects.sandbox --------------------------------------------------------- */

static bool plain(const char *s, size_t max)
{
    size_t n = 0;
    for (; s != NULL && s[n] != '\0'; n++) {
        char c = s[n];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.'))
            return false;
    }
    return s != NULL && n <= max;
}

kx_err gw_sandbox_record(gw_app *app, const Kx__V1__SandboxInfo *info)
{
    if (info == NULL || !kx_uuid_valid(info->id) || !kx_uuid_valid(info->project_id) ||
        !plain(info->state, 16) || !plain(info->provider, 32) || !plain(info->broker, 128)) {
        kx_warn("gateway: a sandbox state that is not well formed was not recorded");
        return KX_ERR_INVALID;
    }
    kx_db *db = kx_db_pool_get(app->pool, kx_deadline_in(app->cfg.db_wait_ms));
    if (db == NULL)
        return KX_ERR_UNAVAILABLE;
    char created[24], updated[24];
    snprintf(created, sizeof created, "%lld", (long long)info->created_unix_ms);
    snprintf(updated, sizeof updated, "%lld", (long long)info->updated_unix_ms);
    const char *params[] = {info->project_id, info->id, info->state, info->provider,
                            info->broker,     created,  updated};
    /* idempotent: the same info written twice leaves the same row */
    kx_err err = kx_db_exec_cmd_idem(db, "gw_sandbox_record", 7, params, NULL);
    kx_db_pool_put(app->pool, db);
    if (err != KX_OK)
        kx_warn("gateway: could not record sandbox %s (%s): %s", info->id, info->state,
                kx_err_str(err));
    return err;
}

/* ---- bus requests ----------------------------------------------------------------------- */

/* The HTTP status for a broker's error code. */
static unsigned int status_of(const char *code)
{
    static const struct {
        const char *code;
        unsigned int status;
    } map[] = {
        {"invalid_argument", MHD_HTTP_BAD_REQUEST},
        {"not_found", MHD_HTTP_NOT_FOUND},
        {"already_exists", MHD_HTTP_CONFLICT},
        {"conflict", MHD_HTTP_CONFLICT},
        {"permission_denied", MHD_HTTP_FORBIDDEN},
        {"resource_exhausted", MHD_HTTP_CONTENT_TOO_LARGE},
        {"quota_exceeded", MHD_HTTP_TOO_MANY_REQUESTS},
        {"deadline_exceeded", MHD_HTTP_GATEWAY_TIMEOUT},
        {"unavailable", MHD_HTTP_SERVICE_UNAVAILABLE},
    };
    for (size_t i = 0; code != NULL && i < sizeof map / sizeof map[0]; i++) {
        if (strcmp(code, map[i].code) == 0)
            return map[i].status;
    }
    return MHD_HTTP_INTERNAL_SERVER_ERROR;
}

/* One request to the broker; the decoded reply (kx_pb_free it), or NULL with the reply set.
 * account: the sandbox's owner — the account a start it causes counts for
 * (KX_SANDBOX_MAX_PER_ACCOUNT), which is not the caller's when it reads a public project. */
static void *ask(gw_app *app, const char *account, const char *subject, const ProtobufCMessage *rq,
                 const ProtobufCMessageDescriptor *rep_desc, int64_t timeout_ms, gw_reply *reply)
{
    kx_bus_meta meta;
    kx_bus_meta_init(&meta, kx_deadline_in(timeout_ms), account);
    natsMsg *m = NULL;
    kx_err err = kx_bus_request_pb(app->svc->bus, subject, rq, &meta, &m);
    if (err == KX_ERR_TIMEOUT) {
        gw_reply_error(reply, MHD_HTTP_GATEWAY_TIMEOUT,
                       "The sandbox did not answer within %lld ms", (long long)timeout_ms);
        return NULL;
    }
    if (err != KX_OK) {
        gw_reply_error(reply, MHD_HTTP_SERVICE_UNAVAILABLE, "Sandbox service unavailable: %s",
                       kx_err_str(err));
        return NULL;
    }
    void *rep = kx_pb_unpack(rep_desc, natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m));
    natsMsg_Destroy(m);
    if (rep == NULL)
        gw_reply_error(reply, MHD_HTTP_BAD_GATEWAY, "The sandbox service sent a malformed reply");
    return rep;
}

/* An error the broker answered, as {"detail"}; true when there was one. */
static bool broker_error(const Kx__V1__Error *e, gw_reply *reply)
{
    if (e == NULL)
        return false;
    gw_reply_error(reply, status_of(e->code), "%s", e->message ? e->message : "sandbox error");
    return true;
}

static Kx__V1__SandboxFilesReply *files(gw_app *app, const char *owner,
                                        Kx__V1__SandboxFilesRequest *rq, gw_reply *reply)
{
    Kx__V1__SandboxFilesReply *rep =
        ask(app, owner, KX_SUBJ_SANDBOX_FILES, &rq->base, &kx__v1__sandbox_files_reply__descriptor,
            app->cfg.sandbox_get_ms, reply);
    if (rep != NULL && broker_error(rep->error, reply)) {
        kx_pb_free(rep);
        return NULL;
    }
    return rep;
}

static const char *query(const gw_request *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, name);
}

/* A path that is not UTF-8 is refused before the broker sees it: the broker would act on it
 * (write, delete) and the answer, which quotes the path, could not be written as JSON. */
static bool path_utf8(const char *p, gw_reply *reply)
{
    if (p == NULL || kx_utf8_valid(p, strlen(p)))
        return true;
    gw_reply_error(reply, MHD_HTTP_BAD_REQUEST, "path must be UTF-8 text");
    return false;
}

static const char *required_path(const gw_request *req, gw_reply *reply)
{
    const char *p = query(req, "path");
    if (p == NULL || p[0] == '\0') {
        gw_reply_error(reply, MHD_HTTP_UNPROCESSABLE_CONTENT,
                       "Query parameter 'path' is required");
        return NULL;
    }
    return path_utf8(p, reply) ? p : NULL;
}

/* ---- files ------------------------------------------------------------------------------ */

/* An entry of a listing; a name or path that is not UTF-8 (a file made inside the sandbox)
 * has its invalid bytes as U+FFFD, so the entry is listed rather than dropped. */
static json_t *file_json(const Kx__V1__SandboxFileInfo *f)
{
    char when[40] = "";
    time_t t = (time_t)(f->mtime_unix_ms / 1000);
    struct tm tm;
    if (gmtime_r(&t, &tm) != NULL)
        strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S+00:00", &tm);
    char perm[8];
    snprintf(perm, sizeof perm, "%04o", (unsigned)f->mode);
    const char *name = f->name ? f->name : "", *path = f->path ? f->path : "";
    char *name_ok = kx_utf8_sanitize(name, strlen(name), NULL);
    char *path_ok = kx_utf8_sanitize(path, strlen(path), NULL);
    json_t *v = name_ok == NULL || path_ok == NULL
        ? NULL
        : json_pack("{s:s, s:s, s:b, s:I, s:s, s:s}", "name", name_ok, "path", path_ok, "is_dir",
                    f->is_dir, "size", (json_int_t)f->size, "mod_time", when, "permissions", perm);
    free(name_ok);
    free(path_ok);
    return v;
}

void gw_route_sandbox_files_list(gw_app *app, gw_request *req, gw_reply *reply)
{
    char project[KX_UUID_LEN + 1], owner[KX_UUID_LEN + 1];
    const char *path = query(req, "path");
    if (!path_utf8(path, reply) || !find_sandbox(app, req, FOR_READ, project, owner, reply))
        return;
    Kx__V1__SandboxFilesRequest rq = KX__V1__SANDBOX_FILES_REQUEST__INIT;
    rq.project_id = project;
    rq.op = KX__V1__SANDBOX_FILE_OP__SANDBOX_FILE_LIST;
    rq.path = (char *)(path ? path : "/workspace");
    Kx__V1__SandboxFilesReply *rep = files(app, owner, &rq, reply);
    if (rep == NULL)
        return;
    json_t *arr = json_array();
    for (size_t i = 0; arr != NULL && i < rep->n_entries; i++) {
        json_t *e = file_json(rep->entries[i]);
        if (e == NULL || json_array_append_new(arr, e) != 0) { /* out of memory: no partial list */
            json_decref(arr);
            arr = NULL;
        }
    }
    kx_pb_free(rep);
    gw_reply_json(reply, MHD_HTTP_OK, arr != NULL ? json_pack("{s:o}", "files", arr) : NULL);
}

/* filename*=UTF-8''<name, percent-encoded> */
static void disposition(const char *name, char *out, size_t cap)
{
    size_t n = (size_t)snprintf(out, cap, "attachment; filename*=UTF-8''");
    for (const unsigned char *c = (const unsigned char *)name; *c && n + 4 < cap; c++) {
        if ((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
            strchr("-._~", *c) != NULL)
            out[n++] = (char)*c;
        else
            n += (size_t)snprintf(out + n, cap - n, "%%%02X", *c);
    }
    out[n] = '\0';
}

/* The first READ here, so that its refusal (404, 400, ...) is an ordinary reply and the name
 * is known for Content-Disposition. A file whole in that answer is sent from one buffer; a
 * larger one is streamed (download.h): one bus message at a time, whatever its size up to
 * KX_SANDBOX_DOWNLOAD_MAX_MB. Either way the bytes held are counted (held.h). The download is
 * counted in flight for the reader's account from before that READ (a 429 past
 * KX_SANDBOX_DOWNLOADS_PER_ACCOUNT, download.h): a sandbox that hangs holds this worker until
 * KX_SANDBOX_GET_TIMEOUT_MS, and one account must not hold them all. */
void gw_route_sandbox_file_content(gw_app *app, gw_request *req, gw_reply *reply)
{
    char project[KX_UUID_LEN + 1], owner[KX_UUID_LEN + 1];
    const char *path = required_path(req, reply);
    if (path == NULL || !find_sandbox(app, req, FOR_READ, project, owner, reply))
        return;
    if (!gw_downloads_enter(app->downloads, req->account)) {
        gw_downloads_refuse(app->downloads, reply);
        return;
    }
    Kx__V1__SandboxFilesRequest rq = KX__V1__SANDBOX_FILES_REQUEST__INIT;
    rq.project_id = project;
    rq.op = KX__V1__SANDBOX_FILE_OP__SANDBOX_FILE_READ;
    rq.path = (char *)path;
    Kx__V1__SandboxFilesReply *rep = files(app, owner, &rq, reply);
    bool streamed = rep != NULL && !rep->eof && rep->data.len > 0;
    if (!streamed) /* no READ after this one: the download is all but sent */
        gw_downloads_leave(app->downloads, req->account);
    if (rep == NULL)
        return;
    char name[512] = "file";
    if (rep->info != NULL && rep->info->name != NULL && rep->info->name[0] != '\0')
        snprintf(name, sizeof name, "%s", rep->info->name);
    int64_t max = app->cfg.download_max;
    if ((rep->info != NULL && rep->info->size > max) || (int64_t)rep->data.len > max) {
        if (streamed)
            gw_downloads_leave(app->downloads, req->account);
        kx_pb_free(rep);
        gw_reply_error(reply, MHD_HTTP_CONTENT_TOO_LARGE,
                       "File is larger than the %lld MiB a download may carry "
                       "(KX_SANDBOX_DOWNLOAD_MAX_MB)",
                       (long long)(max >> 20));
        return;
    }
    struct MHD_Response *resp = NULL;
    if (!streamed) {
        size_t len = rep->data.len;
        if (!gw_held_take(app->held, req->account, len)) {
            kx_pb_free(rep);
            gw_held_refuse(reply);
            return;
        }
        char *buf = malloc(len > 0 ? len : 1);
        if (buf != NULL && len > 0)
            memcpy(buf, rep->data.data, len);
        kx_pb_free(rep);
        if (buf == NULL)
            gw_held_give(app->held, req->account, len);
        else
            resp = gw_held_response(app->held, req->account, buf, len); /* NULL: given back */
        if (resp == NULL) {
            gw_reply_error(reply, MHD_HTTP_INTERNAL_SERVER_ERROR, "Out of memory");
            return;
        }
    } else {
        gw_download_src src = {
            .conn = req->conn,
            .account = req->account,
            .owner = owner,
            .project = project,
            .path = path,
            .timeout_ms = app->cfg.sandbox_get_ms,
            .max_bytes = max,
        };
        resp = gw_download_response(app, &src, rep, reply); /* takes rep and the count */
        if (resp == NULL)
            return;
    }
    char cd[1800];
    disposition(name, cd, sizeof cd);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/octet-stream");
    MHD_add_response_header(resp, "Content-Disposition", cd);
    reply->status = MHD_HTTP_OK;
    reply->resp = resp;
}

/* One file written in chunks (see sandbox_routes.h). */
bool gw_sandbox_write(gw_app *app, const gw_request *req, const char *project, const char *path,
                      const char *data, size_t len, gw_reply *reply)
{
    int64_t mp = natsConnection_GetMaxPayload(kx_bus_conn(app->svc->bus));
    size_t chunk = mp > 128 * 1024 ? (size_t)mp - 64 * 1024 : 64 * 1024;
    size_t off = 0;
    do {
        size_t n = len - off < chunk ? len - off : chunk;
        Kx__V1__SandboxFilesRequest rq = KX__V1__SANDBOX_FILES_REQUEST__INIT;
        rq.project_id = (char *)project;
        rq.op = KX__V1__SANDBOX_FILE_OP__SANDBOX_FILE_WRITE;
        rq.path = (char *)path;
        rq.mode = off == 0 ? KX__V1__SANDBOX_WRITE_MODE__SANDBOX_WRITE_OVERWRITE
                           : KX__V1__SANDBOX_WRITE_MODE__SANDBOX_WRITE_AT;
        rq.offset = off == 0 ? 0 : (int64_t)off;
        rq.data.data = (uint8_t *)(data + off);
        rq.data.len = n;
        Kx__V1__SandboxFilesReply *rep = files(app, req->account, &rq, reply);
        if (rep == NULL) {
            if (off > 0) { /* a partial file is worse than none */
                Kx__V1__SandboxFilesRequest del = KX__V1__SANDBOX_FILES_REQUEST__INIT;
                gw_reply scratch = {0};
                del.project_id = (char *)project;
                del.op = KX__V1__SANDBOX_FILE_OP__SANDBOX_FILE_DELETE;
                del.path = (char *)path;
                kx_pb_free(files(app, req->account, &del, &scratch));
                gw_reply_free(&scratch);
            }
            return false;
        }
        kx_pb_free(rep);
        off += n;
    } while (off < len);
    return true;
}

void gw_route_sandbox_files_upload(gw_app *app, gw_request *req, gw_reply *reply)
{
    char project[KX_UUID_LEN + 1];
    size_t flen = 0;
    const char *path = req->form ? gw_form_get(req->form, "path", NULL) : NULL;
    const char *data = req->form ? gw_form_get(req->form, "file", &flen) : NULL;
    if (!path_utf8(path, reply))
        return;
    if (path == NULL || path[0] == '\0') {
        gw_reply_error(reply, MHD_HTTP_UNPROCESSABLE_CONTENT, "Form field 'path' is required");
        return;
    }
    if (data == NULL) {
        gw_reply_error(reply, MHD_HTTP_UNPROCESSABLE_CONTENT,
                       "Form field 'file' (an uploaded file) is required");
        return;
    }
    if (!find_sandbox(app, req, FOR_WRITE, project, NULL, reply) ||
        !gw_sandbox_write(app, req, project, path, data, flen, reply))
        return;
    gw_reply_json(reply, MHD_HTTP_OK,
                  json_pack("{s:s, s:b, s:s}", "status", "success", "created", 1, "path", path));
}

void gw_route_sandbox_files_delete(gw_app *app, gw_request *req, gw_reply *reply)
{
    char project[KX_UUID_LEN + 1];
    const char *path = required_path(req, reply);
    if (path == NULL || !find_sandbox(app, req, FOR_WRITE, project, NULL, reply))
        return;
    Kx__V1__SandboxFilesRequest rq = KX__V1__SANDBOX_FILES_REQUEST__INIT;
    rq.project_id = project;
    rq.op = KX__V1__SANDBOX_FILE_OP__SANDBOX_FILE_DELETE;
    rq.path = (char *)path;
    rq.recursive = true;
    Kx__V1__SandboxFilesReply *rep = files(app, req->account, &rq, reply);
    if (rep == NULL)
        return;
    kx_pb_free(rep);
    gw_reply_json(reply, MHD_HTTP_OK,
                  json_pack("{s:s, s:b, s:s}", "status", "success", "deleted", 1, "path", path));
}

/* ---- lifecycle -------------------------------------------------------------------------- */

static Kx__V1__SandboxLifecycleReply *lifecycle(gw_app *app, const gw_request *req, const char *op,
                                                const char *project, int64_t timeout_ms,
                                                gw_reply *reply)
{
    Kx__V1__SandboxLifecycleRequest rq = KX__V1__SANDBOX_LIFECYCLE_REQUEST__INIT;
    rq.project_id = (char *)project;
    char subj[64];
    snprintf(subj, sizeof subj, KX_SUBJ_SANDBOX_LIFECYCLE_PREFIX "%s", op);
    Kx__V1__SandboxLifecycleReply *rep =
        ask(app, req->account, subj, &rq.base, &kx__v1__sandbox_lifecycle_reply__descriptor,
            timeout_ms, reply);
    if (rep != NULL && (broker_error(rep->error, reply) || rep->sandbox == NULL)) {
        if (rep->error == NULL)
            gw_reply_error(reply, MHD_HTTP_BAD_GATEWAY, "The sandbox service sent no sandbox");
        kx_pb_free(rep);
        return NULL;
    }
    if (rep != NULL)
        (void)gw_sandbox_record(app, rep->sandbox); /* the event may be lost: record it here */
    return rep;
}

Kx__V1__SandboxInfo *gw_sandbox_ensure(gw_app *app, const gw_request *req, const char *project,
                                       gw_reply *reply)
{
    Kx__V1__SandboxLifecycleReply *rep =
        lifecycle(app, req, "ensure_active", project, app->cfg.sandbox_create_ms, reply);
    if (rep == NULL)
        return NULL;
    Kx__V1__SandboxInfo *info = rep->sandbox;
    rep->sandbox = NULL; /* kept; the rest of the reply freed */
    kx_pb_free(rep);
    return info;
}

void gw_sandbox_discard(gw_app *app, const gw_request *req, const char *project)
{
    gw_reply scratch = {0};
    Kx__V1__SandboxLifecycleReply *rep =
        lifecycle(app, req, "delete", project, app->cfg.sandbox_get_ms, &scratch);
    if (rep == NULL)
        kx_warn("gateway: could not delete the sandbox of project %s: %s", project,
                scratch.body ? scratch.body : "(no reason)");
    kx_pb_free(rep);
    gw_reply_free(&scratch);
}

void gw_route_sandbox_delete(gw_app *app, gw_request *req, gw_reply *reply)
{
    char project[KX_UUID_LEN + 1];
    if (!find_sandbox(app, req, FOR_WRITE, project, NULL, reply))
        return;
    Kx__V1__SandboxLifecycleReply *rep =
        lifecycle(app, req, "delete", project, app->cfg.sandbox_get_ms, reply);
    if (rep == NULL)
        return;
    if (rep->sandbox->id == NULL || rep->sandbox->id[0] == '\0') {
        /* It was already gone on the broker: the row still says otherwise; say deleted. */
        Kx__V1__SandboxInfo info = *rep->sandbox;
        info.id = req->id;
        info.project_id = project;
        info.provider = "local";
        info.broker = "";
        (void)gw_sandbox_record(app, &info);
    }
    kx_pb_free(rep);
    gw_reply_json(reply, MHD_HTTP_OK,
                  json_pack("{s:s, s:b, s:s}", "status", "success", "deleted", 1, "sandbox_id",
                            req->id));
}

void gw_route_sandbox_ensure_active(gw_app *app, gw_request *req, gw_reply *reply)
{
    if (!kx_uuid_valid(req->id)) {
        gw_reply_error(reply, MHD_HTTP_NOT_FOUND, "Project not found");
        return;
    }
    kx_db *db = gw_db_get(app, reply);
    if (db == NULL)
        return;
    const char *params[] = {req->id};
    kx_err err = KX_OK;
    PGresult *r = kx_db_exec(db, "gw_sandbox_project_owner", 1, params, &err);
    bool ok = false;
    if (r == NULL)
        gw_reply_db_error(reply, err, "Failed to load the project");
    else if (PQntuples(r) == 0)
        gw_reply_error(reply, MHD_HTTP_NOT_FOUND, "Project not found");
    else if (strcmp(PQgetvalue(r, 0, 0), req->account) != 0)
        gw_reply_error(reply, MHD_HTTP_NOT_FOUND, "Project not found"); /* not a hint */
    else
        ok = true;
    PQclear(r);
    gw_db_put(app, db);
    if (!ok)
        return;
    Kx__V1__SandboxLifecycleReply *rep =
        lifecycle(app, req, "ensure_active", req->id, app->cfg.sandbox_create_ms, reply);
    if (rep == NULL)
        return;
    gw_reply_json(reply, MHD_HTTP_OK,
                  json_pack("{s:s, s:s, s:s}", "status", "success", "sandbox_id", rep->sandbox->id,
                            "message", "Sandbox is active"));
    kx_pb_free(rep);
}

/* ---- preview links ---------------------------------------------------------------------- */

typedef struct qs {
    char *buf;
    size_t len, cap;
} qs;

static void qs_add_enc(qs *q, const char *s)
{
    for (const unsigned char *c = (const unsigned char *)s; *c && q->len + 4 < q->cap; c++) {
        if ((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
            strchr("-._~/", *c) != NULL)
            q->buf[q->len++] = (char)*c;
        else
            q->len += (size_t)snprintf(q->buf + q->len, q->cap - q->len, "%%%02X", *c);
    }
    q->buf[q->len] = '\0';
}

/* The query string passed on: every argument but the gateway's own (token, preview_token). */
static enum MHD_Result add_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                               const char *value)
{
    qs *q = cls;
    if (key == NULL || strcmp(key, "token") == 0 || strcmp(key, "preview_token") == 0)
        return MHD_YES;
    if (q->len + 2 < q->cap)
        q->buf[q->len++] = strchr(q->buf, '?') == NULL ? '?' : '&';
    q->buf[q->len] = '\0';
    qs_add_enc(q, key);
    if (value != NULL && q->len + 2 < q->cap) {
        q->buf[q->len++] = '=';
        q->buf[q->len] = '\0';
        qs_add_enc(q, value);
    }
    return MHD_YES;
}

void gw_route_sandbox_preview(gw_app *app, gw_request *req, gw_reply *reply)
{
    const char *rest = req->rest ? req->rest : "";
    char *end = NULL;
    long port = strtol(rest, &end, 10);
    if (end == rest || (*end != '\0' && *end != '/') || port < 1 || port > 65535) {
        gw_reply_error(reply, MHD_HTTP_NOT_FOUND, "Preview port not found: expected 1..65535");
        return;
    }
    char project[KX_UUID_LEN + 1];
    if (!find_sandbox(app, req, FOR_PREVIEW, project, NULL, reply))
        return;
    const char *token = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, "X-Preview-Token");
    if (token == NULL)
        token = query(req, "preview_token");
    if (token == NULL || token[0] == '\0' || strlen(token) > 64) {
        gw_reply_error(reply, MHD_HTTP_UNAUTHORIZED,
                       "A preview token is required: the X-Preview-Token header or the "
                       "preview_token query parameter");
        return;
    }
    Kx__V1__SandboxPreviewRequest rq = KX__V1__SANDBOX_PREVIEW_REQUEST__INIT;
    rq.project_id = project;
    rq.port = (int32_t)port;
    rq.token = (char *)token;
    Kx__V1__SandboxPreviewReply *rep =
        ask(app, req->account, KX_SUBJ_SANDBOX_PREVIEW, &rq.base,
            &kx__v1__sandbox_preview_reply__descriptor, app->cfg.sandbox_preview_ms, reply);
    if (rep == NULL)
        return;
    if (broker_error(rep->error, reply) || kx_pb_str_empty(rep->relay)) {
        if (rep->error == NULL)
            gw_reply_error(reply, MHD_HTTP_BAD_GATEWAY, "The sandbox service gave no relay");
        kx_pb_free(rep);
        return;
    }
    char path[4096];
    qs q = {.buf = path, .cap = sizeof path};
    path[0] = '\0';
    qs_add_enc(&q, *end == '/' ? end : "/");
    MHD_get_connection_values(req->conn, MHD_GET_ARGUMENT_KIND, add_arg, &q);
    char preamble[200];
    snprintf(preamble, sizeof preamble, "%s %ld %s", project, port, token);
    gw_proxy_resp pr;
    char why[300];
    gw_proxy_req prq = {
        .method = req->method,
        .path_query = path,
        .port = (int)port,
        .accept = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_ACCEPT),
        .content_type = req->content_type,
        /* POST, PUT, PATCH, DELETE (BODY_RAW, bounded by KX_MAX_BODY_BYTES): their body, an
         * empty one said as Content-Length: 0 */
        .body = strcmp(req->method, "GET") == 0 ? NULL : (req->body != NULL ? req->body : ""),
        .body_len = req->body != NULL ? req->body_len : 0,
    };
    kx_err err = gw_proxy_fetch(rep->relay, preamble, &prq, PREVIEW_MAX_BYTES, PREVIEW_FETCH_MS,
                                &pr, why, sizeof why);
    kx_pb_free(rep);
    if (err != KX_OK) {
        gw_reply_error(reply,
                       err == KX_ERR_TIMEOUT ? MHD_HTTP_GATEWAY_TIMEOUT : MHD_HTTP_BAD_GATEWAY,
                       "%s", why);
        return;
    }
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(pr.body_len, pr.body, MHD_RESPMEM_MUST_FREE);
    if (resp == NULL) {
        gw_proxy_resp_free(&pr);
        gw_reply_error(reply, MHD_HTTP_INTERNAL_SERVER_ERROR, "Out of memory");
        return;
    }
    pr.body = NULL; /* libmicrohttpd frees it */
    for (size_t i = 0; i < pr.nheaders; i++)
        MHD_add_response_header(resp, pr.names[i], pr.values[i]);
    reply->status = pr.status;
    reply->resp = resp;
    gw_proxy_resp_free(&pr);
}
