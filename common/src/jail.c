/* jail.c — bubblewrap jails: the command line, the uid drop and rlimits before exec, a probe
 * that bwrap works here, Landlock port denial for host-network jails (cgroup v2 limits: cgroup.c).
 * See kx/jail.h. */
#include "kx/jail.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/landlock.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kx/time.h"

/* ---- the command line ----------------------------------------------------------------- */

typedef struct argv_b {
    char **v;
    size_t n, cap;
    bool oom;
} argv_b;

static void add(argv_b *a, const char *s)
{
    if (a->oom)
        return;
    if (a->n + 2 > a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 64;
        char **v = realloc(a->v, cap * sizeof *v);
        if (v == NULL) {
            a->oom = true;
            return;
        }
        a->v = v;
        a->cap = cap;
    }
    a->v[a->n] = strdup(s);
    if (a->v[a->n] == NULL) {
        a->oom = true;
        return;
    }
    a->n++;
    a->v[a->n] = NULL;
}

static void addf(argv_b *a, const char *fmt, long long v)
{
    char buf[32];
    snprintf(buf, sizeof buf, fmt, v);
    add(a, buf);
}

void kx_jail_argv_free(char **argv)
{
    if (argv == NULL)
        return;
    for (size_t i = 0; argv[i] != NULL; i++)
        free(argv[i]);
    free(argv);
}

kx_err kx_jail_argv(const kx_jail_opts *o, char ***argv_out)
{
    *argv_out = NULL;
    if (o != NULL && o->bwrap == NULL && o->argv != NULL && o->argv[0] != NULL) {
        argv_b u = {0}; /* no jail (unsafe mode): the program itself */
        for (size_t i = 0; o->argv[i] != NULL; i++)
            add(&u, o->argv[i]);
        if (u.oom) {
            kx_jail_argv_free(u.v);
            return KX_ERR_NOMEM;
        }
        *argv_out = u.v;
        return KX_OK;
    }
    if (o == NULL || o->bwrap == NULL || o->argv == NULL || o->argv[0] == NULL ||
        (o->bind_fd >= 0 && (o->bind_dest == NULL || o->bind_dest[0] != '/')))
        return KX_ERR_INVALID;
    argv_b a = {0};
    add(&a, o->bwrap);
    /* Namespaces: user, pid, ipc, uts, cgroup, net (unless host). */
    add(&a, "--unshare-user");
    add(&a, "--unshare-pid");
    add(&a, "--unshare-ipc");
    add(&a, "--unshare-uts");
    add(&a, "--unshare-cgroup-try");
    if (o->net == KX_JAIL_NET_NONE)
        add(&a, "--unshare-net");
    add(&a, "--disable-userns"); /* no nested user namespaces: less kernel surface */
    add(&a, "--die-with-parent");
    add(&a, "--new-session"); /* no TIOCSTI on a terminal the broker might have */
    add(&a, "--as-pid-1");
    add(&a, "--hostname");
    add(&a, "sandbox");
    add(&a, "--clearenv");
    if (o->keep_sys_admin) {
        add(&a, "--cap-add");
        add(&a, "CAP_SYS_ADMIN");
    }
    /* The read-only system. */
    add(&a, "--ro-bind");
    add(&a, "/usr");
    add(&a, "/usr");
    add(&a, "--ro-bind");
    add(&a, "/etc");
    add(&a, "/etc");
    static const char *const links[][2] = {{"usr/bin", "/bin"},
                                           {"usr/sbin", "/sbin"},
                                           {"usr/lib", "/lib"},
                                           {"usr/lib64", "/lib64"}};
    for (size_t i = 0; i < sizeof links / sizeof links[0]; i++) {
        add(&a, "--symlink");
        add(&a, links[i][0]);
        add(&a, links[i][1]);
    }
    add(&a, "--proc");
    add(&a, "/proc");
    add(&a, "--dev");
    add(&a, "/dev");
    if (o->tmp_bytes > 0) {
        add(&a, "--size");
        addf(&a, "%lld", (long long)o->tmp_bytes);
    }
    add(&a, "--tmpfs");
    add(&a, "/tmp");
    add(&a, "--dir");
    add(&a, "/var/tmp");
    for (size_t i = 0; i < o->nfiles; i++) {
        add(&a, "--perms");
        add(&a, "0555");
        add(&a, "--file");
        addf(&a, "%lld", o->files[i].fd);
        add(&a, o->files[i].dest);
    }
    for (size_t i = 0; i < o->nro_binds; i++) {
        const kx_jail_bind *b = &o->ro_binds[i];
        if (b->src == NULL || b->dest == NULL || b->src[0] != '/' || b->dest[0] != '/') {
            kx_jail_argv_free(a.v);
            return KX_ERR_INVALID;
        }
        add(&a, "--ro-bind");
        add(&a, b->src);
        add(&a, b->dest);
    }
    if (o->bind_fd >= 0) {
        add(&a, "--bind-fd");
        addf(&a, "%lld", o->bind_fd);
        add(&a, o->bind_dest);
        add(&a, "--chdir");
        add(&a, o->bind_dest);
    } else {
        add(&a, "--chdir");
        add(&a, "/");
    }
    for (size_t i = 0; o->envp != NULL && o->envp[i] != NULL; i++) {
        const char *eq = strchr(o->envp[i], '=');
        if (eq == NULL || eq == o->envp[i]) {
            kx_jail_argv_free(a.v);
            return KX_ERR_INVALID;
        }
        char *name = strndup(o->envp[i], (size_t)(eq - o->envp[i]));
        if (name == NULL)
            a.oom = true;
        add(&a, "--setenv");
        add(&a, name != NULL ? name : "");
        add(&a, eq + 1);
        free(name);
    }
    add(&a, "--");
    for (size_t i = 0; o->argv[i] != NULL; i++)
        add(&a, o->argv[i]);
    if (a.oom) {
        kx_jail_argv_free(a.v);
        return KX_ERR_NOMEM;
    }
    *argv_out = a.v;
    return KX_OK;
}

/* ---- spawning ------------------------------------------------------------------------- */

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

static void set_limit(int resource, int64_t v)
{
    if (v <= 0)
        return;
    struct rlimit rl = {(rlim_t)v, (rlim_t)v};
    (void)setrlimit(resource, &rl);
}

/* In the child between clone3 and exec: only async-signal-safe calls. Never returns. */
static void child_exec(const kx_jail_opts *o, char **argv, const int *keep, size_t nkeep,
                       int ruleset_fd)
{
    sigset_t all;
    sigemptyset(&all);
    sigprocmask(SIG_SETMASK, &all, NULL);
    for (int s = 1; s < NSIG; s++)
        signal(s, SIG_DFL);
    setsid();
    if (ruleset_fd >= 0) {
        /* The port rules, before bwrap runs: they bind bwrap and everything it starts. */
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
            syscall(SYS_landlock_restrict_self, ruleset_fd, 0) != 0)
            _exit(124);
    }
    int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (devnull < 0)
        _exit(126);
    /* The caller's descriptors for 0/1/2; one that is itself 0..2 is first moved out of the
     * way, so that no dup2 below overwrites a source another one still needs. */
    int src[3] = {o->stdin_fd, o->stdout_fd, o->stderr_fd};
    for (int i = 0; i < 3; i++) {
        if (src[i] <= 0)
            src[i] = devnull;
        else if (src[i] <= 2 && (src[i] = fcntl(src[i], F_DUPFD_CLOEXEC, 3)) < 0)
            _exit(126);
    }
    for (int i = 0; i < 3; i++)
        if (dup2(src[i], i) < 0)
            _exit(126); /* a child must not run with the parent's stdio */
    /* Close every descriptor but 0-2 and keep[] (sorted). */
    unsigned int lo = 3;
    for (size_t i = 0; i < nkeep; i++) {
        if (keep[i] < 3)
            continue;
        if ((unsigned int)keep[i] > lo)
            syscall(SYS_close_range, lo, (unsigned int)keep[i] - 1, 0);
        int fl = fcntl(keep[i], F_GETFD);
        if (fl >= 0)
            fcntl(keep[i], F_SETFD, fl & ~FD_CLOEXEC);
        lo = (unsigned int)keep[i] + 1;
    }
    syscall(SYS_close_range, lo, ~0U, 0);

    set_limit(RLIMIT_NPROC, o->limits.nproc);
#if !defined(__SANITIZE_ADDRESS__)
    /* An AddressSanitizer build of the jailed program (the sandbox init in KX_SANITIZE builds)
     * reserves terabytes of shadow address space at start and cannot run under RLIMIT_AS:
     * sanitizer builds leave this one limit out; release builds always set it. */
    set_limit(RLIMIT_AS, o->limits.as_bytes);
#endif
    set_limit(RLIMIT_FSIZE, o->limits.fsize_bytes);
    set_limit(RLIMIT_NOFILE, o->limits.nofile);
    set_limit(RLIMIT_CPU, o->limits.cpu_s);
    set_limit(RLIMIT_CORE, 0);
    /* Raw system calls: after clone3 glibc still believes the parent's threads exist here,
     * and its set*id wrappers would wait for them forever. */
    if (geteuid() == 0) {
        if (syscall(SYS_setgroups, 0, NULL) != 0 ||
            syscall(SYS_setresgid, o->gid, o->gid, o->gid) != 0 ||
            syscall(SYS_setresuid, o->uid, o->uid, o->uid) != 0)
            _exit(125);
    }
    if (geteuid() == 0 || getuid() == 0)
        _exit(125); /* never run a jail as root */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    static char *const empty_env[] = {NULL};
    execve(argv[0], argv,
           o->bwrap == NULL && o->envp != NULL ? (char *const *)o->envp : empty_env);
    _exit(127);
}

kx_err kx_jail_spawn(const kx_jail_opts *o, pid_t *pid_out, int *pidfd_out)
{
    *pid_out = -1;
    *pidfd_out = -1;
    char **argv = NULL;
    kx_err err = kx_jail_argv(o, &argv);
    if (err != KX_OK)
        return err;
    int keep[64];
    size_t nkeep = 0;
    for (size_t i = 0; i < o->npass_fds && nkeep < 60; i++)
        keep[nkeep++] = o->pass_fds[i];
    for (size_t i = 0; i < o->nfiles && nkeep < 62; i++)
        keep[nkeep++] = o->files[i].fd;
    if (o->bind_fd >= 0)
        keep[nkeep++] = o->bind_fd;
    qsort(keep, nkeep, sizeof keep[0], cmp_int);
    int ruleset_fd = o->deny_ruleset_fd > 0 ? o->deny_ruleset_fd : -1;

    int pidfd = -1;
    struct clone_args { /* CLONE_ARGS_SIZE_VER2 */
        uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls;
        uint64_t set_tid, set_tid_size, cgroup;
    } ca;
    memset(&ca, 0, sizeof ca);
    ca.flags = 0x00001000; /* CLONE_PIDFD */
    ca.pidfd = (uint64_t)(uintptr_t)&pidfd;
    ca.exit_signal = SIGCHLD;
    if (o->cgroup_fd > 0) {
        ca.flags |= 0x200000000ULL; /* CLONE_INTO_CGROUP (Linux 5.7) */
        ca.cgroup = (uint64_t)o->cgroup_fd;
    }
    long pid = syscall(SYS_clone3, &ca, sizeof ca);
    if (pid < 0) {
        int e = errno;
        kx_jail_argv_free(argv);
        errno = e;
        return KX_ERR_IO;
    }
    if (pid == 0)
        child_exec(o, argv, keep, nkeep, ruleset_fd);
    kx_jail_argv_free(argv);
    *pid_out = (pid_t)pid;
    *pidfd_out = pidfd;
    return KX_OK;
}

kx_err kx_jail_probe(const char *bwrap, uid_t uid, gid_t gid, int64_t timeout_ms, char *why,
                     size_t whylen)
{
    if (access(bwrap, X_OK) != 0) {
        snprintf(why, whylen,
                 "%s is not an executable (%s): install the Debian package "
                 "bubblewrap",
                 bwrap, strerror(errno));
        return KX_ERR_UNAVAILABLE;
    }
    const char *const argv[] = {"/bin/true", NULL};
    kx_jail_opts o = {.bwrap = bwrap, .uid = uid, .gid = gid, .bind_fd = -1, .argv = argv};
    pid_t pid;
    int pidfd;
    if (kx_jail_spawn(&o, &pid, &pidfd) != KX_OK) {
        snprintf(why, whylen, "could not start %s: %s", bwrap, strerror(errno));
        return KX_ERR_UNAVAILABLE;
    }
    struct pollfd p = {.fd = pidfd, .events = POLLIN};
    int r = poll(&p, 1, (int)timeout_ms);
    if (r <= 0)
        kill(pid, SIGKILL);
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    close(pidfd);
    if (r <= 0) {
        snprintf(why, whylen, "%s did not finish a trial run within %lld ms", bwrap,
                 (long long)timeout_ms);
        return KX_ERR_UNAVAILABLE;
    }
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        snprintf(why, whylen,
                 "a trial run of %s as uid %u failed (status 0x%x): user "
                 "namespaces may be disabled",
                 bwrap, (unsigned)uid, (unsigned)st);
        return KX_ERR_UNAVAILABLE;
    }
    return KX_OK;
}

/* ---- Landlock --------------------------------------------------------------------------- */

/* The network part of the Landlock ABI (v4, Linux 6.7), declared here because Debian 12's
 * kernel headers predate it. Layouts are the kernel's uapi. */
struct kx_ll_ruleset_attr {
    uint64_t handled_access_fs;
    uint64_t handled_access_net;
};
struct kx_ll_net_port_attr {
    uint64_t allowed_access;
    uint64_t port;
};
#define KX_LL_ACCESS_NET_CONNECT_TCP (1ULL << 1)
#define KX_LL_RULE_NET_PORT 2

kx_err kx_jail_tcp_deny_ruleset(const uint16_t *ports, size_t nports, int *fd_out)
{
    *fd_out = -1;
    long abi = syscall(SYS_landlock_create_ruleset, NULL, 0, LANDLOCK_CREATE_RULESET_VERSION);
    if (abi < 4)
        return KX_ERR_UNAVAILABLE;
    struct kx_ll_ruleset_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.handled_access_net = KX_LL_ACCESS_NET_CONNECT_TCP;
    int rs = (int)syscall(SYS_landlock_create_ruleset, &attr, sizeof attr, 0);
    if (rs < 0)
        return KX_ERR_IO;
    /* Landlock rules allow; every port not denied gets a rule. */
    uint8_t denied[65536 / 8];
    memset(denied, 0, sizeof denied);
    for (size_t i = 0; i < nports; i++)
        denied[ports[i] / 8] |= (uint8_t)(1u << (ports[i] % 8));
    for (uint32_t p = 0; p < 65536; p++) {
        if (denied[p / 8] & (1u << (p % 8)))
            continue;
        struct kx_ll_net_port_attr na = {.allowed_access = KX_LL_ACCESS_NET_CONNECT_TCP,
                                         .port = p};
        if (syscall(SYS_landlock_add_rule, rs, KX_LL_RULE_NET_PORT, &na, 0) != 0) {
            close(rs);
            return KX_ERR_IO;
        }
    }
    *fd_out = rs;
    return KX_OK;
}

kx_err kx_jail_deny_tcp_ports(const uint16_t *ports, size_t nports)
{
    long abi = syscall(SYS_landlock_create_ruleset, NULL, 0, LANDLOCK_CREATE_RULESET_VERSION);
    if (abi < 4)
        return KX_ERR_UNAVAILABLE;
    if (nports == 0)
        return KX_OK;
    int rs = -1;
    kx_err err = kx_jail_tcp_deny_ruleset(ports, nports, &rs);
    if (err != KX_OK)
        return err;
    prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    long r = syscall(SYS_landlock_restrict_self, rs, 0);
    close(rs);
    return r == 0 ? KX_OK : KX_ERR_IO;
}
