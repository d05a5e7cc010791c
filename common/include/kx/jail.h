/* kx/jail.h — running a program inside a bubblewrap jail: its own user, PID, mount, IPC, UTS
 * and (by default) network namespaces, a read-only system, one host directory bound
 * read-write, rlimits, and a host uid that is neither root nor the service's own.
 *
 * Used by the sandbox-broker (each project's sandbox is one jail whose program is the
 * sandbox init) and meant for the mcp-proxy's stdio servers.
 *
 * What the jail sees (docs/architecture.md, "Isolation model"):
 *   /usr, /etc read-only; /bin, /sbin, /lib, /lib64 as symlinks into /usr; its own /proc
 *   (PID namespace) and a minimal /dev; a private tmpfs /tmp; the bound directory at
 *   opts->bind_dest (read-write); the files copied in with opts->files. Nothing else
 *   of the host's tree: no $KX_DATA_DIR, no other sandbox, no service files.
 *   Network: KX_JAIL_NET_NONE = a namespace with only loopback; KX_JAIL_NET_HOST = the host's
 *   network (the program itself must then restrict ports, e.g. with Landlock — see
 *   kx_jail_deny_tcp_ports).
 *   Environment: only opts->envp (bwrap --clearenv). Descriptors: only 0, 1, 2 and pass_fds.
 *
 * The process that execs bwrap first drops to opts->uid/gid (when the caller is root) and
 * applies the rlimits, so everything in the jail runs as that uid on the host and inherits the
 * limits. bwrap's --die-with-parent ties the jail to the caller: when the caller dies (or
 * SIGKILLs the bwrap process) the jail's PID 1 dies and the kernel kills the whole namespace.
 *
 * Ownership: opts and everything it points to stay the caller's; kx_jail_argv returns a
 * malloc'd argv that kx_jail_argv_free frees. */
#ifndef KX_JAIL_H
#define KX_JAIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include "kx/err.h"

typedef enum kx_jail_net {
    KX_JAIL_NET_NONE = 0,
    KX_JAIL_NET_HOST
} kx_jail_net;

/* 0 = leave the limit as inherited. Sizes in bytes, cpu in seconds. */
typedef struct kx_jail_limits {
    int64_t nproc;       /* RLIMIT_NPROC: processes of the jail's uid (a fork bomb stops here) */
    int64_t as_bytes;    /* RLIMIT_AS: address space per process (not set in ASan builds) */
    int64_t fsize_bytes; /* RLIMIT_FSIZE: largest file a process may write */
    int64_t nofile;      /* RLIMIT_NOFILE */
    int64_t cpu_s;       /* RLIMIT_CPU per process */
} kx_jail_limits;

/* A file copied into the jail's own root (read through the descriptor, so the jail's uid
 * needs no access to the host path), mode 0555: e.g. the program the jail runs. */
typedef struct kx_jail_file {
    int fd;           /* open for reading */
    const char *dest; /* where it appears in the jail */
} kx_jail_file;

typedef struct kx_jail_opts {
    const char *bwrap;     /* path of bwrap, e.g. "/usr/bin/bwrap"; NULL = NO jail: argv
                                    runs directly with envp, the uid drop and the rlimits only
                                    (the broker's KX_SANDBOX_UNSAFE mode) */
    uid_t uid;             /* host uid/gid of everything in the jail (applied when the */
    gid_t gid;             /* caller is root; otherwise the caller's own are kept) */
    int bind_fd;           /* directory bound read-write at bind_dest; -1 for none.
                                    bwrap resolves its path as the jail's uid: every ancestor
                                    must be searchable by others (o+x) */
    const char *bind_dest; /* e.g. "/workspace"; also the jail's cwd */
    const kx_jail_file *files;
    size_t nfiles;
    kx_jail_net net;
    bool keep_sys_admin; /* keep CAP_SYS_ADMIN inside the jail's own user namespace
                                    (the sandbox init needs it for a PID namespace per command;
                                    it drops every capability before running user code) */
    kx_jail_limits limits;
    int64_t tmp_bytes;       /* size of the private /tmp tmpfs; 0 = bwrap's default */
    const char *const *argv; /* the program inside the jail (an absolute path in the jail) */
    const char *const *envp; /* its whole environment; NULL = empty */
    int stderr_fd;           /* bwrap's (and the program's) stderr; 0 or -1: /dev/null */
    const int *pass_fds;     /* descriptors kept open into the jail, same numbers */
    size_t npass_fds;
} kx_jail_opts;

/* The bwrap command line for opts (argv[0] = opts->bwrap), NULL-terminated and malloc'd.
 * Pure: touches no file. KX_ERR_INVALID when opts is incomplete. */
kx_err kx_jail_argv(const kx_jail_opts *opts, char ***argv_out);
void kx_jail_argv_free(char **argv);

/* Forks and execs bwrap with kx_jail_argv(opts): in the child, a new session, only 0/1/2 (all
 * /dev/null) and pass_fds kept open, rlimits set, uid/gid dropped (setgroups, setresgid,
 * setresuid) when running as root, PR_SET_PDEATHSIG. *pidfd is a pidfd of the bwrap process
 * (readable when it exits). */
kx_err kx_jail_spawn(const kx_jail_opts *opts, pid_t *pid, int *pidfd);

/* Runs `true` in a minimal jail as uid/gid and waits for it (at most timeout_ms): KX_OK when
 * bwrap works on this host; otherwise why says what failed (for the refusal to start). */
kx_err kx_jail_probe(const char *bwrap, uid_t uid, gid_t gid, int64_t timeout_ms, char *why,
                     size_t whylen);

/* For a jail with the host's network: from now on this process and its descendants cannot
 * connect (TCP) to any of the given ports, on any address (Landlock, ABI >= 4). Call inside
 * the jail before running user code; needs no_new_privs (bwrap sets it). KX_ERR_UNAVAILABLE
 * when the kernel has no Landlock network support. */
kx_err kx_jail_deny_tcp_ports(const uint16_t *ports, size_t nports);

/* True when the host has a cgroup v2 hierarchy with controllers this process could delegate
 * to a jail (cgroup.controllers non-empty and writable subtree); fills what with a sentence. */
bool kx_jail_cgroup2_delegated(char *what, size_t whatlen);

#endif
