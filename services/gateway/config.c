/* config.c — reads the gateway's environment variables into a gw_config.
 *
 * Everything the gateway can be told lives here, so a newcomer finds every knob in one place.
 * The getters of kx/config.h log which variable was wrong; this file only adds the rules that
 * are the gateway's own (the JWT secret is mandatory). */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "kx/config.h"
#include "kx/log.h"

static char *dup_or_null(const char *s)
{
    return s == NULL ? NULL : strdup(s);
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
    }

    if (err == KX_OK &&
        (cfg->bind_addr == NULL || cfg->conninfo == NULL || cfg->jwt_secret == NULL))
        err = KX_ERR_NOMEM;
    if (err != KX_OK)
        gw_config_free(cfg);
    return err;
}

void gw_config_free(gw_config *cfg)
{
    free(cfg->bind_addr);
    free(cfg->conninfo);
    if (cfg->jwt_secret != NULL) {
        memset(cfg->jwt_secret, 0, cfg->jwt_secret_len);
        free(cfg->jwt_secret);
    }
    memset(cfg, 0, sizeof *cfg);
}
