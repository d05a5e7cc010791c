/* config.h — the gateway's settings, read once from the environment at start.
 *
 * Variables and defaults are documented in docs/operations.md ("gateway"). A bad value, or a
 * missing KX_JWT_SECRET, makes gw_config_load fail with a log line naming the variable: the
 * gateway refuses to start rather than guess.
 *
 * Ownership: gw_config is caller-owned; gw_config_free releases the strings it holds. */
#ifndef GW_CONFIG_H
#define GW_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "kx/err.h"

typedef struct gw_config {
    char *bind_addr;    /* KX_BIND_ADDR, 127.0.0.1 */
    uint16_t http_port; /* KX_HTTP_PORT, 8000 (0 = any free port) */
    char *jwt_secret;   /* KX_JWT_SECRET, required */
    size_t jwt_secret_len;
    int http_threads;          /* KX_HTTP_THREADS, 4 */
    int db_pool_size;          /* KX_DB_POOL_SIZE, 8 */
    size_t max_body_bytes;     /* KX_MAX_BODY_BYTES, 1 MiB */
    int64_t sse_ping_ms;       /* KX_SSE_PING_S * 1000, 15 s */
    int64_t health_timeout_ms; /* KX_HEALTH_TIMEOUT_MS, 1000 */
    int64_t bus_timeout_ms;    /* KX_BUS_TIMEOUT_MS, 5000: deadline of the gateway's publishes */
    int64_t db_wait_ms; /* longest wait for a pooled connection (KX_DB_STATEMENT_TIMEOUT_MS) */
    char *conninfo;     /* KX_DATABASE_URL (libpq URL or key=value string) */
    int64_t max_parallel_runs; /* KX_MAX_PARALLEL_RUNS, 3: active runs per account */
    bool over_limit_reject;    /* KX_OVER_LIMIT: "queue" (default: the scheduler holds the
                                 * run queued) or "reject" (429 at creation) */
} gw_config;

kx_err gw_config_load(gw_config *cfg);
void gw_config_free(gw_config *cfg);

#endif
