/* terminal.h — the stream events the scheduler publishes for a run it reaped, printed like
 * Python's json.dumps:
 *   failed (terminal, lease_epoch 0):
 *     {"type": "status", "status": "failed", "message": "Agent run failed: <error>"}
 *   retried (not terminal, lease_epoch = the run's new epoch, so the gateway drops any later
 *   event of the dead attempt):
 *     {"type": "status", "status": "running", "message": "Agent run retried (attempt <n> of
 *      <max>): <error>"}
 * Pure; unit tested in tests/unit/test_scheduler_pure.c. */
#ifndef SCHED_TERMINAL_H
#define SCHED_TERMINAL_H

/* malloc'd payload (caller frees), NULL on allocation failure or an error that is not UTF-8. */
char *sched_terminal_payload(const char *error);
/* next_attempt: the attempt the retry will be (2 for the first retry). */
char *sched_retried_payload(const char *error, int next_attempt, int max_attempts);

#endif
