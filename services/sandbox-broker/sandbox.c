/* sandbox.c — starting, talking to and ending a project's jailed sandbox (see sandbox.h). */
#include "sandbox.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cgroups.h"
#include "exec.h"
#include "account_quota.h"
#include "lifecycle.h"
#include "kx/log.h"
#include "kx/metrics.h"
#include "kx/uuid.h"
#include "sandbox_path.h"
#include "sbproto.h"

#define DISK_CHECK_EVERY_MS 1000
#define DISK_WALK_MAX_ENTRIES 200000

struct sb_sandbox {
    sb_sandbox *next;
    sb_broker *b;
    char project_id[KX_UUID_LEN + 1];
    char ws_path[4096];
    int ws_fd;
    uid_t uid;
    pid_t pid; /* bwrap (or the init itself in unsafe mode) */
    int pidfd;
    int sock; /* our end of the socketpair */
    uint64_t next_run_id;
    int64_t disk_checked_ms;
    int64_t disk_used;
    int64_t disk_reserved; /* writes queued and not yet done: kept apart from disk_used, which a
                            * walk replaces (a walk once dropped them and let a write pass) */
    int64_t last_used_ms;  /* monotonic: the last command started or ended */
    sb_connect *connects;  /* CONNECTs sent to init, waiting for their socket */
    sb_preview_token tokens[SB_PREVIEW_TOKENS]; /* preview.c: ports exposed while it runs */
};

struct sb_connect {
    sb_connect *next;
    uint64_t id;
    sb_connect_cb cb;
    void *arg;
};

static char g_buf[SBP_MAX_MSG]; /* loop thread only */

int sb_sandbox_workspace_fd(const sb_sandbox *s)
{
    return s->ws_fd;
}
const char *sb_sandbox_workspace_path(const sb_sandbox *s)
{
    return s->ws_path;
}
uid_t sb_sandbox_uid(const sb_sandbox *s)
{
    return s->uid;
}

static void set_gauge(sb_broker *b)
{
    int64_t n = 0;
    for (sb_sandbox *s = b->sandboxes; s != NULL; s = s->next)
        n++;
    kx_gauge_set(kx_metrics_gauge("kx_sandboxes_running", "", "Sandboxes (jails) running here"),
                 n);
}

/* ---- the project's uid ----------------------------------------------------------------- */

static uint32_t fnv1a(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s != '\0'; s++) {
        h ^= (uint32_t)tolower((unsigned char)*s);
        h *= 16777619u;
    }
    return h;
}

/* <root>/.uids/<uid> holds the project id of the uid's owner; the first free or own slot
 * from the project's hash on is ours. */
static kx_err alloc_uid(sb_broker *b, const char *project, uid_t *out, bool *fresh, char *why,
                        size_t whylen)
{
    *fresh = false;
    if (geteuid() != 0) {
        *out = geteuid(); /* cannot drop: README "Not done" */
        return KX_OK;
    }
    char dir[2100];
    snprintf(dir, sizeof dir, "%s/.uids", b->cfg.root);
    if (sb_mkdir_p(dir, 0700) != KX_OK) {
        snprintf(why, whylen, "could not create %s: %s", dir, strerror(errno));
        return KX_ERR_INTERNAL;
    }
    uint32_t h = fnv1a(project);
    for (int64_t k = 0; k < b->cfg.uid_count; k++) {
        uid_t uid =
            (uid_t)(b->cfg.uid_base + (int64_t)((h + (uint64_t)k) % (uint64_t)b->cfg.uid_count));
        if (uid == 0 || uid == getuid())
            continue;
        char path[2200];
        snprintf(path, sizeof path, "%s/%u", dir, (unsigned)uid);
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd >= 0) {
            bool ok = write(fd, project, strlen(project)) == (ssize_t)strlen(project);
            close(fd);
            if (!ok) {
                unlink(path);
                snprintf(why, whylen, "could not record the sandbox uid: %s", strerror(errno));
                return KX_ERR_INTERNAL;
            }
            *out = uid;
            *fresh = true;
            return KX_OK;
        }
        if (errno != EEXIST) {
            snprintf(why, whylen, "could not record the sandbox uid in %s: %s", path,
                     strerror(errno));
            return KX_ERR_INTERNAL;
        }
        char owner[64] = "";
        fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd >= 0) {
            ssize_t n = read(fd, owner, sizeof owner - 1);
            owner[n > 0 ? n : 0] = '\0';
            close(fd);
        }
        if (strcasecmp(owner, project) == 0) {
            *out = uid;
            return KX_OK;
        }
    }
    snprintf(why, whylen, "no free sandbox uid left in KX_SANDBOX_UID_BASE..+COUNT");
    return KX_ERR_UNAVAILABLE;
}

/* ---- the workspace -------------------------------------------------------------------- */

static kx_err prepare_workspace(sb_sandbox *s, char *why, size_t whylen)
{
    if (sb_workspace_path(s->b->cfg.root, s->project_id, "", s->ws_path, sizeof s->ws_path) !=
        KX_OK) {
        snprintf(why, whylen, "sandbox root path is too long");
        return KX_ERR_INTERNAL;
    }
    /* <root>/<project> 0711 (bwrap, as the sandbox's uid, must traverse it); workspace 0700. */
    char project_dir[4096];
    snprintf(project_dir, sizeof project_dir, "%s/%s", s->b->cfg.root, s->project_id);
    if (mkdir(project_dir, 0711) != 0 && errno != EEXIST) {
        snprintf(why, whylen, "could not create the sandbox directory: %s", strerror(errno));
        return KX_ERR_INTERNAL;
    }
    (void)chmod(project_dir, 0711);
    if (sb_mkdir_p(s->ws_path, 0700) != KX_OK) {
        snprintf(why, whylen, "could not create the sandbox workspace: %s", strerror(errno));
        kx_error("sandbox: mkdir -p %s failed: %s", s->ws_path, strerror(errno));
        return KX_ERR_INTERNAL;
    }
    s->ws_fd = open(s->ws_path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (s->ws_fd < 0) {
        snprintf(why, whylen, "could not open the sandbox workspace: %s", strerror(errno));
        return KX_ERR_INTERNAL;
    }
    struct stat st;
    if (fstat(s->ws_fd, &st) != 0 ||
        ((st.st_uid != s->uid || (st.st_mode & 0777) != 0700) &&
         (fchown(s->ws_fd, s->uid, s->uid) != 0 || fchmod(s->ws_fd, 0700) != 0))) {
        snprintf(why, whylen, "could not give the workspace to the sandbox's uid: %s",
                 strerror(errno));
        return KX_ERR_INTERNAL;
    }
    return KX_OK;
}

/* ---- disk use --------------------------------------------------------------------------- */

static int64_t g_walk_bytes;
static int64_t g_walk_entries;

static int walk_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    g_walk_bytes += (int64_t)st->st_blocks * 512;
    return ++g_walk_entries > DISK_WALK_MAX_ENTRIES ? 1 : 0;
}

/* s->disk_used, measured again when older than DISK_CHECK_EVERY_MS or over the limit. */
static void measure_disk(sb_sandbox *s)
{
    int64_t now = kx_mono_ms();
    /* Over the limit, measure every time, so that freeing space takes effect at once. */
    if (s->disk_checked_ms == 0 || now - s->disk_checked_ms >= DISK_CHECK_EVERY_MS ||
        s->disk_used > s->b->cfg.disk_bytes) {
        g_walk_bytes = 0;
        g_walk_entries = 0;
        (void)nftw(s->ws_path, walk_cb, 32, FTW_PHYS | FTW_MOUNT);
        s->disk_used = g_walk_bytes;
        s->disk_checked_ms = now;
    }
}

int64_t sb_sandbox_disk_room(sb_sandbox *s)
{
    measure_disk(s);
    return s->b->cfg.disk_bytes - s->disk_used - s->disk_reserved;
}

void sb_sandbox_disk_reserve(sb_broker *b, const char *project_id, int64_t delta)
{
    for (sb_sandbox *s = b->sandboxes; s != NULL; s = s->next) {
        if (strcasecmp(s->project_id, project_id) == 0) {
            s->disk_reserved += delta;
            if (s->disk_reserved < 0)
                s->disk_reserved = 0;
            return;
        }
    }
}

void sb_sandbox_disk_add(sb_broker *b, const char *project_id, int64_t delta)
{
    for (sb_sandbox *s = b->sandboxes; s != NULL; s = s->next) {
        if (strcasecmp(s->project_id, project_id) == 0) {
            s->disk_used += delta;
            if (s->disk_used < 0)
                s->disk_used = 0;
            return;
        }
    }
}

void sb_sandbox_touch(sb_sandbox *s)
{
    s->last_used_ms = kx_mono_ms();
}

bool sb_sandbox_over_disk(sb_sandbox *s, char *why, size_t whylen)
{
    measure_disk(s);
    if (s->disk_used > s->b->cfg.disk_bytes) {
        snprintf(why, whylen,
                 "the workspace uses %lld MiB, over its limit of %lld MiB "
                 "(KX_SANDBOX_DISK_MB): no file can grow until files are deleted",
                 (long long)(s->disk_used >> 20), (long long)(s->b->cfg.disk_bytes >> 20));
        return true;
    }
    return false;
}

/* ---- life and death --------------------------------------------------------------------- */

static void sandbox_free(sb_sandbox *s)
{
    if (s->ws_fd >= 0)
        close(s->ws_fd);
    while (s->connects != NULL) { /* init is gone: no socket will come */
        sb_connect *c = s->connects;
        s->connects = c->next;
        c->cb(-1, "the sandbox ended", c->arg);
        free(c);
    }
    free(s);
}

/* Unwatches, kills and reaps the jail, and releases its cgroup. */
static void kill_jail(sb_sandbox *s)
{
    kx_loop_unwatch(s->b->svc->loop, s->sock);
    kx_loop_unwatch(s->b->svc->loop, s->pidfd);
    close(s->sock);
    syscall(SYS_pidfd_send_signal, s->pidfd, SIGKILL, NULL, 0);
    int st;
    while (waitpid(s->pid, &st, 0) < 0 && errno == EINTR) {
    }
    close(s->pidfd);
    sb_cgroup_release(s->b, s->project_id); /* cgroups.c */
}

/* The jail is gone or must go: unwatch, kill, reap, report every command SIGKILLed. */
static void sandbox_down(sb_sandbox *s, const char *why)
{
    sb_broker *b = s->b;
    for (sb_sandbox **pp = &b->sandboxes; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == s) {
            *pp = s->next;
            break;
        }
    }
    kill_jail(s);
    kx_info("sandbox: project %s: sandbox ended (%s)", s->project_id, why);
    sb_exec *e = b->execs;
    while (e != NULL) {
        sb_exec *next = sb_exec_next(e);
        if (sb_exec_sandbox(e) == s)
            sb_exec_on_exit(e, SIGKILL, "the sandbox ended"); /* may free e */
        e = next;
    }
    char project[KX_UUID_LEN + 1];
    memcpy(project, s->project_id, sizeof project);
    sandbox_free(s);
    set_gauge(b);
    sb_lifecycle_on_down(b, project); /* lifecycle.c: its record says stopped */
}

static void on_jail_exit(kx_loop *loop, int fd, uint32_t events, void *arg)
{
    sandbox_down(arg, "its init exited");
}

/* A CONNECTED (or FAILED) answering one of our CONNECTs: its callback gets the socket. */
static bool take_connect(sb_sandbox *s, sbp_msg *m)
{
    if (m->op != SBP_CONNECTED && m->op != SBP_FAILED)
        return false;
    for (sb_connect **pp = &s->connects; *pp != NULL; pp = &(*pp)->next) {
        sb_connect *c = *pp;
        if (c->id != m->id)
            continue;
        *pp = c->next;
        int fd = m->op == SBP_CONNECTED ? m->fds[0] : -1;
        if (m->op == SBP_CONNECTED)
            m->fds[0] = -1;
        for (int k = 0; k < 2; k++) {
            if (m->fds[k] >= 0)
                close(m->fds[k]);
        }
        c->cb(fd, fd >= 0 ? NULL : (m->nstrs > 0 ? m->strs[0] : "could not connect"), c->arg);
        free(c);
        return true;
    }
    return false;
}

/* Handles what init has sent and is queued on the channel now (at most 64 messages). Returns
 * 0 when the channel is drained, 1 when messages remain, -1 when it ended (EOF: the reason in
 * *why) — the caller decides whether the sandbox goes down. */
static int read_reports(sb_sandbox *s, const char **why)
{
    for (int i = 0; i < 64; i++) {
        sbp_msg m;
        int r = sbp_recv(s->sock, &m, g_buf, sizeof g_buf);
        if (r < 0 && errno == EAGAIN)
            return 0;
        if (r <= 0) {
            *why = r == 0 ? "its init closed the channel" : "its channel failed";
            return -1;
        }
        if (take_connect(s, &m))
            continue;
        for (int k = 0; k < 2; k++) {
            if (m.fds[k] >= 0)
                close(m.fds[k]);
        }
        if (m.op != SBP_EXITED && m.op != SBP_FAILED)
            continue;
        s->last_used_ms = kx_mono_ms();
        sb_exec *e = sb_exec_find_run(s->b, s, m.id);
        if (e == NULL)
            continue;
        if (m.op == SBP_EXITED)
            sb_exec_on_exit(e, m.a, NULL);
        else
            sb_exec_on_exit(e, -1, m.nstrs > 0 ? m.strs[0] : "the command could not start");
    }
    return 1;
}

static void on_sock(kx_loop *loop, int fd, uint32_t events, void *arg)
{
    sb_sandbox *s = arg;
    const char *why = NULL;
    if (read_reports(s, &why) < 0)
        sandbox_down(s, why);
}

void sb_sandbox_read_reports(sb_sandbox *s)
{
    const char *why = NULL;
    while (read_reports(s, &why) > 0) {
    }
    /* an ended channel is left to on_sock / on_jail_exit on the loop's next pass */
}

/* Waits (bounded by wait_ms) for init's READY. */
static kx_err wait_ready(sb_sandbox *s, int64_t wait_ms, char *why, size_t whylen)
{
    int64_t until = kx_mono_ms() + wait_ms;
    for (;;) {
        int64_t left = until - kx_mono_ms();
        if (left <= 0) {
            snprintf(why, whylen, "the sandbox did not start within %lld ms", (long long)wait_ms);
            return KX_ERR_TIMEOUT;
        }
        struct pollfd p[2] = {{.fd = s->sock, .events = POLLIN},
                              {.fd = s->pidfd, .events = POLLIN}};
        int r = poll(p, 2, (int)left);
        if (r < 0 && errno == EINTR)
            continue;
        if (p[0].revents & POLLIN) {
            sbp_msg m;
            int n = sbp_recv(s->sock, &m, g_buf, sizeof g_buf);
            if (n == 1 && m.op == SBP_READY)
                return KX_OK;
            if (n == 1 && m.op == SBP_FAILED && m.nstrs > 0) {
                snprintf(why, whylen, "the sandbox could not start: %s", m.strs[0]);
                return KX_ERR_INTERNAL;
            }
            if (n < 0 && errno == EAGAIN)
                continue;
        }
        if (p[0].revents || p[1].revents) {
            snprintf(why, whylen, "the sandbox exited while starting");
            return KX_ERR_INTERNAL;
        }
    }
}

static kx_err sandbox_start(sb_sandbox *s, int64_t wait_ms, char *why, size_t whylen)
{
    sb_config *cfg = &s->b->cfg;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
        snprintf(why, whylen, "socketpair: %s", strerror(errno));
        return KX_ERR_INTERNAL;
    }
    int init_fd = open(cfg->init, O_RDONLY | O_CLOEXEC);
    if (init_fd < 0) {
        close(sv[0]);
        close(sv[1]);
        snprintf(why, whylen, "cannot open the sandbox init %s: %s", cfg->init, strerror(errno));
        return KX_ERR_INTERNAL;
    }
    char sockarg[16];
    snprintf(sockarg, sizeof sockarg, "%d", sv[1]);
    const char *argv[16 + 2 * 32];
    char ports[32][8];
    size_t n = 0;
    argv[n++] = s->b->jailed ? "/.kx/init" : cfg->init;
    argv[n++] = "--sock";
    argv[n++] = sockarg;
    if (!s->b->jailed) {
        argv[n++] = "--workspace";
        argv[n++] = s->ws_path;
    }
    if (s->b->jailed && cfg->net == KX_JAIL_NET_HOST) {
        for (size_t i = 0; i < cfg->ndeny_ports; i++) {
            snprintf(ports[i], sizeof ports[i], "%u", cfg->deny_ports[i]);
            argv[n++] = "--deny-port";
            argv[n++] = ports[i];
        }
    }
    argv[n] = NULL;
    static const char *const envp[] = {"PATH=/usr/local/bin:/usr/bin:/bin", NULL};
    kx_jail_file initf = {.fd = init_fd, .dest = "/.kx/init"};
    int pass[] = {sv[1]};
    kx_jail_opts o = {
        .bwrap = s->b->jailed ? cfg->bwrap : NULL,
        .uid = s->uid,
        .gid = s->uid,
        .bind_fd = s->b->jailed ? s->ws_fd : -1,
        .bind_dest = "/workspace",
        .files = &initf,
        .nfiles = s->b->jailed ? 1 : 0,
        .net = cfg->net,
        .keep_sys_admin = true,
        .limits = cfg->limits,
        .tmp_bytes = cfg->tmp_bytes,
        .argv = argv,
        .envp = envp,
        .pass_fds = pass,
        .npass_fds = 1,
    };
    kx_err err = sb_cgroup_open(s->b, s->project_id, &o.cgroup_fd, why, whylen); /* cgroups.c */
    if (err != KX_OK) {
        close(sv[0]);
        close(sv[1]);
        close(init_fd);
        return KX_ERR_INTERNAL;
    }
    /* bwrap's complaints, for the error message when the jail cannot start. */
    int errfd = memfd_create("kx-sandbox-stderr", MFD_CLOEXEC);
    o.stderr_fd = errfd;
    err = kx_jail_spawn(&o, &s->pid, &s->pidfd);
    int spawn_errno = errno;
    close(sv[1]);
    close(init_fd);
    if (o.cgroup_fd >= 0)
        close(o.cgroup_fd);
    if (err != KX_OK)
        sb_cgroup_release(s->b, s->project_id);
    s->sock = sv[0];
    if (err != KX_OK) {
        close(sv[0]);
        if (errfd >= 0)
            close(errfd);
        snprintf(why, whylen, "could not start the sandbox: %s", strerror(spawn_errno));
        return KX_ERR_INTERNAL;
    }
    err = wait_ready(s, wait_ms, why, whylen);
    if (err != KX_OK && errfd >= 0) {
        char msg[512];
        ssize_t n = pread(errfd, msg, sizeof msg - 1, 0);
        if (n > 0) {
            msg[n] = '\0';
            msg[strcspn(msg, "\n")] = '\0';
            size_t used = strlen(why);
            snprintf(why + used, whylen - used, ": %s", msg);
        }
    }
    if (errfd >= 0)
        close(errfd);
    if (err == KX_OK)
        err = kx_loop_watch(s->b->svc->loop, s->sock, EPOLLIN, on_sock, s);
    if (err == KX_OK &&
        (err = kx_loop_watch(s->b->svc->loop, s->pidfd, EPOLLIN, on_jail_exit, s)) != KX_OK)
        kx_loop_unwatch(s->b->svc->loop, s->sock);
    if (err != KX_OK) {
        if (why[0] == '\0')
            snprintf(why, whylen, "could not watch the sandbox: %s", kx_err_str(err));
        close(s->sock);
        syscall(SYS_pidfd_send_signal, s->pidfd, SIGKILL, NULL, 0);
        int st;
        while (waitpid(s->pid, &st, 0) < 0 && errno == EINTR) {
        }
        close(s->pidfd);
        sb_cgroup_release(s->b, s->project_id);
        return err;
    }
    return KX_OK;
}

sb_sandbox *sb_sandbox_find(sb_broker *b, const char *project_id)
{
    for (sb_sandbox *s = b->sandboxes; s != NULL; s = s->next) {
        if (strcasecmp(s->project_id, project_id) == 0)
            return s;
    }
    return NULL;
}

kx_err sb_sandbox_get(sb_broker *b, const char *project_id, const char *account, sb_sandbox **out,
                      char *why, size_t whylen)
{
    return sb_sandbox_ensure(b, project_id, account, b->cfg.start_ms, out, why, whylen);
}

/* Undoes what a failed first start made: the project's directory and its uid's record. */
static void undo_creation(sb_broker *b, const sb_sandbox *s, bool dir_fresh, bool uid_fresh)
{
    if (dir_fresh) {
        char why[256];
        (void)sb_sandbox_remove(b, s->project_id, (uid_t)-1, why, sizeof why);
    }
    if (uid_fresh) {
        char path[2200];
        snprintf(path, sizeof path, "%s/.uids/%u", b->cfg.root, (unsigned)s->uid);
        (void)unlink(path);
    }
}

kx_err sb_sandbox_ensure(sb_broker *b, const char *project_id, const char *account,
                         int64_t wait_ms, sb_sandbox **out, char *why, size_t whylen)
{
    *out = sb_sandbox_find(b, project_id);
    if (*out != NULL)
        return KX_OK;
    if (wait_ms > b->cfg.start_ms)
        wait_ms = b->cfg.start_ms;
    sb_sandbox *s = calloc(1, sizeof *s);
    if (s == NULL) {
        snprintf(why, whylen, "out of memory");
        return KX_ERR_NOMEM;
    }
    s->b = b;
    s->ws_fd = s->sock = s->pidfd = -1;
    for (size_t i = 0; i < KX_UUID_LEN && project_id[i] != '\0'; i++)
        s->project_id[i] = (char)tolower((unsigned char)project_id[i]);
    why[0] = '\0';
    int64_t t0 = kx_mono_us();
    char project_dir[4200];
    snprintf(project_dir, sizeof project_dir, "%s/%s", b->cfg.root, s->project_id);
    struct stat pst;
    bool dir_fresh = lstat(project_dir, &pst) != 0;
    bool uid_fresh = false;
    /* lifecycle.c: the record is this broker's from now on, or another live broker runs it. */
    sb_state prev;
    bool had = false;
    kx_err err = sb_lifecycle_claim(b, s->project_id, &prev, &had, why, whylen);
    /* claimed first: a broker counting the account meanwhile sees this one running */
    if (err == KX_OK && (err = sb_account_admit(b, account, s->project_id, why, whylen)) != KX_OK)
        sb_lifecycle_unclaim(b, s->project_id, &prev, had);
    if (err != KX_OK) {
        kx_info("sandbox: project %s: not started here: %s", s->project_id, why);
        if (dir_fresh)
            undo_creation(b, s, true, false);
        sandbox_free(s);
        return err;
    }
    err = alloc_uid(b, s->project_id, &s->uid, &uid_fresh, why, whylen);
    if (err == KX_OK)
        err = prepare_workspace(s, why, whylen);
    if (err == KX_OK)
        err = sandbox_start(s, wait_ms, why, whylen);
    if (err == KX_OK && (err = sb_lifecycle_on_up(b, s->project_id, s->uid, why, whylen)) != KX_OK)
        kill_jail(s); /* a started jail that must not stay: its record could not be written */
    if (err != KX_OK) {
        kx_error("sandbox: project %s: %s", s->project_id, why);
        sb_lifecycle_unclaim(b, s->project_id, &prev, had);
        undo_creation(b, s, dir_fresh, uid_fresh);
        sandbox_free(s);
        return err;
    }
    s->last_used_ms = kx_mono_ms();
    s->next = b->sandboxes;
    b->sandboxes = s;
    set_gauge(b);
    kx_info("sandbox: project %s: sandbox started (pid %d, uid %u, %s) in %lld us", s->project_id,
            (int)s->pid, (unsigned)s->uid, b->jailed ? "jailed" : "UNSAFE",
            (long long)(kx_mono_us() - t0));
    *out = s;
    return KX_OK;
}

kx_err sb_sandbox_run(sb_sandbox *s, sb_exec *e, const char *cwd, const char *command,
                      const char *const *env, int32_t cpu_s, int64_t fsize, int out_fd, int err_fd,
                      uint64_t *run_id, char *why, size_t whylen)
{
    sbp_msg m = {
        .op = SBP_RUN, .id = ++s->next_run_id, .a = cpu_s, .b = fsize, .fds = {out_fd, err_fd}};
    m.strs[m.nstrs++] = cwd;
    m.strs[m.nstrs++] = command;
    for (size_t i = 0; env[i] != NULL && m.nstrs < SBP_MAX_STRS; i++)
        m.strs[m.nstrs++] = env[i];
    if (sbp_send(s->sock, &m, g_buf, sizeof g_buf) != 0) {
        snprintf(why, whylen,
                 errno == EMSGSIZE ? "the command is too long"
                                   : "the sandbox did not take the command: %s",
                 strerror(errno));
        return errno == EMSGSIZE ? KX_ERR_INVALID : KX_ERR_UNAVAILABLE;
    }
    *run_id = m.id;
    s->last_used_ms = kx_mono_ms();
    (void)e;
    return KX_OK;
}

void sb_sandbox_kill(sb_sandbox *s, uint64_t run_id)
{
    sbp_msg m = {.op = SBP_KILL, .id = run_id, .b = -1, .fds = {-1, -1}};
    char buf[64];
    if (sbp_send(s->sock, &m, buf, sizeof buf) != 0)
        kx_warn("sandbox: project %s: could not send KILL: %s", s->project_id, strerror(errno));
}

void sb_sandbox_stop(sb_sandbox *s, const char *why)
{
    sandbox_down(s, why);
}

const char *sb_sandbox_project(const sb_sandbox *s)
{
    return s->project_id;
}

sb_preview_token *sb_sandbox_tokens(sb_sandbox *s)
{
    return s->tokens;
}

kx_err sb_sandbox_connect(sb_sandbox *s, int port, sb_connect_cb cb, void *arg, char *why,
                          size_t whylen)
{
    sb_connect *c = calloc(1, sizeof *c);
    if (c == NULL) {
        snprintf(why, whylen, "out of memory");
        return KX_ERR_NOMEM;
    }
    sbp_msg m = {.op = SBP_CONNECT, .id = ++s->next_run_id, .a = port, .b = -1, .fds = {-1, -1}};
    char buf[64];
    if (sbp_send(s->sock, &m, buf, sizeof buf) != 0) {
        snprintf(why, whylen, "the sandbox did not take the request: %s", strerror(errno));
        free(c);
        return KX_ERR_UNAVAILABLE;
    }
    c->id = m.id;
    c->cb = cb;
    c->arg = arg;
    c->next = s->connects;
    s->connects = c;
    return KX_OK;
}

static int rm_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    (void)(flag == FTW_DP ? rmdir(path) : unlink(path));
    return 0;
}

static void *remove_tree(void *arg)
{
    char *path = arg;
    (void)nftw(path, rm_cb, 32, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
    free(path);
    return NULL;
}

kx_err sb_sandbox_remove(sb_broker *b, const char *project_id, uid_t uid, char *why, size_t whylen)
{
    /* Renamed away at once (the loop does not wait for a large tree), removed by a thread. */
    char trash[2100], from[2200], to[2300];
    snprintf(trash, sizeof trash, "%s/.trash", b->cfg.root);
    if (sb_mkdir_p(trash, 0700) != KX_OK) {
        snprintf(why, whylen, "could not create %s: %s", trash, strerror(errno));
        return KX_ERR_INTERNAL;
    }
    snprintf(from, sizeof from, "%s/%s", b->cfg.root, project_id);
    snprintf(to, sizeof to, "%s/%s.%lld", trash, project_id, (long long)kx_mono_us());
    if (rename(from, to) != 0 && errno != ENOENT) {
        snprintf(why, whylen, "could not remove the sandbox's files: %s", strerror(errno));
        return KX_ERR_INTERNAL;
    }
    if (uid != (uid_t)-1 && uid != 0 && geteuid() == 0) {
        char path[2200];
        snprintf(path, sizeof path, "%s/.uids/%u", b->cfg.root, (unsigned)uid);
        (void)unlink(path);
    }
    char *copy = strdup(to);
    pthread_t t;
    if (copy != NULL && pthread_create(&t, NULL, remove_tree, copy) == 0)
        pthread_detach(t);
    else
        free(copy); /* left in .trash; the next start's sweep of .trash removes it */
    return KX_OK;
}

sb_sandbox *sb_sandbox_next(const sb_sandbox *s)
{
    return s->next;
}

void sb_sandbox_stop_all(sb_broker *b)
{
    while (b->sandboxes != NULL)
        sandbox_down(b->sandboxes, "the broker is stopping");
}

/* ---- auto-stop -------------------------------------------------------------------------- */

static bool has_commands(sb_broker *b, const sb_sandbox *s)
{
    for (sb_exec *e = b->execs; e != NULL; e = sb_exec_next(e)) {
        if (sb_exec_sandbox(e) == s)
            return true;
    }
    return false;
}

static void on_idle_sweep(kx_loop *loop, void *arg)
{
    sb_broker *b = arg;
    b->idle_timer = NULL;
    if (b->draining)
        return;
    int64_t now = kx_mono_ms();
    sb_sandbox *s = b->sandboxes;
    while (s != NULL) {
        sb_sandbox *next = s->next;
        if (!has_commands(b, s) && now - s->last_used_ms >= b->cfg.idle_stop_ms)
            sandbox_down(s, "idle: auto-stop");
        s = next;
    }
    sb_lifecycle_sweep(b); /* lifecycle.c: auto-archive */
    sb_cgroup_sweep(b);    /* cgroups.c: leftovers of ended jails */
    (void)sb_sandbox_sweep_start(b);
}

kx_err sb_sandbox_sweep_start(sb_broker *b)
{
    int64_t every = (b->cfg.idle_stop_ms < b->cfg.idle_archive_ms ? b->cfg.idle_stop_ms
                                                                  : b->cfg.idle_archive_ms) /
        4;
    if (every < 50)
        every = 50;
    if (every > 30000)
        every = 30000;
    b->idle_timer = kx_loop_timer(b->svc->loop, every, on_idle_sweep, b);
    return b->idle_timer != NULL ? KX_OK : KX_ERR_NOMEM;
}
