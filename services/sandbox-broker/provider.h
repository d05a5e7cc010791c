/* provider.h — which provider runs the sandboxes (KX_SANDBOX_PROVIDER, docs/operations.md):
 *   local    bubblewrap jails on this host (sandbox.c and the rest of the broker; the default)
 *   daytona  sandboxes of a Daytona-compatible API (daytona.h)
 * Both answer the same kx.sandbox.* subjects (docs/subjects.md); main.c starts one of them. */
#ifndef SB_PROVIDER_H
#define SB_PROVIDER_H

#include "kx/err.h"

typedef enum sb_provider {
    SB_PROVIDER_LOCAL,
    SB_PROVIDER_DAYTONA
} sb_provider;

/* Reads KX_SANDBOX_PROVIDER; KX_ERR_INVALID (logged, naming the value) for an unknown one. */
kx_err sb_provider_load(sb_provider *out);

#endif
