/* tools_expose.c — Kortix's sb_expose_tool: expose_port(port* 1..65535) asks the
 * sandbox-broker for a preview link (kx.sandbox.preview, mint: the sandbox is started if
 * needed) and answers with the URL the gateway serves for it:
 *     <KX_PUBLIC_URL>/api/sandboxes/<sandbox_id>/preview/<port>/?preview_token=<token>
 * KX_PUBLIC_URL is the gateway's address as users reach it (default
 * http://127.0.0.1:<KX_HTTP_PORT or 8000>). The link is opened with the account's JWT
 * (Authorization: Bearer, or ?token=) — the preview token alone does not open it.
 * Output {"url", "port", "message"} as in Kortix ("Successfully exposed port N ..."). The
 * broker's deadline for the op is EXPOSE_TIMEOUT_MS (10 s, as the gateway's), within the
 * call's. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "executor.h"
#include "kx/json.h"
#include "kx/pb.h"
#include "registry.h"

#define EXPOSE_TIMEOUT_MS 10000

static void public_url(char *out, size_t outlen)
{
    const char *u = getenv("KX_PUBLIC_URL");
    if (u != NULL && u[0] != '\0') {
        snprintf(out, outlen, "%s", u);
    } else {
        const char *port = getenv("KX_HTTP_PORT");
        snprintf(out, outlen, "http://127.0.0.1:%s",
                 port != NULL && port[0] != '\0' ? port : "8000");
    }
    size_t n = strlen(out);
    while (n > 0 && out[n - 1] == '/')
        out[--n] = '\0';
}

static void on_preview(te_call *c, kx_err err, natsMsg *reply)
{
    te_outcome o;
    te_outcome_init(&o);
    if (err != KX_OK) {
        o.timed_out = err == KX_ERR_TIMEOUT;
        if (o.timed_out)
            te_outcome_error(&o, KX_ERR_TIMEOUT, "expose_port timed out after %lld s",
                             (long long)c->req_timeout_s);
        else
            te_outcome_error(&o, KX_ERR_UNAVAILABLE,
                             "expose_port: the sandbox is not available: %s", kx_err_str(err));
        te_call_finish(c, &o);
        return;
    }
    Kx__V1__SandboxPreviewReply *r =
        kx_pb_unpack(&kx__v1__sandbox_preview_reply__descriptor, natsMsg_GetData(reply),
                     (size_t)natsMsg_GetDataLength(reply));
    natsMsg_Destroy(reply);
    if (r == NULL ||
        (r->error == NULL && (kx_pb_str_empty(r->url) || kx_pb_str_empty(r->token)))) {
        te_breaker_record(c->ex, c->req_dep, false);
        te_outcome_error(&o, KX_ERR_INTERNAL,
                         "expose_port: the sandbox-broker's reply is not a preview link");
    } else if (r->error != NULL) {
        te_breaker_record(c->ex, c->req_dep, !te_dep_error_counts(r->error->code));
        char msg[400];
        snprintf(msg, sizeof msg, "expose_port: %s",
                 kx_pb_str_empty(r->error->message) ? "sandbox error" : r->error->message);
        te_outcome_error_code(&o, kx_pb_str_empty(r->error->code) ? "internal" : r->error->code,
                              msg);
    } else {
        te_breaker_record(c->ex, c->req_dep, true);
        char base[300], url[800], message[1000];
        public_url(base, sizeof base);
        snprintf(url, sizeof url, "%s%s?preview_token=%s", base, r->url, r->token);
        snprintf(message, sizeof message,
                 "Successfully exposed port %d to the public. Users can now access this service "
                 "at: %s (signed in: the link needs the account's token as well)",
                 r->port, url);
        json_t *out =
            json_pack("{s:s, s:i, s:s}", "url", url, "port", r->port, "message", message);
        te_outcome_json(&o, out, "expose_port");
    }
    kx_pb_free(r);
    te_call_finish(c, &o);
}

static void expose_start(te_call *c)
{
    Kx__V1__SandboxPreviewRequest rq = KX__V1__SANDBOX_PREVIEW_REQUEST__INIT;
    rq.project_id = c->call->project_id;
    rq.port = (int32_t)kx_json_int(c->args, "port", 0);
    kx_deadline t = te_call_deadline(c, 0);
    kx_deadline op = kx_now_ms() + EXPOSE_TIMEOUT_MS;
    /* on failure te_request finishes the call */
    te_request(c, "sandbox", KX_SUBJ_SANDBOX_PREVIEW, &rq.base, op < t ? op : t, on_preview);
}

static const char expose_schema[] =
    "{\"type\": \"function\", \"function\": {\"name\": \"expose_port\", \"description\": "
    "\"Expose a port of the sandbox (a web server you started, listening on 127.0.0.1 or "
    "0.0.0.0) through a preview link. Returns the URL to share with the user. The server must "
    "keep running: start it with execute_command and blocking false.\", "
    "\"parameters\": {\"type\": \"object\", \"properties\": {"
    "\"port\": {\"type\": \"integer\", \"minimum\": 1, \"maximum\": 65535, \"description\": "
    "\"The port the server listens on inside the sandbox.\"}}, "
    "\"required\": [\"port\"]}}}";

const te_tool te_expose_tools[] = {
    {"expose_port", "sb_expose_tool", TE_TOOL_SANDBOX, expose_schema, expose_start,
     te_tool_abort_request},
};
const size_t te_expose_tools_n = sizeof te_expose_tools / sizeof te_expose_tools[0];
