/* hb_arrays.h — the two array parameters of the lease-extension UPDATE, built from a
 * kx.v1.RunnerHeartbeat: '{<uuid>,<uuid>,...}' and '{<epoch>,<epoch>,...}' (Postgres array
 * literals). Only validated values go in: run ids must be UUIDs (kx_uuid_valid, so they hold
 * nothing but hex digits and dashes) and epochs non-negative integers printed with %lld, so
 * nothing from the message can change the literal's structure. Invalid entries are skipped
 * and counted. Pure; unit tested in tests/unit/test_scheduler_pure.c. */
#ifndef SCHED_HB_ARRAYS_H
#define SCHED_HB_ARRAYS_H

#include <stddef.h>
#include "kx/err.h"
#include "kx/pb.h"

/* On KX_OK *ids and *epochs are malloc'd (caller frees), *n entries went in (0 gives "{}"),
 * *skipped were left out. KX_ERR_NOMEM otherwise (nothing to free). */
kx_err sched_hb_arrays(const Kx__V1__RunnerHeartbeat *hb, char **ids, char **epochs, size_t *n,
                       size_t *skipped);

#endif
