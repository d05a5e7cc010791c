/* terminal.h — the terminal stream event the scheduler publishes for a run it reaped:
 * kind STATUS, terminal, lease_epoch 0, payload printed like Python's json.dumps:
 *   {"type": "status", "status": "failed", "message": "Agent run failed: <error>"}
 * Pure; unit tested in tests/unit/test_scheduler_pure.c. */
#ifndef SCHED_TERMINAL_H
#define SCHED_TERMINAL_H

/* malloc'd payload (caller frees), NULL on allocation failure or an error that is not UTF-8. */
char *sched_terminal_payload(const char *error);

#endif
