/* heartbeat.h — every KX_HEARTBEAT_MS, one kx.v1.RunnerHeartbeat on kx.run.hb listing every
 * (run_id, lease_epoch) this instance holds, plus how many more runs it would take. The
 * scheduler extends the leases whose epoch still matches; a runner that stops heartbeating
 * loses its runs to the reaper. A loop timer, re-armed after each beat. */
#ifndef RUNNER_HEARTBEAT_H
#define RUNNER_HEARTBEAT_H

#include "kx/err.h"
#include "runner.h"

typedef struct heartbeat heartbeat;

kx_err heartbeat_start(runner *r, heartbeat **out);
/* Loop thread (or after the loop stopped). NULL is a no-op. */
void heartbeat_free(heartbeat *h);

#endif
