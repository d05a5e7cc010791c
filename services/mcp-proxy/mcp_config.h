/* mcp_config.h — MCP server configurations: the operator's (KX_MCP_SERVERS) and an agent's
 * (Kortix's custom_mcps / configured_mcps entries, agent_config.c), in one shape.
 *
 * KX_MCP_SERVERS is a JSON object: name -> one of
 *   {"command": "...", "args": [...], "env": {...}}              stdio ("type": "stdio" allowed)
 *   {"type": "http", "url": "http://...", "headers": {...}}      Streamable HTTP
 *   {"type": "sse",  "url": "http://.../sse", "headers": {...}}  legacy HTTP+SSE
 * Any other key, or a value of the wrong shape, is an error naming the server and the key: the
 * proxy refuses to start rather than guess (a typo such as "arg" would otherwise silently drop
 * the arguments). Names are 1..64 of [A-Za-z0-9_.-].
 *
 * Every server config carries a hash of what makes a session (transport, command, args, env,
 * url, headers, and whether it came from a user): sessions are pooled by it, and the shared
 * tool-list cache is keyed by it (so it is SHA-256: see mcp_server_hash).
 *
 * Pure (no I/O). Ownership: an mcp_config / mcp_server_config owns everything in it; the
 * _free functions free it. */
#ifndef KX_MCP_CONFIG_H
#define KX_MCP_CONFIG_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

typedef enum mcp_transport_kind {
    MCP_T_STDIO,
    MCP_T_HTTP,
    MCP_T_SSE
} mcp_transport_kind;

typedef struct mcp_server_config {
    char *name; /* operator: the KX_MCP_SERVERS key; agent: the qualified name */
    mcp_transport_kind kind;
    char **argv;    /* stdio: command, then args; NULL-terminated (NULL otherwise) */
    char **env;     /* stdio: "KEY=value", written order; NULL-terminated (maybe empty) */
    char *url;      /* http / sse */
    char **headers; /* http / sse: "Name: value"; NULL-terminated (maybe empty) */
    bool user;      /* from an agent's config: stdio needs the sandbox, URLs checked */
    char hash[65];  /* SHA-256 of the above, hex */
} mcp_server_config;

typedef struct mcp_config {
    mcp_server_config *servers;
    size_t n;
} mcp_config;

/* Parses KX_MCP_SERVERS text (NULL or "" is "{}"). Returns 0, or -1 with the problem in why. */
int mcp_config_parse(const char *text, mcp_config *out, char *why, size_t whylen);
void mcp_config_free(mcp_config *c);
/* The server called name, or NULL. */
const mcp_server_config *mcp_config_find(const mcp_config *c, const char *name);
/* "a, b, c" (or "none") into buf: for messages that list what is configured. */
void mcp_config_names(const mcp_config *c, char *buf, size_t len);

/* Building blocks shared with agent_config.c. where prefixes messages ("KX_MCP_SERVERS: server
 * 'x'"). Each returns 0, or -1 with why. */
int mcp_server_set_stdio(mcp_server_config *s, const json_t *command, const json_t *args,
                         const json_t *env, const char *where, char *why, size_t whylen);
int mcp_server_set_url(mcp_server_config *s, mcp_transport_kind kind, const json_t *url,
                       const json_t *headers, const char *where, char *why, size_t whylen);
/* Computes s->hash from the fields: 0, or -1 when out of memory. */
int mcp_server_hash(mcp_server_config *s);
/* Deep copy; 0 or -1 on OOM. */
int mcp_server_copy(const mcp_server_config *src, mcp_server_config *dst);
void mcp_server_free(mcp_server_config *s);
const char *mcp_transport_name(mcp_transport_kind kind);

#endif
