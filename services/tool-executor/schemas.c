/* schemas.c — kx.tool.schemas (queue group "tool-executor"): the OpenAI-format schemas of the
 * tools an agent has, from its agentpress_tools config (registry.c decides which). The runner
 * asks once and caches the answer (services/agent-runner/tool_schemas.c). Answered on the
 * loop from the parsed catalogue: no I/O. */
#include <jansson.h>
#include <stdlib.h>

#include "executor.h"
#include "kx/json.h"
#include "kx/log.h"
#include "kx/pb.h"
#include "registry.h"

static void on_schemas(natsMsg *msg, void *arg)
{
    te_executor *ex = arg;
    Kx__V1__ToolSchemasRequest *rq =
        kx_pb_unpack(&kx__v1__tool_schemas_request__descriptor, natsMsg_GetData(msg),
                     (size_t)natsMsg_GetDataLength(msg));
    Kx__V1__ToolSchemasReply rep = KX__V1__TOOL_SCHEMAS_REPLY__INIT;
    Kx__V1__Error err = KX__V1__ERROR__INIT;
    json_t *cfg = NULL, *tools = NULL;
    char *text = NULL;
    if (rq == NULL) {
        err.code = "invalid_argument";
        err.message = "request is not a valid kx.v1.ToolSchemasRequest";
        rep.error = &err;
    } else if (!kx_pb_str_empty(rq->agentpress_tools_json) &&
               !json_is_object(cfg = json_loads(rq->agentpress_tools_json, 0, NULL))) {
        err.code = "invalid_argument";
        err.message = "agentpress_tools_json must be a JSON object";
        rep.error = &err;
    } else {
        tools = te_registry_schemas(cfg);
        text = tools != NULL ? kx_json_dumps_compact(tools) : NULL;
        if (text == NULL) {
            err.code = "internal";
            err.message = "out of memory";
            rep.error = &err;
        }
        rep.tools_json = text;
    }
    if (natsMsg_GetReply(msg) != NULL)
        kx_bus_respond_pb(ex->svc->bus, msg, &rep.base);
    free(text);
    json_decref(tools);
    json_decref(cfg);
    kx_pb_free(rq);
    natsMsg_Destroy(msg);
}

kx_err te_schemas_start(te_executor *ex)
{
    kx_err err = kx_bus_subscribe_loop(ex->svc->bus, ex->svc->loop, KX_SUBJ_TOOL_SCHEMAS,
                                       "tool-executor", on_schemas, ex, &ex->schemas_sub);
    if (err != KX_OK)
        kx_error("tool-executor: cannot subscribe to %s: %s", KX_SUBJ_TOOL_SCHEMAS,
                 kx_err_str(err));
    return err;
}
