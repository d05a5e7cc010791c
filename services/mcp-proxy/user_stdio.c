/* user_stdio.c — starting an agent's (user's) stdio MCP server: refused until the sandbox
 * launcher exists (see user_stdio.h). Never falls back to a bare spawn. */
#include "user_stdio.h"

#include <stdio.h>

kx_err mcp_user_stdio_open(kx_loop *loop, const mcp_server_config *cfg,
                           const mcp_transport_cbs *cbs, void *arg, mcp_transport **out, char *why,
                           size_t whylen)
{
    (void)loop;
    (void)cbs;
    (void)arg;
    *out = NULL;
    snprintf(why, whylen, "%s (server '%s' was not started)", MCP_USER_STDIO_REFUSAL, cfg->name);
    return KX_ERR_UNAVAILABLE;
}
