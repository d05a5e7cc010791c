/* sandbox_init.c — kx-sandbox-init, PID 1 of every sandbox (one bubblewrap jail per project).
 *
 * It keeps the sandbox alive between commands (a server started in the background is still
 * there for the next command) and runs each command the broker sends (sbproto.h, socket on
 * fd 3) in a PID namespace of its own, nested in the sandbox's:
 *
 *   init (PID 1 of the sandbox, CAP_SYS_ADMIN in the sandbox's user namespace only)
 *    └─ reaper (PID 1 of the command's namespace): reaps orphans, waits for the main process,
 *        │      writes its wait status to init over a pipe, exits — and the kernel then kills
 *        │      everything left in that namespace (setsid and double forks included)
 *        └─ /bin/sh -c <command>   no capabilities, no ambient caps, no_new_privs,
 *                                  RLIMIT_CPU, cwd inside /workspace, only the given env
 *
 * CONNECT <id> <port> answers a socket connected to the sandbox's own 127.0.0.1:port (preview
 * links: the broker relays it to the gateway).
 *
 * KILL <id> SIGKILLs the reaper: its namespace dies whole. When the broker's end of the socket
 * closes, init exits and the sandbox's namespace dies whole.
 *
 * Arguments: --sock N (the channel to the broker); [--deny-port N]... — with the host's network, TCP connects to these ports are
 * refused for everything in the sandbox (Landlock; the suite's NATS and Postgres ports).
 * [--workspace PATH] — the workspace (default /workspace; the host path in unsafe mode, where
 * init runs without a jail and, lacking CAP_SYS_ADMIN, puts each command in a session of its
 * own instead of a PID namespace). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/capability.h>
#include <linux/openat2.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kx/jail.h"
#include "sbproto.h"

#define MAX_CMDS 1024

typedef struct cmd {
    uint64_t id;
    pid_t reaper;  /* 0 = free slot */
    int status_fd; /* read end: the main process's wait status */
    bool dying;    /* KILL sent: its namespace is being torn down */
} cmd;

static cmd g_cmds[MAX_CMDS];
static const char *g_workspace = "/workspace";
static int g_sock = -1; /* --sock N: the broker's channel */
static char g_buf[SBP_MAX_MSG];

static void send_msg(uint32_t op, uint64_t id, int32_t a, const char *s)
{
    sbp_msg m = {.op = op, .id = id, .a = a, .b = -1, .fds = {-1, -1}};
    if (s != NULL) {
        m.strs[0] = s;
        m.nstrs = 1;
    }
    char out[4096];
    (void)sbp_send(g_sock, &m, out, sizeof out);
}

/* In the command's process just before exec: no capability of any kind survives. */
static void drop_privileges(void)
{
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
    struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    struct __user_cap_data_struct d[2];
    memset(d, 0, sizeof d);
    syscall(SYS_capset, &h, d);
    prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
}

/* chdir to /workspace/<rel> without following a symlink or leaving /workspace. */
static int enter_cwd(const char *rel)
{
    if (rel[0] == '\0')
        return chdir(g_workspace);
    int ws = open(g_workspace, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (ws < 0)
        return -1;
    struct open_how how = {.flags = O_PATH | O_DIRECTORY | O_CLOEXEC,
                           .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
                               RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV};
    int fd = (int)syscall(SYS_openat2, ws, rel, &how, sizeof how);
    close(ws);
    if (fd < 0)
        return -1;
    int r = fchdir(fd);
    close(fd);
    return r;
}

/* The reaper: PID 1 of the command's namespace. Never returns. */
static void reaper_main(const sbp_msg *m, int status_w)
{
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    close(g_sock);
    int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (devnull < 0 || dup2(devnull, 0) < 0 || dup2(m->fds[0], 1) < 0 || dup2(m->fds[1], 2) < 0)
        _exit(120);
    if (enter_cwd(m->strs[0]) != 0) {
        dprintf(2, "kx-sandbox: folder '%s': %s\n", m->strs[0], strerror(errno));
        int st = 121 << 8;
        (void)!write(status_w, &st, sizeof st);
        _exit(0);
    }
    pid_t child = fork();
    if (child < 0) {
        dprintf(2, "kx-sandbox: fork: %s\n", strerror(errno));
        int st = 122 << 8;
        (void)!write(status_w, &st, sizeof st);
        _exit(0);
    }
    if (child == 0) {
        close(status_w);
        if (m->a > 0) {
            struct rlimit rl = {(rlim_t)m->a, (rlim_t)m->a + 1};
            setrlimit(RLIMIT_CPU, &rl);
        }
        if (m->b >= 0) {
            struct rlimit rl = {(rlim_t)m->b, (rlim_t)m->b};
            setrlimit(RLIMIT_FSIZE, &rl);
        }
        /* A write past RLIMIT_FSIZE fails with EFBIG ("File too large") instead of killing the
         * writer (the shell itself, for `echo > file`). */
        signal(SIGXFSZ, SIG_IGN);
        drop_privileges();
        char *envp[SBP_MAX_STRS];
        size_t ne = 0;
        for (size_t i = 2; i < m->nstrs && ne + 1 < SBP_MAX_STRS; i++)
            envp[ne++] = (char *)m->strs[i];
        envp[ne] = NULL;
        char *argv[] = {"/bin/sh", "-c", (char *)m->strs[1], NULL};
        execve("/bin/sh", argv, envp);
        dprintf(2, "kx-sandbox: exec /bin/sh: %s\n", strerror(errno));
        _exit(127);
    }
    /* The reaper holds no copy of the output pipes: EOF comes when the command's tree ends. */
    close(m->fds[0]);
    close(m->fds[1]);
    close(0);
    close(1);
    close(2);
    drop_privileges();
    for (;;) {
        int st = 0;
        pid_t p = waitpid(-1, &st, 0);
        if (p == child) {
            (void)!write(status_w, &st, sizeof st);
            _exit(0); /* the kernel kills what is left in this namespace */
        }
        if (p < 0 && errno != EINTR)
            _exit(0);
    }
}

static cmd *find_cmd(uint64_t id)
{
    for (size_t i = 0; i < MAX_CMDS; i++) {
        if (g_cmds[i].reaper != 0 && g_cmds[i].id == id)
            return &g_cmds[i];
    }
    return NULL;
}

static void close_fds(sbp_msg *m)
{
    for (int i = 0; i < 2; i++) {
        if (m->fds[i] >= 0)
            close(m->fds[i]);
        m->fds[i] = -1;
    }
}

static void reap(void);

/* True while a killed command's namespace is still being torn down: until the kernel has
 * reaped them, its processes count against the sandbox's process limit. */
static bool any_dying(void)
{
    for (size_t i = 0; i < MAX_CMDS; i++) {
        if (g_cmds[i].reaper != 0 && g_cmds[i].dying)
            return true;
    }
    return false;
}

/* The command's reaper: a child in a PID namespace of its own (fork + setsid in unsafe mode).
 * Returns its pid in the parent, 0 in the child, -1 with errno. */
static long start_reaper(void)
{
    long pid = syscall(SYS_clone, (unsigned long)(CLONE_NEWPID | SIGCHLD), NULL, NULL, NULL, 0);
    if (pid < 0 && errno == EPERM) {
        /* Unsafe mode (no jail, no CAP_SYS_ADMIN): a session of its own is the best we have. */
        pid = fork();
        if (pid == 0)
            setsid();
    }
    return pid;
}

static void on_run(sbp_msg *m)
{
    if (m->nstrs < 2 || m->fds[0] < 0 || m->fds[1] < 0) {
        send_msg(SBP_FAILED, m->id, EINVAL, "malformed RUN");
        return;
    }
    cmd *slot = NULL;
    for (size_t i = 0; i < MAX_CMDS && slot == NULL; i++) {
        if (g_cmds[i].reaper == 0)
            slot = &g_cmds[i];
    }
    if (slot == NULL) {
        send_msg(SBP_FAILED, m->id, EAGAIN, "too many commands running in this sandbox");
        return;
    }
    int sp[2];
    if (pipe2(sp, O_CLOEXEC) != 0) {
        send_msg(SBP_FAILED, m->id, errno, "pipe");
        return;
    }
    long pid = start_reaper();
    /* A command killed a moment ago (its deadline, a terminate: the broker has already
     * answered for it) may still hold the process limit while the kernel tears its namespace
     * down, e.g. after a fork bomb on a busy machine. Wait for that teardown, at most 3 s,
     * rather than refuse the next command; a limit that no dying command holds fails at once.
     * Messages meanwhile wait in the socket. */
    for (int i = 0; pid < 0 && errno == EAGAIN && any_dying() && i < 60; i++) {
        (void)poll(NULL, 0, 50);
        reap();
        pid = start_reaper();
    }
    if (pid < 0) {
        int e = errno;
        close(sp[0]);
        close(sp[1]);
        send_msg(SBP_FAILED, m->id, e, "could not start the command (process limit?)");
        return;
    }
    if (pid == 0) {
        close(sp[0]);
        reaper_main(m, sp[1]);
    }
    close(sp[1]);
    slot->id = m->id;
    slot->reaper = (pid_t)pid;
    slot->status_fd = sp[0];
    slot->dying = false;
    send_msg(SBP_STARTED, m->id, (int32_t)pid, NULL);
}

/* CONNECT: a TCP socket to 127.0.0.1:port in the sandbox's own network namespace, sent back
 * to the broker (its preview relay); the connect is non-blocking, so init never waits. */
static void on_connect(const sbp_msg *m)
{
    if (m->a < 1 || m->a > 65535) {
        send_msg(SBP_FAILED, m->id, EINVAL, "port out of range");
        return;
    }
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        send_msg(SBP_FAILED, m->id, errno, strerror(errno));
        return;
    }
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)m->a)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0 && errno != EINPROGRESS) {
        int e = errno;
        close(fd);
        send_msg(SBP_FAILED, m->id, e, strerror(e));
        return;
    }
    sbp_msg r = {.op = SBP_CONNECTED, .id = m->id, .b = -1, .fds = {fd, -1}};
    char out[64];
    (void)sbp_send(g_sock, &r, out, sizeof out);
    close(fd);
}

static void reap(void)
{
    for (;;) {
        int st = 0;
        pid_t p = waitpid(-1, &st, WNOHANG);
        if (p <= 0)
            return;
        for (size_t i = 0; i < MAX_CMDS; i++) {
            if (g_cmds[i].reaper != p)
                continue;
            int main_st = SIGKILL; /* the namespace was killed before the main exited */
            int got = 0;
            if (read(g_cmds[i].status_fd, &got, sizeof got) == (ssize_t)sizeof got)
                main_st = got;
            close(g_cmds[i].status_fd);
            g_cmds[i].reaper = 0;
            send_msg(SBP_EXITED, g_cmds[i].id, main_st, NULL);
            break;
        }
    }
}

/* The decimal number s in [min, max], or -1 when s is not one (empty, trailing bytes, out of
 * range): a port that does not parse must not become port 0 or wrap to another port. */
static long parse_arg(const char *s, long min, long max)
{
    char *end;
    errno = 0;
    long n = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || n < min || n > max)
        return -1;
    return n;
}

int main(int argc, char **argv)
{
    uint16_t deny[64];
    size_t ndeny = 0;
    for (int i = 1; i + 1 < argc && ndeny < 64; i += 2) {
        if (strcmp(argv[i], "--deny-port") == 0) {
            long port = parse_arg(argv[i + 1], 1, 65535);
            if (port < 0) {
                fprintf(stderr, "sandbox-init: --deny-port %s is not a port\n", argv[i + 1]);
                return 2;
            }
            deny[ndeny++] = (uint16_t)port;
        } else if (strcmp(argv[i], "--workspace") == 0) {
            g_workspace = argv[i + 1];
        } else if (strcmp(argv[i], "--sock") == 0) {
            g_sock = (int)parse_arg(argv[i + 1], 0, INT_MAX);
        }
    }
    if (g_sock < 0)
        return 2;
    /* Nothing bwrap or the broker left open reaches a command: only 0-2 and the channel. */
    if (g_sock > 3)
        syscall(SYS_close_range, 3U, (unsigned)g_sock - 1, 0U);
    syscall(SYS_close_range, (unsigned)g_sock + 1, ~0U, 0U);
    if (ndeny > 0) {
        if (kx_jail_deny_tcp_ports(deny, ndeny) != KX_OK) {
            send_msg(SBP_FAILED, 0, ENOSYS,
                     "Landlock network rules are not available: cannot deny the suite's ports");
            return 1;
        }
    }
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigprocmask(SIG_BLOCK, &chld, NULL);
    int sfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
    if (sfd < 0)
        return 1;
    send_msg(SBP_READY, 0, 0, NULL);
    for (;;) {
        struct pollfd p[2] = {{.fd = g_sock, .events = POLLIN}, {.fd = sfd, .events = POLLIN}};
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            return 1;
        }
        if (p[1].revents) {
            struct signalfd_siginfo si;
            while (read(sfd, &si, sizeof si) > 0) {
            }
            reap();
        }
        if (p[0].revents) {
            sbp_msg m;
            int r = sbp_recv(g_sock, &m, g_buf, sizeof g_buf);
            if (r == 0)
                return 0; /* the broker is gone: the sandbox ends */
            if (r < 0) {
                if (errno == EAGAIN)
                    continue;
                if (errno == EPROTO)
                    continue;
                return 1;
            }
            if (m.op == SBP_RUN) {
                on_run(&m);
            } else if (m.op == SBP_CONNECT) {
                on_connect(&m);
            } else if (m.op == SBP_KILL) {
                cmd *c = find_cmd(m.id);
                if (c != NULL) {
                    kill(c->reaper, SIGKILL);
                    c->dying = true;
                }
            }
            close_fds(&m);
        }
    }
}
