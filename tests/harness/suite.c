/* tests/harness/suite.c — an integration suite's own temp dir and nats-server, and its end
 * (see suite.h). */
#include "suite.h"

#include <stdlib.h>

kx_err kx_th_suite_open(const char *prefix, char **tmp, kx_th_nats *nats)
{
    if (nats_Open(-1) != NATS_OK)
        return KX_ERR_INTERNAL;
    *tmp = kx_th_tmpdir(prefix);
    if (*tmp == NULL)
        return KX_ERR_IO;
    return kx_th_nats_start(*tmp, nats);
}

int kx_th_suite_close(kx_bus *bus, const pid_t *pids, size_t n, kx_th_nats *nats, kx_th_pg *pg,
                      char *tmp)
{
    if (bus != NULL)
        kx_bus_close(bus, 1000);
    for (size_t i = 0; i < n; i++) {
        if (pids[i] > 0)
            kx_th_kill(pids[i]);
    }
    kx_th_nats_stop(nats);
    if (pg != NULL)
        kx_th_pg_stop(pg);
    int left = tmp != NULL ? kx_th_procs_using(tmp) : 0;
    if (tmp != NULL)
        kx_th_rmrf(tmp);
    free(tmp);
    return left;
}
