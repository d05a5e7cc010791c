/* exec.c — one command in a project's sandbox, from spawn to reap (see exec.h).
 *
 * The command runs as /bin/sh -c <command> in its own session and process group (kx_proc),
 * with a clean environment: the broker's own environment holds secrets and is never passed
 * on. A blocking exec's stdout and stderr are pipes watched on the loop and kept up to
 * max_output bytes each (the rest is read and dropped, so the command never blocks on a full
 * pipe); its pidfd says when it exited; a loop timer at kill_at SIGKILLs the whole group.
 *
 * The reply to a blocking exec is sent once, by reply_and_release(), when the first of these
 * happens: the process was reaped and both pipes reached EOF; SB_EOF_GRACE_MS passed after the
 * exit (a background grandchild still holds a pipe) or after the deadline kill. The exec is
 * freed when it has replied and its process has been reaped. */
#include "exec.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kx/buf.h"
#include "kx/log.h"
#include "kx/metrics.h"
#include "kx/pb.h"
#include "kx/proc.h"
#include "kx/uuid.h"
#include "reply.h"
#include "utf8.h"

#define READ_CHUNK 65536
#define READS_PER_WAKEUP 16         /* at most 1 MiB per callback, so one chatty command
                                       cannot starve the others on the loop */

struct sb_exec {
    sb_exec *prev, *next;
    sb_broker *b;
    natsMsg *req;                   /* the caller's request while a reply is owed */
    char exec_id[SB_EXEC_ID_MAX + 1];
    char project_id[KX_UUID_LEN + 1];
    char session_name[SB_SESSION_MAX + 1];
    char cwd[SB_FOLDER_MAX + 16];   /* sandbox-visible: /workspace[/folder] */
    char trace_id[33];
    bool blocking;
    kx_proc proc;
    bool reaped;
    int wstatus;
    bool timed_out;
    bool truncated;
    size_t max_output;
    kx_buf out, err;                /* up to max_output bytes of each (buf_append) */
    kx_timer *deadline_timer;
    kx_timer *grace_timer;
    int64_t started_mono;
};

static kx_counter *metric_execs(const char *outcome)
{
    char labels[64];
    snprintf(labels, sizeof labels, "outcome=\"%s\"", outcome);
    return kx_metrics_counter("kx_sandbox_execs_total", labels,
                              "Sandbox commands finished, by outcome");
}

/* ---- list of tracked execs ------------------------------------------------------------ */

static void set_running_gauge(const sb_broker *b)
{
    kx_gauge_set(kx_metrics_gauge("kx_sandbox_execs_running", "",
                                  "Commands the broker is tracking (blocking and background)"),
                 (int64_t)b->nexecs);
}

static void track(sb_broker *b, sb_exec *e)
{
    e->prev = NULL;
    e->next = b->execs;
    if (b->execs != NULL)
        b->execs->prev = e;
    b->execs = e;
    b->nexecs++;
    set_running_gauge(b);
}

static void untrack(sb_broker *b, sb_exec *e)
{
    if (e->prev != NULL)
        e->prev->next = e->next;
    else
        b->execs = e->next;
    if (e->next != NULL)
        e->next->prev = e->prev;
    b->nexecs--;
    set_running_gauge(b);
}

sb_exec *sb_exec_find(sb_broker *b, const char *exec_id)
{
    for (sb_exec *e = b->execs; e != NULL; e = e->next) {
        if (strcmp(e->exec_id, exec_id) == 0)
            return e;
    }
    return NULL;
}

sb_exec *sb_exec_next(const sb_exec *e)
{
    return e->next;
}

const char *sb_exec_project(const sb_exec *e)
{
    return e->project_id;
}

/* ---- output buffers ------------------------------------------------------------------- */

/* Keeps what fits under e->max_output; marks the exec truncated when bytes are dropped. Out of
 * memory keeps what was kept so far and drops the rest (kx_buf's out of memory is sticky). */
static void buf_append(sb_exec *e, kx_buf *buf, const char *data, size_t n)
{
    size_t room = buf->len < e->max_output ? e->max_output - buf->len : 0;
    size_t keep = n < room ? n : room;
    if (keep < n)
        e->truncated = true;
    if (keep == 0)
        return;
    bool was_oom = buf->oom;
    if (kx_buf_add(buf, data, keep) != KX_OK) {
        if (!was_oom)
            kx_error("sandbox: out of memory keeping output of exec %s; output dropped",
                     e->exec_id);
        e->truncated = true;
    }
}

/* Reads what the pipe has now. True when the pipe is finished (EOF or a read error). */
static bool pipe_read(sb_exec *e, int fd, kx_buf *buf)
{
    char chunk[READ_CHUNK];
    for (int i = 0; i < READS_PER_WAKEUP; i++) {
        ssize_t n = read(fd, chunk, sizeof chunk);
        if (n > 0) {
            buf_append(e, buf, chunk, (size_t)n);
            continue;
        }
        if (n == 0)
            return true;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return false;
        kx_warn("sandbox: reading output of exec %s failed: %s", e->exec_id, strerror(errno));
        return true;
    }
    return false;
}

static void pipe_close(sb_exec *e, int *fd)
{
    if (*fd < 0)
        return;
    kx_loop_unwatch(e->b->svc->loop, *fd);
    close(*fd);
    *fd = -1;
}

static bool pipes_open(const sb_exec *e)
{
    return e->proc.out_fd >= 0 || e->proc.err_fd >= 0;
}

/* ---- finishing ------------------------------------------------------------------------ */

static void exec_free(sb_exec *e)
{
    sb_broker *b = e->b;
    untrack(b, e);
    kx_timer_cancel(e->deadline_timer);
    kx_timer_cancel(e->grace_timer);
    pipe_close(e, &e->proc.out_fd);
    pipe_close(e, &e->proc.err_fd);
    if (e->proc.pidfd >= 0)
        kx_loop_unwatch(b->svc->loop, e->proc.pidfd);
    kx_proc_close(&e->proc);
    if (e->req != NULL)
        natsMsg_Destroy(e->req);
    kx_buf_free(&e->out);
    kx_buf_free(&e->err);
    free(e);
    sb_drain_check(b);
}

/* exit_code / term_signal as the reply reports them (128 + signal, like a shell, when the
 * command was killed, so that "exit_code == 0" alone means success). */
static void exit_status(const sb_exec *e, int *exit_code, int *term_signal)
{
    *exit_code = 0;
    *term_signal = 0;
    if (!e->reaped) {
        if (e->timed_out) {
            *term_signal = SIGKILL;
            *exit_code = 128 + SIGKILL;
        }
        return;
    }
    if (WIFEXITED(e->wstatus)) {
        *exit_code = WEXITSTATUS(e->wstatus);
    } else if (WIFSIGNALED(e->wstatus)) {
        *term_signal = WTERMSIG(e->wstatus);
        *exit_code = 128 + *term_signal;
    }
}

/* Sends the blocking exec's result (once), then frees the exec if its process is reaped. */
static void reply_and_release(sb_exec *e)
{
    kx_timer_cancel(e->deadline_timer);
    e->deadline_timer = NULL;
    kx_timer_cancel(e->grace_timer);
    e->grace_timer = NULL;
    if (e->proc.out_fd >= 0)
        (void)pipe_read(e, e->proc.out_fd, &e->out);
    if (e->proc.err_fd >= 0)
        (void)pipe_read(e, e->proc.err_fd, &e->err);
    pipe_close(e, &e->proc.out_fd);
    pipe_close(e, &e->proc.err_fd);

    if (e->req != NULL) {
        char *out = sb_utf8_sanitize(e->out.s ? e->out.s : "", e->out.len, NULL);
        char *err = sb_utf8_sanitize(e->err.s ? e->err.s : "", e->err.len, NULL);
        Kx__V1__SandboxExecResult res = KX__V1__SANDBOX_EXEC_RESULT__INIT;
        int exit_code, term_signal;
        exit_status(e, &exit_code, &term_signal);
        res.exec_id = e->exec_id;
        res.started = true;
        res.completed = e->reaped && !e->timed_out;
        res.exit_code = exit_code;
        res.term_signal = term_signal;
        res.timed_out = e->timed_out;
        res.stdout = out ? out : "";
        res.stderr = err ? err : "";
        res.truncated = e->truncated || out == NULL || err == NULL;
        res.cwd = e->cwd;
        res.session_name = e->session_name;
        res.duration_ms = kx_mono_ms() - e->started_mono;
        sb_reply_result(e->b, e->req, &res);
        kx_log(KX_LOG_INFO, NULL, e->trace_id,
               "sandbox: exec %s finished: exit_code %d, signal %d, timed_out %s, "
               "%zu+%zu output bytes%s, %lld ms",
               e->exec_id, exit_code, term_signal, e->timed_out ? "true" : "false",
               e->out.len, e->err.len, e->truncated ? " (truncated)" : "",
               (long long)res.duration_ms);
        kx_counter_add(metric_execs(e->timed_out ? "timed_out" : "completed"), 1);
        free(out);
        free(err);
        natsMsg_Destroy(e->req);
        e->req = NULL;
    }
    if (e->reaped)
        exec_free(e);
}

static void on_grace(kx_loop *loop, void *arg)
{
    sb_exec *e = arg;
    e->grace_timer = NULL;
    reply_and_release(e);
}

static void arm_grace(sb_exec *e)
{
    if (e->grace_timer != NULL)
        return;
    e->grace_timer = kx_loop_timer(e->b->svc->loop, SB_EOF_GRACE_MS, on_grace, e);
    if (e->grace_timer == NULL)
        reply_and_release(e);   /* out of memory: answer now rather than never */
}

/* ---- loop callbacks ------------------------------------------------------------------- */

static void on_pipe(kx_loop *loop, int fd, uint32_t events, void *arg)
{
    sb_exec *e = arg;
    bool is_out = fd == e->proc.out_fd;
    if (pipe_read(e, fd, is_out ? &e->out : &e->err))
        pipe_close(e, is_out ? &e->proc.out_fd : &e->proc.err_fd);
    if (e->reaped && !pipes_open(e))
        reply_and_release(e);
}

static void on_proc_exit(kx_loop *loop, int fd, uint32_t events, void *arg)
{
    sb_exec *e = arg;
    int wstatus = 0;
    kx_err err = kx_proc_reap(&e->proc, &wstatus);
    if (err == KX_ERR_TIMEOUT)
        return;                 /* not exited after all; keep watching */
    kx_loop_unwatch(loop, fd);  /* a reaped pidfd stays readable: stop listening */
    if (err != KX_OK) {
        kx_warn("sandbox: reaping exec %s (pid %d) failed: %s", e->exec_id, (int)e->proc.pid,
                kx_err_str(err));
        wstatus = 0;
    }
    e->reaped = true;
    e->wstatus = wstatus;
    if (!e->blocking) {
        kx_log(KX_LOG_INFO, NULL, e->trace_id, "sandbox: background exec %s (session %s) "
               "exited with status 0x%x", e->exec_id, e->session_name, wstatus);
        kx_counter_add(metric_execs("background_exited"), 1);
        exec_free(e);
        return;
    }
    if (e->req == NULL || !pipes_open(e))
        reply_and_release(e);   /* frees too */
    else
        arm_grace(e);
}

static void on_deadline(kx_loop *loop, void *arg)
{
    sb_exec *e = arg;
    e->deadline_timer = NULL;
    if (e->reaped) {
        /* The command itself finished; only a background grandchild kept a pipe open. */
        reply_and_release(e);
        return;
    }
    e->timed_out = true;
    kx_err err = kx_proc_kill_group(&e->proc, SIGKILL);
    kx_log(KX_LOG_INFO, NULL, e->trace_id,
           "sandbox: exec %s reached its deadline: process group %d killed (%s)", e->exec_id,
           (int)e->proc.pid, kx_err_str(err));
    arm_grace(e);
}

/* ---- start ---------------------------------------------------------------------------- */

/* Creates the workspace (0700, lazily) and checks the folder; fills the command's real cwd
 * and HOME. */
static kx_err prepare_dirs(sb_broker *b, const sb_exec_spec *spec, char *home, size_t homelen,
                           char *cwd, size_t cwdlen, char *why, size_t whylen)
{
    if (sb_workspace_path(b->cfg.root, spec->project_id, "", home, homelen) != KX_OK ||
        sb_workspace_path(b->cfg.root, spec->project_id, spec->folder, cwd, cwdlen) != KX_OK) {
        snprintf(why, whylen, "folder '%s' makes the path too long", spec->folder);
        return KX_ERR_INVALID;
    }
    if (sb_mkdir_p(home, 0700) != KX_OK) {
        snprintf(why, whylen, "could not create the sandbox workspace: %s", strerror(errno));
        kx_error("sandbox: mkdir -p %s failed: %s", home, strerror(errno));
        return KX_ERR_INTERNAL;
    }
    struct stat st;
    if (stat(cwd, &st) != 0 || !S_ISDIR(st.st_mode)) {
        snprintf(why, whylen, "folder '%s' does not exist in the workspace (or is not a "
                 "directory)", spec->folder);
        return KX_ERR_INVALID;
    }
    return KX_OK;
}

/* For a non-blocking exec: <project>/.kx/sessions/<session>.log (directory created 0700). */
static kx_err session_log_path(sb_broker *b, const sb_exec_spec *spec, char *out, size_t outlen,
                               char *why, size_t whylen)
{
    char dir[4096];
    if (sb_sessions_dir(b->cfg.root, spec->project_id, dir, sizeof dir) != KX_OK) {
        snprintf(why, whylen, "sandbox root path is too long");
        return KX_ERR_INTERNAL;
    }
    if (sb_mkdir_p(dir, 0700) != KX_OK) {
        snprintf(why, whylen, "could not create the session log directory: %s",
                 strerror(errno));
        kx_error("sandbox: mkdir -p %s failed: %s", dir, strerror(errno));
        return KX_ERR_INTERNAL;
    }
    int n = snprintf(out, outlen, "%s/%s.log", dir, spec->session_name);
    if (n < 0 || (size_t)n >= outlen) {
        snprintf(why, whylen, "session log path is too long");
        return KX_ERR_INTERNAL;
    }
    return KX_OK;
}

static void reply_background_started(sb_exec *e, natsMsg *req)
{
    Kx__V1__SandboxExecResult res = KX__V1__SANDBOX_EXEC_RESULT__INIT;
    res.exec_id = e->exec_id;
    res.started = true;
    res.completed = false;
    res.cwd = e->cwd;
    res.session_name = e->session_name;
    res.duration_ms = kx_mono_ms() - e->started_mono;
    sb_reply_result(e->b, req, &res);
}

/* Last resort when the pidfd cannot be watched: wait (at most ~1 s) for the SIGKILLed
 * command to be reaped, then free the exec. */
static void reap_now(sb_exec *e)
{
    for (int i = 0; i < 1000 && !e->reaped; i++) {
        if (kx_proc_reap(&e->proc, &e->wstatus) != KX_ERR_TIMEOUT)
            e->reaped = true;
        else
            usleep(1000);
    }
    if (!e->reaped)
        kx_error("sandbox: exec %s (pid %d) could not be reaped; it stays a zombie",
                 e->exec_id, (int)e->proc.pid);
    exec_free(e);
}

kx_err sb_exec_start(sb_broker *b, const sb_exec_spec *spec, natsMsg *req, char *why,
                     size_t whylen)
{
    char home[4096], cwd[4096], log_path[4096];
    kx_err err = prepare_dirs(b, spec, home, sizeof home, cwd, sizeof cwd, why, whylen);
    if (err != KX_OK)
        return err;
    if (!spec->blocking) {
        err = session_log_path(b, spec, log_path, sizeof log_path, why, whylen);
        if (err != KX_OK)
            return err;
    }

    sb_exec *e = calloc(1, sizeof *e);
    if (e == NULL) {
        snprintf(why, whylen, "out of memory");
        return KX_ERR_NOMEM;
    }
    e->b = b;
    e->blocking = spec->blocking;
    e->max_output = spec->max_output;
    e->proc.pidfd = e->proc.in_fd = e->proc.out_fd = e->proc.err_fd = -1;
    snprintf(e->exec_id, sizeof e->exec_id, "%s", spec->exec_id);
    snprintf(e->project_id, sizeof e->project_id, "%s", spec->project_id);
    snprintf(e->session_name, sizeof e->session_name, "%s", spec->session_name);
    snprintf(e->trace_id, sizeof e->trace_id, "%s", spec->trace_id ? spec->trace_id : "");
    if (sb_visible_cwd(spec->folder, e->cwd, sizeof e->cwd) != KX_OK) {
        free(e);
        snprintf(why, whylen, "folder '%s' is too long", spec->folder);
        return KX_ERR_INVALID;
    }

    /* The command's whole environment: nothing of the broker's leaks in. */
    char env_home[4200], env_project[64];
    snprintf(env_home, sizeof env_home, "HOME=%s", home);
    snprintf(env_project, sizeof env_project, "KX_PROJECT_ID=%s", spec->project_id);
    const char *const envp[] = {"PATH=/usr/local/bin:/usr/bin:/bin", env_home, "LANG=C.UTF-8",
                                "TERM=dumb", env_project, NULL};
    const char *const argv[] = {"/bin/sh", "-c", spec->command, NULL};
    kx_proc_opts opts = {
        .argv = argv,
        .envp = envp,
        .cwd = cwd,
        .in = KX_PROC_NULL,
        .out = spec->blocking ? KX_PROC_PIPE : KX_PROC_FILE,
        .err = spec->blocking ? KX_PROC_PIPE : KX_PROC_FILE,
        .out_path = spec->blocking ? NULL : log_path,
        .err_path = spec->blocking ? NULL : log_path,
    };
    e->started_mono = kx_mono_ms();
    err = kx_proc_spawn(&opts, &e->proc);
    if (err != KX_OK) {
        free(e);
        snprintf(why, whylen, "could not start the command: %s", kx_err_str(err));
        return err == KX_ERR_NOMEM ? KX_ERR_NOMEM : KX_ERR_INTERNAL;
    }
    track(b, e);

    kx_loop *loop = b->svc->loop;
    err = kx_loop_watch(loop, e->proc.pidfd, EPOLLIN, on_proc_exit, e);
    bool exit_watched = err == KX_OK;
    if (err == KX_OK && spec->blocking) {
        err = kx_loop_watch(loop, e->proc.out_fd, EPOLLIN, on_pipe, e);
        if (err == KX_OK)
            err = kx_loop_watch(loop, e->proc.err_fd, EPOLLIN, on_pipe, e);
        int64_t ms = kx_deadline_remaining(spec->kill_at);
        if (err == KX_OK) {
            e->deadline_timer = kx_loop_timer(loop, ms > 0 ? ms : 0, on_deadline, e);
            if (e->deadline_timer == NULL)
                err = KX_ERR_NOMEM;
        }
    }
    if (err != KX_OK) {
        /* Could not watch it: do not leave an unobserved command running. When the pidfd
         * is watched, on_proc_exit reaps and frees the exec; otherwise reap it here. */
        kx_proc_kill_group(&e->proc, SIGKILL);
        snprintf(why, whylen, "could not watch the command: %s", kx_err_str(err));
        if (!exit_watched)
            reap_now(e);
        return KX_ERR_INTERNAL;
    }

    kx_log(KX_LOG_INFO, NULL, e->trace_id,
           "sandbox: exec %s started: pid %d, project %s, cwd %s, session %s, %s", e->exec_id,
           (int)e->proc.pid, e->project_id, e->cwd, e->session_name,
           spec->blocking ? "blocking" : "background");
    if (spec->blocking) {
        e->req = req;
    } else {
        reply_background_started(e, req);
        natsMsg_Destroy(req);
        kx_counter_add(metric_execs("background_started"), 1);
    }
    return KX_OK;
}

/* ---- kill and abort ------------------------------------------------------------------- */

bool sb_exec_kill(sb_exec *e)
{
    if (e->reaped && !pipes_open(e))
        return false;
    kx_err err = kx_proc_kill_group(&e->proc, SIGKILL);
    kx_log(KX_LOG_INFO, NULL, e->trace_id, "sandbox: exec %s: process group %d killed on "
           "request (%s)", e->exec_id, (int)e->proc.pid, kx_err_str(err));
    return err == KX_OK;
}

void sb_exec_abort(sb_exec *e, const char *message)
{
    if (!e->reaped || pipes_open(e))
        (void)kx_proc_kill_group(&e->proc, SIGKILL);
    kx_timer_cancel(e->deadline_timer);
    e->deadline_timer = NULL;
    kx_timer_cancel(e->grace_timer);
    e->grace_timer = NULL;
    pipe_close(e, &e->proc.out_fd);
    pipe_close(e, &e->proc.err_fd);
    if (e->req != NULL) {
        sb_reply_error(e->b, e->req, e->exec_id, e->session_name, true, KX_ERR_UNAVAILABLE,
                       message);
        natsMsg_Destroy(e->req);
        e->req = NULL;
    }
    if (e->reaped)
        exec_free(e);
}
