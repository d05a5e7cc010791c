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
    char *api_key_secret; /* KX_API_KEY_SECRET, default KX_JWT_SECRET: the HMAC key of API
                             key secrets (api_keys.secret_hash); changing it voids every key */
    size_t api_key_secret_len;
    int http_threads;          /* KX_HTTP_THREADS, 4 */
    int db_pool_size;          /* KX_DB_POOL_SIZE, 8 */
    size_t max_body_bytes;     /* KX_MAX_BODY_BYTES, 1 MiB */
    size_t max_prompt_bytes;   /* KX_MAX_PROMPT_BYTES, 256 KiB: a prompt or message's text */
    int64_t sse_ping_ms;       /* KX_SSE_PING_S * 1000, 15 s */
    int64_t health_timeout_ms; /* KX_HEALTH_TIMEOUT_MS, 1000 */
    int64_t bus_timeout_ms;    /* KX_BUS_TIMEOUT_MS, 5000: deadline of the gateway's publishes */
    int64_t db_wait_ms; /* longest wait for a pooled connection (KX_DB_STATEMENT_TIMEOUT_MS) */
    char *conninfo;     /* KX_DATABASE_URL (libpq URL or key=value string) */
    int64_t max_parallel_runs; /* KX_MAX_PARALLEL_RUNS, 3: active runs per account */
    bool over_limit_reject;    /* KX_OVER_LIMIT: "queue" (default: the scheduler holds the
                                 * run queued) or "reject" (429 at creation) */
    char *jwt_audience;        /* KX_JWT_AUDIENCE, "authenticated"; "" = aud not checked */
    char **cors_origins;      /* KX_CORS_ORIGINS, comma-separated; NULL-terminated, may be empty */
    char *ops_token;          /* KX_OPS_TOKEN: ops routes on the API port need it; NULL = 404 */
    int max_conns;            /* KX_HTTP_MAX_CONNS, 4096: connections at once, all clients */
    int max_conns_per_ip;     /* KX_HTTP_MAX_CONNS_PER_IP, 512 */
    int conn_timeout_s;       /* KX_HTTP_TIMEOUT_S, 10: a connection idle this long is closed */
    int64_t held_total;       /* KX_HTTP_HELD_MB, 2048: large answers held until read (held.h) */
    int64_t held_per_account; /* KX_HTTP_HELD_ACCOUNT_MB, 256: the same per account */
    int64_t download_max;     /* KX_SANDBOX_DOWNLOAD_MAX_MB, 1024: a larger file is a 413 */
    int downloads_per_account;  /* KX_SANDBOX_DOWNLOADS_PER_ACCOUNT, 4: in flight (download.h) */
    int64_t sandbox_get_ms;     /* KX_SANDBOX_GET_TIMEOUT_MS, 10000: a file op's bus request */
    int64_t sandbox_create_ms;  /* KX_SANDBOX_CREATE_TIMEOUT_MS, 60000: ensure-active */
    int64_t sandbox_preview_ms; /* KX_SANDBOX_PREVIEW_TIMEOUT_MS, 10000: a preview check */
    int64_t upload_file_max;    /* KX_INITIATE_FILE_MAX_BYTES, 10 MiB: one initiate files[] */
    int64_t upload_total_max;   /* KX_INITIATE_FILES_MAX_BYTES, 50 MiB: all of them */
    int64_t purge_interval_ms;  /* KX_PURGE_INTERVAL_MS, 60000: the purger looks anyway */
    size_t conn_memory;      /* KX_HTTP_CONN_MEMORY, 96 KiB: libmicrohttpd's per-connection pool */
    size_t max_url_bytes;    /* KX_HTTP_MAX_URL_BYTES, 8192: longer path+query: 414 */
    size_t max_header_bytes; /* KX_HTTP_MAX_HEADER_BYTES, 16384: larger header set: 431 */
    int max_query_args;      /* KX_HTTP_MAX_QUERY_ARGS, 64: more: 400 */
    int http_workers;        /* KX_HTTP_WORKERS, 32: threads that run the handlers */
    int queue_max;           /* KX_HTTP_QUEUE_MAX, 1024: requests waiting for a worker */
    int64_t queue_wait_ms;   /* KX_HTTP_QUEUE_WAIT_MS, 10000: longest wait for a worker (503) */
    int sse_max_streams;     /* KX_SSE_MAX_STREAMS, 2000: open streams, all accounts */
    int sse_max_per_account; /* KX_SSE_MAX_STREAMS_PER_ACCOUNT, 100 */
    size_t sse_buffer_bytes; /* KX_SSE_BUFFER_BYTES, 1 MiB: a client this far behind is cut */
    int sse_writers;         /* KX_SSE_WRITERS, 2: threads that write the SSE sockets */
    int64_t sse_feed_linger_ms; /* KX_SSE_FEED_LINGER_MS, 10000: a run's shared subscription
                                 * is kept this long after its last stream closed */
    int64_t run_cache_ms;       /* KX_RUN_CACHE_MS, 100: longest age of a cached GET of a run
                                 * (run_cache.h); 0 turns the cache off */
    int auth_cache_slots;       /* KX_AUTH_CACHE_SLOTS, 4096: verified tokens kept; 0: off */
} gw_config;

kx_err gw_config_load(gw_config *cfg);
void gw_config_free(gw_config *cfg);

#endif
