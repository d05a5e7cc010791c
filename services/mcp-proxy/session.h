/* session.h — an MCP client session with one server, over any transport (transport.h).
 *
 * The server is started (or connected to) lazily, on the first operation: `initialize`
 * (protocolVersion MCP_PROTOCOL_VERSION, clientInfo {name "kortix-mcp-proxy", version},
 * capabilities {}), then `notifications/initialized`. The server may answer with any version
 * we speak (2025-11-25, 2025-06-18, 2025-03-26, 2024-11-05); another one ends the session with
 * "unavailable". Operations that arrive meanwhile wait. The session then stays up between
 * operations (the proxy pools sessions and closes idle ones).
 *
 * Operations: tools/list (following nextCursor, at most MCP_MAX_PAGES pages and
 * MCP_MAX_LIST_BYTES in all) and tools/call
 * (with a progressToken when the caller wants progress: notifications/progress for it are
 * passed on). Server notifications/tools/list_changed calls hooks.on_list_changed.
 *
 * Deadlines and cancel: every operation ends by its deadline (deadline_exceeded) or by
 * mcp_session_cancel (cancelled); a request still at the server is then cancelled upstream
 * with notifications/cancelled {requestId, reason}. `initialize` has its own limit,
 * timeout_ms: a server that does not answer it by then is wedged; it is killed and the next
 * operation starts a fresh one.
 *
 * Failures: when the server exits or the connection breaks, every operation it had is failed
 * with unavailable ("MCP server '<name>' exited (status N)"; a call says its outcome is
 * unknown). An HTTP server that forgot the session (404, or 400) is re-initialized and the
 * operations in flight are re-sent (it never saw them) — unless it happens within 1 s of the
 * initialize, which fails them instead (no re-initialize loop). Starts are guarded by a circuit breaker
 * (kx_breaker: 3 failures in a row open it for 1 s, doubling to 60 s): while open, operations
 * fail at once with unavailable saying when the next attempt is allowed. A successful answer
 * closes it. Stdio servers from an agent's config go through user_stdio.c (the sandbox).
 *
 * Loop thread only. Ownership: the session copies cfg; results handed to callbacks are
 * borrowed for the duration of the callback; an mcp_op handle is valid until its callback. */
#ifndef KX_MCP_SESSION_H
#define KX_MCP_SESSION_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "kx/loop.h"
#include "kx/time.h"
#include "mcp_config.h"

#define MCP_PROTOCOL_VERSION "2025-11-25"
#define MCP_CLIENT_NAME "kortix-mcp-proxy"
#define MCP_MAX_PAGES 1000 /* a tools/list that pages longer than this is an error */
/* A tools/list whose pages come to more than this (as received) is an error: every page is
 * held until the last one, and 1000 pages of up to 16 MiB would be GiBs; a list this large
 * could not be offered anyway (a reply carries ~1 MiB, the cache 768 KiB). */
#define MCP_MAX_LIST_BYTES (16u << 20)
#define MCP_STOP_GRACE_MS 2000

typedef struct mcp_session mcp_session;
typedef struct mcp_op mcp_op;

/* Whether we speak protocol revision v. */
bool mcp_protocol_supported(const char *v);

typedef struct mcp_tools_result {
    const json_t *tools;          /* array of the server's tool objects, all pages */
    const char *server_name;      /* serverInfo.name from initialize ("" if none) */
    const char *protocol_version; /* the version the server agreed to */
} mcp_tools_result;

/* Exactly once per operation: on success code is NULL and result is set; otherwise code is a
 * kx.v1.Error code ("deadline_exceeded", "unavailable", "internal", "cancelled") and message
 * explains. */
typedef void (*mcp_list_cb)(const mcp_tools_result *result, const char *code, const char *message,
                            void *arg);
/* result is the tools/call result object (content, isError, structuredContent). */
typedef void (*mcp_call_cb)(const json_t *result, const char *code, const char *message,
                            void *arg);
typedef void (*mcp_progress_cb)(double progress, double total, const char *message, void *arg);

typedef struct kx_curlm kx_curlm;
typedef struct mcp_session_hooks {
    kx_curlm *curlm; /* for HTTP transports (may be NULL when only stdio is used) */
    void (*on_list_changed)(mcp_session *s, void *arg);
    void *arg;
    const struct mcp_jail_config *jail; /* agents' stdio servers run in it (user_stdio.h);
                                           NULL: they are refused */
    /* Whether an agent's stdio server may start now (its account runs few enough); false with
     * why refuses the session's operations (unavailable). NULL: always. */
    bool (*may_start)(mcp_session *s, void *arg, char *why, size_t whylen);
    /* The account whose session this is ("" or NULL: none), for an agent's stdio server's host
     * uid (user_stdio.h); borrowed: it outlives the session (the pool's entry owns it). */
    const char *account;
} mcp_session_hooks;

/* NULL on OOM. timeout_ms limits initialize (and the shutdown escalation). hooks may be NULL. */
mcp_session *mcp_session_new(kx_loop *loop, const mcp_server_config *cfg, int64_t timeout_ms,
                             const mcp_session_hooks *hooks);

/* Lists the server's tools. cb may run before this returns. */
void mcp_session_list_tools(mcp_session *s, kx_deadline deadline, mcp_list_cb cb, void *arg);
/* Calls tool with arguments (stolen; NULL = {}). progress may be NULL (no progressToken).
 * Returns the operation's handle, or NULL when cb already ran (refused at once). */
mcp_op *mcp_session_call(mcp_session *s, const char *tool, json_t *arguments, kx_deadline deadline,
                         mcp_progress_cb progress, mcp_call_cb cb, void *arg);
/* Ends op now with code "cancelled" (its callback runs before this returns) and tells the
 * server (notifications/cancelled) if the request had reached it. */
void mcp_session_cancel(mcp_op *op, const char *reason);

/* Ends every operation with error unavailable and message, and stops the server politely
 * (stdin closed / HTTP DELETE; for stdio SIGTERM to its group after MCP_STOP_GRACE_MS, SIGKILL
 * after as long again). done(arg) runs once nothing is left (maybe before this returns).
 * Later operations are refused. */
void mcp_session_shutdown(mcp_session *s, const char *message, void (*done)(void *arg), void *arg);

const char *mcp_session_name(const mcp_session *s);
const mcp_server_config *mcp_session_config(const mcp_session *s);
/* No operation waiting or in flight. */
bool mcp_session_idle(const mcp_session *s);
/* Monotonic ms of the last operation's start. */
int64_t mcp_session_last_used(const mcp_session *s);
/* Stops the server of an idle, ready session politely; the next operation starts it again. */
void mcp_session_rest(mcp_session *s);
/* No transport is open (nothing runs). */
bool mcp_session_stopped(const mcp_session *s);
/* Frees the session; a server still running is killed (and reaped). NULL is a no-op. */
void mcp_session_free(mcp_session *s);

#endif
