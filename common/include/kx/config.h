/* kx/config.h — configuration from environment variables (12-factor).
 *
 * Each service keeps its settings in a struct filled once at start from these getters; that
 * struct is the only global mutable state a service has. Getters validate and, on a bad value,
 * log an error that names the variable and the accepted range, and return KX_ERR_INVALID:
 * a service refuses to start on bad configuration rather than guess. */
#ifndef KX_CONFIG_H
#define KX_CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include "kx/err.h"

/* The variable's value, or def when unset or empty. The pointer is the environment's: valid
 * until the environment changes; copy it if you keep it. */
const char *kx_env_str(const char *name, const char *def);
kx_err kx_env_int(const char *name, int64_t def, int64_t min, int64_t max, int64_t *out);
/* The decimal integer v in [min, max] (command-line arguments, numbers read back from tools);
 * anything else (empty, trailing bytes, out of range) logs "what=\"v\" is not valid" and
 * returns KX_ERR_INVALID with *out untouched. */
kx_err kx_parse_int(const char *what, const char *v, int64_t min, int64_t max, int64_t *out);
/* Accepts 1/0, true/false, yes/no, on/off (any case). */
kx_err kx_env_bool(const char *name, bool def, bool *out);
/* A TCP port 0..65535; 0 means "any free port" (tests use it for KX_HEALTH_PORT). */
kx_err kx_env_port(const char *name, uint16_t def, uint16_t *out);

/* Common settings every service reads. */
#define KX_DEFAULT_NATS_URL "nats://127.0.0.1:4222"
#define KX_DEFAULT_DATABASE_URL "postgresql://postgres@127.0.0.1:5432/kortix"

#endif
