/* user_stdio.h — the one way a stdio MCP server from an agent's config is started.
 *
 * A user's stdio server is a command the user chose: it must run inside a sandbox
 * (user/PID/mount namespaces, read-only /usr, private /tmp, no suite secrets or ports), never as
 * a bare process on the proxy's host. The suite's jail (kx/jail.h) cannot yet give a jailed
 * program pipes as stdin/stdout, so until it can, this REFUSES every such server with
 * "stdio MCP servers from agent configs need the sandbox launcher". Every user-config stdio
 * spawn goes through mcp_user_stdio_open and nowhere else: wiring the launcher in is a change
 * to user_stdio.c only. */
#ifndef KX_MCP_USER_STDIO_H
#define KX_MCP_USER_STDIO_H

#include <stddef.h>

#include "kx/loop.h"
#include "mcp_config.h"
#include "transport.h"

#define MCP_USER_STDIO_REFUSAL "stdio MCP servers from agent configs need the sandbox launcher"

/* KX_OK with *out, or an error with why filled (size whylen). */
kx_err mcp_user_stdio_open(kx_loop *loop, const mcp_server_config *cfg,
                           const mcp_transport_cbs *cbs, void *arg, mcp_transport **out, char *why,
                           size_t whylen);

#endif
