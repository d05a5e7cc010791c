/* outcome.h — what a tool call ended with, before it becomes a kx.v1.ToolResult, and the
 * mapping of the sandbox's SandboxExecResult to it for execute_command.
 *
 * The mapping keeps Kortix's output shapes (kortix-behaviour.md §12) so that the agent and
 * the frontend see what they saw before, plus stderr and exit_code:
 *   blocking, completed:  success = (exit_code == 0),
 *       {"output", "stderr", "exit_code", "cwd", "session_name", "completed": true}
 *   timed out (killed):   success = false, timed_out,
 *       {"output", "stderr", "cwd", "session_name", "completed": false, "timed_out": true},
 *       error deadline_exceeded "execute_command timed out after N s (process group killed)"
 *   non-blocking:         success = true,
 *       {"session_name", "cwd", "message": "Command sent to session '<s>'. ...",
 *        "completed": false}
 *   broker error:         success = false with the broker's error.
 * "truncated": true is added when the sandbox cut the output (KX_SANDBOX_MAX_OUTPUT).
 * JSON is printed like Python's json.dumps (kx_json_dumps_py).
 * Pure; unit tested in tests/unit/test_tool_executor_outcome.c. */
#ifndef TE_OUTCOME_H
#define TE_OUTCOME_H

#include <stdbool.h>
#include <jansson.h>
#include <stdint.h>
#include "kx/err.h"
#include "kx/pb.h"

typedef struct te_outcome {
    bool success;
    bool timed_out;
    char *output_json;   /* malloc'd, or NULL for none */
    char error_code[40]; /* "" = no error */
    char error_message[512];
} te_outcome;

void te_outcome_init(te_outcome *o);
/* A failure without output: code is kx_err_code(err). */
void te_outcome_error(te_outcome *o, kx_err err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Same with an explicit code string (both copied). */
void te_outcome_error_code(te_outcome *o, const char *code, const char *message);
void te_outcome_free(te_outcome *o);
/* A success whose output is obj as JSON (taken; NULL counts as out of memory), or, when the
 * JSON cannot be made, a failure naming tool. o was te_outcome_init'ed. */
void te_outcome_json(te_outcome *o, json_t *obj, const char *tool);

/* Maps a broker result for execute_command. timeout_s is the tool deadline in seconds, for
 * the "timed out after N s" message. */
void te_outcome_from_exec(te_outcome *o, const Kx__V1__SandboxExecResult *r, bool blocking,
                          int64_t timeout_s);

#endif
