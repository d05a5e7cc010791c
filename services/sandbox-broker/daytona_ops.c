/* daytona_ops.c — kx.sandbox.exec and kx.sandbox.files of the daytona provider, over Daytona's
 * toolbox API (see daytona.h), once the project's sandbox is started:
 *   POST   /toolbox/{id}/toolbox/process/execute      {command, cwd, timeout} ->
 *                                                     {exitCode, result} (stdout and stderr
 *                                                     together, as Daytona gives them)
 *   GET    /toolbox/{id}/toolbox/files?path=          [FileInfo{name, isDir, size, mode,
 *                                                     modTime}]
 *   GET    /toolbox/{id}/toolbox/files/info?path=     FileInfo
 *   GET    /toolbox/{id}/toolbox/files/download?path= the bytes
 *   POST   /toolbox/{id}/toolbox/files/upload?path=   multipart/form-data, part "file"
 *   DELETE /toolbox/{id}/toolbox/files?path=[&recursive=true]
 * Paths are the sandbox-visible /workspace/... of the request (files_request.c validated it). */
#include "daytona.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kx/json.h"
#include "kx/log.h"
#include "kx/utf8.h"
#include "reply.h"

/* ---- exec ------------------------------------------------------------------------------- */

void sb_dt_exec_fail(sb_dt_op *op, kx_err err, const char *why)
{
    const Kx__V1__SandboxExecRequest *rq = op->exec;
    kx_log(KX_LOG_INFO, NULL, op->trace_id, "sandbox: daytona exec %s: %s",
           rq != NULL && rq->exec_id != NULL ? rq->exec_id : "", why);
    Kx__V1__Error e = KX__V1__ERROR__INIT;
    e.code = (char *)kx_err_code(err);
    e.message = (char *)why;
    Kx__V1__SandboxExecResult res = KX__V1__SANDBOX_EXEC_RESULT__INIT;
    res.exec_id = rq != NULL && rq->exec_id != NULL ? rq->exec_id : "";
    res.session_name = op->session;
    res.timed_out = err == KX_ERR_TIMEOUT && op->t0_ms > 0;
    res.duration_ms = op->t0_ms > 0 ? kx_mono_ms() - op->t0_ms : 0;
    res.error = &e;
    if (natsMsg_GetReply(op->msg) != NULL)
        sb_reply_result(sb_dt_broker(op->d), op->msg, &res);
    sb_dt_op_end(op);
}

static void on_exec(const sb_dt_resp *r, void *arg)
{
    sb_dt_op *op = arg;
    op->call = NULL;
    if (r->err != KX_OK) {
        sb_dt_exec_fail(op, r->err, r->why);
        return;
    }
    const json_t *code = json_object_get(r->json, "exitCode");
    if (code == NULL)
        code = json_object_get(r->json, "code"); /* older toolboxes */
    const char *out = kx_json_str(r->json, "result", NULL);
    if (!json_is_integer(code) || out == NULL) {
        sb_dt_exec_fail(op, KX_ERR_PROTOCOL,
                        "daytona: the execute answer has no exitCode and result");
        return;
    }
    const Kx__V1__SandboxExecRequest *rq = op->exec;
    sb_broker *b = sb_dt_broker(op->d);
    size_t cap = (size_t)b->cfg.max_output;
    if (rq->max_output_bytes > 0 && (size_t)rq->max_output_bytes < cap)
        cap = (size_t)rq->max_output_bytes;
    if (b->max_reply > 8192 && cap > b->max_reply - 8192)
        cap = b->max_reply - 8192;
    size_t n = strlen(out);
    bool truncated = n > cap;
    char *text = kx_utf8_sanitize(out, truncated ? cap : n, NULL);
    char cwd[SB_FOLDER_MAX + 16];
    snprintf(cwd, sizeof cwd, "/workspace%s%s", op->folder[0] != '\0' ? "/" : "", op->folder);
    Kx__V1__SandboxExecResult res = KX__V1__SANDBOX_EXEC_RESULT__INIT;
    res.exec_id = rq->exec_id;
    res.started = true;
    res.completed = true;
    res.exit_code = (int32_t)json_integer_value(code);
    res.stdout = text != NULL ? text : "";
    res.stderr = "";
    res.truncated = truncated;
    res.cwd = cwd;
    res.session_name = op->session;
    res.duration_ms = kx_mono_ms() - op->t0_ms;
    if (natsMsg_GetReply(op->msg) != NULL)
        sb_reply_result(b, op->msg, &res);
    free(text);
    sb_dt_op_end(op);
}

void sb_dt_exec_run(sb_dt_op *op)
{
    const Kx__V1__SandboxExecRequest *rq = op->exec;
    if (!rq->blocking) {
        sb_dt_bg_exec_run(op); /* daytona_sessions.c */
        return;
    }
    int64_t budget = kx_deadline_remaining(op->deadline);
    if (rq->timeout_s > 0 && (int64_t)rq->timeout_s * 1000 < budget)
        budget = (int64_t)rq->timeout_s * 1000;
    char cwd[SB_FOLDER_MAX + 16];
    snprintf(cwd, sizeof cwd, "/workspace%s%s", op->folder[0] != '\0' ? "/" : "", op->folder);
    /* Daytona's timeout is whole seconds; the HTTP call's own deadline is the exact one. */
    json_t *body = json_pack("{s:s, s:s, s:I}", "command", rq->command, "cwd", cwd, "timeout",
                             (json_int_t)((budget + 999) / 1000));
    char *text = body != NULL ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    char path[256];
    snprintf(path, sizeof path, "/toolbox/%s/toolbox/process/execute", op->sid);
    op->t0_ms = kx_mono_ms(); /* the command's own time, not the start's */
    op->call = text != NULL ? sb_dt_request(sb_dt_http(op->d), "POST", path, text, strlen(text),
                                            NULL, budget, on_exec, op)
                            : NULL;
    free(text);
    if (op->call == NULL)
        sb_dt_exec_fail(op, KX_ERR_NOMEM, "daytona: out of memory");
}

/* ---- files ------------------------------------------------------------------------------ */

static void files_answer(sb_dt_op *op, Kx__V1__SandboxFilesReply *rep)
{
    if (natsMsg_GetReply(op->msg) != NULL) {
        kx_err err = kx_bus_respond_pb(sb_dt_broker(op->d)->svc->bus, op->msg, &rep->base);
        if (err != KX_OK)
            kx_warn("sandbox: could not answer a files request: %s", kx_err_str(err));
    }
    sb_dt_op_end(op);
}

void sb_dt_files_fail(sb_dt_op *op, kx_err err, const char *why)
{
    kx_log(KX_LOG_INFO, NULL, op->trace_id, "sandbox: daytona files %s: %s",
           sb_files_op_name(op->fr.op), why);
    Kx__V1__Error e = KX__V1__ERROR__INIT;
    e.code = (char *)kx_err_code(err);
    e.message = (char *)why;
    Kx__V1__SandboxFilesReply rep = KX__V1__SANDBOX_FILES_REPLY__INIT;
    rep.error = &e;
    files_answer(op, &rep);
}

/* A FileInfo into info; name and path point into fi / vis (valid while the answer is). */
static void read_info(const json_t *fi, const char *vis, char *path, size_t pathcap,
                      Kx__V1__SandboxFileInfo *info)
{
    const char *name = kx_json_str(fi, "name", "");
    snprintf(path, pathcap, "%s%s%s", vis, vis[strlen(vis) - 1] == '/' ? "" : "/", name);
    info->name = (char *)name;
    info->path = path;
    info->is_dir = kx_json_bool(fi, "isDir", false);
    info->size = kx_json_int(fi, "size", 0);
    const char *perm = kx_json_str(fi, "permissions", NULL);
    info->mode = perm != NULL ? (uint32_t)strtoul(perm, NULL, 8) & 07777
                              : (uint32_t)(kx_json_int(fi, "mode", 0) & 07777);
    info->mtime_unix_ms = sb_dt_iso_ms(kx_json_str(fi, "modTime", NULL));
}

static int by_name(const void *a, const void *b)
{
    const Kx__V1__SandboxFileInfo *const *x = a;
    const Kx__V1__SandboxFileInfo *const *y = b;
    return strcmp((*x)->name, (*y)->name);
}

static void answer_list(sb_dt_op *op, const json_t *list, const char *vis)
{
    if (!json_is_array(list)) {
        sb_dt_files_fail(op, KX_ERR_PROTOCOL, "daytona: the files list is not an array");
        return;
    }
    size_t n = json_array_size(list);
    Kx__V1__SandboxFileInfo *infos = calloc(n + 1, sizeof *infos);
    Kx__V1__SandboxFileInfo **ptrs = calloc(n + 1, sizeof *ptrs);
    char(*paths)[SB_FOLDER_MAX + 300] = calloc(n + 1, sizeof *paths);
    if (infos == NULL || ptrs == NULL || paths == NULL) {
        free(infos);
        free(ptrs);
        free(paths);
        sb_dt_files_fail(op, KX_ERR_NOMEM, "daytona: out of memory");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        kx__v1__sandbox_file_info__init(&infos[i]);
        read_info(json_array_get(list, i), vis, paths[i], sizeof paths[i], &infos[i]);
        ptrs[i] = &infos[i];
    }
    qsort(ptrs, n, sizeof *ptrs, by_name);
    Kx__V1__SandboxFileInfo dir = KX__V1__SANDBOX_FILE_INFO__INIT;
    dir.name = (char *)(op->fr.base != NULL ? op->fr.base : "");
    dir.path = (char *)vis;
    dir.is_dir = true;
    Kx__V1__SandboxFilesReply rep = KX__V1__SANDBOX_FILES_REPLY__INIT;
    rep.info = &dir;
    rep.entries = ptrs;
    rep.n_entries = n < op->fr.max_entries ? n : op->fr.max_entries;
    char note[120] = "";
    if (n > op->fr.max_entries) {
        rep.truncated = true;
        snprintf(note, sizeof note, "%zu entries, %zu listed", n, op->fr.max_entries);
        rep.note = note;
    }
    files_answer(op, &rep);
    free(infos);
    free(ptrs);
    free(paths);
}

static void on_files(const sb_dt_resp *r, void *arg)
{
    sb_dt_op *op = arg;
    op->call = NULL;
    char vis[SB_FOLDER_MAX + 16];
    sb_files_visible(op->fr.path, vis, sizeof vis);
    if (r->err != KX_OK) {
        char why[600];
        snprintf(why, sizeof why, "%.180s: %s", vis, r->why);
        sb_dt_files_fail(op, r->err, why);
        return;
    }
    Kx__V1__SandboxFilesReply rep = KX__V1__SANDBOX_FILES_REPLY__INIT;
    Kx__V1__SandboxFileInfo info = KX__V1__SANDBOX_FILE_INFO__INIT;
    info.name = (char *)op->fr.base;
    info.path = vis;
    char path[SB_FOLDER_MAX + 300];
    switch (op->fr.op) {
    case KX__V1__SANDBOX_FILE_OP__SANDBOX_FILE_LIST: answer_list(op, r->json, vis); return;
    case KX__V1__SANDBOX_FILE_OP__SANDBOX_FILE_STAT:
        if (!json_is_object(r->json)) {
            sb_dt_files_fail(op, KX_ERR_PROTOCOL, "daytona: the file info is not an object");
            return;
        }
        read_info(r->json, vis, path, sizeof path, &info);
        info.path = vis; /* the path asked for, not parent + name */
        rep.info = &info;
        break;
    case KX__V1__SANDBOX_FILE_OP__SANDBOX_FILE_READ: {
        int64_t size = (int64_t)r->len;
        int64_t off = op->fr.offset < size ? op->fr.offset : size;
        size_t room = sb_dt_broker(op->d)->max_reply - 4096;
        int64_t want = op->fr.length > 0 ? op->fr.length : (int64_t)room;
        if (want > (int64_t)room)
            want = (int64_t)room;
        if (want > size - off)
            want = size - off;
        info.size = size;
        rep.info = &info;
        rep.data.data = (uint8_t *)r->body + off;
        rep.data.len = (size_t)want;
        rep.next_offset = off + want;
        rep.eof = off + want >= size;
        break;
    }
    case KX__V1__SANDBOX_FILE_OP__SANDBOX_FILE_WRITE:
        info.size = (int64_t)op->fr.len;
        rep.info = &info;
        rep.written = (int64_t)op->fr.len;
        rep.next_offset = (int64_t)op->fr.len;
        break;
    case KX__V1__SANDBOX_FILE_OP__SANDBOX_FILE_DELETE:
        rep.deleted = 1; /* Daytona does not say how many entries went */
        break;
    default: break;
    }
    files_answer(op, &rep);
}

void sb_dt_files_run(sb_dt_op *op)
{
    char vis[SB_FOLDER_MAX + 16], q[3 * (SB_FOLDER_MAX + 16) + 1], path[3 * SB_FOLDER_MAX + 300];
    sb_files_visible(op->fr.path, vis, sizeof vis);
    sb_dt_escape(vis, q, sizeof q);
    const char *method = "GET";
    const char *tail = "";
    const void *body = NULL;
    size_t len = 0;
    const char *upload = NULL;
    switch (op->fr.op) {
    case KX__V1__SANDBOX_FILE_OP__SANDBOX_FILE_STAT: tail = "/info"; break;
    case KX__V1__SANDBOX_FILE_OP__SANDBOX_FILE_READ: tail = "/download"; break;
    case KX__V1__SANDBOX_FILE_OP__SANDBOX_FILE_WRITE:
        method = "POST";
        tail = "/upload";
        body = op->fr.data;
        len = op->fr.len;
        upload = vis;
        break;
    case KX__V1__SANDBOX_FILE_OP__SANDBOX_FILE_DELETE: method = "DELETE"; break;
    default: break; /* LIST */
    }
    snprintf(path, sizeof path, "/toolbox/%s/toolbox/files%s?path=%s%s", op->sid, tail, q,
             op->fr.op == KX__V1__SANDBOX_FILE_OP__SANDBOX_FILE_DELETE && op->fr.recursive
                 ? "&recursive=true"
                 : "");
    op->call = sb_dt_request(sb_dt_http(op->d), method, path, body, len, upload,
                             sb_dt_budget(op, sb_dt_cfg(op->d)->files_ms), on_files, op);
    if (op->call == NULL)
        sb_dt_files_fail(op, KX_ERR_NOMEM, "daytona: out of memory");
}
