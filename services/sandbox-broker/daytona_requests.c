/* daytona_requests.c — the daytona provider's bus endpoints (see daytona.h): kx.sandbox.create
 * .. ensure_active, exec, files, preview and kill. One prologue (sb_dt_serve) serves every
 * request subject, these and daytona_sessions.c's: the gate (draining, Kx-Deadline), the
 * unpack, the endpoint's own check (what the local provider's handlers.c, files_request.c and
 * preview.c check; exec's is the local one, sb_exec_request_check), then an op that daytona.c
 * resolves; what cannot start is answered at once with the reason. */
#include "daytona.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kx/log.h"

/* ---- the one prologue ------------------------------------------------------------------- */

typedef struct dt_served {
    sb_daytona *d;
    const sb_dt_endpoint *ep;
} dt_served;
static dt_served g_served[DT_LIST + 1]; /* one per kind */

static void on_request(natsMsg *msg, void *arg)
{
    const dt_served *x = arg;
    const sb_dt_endpoint *ep = x->ep;
    kx_bus_meta meta;
    char trace_id[33];
    kx_err err;
    const char *gwhy = sb_dt_gate(x->d, msg, &meta, trace_id, &err);
    void *rq = kx_pb_unpack(ep->desc, natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg));
    char why[512] = "";
    sb_dt_checked c;
    memset(&c, 0, sizeof c);
    if (gwhy != NULL) {
        snprintf(why, sizeof why, "%s", gwhy);
    } else if (rq == NULL) {
        snprintf(why, sizeof why, "request is not a valid %s", ep->desc->name);
    } else if ((err = ep->check(rq, &c, why, sizeof why)) == KX_OK) {
        why[0] = '\0';
    } else if (why[0] == '\0') {
        snprintf(why, sizeof why, "request is not a valid %s", ep->desc->name);
    }
    bool ok = why[0] == '\0';
    /* a refused request gets an op too (no project, a short deadline): it answers as its kind */
    sb_dt_op *op =
        sb_dt_start_op(x->d, ep->kind, msg, ok ? c.project : "",
                       ok ? meta.deadline : kx_deadline_in(1000), trace_id, meta.account, rq);
    if (op == NULL)
        return;
    if (ep->keep == NULL || !ep->keep(op, rq, ok ? &c : NULL))
        kx_pb_free(rq);
    if (ok)
        sb_dt_resolve(op);
    else
        sb_dt_fail(op, err, why);
}

kx_err sb_dt_serve(sb_daytona *d, const sb_dt_endpoint *ep)
{
    if ((size_t)ep->kind >= sizeof g_served / sizeof g_served[0] || g_served[ep->kind].ep != NULL)
        return KX_ERR_INTERNAL;
    g_served[ep->kind].d = d;
    g_served[ep->kind].ep = ep;
    return sb_dt_subscribe(d, ep->subject, "sandbox-broker", on_request, &g_served[ep->kind]);
}

/* ---- lifecycle -------------------------------------------------------------------------- */

static kx_err check_lifecycle(const void *req, sb_dt_checked *c, char *why, size_t whylen)
{
    const Kx__V1__SandboxLifecycleRequest *rq = req;
    if (!kx_uuid_valid(rq->project_id)) {
        snprintf(why, whylen, "project_id is not a valid UUID");
        return KX_ERR_INVALID;
    }
    c->project = rq->project_id;
    return KX_OK;
}

/* ---- preview ---------------------------------------------------------------------------- */

static kx_err check_preview(const void *req, sb_dt_checked *c, char *why, size_t whylen)
{
    const Kx__V1__SandboxPreviewRequest *rq = req;
    if (!kx_uuid_valid(rq->project_id))
        snprintf(why, whylen,
                 "request is not a valid kx.v1.SandboxPreviewRequest with a project_id UUID");
    else if (rq->port < 1 || rq->port > 65535)
        snprintf(why, whylen, "port must be 1..65535");
    else if (!kx_pb_str_empty(rq->token))
        snprintf(why, whylen,
                 "the daytona provider does not check preview tokens: its links are Daytona's "
                 "own URLs (with their own token), not the broker's relay");
    else
        c->project = rq->project_id;
    return c->project != NULL ? KX_OK : KX_ERR_INVALID;
}

static bool keep_preview(sb_dt_op *op, void *req, const sb_dt_checked *c)
{
    const Kx__V1__SandboxPreviewRequest *rq = req;
    if (c != NULL)
        op->port = rq->port;
    return false;
}

/* ---- exec ------------------------------------------------------------------------------- */

static kx_err check_exec(const void *req, sb_dt_checked *c, char *why, size_t whylen)
{
    const Kx__V1__SandboxExecRequest *rq = req;
    kx_err err = sb_exec_request_check(rq, c->folder, c->session, why, whylen);
    if (err == KX_OK)
        c->project = rq->project_id;
    return err;
}

static bool keep_exec(sb_dt_op *op, void *req, const sb_dt_checked *c)
{
    op->exec = req; /* its exec_id is in the answer, refused or not */
    if (c != NULL) {
        snprintf(op->folder, sizeof op->folder, "%s", c->folder);
        snprintf(op->session, sizeof op->session, "%s", c->session);
        op->t0_ms = kx_mono_ms();
    }
    return true;
}

/* ---- files ------------------------------------------------------------------------------ */

static kx_err check_files(const void *req, sb_dt_checked *c, char *why, size_t whylen)
{
    const Kx__V1__SandboxFilesRequest *rq = req;
    if (!kx_uuid_valid(rq->project_id)) {
        snprintf(why, whylen,
                 "request is not a valid kx.v1.SandboxFilesRequest with a project_id UUID");
        return KX_ERR_INVALID;
    }
    if (sb_files_validate(rq, &c->fr, why, whylen) != KX_OK)
        return KX_ERR_INVALID;
    if (c->fr.op == KX__V1__SANDBOX_FILE_OP__SANDBOX_FILE_WRITE &&
        c->fr.mode != KX__V1__SANDBOX_WRITE_MODE__SANDBOX_WRITE_OVERWRITE) {
        snprintf(why, whylen,
                 "not implemented by the daytona provider: write modes other than overwrite "
                 "(create, append, at an offset)");
        return KX_ERR_INVALID;
    }
    c->project = rq->project_id;
    return KX_OK;
}

static bool keep_files(sb_dt_op *op, void *req, const sb_dt_checked *c)
{
    op->files = req; /* fr.data points into it */
    if (c != NULL) {
        op->fr = c->fr;
        op->fr.base = op->fr.path + (c->fr.base - c->fr.path); /* it pointed into the copy */
    }
    return true;
}

/* ---- the table -------------------------------------------------------------------------- */

#define LIFECYCLE(k, op)                                                                          \
    {                                                                                             \
        (k), KX_SUBJ_SANDBOX_LIFECYCLE_PREFIX op, &kx__v1__sandbox_lifecycle_request__descriptor, \
            check_lifecycle, NULL                                                                 \
    }

static const sb_dt_endpoint ENDPOINTS[] = {
    LIFECYCLE(DT_CREATE, "create"),
    LIFECYCLE(DT_GET, "get"),
    LIFECYCLE(DT_START, "start"),
    LIFECYCLE(DT_STOP, "stop"),
    LIFECYCLE(DT_ARCHIVE, "archive"),
    LIFECYCLE(DT_DELETE, "delete"),
    LIFECYCLE(DT_ENSURE, "ensure_active"),
    {DT_EXEC, KX_SUBJ_SANDBOX_EXEC, &kx__v1__sandbox_exec_request__descriptor, check_exec,
     keep_exec},
    {DT_FILES, KX_SUBJ_SANDBOX_FILES, &kx__v1__sandbox_files_request__descriptor, check_files,
     keep_files},
    {DT_PREVIEW, KX_SUBJ_SANDBOX_PREVIEW, &kx__v1__sandbox_preview_request__descriptor,
     check_preview, keep_preview},
};

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
    for (size_t i = 0; i < sizeof ENDPOINTS / sizeof ENDPOINTS[0] && err == KX_OK; i++)
        err = sb_dt_serve(d, &ENDPOINTS[i]);
    if (err == KX_OK)
        err = sb_dt_subscribe(d, KX_SUBJ_SANDBOX_KILL, NULL, on_kill, d);
    return err;
}
