/* tool_schemas.c — the executor's tool schemas, fetched once per agent config and cached (see
 * tool_schemas.h). */
#include "tool_schemas.h"

#include <stdlib.h>
#include <string.h>

#include "kx/log.h"
#include "kx/pb.h"
#include "kx/time.h"

#define REQUEST_MS 5000

typedef struct entry {
    char *key;       /* agentpress_tools JSON; "" = every tool */
    json_t *tools;   /* the executor's answer, or NULL */
    int64_t fetched; /* kx_mono_ms of the answer */
    bool in_flight;
    int64_t asked; /* kx_mono_ms of the last request */
} entry;

static kx_bus_async *g_ab;
static entry g_cache[TOOL_SCHEMAS_MAX_KEYS];

void tool_schemas_init(kx_bus_async *ab)
{
    g_ab = ab;
}

void tool_schemas_free(void)
{
    for (size_t i = 0; i < TOOL_SCHEMAS_MAX_KEYS; i++) {
        free(g_cache[i].key);
        json_decref(g_cache[i].tools);
        memset(&g_cache[i], 0, sizeof g_cache[i]);
    }
    g_ab = NULL;
}

static void on_reply(kx_err err, natsMsg *reply, void *arg)
{
    entry *e = arg;
    e->in_flight = false;
    if (err != KX_OK) {
        kx_debug("runner: tool schemas from the tool-executor: %s (keeping what was cached)",
                 kx_err_str(err));
        return;
    }
    Kx__V1__ToolSchemasReply *r =
        kx_pb_unpack(&kx__v1__tool_schemas_reply__descriptor, natsMsg_GetData(reply),
                     (size_t)natsMsg_GetDataLength(reply));
    natsMsg_Destroy(reply);
    json_t *tools = r != NULL && r->error == NULL && r->tools_json != NULL
        ? json_loads(r->tools_json, 0, NULL)
        : NULL;
    if (json_is_array(tools) && json_array_size(tools) > 0) {
        json_decref(e->tools);
        e->tools = tools;
        e->fetched = kx_mono_ms();
    } else {
        kx_warn("runner: the tool-executor's schemas were refused: %s",
                r != NULL && r->error != NULL && r->error->message ? r->error->message
                                                                   : "not a tool list");
        json_decref(tools);
    }
    kx_pb_free(r);
}

static void ask(entry *e)
{
    if (g_ab == NULL || e->in_flight)
        return;
    int64_t now = kx_mono_ms();
    if (e->asked != 0 && now - e->asked < 1000)
        return; /* at most one request a second per config while none answers */
    Kx__V1__ToolSchemasRequest rq = KX__V1__TOOL_SCHEMAS_REQUEST__INIT;
    rq.agentpress_tools_json = e->key;
    kx_bus_meta meta;
    kx_bus_meta_init(&meta, kx_deadline_in(REQUEST_MS), NULL);
    e->asked = now;
    if (kx_bus_async_request_pb(g_ab, KX_SUBJ_TOOL_SCHEMAS, &rq.base, &meta, on_reply, e, NULL) ==
        KX_OK)
        e->in_flight = true;
}

json_t *tool_schemas_get(const char *agentpress_tools_json, json_t *fallback)
{
    const char *key = agentpress_tools_json != NULL ? agentpress_tools_json : "";
    entry *e = NULL, *oldest = &g_cache[0];
    for (size_t i = 0; i < TOOL_SCHEMAS_MAX_KEYS; i++) {
        entry *x = &g_cache[i];
        if (x->key != NULL && strcmp(x->key, key) == 0) {
            e = x;
            break;
        }
        if (x->key == NULL || (!x->in_flight && x->asked < oldest->asked))
            oldest = x;
    }
    if (e == NULL) {
        if (oldest->in_flight)
            return fallback; /* every slot is waiting for an answer: try again later */
        free(oldest->key);
        json_decref(oldest->tools);
        memset(oldest, 0, sizeof *oldest);
        oldest->key = strdup(key);
        if (oldest->key == NULL)
            return fallback;
        e = oldest;
    }
    if (e->tools == NULL || kx_mono_ms() - e->fetched > TOOL_SCHEMAS_TTL_MS)
        ask(e);
    return e->tools != NULL ? e->tools : fallback;
}
