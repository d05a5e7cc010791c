/* stdio_transport.c — an MCP server child process on the loop (see stdio_transport.h).
 *
 * Each of the child's four file descriptors is watched on the loop: stdout and stderr for
 * reading (their bytes go through a linebuf each), the pidfd for the exit, and stdin for
 * writing only while the write queue (a kx_buf with a read offset) holds bytes the pipe did
 * not take. */
#include "stdio_transport.h"

#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kx/buf.h"
#include "kx/log.h"
#include "kx/proc.h"
#include "kx/time.h"
#include "linebuf.h"
#include "log_budget.h"

#define READ_CHUNK 65536
#define READ_BUDGET (1u << 20) /* bytes read per wake-up, so one server cannot hog the loop */
#define STDERR_MAX_LINE 4000   /* stderr lines are logged in pieces of this */

struct mcp_stdio {
    kx_loop *loop;
    char name[80];
    kx_proc proc;
    mcp_stdio_cbs cbs;
    void *arg;
    mcp_linebuf out_lb, err_lb;
    mcp_log_budget err_budget; /* stderr lines we log (the server writes as fast as it likes) */
    kx_buf wq;                 /* write queue: bytes wq.s[wq_off, wq.len) still to write */
    size_t wq_off;
    bool close_when_flushed; /* mcp_stdio_close_stdin asked while bytes were queued */
    bool broken;             /* on_broken was called; stdout is no longer read */
    bool exited;             /* reaped; on_exit was called */
    kx_timer *grace_timer;   /* kills a server whose stdout or stdin closed but lives on */
};

/* ---- closing one side ---- */

static void close_fd(mcp_stdio *t, int *fd)
{
    if (*fd < 0)
        return;
    kx_loop_unwatch(t->loop, *fd);
    close(*fd);
    *fd = -1;
}

static void on_grace_timeout(kx_loop *loop, void *arg)
{
    mcp_stdio *t = arg;
    t->grace_timer = NULL;
    kx_warn("mcp server '%s' (pid %d) closed its stdin or stdout but did not exit within "
            "%d ms; killing its process group",
            t->name, (int)t->proc.pid, MCP_STDIO_STDOUT_EOF_GRACE_MS);
    mcp_stdio_kill(t, SIGKILL);
}

/* stdout or stdin is gone: a healthy server is exiting; one that lingers is killed. */
static void arm_grace(mcp_stdio *t)
{
    if (t->exited || t->grace_timer != NULL)
        return;
    t->grace_timer = kx_loop_timer(t->loop, MCP_STDIO_STDOUT_EOF_GRACE_MS, on_grace_timeout, t);
    if (t->grace_timer == NULL)
        mcp_stdio_kill(t, SIGKILL); /* cannot wait: do not leave it half-open */
}

/* Forgets the queued bytes; keeps the memory. */
static void queue_empty(mcp_stdio *t)
{
    kx_buf_clear(&t->wq);
    t->wq_off = 0;
}

static void set_broken(mcp_stdio *t, const char *why)
{
    if (t->broken || t->exited)
        return;
    t->broken = true;
    kx_error("mcp server '%s' (pid %d): %s; killing its process group", t->name, (int)t->proc.pid,
             why);
    close_fd(t, &t->proc.out_fd);
    queue_empty(t);
    close_fd(t, &t->proc.in_fd);
    mcp_stdio_kill(t, SIGKILL);
    t->cbs.on_broken(why, t->arg);
}

/* ---- writing ---- */

static void on_stdin_writable(kx_loop *loop, int fd, uint32_t events, void *arg);

/* Writes as much of the queue as the pipe takes; watches for EPOLLOUT when some is left. */
static void flush_queue(mcp_stdio *t)
{
    while (t->wq_off < t->wq.len && t->proc.in_fd >= 0) {
        ssize_t n = write(t->proc.in_fd, t->wq.s + t->wq_off, t->wq.len - t->wq_off);
        if (n > 0) {
            t->wq_off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN) {
            if (kx_loop_watch(t->loop, t->proc.in_fd, EPOLLOUT, on_stdin_writable, t) != KX_OK)
                set_broken(t, "cannot watch its stdin");
            return;
        }
        /* EPIPE and friends: it closed its stdin, which a server does when it is exiting. */
        kx_warn("mcp server '%s' (pid %d): writing to its stdin failed: %s", t->name,
                (int)t->proc.pid, n < 0 ? strerror(errno) : "wrote nothing");
        queue_empty(t);
        close_fd(t, &t->proc.in_fd);
        arm_grace(t);
        return;
    }
    queue_empty(t);
    if (t->proc.in_fd >= 0) {
        if (t->close_when_flushed)
            close_fd(t, &t->proc.in_fd);
        else
            kx_loop_watch(t->loop, t->proc.in_fd, 0, on_stdin_writable, t);
    }
}

static void on_stdin_writable(kx_loop *loop, int fd, uint32_t events, void *arg)
{
    flush_queue(arg);
}

kx_err mcp_stdio_send(mcp_stdio *t, const char *text, size_t len)
{
    if (t->proc.in_fd < 0 || t->broken || t->exited || t->close_when_flushed)
        return KX_ERR_UNAVAILABLE;
    size_t queued = t->wq.len - t->wq_off;
    if (queued + len + 1 > MCP_STDIO_MAX_QUEUE) {
        char why[160];
        snprintf(why, sizeof why, "it is not reading its stdin (%zu bytes waiting)", queued);
        set_broken(t, why);
        return KX_ERR_UNAVAILABLE;
    }
    if (t->wq_off > 0 && t->wq_off == t->wq.len)
        queue_empty(t);
    if (t->wq_off > 0 && t->wq.len + len + 2 > t->wq.cap) { /* compact before growing */
        kx_buf_consume(&t->wq, t->wq_off);
        t->wq_off = 0;
    }
    kx_err err = kx_buf_reserve(&t->wq, len + 1); /* the message and its "\n" */
    if (err != KX_OK) {
        /* The queue's out-of-memory state lasts until it is emptied (written out); with
         * nothing queued, empty it now so that the next message is tried afresh. */
        if (queued == 0)
            queue_empty(t);
        return err;
    }
    kx_buf_add(&t->wq, text, len);
    kx_buf_add(&t->wq, "\n", 1);
    if (queued == 0) /* otherwise EPOLLOUT is already watched */
        flush_queue(t);
    return KX_OK;
}

void mcp_stdio_close_stdin(mcp_stdio *t)
{
    if (t->proc.in_fd < 0)
        return;
    if (t->wq_off < t->wq.len)
        t->close_when_flushed = true;
    else
        close_fd(t, &t->proc.in_fd);
}

/* ---- reading ---- */

static void stdout_line(const char *line, size_t len, void *arg)
{
    mcp_stdio *t = arg;
    if (!t->broken)
        t->cbs.on_line(line, len, t->arg);
}

static void stderr_line(const char *line, size_t len, void *arg)
{
    mcp_stdio *t = arg;
    uint64_t dropped = 0;
    if (len == 0 || !mcp_log_budget_take(&t->err_budget, kx_mono_ms(), &dropped))
        return;
    mcp_log_dropped(t->name, "stderr lines", dropped);
    kx_info("mcp server '%s' stderr: %s", t->name, line);
}

/* The count of stderr lines not logged since the last one that was. */
static void stderr_dropped(mcp_stdio *t)
{
    mcp_log_dropped(t->name, "stderr lines", t->err_budget.dropped);
    t->err_budget.dropped = 0;
}

/* Reads fd until EAGAIN, EOF or the budget. Returns false at EOF or on a read error. */
static bool drain(mcp_stdio *t, int fd, bool is_stdout, size_t budget)
{
    char buf[READ_CHUNK];
    size_t total = 0;
    while (total < budget && !(is_stdout && t->broken)) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return true;
        if (n <= 0) {
            if (n < 0)
                kx_warn("mcp server '%s': reading its %s failed: %s", t->name,
                        is_stdout ? "stdout" : "stderr", strerror(errno));
            return false;
        }
        total += (size_t)n;
        if (is_stdout) {
            kx_err err = mcp_linebuf_feed(&t->out_lb, buf, (size_t)n, stdout_line, t);
            if (err == KX_ERR_PROTOCOL) {
                char why[128];
                snprintf(why, sizeof why, "it sent a message longer than %u bytes",
                         MCP_STDIO_MAX_LINE);
                set_broken(t, why);
                return true; /* set_broken closed stdout already */
            }
            if (err != KX_OK) {
                set_broken(t, "out of memory buffering its stdout");
                return true;
            }
        } else if (mcp_linebuf_feed(&t->err_lb, buf, (size_t)n, stderr_line, t) != KX_OK) {
            kx_warn("mcp server '%s': out of memory buffering its stderr", t->name);
        }
    }
    return true;
}

static void on_stdout(kx_loop *loop, int fd, uint32_t events, void *arg)
{
    mcp_stdio *t = arg;
    if (!drain(t, fd, true, READ_BUDGET)) {
        mcp_linebuf_flush(&t->out_lb, stdout_line, t);
        close_fd(t, &t->proc.out_fd);
        arm_grace(t);
    }
}

static void on_stderr(kx_loop *loop, int fd, uint32_t events, void *arg)
{
    mcp_stdio *t = arg;
    if (!drain(t, fd, false, READ_BUDGET)) {
        mcp_linebuf_flush(&t->err_lb, stderr_line, t);
        close_fd(t, &t->proc.err_fd);
    }
}

/* The child exited: read what it left in the pipes, reap it, report. */
static void on_pidfd(kx_loop *loop, int fd, uint32_t events, void *arg)
{
    mcp_stdio *t = arg;
    if (t->proc.out_fd >= 0 && !t->broken)
        drain(t, t->proc.out_fd, true, SIZE_MAX);
    if (t->proc.out_fd >= 0 && !t->broken)
        mcp_linebuf_flush(&t->out_lb, stdout_line, t);
    if (t->proc.err_fd >= 0)
        drain(t, t->proc.err_fd, false, SIZE_MAX);
    mcp_linebuf_flush(&t->err_lb, stderr_line, t);

    /* Grandchildren may still hold the group: it goes with its leader. Killed before the
     * reap, while the exited leader is a zombie and its pid (the pgid) cannot be reused. */
    kx_proc_kill_group(&t->proc, SIGKILL);
    int wstatus = 0;
    kx_err err = kx_proc_reap(&t->proc, &wstatus);
    if (err == KX_ERR_TIMEOUT)
        return; /* not exited after all (the pidfd woke early): keep waiting */
    if (err != KX_OK)
        kx_warn("mcp server '%s' (pid %d): reaping failed: %s", t->name, (int)t->proc.pid,
                kx_err_str(err));
    t->exited = true;
    if (t->grace_timer != NULL) {
        kx_timer_cancel(t->grace_timer);
        t->grace_timer = NULL;
    }
    close_fd(t, &t->proc.in_fd);
    close_fd(t, &t->proc.out_fd);
    close_fd(t, &t->proc.err_fd);
    close_fd(t, &t->proc.pidfd);
    t->cbs.on_exit(wstatus, t->arg); /* last: the owner may free t in there */
}

/* ---- lifecycle ---- */

void mcp_stdio_discard(kx_proc *proc)
{
    if (proc->pid > 0) {
        kx_proc_kill_group(proc, SIGKILL);
        int wstatus;
        while (waitpid(proc->pid, &wstatus, 0) < 0 && errno == EINTR) {
        }
    }
    kx_proc_close(proc);
}

kx_err mcp_stdio_adopt(kx_loop *loop, const char *name, kx_proc *proc, const mcp_stdio_cbs *cbs,
                       void *arg, mcp_stdio **out)
{
    mcp_stdio *t = calloc(1, sizeof *t);
    if (t == NULL) {
        mcp_stdio_discard(proc);
        return KX_ERR_NOMEM;
    }
    t->loop = loop;
    snprintf(t->name, sizeof t->name, "%s", name);
    t->cbs = *cbs;
    t->arg = arg;
    t->proc = *proc;
    mcp_linebuf_init(&t->out_lb, MCP_STDIO_MAX_LINE, false);
    mcp_linebuf_init(&t->err_lb, STDERR_MAX_LINE, true);
    kx_err err;
    if ((err = kx_loop_watch(loop, t->proc.out_fd, EPOLLIN, on_stdout, t)) != KX_OK ||
        (err = kx_loop_watch(loop, t->proc.err_fd, EPOLLIN, on_stderr, t)) != KX_OK ||
        (err = kx_loop_watch(loop, t->proc.pidfd, EPOLLIN, on_pidfd, t)) != KX_OK ||
        (err = kx_loop_watch(loop, t->proc.in_fd, 0, on_stdin_writable, t)) != KX_OK) {
        kx_error("mcp server '%s': cannot watch its pipes on the loop", name);
        mcp_stdio_free(t);
        return err;
    }
    *out = t;
    return KX_OK;
}

kx_err mcp_stdio_start(kx_loop *loop, const char *name, const char *const *argv,
                       const char *const *envp, const mcp_stdio_cbs *cbs, void *arg,
                       mcp_stdio **out)
{
    kx_proc proc = {.pid = -1, .pidfd = -1, .in_fd = -1, .out_fd = -1, .err_fd = -1};
    kx_proc_opts opts = {.argv = argv,
                         .envp = envp,
                         .cwd = NULL,
                         .in = KX_PROC_PIPE,
                         .out = KX_PROC_PIPE,
                         .err = KX_PROC_PIPE};
    kx_err err = kx_proc_spawn(&opts, &proc);
    if (err != KX_OK)
        return err;
    return mcp_stdio_adopt(loop, name, &proc, cbs, arg, out);
}

void mcp_stdio_kill(mcp_stdio *t, int sig)
{
    if (t->exited || t->proc.pid <= 0)
        return;
    kx_err err = kx_proc_kill_group(&t->proc, sig);
    if (err != KX_OK && err != KX_ERR_NOT_FOUND)
        kx_warn("mcp server '%s' (pid %d): signal %d to its group failed: %s", t->name,
                (int)t->proc.pid, sig, kx_err_str(err));
}

pid_t mcp_stdio_pid(const mcp_stdio *t)
{
    return t->proc.pid;
}

void mcp_stdio_free(mcp_stdio *t)
{
    if (t == NULL)
        return;
    if (t->grace_timer != NULL)
        kx_timer_cancel(t->grace_timer);
    close_fd(t, &t->proc.in_fd);
    close_fd(t, &t->proc.out_fd);
    close_fd(t, &t->proc.err_fd);
    if (!t->exited && t->proc.pid > 0) {
        mcp_stdio_kill(t, SIGKILL);
        int wstatus;
        while (waitpid(t->proc.pid, &wstatus, 0) < 0 && errno == EINTR) {
        }
    }
    close_fd(t, &t->proc.pidfd);
    kx_proc_close(&t->proc);
    stderr_dropped(t);
    mcp_linebuf_free(&t->out_lb);
    mcp_linebuf_free(&t->err_lb);
    kx_buf_free(&t->wq);
    free(t);
}
