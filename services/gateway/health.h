/* health.h — is the gateway (and the suite behind it) healthy?
 *
 * gw_ready answers /readyz (on the API port and on KX_HEALTH_PORT): NATS connected, Postgres
 * reachable, not draining. GET /api/health (gw_route_health in gateway.h) checks Postgres, NATS
 * and asks every other service on kx.svc.health.<name>, all in parallel, each bounded by
 * KX_HEALTH_TIMEOUT_MS. */
#ifndef GW_HEALTH_H
#define GW_HEALTH_H

#include <stdbool.h>
#include <stddef.h>
#include "gateway.h"

/* Thread-safe; arg is the gw_app. Writes the reason into why when not ready. */
bool gw_ready(void *arg, char *why, size_t whylen);

#endif
