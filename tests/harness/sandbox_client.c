/* tests/harness/sandbox_client.c — requests over the bus (to the sandbox-broker and others),
 * for tests and benchmarks (see sandbox_client.h). */
#include "sandbox_client.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "kx/time.h"
#include "kx/uuid.h"

kx_err kx_th_bus_connect(const char *url, const char *name, kx_bus **out)
{
    kx_err err = kx_bus_connect(url, name, out);
    if (err != KX_OK)
        return err;
    for (int i = 0; i < 500 && !kx_bus_connected(*out); i++)
        usleep(10 * 1000);
    if (kx_bus_connected(*out))
        return KX_OK;
    kx_bus_close(*out, 1000);
    *out = NULL;
    return KX_ERR_UNAVAILABLE;
}

void *kx_th_bus_ask(kx_bus *bus, const char *subject, const ProtobufCMessage *rq,
                    const char *account, int64_t deadline_ms,
                    const ProtobufCMessageDescriptor *desc, int64_t *elapsed_us, kx_err *err)
{
    kx_bus_meta meta;
    kx_bus_meta_init(&meta, kx_deadline_in(deadline_ms), account);
    natsMsg *reply = NULL;
    int64_t t0 = kx_mono_us();
    kx_err e = kx_bus_request_pb(bus, subject, rq, &meta, &reply);
    if (elapsed_us != NULL)
        *elapsed_us = kx_mono_us() - t0;
    void *rep = NULL;
    if (e == KX_OK) {
        rep = kx_pb_unpack(desc, natsMsg_GetData(reply), (size_t)natsMsg_GetDataLength(reply));
        natsMsg_Destroy(reply);
        if (rep == NULL)
            e = KX_ERR_PROTOCOL;
    }
    if (err != NULL)
        *err = e;
    return rep;
}

kx_err kx_th_run_submit(kx_bus *bus, const char *run, const char *thread, const char *account)
{
    Kx__V1__RunSubmit rs = KX__V1__RUN_SUBMIT__INIT;
    rs.run_id = (char *)run;
    rs.thread_id = (char *)thread;
    rs.account_id = (char *)account;
    rs.submitted_at_ms = kx_now_ms();
    kx_bus_meta meta;
    kx_bus_meta_init(&meta, kx_deadline_in(5000), account);
    kx_err err = kx_bus_publish_pb(bus, KX_SUBJ_RUN_SUBMIT, &rs.base, &meta);
    return err != KX_OK ? err : kx_bus_flush(bus, 5000);
}

kx_th_tool_reply kx_th_tool_exec(kx_bus *bus, const Kx__V1__ToolCall *tc, const char *account,
                                 int64_t deadline_ms)
{
    kx_th_tool_reply out = {0};
    int64_t t0 = kx_mono_ms();
    out.res = kx_th_bus_ask(bus, KX_SUBJ_TOOL_EXEC, &tc->base, account, deadline_ms,
                            &kx__v1__tool_result__descriptor, NULL, &out.err);
    out.elapsed_ms = kx_mono_ms() - t0;
    if (out.res != NULL && !kx_pb_str_empty(out.res->output_json))
        out.output = json_loads(out.res->output_json, JSON_DECODE_ANY, NULL);
    return out;
}

void kx_th_tool_reply_free(kx_th_tool_reply *r)
{
    kx_pb_free(r->res);
    json_decref(r->output);
    memset(r, 0, sizeof *r);
}

Kx__V1__SandboxLifecycleReply *kx_th_life_request(kx_bus *bus, const char *prefix, const char *op,
                                                  const char *project, int64_t deadline_ms,
                                                  int64_t *elapsed_us, kx_err *err)
{
    Kx__V1__SandboxLifecycleRequest rq = KX__V1__SANDBOX_LIFECYCLE_REQUEST__INIT;
    rq.project_id = (char *)project;
    char subj[160];
    snprintf(subj, sizeof subj, "%s%s", prefix != NULL ? prefix : "kx.sandbox.", op);
    return kx_th_bus_ask(bus, subj, &rq.base, project, deadline_ms,
                         &kx__v1__sandbox_lifecycle_reply__descriptor, elapsed_us, err);
}

kx_err kx_th_sb_wait_serving(kx_bus *bus)
{
    char p[KX_UUID_LEN + 1];
    kx_uuid_new(p);
    kx_err err = KX_ERR_UNAVAILABLE;
    for (int i = 0; i < 50; i++) {
        Kx__V1__SandboxLifecycleReply *r =
            kx_th_life_request(bus, NULL, "get", p, 5000, NULL, &err);
        if (r != NULL) {
            kx_pb_free(r);
            return KX_OK;
        }
        usleep(100 * 1000);
    }
    return err;
}

Kx__V1__SandboxPreviewReply *kx_th_preview_request(kx_bus *bus, const char *project, int port,
                                                   const char *token, int64_t deadline_ms,
                                                   kx_err *err)
{
    Kx__V1__SandboxPreviewRequest rq = KX__V1__SANDBOX_PREVIEW_REQUEST__INIT;
    rq.project_id = (char *)project;
    rq.port = port;
    rq.token = (char *)(token != NULL ? token : "");
    return kx_th_bus_ask(bus, KX_SUBJ_SANDBOX_PREVIEW, &rq.base, project, deadline_ms,
                         &kx__v1__sandbox_preview_reply__descriptor, NULL, err);
}

Kx__V1__SandboxExecResult *kx_th_exec_request(kx_bus *bus, const kx_th_exec *x,
                                              int64_t *elapsed_us, kx_err *err)
{
    char id[KX_UUID_LEN + 1];
    kx_uuid_new(id);
    Kx__V1__SandboxExecRequest rq = KX__V1__SANDBOX_EXEC_REQUEST__INIT;
    rq.exec_id = id;
    rq.project_id = (char *)x->project;
    rq.command = (char *)x->command;
    rq.folder = (char *)(x->folder != NULL ? x->folder : "");
    rq.session_name = (char *)(x->session != NULL ? x->session : "");
    rq.blocking = x->blocking;
    rq.timeout_s = x->timeout_s;
    return kx_th_bus_ask(bus, x->subject != NULL ? x->subject : KX_SUBJ_SANDBOX_EXEC, &rq.base,
                         x->project, x->deadline_ms > 0 ? x->deadline_ms : 30000,
                         &kx__v1__sandbox_exec_result__descriptor, elapsed_us, err);
}
