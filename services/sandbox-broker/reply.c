/* reply.c — sending SandboxExecResult replies, successful or not (see reply.h). */
#include "reply.h"

#include "kx/log.h"

void sb_reply_result(sb_broker *b, natsMsg *req, const Kx__V1__SandboxExecResult *res)
{
    if (natsMsg_GetReply(req) == NULL) {
        kx_warn("sandbox: exec request %s has no reply subject; result dropped",
                res->exec_id ? res->exec_id : "");
        return;
    }
    kx_err err = kx_bus_respond_pb(b->svc->bus, req, &res->base);
    if (err != KX_OK)
        kx_warn("sandbox: could not send the result of exec %s: %s",
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
