/* stdio_adapter.h — a bare stdio MCP server process as an mcp_transport (stdio_adapter.c).
 * mcp_stdio_open spawns bare: for operator-configured servers (KX_MCP_SERVERS) only; user
 * servers are started in a jail by user_stdio.c, which hands the child to mcp_stdio_open_proc. */
#ifndef KX_MCP_STDIO_ADAPTER_H
#define KX_MCP_STDIO_ADAPTER_H

#include "kx/loop.h"
#include "kx/proc.h"
#include "transport.h"

/* Spawns argv with exactly envp (see stdio_transport.h). */
kx_err mcp_stdio_open(kx_loop *loop, const char *name, const char *const *argv,
                      const char *const *envp, const mcp_transport_cbs *cbs, void *arg,
                      mcp_transport **out);
/* Takes over a started child (see mcp_stdio_adopt): the jailed servers of user_stdio.c. proc's
 * descriptors belong to the transport from now on, also on failure. */
kx_err mcp_stdio_open_proc(kx_loop *loop, const char *name, kx_proc *proc,
                           const mcp_transport_cbs *cbs, void *arg, mcp_transport **out);
/* Sends sig to the server's process group (SIGTERM step of a polite shutdown). */
void mcp_stdio_signal(mcp_transport *t, int sig);

#endif
