/* stdio_adapter.h — a bare stdio MCP server process as an mcp_transport (stdio_adapter.c).
 * For operator-configured servers (KX_MCP_SERVERS) only; user servers: user_stdio.h. */
#ifndef KX_MCP_STDIO_ADAPTER_H
#define KX_MCP_STDIO_ADAPTER_H

#include "kx/loop.h"
#include "transport.h"

/* Spawns argv with exactly envp (see stdio_transport.h). */
kx_err mcp_stdio_open(kx_loop *loop, const char *name, const char *const *argv,
                      const char *const *envp, const mcp_transport_cbs *cbs, void *arg,
                      mcp_transport **out);
/* Sends sig to the server's process group (SIGTERM step of a polite shutdown). */
void mcp_stdio_signal(mcp_transport *t, int sig);

#endif
