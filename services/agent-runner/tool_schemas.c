/* tool_schemas.c — the executor's tool schemas, fetched once per agent's MCP servers and
 * cached (see tool_schemas.h). */
#include "tool_schemas.h"

#include <stdlib.h>
#include <string.h>

#include "kx/log.h"
#include "kx/pb.h"
#include "kx/time.h"

#define REQUEST_MS 5000
#define MCP_REQUEST_MS 25000 /* the proxy lists each server within 15 s, starting it first */

typedef struct entry {
    char *key;         /* account "\n" custom "\n" configured; "\n\n" = no MCP server */
    char *account;     /* the request's account_id ("" without MCP servers) */
    char *custom;      /* the request's custom_mcps_json ("" = none) */
    char *configured;  /* the request's configured_mcps_json */
    bool mcp;          /* the agent has MCP servers */
    json_t *tools;     /* the executor's built-ins, or NULL */
    json_t *mcp_tools; /* array of OpenAI schemas (with tools) */
    json_t *routes;    /* object name -> route (with tools) */
    bool mcp_failed;   /* a server (or the proxy) failed: refreshed sooner */
    int64_t fetched;   /* kx_mono_ms of the answer */
    bool in_flight;
    bool answered; /* a reply (or a failure) came */
    int64_t asked; /* kx_mono_ms of the last request */
} entry;

static kx_bus_async *g_ab;
static entry g_cache[TOOL_SCHEMAS_MAX_KEYS];

void tool_schemas_init(kx_bus_async *ab)
{
    g_ab = ab;
}

static void entry_clear(entry *e)
{
    free(e->key);
    free(e->account);
    free(e->custom);
    free(e->configured);
    json_decref(e->tools);
    json_decref(e->mcp_tools);
    json_decref(e->routes);
    memset(e, 0, sizeof *e);
}

void tool_schemas_free(void)
{
    for (size_t i = 0; i < TOOL_SCHEMAS_MAX_KEYS; i++)
        entry_clear(&g_cache[i]);
    g_ab = NULL;
}

/* The MCP part of a reply: schemas and routes (new references), whether a server failed. */
static void take_mcp(const Kx__V1__ToolSchemasReply *r, json_t **schemas, json_t **routes,
                     bool *failed)
{
    *schemas = json_array();
    *routes = json_object();
    *failed = r->mcp_truncated;
    for (size_t i = 0; i < r->n_mcp_tools; i++) {
        const Kx__V1__McpToolSchema *t = r->mcp_tools[i];
        json_t *s = kx_pb_str_empty(t->schema_json) ? NULL : json_loads(t->schema_json, 0, NULL);
        if (!json_is_object(s) || kx_pb_str_empty(t->name) || t->route == NULL) {
            json_decref(s);
            continue;
        }
        json_array_append_new(*schemas, s);
        const Kx__V1__McpRoute *rt = t->route;
        json_object_set_new(*routes, t->name,
                            json_pack("{s:s, s:s, s:s, s:b}", "server",
                                      rt->server ? rt->server : "", "tool",
                                      rt->tool ? rt->tool : "", "server_json",
                                      rt->server_json ? rt->server_json : "", "custom",
                                      rt->custom));
    }
    for (size_t i = 0; i < r->n_mcp_servers; i++) {
        const Kx__V1__McpToolsServer *s = r->mcp_servers[i];
        if (s->error == NULL)
            continue;
        *failed = true;
        kx_warn("runner: MCP server '%s' of an agent was skipped: %s: %s",
                kx_pb_str_empty(s->server) ? "(all)" : s->server,
                s->error->code ? s->error->code : "", s->error->message ? s->error->message : "");
    }
    if (r->mcp_truncated)
        kx_warn("runner: an agent's MCP tools were cut to fit the bus (%zu kept)",
                json_array_size(*schemas));
}

static void on_reply(kx_err err, natsMsg *reply, void *arg)
{
    entry *e = arg;
    e->in_flight = false;
    e->answered = true;
    if (err != KX_OK) {
        kx_debug("runner: tool schemas from the tool-executor: %s (keeping what was cached)",
                 kx_err_str(err));
        return;
    }
    Kx__V1__ToolSchemasReply *r =
        kx_pb_unpack(&kx__v1__tool_schemas_reply__descriptor, natsMsg_GetData(reply),
                     (size_t)natsMsg_GetDataLength(reply));
    kx_bus_msg_free(reply);
    json_t *tools = r != NULL && r->error == NULL && r->tools_json != NULL
        ? json_loads(r->tools_json, 0, NULL)
        : NULL;
    if (json_is_array(tools) && json_array_size(tools) > 0) {
        json_decref(e->tools);
        json_decref(e->mcp_tools);
        json_decref(e->routes);
        e->tools = tools;
        take_mcp(r, &e->mcp_tools, &e->routes, &e->mcp_failed);
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
    rq.agentpress_tools_json = ""; /* every built-in: the run filters them */
    rq.custom_mcps_json = e->custom;
    rq.configured_mcps_json = e->configured;
    rq.account_id = e->account;
    kx_bus_meta meta;
    kx_bus_meta_init(&meta, kx_deadline_in(e->mcp ? MCP_REQUEST_MS : REQUEST_MS),
                     e->account[0] != '\0' ? e->account : NULL);
    e->asked = now;
    if (kx_bus_async_request_pb(g_ab, KX_SUBJ_TOOL_SCHEMAS, &rq.base, &meta, on_reply, e, NULL) ==
        KX_OK)
        e->in_flight = true;
}

/* The entry for this key (made, replacing the least recently asked one, when missing), or
 * NULL when every slot waits for an answer or out of memory. The account is part of the key
 * only with MCP servers: the built-ins are everyone's. */
static entry *entry_for(const char *account, const char *custom, const char *configured)
{
    size_t cl = strlen(custom), gl = strlen(configured);
    bool mcp = cl > 0 || gl > 0;
    if (!mcp)
        account = "";
    size_t al = strlen(account);
    entry *oldest = &g_cache[0];
    for (size_t i = 0; i < TOOL_SCHEMAS_MAX_KEYS; i++) {
        entry *x = &g_cache[i];
        if (x->key != NULL && strncmp(x->key, account, al) == 0 && x->key[al] == '\n' &&
            strncmp(x->key + al + 1, custom, cl) == 0 && x->key[al + 1 + cl] == '\n' &&
            strcmp(x->key + al + cl + 2, configured) == 0)
            return x;
        if (x->key == NULL || (!x->in_flight && x->asked < oldest->asked))
            oldest = x;
    }
    if (oldest->in_flight)
        return NULL; /* every slot is waiting for an answer: try again later */
    entry_clear(oldest);
    oldest->key = malloc(al + cl + gl + 3);
    oldest->account = strdup(account);
    oldest->custom = strdup(custom);
    oldest->configured = strdup(configured);
    if (oldest->key == NULL || oldest->account == NULL || oldest->custom == NULL ||
        oldest->configured == NULL) {
        entry_clear(oldest);
        return NULL;
    }
    memcpy(oldest->key, account, al);
    oldest->key[al] = '\n';
    memcpy(oldest->key + al + 1, custom, cl);
    oldest->key[al + 1 + cl] = '\n';
    memcpy(oldest->key + al + cl + 2, configured, gl + 1);
    oldest->mcp = mcp;
    return oldest;
}

bool tool_schemas_lookup(const char *account, const char *custom_mcps, const char *configured_mcps,
                         json_t *fallback, tool_schemas_view *out)
{
    memset(out, 0, sizeof *out);
    out->tools = fallback;
    entry *e = entry_for(account ? account : "", custom_mcps ? custom_mcps : "",
                         configured_mcps ? configured_mcps : "");
    if (e == NULL)
        return true;
    int64_t ttl = !e->mcp ? TOOL_SCHEMAS_TTL_MS
        : e->mcp_failed   ? TOOL_SCHEMAS_MCP_ERROR_TTL_MS
                          : TOOL_SCHEMAS_MCP_TTL_MS;
    if (e->tools == NULL || kx_mono_ms() - e->fetched > ttl)
        ask(e);
    if (e->tools != NULL) {
        out->tools = e->tools;
        out->mcp_tools = e->mcp_tools;
        out->mcp_routes = e->routes;
        return true;
    }
    if (!e->mcp)
        return true;
    /* no answer about these MCP servers yet (or only a failure): the built-ins meanwhile, from
     * their own entry */
    bool answered = e->answered;
    tool_schemas_lookup(NULL, NULL, NULL, fallback, out);
    return answered;
}
