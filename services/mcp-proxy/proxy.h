/* proxy.h — the mcp-proxy service's state and its parts: configuration and sessions (proxy.c),
 * the kx.mcp.list responder (list_tools.c).
 *
 * One mcp_proxy per process, owned by main() and touched only on the loop thread. */
#ifndef KX_MCP_PROXY_H
#define KX_MCP_PROXY_H

#include <stddef.h>
#include <stdint.h>

#include "kx/svc.h"
#include "mcp_config.h"
#include "session.h"

#define MCP_QUEUE_GROUP "mcp-proxy"

typedef struct mcp_proxy {
    kx_svc *svc;
    mcp_config config;            /* KX_MCP_SERVERS */
    int64_t timeout_ms;           /* KX_MCP_TIMEOUT_S: longest MCP operation */
    mcp_session **sessions;       /* one per configured server, in config order */
    natsSubscription *list_sub;   /* kx.mcp.list */
    size_t stopping;              /* sessions still stopping during the drain */
} mcp_proxy;

/* Reads KX_MCP_SERVERS and KX_MCP_TIMEOUT_S and creates a (not yet started) session per server.
 * KX_ERR_INVALID with the problem logged when the configuration is bad. */
kx_err mcp_proxy_init(mcp_proxy *p, kx_svc *svc);
/* The session of the server called name, or NULL. */
mcp_session *mcp_proxy_session(mcp_proxy *p, const char *name);
/* Subscribes kx.mcp.list (queue group mcp-proxy) on the loop. */
kx_err mcp_proxy_serve(mcp_proxy *p);
/* kx_svc drain callback: stop taking requests, end open ones, stop the servers, then exit. */
void mcp_proxy_drain(kx_svc *svc, void *arg);
void mcp_proxy_free(mcp_proxy *p);

/* kx.mcp.list: McpListToolsRequest -> McpListToolsReply (list_tools.c). Loop thread. */
void mcp_list_on_request(natsMsg *msg, void *arg);

#endif
