/* heartbeat.h — the runner's lease, kept alive from a thread of its own.
 *
 * Every KX_HEARTBEAT_MS one kx.v1.RunnerHeartbeat request on kx.run.hb: the runner's instance
 * id, its free capacity and the number of runs it holds — the same few bytes whether it holds
 * one run or 100 000. The scheduler renews the runner's one lease row, which every run it
 * holds points to, and answers with the leases this runner lost since it last asked (stopped,
 * reaped, handed back); those runs are dropped on the loop at once (no more writes, events or
 * tool calls), instead of at their next fenced write.
 *
 * Why a thread: the loop never waits for Postgres (rdb.h), but it can still be busy for a while
 * (thousands of runs becoming ready at once, a burst of streams); heartbeats must keep flowing
 * then, or the scheduler would take a healthy runner for dead and reap its runs. The thread touches nothing of the
 * loop's: it reads thread-safe counters (runner_free_slots, runner->held), owns its own state
 * (the "revoked since" watermark), uses the thread-safe bus, and posts revocations to the
 * loop with kx_loop_post.
 *
 * A loop timer at the same interval refreshes the /readyz view of Postgres with a probe on a
 * database thread (rdb_probe) when no run's work has told it lately. */
#ifndef RUNNER_HEARTBEAT_H
#define RUNNER_HEARTBEAT_H

#include "kx/err.h"
#include "runner.h"

typedef struct heartbeat heartbeat;

kx_err heartbeat_start(runner *r, heartbeat **out);
/* Stops and joins the thread. Loop thread (or after the loop stopped). NULL is a no-op. */
void heartbeat_free(heartbeat *h);

#endif
