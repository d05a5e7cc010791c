/* te_config.c — the tool-executor's own settings (docs/operations.md):
 *   KX_TOOL_TIMEOUT_S          general tool deadline (default 120 s)
 *   KX_SANDBOX_TOOL_TIMEOUT_S  deadline of sandbox tools such as execute_command (180 s)
 *   KX_TOOL_STOP_MEMORY_S      how long a run's STOP (and newest epoch) is remembered (3600 s)
 *   KX_TOOL_STOP_MEMORY_RUNS   at most this many runs remembered (65536; oldest dropped)
 *   KX_TOOL_BREAKER_FAILURES   failures in a row that open a dependency's breaker (5)
 *   KX_TOOL_BREAKER_OPEN_MS    how long it stays open before one probe (60000) */
#include "executor.h"

#include <string.h>

#include "kx/config.h"

kx_err te_config_load(te_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    kx_err err = KX_OK;
    if (kx_env_int("KX_TOOL_TIMEOUT_S", 120, 1, 86400, &cfg->tool_timeout_s) != KX_OK)
        err = KX_ERR_INVALID;
    if (kx_env_int("KX_SANDBOX_TOOL_TIMEOUT_S", 180, 1, 86400, &cfg->sandbox_tool_timeout_s) !=
        KX_OK)
        err = KX_ERR_INVALID;
    if (kx_env_int("KX_TOOL_STOP_MEMORY_S", 3600, 1, 7 * 86400, &cfg->stop_memory_s) != KX_OK)
        err = KX_ERR_INVALID;
    if (kx_env_int("KX_TOOL_STOP_MEMORY_RUNS", 65536, 16, 1 << 24, &cfg->stop_memory_runs) !=
        KX_OK)
        err = KX_ERR_INVALID;
    if (kx_env_int("KX_TOOL_BREAKER_FAILURES", 5, 1, 1000, &cfg->breaker_failures) != KX_OK)
        err = KX_ERR_INVALID;
    if (kx_env_int("KX_TOOL_BREAKER_OPEN_MS", 60000, 100, 86400000, &cfg->breaker_open_ms) !=
        KX_OK)
        err = KX_ERR_INVALID;
    return err;
}
