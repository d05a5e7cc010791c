/* kx/jail.h — running a program inside a bubblewrap jail: its own user, PID, mount, IPC, UTS
 * and (by default) network namespaces, a read-only system, one host directory bound
 * read-write, rlimits, and a host uid that is neither root nor the service's own.
 *
 * Used by the sandbox-broker (each project's sandbox is one jail whose program is the
 * sandbox init) and by the mcp-proxy (each stdio MCP server from an agent's config is one jail
 * whose stdin/stdout/stderr are the proxy's pipes).
 *
 * What the jail sees (docs/architecture.md, "Isolation model"):
 *   /usr, /etc read-only; /bin, /sbin, /lib, /lib64 as symlinks into /usr; its own /proc
 *   (PID namespace) and a minimal /dev; a private tmpfs /tmp; the bound directory at
 *   opts->bind_dest (read-write); the files copied in with opts->files; the operator's
 *   read-only binds (opts->ro_binds). Nothing else of the host's tree: no $KX_DATA_DIR, no
 *   other sandbox, no service files.
 *   Network: KX_JAIL_NET_NONE = a namespace with only loopback; KX_JAIL_NET_HOST = the host's
 *   network, with TCP connects to the ports of opts->deny_ruleset_fd refused (Landlock, applied
 *   before bwrap runs, so it covers bwrap and everything in the jail); a program may also
 *   restrict itself from inside with kx_jail_deny_tcp_ports.
 *   Environment: only opts->envp (bwrap --clearenv). Descriptors: 0, 1, 2 (/dev/null unless
 *   stdin_fd/stdout_fd/stderr_fd name the caller's descriptors) and pass_fds.
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

/* A host directory (or file) bound read-only into the jail, e.g. MCP servers installed by the
 * operator. bwrap resolves src as the jail's uid: it and its ancestors must be searchable by
 * others, its files readable by others. */
typedef struct kx_jail_bind {
    const char *src;  /* absolute host path */
    const char *dest; /* absolute path in the jail */
} kx_jail_bind;

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
    const kx_jail_bind *ro_binds;
    size_t nro_binds;
    kx_jail_net net;
    int deny_ruleset_fd; /* > 0: a ruleset from kx_jail_tcp_deny_ruleset, enforced in the child
                            before bwrap runs (nothing in the jail may connect to its ports);
                            0 or -1: none. Meant for NET_HOST. Stays the caller's */
    bool keep_sys_admin; /* keep CAP_SYS_ADMIN inside the jail's own user namespace
                                    (the sandbox init needs it for a PID namespace per command;
                                    it drops every capability before running user code) */
    kx_jail_limits limits;
    int64_t tmp_bytes;       /* size of the private /tmp tmpfs; 0 = bwrap's default */
    const char *const *argv; /* the program inside the jail (an absolute path in the jail, or
                                a name bwrap looks up in envp's PATH) */
    const char *const *envp; /* its whole environment; NULL = empty */
    /* The jail's standard descriptors: > 0 = that descriptor of the caller (dup'ed onto
     * 0/1/2 in the child; the caller closes its copy after kx_jail_spawn), 0 or -1 =
     * /dev/null. stderr also receives bwrap's own complaints. */
    int stdin_fd;
    int stdout_fd;
    int stderr_fd;
    const int *pass_fds; /* descriptors kept open into the jail, same numbers */
    size_t npass_fds;
    int cgroup_fd; /* > 0: a cgroup v2 directory (kx_cgroup_make) the jail is born in (clone3
                      CLONE_INTO_CGROUP: nothing of it ever runs outside); 0 or -1: the
                      caller's cgroup. Stays the caller's */
} kx_jail_opts;

/* The bwrap command line for opts (argv[0] = opts->bwrap), NULL-terminated and malloc'd.
 * Pure: touches no file. KX_ERR_INVALID when opts is incomplete. */
kx_err kx_jail_argv(const kx_jail_opts *opts, char ***argv_out);
void kx_jail_argv_free(char **argv);

/* Forks and execs bwrap with kx_jail_argv(opts): in the child, a new session (pgid = *pid),
 * 0/1/2 as opts says and pass_fds kept open (nothing else), the Landlock port rules
 * (deny_ruleset_fd) enforced, rlimits set, uid/gid dropped (setgroups, setresgid, setresuid)
 * when running as root, PR_SET_PDEATHSIG. *pidfd is a pidfd of the bwrap process (readable when
 * it exits). */
kx_err kx_jail_spawn(const kx_jail_opts *opts, pid_t *pid, int *pidfd);

/* Runs `true` in a minimal jail as uid/gid and waits for it (at most timeout_ms): KX_OK when
 * bwrap works on this host; otherwise why says what failed (for the refusal to start). */
kx_err kx_jail_probe(const char *bwrap, uid_t uid, gid_t gid, int64_t timeout_ms, char *why,
                     size_t whylen);

/* A Landlock ruleset (a descriptor, O_CLOEXEC; close it when done) that refuses TCP connects
 * to ports[] and allows every other port, for kx_jail_opts.deny_ruleset_fd. Build it once and
 * reuse it: Landlock has no port ranges, so this is ~65536 system calls (a second or more on a
 * busy machine) — never on a loop thread per spawn. KX_ERR_UNAVAILABLE when the kernel has no
 * Landlock network support (ABI < 4). */
kx_err kx_jail_tcp_deny_ruleset(const uint16_t *ports, size_t nports, int *fd_out);

/* For a jail with the host's network: from now on this process and its descendants cannot
 * connect (TCP) to any of the given ports, on any address (Landlock, ABI >= 4). Call inside
 * the jail before running user code; needs no_new_privs (bwrap sets it). KX_ERR_UNAVAILABLE
 * when the kernel has no Landlock network support. */
kx_err kx_jail_deny_tcp_ports(const uint16_t *ports, size_t nports);

/* The suite's jail network settings (jail_env.c): KX_SANDBOX_NETWORK (none | host, default
 * none) into *net; the TCP ports a host-network jail may never connect to into ports[cap]:
 * KX_SANDBOX_DENY_PORTS (comma-separated) plus the NATS port of KX_NATS_URL. KX_ERR_INVALID
 * with why (naming the variable) when a value is bad. */
kx_err kx_jail_net_from_env(kx_jail_net *net, uint16_t *ports, size_t cap, size_t *nports,
                            char *why, size_t whylen);

#endif
