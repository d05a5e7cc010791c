/* mcp_config.h — the MCP servers the proxy may start, from KX_MCP_SERVERS.
 *
 * KX_MCP_SERVERS is a JSON object: name -> {"command": "...", "args": [...], "env": {...}}
 * (stdio servers). "command" is required; "args" (strings) and "env" (string values) are
 * optional; "type" may be given and must then be "stdio". Any other key, or a value of the wrong
 * shape, is an error naming the server and the key: the proxy refuses to start rather than guess
 * (a typo such as "arg" would otherwise silently drop the arguments). Names are 1..64 of
 * [A-Za-z0-9_.-].
 *
 * Pure (no I/O). Ownership: an mcp_config owns everything in it; mcp_config_free frees it. */
#ifndef KX_MCP_CONFIG_H
#define KX_MCP_CONFIG_H

#include <stddef.h>

typedef struct mcp_server_config {
    char *name;
    char **argv;    /* command, then args; NULL-terminated */
    char **env;     /* "KEY=value" from "env", in written order; NULL-terminated (maybe empty) */
} mcp_server_config;

typedef struct mcp_config {
    mcp_server_config *servers;
    size_t n;
} mcp_config;

/* Parses text (NULL or "" is "{}"). Returns 0, or -1 with the problem written into why. */
int mcp_config_parse(const char *text, mcp_config *out, char *why, size_t whylen);
void mcp_config_free(mcp_config *c);
/* The server called name, or NULL. */
const mcp_server_config *mcp_config_find(const mcp_config *c, const char *name);
/* "a, b, c" (or "none") into buf: for messages that list what is configured. */
void mcp_config_names(const mcp_config *c, char *buf, size_t len);

#endif
