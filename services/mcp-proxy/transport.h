/* transport.h — what a session needs from an MCP transport, whatever carries the bytes:
 * stdio (stdio_adapter.c over stdio_transport.c), Streamable HTTP and legacy HTTP+SSE
 * (http_transport.c).
 *
 * A transport delivers every JSON-RPC message from the server (one JSON text) to on_message,
 * takes ours with send, and ends with exactly one on_closed — its last callback, after which
 * the owner frees it (it may do so inside on_closed). expired is true when the server forgot
 * the session (HTTP 404 on a request carrying Mcp-Session-Id): the owner then initializes a
 * new one and may re-send what was in flight (the server never saw it).
 *
 * Loop thread only. Callbacks other than on_closed must not free the transport. */
#ifndef KX_MCP_TRANSPORT_H
#define KX_MCP_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>

#include "kx/err.h"

typedef struct mcp_transport_cbs {
    void (*on_message)(const char *text, size_t len, void *arg);
    void (*on_closed)(const char *how, bool expired, void *arg);
} mcp_transport_cbs;

typedef struct mcp_transport mcp_transport;

typedef struct mcp_transport_vt {
    /* Queues one message (len bytes of JSON). KX_ERR_UNAVAILABLE when it can no longer send. */
    kx_err (*send)(mcp_transport *t, const char *text, size_t len);
    /* The protocol version agreed at initialize (HTTP sends it as MCP-Protocol-Version). */
    void (*set_protocol_version)(mcp_transport *t, const char *version);
    /* Asks politely to end (stdin closed / HTTP DELETE); on_closed follows. */
    void (*close)(mcp_transport *t);
    /* Ends now (SIGKILL to the process group / transfers aborted); on_closed follows. */
    void (*kill)(mcp_transport *t);
    /* Frees without further callbacks (kills what still runs). */
    void (*free)(mcp_transport *t);
    /* For log lines: "pid 123" or the URL. */
    const char *(*describe)(mcp_transport *t);
} mcp_transport_vt;

struct mcp_transport {
    const mcp_transport_vt *vt;
};

#endif
