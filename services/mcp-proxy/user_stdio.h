/* user_stdio.h — the one way a stdio MCP server from an agent's config is started: inside a
 * jail (kx/jail.h), never as a bare process on the proxy's host.
 *
 * A user's stdio server is a command the user chose. It runs in bubblewrap with its own user,
 * PID, mount, IPC and UTS namespaces; the host's /usr and /etc read-only (so node, npx, python3
 * and uvx work); a private tmpfs /tmp that is also its HOME (npx and uv cache there); the
 * operator's read-only binds (KX_MCP_JAIL_RO_BINDS, e.g. preinstalled servers) and nothing
 * else of the host's tree (no $KX_DATA_DIR, no service files, no /proc of the host's
 * processes); an environment of only PATH, HOME and the config's env; the network of
 * KX_SANDBOX_NETWORK like the sandbox-broker's sandboxes (none: loopback of its own; host: the
 * suite's ports refused by Landlock); a host uid of its own (KX_MCP_JAIL_UID_BASE + the config
 * hash modulo KX_MCP_JAIL_UID_COUNT, when the proxy runs as root) and rlimits. Its stdin,
 * stdout and stderr are the proxy's pipes, driven by the stdio transport like any server.
 *
 * When bubblewrap does not work on the host (probed at start), every such server is REFUSED
 * with MCP_USER_STDIO_REFUSAL and the reason; there is no fallback to a bare spawn.
 *
 * Ownership: mcp_jail_config is owned by the proxy (mcp_jail_config_free). Loop thread only. */
#ifndef KX_MCP_USER_STDIO_H
#define KX_MCP_USER_STDIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kx/jail.h"
#include "kx/loop.h"
#include "mcp_config.h"
#include "transport.h"

#define MCP_USER_STDIO_REFUSAL "stdio MCP servers from agent configs need a working sandbox"
#define MCP_JAIL_MAX_BINDS 16

typedef struct mcp_jail_config {
    bool ok;                 /* the jail works here; otherwise why says why not */
    char why[600];           /* for refusals */
    char bwrap[256];         /* KX_SANDBOX_BWRAP */
    kx_jail_net net;         /* KX_SANDBOX_NETWORK */
    uint16_t deny_ports[32]; /* KX_SANDBOX_DENY_PORTS + the NATS port (host network) */
    size_t ndeny_ports;
    int deny_ruleset_fd; /* host network: their Landlock ruleset, built once at start (-1) */
    int64_t uid_base, uid_count; /* KX_MCP_JAIL_UID_BASE, _COUNT */
    kx_jail_limits limits;       /* KX_MCP_JAIL_MAX_PROCS, _MAX_MEMORY_MB, _MAX_FILE_MB */
    int64_t tmp_bytes;           /* KX_MCP_JAIL_TMP_MB */
    kx_jail_bind binds[MCP_JAIL_MAX_BINDS]; /* KX_MCP_JAIL_RO_BINDS; point into bind_text */
    size_t nbinds;
    char *bind_text;
} mcp_jail_config;

/* Reads the settings above, probes bubblewrap (at most 5 s) and, for the host network, builds
 * the port ruleset once (tens of thousands of system calls: at start, never per server on the
 * loop). KX_ERR_INVALID with the
 * problem logged when a setting is bad; a jail that does not work is not an error (ok = false,
 * logged as a warning): operator servers and HTTP servers still work. */
kx_err mcp_jail_config_load(mcp_jail_config *jc);
void mcp_jail_config_free(mcp_jail_config *jc);

/* The host uid a server of this config hash runs as for account (NULL or "": none): uid_base
 * plus a 64-bit hash of both modulo uid_count, so that two accounts with the same config get
 * different uids (they shared one, and with it RLIMIT_NPROC: one could exhaust the other's
 * process limit) as two configs do — except by chance, among uid_count uids. */
uid_t mcp_user_stdio_uid(const mcp_jail_config *jc, const char *account, const char *hash);

/* Starts cfg (a user's stdio server) for account in a jail as an mcp_transport. KX_OK with
 * *out, or an error with why filled (size whylen). jc may be NULL (= no jail: refused). */
kx_err mcp_user_stdio_open(kx_loop *loop, const mcp_jail_config *jc, const char *account,
                           const mcp_server_config *cfg, const mcp_transport_cbs *cbs, void *arg,
                           mcp_transport **out, char *why, size_t whylen);

#endif
