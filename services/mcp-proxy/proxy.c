/* proxy.c — the mcp-proxy's configuration, its sessions, and its drain (see proxy.h). */
#include "proxy.h"

#include <stdlib.h>
#include <string.h>

#include "kx/config.h"
#include "kx/log.h"

kx_err mcp_proxy_init(mcp_proxy *p, kx_svc *svc)
{
    memset(p, 0, sizeof *p);
    p->svc = svc;
    int64_t timeout_s = 30;
    if (kx_env_int("KX_MCP_TIMEOUT_S", 30, 1, 3600, &timeout_s) != KX_OK)
        return KX_ERR_INVALID;
    p->timeout_ms = timeout_s * 1000;

    char why[512];
    if (mcp_config_parse(kx_env_str("KX_MCP_SERVERS", "{}"), &p->config, why, sizeof why)
        != 0) {
        kx_error("config: %s", why);
        return KX_ERR_INVALID;
    }
    p->sessions = calloc(p->config.n + 1, sizeof *p->sessions);
    if (p->sessions == NULL)
        return KX_ERR_NOMEM;
    for (size_t i = 0; i < p->config.n; i++) {
        p->sessions[i] = mcp_session_new(svc->loop, &p->config.servers[i], p->timeout_ms);
        if (p->sessions[i] == NULL)
            return KX_ERR_NOMEM;
    }
    char names[512];
    mcp_config_names(&p->config, names, sizeof names);
    kx_info("mcp-proxy: %zu MCP server(s) configured: %s; operations time out after %lld s",
            p->config.n, names, (long long)timeout_s);
    return KX_OK;
}

mcp_session *mcp_proxy_session(mcp_proxy *p, const char *name)
{
    for (size_t i = 0; i < p->config.n; i++)
        if (strcmp(p->config.servers[i].name, name) == 0)
            return p->sessions[i];
    return NULL;
}

kx_err mcp_proxy_serve(mcp_proxy *p)
{
    return kx_bus_subscribe_loop(p->svc->bus, p->svc->loop, KX_SUBJ_MCP_LIST, MCP_QUEUE_GROUP,
                                 mcp_list_on_request, p, &p->list_sub);
}

static void on_session_stopped(void *arg)
{
    mcp_proxy *p = arg;
    if (--p->stopping == 0) {
        kx_info("mcp-proxy: every MCP server has stopped; drained");
        kx_svc_exit(p->svc);
    }
}

void mcp_proxy_drain(kx_svc *svc, void *arg)
{
    mcp_proxy *p = arg;
    /* Stop taking requests: another replica (or a retry after our restart) will serve them. */
    if (p->list_sub != NULL) {
        natsSubscription_Unsubscribe(p->list_sub);
        natsSubscription_Destroy(p->list_sub);
        p->list_sub = NULL;
    }
    p->stopping = p->config.n + 1;   /* + 1: held until every shutdown has been started */
    for (size_t i = 0; i < p->config.n; i++)
        mcp_session_shutdown(p->sessions[i], "mcp-proxy is shutting down", on_session_stopped,
                             p);
    on_session_stopped(p);
}

void mcp_proxy_free(mcp_proxy *p)
{
    if (p->list_sub != NULL) {
        natsSubscription_Destroy(p->list_sub);
        p->list_sub = NULL;
    }
    for (size_t i = 0; p->sessions && i < p->config.n; i++)
        mcp_session_free(p->sessions[i]);
    free(p->sessions);
    p->sessions = NULL;
    mcp_config_free(&p->config);
}
