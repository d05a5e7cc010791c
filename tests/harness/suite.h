/* tests/harness/suite.h — the start and end every integration suite with its own nats-server
 * (and no whole stack, stack.h) repeats: a temp dir and a nats-server in it; at the end the
 * client's bus closed, the suite's services and fakes stopped, the servers stopped, and a
 * check that nothing the suite started still runs in its temp dir.
 *
 * Ownership: *tmp is malloc'd by kx_th_suite_open and freed by kx_th_suite_close, which also
 * closes the bus it is given. Not thread-safe (group setup and teardown). */
#ifndef KX_TEST_SUITE_H
#define KX_TEST_SUITE_H

#include <stddef.h>
#include <sys/types.h>

#include "harness.h"
#include "kx/bus.h"

/* nats_Open, a temp dir /tmp/<prefix>-XXXXXX (*tmp) and a nats-server in it (*nats, JetStream
 * on). KX_OK, or an error with what was made already left for kx_th_suite_close. */
kx_err kx_th_suite_open(const char *prefix, char **tmp, kx_th_nats *nats);

/* Closes bus (NULL: none), stops pids[0..n) in that order (0 = not running, skipped), then
 * nats and pg (NULL: none), counts the processes still using tmp (each named on stdout),
 * removes tmp and frees it. Returns that count: 0 when the suite left nothing running. */
int kx_th_suite_close(kx_bus *bus, const pid_t *pids, size_t n, kx_th_nats *nats, kx_th_pg *pg,
                      char *tmp);

#endif
