/* sandbox_path.h — where a project's sandbox lives on disk, and validation of the names that
 * come from outside (folder, session name) before they are turned into paths.
 *
 * Layout under the sandbox root (KX_SANDBOX_ROOT):
 *     <root>/<project_id>/workspace               the command's HOME and default cwd
 *     <root>/<project_id>/workspace/<folder>      cwd when the request names a folder
 *     <root>/<project_id>/.kx/sessions/<s>.log    output of non-blocking commands
 * The sandbox-visible path of the workspace is "/workspace" (what Kortix's Daytona sandbox
 * used), so replies say cwd "/workspace/<folder>".
 *
 * Everything here except sb_mkdir_p (and the getrandom of sb_exec_request_check) is pure (no
 * I/O) and unit tested (tests/unit/test_sandbox_broker_path.c). Output buffers are
 * caller-owned. */
#ifndef SB_SANDBOX_PATH_H
#define SB_SANDBOX_PATH_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include "kx/err.h"
#include "kx/pb.h"

#define SB_EXEC_ID_MAX 128 /* longest exec_id accepted */
#define SB_SESSION_MAX 64  /* session names: [A-Za-z0-9_.-]{1,64} */
#define SB_FOLDER_MAX 1024 /* longest folder accepted (after normalization) */
#define SB_VISIBLE_ROOT "/workspace"

/* Normalizes a folder given by the caller into a relative path with no empty, "." or ".."
 * components and no leading or trailing slash ("" = the workspace itself).
 * Accepted: "", "src", "./src/", "a//b", and the sandbox-visible forms "/workspace" and
 * "/workspace/src" (Kortix models see that path in replies and pass it back).
 * Refused (KX_ERR_INVALID, with a sentence naming the folder in why): any ".." component, any
 * other absolute path, control characters, and results longer than SB_FOLDER_MAX. */
kx_err sb_folder_normalize(const char *folder, char *out, size_t outlen, char *why, size_t whylen);
/* The same for any path beneath the workspace (the file API's): `what` names it in why
 * ("path 'x' must not contain '..'"). */
kx_err sb_path_normalize(const char *what, const char *path, char *out, size_t outlen, char *why,
                         size_t whylen);

/* True when name matches [A-Za-z0-9_.-]{1,64}. */
bool sb_session_name_valid(const char *name);
/* "session_<8 lowercase hex>" built from the given 32 random bits. out >= 17 bytes. */
void sb_session_name_default(unsigned int random32, char *out, size_t outlen);

/* The checks every provider makes on a kx.sandbox.exec request, in this order: rq unpacked,
 * exec_id 1..SB_EXEC_ID_MAX bytes, project_id a UUID, a non-empty command, the folder
 * (sb_folder_normalize, into folder), the session name (valid, or a new default one made from
 * getrandom, into session), timeout_s and max_output_bytes not negative. KX_OK, or
 * KX_ERR_INVALID with a sentence naming what was wrong in why. rq may be NULL (refused). */
kx_err sb_exec_request_check(const Kx__V1__SandboxExecRequest *rq, char folder[SB_FOLDER_MAX + 1],
                             char session[SB_SESSION_MAX + 1], char *why, size_t whylen);

/* "<root>/<project_id lowercased>/workspace[/<folder>]" into out. folder is a normalized
 * folder ("" for none). KX_ERR_INVALID when it does not fit. */
kx_err sb_workspace_path(const char *root, const char *project_id, const char *folder, char *out,
                         size_t outlen);
/* "<root>/<project_id lowercased>/.kx/sessions" into out. */
kx_err sb_sessions_dir(const char *root, const char *project_id, char *out, size_t outlen);
/* The sandbox-visible cwd: "/workspace" or "/workspace/<folder>". */
kx_err sb_visible_cwd(const char *folder, char *out, size_t outlen);

/* mkdir -p with the given mode for every directory it creates (existing ones are left as
 * they are). KX_ERR_IO with errno preserved when a component cannot be created or is not a
 * directory. */
kx_err sb_mkdir_p(const char *path, mode_t mode);

#endif
