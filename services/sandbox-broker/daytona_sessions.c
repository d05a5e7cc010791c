/* daytona_sessions.c — background commands of the daytona provider, in Daytona process
 * sessions (one per session_name), and kx.sandbox.output / terminate / list over them (see
 * daytona.h). Daytona's toolbox calls used:
 *   POST   /toolbox/{id}/toolbox/process/session               {sessionId} (409: it exists)
 *   POST   /toolbox/{id}/toolbox/process/session/{s}/exec      {command, runAsync: true} ->
 *                                                              {cmdId}
 *   GET    /toolbox/{id}/toolbox/process/session               [Session{sessionId, commands}]
 *   GET    /toolbox/{id}/toolbox/process/session/{s}           Session{sessionId, commands:
 *                                                              [Command{id, command, exitCode}]}
 *   GET    /toolbox/{id}/toolbox/process/session/{s}/command/{c}/logs   the command's output
 *   DELETE /toolbox/{id}/toolbox/process/session/{s}           ends it and its commands
 * A session's "log" (kx.sandbox.output's offsets) is its commands' logs one after the other,
 * in the order Daytona lists them; a command is running while its exitCode is null. */
#include "daytona.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kx/json.h"
#include "kx/log.h"
#include "kx/utf8.h"
#include "reply.h"

#define CMD_SHOWN 256 /* bytes of a command in kx.sandbox.list */

static void respond(sb_dt_op *op, const ProtobufCMessage *rep)
{
    if (natsMsg_GetReply(op->msg) != NULL) {
        kx_err err = kx_bus_respond_pb(sb_dt_broker(op->d)->svc->bus, op->msg, rep);
        if (err != KX_OK)
            kx_warn("sandbox: could not answer a daytona session request: %s", kx_err_str(err));
    }
    sb_dt_op_end(op);
}

void sb_dt_sessions_fail(sb_dt_op *op, kx_err err, const char *why)
{
    kx_log(KX_LOG_INFO, NULL, op->trace_id, "sandbox: daytona session %s: %s", op->session, why);
    Kx__V1__Error e = KX__V1__ERROR__INIT;
    e.code = (char *)kx_err_code(err);
    e.message = (char *)why;
    if (op->kind == DT_OUTPUT) {
        Kx__V1__SandboxOutputReply rep = KX__V1__SANDBOX_OUTPUT_REPLY__INIT;
        rep.session_name = op->session;
        rep.error = &e;
        respond(op, &rep.base);
    } else if (op->kind == DT_TERMINATE) {
        Kx__V1__SandboxTerminateReply rep = KX__V1__SANDBOX_TERMINATE_REPLY__INIT;
        rep.error = &e;
        respond(op, &rep.base);
    } else {
        Kx__V1__SandboxListReply rep = KX__V1__SANDBOX_LIST_REPLY__INIT;
        rep.error = &e;
        respond(op, &rep.base);
    }
}

/* A call of op's; out of memory fails op (as its kind answers). */
static void call(sb_dt_op *op, const char *method, const char *path, const char *body,
                 sb_dt_done done)
{
    op->call =
        sb_dt_request(sb_dt_http(op->d), method, path, body, body != NULL ? strlen(body) : 0, NULL,
                      sb_dt_budget(op, sb_dt_cfg(op->d)->get_ms), done, op);
    if (op->call == NULL)
        sb_dt_fail(op, KX_ERR_NOMEM, "daytona: out of memory");
}

static void session_path(const sb_dt_op *op, const char *tail, char *out, size_t cap)
{
    snprintf(out, cap, "/toolbox/%s/toolbox/process/session%s%s%s", op->sid,
             op->session[0] != '\0' ? "/" : "", op->session, tail);
}

/* Commands of a Session object whose exitCode is null. */
static int running_of(const json_t *cmds)
{
    int n = 0;
    size_t i;
    const json_t *c;
    json_array_foreach(cmds, i, c)
    {
        const json_t *code = json_object_get(c, "exitCode");
        n += code == NULL || json_is_null(code);
    }
    return n;
}

/* ---- a background command ---------------------------------------------------------------- */

static void bg_answer(sb_dt_op *op, const char *cmd_id)
{
    char cwd[SB_FOLDER_MAX + 16];
    snprintf(cwd, sizeof cwd, "/workspace%s%s", op->folder[0] != '\0' ? "/" : "", op->folder);
    Kx__V1__SandboxExecResult res = KX__V1__SANDBOX_EXEC_RESULT__INIT;
    res.exec_id = op->exec->exec_id;
    res.started = true;
    res.completed = false;
    res.stdout = "";
    res.stderr = "";
    res.cwd = cwd;
    res.session_name = op->session;
    res.duration_ms = kx_mono_ms() - op->t0_ms;
    kx_log(KX_LOG_INFO, NULL, op->trace_id,
           "sandbox: daytona: command %s started in session %s (exec %s)", cmd_id, op->session,
           op->exec->exec_id);
    if (natsMsg_GetReply(op->msg) != NULL)
        sb_reply_result(sb_dt_broker(op->d), op->msg, &res);
    sb_dt_op_end(op);
}

static void on_bg_exec(const sb_dt_resp *r, void *arg)
{
    sb_dt_op *op = arg;
    op->call = NULL;
    if (r->err != KX_OK) {
        sb_dt_exec_fail(op, r->err, r->why);
        return;
    }
    bg_answer(op, kx_json_str(r->json, "cmdId", "?"));
}

/* "mkdir -p '/workspace/<folder>' && cd '/workspace/<folder>' && { <command>\n}": the folder
 * (made if missing, as with the local provider) wins over the session's cwd. The folder was
 * validated (no NUL); single quotes in it are escaped. */
static void add_folder(kx_buf *b, const sb_dt_op *op)
{
    kx_buf_str(b, "'/workspace");
    if (op->folder[0] != '\0')
        kx_buf_str(b, "/");
    for (const char *p = op->folder; *p != '\0'; p++)
        kx_buf_str(b, *p == '\'' ? "'\\''" : (char[2]){*p, '\0'});
    kx_buf_str(b, "'");
}

static char *wrapped(const sb_dt_op *op)
{
    kx_buf b = KX_BUF_INIT;
    kx_buf_str(&b, "mkdir -p ");
    add_folder(&b, op);
    kx_buf_str(&b, " && cd ");
    add_folder(&b, op);
    kx_buf_str(&b, " && { ");
    kx_buf_str(&b, op->exec->command);
    kx_buf_str(&b, "\n}");
    if (b.oom) {
        kx_buf_free(&b);
        return NULL;
    }
    return kx_buf_take(&b);
}

static void on_session_made(const sb_dt_resp *r, void *arg)
{
    sb_dt_op *op = arg;
    op->call = NULL;
    if (r->err != KX_OK && r->err != KX_ERR_CONFLICT) { /* 409: the session exists: fine */
        sb_dt_exec_fail(op, r->err, r->why);
        return;
    }
    char *cmd = wrapped(op);
    json_t *body = cmd != NULL ? json_pack("{s:s, s:b}", "command", cmd, "runAsync", 1) : NULL;
    char *text = body != NULL ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    free(cmd);
    if (text == NULL) {
        sb_dt_exec_fail(op, KX_ERR_NOMEM, "daytona: out of memory");
        return;
    }
    char path[512];
    session_path(op, "/exec", path, sizeof path);
    call(op, "POST", path, text, on_bg_exec);
    free(text);
}

void sb_dt_bg_exec_run(sb_dt_op *op)
{
    char path[512], body[128];
    snprintf(path, sizeof path, "/toolbox/%s/toolbox/process/session", op->sid);
    snprintf(body, sizeof body, "{\"sessionId\":\"%s\"}", op->session); /* [A-Za-z0-9_.-] */
    call(op, "POST", path, body, on_session_made);
}

/* ---- kx.sandbox.output ------------------------------------------------------------------- */

static void read_next_log(sb_dt_op *op);

static void output_answer(sb_dt_op *op, int killed)
{
    sb_broker *b = sb_dt_broker(op->d);
    int64_t size = (int64_t)op->logs.len;
    size_t budget = b->max_reply > 32768 ? (b->max_reply - 16384) / 3 : 4096;
    if (op->max_bytes > 0 && (size_t)op->max_bytes < budget)
        budget = (size_t)op->max_bytes;
    int64_t off = op->offset < size ? op->offset : size;
    size_t want = (size_t)(size - off) < budget ? (size_t)(size - off) : budget;
    char *text = kx_utf8_sanitize(op->logs.s != NULL ? op->logs.s + off : "", want, NULL);
    Kx__V1__SandboxOutputReply rep = KX__V1__SANDBOX_OUTPUT_REPLY__INIT;
    rep.session_name = op->session;
    rep.output = text != NULL ? text : "";
    rep.next_offset = off + (int64_t)want;
    rep.size = size;
    rep.running = !op->kill && running_of(op->cmds) > 0;
    rep.killed = killed;
    respond(op, &rep.base);
    free(text);
}

static void on_output_killed(const sb_dt_resp *r, void *arg)
{
    sb_dt_op *op = arg;
    op->call = NULL;
    if (r->err != KX_OK && r->err != KX_ERR_NOT_FOUND) {
        sb_dt_fail(op, r->err, r->why);
        return;
    }
    output_answer(op, running_of(op->cmds));
}

static void on_log(const sb_dt_resp *r, void *arg)
{
    sb_dt_op *op = arg;
    op->call = NULL;
    if (r->err != KX_OK) {
        sb_dt_fail(op, r->err, r->why);
        return;
    }
    if (kx_buf_add(&op->logs, r->body, r->len) != KX_OK) {
        sb_dt_fail(op, KX_ERR_NOMEM, "daytona: out of memory");
        return;
    }
    op->cmd_i++;
    read_next_log(op);
}

static void read_next_log(sb_dt_op *op)
{
    const json_t *c = json_array_get(op->cmds, op->cmd_i);
    if (c != NULL) {
        char tail[200], path[512];
        snprintf(tail, sizeof tail, "/command/%.120s/logs", kx_json_str(c, "id", ""));
        session_path(op, tail, path, sizeof path);
        call(op, "GET", path, NULL, on_log);
        return;
    }
    if (op->kill) {
        char path[512];
        session_path(op, "", path, sizeof path);
        call(op, "DELETE", path, NULL, on_output_killed);
        return;
    }
    output_answer(op, 0);
}

/* ---- the session, for output and terminate ----------------------------------------------- */

static void on_terminated(const sb_dt_resp *r, void *arg)
{
    sb_dt_op *op = arg;
    op->call = NULL;
    if (r->err != KX_OK && r->err != KX_ERR_NOT_FOUND) {
        sb_dt_fail(op, r->err, r->why);
        return;
    }
    Kx__V1__SandboxTerminateReply rep = KX__V1__SANDBOX_TERMINATE_REPLY__INIT;
    rep.killed = running_of(op->cmds);
    respond(op, &rep.base);
}

static void on_session(const sb_dt_resp *r, void *arg)
{
    sb_dt_op *op = arg;
    op->call = NULL;
    if (r->err == KX_ERR_NOT_FOUND || r->err == KX_ERR_CONFLICT) { /* 409: not started */
        char why[300];
        snprintf(why, sizeof why,
                 "session '%s' has no output in project %s (no background command was started "
                 "with that name, or its sandbox stopped)",
                 op->session, op->project);
        if (op->kind == DT_OUTPUT) {
            sb_dt_fail(op, KX_ERR_NOT_FOUND, why);
        } else { /* terminate: nothing to kill */
            Kx__V1__SandboxTerminateReply rep = KX__V1__SANDBOX_TERMINATE_REPLY__INIT;
            respond(op, &rep.base);
        }
        return;
    }
    if (r->err != KX_OK) {
        sb_dt_fail(op, r->err, r->why);
        return;
    }
    const json_t *cmds = json_object_get(r->json, "commands");
    op->cmds = json_is_array(cmds) ? json_incref((json_t *)cmds) : json_array();
    if (op->kind == DT_OUTPUT) {
        read_next_log(op);
        return;
    }
    char path[512];
    session_path(op, "", path, sizeof path);
    call(op, "DELETE", path, NULL, on_terminated);
}

/* ---- kx.sandbox.list --------------------------------------------------------------------- */

static void on_sessions(const sb_dt_resp *r, void *arg)
{
    sb_dt_op *op = arg;
    op->call = NULL;
    if (r->err == KX_ERR_CONFLICT) { /* the sandbox is not started: nothing runs */
        Kx__V1__SandboxListReply rep = KX__V1__SANDBOX_LIST_REPLY__INIT;
        respond(op, &rep.base);
        return;
    }
    if (r->err != KX_OK || !json_is_array(r->json)) {
        sb_dt_fail(op, r->err != KX_OK ? r->err : KX_ERR_PROTOCOL,
                   r->err != KX_OK ? r->why : "daytona: the sessions list is not an array");
        return;
    }
    size_t n = 0, i, j;
    const json_t *s, *c;
    json_array_foreach(r->json, i, s) n += json_array_size(json_object_get(s, "commands"));
    Kx__V1__SandboxCommand *cmds = calloc(n + 1, sizeof *cmds);
    Kx__V1__SandboxCommand **ptrs = calloc(n + 1, sizeof *ptrs);
    char(*shown)[CMD_SHOWN + 1] = calloc(n + 1, sizeof *shown);
    if (cmds == NULL || ptrs == NULL || shown == NULL) {
        free(cmds);
        free(ptrs);
        free(shown);
        sb_dt_fail(op, KX_ERR_NOMEM, "daytona: out of memory");
        return;
    }
    size_t k = 0;
    json_array_foreach(r->json, i, s)
    {
        json_array_foreach(json_object_get(s, "commands"), j, c)
        {
            const json_t *code = json_object_get(c, "exitCode");
            if (code != NULL && !json_is_null(code))
                continue; /* finished */
            kx__v1__sandbox_command__init(&cmds[k]);
            snprintf(shown[k], sizeof shown[k], "%s", kx_json_str(c, "command", ""));
            cmds[k].exec_id = (char *)kx_json_str(c, "id", "");
            cmds[k].session_name = (char *)kx_json_str(s, "sessionId", "");
            cmds[k].command = shown[k];
            cmds[k].blocking = false;
            ptrs[k] = &cmds[k];
            k++;
        }
    }
    Kx__V1__SandboxListReply rep = KX__V1__SANDBOX_LIST_REPLY__INIT;
    rep.commands = ptrs;
    rep.n_commands = k;
    respond(op, &rep.base);
    free(cmds);
    free(ptrs);
    free(shown);
}

void sb_dt_sessions_run(sb_dt_op *op)
{
    if (op->sid[0] == '\0') { /* no sandbox: no session */
        if (op->kind == DT_LIST) {
            Kx__V1__SandboxListReply rep = KX__V1__SANDBOX_LIST_REPLY__INIT;
            respond(op, &rep.base);
        } else {
            sb_dt_resp r;
            memset(&r, 0, sizeof r);
            r.err = KX_ERR_NOT_FOUND;
            op->call = NULL;
            on_session(&r, op);
        }
        return;
    }
    char path[512];
    session_path(op, "", path, sizeof path);
    call(op, "GET", path, NULL, op->kind == DT_LIST ? on_sessions : on_session);
}

/* ---- bus endpoints ----------------------------------------------------------------------- */

/* The checks of the three requests (daytona_requests.c's prologue runs them): a project_id
 * UUID, a valid session name when one is needed, no negative offset or size. */
static kx_err check_common(const char *project, const char *session, int64_t offset,
                           int64_t max_bytes, sb_dt_checked *c, char *why, size_t whylen)
{
    if (!kx_uuid_valid(project))
        snprintf(why, whylen, "request is not valid: a project_id UUID is required");
    else if (session != NULL && !sb_session_name_valid(session))
        snprintf(why, whylen, "session_name is not valid: use 1..%d of A-Z a-z 0-9 _ . -",
                 SB_SESSION_MAX);
    else if (offset < 0 || max_bytes < 0)
        snprintf(why, whylen, "offset and max_bytes must not be negative");
    else {
        c->project = project;
        snprintf(c->session, sizeof c->session, "%s", session != NULL ? session : "");
        return KX_OK;
    }
    return KX_ERR_INVALID;
}

static kx_err check_output(const void *req, sb_dt_checked *c, char *why, size_t whylen)
{
    const Kx__V1__SandboxOutputRequest *rq = req;
    return check_common(rq->project_id, rq->session_name != NULL ? rq->session_name : "",
                        rq->offset, rq->max_bytes, c, why, whylen);
}

static bool keep_output(sb_dt_op *op, void *req, const sb_dt_checked *c)
{
    const Kx__V1__SandboxOutputRequest *rq = req;
    if (c != NULL) {
        snprintf(op->session, sizeof op->session, "%s", c->session);
        op->offset = rq->offset;
        op->max_bytes = rq->max_bytes;
        op->kill = rq->kill;
    }
    return false;
}

static kx_err check_terminate(const void *req, sb_dt_checked *c, char *why, size_t whylen)
{
    const Kx__V1__SandboxTerminateRequest *rq = req;
    return check_common(rq->project_id, rq->session_name != NULL ? rq->session_name : "", 0, 0, c,
                        why, whylen);
}

static bool keep_session(sb_dt_op *op, void *req, const sb_dt_checked *c)
{
    (void)req;
    if (c != NULL)
        snprintf(op->session, sizeof op->session, "%s", c->session);
    return false;
}

static kx_err check_list(const void *req, sb_dt_checked *c, char *why, size_t whylen)
{
    const Kx__V1__SandboxListRequest *rq = req;
    return check_common(rq->project_id, NULL, 0, 0, c, why, whylen);
}

static const sb_dt_endpoint ENDPOINTS[] = {
    /* as with the local provider: the owner answers (one Daytona: any) */
    {DT_OUTPUT, KX_SUBJ_SANDBOX_OUTPUT, &kx__v1__sandbox_output_request__descriptor, check_output,
     keep_output},
    {DT_TERMINATE, KX_SUBJ_SANDBOX_TERMINATE, &kx__v1__sandbox_terminate_request__descriptor,
     check_terminate, keep_session},
    {DT_LIST, KX_SUBJ_SANDBOX_LIST, &kx__v1__sandbox_list_request__descriptor, check_list, NULL},
};

kx_err sb_dt_sessions_start(sb_daytona *d)
{
    kx_err err = KX_OK;
    for (size_t i = 0; i < sizeof ENDPOINTS / sizeof ENDPOINTS[0] && err == KX_OK; i++)
        err = sb_dt_serve(d, &ENDPOINTS[i]);
    return err;
}
