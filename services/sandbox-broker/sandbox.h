/* sandbox.h — one project's sandbox on this broker: a bubblewrap jail (kx/jail.h) whose PID 1
 * is kx-sandbox-init, started lazily on the project's first command and kept running between
 * commands (so a server started in the background is there for the next one).
 *
 * On the host a sandbox is:
 *   <root>/<project>/workspace   its /workspace, owned by the sandbox's own host uid, 0700
 *   <root>/.uids/<uid>           the uid given to a project (created O_EXCL: one owner)
 * The uid is KX_SANDBOX_UID_BASE + (a hash of the project id, probed linearly), so RLIMIT_NPROC
 * (counted per uid) is per sandbox: a fork bomb in one never starves another.
 *
 * Commands: sb_sandbox_run sends RUN with the output pipes; the sandbox calls
 * sb_exec_on_exit(e, status) when init reports EXITED (or when the sandbox dies: SIGKILL for
 * every command still running). All functions run on the loop thread.
 *
 * Ownership: the broker owns its sandboxes (b->sandboxes); a sandbox is freed when its jail
 * exits or at drain. */
#ifndef SB_SANDBOX_H
#define SB_SANDBOX_H

#include <stdbool.h>
#include <stdint.h>
#include "broker.h"

#define SB_PREVIEW_TOKENS 16 /* ports one sandbox may expose at once */

/* A port exposed with kx.sandbox.preview while the sandbox runs (preview.c). */
typedef struct sb_preview_token {
    int port; /* 0 = free slot */
    char token[33];
} sb_preview_token;

/* The sandbox running here for project_id, or NULL (never starts one). */
sb_sandbox *sb_sandbox_find(sb_broker *b, const char *project_id);

/* The project's sandbox made running: created when it has none (lifecycle.c records it),
 * started when stopped or archived; the start waits for init at most wait_ms (and
 * KX_SANDBOX_JAIL_START_TIMEOUT_MS). A failed first start removes what it made (directory, uid
 * record): the next call tries again from nothing. account is the request's (its Kx-Account
 * header; NULL or "": not counted): a start is refused with KX_ERR_QUOTA when the account
 * already has KX_SANDBOX_MAX_PER_ACCOUNT sandboxes running on the brokers sharing this root
 * (account_quota.h), so one account cannot take every uid and jail from the others. */
kx_err sb_sandbox_ensure(sb_broker *b, const char *project_id, const char *account,
                         int64_t wait_ms, sb_sandbox **out, char *why, size_t whylen);

/* Ends the sandbox's jail (every command SIGKILLed, the record says stopped); s is freed. */
void sb_sandbox_stop(sb_sandbox *s, const char *why);

/* Removes a (stopped) sandbox's directory — renamed into <root>/.trash at once, deleted by a
 * thread — and its uid's record (uid (uid_t)-1: none). */
kx_err sb_sandbox_remove(sb_broker *b, const char *project_id, uid_t uid, char *why,
                         size_t whylen);

const char *sb_sandbox_project(const sb_sandbox *s);
/* The sandbox's exposed ports (SB_PREVIEW_TOKENS slots; they die with the sandbox). */
sb_preview_token *sb_sandbox_tokens(sb_sandbox *s);

/* Asks init for a TCP socket connected (non-blocking, maybe still in progress) to
 * 127.0.0.1:port inside the sandbox's network namespace. cb(fd, NULL, arg) with the socket
 * (the callback's), or cb(-1, why, arg) when it failed or the sandbox ended — always once, on
 * the loop thread. */
typedef void (*sb_connect_cb)(int fd, const char *why, void *arg);
typedef struct sb_connect sb_connect;
kx_err sb_sandbox_connect(sb_sandbox *s, int port, sb_connect_cb cb, void *arg, char *why,
                          size_t whylen);

/* The running sandbox of project_id, started now for account if needed (sb_sandbox_ensure
 * bounded by KX_SANDBOX_JAIL_START_TIMEOUT_MS). On error why names what failed. */
kx_err sb_sandbox_get(sb_broker *b, const char *project_id, const char *account, sb_sandbox **out,
                      char *why, size_t whylen);

/* The project's workspace directory (O_PATH) and its host path, and the sandbox's host uid. */
int sb_sandbox_workspace_fd(const sb_sandbox *s);
const char *sb_sandbox_workspace_path(const sb_sandbox *s);
uid_t sb_sandbox_uid(const sb_sandbox *s);

/* Sends RUN for exec e: cwd relative to /workspace, the command, its environment, CPU
 * seconds, RLIMIT_FSIZE (-1: the sandbox's), and the two output descriptors (sent, not closed: the caller closes its copies).
 * *run_id identifies the command for sb_sandbox_kill. */
kx_err sb_sandbox_run(sb_sandbox *s, sb_exec *e, const char *cwd, const char *command,
                      const char *const *env, int32_t cpu_s, int64_t fsize, int out_fd, int err_fd,
                      uint64_t *run_id, char *why, size_t whylen);

/* SIGKILLs the command's whole PID namespace (EXITED follows). */
void sb_sandbox_kill(sb_sandbox *s, uint64_t run_id);
/* Handles now the exit reports init has already sent (they are otherwise read when the loop
 * next polls): a command's deadline must not override an exit that is already reported.
 * Never ends the sandbox itself (a closed channel is seen by the loop next); may finish and
 * free other execs (sb_exec_on_exit). */
void sb_sandbox_read_reports(sb_sandbox *s);

/* Checks /workspace's disk use against KX_SANDBOX_DISK_MB (cached for a second): true when
 * over, with why saying by how much. Over the limit, commands still run (so that rm can free
 * space) but may not grow any file (RLIMIT_FSIZE 0), and stderr says why. */
bool sb_sandbox_over_disk(sb_sandbox *s, char *why, size_t whylen);

/* kx.sandbox.files (files.c): the bytes /workspace may still grow by (negative when over;
 * measured like sb_sandbox_over_disk), and what a write or delete changed (by project, since
 * the sandbox may have ended meanwhile; a sandbox not running here is measured anew). */
int64_t sb_sandbox_disk_room(sb_sandbox *s);
void sb_sandbox_disk_add(sb_broker *b, const char *project_id, int64_t delta);
/* Bytes promised to writes queued and not yet done (+ when queued, - when done): the room
 * excludes them, and a re-measure of the workspace does not forget them. */
void sb_sandbox_disk_reserve(sb_broker *b, const char *project_id, int64_t delta);
/* A file operation counts as use (auto-stop waits). */
void sb_sandbox_touch(sb_sandbox *s);

/* The sandbox after s in b->sandboxes (NULL at the end); the first is b->sandboxes. */
sb_sandbox *sb_sandbox_next(const sb_sandbox *s);

/* Drain: ends every sandbox (their commands are reported SIGKILLed). */
void sb_sandbox_stop_all(sb_broker *b);

#endif
