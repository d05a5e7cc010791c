/* daytona_requests.c — the daytona provider's bus endpoints (see daytona.h): kx.sandbox.create
 * .. ensure_active, exec, files, preview and kill. Each request is checked here (what the local
 * provider's handlers.c, files_request.c and preview.c check), then becomes an op that
 * daytona.c resolves; what cannot start is answered at once. kx.sandbox.output, terminate and
 * list are daytona_sessions.c's. */
#include "daytona.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "kx/log.h"

static const char *const LIFECYCLE_OPS[] = {"create",  "get",    "start",        "stop",
                                            "archive", "delete", "ensure_active"};

typedef struct dt_sub_ctx {
    sb_daytona *d;
    enum sb_dt_kind kind;
} dt_sub_ctx;
static dt_sub_ctx g_ctx[DT_PREVIEW + 1];

/* An op that could not start: answers with a bare op holding only the message. */
static void refuse(sb_daytona *d, enum sb_dt_kind kind, natsMsg *msg, const char *project,
                   const char *trace_id, kx_err err, const char *why, void *req_to_free)
{
    sb_dt_op *op = sb_dt_start_op(d, kind, msg, project != NULL ? project : "",
                                  kx_deadline_in(1000), trace_id, req_to_free);
    if (op == NULL)
        return;
    if (kind == DT_EXEC)
        op->exec = req_to_free;
    else if (kind == DT_FILES)
        op->files = req_to_free;
    else
        kx_pb_free(req_to_free);
    sb_dt_fail(op, err, why);
}

static void on_lifecycle(natsMsg *msg, void *arg)
{
    dt_sub_ctx *x = arg;
    kx_deadline deadline;
    char trace_id[33];
    kx_err err;
    const char *why = sb_dt_gate(x->d, msg, &deadline, trace_id, &err);
    Kx__V1__SandboxLifecycleRequest *rq =
        kx_pb_unpack(&kx__v1__sandbox_lifecycle_request__descriptor, natsMsg_GetData(msg),
                     (size_t)natsMsg_GetDataLength(msg));
    if (why != NULL) {
        /* refused below */
    } else if (rq == NULL) {
        why = "request is not a valid kx.v1.SandboxLifecycleRequest";
    } else if (!kx_uuid_valid(rq->project_id)) {
        why = "project_id is not a valid UUID";
    }
    if (why != NULL || rq == NULL) {
        refuse(x->d, x->kind, msg, NULL, trace_id, err, why, rq);
        return;
    }
    sb_dt_op *op = sb_dt_start_op(x->d, x->kind, msg, rq->project_id, deadline, trace_id, NULL);
    kx_pb_free(rq);
    if (op != NULL)
        sb_dt_resolve(op);
}

static void on_preview_req(natsMsg *msg, void *arg)
{
    sb_daytona *d = arg;
    kx_deadline deadline;
    char trace_id[33];
    kx_err err;
    const char *why = sb_dt_gate(d, msg, &deadline, trace_id, &err);
    Kx__V1__SandboxPreviewRequest *rq =
        kx_pb_unpack(&kx__v1__sandbox_preview_request__descriptor, natsMsg_GetData(msg),
                     (size_t)natsMsg_GetDataLength(msg));
    if (why != NULL) {
        /* refused below */
    } else if (rq == NULL || !kx_uuid_valid(rq->project_id)) {
        why = "request is not a valid kx.v1.SandboxPreviewRequest with a project_id UUID";
    } else if (rq->port < 1 || rq->port > 65535) {
        why = "port must be 1..65535";
    } else if (!kx_pb_str_empty(rq->token)) {
        why = "the daytona provider does not check preview tokens: its links are Daytona's own "
              "URLs (with their own token), not the broker's relay";
    }
    if (why != NULL || rq == NULL) {
        refuse(d, DT_PREVIEW, msg, NULL, trace_id, err, why, rq);
        return;
    }
    sb_dt_op *op = sb_dt_start_op(d, DT_PREVIEW, msg, rq->project_id, deadline, trace_id, rq);
    if (op == NULL)
        return;
    op->port = rq->port;
    kx_pb_free(rq);
    sb_dt_resolve(op);
}

static void on_exec_req(natsMsg *msg, void *arg)
{
    sb_daytona *d = arg;
    kx_deadline deadline;
    char trace_id[33];
    kx_err err;
    const char *gwhy = sb_dt_gate(d, msg, &deadline, trace_id, &err);
    Kx__V1__SandboxExecRequest *rq =
        kx_pb_unpack(&kx__v1__sandbox_exec_request__descriptor, natsMsg_GetData(msg),
                     (size_t)natsMsg_GetDataLength(msg));
    char why[300] = "";
    char folder[SB_FOLDER_MAX + 1] = "";
    if (gwhy != NULL) {
        snprintf(why, sizeof why, "%s", gwhy);
    } else if (rq == NULL || kx_pb_str_empty(rq->exec_id) || !kx_uuid_valid(rq->project_id) ||
               kx_pb_str_empty(rq->command)) {
        snprintf(why, sizeof why,
                 "request is not a valid kx.v1.SandboxExecRequest (exec_id, a project_id UUID "
                 "and a command are required)");
    } else if (!kx_pb_str_empty(rq->session_name) && !sb_session_name_valid(rq->session_name)) {
        snprintf(why, sizeof why,
                 "session_name '%.80s' is not valid: use 1..%d of A-Z a-z 0-9 _ . -",
                 rq->session_name, SB_SESSION_MAX);
    } else if (rq->timeout_s < 0 || rq->max_output_bytes < 0) {
        snprintf(why, sizeof why, "timeout_s and max_output_bytes must not be negative");
    } else if (sb_folder_normalize(rq->folder, folder, sizeof folder, why, sizeof why) == KX_OK) {
        why[0] = '\0';
    }
    if (why[0] != '\0' || rq == NULL) {
        refuse(d, DT_EXEC, msg, NULL, trace_id, err, why, rq);
        return;
    }
    sb_dt_op *op = sb_dt_start_op(d, DT_EXEC, msg, rq->project_id, deadline, trace_id, rq);
    if (op == NULL)
        return;
    op->exec = rq;
    snprintf(op->folder, sizeof op->folder, "%s", folder);
    if (!kx_pb_str_empty(rq->session_name)) {
        snprintf(op->session, sizeof op->session, "%s", rq->session_name);
    } else {
        unsigned int r = 0;
        if (getrandom(&r, sizeof r, 0) != (ssize_t)sizeof r)
            r = (unsigned int)kx_mono_us();
        sb_session_name_default(r, op->session, sizeof op->session);
    }
    op->t0_ms = kx_mono_ms();
    sb_dt_resolve(op);
}

static void on_files_req(natsMsg *msg, void *arg)
{
    sb_daytona *d = arg;
    kx_deadline deadline;
    char trace_id[33];
    kx_err err;
    const char *gwhy = sb_dt_gate(d, msg, &deadline, trace_id, &err);
    Kx__V1__SandboxFilesRequest *rq =
        kx_pb_unpack(&kx__v1__sandbox_files_request__descriptor, natsMsg_GetData(msg),
                     (size_t)natsMsg_GetDataLength(msg));
    char why[400] = "";
    sb_files_req fr;
    memset(&fr, 0, sizeof fr);
    if (gwhy != NULL) {
        snprintf(why, sizeof why, "%s", gwhy);
    } else if (rq == NULL || !kx_uuid_valid(rq->project_id)) {
        snprintf(why, sizeof why,
                 "request is not a valid kx.v1.SandboxFilesRequest with a project_id UUID");
    } else if (sb_files_validate(rq, &fr, why, sizeof why) == KX_OK) {
        why[0] = '\0';
        if (fr.op == KX__V1__SANDBOX_FILE_OP__SANDBOX_FILE_WRITE &&
            fr.mode != KX__V1__SANDBOX_WRITE_MODE__SANDBOX_WRITE_OVERWRITE)
            snprintf(why, sizeof why,
                     "not implemented by the daytona provider: write modes other than "
                     "overwrite (create, append, at an offset)");
    }
    if (why[0] != '\0' || rq == NULL) {
        refuse(d, DT_FILES, msg, NULL, trace_id, err, why, rq);
        return;
    }
    sb_dt_op *op = sb_dt_start_op(d, DT_FILES, msg, rq->project_id, deadline, trace_id, rq);
    if (op == NULL)
        return;
    op->files = rq;
    op->fr = fr;
    op->fr.base = op->fr.path + (fr.base - fr.path); /* it pointed into the copy */
    sb_dt_resolve(op);
}

/* kx.sandbox.kill (every broker hears it): a daytona command is one HTTP call, never one of
 * ours to kill: killed = false. */
static void on_kill(natsMsg *msg, void *arg)
{
    sb_daytona *d = arg;
    Kx__V1__SandboxKillReply rep = KX__V1__SANDBOX_KILL_REPLY__INIT;
    if (natsMsg_GetReply(msg) != NULL)
        (void)kx_bus_respond_pb(sb_dt_broker(d)->svc->bus, msg, &rep.base);
    natsMsg_Destroy(msg);
}

kx_err sb_dt_requests_start(sb_daytona *d)
{
    kx_err err = KX_OK;
    for (int k = DT_CREATE; k <= DT_ENSURE && err == KX_OK; k++) {
        g_ctx[k].d = d;
        g_ctx[k].kind = (enum sb_dt_kind)k;
        char subj[64];
        snprintf(subj, sizeof subj, KX_SUBJ_SANDBOX_LIFECYCLE_PREFIX "%s", LIFECYCLE_OPS[k]);
        err = sb_dt_subscribe(d, subj, "sandbox-broker", on_lifecycle, &g_ctx[k]);
    }
    if (err == KX_OK)
        err = sb_dt_subscribe(d, KX_SUBJ_SANDBOX_EXEC, "sandbox-broker", on_exec_req, d);
    if (err == KX_OK)
        err = sb_dt_subscribe(d, KX_SUBJ_SANDBOX_FILES, "sandbox-broker", on_files_req, d);
    if (err == KX_OK)
        err = sb_dt_subscribe(d, KX_SUBJ_SANDBOX_PREVIEW, "sandbox-broker", on_preview_req, d);
    if (err == KX_OK)
        err = sb_dt_subscribe(d, KX_SUBJ_SANDBOX_KILL, NULL, on_kill, d);
    return err;
}
