/* rpc.c — a tool's request to a dependency (sandbox-broker, mcp-proxy) within its call's
 * deadline and through the dependency's circuit breaker (see executor.h). The reply comes on
 * the loop; a dependency that answers nothing by the deadline is a timeout, one that has no
 * responders (or answers "unavailable"/"internal") a failure for its breaker. */
#include <string.h>

#include "deadline.h"
#include "executor.h"
#include "kx/log.h"
#include "registry.h"

kx_deadline te_call_deadline(const te_call *c, int timeout_s)
{
    const te_config *cfg = &c->ex->cfg;
    int64_t limit = c->tool != NULL && c->tool->kind == TE_TOOL_SANDBOX
        ? cfg->sandbox_tool_timeout_s
        : cfg->tool_timeout_s;
    return te_tool_deadline(c->meta.deadline, kx_now_ms(), limit, timeout_s > 0, timeout_s);
}

bool te_dep_error_counts(const char *code)
{
    return code != NULL &&
        (strcmp(code, "unavailable") == 0 || strcmp(code, "internal") == 0 ||
         strcmp(code, "deadline_exceeded") == 0);
}

static void on_reply(kx_err err, natsMsg *reply, void *arg)
{
    te_call *c = arg;
    c->req_active = false;
    if (err != KX_OK)
        te_breaker_record(c->ex, c->req_dep, false);
    /* a reply's own error code is judged by the tool (te_dep_error_counts) */
    c->reply_fn(c, err, reply);
}

bool te_request(te_call *c, const char *dep, const char *subject, const ProtobufCMessage *msg,
                kx_deadline deadline, te_reply_fn fn)
{
    te_outcome o;
    te_outcome_init(&o);
    char why[300];
    int64_t now = kx_now_ms();
    if (deadline <= now) {
        te_outcome_error(&o, KX_ERR_TIMEOUT, "%s: no time left before the call's deadline",
                         c->tool->name);
        te_call_finish(c, &o);
        return false;
    }
    if (!te_breaker_allow(c->ex, dep, why, sizeof why)) {
        te_outcome_error(&o, KX_ERR_UNAVAILABLE, "%s: %s", c->tool->name, why);
        te_call_finish(c, &o);
        return false;
    }
    c->req_dep = dep;
    c->reply_fn = fn;
    c->req_timeout_s = te_seconds_for_message(deadline - now);
    kx_bus_meta meta;
    kx_bus_meta_init(&meta, deadline, c->call->account_id);
    if (c->meta.traceparent[0] != '\0')
        memcpy(meta.traceparent, c->meta.traceparent, sizeof meta.traceparent);
    kx_err err =
        kx_bus_async_request_pb(c->ex->async, subject, msg, &meta, on_reply, c, &c->req_id);
    if (err != KX_OK) {
        te_breaker_record(c->ex, dep, false);
        te_outcome_error(&o, KX_ERR_UNAVAILABLE, "%s: could not send the request on %s: %s",
                         c->tool->name, subject, kx_err_str(err));
        te_call_finish(c, &o);
        return false;
    }
    c->req_active = true;
    return true;
}
