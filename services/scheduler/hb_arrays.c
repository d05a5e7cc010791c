/* hb_arrays.c — Postgres array literals from a heartbeat (see hb_arrays.h). */
#include "hb_arrays.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kx/uuid.h"

#define EPOCH_MAX_CHARS 21   /* INT64_MAX has 19 digits; plus ',' and slack */

kx_err sched_hb_arrays(const Kx__V1__RunnerHeartbeat *hb, char **ids, char **epochs, size_t *n,
                       size_t *skipped)
{
    *ids = *epochs = NULL;
    *n = *skipped = 0;
    size_t count = hb->n_runs;
    /* Sizes: "{" + count * (36 + ",") + "}" + NUL, and the same with epochs. */
    char *a = malloc(count * (KX_UUID_LEN + 1) + 3);
    char *b = malloc(count * (EPOCH_MAX_CHARS + 1) + 3);
    if (a == NULL || b == NULL) {
        free(a);
        free(b);
        return KX_ERR_NOMEM;
    }
    size_t la = 0, lb = 0;
    a[la++] = '{';
    b[lb++] = '{';
    for (size_t i = 0; i < count; i++) {
        const Kx__V1__RunLease *l = hb->runs[i];
        if (l == NULL || !kx_uuid_valid(l->run_id) || l->lease_epoch < 0) {
            (*skipped)++;
            continue;
        }
        if (*n > 0) {
            a[la++] = ',';
            b[lb++] = ',';
        }
        memcpy(a + la, l->run_id, KX_UUID_LEN);
        la += KX_UUID_LEN;
        lb += (size_t)snprintf(b + lb, EPOCH_MAX_CHARS + 1, "%lld", (long long)l->lease_epoch);
        (*n)++;
    }
    a[la++] = '}';
    a[la] = '\0';
    b[lb++] = '}';
    b[lb] = '\0';
    *ids = a;
    *epochs = b;
    return KX_OK;
}
