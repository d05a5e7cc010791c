/* provider.c — KX_SANDBOX_PROVIDER (see provider.h). */
#include "provider.h"

#include <string.h>

#include "kx/config.h"
#include "kx/log.h"

kx_err sb_provider_load(sb_provider *out)
{
    const char *v = kx_env_str("KX_SANDBOX_PROVIDER", "local");
    if (v[0] == '\0' || strcmp(v, "local") == 0) {
        *out = SB_PROVIDER_LOCAL;
        return KX_OK;
    }
    if (strcmp(v, "daytona") == 0) {
        *out = SB_PROVIDER_DAYTONA;
        return KX_OK;
    }
    kx_error("config: KX_SANDBOX_PROVIDER=\"%.64s\" is not valid: expected local or daytona", v);
    return KX_ERR_INVALID;
}
