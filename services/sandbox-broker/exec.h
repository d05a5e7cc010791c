/* exec.h — one command running in a project's sandbox (sandbox.h), in a PID namespace of its
 * own so that killing it kills everything it started.
 *
 * An exec is tracked by the broker from spawn until its process is reaped. A blocking exec
 * also holds the caller's request until it replies, which happens when the command has exited
 * and its pipes reached EOF (or SB_EOF_GRACE_MS after the exit), or at the kill deadline with
 * the output so far. A non-blocking exec replies at once and writes its output to the session
 * log. All functions run on the loop thread. */
#ifndef SB_EXEC_H
#define SB_EXEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "broker.h"
#include "kx/pb.h"
#include "sandbox_path.h"

/* A request that handlers.c has validated. Strings are borrowed for the sb_exec_start call. */
typedef struct sb_exec_spec {
    const char *exec_id;      /* non-empty, <= 128 bytes */
    const char *project_id;   /* a valid UUID */
    const char *command;      /* non-empty */
    const char *folder;       /* normalized (sb_folder_normalize), "" = none */
    const char *session_name; /* valid (sb_session_name_valid) */
    bool blocking;
    kx_deadline kill_at;  /* absolute unix ms (background: BG_MAX_S) */
    size_t max_output;    /* bytes kept per stream */
    const char *trace_id; /* for logs; may be "" */
    const char *account;  /* the request's Kx-Account ("" when none): sb_sandbox_ensure */
} sb_exec_spec;

/* Starts the command. On KX_OK the exec owns req (it replies, then destroys it); for a
 * non-blocking exec the reply has already been sent. On error nothing was started, req is
 * still the caller's, and why says what went wrong (for the error reply). */
kx_err sb_exec_start(sb_broker *b, const sb_exec_spec *spec, natsMsg *req, char *why,
                     size_t whylen);

/* The tracked exec with that id, or NULL. */
sb_exec *sb_exec_find(sb_broker *b, const char *exec_id);
const char *sb_exec_project(const sb_exec *e);
/* The next tracked exec (for iterating b->execs while execs may be freed). */
sb_exec *sb_exec_next(const sb_exec *e);
/* SIGKILLs the exec's whole PID namespace (everything it started) if it has not exited yet.
 * True when a kill was sent. A blocking exec then replies as killed (term_signal 9). */
bool sb_exec_kill(sb_exec *e);
/* kx.sandbox.list / output / terminate (sessions.c). */
const char *sb_exec_session(const sb_exec *e);
bool sb_exec_running(const sb_exec *e);
/* Fills out with pointers into e (valid while e is). */
void sb_exec_describe(sb_exec *e, Kx__V1__SandboxCommand *out);

/* The sandbox an exec runs in, and the exec with that sandbox run id (or NULL). */
sb_sandbox *sb_exec_sandbox(const sb_exec *e);
sb_exec *sb_exec_find_run(sb_broker *b, const sb_sandbox *s, uint64_t run_id);
/* sandbox.c: the command's main process ended with wait status `status` (or could not start:
 * status -1 and why). The exec replies when its pipes are done, then is freed. */
void sb_exec_on_exit(sb_exec *e, int status, const char *why);

/* Drain: kills the group and, if the caller is still waiting, replies error unavailable with
 * message. The exec stays tracked until its process is reaped. */
void sb_exec_abort(sb_exec *e, const char *message);

#endif
