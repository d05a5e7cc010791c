/* sched_config.c — the scheduler's settings (docs/operations.md):
 *   KX_DATABASE_URL        Postgres
 *   KX_LEASE_TTL_MS        lease length granted per heartbeat (10 000)
 *   KX_REAPER_INTERVAL_MS  how often expired leases and wall times are reaped (1000)
 *   KX_RUN_WALL_TIME_S     max wall time of a run, counted from its claim (3600)
 *   KX_RUN_MAX_ATTEMPTS    a run whose runner died is queued again while attempt < this (2)
 *   KX_MAX_PARALLEL_RUNS   active (running or dispatched) runs per account (3)
 *   KX_SWEEP_INTERVAL_MS   how often never-dispatched queued runs are re-dispatched (5000)
 *   KX_BUS_TIMEOUT_MS      longest wait for a JetStream publish ack (5000)
 *   KX_TRIGGER_POLL_MS     how often due scheduled-run triggers are looked for (1000)
 *   KX_SCHED_DB_CONNS      database threads, one connection each (4) */
#include "sched.h"

#include <stdio.h>
#include <string.h>

#include "kx/config.h"
#include "kx/log.h"

kx_err sched_config_load(sched_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    kx_err err = KX_OK;
    const char *url = kx_env_str("KX_DATABASE_URL", KX_DEFAULT_DATABASE_URL);
    if (snprintf(cfg->database_url, sizeof cfg->database_url, "%s", url) >=
        (int)sizeof cfg->database_url) {
        kx_error("config: KX_DATABASE_URL is too long (at most %zu bytes)",
                 sizeof cfg->database_url - 1);
        err = KX_ERR_INVALID;
    }
    if (kx_env_int("KX_LEASE_TTL_MS", 10000, 100, 3600000, &cfg->lease_ttl_ms) != KX_OK)
        err = KX_ERR_INVALID;
    if (kx_env_int("KX_REAPER_INTERVAL_MS", 1000, 10, 3600000, &cfg->reaper_interval_ms) != KX_OK)
        err = KX_ERR_INVALID;
    if (kx_env_int("KX_RUN_WALL_TIME_S", 3600, 1, 7 * 86400, &cfg->wall_time_s) != KX_OK)
        err = KX_ERR_INVALID;
    if (kx_env_int("KX_SWEEP_INTERVAL_MS", 5000, 10, 3600000, &cfg->sweep_interval_ms) != KX_OK)
        err = KX_ERR_INVALID;
    if (kx_env_int("KX_BUS_TIMEOUT_MS", 5000, 10, 600000, &cfg->bus_timeout_ms) != KX_OK)
        err = KX_ERR_INVALID;
    if (kx_env_int("KX_RUN_MAX_ATTEMPTS", 2, 1, 100, &cfg->max_attempts) != KX_OK)
        err = KX_ERR_INVALID;
    if (kx_env_int("KX_MAX_PARALLEL_RUNS", 3, 1, 1000000, &cfg->max_parallel_runs) != KX_OK)
        err = KX_ERR_INVALID;
    if (kx_env_int("KX_TRIGGER_POLL_MS", 1000, 10, 600000, &cfg->trigger_poll_ms) != KX_OK)
        err = KX_ERR_INVALID;
    if (kx_env_int("KX_SCHED_DB_CONNS", 4, 1, 64, &cfg->db_conns) != KX_OK)
        err = KX_ERR_INVALID;
    return err;
}
