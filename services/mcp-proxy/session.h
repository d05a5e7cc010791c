/* session.h — an MCP client session with one configured server.
 *
 * The server process is started lazily, on the first operation: we send `initialize`
 * (protocolVersion MCP_PROTOCOL_VERSION, clientInfo {name "kortix-mcp-proxy", version},
 * capabilities {}), then the `notifications/initialized` notification; operations that arrived
 * meanwhile wait for that. The session then stays up between operations. Nothing is cached:
 * every list asks the server (`tools/list`, following nextCursor).
 *
 * Deadlines: every operation ends by its deadline (the caller's, already capped by the proxy's
 * KX_MCP_TIMEOUT_S) with error deadline_exceeded; a request still at the server is then
 * cancelled (`notifications/cancelled`). `initialize` has its own limit, timeout_ms: a server
 * that does not answer it by then is wedged, and its process group is killed so that the next
 * operation starts a fresh one.
 *
 * When the process dies, every operation it had is failed with error unavailable
 * "MCP server '<name>' exited (status N)"; the next operation starts it again.
 *
 * Loop thread only. Ownership: the session borrows cfg (it must outlive the session); the
 * result handed to a callback is borrowed for the duration of the callback. */
#ifndef KX_MCP_SESSION_H
#define KX_MCP_SESSION_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "kx/loop.h"
#include "kx/time.h"
#include "mcp_config.h"

#define MCP_PROTOCOL_VERSION "2025-06-18"
#define MCP_CLIENT_NAME "kortix-mcp-proxy"
#define MCP_MAX_PAGES 1000   /* a tools/list that pages longer than this is an error */

typedef struct mcp_session mcp_session;

typedef struct mcp_tools_result {
    const json_t *tools;             /* array of the server's tool objects, all pages */
    const char *server_name;         /* serverInfo.name from initialize ("" if none) */
    const char *protocol_version;    /* the version the server agreed to */
} mcp_tools_result;

/* Exactly once per operation: on success code is NULL and result is set; otherwise code is a
 * kx.v1.Error code ("deadline_exceeded", "unavailable", "internal") and message explains. */
typedef void (*mcp_list_cb)(const mcp_tools_result *result, const char *code,
                            const char *message, void *arg);

/* NULL on OOM. timeout_ms limits initialize (and the shutdown escalation). */
mcp_session *mcp_session_new(kx_loop *loop, const mcp_server_config *cfg, int64_t timeout_ms);

/* Lists the server's tools. cb may run before this returns (e.g. the deadline has passed or
 * the server cannot be started). */
void mcp_session_list_tools(mcp_session *s, kx_deadline deadline, mcp_list_cb cb, void *arg);

/* Ends every operation with error unavailable and message, and stops the server: stdin is
 * closed (the MCP way to ask it to exit), SIGTERM to its group after MCP_STOP_GRACE_MS, SIGKILL
 * after as long again. done(arg) runs once no process is left (maybe before this returns).
 * Later operations are refused. */
#define MCP_STOP_GRACE_MS 2000
void mcp_session_shutdown(mcp_session *s, const char *message, void (*done)(void *arg),
                          void *arg);

const char *mcp_session_name(const mcp_session *s);
/* Frees the session; a process still running is killed and reaped. NULL is a no-op. */
void mcp_session_free(mcp_session *s);

#endif
