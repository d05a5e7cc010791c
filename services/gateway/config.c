/* config.c — reads the gateway's environment variables into a gw_config.
 *
 * Everything the gateway can be told lives here, so a newcomer finds every knob in one place.
 * The getters of kx/config.h log which variable was wrong; this file only adds the rules that
 * are the gateway's own (the JWT secret is mandatory). */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "kx/config.h"
#include "kx/jwt.h"
#include "initiate_files.h"
#include "kx/log.h"
#include "sandbox_routes.h"

static char *dup_or_null(const char *s)
{
    return s == NULL ? NULL : strdup(s);
}

/* "a, b,c" -> {"a", "b", "c", NULL} (blanks around items dropped, empty items skipped). */
static char **split_list(const char *s)
{
    size_t n = 1;
    for (const char *p = s; *p; p++)
        n += *p == ',';
    char **v = calloc(n + 1, sizeof *v);
    if (v == NULL)
        return NULL;
    size_t k = 0;
    const char *p = s;
    while (*p != '\0') {
        while (*p == ' ' || *p == '\t')
            p++;
        const char *end = strchr(p, ',');
        size_t len = end != NULL ? (size_t)(end - p) : strlen(p);
        size_t trimmed = len;
        while (trimmed > 0 &&
               (p[trimmed - 1] == ' ' || p[trimmed - 1] == '\t' || p[trimmed - 1] == '/'))
            trimmed--; /* "https://a.example/" is the origin "https://a.example" */
        if (trimmed > 0 && (v[k] = strndup(p, trimmed)) != NULL)
            k++;
        p += len;
        if (*p == ',')
            p++;
    }
    return v;
}

static void free_list(char **v)
{
    if (v == NULL)
        return;
    for (char **p = v; *p; p++)
        free(*p);
    free(v);
}

/* The limits of the HTTP edge (server.c, stream.c). */
static kx_err load_edge(gw_config *cfg)
{
    kx_err err = KX_OK;
    int64_t v = 0;
    if (kx_env_int("KX_HTTP_MAX_CONNS", 4096, 16, 1000000, &v) != KX_OK)
        err = KX_ERR_INVALID;
    cfg->max_conns = (int)v;
    if (kx_env_int("KX_HTTP_MAX_CONNS_PER_IP", 512, 1, 1000000, &v) != KX_OK)
        err = KX_ERR_INVALID;
    cfg->max_conns_per_ip = (int)v;
    if (kx_env_int("KX_HTTP_TIMEOUT_S", 10, 1, 3600, &v) != KX_OK)
        err = KX_ERR_INVALID;
    cfg->conn_timeout_s = (int)v;
    if (kx_env_int("KX_HTTP_CONN_MEMORY", 96 * 1024, 32 * 1024, 16 << 20, &v) != KX_OK)
        err = KX_ERR_INVALID;
    cfg->conn_memory = (size_t)v;
    if (kx_env_int("KX_HTTP_MAX_URL_BYTES", 8192, 256, 65536, &v) != KX_OK)
        err = KX_ERR_INVALID;
    cfg->max_url_bytes = (size_t)v;
    if (kx_env_int("KX_HTTP_MAX_HEADER_BYTES", 16384, 1024, 65536, &v) != KX_OK)
        err = KX_ERR_INVALID;
    cfg->max_header_bytes = (size_t)v;
    if (kx_env_int("KX_HTTP_MAX_QUERY_ARGS", 64, 1, 1024, &v) != KX_OK)
        err = KX_ERR_INVALID;
    cfg->max_query_args = (int)v;
    if (kx_env_int("KX_HTTP_WORKERS", 32, 1, 1024, &v) != KX_OK)
        err = KX_ERR_INVALID;
    cfg->http_workers = (int)v;
    if (kx_env_int("KX_HTTP_QUEUE_MAX", 1024, 1, 1000000, &v) != KX_OK)
        err = KX_ERR_INVALID;
    cfg->queue_max = (int)v;
    if (kx_env_int("KX_HTTP_QUEUE_WAIT_MS", 10000, 1, 600000, &cfg->queue_wait_ms) != KX_OK)
        err = KX_ERR_INVALID;
    if (kx_env_int("KX_SSE_MAX_STREAMS", 2000, 1, 1000000, &v) != KX_OK)
        err = KX_ERR_INVALID;
    cfg->sse_max_streams = (int)v;
    if (kx_env_int("KX_SSE_MAX_STREAMS_PER_ACCOUNT", 100, 1, 1000000, &v) != KX_OK)
        err = KX_ERR_INVALID;
    cfg->sse_max_per_account = (int)v;
    if (kx_env_int("KX_SSE_BUFFER_BYTES", 1 << 20, 64 * 1024, 64 << 20, &v) != KX_OK)
        err = KX_ERR_INVALID;
    cfg->sse_buffer_bytes = (size_t)v;
    if (kx_env_int("KX_SSE_WRITERS", 2, 1, 64, &v) != KX_OK)
        err = KX_ERR_INVALID;
    cfg->sse_writers = (int)v;
    if (kx_env_int("KX_SSE_FEED_LINGER_MS", 10000, 0, 3600000, &cfg->sse_feed_linger_ms) != KX_OK)
        err = KX_ERR_INVALID;
    if (kx_env_int("KX_RUN_CACHE_MS", 100, 0, 10000, &cfg->run_cache_ms) != KX_OK)
        err = KX_ERR_INVALID;
    if (kx_env_int("KX_AUTH_CACHE_SLOTS", 4096, 0, 1 << 20, &v) != KX_OK)
        err = KX_ERR_INVALID;
    cfg->auth_cache_slots = (int)v;
    if (kx_env_int("KX_HTTP_HELD_MB", 2048, 1, 1 << 20, &v) != KX_OK)
        err = KX_ERR_INVALID;
    cfg->held_total = v << 20;
    if (kx_env_int("KX_HTTP_HELD_ACCOUNT_MB", 256, 1, 1 << 20, &v) != KX_OK)
        err = KX_ERR_INVALID;
    cfg->held_per_account = v << 20;
    /* streamed (download.h): a bound on what one request may carry, not on memory */
    if (kx_env_int("KX_SANDBOX_DOWNLOAD_MAX_MB", 1024, 1, 1 << 20, &v) != KX_OK)
        err = KX_ERR_INVALID;
    cfg->download_max = v << 20;
    /* each download may hold a handler worker (its first READ) and a download worker (the
     * READs after) for up to KX_SANDBOX_GET_TIMEOUT_MS: one account takes at most this many */
    if (kx_env_int("KX_SANDBOX_DOWNLOADS_PER_ACCOUNT", 4, 1, 1024, &v) != KX_OK)
        err = KX_ERR_INVALID;
    cfg->downloads_per_account = (int)v;
    if (err == KX_OK && cfg->held_per_account > cfg->held_total) {
        kx_error("config: KX_HTTP_HELD_ACCOUNT_MB=%lld is larger than KX_HTTP_HELD_MB=%lld",
                 (long long)(cfg->held_per_account >> 20), (long long)(cfg->held_total >> 20));
        err = KX_ERR_INVALID;
    }
    /* The pool must hold the largest header set we accept plus libmicrohttpd's bookkeeping of
     * it (about 48 bytes per header or query argument) and the answer's headers, so that every
     * refusal is ours (JSON), never libmicrohttpd's own. */
    size_t need = 2 * (cfg->max_url_bytes + cfg->max_header_bytes) + 16 * 1024;
    if (err == KX_OK && cfg->conn_memory < need) {
        kx_error("config: KX_HTTP_CONN_MEMORY=%zu is too small for KX_HTTP_MAX_URL_BYTES + "
                 "KX_HTTP_MAX_HEADER_BYTES (needs at least %zu)",
                 cfg->conn_memory, need);
        err = KX_ERR_INVALID;
    }
    cfg->cors_origins = split_list(kx_env_str("KX_CORS_ORIGINS", ""));
    const char *ops = kx_env_str("KX_OPS_TOKEN", NULL);
    cfg->ops_token = ops != NULL && ops[0] != '\0' ? strdup(ops) : NULL;
    /* set and empty means "not checked" (kx_env_str would read it as unset: the default) */
    const char *aud = getenv("KX_JWT_AUDIENCE");
    cfg->jwt_audience = dup_or_null(aud != NULL ? aud : KX_JWT_DEFAULT_AUDIENCE);
    if (err == KX_OK && (cfg->cors_origins == NULL || cfg->jwt_audience == NULL))
        err = KX_ERR_NOMEM;
    return err;
}

kx_err gw_config_load(gw_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    int64_t v = 0;
    kx_err err = KX_OK;

    if (kx_env_port("KX_HTTP_PORT", 8000, &cfg->http_port) != KX_OK)
        err = KX_ERR_INVALID;
    if (kx_env_int("KX_HTTP_THREADS", 4, 1, 256, &v) != KX_OK)
        err = KX_ERR_INVALID;
    cfg->http_threads = (int)v;
    if (kx_env_int("KX_DB_POOL_SIZE", 8, 1, 1000, &v) != KX_OK)
        err = KX_ERR_INVALID;
    cfg->db_pool_size = (int)v;
    if (kx_env_int("KX_MAX_BODY_BYTES", 1048576, 1024, (int64_t)1 << 30, &v) != KX_OK)
        err = KX_ERR_INVALID;
    cfg->max_body_bytes = (size_t)v;
    /* What a run's events and LLM requests carry must fit NATS' 1 MB max_payload with room
     * for the rest of the message. */
    if (kx_env_int("KX_MAX_PROMPT_BYTES", 256 * 1024, 1, 768 * 1024, &v) != KX_OK)
        err = KX_ERR_INVALID;
    cfg->max_prompt_bytes = (size_t)v;
    if (kx_env_int("KX_SSE_PING_S", 15, 1, 3600, &v) != KX_OK)
        err = KX_ERR_INVALID;
    cfg->sse_ping_ms = v * 1000;
    if (kx_env_int("KX_HEALTH_TIMEOUT_MS", 1000, 1, 60000, &cfg->health_timeout_ms) != KX_OK)
        err = KX_ERR_INVALID;
    if (kx_env_int("KX_BUS_TIMEOUT_MS", 5000, 1, 600000, &cfg->bus_timeout_ms) != KX_OK)
        err = KX_ERR_INVALID;
    /* 0 means "no statement timeout" to kx/db.h; a request still waits at most 5 s for a
     * pooled connection then. */
    if (kx_env_int("KX_DB_STATEMENT_TIMEOUT_MS", 5000, 0, 24 * 3600 * 1000, &cfg->db_wait_ms) !=
        KX_OK)
        err = KX_ERR_INVALID;
    if (cfg->db_wait_ms == 0)
        cfg->db_wait_ms = 5000;

    if (kx_env_int("KX_MAX_PARALLEL_RUNS", 3, 1, 1000000, &cfg->max_parallel_runs) != KX_OK)
        err = KX_ERR_INVALID;
    const char *over = kx_env_str("KX_OVER_LIMIT", "queue");
    if (strcmp(over, "reject") == 0) {
        cfg->over_limit_reject = true;
    } else if (strcmp(over, "queue") != 0) {
        kx_error("config: KX_OVER_LIMIT must be \"queue\" or \"reject\", got \"%s\"", over);
        err = KX_ERR_INVALID;
    }

    if (load_edge(cfg) != KX_OK && err == KX_OK)
        err = KX_ERR_INVALID;
    if (kx_env_int("KX_SANDBOX_GET_TIMEOUT_MS", 10000, 100, 600000, &cfg->sandbox_get_ms) !=
            KX_OK ||
        kx_env_int("KX_SANDBOX_CREATE_TIMEOUT_MS", 60000, 100, 600000, &cfg->sandbox_create_ms) !=
            KX_OK ||
        kx_env_int("KX_SANDBOX_PREVIEW_TIMEOUT_MS", 10000, 100, 600000,
                   &cfg->sandbox_preview_ms) != KX_OK ||
        kx_env_int("KX_INITIATE_FILE_MAX_BYTES", 10 << 20, 1, (int64_t)1 << 32,
                   &cfg->upload_file_max) != KX_OK ||
        kx_env_int("KX_INITIATE_FILES_MAX_BYTES", 50 << 20, 1, (int64_t)1 << 34,
                   &cfg->upload_total_max) != KX_OK ||
        kx_env_int("KX_PURGE_INTERVAL_MS", 60000, 100, 3600000, &cfg->purge_interval_ms) != KX_OK)
        err = KX_ERR_INVALID;
    cfg->bind_addr = dup_or_null(kx_env_str("KX_BIND_ADDR", "127.0.0.1"));
    cfg->conninfo = dup_or_null(kx_env_str("KX_DATABASE_URL", KX_DEFAULT_DATABASE_URL));

    const char *secret = kx_env_str("KX_JWT_SECRET", NULL);
    if (secret == NULL) {
        kx_error("config: KX_JWT_SECRET is not set: the gateway needs the HS256 secret that "
                 "signs client tokens and will not start without it");
        err = KX_ERR_INVALID;
    } else {
        cfg->jwt_secret = strdup(secret);
        cfg->jwt_secret_len = strlen(secret);
        const char *ks = kx_env_str("KX_API_KEY_SECRET", NULL);
        if (ks == NULL || ks[0] == '\0')
            ks = secret;
        cfg->api_key_secret = strdup(ks);
        cfg->api_key_secret_len = strlen(ks);
    }

    if (err == KX_OK &&
        (cfg->bind_addr == NULL || cfg->conninfo == NULL || cfg->jwt_secret == NULL ||
         cfg->api_key_secret == NULL))
        err = KX_ERR_NOMEM;
    if (err != KX_OK)
        gw_config_free(cfg);
    return err;
}

void gw_config_free(gw_config *cfg)
{
    free(cfg->bind_addr);
    free(cfg->conninfo);
    free(cfg->jwt_audience);
    free(cfg->ops_token);
    free_list(cfg->cors_origins);
    if (cfg->jwt_secret != NULL) {
        memset(cfg->jwt_secret, 0, cfg->jwt_secret_len);
        free(cfg->jwt_secret);
    }
    if (cfg->api_key_secret != NULL) {
        memset(cfg->api_key_secret, 0, cfg->api_key_secret_len);
        free(cfg->api_key_secret);
    }
    memset(cfg, 0, sizeof *cfg);
}
