/* http_transport.h — MCP over HTTP on the loop (libcurl multi, kx_curlm): Streamable HTTP and
 * the legacy HTTP+SSE transport, behind the mcp_transport interface (transport.h).
 *
 * Streamable HTTP (MCP_T_HTTP): every message is a POST to the URL with
 * `Accept: application/json, text/event-stream`, `Content-Type: application/json`, the config's
 * headers, `Mcp-Session-Id` once the server gave one, and `MCP-Protocol-Version` once agreed.
 * 202 = accepted (notifications, responses); 200 JSON = one message (or an array of them); 200
 * event-stream = messages as `data:` of SSE events until the stream ends. A stream that breaks
 * before the answer to its request came is resumed with GET + `Last-Event-ID` (after the
 * server's `retry` delay, at most MCP_HTTP_MAX_RESUMES times). 404 on a request carrying a
 * session id = the session expired (on_closed with expired); 400 likewise, as some servers
 * (server-everything) answer an unknown session id so. close sends DELETE with the
 * session id (a 405 is fine). Once notifications/initialized is accepted, a GET to the URL
 * opens the server's stream for messages outside requests (list_changed, logging); 405 or any
 * non-stream answer = the server has none (not asked again); a stream that ends or breaks is
 * re-opened after the server's retry delay (doubling while attempts bring nothing, given up
 * after MCP_HTTP_LISTEN_TRIES in a row). It never closes the transport.
 *
 * Legacy HTTP+SSE (MCP_T_SSE): a GET to the URL opens the event stream; its `endpoint` event
 * names the URL (resolved against the stream's) to POST messages to; responses arrive on the
 * stream as `message` events. The stream ending closes the transport.
 *
 * Guard: a server from an agent's config (cfg->user) may not reach loopback, unspecified or
 * link-local addresses (the suite's own ports and services, cloud metadata), checked on the
 * address actually connected to (so DNS tricks do not pass), except ports listed in
 * KX_MCP_ALLOW_LOOPBACK_PORTS (comma-separated; for tests and local development).
 * Operator-configured servers are trusted. */
#ifndef KX_MCP_HTTP_TRANSPORT_H
#define KX_MCP_HTTP_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>

#include "kx/curlm.h"
#include "kx/loop.h"
#include "mcp_config.h"
#include "transport.h"

#define MCP_HTTP_MAX_RESUMES 5
#define MCP_HTTP_LISTEN_TRIES 5 /* GET streams in a row without an event before we give up */
#define MCP_HTTP_MAX_MESSAGE (16u << 20)

/* Opens the transport (for SSE: starts the GET; messages sent before the endpoint arrives are
 * queued). KX_OK, or an error with why. */
kx_err mcp_http_open(kx_loop *loop, kx_curlm *curlm, const mcp_server_config *cfg,
                     const mcp_transport_cbs *cbs, void *arg, mcp_transport **out, char *why,
                     size_t whylen);

/* Whether a user server may connect to ip:port (pure; allow is the parsed allow-list). */
bool mcp_http_address_allowed(const char *ip, long port, const char *allow_ports);

#endif
