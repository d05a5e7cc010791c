/* exec.c — one command in a project's sandbox, from RUN to reply (see exec.h).
 *
 * The command runs in the project's jailed sandbox (sandbox.c) as /bin/sh -c <command> (wrapped
 * so that its session's cwd and environment carry over: session_wrap.c), in a
 * PID namespace of its own, with a clean environment (the broker's holds secrets and is never
 * passed on). Its stdout and stderr are pipes watched on the loop:
 *   - blocking: each stream is captured within a budget that keeps the reply under the bus's
 *     max_payload (capture.c: head and tail kept, the rest spilled to /workspace/.kx-output);
 *   - background: appended to the session log up to KX_SANDBOX_LOG_MAX bytes, the rest
 *     counted and dropped, so a chatty server never fills the disk.
 * A loop timer at the deadline (the caller's, or KX_SANDBOX_BG_MAX_S for a background command)
 * kills the command's namespace. init reports the main process's exit (EXITED).
 *
 * The reply to a blocking exec is sent once, by reply_and_release(), when the first of these
 * happens: the command exited and both pipes reached EOF; SB_EOF_GRACE_MS passed after the
 * exit; the deadline (kill sent, output so far). The exec is freed when it has replied and
 * init has reported its exit. */
#include "exec.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "capture.h"
#include "kx/buf.h"
#include "kx/log.h"
#include "kx/metrics.h"
#include "kx/pb.h"
#include "kx/utf8.h"
#include "kx/uuid.h"
#include "reply.h"
#include "sandbox.h"
#include "session_wrap.h"

#define READ_CHUNK 65536
#define READS_PER_WAKEUP \
    16 /* at most 1 MiB per callback, so one chatty command
                                       cannot starve the others on the loop */
#define SPILL_DIR ".kx-output"
/* Room in a reply for everything but the two streams (ids, cwd, headers, the cut notes). */
#define REPLY_OVERHEAD 16384
/* UTF-8 repair turns one invalid byte into U+FFFD (3 bytes): the budget allows for it. */
#define UTF8_WORST 3

struct sb_exec {
    sb_exec *prev, *next;
    sb_broker *b;
    sb_sandbox *sandbox;
    uint64_t run_id;
    natsMsg *req; /* the caller's request while a reply is owed */
    char exec_id[SB_EXEC_ID_MAX + 1];
    char project_id[KX_UUID_LEN + 1];
    char session_name[SB_SESSION_MAX + 1];
    char cwd[SB_FOLDER_MAX + 16]; /* sandbox-visible: /workspace[/folder] */
    char trace_id[33];
    char command[257]; /* for kx.sandbox.list: at most 256 bytes of it */
    int64_t started_unix_ms;
    bool blocking;
    bool exited; /* init reported the main process's end */
    int wstatus;
    bool timed_out;
    bool kill_sent;
    bool at_deadline;      /* on_deadline is reading init's reports: on_exit only records */
    char start_error[256]; /* init could not start it */
    int out_fd, err_fd;    /* our ends of the pipes, -1 when closed */
    sb_capture out, err;   /* blocking */
    int log_fd;            /* background: the session log */
    uint64_t log_written, log_dropped;
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

sb_exec *sb_exec_find_run(sb_broker *b, const sb_sandbox *s, uint64_t run_id)
{
    for (sb_exec *e = b->execs; e != NULL; e = e->next) {
        if (e->sandbox == s && e->run_id == run_id)
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
sb_sandbox *sb_exec_sandbox(const sb_exec *e)
{
    return e->sandbox;
}
const char *sb_exec_session(const sb_exec *e)
{
    return e->session_name;
}
bool sb_exec_running(const sb_exec *e)
{
    return !e->exited;
}

void sb_exec_describe(sb_exec *e, Kx__V1__SandboxCommand *out)
{
    out->exec_id = e->exec_id;
    out->session_name = e->session_name;
    out->command = e->command;
    out->blocking = e->blocking;
    out->started_unix_ms = e->started_unix_ms;
    out->cwd = e->cwd;
}

/* ---- output --------------------------------------------------------------------------- */

/* The spill file of a blocking exec: /workspace/.kx-output/<exec id>.<stream>, created by the
 * broker beneath the workspace without following any link, owned by the sandbox's uid. */
static int spill_open(void *arg, const char *stream, char *visible, size_t vlen)
{
    sb_exec *e = arg;
    if (e->sandbox == NULL)
        return -1;
    int ws = sb_sandbox_workspace_fd(e->sandbox);
    uid_t uid = sb_sandbox_uid(e->sandbox);
    (void)mkdirat(ws, SPILL_DIR, 0755);
    struct open_how how = {.flags = O_PATH | O_DIRECTORY | O_CLOEXEC,
                           .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
                               RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV};
    int dir = (int)syscall(SYS_openat2, ws, SPILL_DIR, &how, sizeof how);
    if (dir < 0)
        return -1;
    /* chown through the descriptor just opened beneath the workspace, never by name: the
     * sandbox may have swapped the name for a link since. */
    if (geteuid() == 0 && fchownat(dir, "", uid, uid, AT_EMPTY_PATH) != 0)
        kx_warn("sandbox-broker: chown of %s: %s", SPILL_DIR, strerror(errno));
    char name[SB_EXEC_ID_MAX + 16];
    size_t n = 0;
    for (const char *c = e->exec_id; *c != '\0' && n < SB_EXEC_ID_MAX; c++) {
        bool ok = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
            (*c >= '0' && *c <= '9') || *c == '-' || *c == '_';
        name[n++] = ok ? *c : '_';
    }
    snprintf(name + n, sizeof name - n, ".%s", stream);
    (void)unlinkat(dir, name, 0);
    int fd = openat(dir, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd >= 0 && geteuid() == 0 && fchown(fd, uid, uid) != 0)
        kx_warn("sandbox-broker: chown of spill file %s: %s", name, strerror(errno));
    close(dir);
    snprintf(visible, vlen, "/workspace/%s/%s", SPILL_DIR, name);
    return fd;
}

/* Background: append to the session log up to KX_SANDBOX_LOG_MAX, count the rest. */
static void log_append(sb_exec *e, const char *data, size_t n)
{
    uint64_t room = (uint64_t)e->b->cfg.log_max > e->log_written
        ? (uint64_t)e->b->cfg.log_max - e->log_written
        : 0;
    size_t keep = n < room ? n : (size_t)room;
    if (keep > 0 && e->log_fd >= 0) {
        ssize_t w = write(e->log_fd, data, keep);
        if (w > 0)
            e->log_written += (uint64_t)w;
        keep = w > 0 ? (size_t)w : 0;
    }
    if (keep < n) {
        if (e->log_dropped == 0 && e->log_fd >= 0)
            (void)!write(e->log_fd,
                         "\n[kx: session log full (KX_SANDBOX_LOG_MAX); further "
                         "output dropped]\n",
                         70);
        e->log_dropped += n - keep;
    }
}

/* Reads what the pipe has now. True when the pipe is finished (EOF or a read error). */
static bool pipe_read(sb_exec *e, int fd)
{
    char chunk[READ_CHUNK];
    for (int i = 0; i < READS_PER_WAKEUP; i++) {
        ssize_t n = read(fd, chunk, sizeof chunk);
        if (n > 0) {
            if (!e->blocking)
                log_append(e, chunk, (size_t)n);
            else
                sb_capture_add(fd == e->out_fd ? &e->out : &e->err, chunk, (size_t)n);
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
    return e->out_fd >= 0 || e->err_fd >= 0;
}

/* ---- finishing ------------------------------------------------------------------------ */

static void exec_free(sb_exec *e)
{
    sb_broker *b = e->b;
    untrack(b, e);
    kx_timer_cancel(e->deadline_timer);
    kx_timer_cancel(e->grace_timer);
    pipe_close(e, &e->out_fd);
    pipe_close(e, &e->err_fd);
    if (e->log_fd >= 0)
        close(e->log_fd);
    if (e->req != NULL)
        natsMsg_Destroy(e->req);
    sb_capture_free(&e->out);
    sb_capture_free(&e->err);
    free(e);
    sb_drain_check(b);
}

/* exit_code / term_signal as the reply reports them (128 + signal, like a shell, when the
 * command was killed, so that "exit_code == 0" alone means success). */
static void exit_status(const sb_exec *e, int *exit_code, int *term_signal)
{
    *exit_code = 0;
    *term_signal = 0;
    if (!e->exited || e->wstatus == -1) {
        if (e->timed_out || !e->exited) {
            *term_signal = SIGKILL;
            *exit_code = 128 + SIGKILL;
        } else {
            *exit_code = 126; /* could not start */
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

/* A stream as reply text: captured, cut note included, repaired to UTF-8. */
static char *stream_text(const sb_capture *c)
{
    size_t len = 0;
    char *raw = sb_capture_text(c, &len);
    if (raw == NULL)
        return NULL;
    char *txt = kx_utf8_sanitize(raw, len, NULL);
    free(raw);
    return txt;
}

/* Sends the blocking exec's result (once), then frees the exec if it exited. */
static void reply_and_release(sb_exec *e)
{
    kx_timer_cancel(e->deadline_timer);
    e->deadline_timer = NULL;
    kx_timer_cancel(e->grace_timer);
    e->grace_timer = NULL;
    if (e->out_fd >= 0)
        (void)pipe_read(e, e->out_fd);
    if (e->err_fd >= 0)
        (void)pipe_read(e, e->err_fd);
    pipe_close(e, &e->out_fd);
    pipe_close(e, &e->err_fd);

    if (e->req != NULL) {
        if (e->start_error[0] != '\0')
            sb_capture_add(&e->err, e->start_error, strlen(e->start_error));
        char *out = stream_text(&e->out);
        char *err = stream_text(&e->err);
        Kx__V1__SandboxExecResult res = KX__V1__SANDBOX_EXEC_RESULT__INIT;
        int exit_code, term_signal;
        exit_status(e, &exit_code, &term_signal);
        res.exec_id = e->exec_id;
        res.started = e->start_error[0] == '\0';
        res.completed = e->exited && !e->timed_out && e->start_error[0] == '\0';
        res.exit_code = exit_code;
        res.term_signal = term_signal;
        res.timed_out = e->timed_out;
        res.stdout = out ? out : "";
        res.stderr = err ? err : "";
        res.truncated =
            sb_capture_cut(&e->out) || sb_capture_cut(&e->err) || out == NULL || err == NULL;
        res.cwd = e->cwd;
        res.session_name = e->session_name;
        res.duration_ms = kx_mono_ms() - e->started_mono;
        sb_reply_result(e->b, e->req, &res);
        kx_log(KX_LOG_INFO, NULL, e->trace_id,
               "sandbox: exec %s finished: exit_code %d, signal %d, timed_out %s, "
               "%llu+%llu output bytes%s, %lld ms",
               e->exec_id, exit_code, term_signal, e->timed_out ? "true" : "false",
               (unsigned long long)e->out.total, (unsigned long long)e->err.total,
               res.truncated ? " (truncated)" : "", (long long)res.duration_ms);
        kx_counter_add(metric_execs(e->timed_out ? "timed_out" : "completed"), 1);
        free(out);
        free(err);
        natsMsg_Destroy(e->req);
        e->req = NULL;
    }
    if (e->exited)
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
        reply_and_release(e); /* out of memory: answer now rather than never */
}

/* ---- loop callbacks ------------------------------------------------------------------- */

static void on_pipe(kx_loop *loop, int fd, uint32_t events, void *arg)
{
    sb_exec *e = arg;
    bool is_out = fd == e->out_fd;
    if (pipe_read(e, fd))
        pipe_close(e, is_out ? &e->out_fd : &e->err_fd);
    if (e->exited && !pipes_open(e)) {
        if (e->blocking)
            reply_and_release(e);
        else
            exec_free(e);
    }
}

void sb_exec_on_exit(sb_exec *e, int status, const char *why)
{
    if (e->exited)
        return;
    e->exited = true;
    e->wstatus = status;
    if (e->sandbox != NULL) /* session_wrap.c: its cwd and environment into place */
        sb_session_commit(sb_sandbox_workspace_fd(e->sandbox), e->session_name, e->exec_id);
    if (why != NULL)
        snprintf(e->start_error, sizeof e->start_error, "kx-sandbox: %s\n", why);
    if (!e->blocking) {
        kx_log(KX_LOG_INFO, NULL, e->trace_id,
               "sandbox: background exec %s (session %s) "
               "ended with status 0x%x%s%s",
               e->exec_id, e->session_name, (unsigned)status, why ? ": " : "", why ? why : "");
        kx_counter_add(metric_execs("background_exited"), 1);
        /* Its namespace is gone, so are the pipes' writers: read what is left, then free. */
        if (e->out_fd >= 0 && pipe_read(e, e->out_fd))
            pipe_close(e, &e->out_fd);
        if (e->err_fd >= 0 && pipe_read(e, e->err_fd))
            pipe_close(e, &e->err_fd);
        if (!pipes_open(e) || e->sandbox == NULL)
            exec_free(e);
        return;
    }
    if (e->at_deadline)
        return; /* on_deadline, reading init's reports, answers it as completed */
    if (e->req == NULL || !pipes_open(e))
        reply_and_release(e); /* frees too */
    else
        arm_grace(e);
}

static void on_deadline(kx_loop *loop, void *arg)
{
    sb_exec *e = arg;
    e->deadline_timer = NULL;
    if (!e->exited && e->blocking && e->sandbox != NULL) {
        /* The loop fires due timers after the descriptors that were ready when it woke: an
         * exit init reported meanwhile (while this pass started 50 commands, say) is still
         * queued on the channel. It wins over the deadline. */
        e->at_deadline = true;
        sb_sandbox_read_reports(e->sandbox);
        e->at_deadline = false;
    }
    if (e->exited) {
        reply_and_release(e);
        return;
    }
    e->timed_out = true;
    bool killed = sb_exec_kill(e);
    kx_log(KX_LOG_INFO, NULL, e->trace_id,
           "sandbox: exec %s reached its deadline: its namespace was %s", e->exec_id,
           killed ? "killed" : "already gone");
    /* Answer now with the output so far: the caller's deadline is SB_REPLY_MARGIN_MS away
     * and must not depend on how fast the kernel tears the namespace down. The exec stays
     * tracked until init reports the exit. */
    if (e->blocking)
        reply_and_release(e);
}

/* ---- start ---------------------------------------------------------------------------- */

/* The folder, resolved beneath the workspace without following any symlink (openat2). */
static kx_err check_folder(sb_sandbox *s, const char *folder, char *why, size_t whylen)
{
    if (folder[0] == '\0')
        return KX_OK;
    struct open_how how = {.flags = O_PATH | O_DIRECTORY | O_CLOEXEC,
                           .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
                               RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV};
    int fd = (int)syscall(SYS_openat2, sb_sandbox_workspace_fd(s), folder, &how, sizeof how);
    if (fd >= 0) {
        close(fd);
        return KX_OK;
    }
    if (errno == ELOOP || errno == EXDEV)
        snprintf(why, whylen,
                 "folder '%s' goes through a symbolic link or leaves the "
                 "workspace: refused",
                 folder);
    else if (errno == ENOTDIR)
        snprintf(why, whylen, "folder '%s' is not a directory", folder);
    else
        snprintf(why, whylen, "folder '%s' does not exist in the workspace (%s)", folder,
                 strerror(errno));
    return KX_ERR_INVALID;
}

/* For a non-blocking exec: <project>/.kx/sessions/<session>.log (outside the workspace). */
static int open_session_log(sb_broker *b, const sb_exec_spec *spec, char *why, size_t whylen)
{
    char dir[4096], path[4200];
    if (sb_sessions_dir(b->cfg.root, spec->project_id, dir, sizeof dir) != KX_OK) {
        snprintf(why, whylen, "sandbox root path is too long");
        return -1;
    }
    if (sb_mkdir_p(dir, 0700) != KX_OK) {
        snprintf(why, whylen, "could not create the session log directory: %s", strerror(errno));
        return -1;
    }
    snprintf(path, sizeof path, "%s/%s.log", dir, spec->session_name);
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        snprintf(why, whylen, "could not open the session log: %s", strerror(errno));
    return fd;
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

/* Per stream: what fits the bus with both streams at their worst UTF-8 expansion. */
static size_t output_budget(const sb_broker *b, size_t requested)
{
    size_t bus = b->max_reply > REPLY_OVERHEAD * 2
        ? (b->max_reply - REPLY_OVERHEAD) / (2 * UTF8_WORST)
        : 4096;
    return requested < bus ? requested : bus;
}

kx_err sb_exec_start(sb_broker *b, const sb_exec_spec *spec, natsMsg *req, char *why,
                     size_t whylen)
{
    sb_sandbox *s = NULL;
    kx_err err = sb_sandbox_get(b, spec->project_id, spec->account, &s, why, whylen);
    if (err != KX_OK)
        return err;
    if ((err = check_folder(s, spec->folder, why, whylen)) != KX_OK)
        return err;
    char disk_why[256];
    bool over_disk = sb_sandbox_over_disk(s, disk_why, sizeof disk_why);

    sb_exec *e = calloc(1, sizeof *e);
    if (e == NULL) {
        snprintf(why, whylen, "out of memory");
        return KX_ERR_NOMEM;
    }
    e->b = b;
    e->sandbox = s;
    e->blocking = spec->blocking;
    e->out_fd = e->err_fd = e->log_fd = -1;
    snprintf(e->exec_id, sizeof e->exec_id, "%s", spec->exec_id);
    snprintf(e->project_id, sizeof e->project_id, "%s", spec->project_id);
    snprintf(e->session_name, sizeof e->session_name, "%s", spec->session_name);
    snprintf(e->trace_id, sizeof e->trace_id, "%s", spec->trace_id ? spec->trace_id : "");
    snprintf(e->command, sizeof e->command, "%s", spec->command);
    e->started_unix_ms = kx_now_us() / 1000;
    /* Where it starts: the folder, else the session's directory as its last command left it. */
    if (spec->folder[0] != '\0' ||
        sb_session_cwd_read(sb_sandbox_workspace_fd(s), spec->session_name, e->cwd,
                            sizeof e->cwd) != KX_OK)
        (void)sb_visible_cwd(spec->folder, e->cwd, sizeof e->cwd);
    size_t keep = output_budget(b, spec->max_output);
    sb_capture_init(&e->out, "stdout", keep, (uint64_t)b->cfg.spill_max, spill_open, e);
    sb_capture_init(&e->err, "stderr", keep, (uint64_t)b->cfg.spill_max, spill_open, e);
    if (!spec->blocking && (e->log_fd = open_session_log(b, spec, why, whylen)) < 0) {
        free(e);
        return KX_ERR_INTERNAL;
    }

    int po[2] = {-1, -1}, pe[2] = {-1, -1};
    if (pipe2(po, O_CLOEXEC) != 0 || pipe2(pe, O_CLOEXEC) != 0) {
        snprintf(why, whylen, "pipe: %s", strerror(errno));
        for (int i = 0; i < 2; i++) {
            if (po[i] >= 0)
                close(po[i]);
        }
        if (e->log_fd >= 0)
            close(e->log_fd);
        free(e);
        return KX_ERR_INTERNAL;
    }
    fcntl(po[0], F_SETFL, O_NONBLOCK);
    fcntl(pe[0], F_SETFL, O_NONBLOCK);
    e->out_fd = po[0];
    e->err_fd = pe[0];

    /* The command's whole environment: nothing of the broker's leaks in. */
    char env_project[64];
    snprintf(env_project, sizeof env_project, "KX_PROJECT_ID=%s", spec->project_id);
    const char *const envp[] = {"PATH=/usr/local/bin:/usr/bin:/bin",
                                "HOME=/workspace",
                                "LANG=C.UTF-8",
                                "TERM=dumb",
                                "TMPDIR=/tmp",
                                env_project,
                                NULL};
    e->started_mono = kx_mono_ms();
    track(b, e);
    if (over_disk) { /* said first on stderr; the command still runs */
        char note[300];
        int n = snprintf(note, sizeof note, "kx-sandbox: %s\n", disk_why);
        (void)!write(pe[1], note, n > 0 && (size_t)n < sizeof note ? (size_t)n : 0);
    }
    /* The session's cwd and environment come with it (session_wrap.c). */
    char *script = sb_session_wrap(spec->session_name, spec->folder, spec->command, spec->exec_id);
    if (script == NULL) {
        snprintf(why, whylen, "out of memory");
        err = KX_ERR_NOMEM;
    } else {
        err = sb_sandbox_run(s, e, spec->folder, script, envp, (int32_t)b->cfg.cpu_s,
                             over_disk ? 0 : -1, po[1], pe[1], &e->run_id, why, whylen);
    }
    free(script);
    close(po[1]);
    close(pe[1]);
    if (err != KX_OK) {
        e->req = NULL;
        e->exited = true;
        exec_free(e);
        return err;
    }

    kx_loop *loop = b->svc->loop;
    err = kx_loop_watch(loop, e->out_fd, EPOLLIN, on_pipe, e);
    if (err == KX_OK)
        err = kx_loop_watch(loop, e->err_fd, EPOLLIN, on_pipe, e);
    kx_deadline kill_at = spec->blocking ? spec->kill_at : kx_deadline_in(b->cfg.bg_max_s * 1000);
    if (err == KX_OK) {
        int64_t ms = kx_deadline_remaining(kill_at);
        e->deadline_timer = kx_loop_timer(loop, ms > 0 ? ms : 0, on_deadline, e);
        if (e->deadline_timer == NULL)
            err = KX_ERR_NOMEM;
    }
    if (err != KX_OK) {
        /* Could not watch it: do not leave an unobserved command running. EXITED frees it. */
        sb_sandbox_kill(s, e->run_id);
        pipe_close(e, &e->out_fd);
        pipe_close(e, &e->err_fd);
        snprintf(why, whylen, "could not watch the command: %s", kx_err_str(err));
        return KX_ERR_INTERNAL;
    }

    kx_log(KX_LOG_INFO, NULL, e->trace_id,
           "sandbox: exec %s started: run %llu, project %s, cwd %s, session %s, %s", e->exec_id,
           (unsigned long long)e->run_id, e->project_id, e->cwd, e->session_name,
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
    if (e->exited || e->sandbox == NULL)
        return false;
    sb_sandbox_kill(e->sandbox, e->run_id);
    e->kill_sent = true;
    kx_log(KX_LOG_INFO, NULL, e->trace_id, "sandbox: exec %s: namespace killed", e->exec_id);
    return true;
}

void sb_exec_abort(sb_exec *e, const char *message)
{
    (void)sb_exec_kill(e);
    kx_timer_cancel(e->deadline_timer);
    e->deadline_timer = NULL;
    kx_timer_cancel(e->grace_timer);
    e->grace_timer = NULL;
    pipe_close(e, &e->out_fd);
    pipe_close(e, &e->err_fd);
    if (e->req != NULL) {
        sb_reply_error(e->b, e->req, e->exec_id, e->session_name, true, KX_ERR_UNAVAILABLE,
                       message);
        natsMsg_Destroy(e->req);
        e->req = NULL;
    }
    if (e->exited)
        exec_free(e);
}
