/* config.c — typed, validated getters for environment variables.
 *
 * A bad value is never guessed around: the getter logs which variable was wrong and what it
 * accepts, and returns KX_ERR_INVALID (with *out set to the default) so the service can refuse
 * to start. Unset or empty variables give the default. */
#include "kx/config.h"

#include <errno.h>
#include <stdlib.h>
#include <strings.h>

#include "kx/log.h"

const char *kx_env_str(const char *name, const char *def)
{
    const char *v = getenv(name);
    return (v == NULL || v[0] == '\0') ? def : v;
}

kx_err kx_env_int(const char *name, int64_t def, int64_t min, int64_t max, int64_t *out)
{
    *out = def;
    const char *v = kx_env_str(name, NULL);
    if (v == NULL)
        return KX_OK;
    return kx_parse_int(name, v, min, max, out);
}

kx_err kx_parse_int(const char *what, const char *v, int64_t min, int64_t max, int64_t *out)
{
    char *end = NULL;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    if (errno != 0 || end == v || *end != '\0' || n < min || n > max) {
        kx_error("config: %s=\"%s\" is not valid: expected an integer in [%lld, %lld]", what, v,
                 (long long)min, (long long)max);
        return KX_ERR_INVALID;
    }
    *out = (int64_t)n;
    return KX_OK;
}

kx_err kx_env_bool(const char *name, bool def, bool *out)
{
    *out = def;
    const char *v = kx_env_str(name, NULL);
    if (v == NULL)
        return KX_OK;
    static const char *const yes[] = {"1", "true", "yes", "on"};
    static const char *const no[] = {"0", "false", "no", "off"};
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        if (strcasecmp(v, yes[i]) == 0) {
            *out = true;
            return KX_OK;
        }
        if (strcasecmp(v, no[i]) == 0) {
            *out = false;
            return KX_OK;
        }
    }
    kx_error("config: %s=\"%s\" is not valid: expected 1/0, true/false, yes/no or on/off", name,
             v);
    return KX_ERR_INVALID;
}

/* 0 is accepted and means "pick any free port" (tests run several services side by side). */
kx_err kx_env_port(const char *name, uint16_t def, uint16_t *out)
{
    *out = def;
    const char *v = kx_env_str(name, NULL);
    if (v == NULL)
        return KX_OK;
    char *end = NULL;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (errno != 0 || end == v || *end != '\0' || n < 0 || n > 65535) {
        kx_error("config: %s=\"%s\" is not valid: expected a TCP port in [0, 65535] "
                 "(0 = any free port)",
                 name, v);
        return KX_ERR_INVALID;
    }
    *out = (uint16_t)n;
    return KX_OK;
}
