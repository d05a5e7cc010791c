/* reply.c — sending SandboxExecResult replies, successful or not (see reply.h). */
#include "reply.h"

#include <stdio.h>

#include "kx/log.h"

void sb_reply_result(sb_broker *b, natsMsg *req, const Kx__V1__SandboxExecResult *res)
{
    if (natsMsg_GetReply(req) == NULL) {
        kx_warn("sandbox: exec request %s has no reply subject; result dropped",
                res->exec_id ? res->exec_id : "");
        return;
    }
    kx_err err = kx_bus_respond_pb(b->svc->bus, req, &res->base);
    if (err == KX_OK)
        return;
    kx_warn("sandbox: could not send the result of exec %s (%zu bytes): %s",
            res->exec_id ? res->exec_id : "", protobuf_c_message_get_packed_size(&res->base),
            kx_err_str(err));
    if (res->error != NULL)
        return; /* already a small error reply: nothing smaller to send */
    /* Never silence: the caller hears why instead of waiting for its deadline. */
    char why[256];
    snprintf(why, sizeof why,
             "the command's result could not be sent on the bus (%s; %zu "
             "bytes, max_payload %zu)",
             kx_err_str(err), protobuf_c_message_get_packed_size(&res->base), b->max_reply);
    Kx__V1__Error e = KX__V1__ERROR__INIT;
    e.code = (char *)kx_err_code(KX_ERR_INTERNAL);
    e.message = why;
    Kx__V1__SandboxExecResult small = KX__V1__SANDBOX_EXEC_RESULT__INIT;
    small.exec_id = res->exec_id;
    small.session_name = res->session_name;
    small.cwd = res->cwd;
    small.started = res->started;
    small.completed = res->completed;
    small.exit_code = res->exit_code;
    small.term_signal = res->term_signal;
    small.timed_out = res->timed_out;
    small.duration_ms = res->duration_ms;
    small.truncated = true;
    small.error = &e;
    err = kx_bus_respond_pb(b->svc->bus, req, &small.base);
    if (err != KX_OK)
        kx_warn("sandbox: could not send the error reply of exec %s either: %s",
                res->exec_id ? res->exec_id : "", kx_err_str(err));
}

void sb_reply_error(sb_broker *b, natsMsg *req, const char *exec_id, const char *session_name,
                    bool started, kx_err err, const char *message)
{
    Kx__V1__Error e = KX__V1__ERROR__INIT;
    e.code = (char *)kx_err_code(err);
    e.message = (char *)message;
    Kx__V1__SandboxExecResult res = KX__V1__SANDBOX_EXEC_RESULT__INIT;
    res.exec_id = (char *)(exec_id ? exec_id : "");
    res.session_name = (char *)(session_name ? session_name : "");
    res.started = started;
    res.error = &e;
    sb_reply_result(b, req, &res);
}
