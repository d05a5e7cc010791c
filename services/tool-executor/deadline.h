/* deadline.h — how long a tool call may take (docs/architecture.md, "Deadlines").
 *
 * A call arrives with the caller's deadline D (Kx-Deadline). The executor must answer before
 * D, so the tool itself gets
 *     T = min(D - TE_CALL_MARGIN_MS, now + tool limit, blocking ? now + timeout : -)
 * and the executor waits for the sandbox's answer until T + TE_BROKER_GRACE_MS (<= D - 50 ms):
 * the broker kills the command at T and answers with the output so far; if even that answer
 * does not come, the executor answers "timed out" itself.
 * Pure; unit tested in tests/unit/test_tool_executor_args.c. */
#ifndef TE_DEADLINE_H
#define TE_DEADLINE_H

#include <stdbool.h>
#include <stddef.h> /* kx/time.h uses size_t without including it */
#include <stdint.h>
#include "kx/time.h"

#define TE_CALL_MARGIN_MS 250
#define TE_BROKER_GRACE_MS 200

/* T as above. limit_s is the tool kind's limit (KX_SANDBOX_TOOL_TIMEOUT_S for sandbox
 * tools); timeout_s applies when blocking. May return a value <= now_ms: no time left. */
kx_deadline te_tool_deadline(kx_deadline call_deadline, int64_t now_ms, int64_t limit_s,
                             bool blocking, int timeout_s);

/* Whole seconds for messages ("timed out after N s"): ms rounded up, at least 1. */
int64_t te_seconds_for_message(int64_t ms);

#endif
