/* tool_args.h — validating the arguments of a tool call before anything runs.
 *
 * arguments_json comes from a model (native tool calls) or from parsed XML (where every value
 * may arrive as a string), so the rules accept both forms where Kortix did:
 *   execute_command(command*, folder, session_name, blocking=false, timeout=60)
 *     command       required, a non-empty string
 *     folder        a string
 *     session_name  a string
 *     blocking      a boolean, or the strings "true"/"false" (any case)
 *     timeout       an integer 1..3600 (seconds), or a string holding one
 * null counts as "not given" for the optional arguments; unknown arguments are ignored.
 * Errors name the tool and the argument, e.g.
 *   "execute_command: 'command' is required and must be a non-empty string".
 *
 * Pure functions (no I/O), unit tested in tests/unit/test_tool_executor_args.c. */
#ifndef TE_TOOL_ARGS_H
#define TE_TOOL_ARGS_H

#include <stdbool.h>
#include <stddef.h>
#include "kx/err.h"

#define TE_EXEC_DEFAULT_TIMEOUT_S 60
#define TE_EXEC_MAX_TIMEOUT_S 3600

typedef struct te_exec_args {
    char *command;      /* malloc'd, non-empty */
    char *folder;       /* malloc'd, "" when not given */
    char *session_name; /* malloc'd, "" when not given (the broker picks one) */
    bool blocking;      /* default false, as in Kortix */
    int timeout_s;      /* default TE_EXEC_DEFAULT_TIMEOUT_S */
} te_exec_args;

/* Parses and validates. On KX_OK *out holds the arguments (free with te_exec_args_free); on
 * KX_ERR_INVALID why says which argument was wrong and *out is empty; KX_ERR_NOMEM is
 * possible. */
kx_err te_exec_args_parse(const char *arguments_json, te_exec_args *out, char *why, size_t whylen);
void te_exec_args_free(te_exec_args *a);

#endif
