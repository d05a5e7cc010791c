/* kx/proc.h — child processes in their own process group, for the sandbox-broker (commands)
 * and the mcp-proxy (stdio MCP servers).
 *
 * kx_proc_spawn forks and execs argv with: a new session (setsid, so pgid == pid and the whole
 * tree can be killed with kx_proc_kill_group), the given cwd and environment (the parent's
 * environment is NOT inherited unless envp is NULL), stdin/stdout/stderr as non-blocking pipes
 * (or /dev/null, or a file), and a pidfd that becomes readable when the child exits (watch it
 * on a kx_loop). Close-on-exec everywhere else, so a child never holds the service's sockets.
 *
 * Ownership: kx_proc is caller-owned; kx_proc_close closes whatever fds are still open (it does
 * not kill). Reap with kx_proc_reap once the pidfd is readable. */
#ifndef KX_PROC_H
#define KX_PROC_H

#include <stdbool.h>
#include <sys/types.h>
#include "kx/err.h"

typedef enum kx_proc_io {
    KX_PROC_PIPE = 0,
    KX_PROC_NULL,
    KX_PROC_FILE
} kx_proc_io;

typedef struct kx_proc_opts {
    const char *const *argv; /* argv[0] is looked up in PATH of envp (or /usr/bin:/bin) */
    const char *const *envp; /* NULL: inherit the parent's environment */
    const char *cwd;         /* NULL: the parent's */
    kx_proc_io in, out, err;
    const char *out_path; /* for KX_PROC_FILE (appended, created 0600) */
    const char *err_path; /* for KX_PROC_FILE; may equal out_path */
} kx_proc_opts;

typedef struct kx_proc {
    pid_t pid;                 /* also the process group id */
    int pidfd;                 /* readable when the child has exited; -1 after close */
    int in_fd, out_fd, err_fd; /* parent ends of the pipes, -1 when not a pipe */
} kx_proc;

kx_err kx_proc_spawn(const kx_proc_opts *opts, kx_proc *out);
/* Sends sig to the whole process group. KX_ERR_NOT_FOUND if the group is gone. */
kx_err kx_proc_kill_group(const kx_proc *p, int sig);
/* Non-blocking reap. KX_OK and *wstatus set when reaped; KX_ERR_TIMEOUT if still running. */
kx_err kx_proc_reap(kx_proc *p, int *wstatus);
void kx_proc_close(kx_proc *p);

#endif
