/* stdio_transport.h — an MCP server as a child process speaking newline-delimited JSON-RPC on
 * its stdin/stdout (the MCP "stdio" transport), driven by a kx_loop.
 *
 * The child runs in its own process group (kx_proc_spawn) with three non-blocking pipes:
 *   - stdin:  our messages, one per line; a write queue absorbs what the pipe cannot take now;
 *   - stdout: its messages, split into lines (each at most MCP_STDIO_MAX_LINE bytes; a longer
 *             one means the server is broken: on_broken, and the group is killed);
 *   - stderr: its log, drained into our log line by line, so the pipe never fills up.
 * When the child exits (its pidfd becomes readable), whatever it still wrote is read, it is
 * reaped, and on_exit is called — the last callback, after which the transport does nothing on
 * its own; the owner frees it (it may do so inside on_exit).
 *
 * Loop thread only. Ownership: mcp_stdio_start returns a transport the caller frees with
 * mcp_stdio_free; argv and envp are copied by the spawn and can be freed after start. Callbacks
 * other than on_exit must not free the transport. */
#ifndef KX_MCP_STDIO_TRANSPORT_H
#define KX_MCP_STDIO_TRANSPORT_H

#include <stddef.h>
#include <sys/types.h>

#include "kx/err.h"
#include "kx/loop.h"
#include "kx/proc.h"

#define MCP_STDIO_MAX_LINE (16u << 20)     /* longest message accepted from a server */
#define MCP_STDIO_MAX_QUEUE (64u << 20)    /* most bytes waiting for the server's stdin */
#define MCP_STDIO_STDOUT_EOF_GRACE_MS 2000 /* stdout closed but still alive: killed after */

typedef struct mcp_stdio mcp_stdio;

typedef struct mcp_stdio_cbs {
    /* One message line from stdout (without the line end; NUL-terminated, borrowed). */
    void (*on_line)(const char *line, size_t len, void *arg);
    /* The server broke the transport (why says how); its process group has been sent SIGKILL
     * and on_exit follows. */
    void (*on_broken)(const char *why, void *arg);
    /* The process exited with wstatus (as from waitpid). Last callback. */
    void (*on_exit)(int wstatus, void *arg);
} mcp_stdio_cbs;

/* Spawns argv (argv[0] looked up in envp's PATH) with exactly the environment envp.
 * name is used in log lines ("mcp server 'name'"). */
kx_err mcp_stdio_start(kx_loop *loop, const char *name, const char *const *argv,
                       const char *const *envp, const mcp_stdio_cbs *cbs, void *arg,
                       mcp_stdio **out);

/* Takes over a child already started in its own process group (pgid = proc->pid) with
 * non-blocking parent ends of its stdin/stdout/stderr pipes and a pidfd — e.g. a jailed server
 * (user_stdio.c). proc is copied; the transport owns its descriptors from now on, also when
 * this fails (then the child is killed and reaped). */
kx_err mcp_stdio_adopt(kx_loop *loop, const char *name, kx_proc *proc, const mcp_stdio_cbs *cbs,
                       void *arg, mcp_stdio **out);

/* Kills (SIGKILL to its group), reaps and closes a child that will not be adopted. */
void mcp_stdio_discard(kx_proc *proc);

/* Queues one message (len bytes, without line end; "\n" is added). KX_ERR_UNAVAILABLE when the
 * server's stdin is closed or the queue is over MCP_STDIO_MAX_QUEUE (the server is not reading:
 * it is then killed as broken). */
kx_err mcp_stdio_send(mcp_stdio *t, const char *text, size_t len);

/* Closes the server's stdin once the queue is written: the polite way to ask a stdio MCP server
 * to exit. */
void mcp_stdio_close_stdin(mcp_stdio *t);
/* Sends sig to the server's whole process group (no-op once it has exited). */
void mcp_stdio_kill(mcp_stdio *t, int sig);
pid_t mcp_stdio_pid(const mcp_stdio *t);

/* Stops watching, SIGKILLs the group if the process still runs (and reaps it), closes, frees.
 * NULL is a no-op. */
void mcp_stdio_free(mcp_stdio *t);

#endif
