/* lifecycle.c — kx.sandbox.create|get|start|stop|archive|delete|ensure_active, the sandbox's
 * record on disk, its state events and auto-archive (see lifecycle.h). */
#include "lifecycle.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kx/config.h"
#include "kx/log.h"
#include "kx/metrics.h"
#include "kx/pb.h"
#include "kx/time.h"
#include "fleet.h"
#include "sandbox.h"

#define STATE_FILE "sandbox.state"
#define LOCK_FILE "sandbox.lock"

enum sb_op {
    OP_CREATE,
    OP_GET,
    OP_START,
    OP_STOP,
    OP_ARCHIVE,
    OP_DELETE,
    OP_ENSURE
};
static const char *const OP_NAMES[] = {"create",  "get",    "start",        "stop",
                                       "archive", "delete", "ensure_active"};
#define NOPS (sizeof OP_NAMES / sizeof OP_NAMES[0])

typedef struct op_ctx {
    sb_broker *b;
    enum sb_op op;
} op_ctx;
static op_ctx g_ops[NOPS];

/* ---- the record ------------------------------------------------------------------------- */

static int64_t g_last_ms; /* loop thread: updated_ms only grows on this broker */

static int64_t next_stamp(void)
{
    int64_t now = kx_now_ms();
    g_last_ms = now > g_last_ms ? now : g_last_ms + 1;
    return g_last_ms;
}

/* A stamp after the record's own (written under its lock, so it grows across brokers too). */
static int64_t stamp_after(const sb_state *st)
{
    int64_t t = next_stamp();
    if (t <= st->updated_ms)
        t = g_last_ms = st->updated_ms + 1;
    return t;
}

/* The record's lock (flock on <root>/<project>/sandbox.lock), or -1 when the project has no
 * directory (then it has no record either). Released by record_unlock. */
static int record_lock(const sb_config *cfg, const char *project_id)
{
    char path[2300];
    snprintf(path, sizeof path, "%s/%s/%s", cfg->root, project_id, LOCK_FILE);
    int fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    while (flock(fd, LOCK_EX) != 0) { /* held by another broker for one read-write: short */
        if (errno != EINTR) {
            close(fd);
            return -1;
        }
    }
    return fd;
}

static void record_unlock(int fd)
{
    if (fd >= 0)
        close(fd); /* releases the flock */
}

static void state_path(const sb_config *cfg, const char *project_id, const char *suffix, char *out,
                       size_t cap)
{
    snprintf(out, cap, "%s/%s/%s%s", cfg->root, project_id, STATE_FILE, suffix);
}

kx_err sb_state_load(const sb_config *cfg, const char *project_id, sb_state *out)
{
    memset(out, 0, sizeof *out);
    char path[2300];
    state_path(cfg, project_id, "", path, sizeof path);
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT || errno == ENOTDIR ? KX_ERR_NOT_FOUND : KX_ERR_INTERNAL;
    char buf[256];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return KX_ERR_INTERNAL;
    buf[n] = '\0';
    /* "<id> <state> <uid> <created> <updated>[ <owner>]\n" */
    char *save = NULL;
    const char *f[6];
    for (int i = 0; i < 6; i++) {
        f[i] = strtok_r(i == 0 ? buf : NULL, " \n", &save);
        if (i < 5 && f[i] == NULL)
            return KX_ERR_INTERNAL;
    }
    if (f[5] != NULL && strlen(f[5]) >= sizeof out->owner)
        return KX_ERR_INTERNAL;
    int64_t uid = 0;
    if (!kx_uuid_valid(f[0]) || strlen(f[1]) >= sizeof out->state ||
        kx_parse_int("uid", f[2], 0, UINT32_MAX, &uid) != KX_OK ||
        kx_parse_int("created", f[3], 0, INT64_MAX, &out->created_ms) != KX_OK ||
        kx_parse_int("updated", f[4], 0, INT64_MAX, &out->updated_ms) != KX_OK)
        return KX_ERR_INTERNAL;
    snprintf(out->id, sizeof out->id, "%s", f[0]);
    snprintf(out->state, sizeof out->state, "%s", f[1]);
    snprintf(out->owner, sizeof out->owner, "%s", f[5] != NULL ? f[5] : "");
    out->uid = (uid_t)uid;
    return KX_OK;
}

static kx_err state_save(const sb_config *cfg, const char *project_id, const sb_state *st)
{
    char path[2300], tmp[2310];
    state_path(cfg, project_id, "", path, sizeof path);
    state_path(cfg, project_id, ".tmp", tmp, sizeof tmp);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return KX_ERR_INTERNAL;
    char buf[256];
    bool owned = strcmp(st->state, "running") == 0 && st->owner[0] != '\0';
    int n = snprintf(buf, sizeof buf, "%s %s %u %lld %lld%s%s\n", st->id, st->state,
                     (unsigned)st->uid, (long long)st->created_ms, (long long)st->updated_ms,
                     owned ? " " : "", owned ? st->owner : "");
    bool ok = write(fd, buf, (size_t)n) == n;
    ok = close(fd) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        return KX_ERR_INTERNAL;
    }
    return KX_OK;
}

/* ---- state events ----------------------------------------------------------------------- */

static void fill_info(sb_broker *b, const char *project_id, const sb_state *st,
                      Kx__V1__SandboxInfo *info)
{
    info->id = (char *)st->id;
    info->project_id = (char *)project_id;
    info->state = (char *)st->state;
    info->provider = "local";
    info->broker = strcmp(st->state, "running") == 0 ? (char *)st->owner : "";
    info->created_unix_ms = st->created_ms;
    info->updated_unix_ms = st->updated_ms;
}

static void publish(sb_broker *b, const char *project_id, const sb_state *st)
{
    Kx__V1__SandboxInfo info = KX__V1__SANDBOX_INFO__INIT;
    fill_info(b, project_id, st, &info);
    kx_err err = kx_bus_publish_pb(b->svc->bus, KX_SUBJ_SANDBOX_STATE, &info.base, NULL);
    if (err != KX_OK)
        kx_warn("sandbox: project %s: could not publish its state %s: %s", project_id, st->state,
                kx_err_str(err));
    char labels[64];
    snprintf(labels, sizeof labels, "state=\"%s\"", st->state);
    kx_counter_add(kx_metrics_counter("kx_sandbox_state_changes_total", labels,
                                      "Sandbox state changes, by new state"),
                   1);
}

bool sb_lifecycle_elsewhere(sb_broker *b, const sb_state *st)
{
    return strcmp(st->state, "running") == 0 && st->owner[0] != '\0' &&
        strcmp(st->owner, b->id) != 0 && sb_fleet_alive(b, st->owner);
}

/* What a change requires of the record, checked under its lock. */
enum sb_require {
    REQ_ANY,           /* any record */
    REQ_NOT_ELSEWHERE, /* not running on another live broker (KX_ERR_UNAVAILABLE) */
    REQ_MINE,          /* running here, or with no owner (KX_ERR_CONFLICT otherwise) */
    REQ_STOPPED_LONG,  /* stopped for cfg.idle_archive_ms at least (KX_ERR_CONFLICT otherwise) */
};

/* Sets the record's state (when it has one and it meets req) under its lock, and publishes
 * it. st gets the record (as it was when req refused it). */
static kx_err set_state(sb_broker *b, const char *project_id, const char *state,
                        enum sb_require req, sb_state *st)
{
    int lk = record_lock(&b->cfg, project_id);
    kx_err err = sb_state_load(&b->cfg, project_id, st);
    if (err == KX_OK) {
        bool running = strcmp(st->state, "running") == 0;
        if (req == REQ_NOT_ELSEWHERE && sb_lifecycle_elsewhere(b, st))
            err = KX_ERR_UNAVAILABLE;
        else if (req == REQ_MINE &&
                 (!running || (st->owner[0] != '\0' && strcmp(st->owner, b->id) != 0)))
            err = KX_ERR_CONFLICT;
        else if (req == REQ_STOPPED_LONG &&
                 (strcmp(st->state, "stopped") != 0 ||
                  kx_now_ms() - st->updated_ms < b->cfg.idle_archive_ms))
            err = KX_ERR_CONFLICT;
    }
    if (err == KX_OK) {
        snprintf(st->state, sizeof st->state, "%s", state);
        st->owner[0] = '\0';
        st->updated_ms = stamp_after(st);
        err = state_save(&b->cfg, project_id, st);
    }
    record_unlock(lk);
    if (err == KX_OK)
        publish(b, project_id, st);
    return err;
}

kx_err sb_lifecycle_claim(sb_broker *b, const char *project_id, sb_state *prev, bool *had,
                          char *why, size_t whylen)
{
    char dir[2200];
    snprintf(dir, sizeof dir, "%s/%s", b->cfg.root, project_id);
    if (mkdir(dir, 0711) != 0 && errno != EEXIST) {
        snprintf(why, whylen, "could not create the sandbox directory: %s", strerror(errno));
        return KX_ERR_INTERNAL;
    }
    int lk = record_lock(&b->cfg, project_id);
    if (lk < 0) {
        snprintf(why, whylen, "could not lock the sandbox's record in its workspace directory: %s",
                 strerror(errno));
        return KX_ERR_INTERNAL;
    }
    kx_err err = sb_state_load(&b->cfg, project_id, prev);
    *had = err == KX_OK;
    if (err != KX_OK && err != KX_ERR_NOT_FOUND) {
        record_unlock(lk);
        snprintf(why, whylen, "the sandbox's record could not be read");
        return KX_ERR_INTERNAL;
    }
    if (*had && sb_lifecycle_elsewhere(b, prev)) {
        record_unlock(lk);
        snprintf(why, whylen, "the sandbox runs on broker %s: retry (requests are routed there)",
                 prev->owner);
        return KX_ERR_UNAVAILABLE;
    }
    sb_state st = *prev;
    if (!*had) {
        memset(&st, 0, sizeof st);
        kx_uuid_new(st.id);
        st.created_ms = kx_now_ms();
        st.uid = (uid_t)-1;
    }
    snprintf(st.state, sizeof st.state, "running");
    snprintf(st.owner, sizeof st.owner, "%s", b->id);
    st.updated_ms = stamp_after(&st);
    err = state_save(&b->cfg, project_id, &st);
    record_unlock(lk);
    if (err != KX_OK) {
        snprintf(why, whylen, "could not record the sandbox: %s", strerror(errno));
        return KX_ERR_INTERNAL;
    }
    if (*had && strcmp(prev->state, "running") == 0 && prev->owner[0] != '\0' &&
        strcmp(prev->owner, b->id) != 0)
        kx_info("sandbox: project %s: taken over from broker %s (its lease expired)", project_id,
                prev->owner);
    return KX_OK;
}

void sb_lifecycle_unclaim(sb_broker *b, const char *project_id, const sb_state *prev, bool had)
{
    int lk = record_lock(&b->cfg, project_id);
    sb_state st;
    if (sb_state_load(&b->cfg, project_id, &st) == KX_OK && strcmp(st.owner, b->id) == 0) {
        if (!had) {
            char path[2300];
            state_path(&b->cfg, project_id, "", path, sizeof path);
            (void)unlink(path);
        } else {
            sb_state back = *prev;
            if (strcmp(back.state, "running") == 0) /* its broker died: the jail is not there */
                snprintf(back.state, sizeof back.state, "stopped");
            back.owner[0] = '\0';
            back.updated_ms = stamp_after(&st);
            (void)state_save(&b->cfg, project_id, &back);
        }
    }
    record_unlock(lk);
}

kx_err sb_lifecycle_on_up(sb_broker *b, const char *project_id, uid_t uid, char *why,
                          size_t whylen)
{
    int lk = record_lock(&b->cfg, project_id);
    sb_state st;
    bool fresh = sb_state_load(&b->cfg, project_id, &st) != KX_OK;
    if (fresh) { /* claimed before the start: only a record removed meanwhile lands here */
        memset(&st, 0, sizeof st);
        kx_uuid_new(st.id);
        st.created_ms = kx_now_ms();
    }
    bool created = fresh || st.uid == (uid_t)-1;
    snprintf(st.state, sizeof st.state, "running");
    snprintf(st.owner, sizeof st.owner, "%s", b->id);
    st.uid = uid;
    st.updated_ms = stamp_after(&st);
    kx_err err = state_save(&b->cfg, project_id, &st);
    record_unlock(lk);
    if (err != KX_OK) {
        snprintf(why, whylen, "could not record the sandbox: %s", strerror(errno));
        return KX_ERR_INTERNAL;
    }
    if (created)
        kx_info("sandbox: project %s: sandbox %s created", project_id, st.id);
    publish(b, project_id, &st);
    return KX_OK;
}

void sb_lifecycle_on_down(sb_broker *b, const char *project_id)
{
    sb_state st;
    (void)set_state(b, project_id, "stopped", REQ_MINE, &st);
}

/* ---- the ops ---------------------------------------------------------------------------- */

static void reply(sb_broker *b, natsMsg *msg, const char *project_id, const sb_state *st,
                  kx_err err, const char *why)
{
    Kx__V1__SandboxLifecycleReply rep = KX__V1__SANDBOX_LIFECYCLE_REPLY__INIT;
    Kx__V1__SandboxInfo info = KX__V1__SANDBOX_INFO__INIT;
    Kx__V1__Error e = KX__V1__ERROR__INIT;
    if (err != KX_OK) {
        e.code = (char *)kx_err_code(err);
        e.message = (char *)why;
        rep.error = &e;
    } else {
        fill_info(b, project_id, st, &info);
        rep.sandbox = &info;
    }
    if (natsMsg_GetReply(msg) != NULL) {
        kx_err rerr = kx_bus_respond_pb(b->svc->bus, msg, &rep.base);
        if (rerr != KX_OK)
            kx_warn("sandbox: could not answer a lifecycle request: %s", kx_err_str(rerr));
    }
    natsMsg_Destroy(msg);
}

/* Makes the sandbox run (made when missing) for the request's account, within its deadline. */
static kx_err ensure(sb_broker *b, const char *project_id, const kx_bus_meta *meta, sb_state *st,
                     char *why, size_t whylen)
{
    int64_t left = kx_deadline_remaining(meta->deadline) - SB_REPLY_MARGIN_MS;
    if (left <= 0) {
        snprintf(why, whylen, "the request's deadline passed before the sandbox could start");
        return KX_ERR_TIMEOUT;
    }
    sb_sandbox *s = NULL;
    kx_err err = sb_sandbox_ensure(b, project_id, meta->account, left, &s, why, whylen);
    if (err != KX_OK)
        return err;
    if (sb_state_load(&b->cfg, project_id, st) != KX_OK) {
        snprintf(why, whylen, "the sandbox's record could not be read");
        return KX_ERR_INTERNAL;
    }
    return KX_OK;
}

static kx_err run_op(sb_broker *b, enum sb_op op, const char *project_id, const kx_bus_meta *meta,
                     sb_state *st, char *why, size_t whylen)
{
    kx_err have = sb_state_load(&b->cfg, project_id, st);
    if (have != KX_OK && have != KX_ERR_NOT_FOUND) {
        snprintf(why, whylen, "the sandbox's record could not be read");
        return KX_ERR_INTERNAL;
    }
    sb_sandbox *running = sb_sandbox_find(b, project_id);
    switch (op) {
    case OP_CREATE:
    case OP_ENSURE: return ensure(b, project_id, meta, st, why, whylen);
    case OP_GET:
        if (have == KX_ERR_NOT_FOUND) {
            snprintf(why, whylen, "project %s has no sandbox", project_id);
            return KX_ERR_NOT_FOUND;
        }
        /* A record saying running whose jail is neither here nor on a live broker: its broker
         * ended (a takeover or a restart will start it again). */
        if (running == NULL && strcmp(st->state, "running") == 0 &&
            !sb_lifecycle_elsewhere(b, st)) {
            snprintf(st->state, sizeof st->state, "stopped");
            st->owner[0] = '\0';
        }
        return KX_OK;
    case OP_START:
        if (have == KX_ERR_NOT_FOUND) {
            snprintf(why, whylen, "project %s has no sandbox: create it first", project_id);
            return KX_ERR_NOT_FOUND;
        }
        return ensure(b, project_id, meta, st, why, whylen);
    case OP_STOP:
    case OP_ARCHIVE:
        if (have == KX_ERR_NOT_FOUND) {
            snprintf(why, whylen, "project %s has no sandbox", project_id);
            return KX_ERR_NOT_FOUND;
        }
        if (running == NULL && sb_lifecycle_elsewhere(b, st)) {
            snprintf(why, whylen, "the sandbox runs on broker %s: retry", st->owner);
            return KX_ERR_UNAVAILABLE;
        }
        if (running != NULL)
            sb_sandbox_stop(running, op == OP_STOP ? "stop requested" : "archive requested");
        if (op == OP_STOP && strcmp(st->state, "archived") == 0)
            return sb_state_load(&b->cfg, project_id, st); /* stays archived */
        kx_err serr = set_state(b, project_id, op == OP_STOP ? "stopped" : "archived",
                                REQ_NOT_ELSEWHERE, st);
        if (serr == KX_ERR_UNAVAILABLE) {
            snprintf(why, whylen, "the sandbox runs on broker %s: retry", st->owner);
            return serr;
        }
        if (serr != KX_OK) {
            snprintf(why, whylen, "the sandbox's record could not be written");
            return KX_ERR_INTERNAL;
        }
        return KX_OK;
    case OP_DELETE:
        if (running == NULL && have == KX_OK && sb_lifecycle_elsewhere(b, st)) {
            snprintf(why, whylen, "the sandbox runs on broker %s: retry", st->owner);
            return KX_ERR_UNAVAILABLE;
        }
        if (running != NULL)
            sb_sandbox_stop(running, "delete requested");
        if (have == KX_ERR_NOT_FOUND) {
            memset(st, 0, sizeof *st);
        } else {
            kx_err err = sb_sandbox_remove(b, project_id, st->uid, why, whylen);
            if (err != KX_OK)
                return err;
            kx_info("sandbox: project %s: sandbox %s deleted", project_id, st->id);
        }
        snprintf(st->state, sizeof st->state, "deleted");
        st->updated_ms = next_stamp();
        if (have == KX_OK)
            publish(b, project_id, st);
        return KX_OK;
    }
    return KX_ERR_INTERNAL;
}

static void on_op(natsMsg *msg, void *arg)
{
    op_ctx *c = arg;
    sb_broker *b = c->b;
    char why[512] = "";
    sb_state st;
    memset(&st, 0, sizeof st);
    kx_bus_meta meta;
    memset(&meta, 0, sizeof meta);
    Kx__V1__SandboxLifecycleRequest *rq =
        kx_pb_unpack(&kx__v1__sandbox_lifecycle_request__descriptor, natsMsg_GetData(msg),
                     (size_t)natsMsg_GetDataLength(msg));
    char project[KX_UUID_LEN + 1] = "";
    kx_err err = KX_ERR_INVALID;
    if (b->draining) {
        err = KX_ERR_UNAVAILABLE;
        snprintf(why, sizeof why, "broker shutting down");
    } else if (kx_bus_meta_read(msg, &meta) != KX_OK || meta.deadline == KX_NO_DEADLINE) {
        snprintf(why, sizeof why, "the Kx-Deadline header (absolute unix ms) is required");
    } else if (rq == NULL) {
        snprintf(why, sizeof why, "request is not a valid kx.v1.SandboxLifecycleRequest");
    } else if (!kx_uuid_valid(rq->project_id)) {
        snprintf(why, sizeof why, "project_id '%.64s' is not a valid UUID",
                 rq->project_id ? rq->project_id : "");
    } else {
        for (size_t i = 0; i < KX_UUID_LEN; i++)
            project[i] = (char)((rq->project_id[i] >= 'A' && rq->project_id[i] <= 'F')
                                    ? rq->project_id[i] + 32
                                    : rq->project_id[i]);
        if (sb_fleet_route(b, msg, project)) { /* fleet.c: its owner answers */
            kx_pb_free(rq);
            return;
        }
        err = run_op(b, c->op, project, &meta, &st, why, sizeof why);
    }
    if (err != KX_OK)
        kx_info("sandbox: %s for project %s refused: %s", OP_NAMES[c->op], project, why);
    reply(b, msg, project, &st, err, why);
    kx_pb_free(rq);
}

kx_err sb_lifecycle_start(sb_broker *b)
{
    /* fleet.c: what this broker (same id), nobody or a dead broker left running starts again
     * here; a record running on another live broker is left alone. */
    int n = sb_fleet_adopt(b, NULL);
    if (n > 0)
        kx_info("sandbox: %d sandbox(es) left running are running again here (adopted)", n);
    for (size_t i = 0; i < NOPS; i++) {
        g_ops[i].b = b;
        g_ops[i].op = (enum sb_op)i;
        char subj[64];
        snprintf(subj, sizeof subj, KX_SUBJ_SANDBOX_LIFECYCLE_PREFIX "%s", OP_NAMES[i]);
        kx_err err =
            sb_fleet_subscribe(b, subj, "sandbox-broker", on_op, &g_ops[i], &b->lifecycle_subs[i]);
        if (err != KX_OK) {
            kx_error("sandbox: cannot subscribe to %s: %s", subj, kx_err_str(err));
            return err;
        }
    }
    return KX_OK;
}

/* ---- auto-archive ----------------------------------------------------------------------- */

void sb_lifecycle_sweep(sb_broker *b)
{
    DIR *d = opendir(b->cfg.root);
    if (d == NULL)
        return;
    int64_t now = kx_now_ms();
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (!kx_uuid_valid(de->d_name))
            continue;
        sb_state st;
        if (sb_state_load(&b->cfg, de->d_name, &st) != KX_OK || strcmp(st.state, "stopped") != 0 ||
            now - st.updated_ms < b->cfg.idle_archive_ms || sb_sandbox_find(b, de->d_name) != NULL)
            continue;
        /* Checked again under the lock: another broker may have started (and stopped) it
         * meanwhile. */
        int64_t stopped_ms = now - st.updated_ms;
        if (set_state(b, de->d_name, "archived", REQ_STOPPED_LONG, &st) == KX_OK)
            kx_info("sandbox: project %s: archived after %lld ms stopped", de->d_name,
                    (long long)stopped_ms);
    }
    closedir(d);
}
