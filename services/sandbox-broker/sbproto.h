/* sbproto.h — the private wire between the sandbox-broker and the init process that runs as
 * PID 1 inside each sandbox (init/sandbox_init.c). One SOCK_SEQPACKET socketpair per sandbox;
 * each datagram is one message: a fixed header, then NUL-terminated strings, and for RUN the
 * command's stdout and stderr descriptors (SCM_RIGHTS).
 *
 *   broker -> init   RUN    id, a = CPU seconds (0: none), b = RLIMIT_FSIZE in bytes for the
 *                           command (-1: the sandbox's; 0 when the workspace is over its
 *                           disk limit: nothing can grow, rm still works); strings: cwd (relative to
 *                           /workspace, "" = it), command, then "K=V" environment entries
 *                    KILL   id: SIGKILL the command's PID namespace (everything it started)
 *                    CONNECT id, a = port: a TCP socket to 127.0.0.1:port in the sandbox's
 *                           network namespace (a preview link's connection)
 *   init -> broker   READY  the sandbox is up (sent once, first)
 *                    STARTED id, a = pid of the command's namespace init (sandbox pid)
 *                    FAILED id, a = errno; string: what failed
 *                    CONNECTED id, fd: the socket (non-blocking; the connect may be in
 *                           progress) — or FAILED id, a = errno
 *                    EXITED id, a = wait status of the command's main process (a SIGKILLed
 *                           namespace reports SIGKILL)
 *
 * Pure encode/decode (no I/O but sbp_send/sbp_recv); shared by both sides, so the two can
 * never disagree about the layout. Buffers are the caller's. */
#ifndef SB_SBPROTO_H
#define SB_SBPROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SBP_MAX_MSG (256 * 1024) /* largest datagram either side accepts */
#define SBP_MAX_STRS 256         /* strings per message (cwd + command + environment) */

enum sbp_op {
    SBP_RUN = 1,
    SBP_KILL,
    SBP_READY,
    SBP_STARTED,
    SBP_FAILED,
    SBP_EXITED,
    SBP_CONNECT,
    SBP_CONNECTED
};

typedef struct sbp_msg {
    uint32_t op;
    uint64_t id;
    int32_t a;
    int64_t b;
    const char *strs[SBP_MAX_STRS]; /* decoded: pointers into the receive buffer */
    size_t nstrs;
    int fds[2]; /* RUN: stdout, stderr; -1 when absent */
} sbp_msg;

/* Encodes m into buf (header + strings). Returns the length, or 0 when it does not fit. */
size_t sbp_encode(const sbp_msg *m, char *buf, size_t cap);
/* Decodes len bytes of buf into m (strings point into buf). False when malformed. */
bool sbp_decode(char *buf, size_t len, sbp_msg *m);

/* Sends m over the socket, with m->fds (those >= 0) attached. 0, or -1 with errno. */
int sbp_send(int sock, const sbp_msg *m, char *buf, size_t cap);
/* Receives one message into buf and decodes it; received fds in m->fds (O_CLOEXEC).
 * Returns 1 on a message, 0 on EOF, -1 with errno (EAGAIN when nothing is there, EPROTO when
 * malformed). */
int sbp_recv(int sock, sbp_msg *m, char *buf, size_t cap);

#endif
