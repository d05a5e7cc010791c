/* main.c — mcp-proxy: the MCP client of Kortix in C. It keeps pooled sessions with MCP servers
 * (the operator's and every agent's) over stdio, Streamable HTTP and legacy HTTP+SSE, and answers
 * tool lists and tool calls over NATS within their deadlines. Table of contents:
 *
 *   mcp_config.c       server configs (KX_MCP_SERVERS) and their hash
 *   agent_config.c     agents' custom_mcps / configured_mcps, model-visible names
 *   jsonrpc.c          JSON-RPC 2.0: ids, pending requests, responses, notifications, errors
 *   linebuf.c          newline framing with a 16 MiB cap per message
 *   stdio_transport.c  a server as a child process group with pipes, on the loop
 *   stdio_adapter.c    operator stdio servers as a transport (transport.h)
 *   user_stdio.c       agents' stdio servers: each in a kx_jail, never bare
 *   http_transport.c   Streamable HTTP and legacy HTTP+SSE on libcurl multi; the address guard
 *   session.c          the MCP session: handshake, versions, breaker, deadlines, list, call
 *   result_map.c       tools/call results mapped for the agent within the reply budget
 *   tool_cache.c       tool lists in a JetStream KV bucket shared by the replicas
 *   proxy.c            the session pool, idle sweep, the drain on SIGTERM
 *   list_tools.c       kx.mcp.list          (queue group mcp-proxy)
 *   agent_tools.c      kx.mcp.agent_tools   (queue group mcp-proxy)
 *   call.c             kx.mcp.call (queue group mcp-proxy), kx.mcp.cancel (every replica)
 *
 * Event-driven: one loop thread owns every session, child process and HTTP transfer; NATS
 * messages are posted onto it. See README.md. */
#include <stdlib.h>

#include "kx/log.h"
#include "kx/svc.h"
#include "proxy.h"

int main(void)
{
    kx_svc svc;
    if (kx_svc_init(&svc, "mcp-proxy", 9105) != KX_OK)
        return 1;

    static mcp_proxy proxy;
    /* First: health is answered from kx_svc_init on; until mcp_proxy_serve has subscribed,
     * the proxy must say it is not ready. */
    kx_svc_on_ready(&svc, mcp_proxy_ready, &proxy);
    if (mcp_proxy_init(&proxy, &svc) != KX_OK) {
        kx_error("mcp-proxy refuses to start: bad configuration (see above)");
        mcp_proxy_free(&proxy);
        kx_svc_close(&svc);
        return 1;
    }
    kx_svc_on_drain(&svc, mcp_proxy_drain, &proxy);
    if (mcp_proxy_serve(&proxy) != KX_OK) {
        kx_error("mcp-proxy: cannot subscribe to the kx.mcp.* subjects");
        mcp_proxy_free(&proxy);
        kx_svc_close(&svc);
        return 1;
    }

    int code = kx_svc_run(&svc);
    mcp_proxy_free(&proxy); /* kills and reaps any server still running */
    kx_svc_close(&svc);
    return code;
}
