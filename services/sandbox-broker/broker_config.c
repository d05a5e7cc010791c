/* broker_config.c — the sandbox-broker's own settings (docs/operations.md):
 *   KX_SANDBOX_ROOT        where project workspaces live; default $KX_DATA_DIR/sandboxes when
 *                          KX_DATA_DIR is set, else /tmp/kx-sandboxes. Must be absolute.
 *   KX_SANDBOX_MAX_OUTPUT  bytes of stdout and of stderr kept per command (default 1 MiB). */
#include "broker.h"

#include <stdio.h>
#include <string.h>

#include "kx/config.h"
#include "kx/log.h"

kx_err sb_config_load(sb_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    const char *root = kx_env_str("KX_SANDBOX_ROOT", NULL);
    const char *data = kx_env_str("KX_DATA_DIR", NULL);
    int n;
    if (root != NULL)
        n = snprintf(cfg->root, sizeof cfg->root, "%s", root);
    else if (data != NULL)
        n = snprintf(cfg->root, sizeof cfg->root, "%s/sandboxes", data);
    else
        n = snprintf(cfg->root, sizeof cfg->root, "/tmp/kx-sandboxes");
    if (n < 0 || (size_t)n >= sizeof cfg->root) {
        kx_error("config: KX_SANDBOX_ROOT (or KX_DATA_DIR) is too long: at most %zu bytes",
                 sizeof cfg->root - 32);
        return KX_ERR_INVALID;
    }
    if (cfg->root[0] != '/') {
        kx_error("config: KX_SANDBOX_ROOT=\"%s\" is not valid: expected an absolute path",
                 cfg->root);
        return KX_ERR_INVALID;
    }
    /* No trailing slashes, so paths built from it have single separators. */
    for (size_t len = strlen(cfg->root); len > 1 && cfg->root[len - 1] == '/'; len--)
        cfg->root[len - 1] = '\0';

    return kx_env_int("KX_SANDBOX_MAX_OUTPUT", SB_DEFAULT_MAX_OUTPUT, 1024,
                      (int64_t)256 * 1024 * 1024, &cfg->max_output);
}
