/* server.h — the gateway's HTTP server: libmicrohttpd with an epoll thread pool
 * (KX_HTTP_THREADS), bound to KX_BIND_ADDR:KX_HTTP_PORT, suspend/resume on (for SSE).
 *
 * Connection limits: KX_HTTP_MAX_CONNS in all and KX_HTTP_MAX_CONNS_PER_IP per client address
 * (more are closed at once), RLIMIT_NOFILE raised to fit them, KX_HTTP_TIMEOUT_S for a
 * connection that sends nothing, KX_HTTP_CONN_MEMORY per connection.
 *
 * Per request it checks the URL, query and header limits, answers CORS preflights (cors.h),
 * finds the route (route.h), authenticates as soon as the headers are in, reads bodies up to
 * KX_MAX_BODY_BYTES (larger: 413), parses form bodies, calls the handler and sends its
 * gw_reply. The ops routes (/healthz, /readyz, /metrics) answer on the API port only with
 * "Authorization: Bearer <KX_OPS_TOKEN>" (their home is KX_HEALTH_PORT). Every answer is
 * counted per route and status, with a latency histogram (kx_gateway_http_requests_total,
 * kx_gateway_http_request_seconds).
 *
 * Ownership: gw_server is created and freed by main() (gw_server_start / gw_server_free). */
#ifndef GW_SERVER_H
#define GW_SERVER_H

#include <stdint.h>
#include "gateway.h"

kx_err gw_server_start(gw_app *app, gw_server **out);
/* The port actually bound (useful when KX_HTTP_PORT=0). */
uint16_t gw_server_port(const gw_server *srv);
/* Stops accepting new connections; requests already accepted go on. Thread-safe once. */
void gw_server_quiesce(gw_server *srv);
/* Requests accepted and not yet completed (SSE streams included). */
int gw_server_inflight(const gw_server *srv);
/* Stops the daemon (every SSE stream must have been closed with gw_streams_close_all first:
 * libmicrohttpd requires suspended connections to be resumed) and frees. NULL is a no-op. */
void gw_server_free(gw_server *srv);

#endif
