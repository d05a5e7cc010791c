/* main.c — mcp-proxy: the MCP client of Kortix in C. It keeps a session with each configured
 * MCP server (stdio today) and answers kx.mcp.list with the server's tools. Table of contents:
 *
 *   mcp_config.c       KX_MCP_SERVERS: name -> {command, args, env}, validated
 *   jsonrpc.c          JSON-RPC 2.0: ids, pending requests, responses, notifications, errors
 *   linebuf.c          newline framing with a 16 MiB cap per message
 *   stdio_transport.c  a server as a child process group with pipes, on the loop
 *   session.c          the MCP handshake, lazy start, restart after exit, deadlines, tools/list
 *   proxy.c            sessions per server, the drain on SIGTERM
 *   list_tools.c       the kx.mcp.list responder (queue group mcp-proxy)
 *
 * Event-driven: one loop thread owns every session and child process; NATS messages are posted
 * onto it. kx.mcp.call is reserved and not served yet. See README.md. */
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
    if (mcp_proxy_init(&proxy, &svc) != KX_OK) {
        kx_error("mcp-proxy refuses to start: bad configuration (see above)");
        mcp_proxy_free(&proxy);
        kx_svc_close(&svc);
        return 1;
    }
    kx_svc_on_drain(&svc, mcp_proxy_drain, &proxy);
    if (mcp_proxy_serve(&proxy) != KX_OK) {
        kx_error("mcp-proxy: cannot subscribe to %s", KX_SUBJ_MCP_LIST);
        mcp_proxy_free(&proxy);
        kx_svc_close(&svc);
        return 1;
    }

    int code = kx_svc_run(&svc);
    mcp_proxy_free(&proxy);   /* kills and reaps any server still running */
    kx_svc_close(&svc);
    return code;
}
