/* session_wrap.h — named command sessions keep their working directory and environment between
 * commands, like Kortix's tmux sessions (`cd dir` or `export X=1` in one command of a session
 * is seen by the next command of that session, and by no other session or project).
 *
 * The state lives inside the sandbox, in the project's own workspace, written and read by the
 * sandbox's own shell — the broker never interprets it, so the jail model is untouched:
 *     /workspace/.kx-session/<session>.env   `export -p` at the end of the session's last command
 *     /workspace/.kx-session/<session>.cwd   its working directory then
 * Every command runs as /bin/sh -c <the script sb_session_wrap builds>: source the .env, cd to
 * the request's folder if it names one, else to the saved directory (else /workspace), set an
 * EXIT trap that writes both to temporary files named after the exec and marks them complete
 * (shell builtins only: no process), then `eval` the command; when the broker sees the command
 * exit it renames complete ones into place (sb_session_commit: atomic, two renameat calls)
 * (so `cd` and `export` act on the shell whose state is saved; a save that fails — the
 * workspace over its disk limit — leaves no mark: its temporary files are removed and the old
 * state stays). The command's exit status is
 * kept (an EXIT trap does not change it). Not kept: unexported variables, functions, aliases,
 * and the state of a command killed (deadline, terminate) or that replaced the shell (`exec`)
 * or set its own EXIT trap.
 *
 * Pure (no I/O) except sb_session_cwd_read; unit tested (tests/unit/test_sandbox_broker_session.c). */
#ifndef SB_SESSION_WRAP_H
#define SB_SESSION_WRAP_H

#include <stddef.h>
#include "kx/err.h"

#define SB_SESSION_STATE_DIR ".kx-session" /* in /workspace */

/* The script for `command` in `session` (valid: sb_session_name_valid) started in `folder`
 * (normalized, "" = the session's directory); `token` (the exec id: unique among running
 * commands; characters outside [A-Za-z0-9_-] become '_') names its temporary files.
 * malloc'd; NULL when out of memory. */
char *sb_session_wrap(const char *session, const char *folder, const char *command,
                      const char *token);

/* The exec id as it names the temporary files: [A-Za-z0-9_-], others become '_', at most 64. */
void sb_session_token(const char *exec_id, char *out, size_t outlen);

/* After the exec's command exited: its saved state, if the shell marked it complete, renamed
 * into place in /workspace/.kx-session (opened beneath ws_fd without following links); its
 * temporary files removed either way. Loop thread; a few metadata calls. */
void sb_session_commit(int ws_fd, const char *session, const char *exec_id);

/* The session's saved directory ("/workspace/..."), read beneath the workspace ws_fd without
 * following a link, at most outlen − 1 bytes, repaired to UTF-8; KX_ERR_NOT_FOUND when the
 * session has none (or it is not a path). For the reply's `cwd`. */
kx_err sb_session_cwd_read(int ws_fd, const char *session, char *out, size_t outlen);

#endif
