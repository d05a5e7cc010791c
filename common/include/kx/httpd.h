/* kx/httpd.h — the small HTTP server every service runs for operations:
 *   GET /healthz  200 "ok" while the process runs
 *   GET /readyz   200 "ready" when ready_fn says so, 503 with the reason otherwise
 *   GET /metrics  Prometheus text (kx/metrics.h)
 * It binds 127.0.0.1 unless KX_BIND_ADDR says otherwise. libmicrohttpd, internal epoll thread.
 * The gateway has its own server for the API and mounts these routes there too
 * (kx_httpd_ops_route). */
#ifndef KX_HTTPD_H
#define KX_HTTPD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "kx/err.h"

struct MHD_Connection;

/* Returns true when ready; else false and writes a reason into why (size whylen). Called from
 * the server's thread: must be thread-safe and quick. */
typedef bool (*kx_ready_fn)(void *arg, char *why, size_t whylen);

typedef struct kx_httpd kx_httpd;

/* Starts the ops server on bind_addr:port (port 0 = any free port; see kx_httpd_port). */
kx_err kx_httpd_start(const char *bind_addr, uint16_t port, kx_ready_fn ready, void *arg,
                      kx_httpd **out);
uint16_t kx_httpd_port(const kx_httpd *h);
void kx_httpd_stop(kx_httpd *h); /* NULL is a no-op */

/* For servers of their own: if url is one of the three ops routes, queues the answer on conn
 * and returns true (the MHD return value goes into *mhd_ret). */
bool kx_httpd_ops_route(struct MHD_Connection *conn, const char *method, const char *url,
                        kx_ready_fn ready, void *arg, int *mhd_ret);

#endif
