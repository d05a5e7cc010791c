/* proc.c — spawning child programs in their own session with pipes and a pidfd, and killing
 * their whole process group; for the sandbox-broker's commands and the mcp-proxy's stdio
 * servers.
 *
 * Everything that can fail with a message (PATH lookup, pipes, files) is done in the parent
 * before fork. The child only makes async-signal-safe calls: default signal dispositions and
 * an empty signal mask (a service blocks SIGTERM for its signalfd, and blocked or ignored
 * signals would be inherited across exec), setsid, chdir, the three standard fds, every other
 * fd marked close-on-exec, execve. If any step fails, the child writes errno into a
 * close-on-exec pipe and exits 127; the parent reads that pipe (it reads EOF when exec
 * succeeded) and so returns an error that names the program. */
#include "kx/proc.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kx/log.h"

#define DEFAULT_PATH "/usr/local/bin:/usr/bin:/bin"

extern char **environ;

/* ---- before fork ----------------------------------------------------------------------- */

static const char *path_of(const char *const *envp)
{
    if (envp == NULL) {
        const char *p = getenv("PATH");
        return p != NULL ? p : DEFAULT_PATH;
    }
    for (size_t i = 0; envp[i] != NULL; i++)
        if (strncmp(envp[i], "PATH=", 5) == 0)
            return envp[i] + 5;
    return DEFAULT_PATH;
}

/* The file to execve for prog: prog itself when it contains '/', else the first executable
 * <dir>/<prog> along path. KX_ERR_NOT_FOUND when there is none. */
static kx_err resolve(const char *prog, const char *path, char *out, size_t len)
{
    if (strchr(prog, '/') != NULL) {
        if (snprintf(out, len, "%s", prog) >= (int)len)
            return KX_ERR_INVALID;
        return KX_OK;
    }
    const char *p = path;
    while (*p != '\0') {
        size_t dlen = strcspn(p, ":");
        /* An empty PATH element means the current directory. */
        int n = dlen == 0 ? snprintf(out, len, "./%s", prog)
                          : snprintf(out, len, "%.*s/%s", (int)dlen, p, prog);
        if (n > 0 && (size_t)n < len && access(out, X_OK) == 0)
            return KX_OK;
        p += dlen;
        if (*p == ':')
            p++;
    }
    return KX_ERR_NOT_FOUND;
}

/* The fds one standard stream gets: child end (dup'ed onto 0/1/2) and parent end (pipe only,
 * else -1). All created close-on-exec. */
typedef struct stream_fds {
    int child;
    int parent;
} stream_fds;

static kx_err open_stream(kx_proc_io io, bool is_input, const char *path, stream_fds *s)
{
    s->child = s->parent = -1;
    if (io == KX_PROC_PIPE) {
        int p[2];
        if (pipe2(p, O_CLOEXEC) != 0) {
            kx_error("proc: pipe2: %s", strerror(errno));
            return KX_ERR_IO;
        }
        s->child = is_input ? p[0] : p[1];
        s->parent = is_input ? p[1] : p[0];
        int fl = fcntl(s->parent, F_GETFL);
        if (fl < 0 || fcntl(s->parent, F_SETFL, fl | O_NONBLOCK) != 0) {
            kx_error("proc: making a pipe non-blocking: %s", strerror(errno));
            close(p[0]);
            close(p[1]);
            s->child = s->parent = -1;
            return KX_ERR_IO;
        }
        return KX_OK;
    }
    if (io == KX_PROC_FILE && !is_input) {
        if (path == NULL) {
            kx_error("proc: KX_PROC_FILE needs a path");
            return KX_ERR_INVALID;
        }
        s->child = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        if (s->child < 0) {
            kx_error("proc: cannot open %s: %s", path, strerror(errno));
            return KX_ERR_IO;
        }
        return KX_OK;
    }
    if (io == KX_PROC_FILE) {
        kx_error("proc: stdin cannot be KX_PROC_FILE");
        return KX_ERR_INVALID;
    }
    s->child = open("/dev/null", (is_input ? O_RDONLY : O_WRONLY) | O_CLOEXEC);
    if (s->child < 0) {
        kx_error("proc: cannot open /dev/null: %s", strerror(errno));
        return KX_ERR_IO;
    }
    return KX_OK;
}

static void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

/* ---- in the child ---------------------------------------------------------------------- */

/* What the child was doing when it failed, reported to the parent with errno. */
enum child_step {
    STEP_EXEC,
    STEP_SETSID,
    STEP_CHDIR,
    STEP_FDS
};

static void child_fail(int errfd, int step)
{
    int report[2] = {step, errno};
    ssize_t w = write(errfd, report, sizeof report);
    (void)w;
    _exit(127);
}

/* Never returns. Only async-signal-safe calls. */
static void child(const char *file, const char *const *argv, char *const *envp, const char *cwd,
                  const int std[3], int errfd)
{
    sigset_t none;
    sigemptyset(&none);
    for (int sig = 1; sig < NSIG; sig++)
        signal(sig, SIG_DFL); /* fails harmlessly for SIGKILL, SIGSTOP, RT internals */
    sigprocmask(SIG_SETMASK, &none, NULL);
    if (setsid() < 0)
        child_fail(errfd, STEP_SETSID);
    if (cwd != NULL && chdir(cwd) != 0)
        child_fail(errfd, STEP_CHDIR);
    /* First move the sources above 2 so no dup2 below overwrites another source. */
    int src[3];
    for (int i = 0; i < 3; i++) {
        src[i] = fcntl(std[i], F_DUPFD_CLOEXEC, 3);
        if (src[i] < 0)
            child_fail(errfd, STEP_FDS);
    }
    for (int i = 0; i < 3; i++) /* dup2's target is not close-on-exec */
        if (dup2(src[i], i) < 0)
            child_fail(errfd, STEP_FDS);
    /* Whatever else this process has open (the service's sockets...) stays behind. */
    if (close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) != 0) {
        for (int fd = 3; fd < 1024; fd++)
            if (fd != errfd)
                fcntl(fd, F_SETFD, FD_CLOEXEC);
    }
    execve(file, (char *const *)argv, envp);
    child_fail(errfd, STEP_EXEC);
}

/* ---- public ---------------------------------------------------------------------------- */

kx_err kx_proc_spawn(const kx_proc_opts *opts, kx_proc *out)
{
    out->pid = -1;
    out->pidfd = out->in_fd = out->out_fd = out->err_fd = -1;
    if (opts->argv == NULL || opts->argv[0] == NULL) {
        kx_error("proc: spawn without a program");
        return KX_ERR_INVALID;
    }
    const char *prog = opts->argv[0];
    char file[PATH_MAX];
    kx_err err = resolve(prog, path_of(opts->envp), file, sizeof file);
    if (err != KX_OK) {
        kx_error("proc: %s: program not found in PATH %s", prog, path_of(opts->envp));
        return err;
    }

    stream_fds s_in, s_out, s_err;
    s_in.child = s_in.parent = s_out.child = s_out.parent = s_err.child = s_err.parent = -1;
    int errpipe[2] = {-1, -1};
    err = open_stream(opts->in, true, NULL, &s_in);
    if (err == KX_OK)
        err = open_stream(opts->out, false, opts->out_path, &s_out);
    if (err == KX_OK) {
        bool same_file = opts->err == KX_PROC_FILE && opts->out == KX_PROC_FILE &&
            opts->err_path != NULL && opts->out_path != NULL &&
            strcmp(opts->err_path, opts->out_path) == 0;
        if (same_file) {
            s_err.child = fcntl(s_out.child, F_DUPFD_CLOEXEC, 0);
            if (s_err.child < 0)
                err = KX_ERR_IO;
        } else {
            err = open_stream(opts->err, false, opts->err_path, &s_err);
        }
    }
    if (err == KX_OK && pipe2(errpipe, O_CLOEXEC) != 0) {
        kx_error("proc: pipe2: %s", strerror(errno));
        err = KX_ERR_IO;
    }
    pid_t pid = -1;
    if (err == KX_OK) {
        pid = fork();
        if (pid < 0) {
            kx_error("proc: fork for %s: %s", prog, strerror(errno));
            err = KX_ERR_IO;
        } else if (pid == 0) {
            const int std[3] = {s_in.child, s_out.child, s_err.child};
            child(file, opts->argv, opts->envp != NULL ? (char *const *)opts->envp : environ,
                  opts->cwd, std, errpipe[1]);
        }
    }
    close_fd(&s_in.child);
    close_fd(&s_out.child);
    close_fd(&s_err.child);
    close_fd(&errpipe[1]);

    if (err == KX_OK) {
        /* EOF: exec succeeded (the pipe closed on exec). Else {step, errno}. */
        int report[2] = {0, 0};
        ssize_t n;
        do {
            n = read(errpipe[0], report, sizeof report);
        } while (n < 0 && errno == EINTR);
        if (n > 0) {
            static const char *const steps[] = {"execve", "setsid", "chdir", "dup2"};
            const char *step = report[0] >= 0 && report[0] < 4 ? steps[report[0]] : "?";
            kx_error("proc: cannot start %s: %s(%s): %s", prog, step,
                     report[0] == STEP_CHDIR ? opts->cwd : file, strerror(report[1]));
            waitpid(pid, NULL, 0);
            err = report[1] == ENOENT ? KX_ERR_NOT_FOUND : KX_ERR_IO;
        }
    }
    close_fd(&errpipe[0]);
    if (err == KX_OK) {
        out->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
        if (out->pidfd < 0) {
            kx_error("proc: pidfd_open(%d) for %s: %s", (int)pid, prog, strerror(errno));
            kill(-pid, SIGKILL);
            waitpid(pid, NULL, 0);
            err = KX_ERR_IO;
        }
    }
    if (err != KX_OK) {
        close_fd(&s_in.parent);
        close_fd(&s_out.parent);
        close_fd(&s_err.parent);
        return err;
    }
    out->pid = pid;
    out->in_fd = s_in.parent;
    out->out_fd = s_out.parent;
    out->err_fd = s_err.parent;
    kx_debug("proc: started %s as pid %d", prog, (int)pid);
    return KX_OK;
}

kx_err kx_proc_kill_group(const kx_proc *p, int sig)
{
    if (p->pid <= 0)
        return KX_ERR_NOT_FOUND;
    if (kill(-p->pid, sig) != 0) {
        if (errno == ESRCH)
            return KX_ERR_NOT_FOUND;
        kx_error("proc: kill(-%d, %d): %s", (int)p->pid, sig, strerror(errno));
        return KX_ERR_IO;
    }
    return KX_OK;
}

kx_err kx_proc_reap(kx_proc *p, int *wstatus)
{
    if (p->pid <= 0)
        return KX_ERR_NOT_FOUND;
    int st = 0;
    pid_t r;
    do {
        r = waitpid(p->pid, &st, WNOHANG);
    } while (r < 0 && errno == EINTR);
    if (r == 0)
        return KX_ERR_TIMEOUT;
    if (r < 0) {
        int e = errno;
        kx_error("proc: waitpid(%d): %s", (int)p->pid, strerror(e));
        return e == ECHILD ? KX_ERR_NOT_FOUND : KX_ERR_IO;
    }
    if (wstatus != NULL)
        *wstatus = st;
    return KX_OK;
}

void kx_proc_close(kx_proc *p)
{
    close_fd(&p->pidfd);
    close_fd(&p->in_fd);
    close_fd(&p->out_fd);
    close_fd(&p->err_fd);
}
