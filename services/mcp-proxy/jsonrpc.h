/* jsonrpc.h — JSON-RPC 2.0, the message layer of MCP, independent of any transport.
 *
 * An mcp_rpc is one peer-to-peer channel: it numbers our requests (integer ids from 1), keeps
 * the table of requests still waiting for a response, matches responses to them, and hands the
 * peer's requests and notifications to the owner. Bytes are not its business: it gives every
 * outgoing message, as one JSON text without a line end, to the owner's send function, and is
 * fed every incoming message (one JSON text) with mcp_rpc_receive. The stdio transport frames
 * messages as lines; an HTTP transport can frame them otherwise and reuse this layer.
 *
 * Pure: no I/O of its own, no logging, no globals, so that unit tests and fuzzers can drive it.
 * Not thread-safe (one loop thread). Batches (JSON arrays) are refused: MCP 2025-06-18 has none.
 *
 * Ownership: json_t arguments named "stolen" become the layer's; results and errors passed to
 * callbacks are borrowed for the duration of the callback. A callback must not free the
 * mcp_rpc it is called from. */
#ifndef KX_MCP_JSONRPC_H
#define KX_MCP_JSONRPC_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kx/err.h"

/* Standard JSON-RPC error codes. */
#define MCP_RPC_PARSE_ERROR (-32700)
#define MCP_RPC_INVALID_REQUEST (-32600)
#define MCP_RPC_METHOD_NOT_FOUND (-32601)
#define MCP_RPC_INVALID_PARAMS (-32602)
#define MCP_RPC_INTERNAL_ERROR (-32603)

typedef struct mcp_rpc mcp_rpc;

/* json_loadb for what a server sends: each \u0000 escape, in a value or a key, reads as U+FFFD
 * (jansson refuses it in keys, Postgres cannot store it). NULL with err filled when the text is
 * not JSON (err may be NULL). The caller owns the result. */
json_t *mcp_json_loadb(const char *text, size_t len, json_error_t *err);

/* An error object: what the peer sent, or what mcp_rpc_fail_all was told. */
typedef struct mcp_rpc_error {
    int64_t code;
    const char *message;
    const json_t *data; /* NULL when absent */
} mcp_rpc_error;

/* The response to one of our requests: exactly one of result and error is non-NULL. */
typedef void (*mcp_rpc_response_cb)(const json_t *result, const mcp_rpc_error *error, void *arg);

/* A request (id non-NULL: answer it with mcp_rpc_reply_result or _error, now or later; keep a
 * json_incref'd id if later) or a notification (id NULL) from the peer. params may be NULL. */
typedef void (*mcp_rpc_incoming_cb)(mcp_rpc *rpc, const char *method, const json_t *params,
                                    const json_t *id, void *arg);

/* Sends one serialized message (len bytes, no line end). */
typedef kx_err (*mcp_rpc_send_fn)(const char *text, size_t len, void *arg);

/* NULL on OOM. */
mcp_rpc *mcp_rpc_new(mcp_rpc_send_fn send, mcp_rpc_incoming_cb incoming, void *arg);
/* Frees the channel; pending requests are dropped without callbacks. NULL is a no-op. */
void mcp_rpc_free(mcp_rpc *rpc);

/* Sends a request; cb gets its response. params (stolen) may be NULL. *id_out (may be NULL)
 * receives the request id. On an error nothing stays pending and cb is never called. */
kx_err mcp_rpc_request(mcp_rpc *rpc, const char *method, json_t *params, mcp_rpc_response_cb cb,
                       void *arg, int64_t *id_out);
kx_err mcp_rpc_notify(mcp_rpc *rpc, const char *method, json_t *params /* stolen, NULL ok */);
kx_err mcp_rpc_reply_result(mcp_rpc *rpc, const json_t *id, json_t *result /* stolen */);
kx_err mcp_rpc_reply_error(mcp_rpc *rpc, const json_t *id, int64_t code, const char *message);

/* Forgets a pending request (its callback will not run). False if id is not pending. */
bool mcp_rpc_cancel(mcp_rpc *rpc, int64_t id);
/* Answers every pending request with this error (used when the peer goes away). */
void mcp_rpc_fail_all(mcp_rpc *rpc, int64_t code, const char *message);
size_t mcp_rpc_pending(const mcp_rpc *rpc);

/* Handles one incoming message (len bytes of JSON). Returns:
 *   KX_OK            handled (a response was matched, or a request/notification handed over);
 *   KX_ERR_PROTOCOL  not JSON-RPC 2.0 (not JSON, a batch, no "jsonrpc": "2.0", a response with
 *                    both or neither of result/error, ...): nothing was called, unless it was a
 *                    response to a pending id with a malformed error, which then fails with
 *                    MCP_RPC_INTERNAL_ERROR;
 *   KX_ERR_NOT_FOUND a response to an id that is not pending (e.g. cancelled);
 *   KX_ERR_NOMEM.
 * On an error, why (size whylen, may be NULL) says what was wrong. */
kx_err mcp_rpc_receive(mcp_rpc *rpc, const char *text, size_t len, char *why, size_t whylen);

#endif
