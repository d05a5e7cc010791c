/* handlers.c — the broker's two bus endpoints (docs/subjects.md):
 *   kx.sandbox.exec  (queue group "sandbox-broker")  SandboxExecRequest -> SandboxExecResult
 *   kx.sandbox.kill  (no queue group: every broker checks whether the exec is one of its own)
 *                    SandboxKillRequest -> SandboxKillReply
 * Both run on the loop thread (kx_bus_subscribe_loop). This file validates what comes from
 * outside and computes the kill deadline; exec.c runs the command. */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "broker.h"
#include "fleet.h"
#include "exec.h"
#include "kx/log.h"
#include "kx/metrics.h"
#include "kx/pb.h"
#include "lifecycle.h"
#include "reply.h"
#include "sandbox_path.h"

static void count_rejected(const char *code)
{
    char labels[64];
    snprintf(labels, sizeof labels, "outcome=\"rejected_%s\"", code);
    kx_counter_add(kx_metrics_counter("kx_sandbox_execs_total", labels,
                                      "Sandbox commands finished, by outcome"),
                   1);
}

/* Replies with an error, counts it, logs it, and destroys msg. */
static void reject(sb_broker *b, natsMsg *msg, const char *exec_id, const char *trace_id,
                   kx_err err, const char *why)
{
    kx_log(KX_LOG_INFO, NULL, trace_id, "sandbox: exec %s refused: %s", exec_id ? exec_id : "",
           why);
    sb_reply_error(b, msg, exec_id, NULL, false, err, why);
    count_rejected(kx_err_code(err));
    natsMsg_Destroy(msg);
}

/* The moment the command is killed: SB_REPLY_MARGIN_MS before the caller's deadline (so the
 * timed-out reply still reaches it), or after timeout_s if that comes first. */
static kx_deadline kill_deadline(kx_deadline caller, int32_t timeout_s)
{
    kx_deadline at = caller - SB_REPLY_MARGIN_MS;
    if (timeout_s > 0)
        at = kx_deadline_min(at, kx_deadline_in((int64_t)timeout_s * 1000));
    return at;
}

static void on_exec(natsMsg *msg, void *arg)
{
    sb_broker *b = arg;
    kx_bus_meta meta;
    memset(&meta, 0, sizeof meta);
    kx_err meta_err = kx_bus_meta_read(msg, &meta);
    char trace_id[33];
    kx_bus_trace_id(&meta, trace_id);

    Kx__V1__SandboxExecRequest *rq =
        kx_pb_unpack(&kx__v1__sandbox_exec_request__descriptor, natsMsg_GetData(msg),
                     (size_t)natsMsg_GetDataLength(msg));
    if (rq == NULL) {
        reject(b, msg, NULL, trace_id, KX_ERR_INVALID,
               "request is not a valid kx.v1.SandboxExecRequest");
        return;
    }
    const char *exec_id = rq->exec_id;
    char why[512];
    char folder[SB_FOLDER_MAX + 1];
    char session[SB_SESSION_MAX + 1];
    kx_err err = KX_ERR_INVALID;

    if (b->draining) {
        err = KX_ERR_UNAVAILABLE;
        snprintf(why, sizeof why, "broker shutting down");
        goto refuse;
    }
    if (meta_err != KX_OK || meta.deadline == KX_NO_DEADLINE) {
        snprintf(why, sizeof why, "the Kx-Deadline header (absolute unix ms) is required");
        goto refuse;
    }
    if (sb_exec_request_check(rq, folder, session, why, sizeof why) != KX_OK)
        goto refuse; /* sandbox_path.c: the checks the daytona provider makes too */
    if (sb_fleet_route(b, msg, rq->project_id)) { /* fleet.c: its owner answers */
        kx_pb_free(rq);
        return;
    }
    if (sb_exec_find(b, exec_id) != NULL) {
        snprintf(why, sizeof why, "exec '%s' is already running", exec_id);
        goto refuse;
    }
    kx_deadline kill_at = kill_deadline(meta.deadline, rq->timeout_s);
    if (kx_deadline_expired(meta.deadline) || (rq->blocking && kx_deadline_expired(kill_at))) {
        err = KX_ERR_TIMEOUT;
        snprintf(why, sizeof why, "the request's deadline passed before the command started");
        goto refuse;
    }

    size_t max_output = (size_t)b->cfg.max_output;
    if (rq->max_output_bytes > 0 && (size_t)rq->max_output_bytes < max_output)
        max_output = (size_t)rq->max_output_bytes;
    sb_exec_spec spec = {
        .exec_id = exec_id,
        .project_id = rq->project_id,
        .command = rq->command,
        .folder = folder,
        .session_name = session,
        .blocking = rq->blocking,
        .kill_at = kill_at,
        .max_output = max_output,
        .trace_id = trace_id,
        .account = meta.account,
    };
    err = sb_exec_start(b, &spec, msg, why, sizeof why);
    if (err != KX_OK)
        goto refuse;
    kx_pb_free(rq);
    return; /* msg now belongs to the exec */

refuse:
    reject(b, msg, exec_id, trace_id, err, why);
    kx_pb_free(rq);
}

static void reply_kill(sb_broker *b, natsMsg *msg, bool killed, kx_err err, const char *why)
{
    Kx__V1__Error e = KX__V1__ERROR__INIT;
    Kx__V1__SandboxKillReply rep = KX__V1__SANDBOX_KILL_REPLY__INIT;
    rep.killed = killed;
    if (err != KX_OK) {
        e.code = (char *)kx_err_code(err);
        e.message = (char *)why;
        rep.error = &e;
    }
    if (natsMsg_GetReply(msg) != NULL) {
        kx_err rerr = kx_bus_respond_pb(b->svc->bus, msg, &rep.base);
        if (rerr != KX_OK)
            kx_warn("sandbox: could not answer a kill request: %s", kx_err_str(rerr));
    }
    natsMsg_Destroy(msg);
}

static void on_kill(natsMsg *msg, void *arg)
{
    sb_broker *b = arg;
    kx_bus_meta meta;
    memset(&meta, 0, sizeof meta);
    if (kx_bus_meta_read(msg, &meta) != KX_OK || meta.deadline == KX_NO_DEADLINE) {
        reply_kill(b, msg, false, KX_ERR_INVALID,
                   "the Kx-Deadline header (absolute unix ms) is required");
        return;
    }
    Kx__V1__SandboxKillRequest *rq =
        kx_pb_unpack(&kx__v1__sandbox_kill_request__descriptor, natsMsg_GetData(msg),
                     (size_t)natsMsg_GetDataLength(msg));
    if (rq == NULL || kx_pb_str_empty(rq->exec_id)) {
        reply_kill(b, msg, false, KX_ERR_INVALID,
                   "request is not a valid kx.v1.SandboxKillRequest with an exec_id");
        kx_pb_free(rq);
        return;
    }
    sb_exec *e = sb_exec_find(b, rq->exec_id);
    bool ours = e != NULL &&
        (kx_pb_str_empty(rq->project_id) || strcasecmp(rq->project_id, sb_exec_project(e)) == 0);
    bool killed = ours && sb_exec_kill(e);
    kx_info("sandbox: kill request for exec %s: %s", rq->exec_id,
            killed ? "killed" : (ours ? "already finished" : "not running here"));
    reply_kill(b, msg, killed, KX_OK, NULL);
    kx_pb_free(rq);
}

bool sb_ready(kx_svc *svc, void *arg, char *why, size_t whylen)
{
    sb_broker *b = arg;
    if (!atomic_load(&b->serving)) {
        snprintf(why, whylen, "not subscribed to kx.sandbox.* yet");
        return false;
    }
    return true;
}

kx_err sb_handlers_start(sb_broker *b)
{
    int64_t mp = natsConnection_GetMaxPayload(kx_bus_conn(b->svc->bus));
    b->max_reply = mp > 0 ? (size_t)mp : 1024 * 1024;
    kx_info("sandbox: replies kept under the bus's max_payload of %zu bytes", b->max_reply);
    kx_err err =
        sb_fleet_subscribe(b, KX_SUBJ_SANDBOX_EXEC, "sandbox-broker", on_exec, b, &b->exec_sub);
    if (err != KX_OK) {
        kx_error("sandbox: cannot subscribe to %s: %s", KX_SUBJ_SANDBOX_EXEC, kx_err_str(err));
        return err;
    }
    err = kx_bus_subscribe_loop(b->svc->bus, b->svc->loop, KX_SUBJ_SANDBOX_KILL, NULL, on_kill, b,
                                &b->kill_sub);
    if (err != KX_OK)
        kx_error("sandbox: cannot subscribe to %s: %s", KX_SUBJ_SANDBOX_KILL, kx_err_str(err));
    else if ((err = sb_sessions_start(b)) != KX_OK)
        return err;
    else if ((err = sb_files_start(b)) != KX_OK) /* files.c */
        return err;
    else if ((err = sb_lifecycle_start(b)) != KX_OK) /* lifecycle.c */
        return err;
    else if ((err = sb_preview_start(b)) != KX_OK) /* preview.c */
        return err;
    else if ((err = sb_fleet_start(b)) != KX_OK) /* fleet.c: kx.sandbox.<id>.>, the beat */
        return err;
    else if (kx_bus_flush(b->svc->bus, 2000) == KX_OK)
        atomic_store(&b->serving, true); /* the server knows the subscriptions: ready */
    else
        kx_warn("sandbox: the subscriptions were not confirmed by NATS yet; /readyz waits");
    return err;
}
