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
#include <sys/stat.h>
#include <unistd.h>

#include "kx/config.h"
#include "kx/log.h"
#include "kx/metrics.h"
#include "kx/pb.h"
#include "kx/time.h"
#include "sandbox.h"

#define STATE_FILE "sandbox.state"

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
    /* "<id> <state> <uid> <created> <updated>\n" */
    char *save = NULL;
    const char *f[5];
    for (int i = 0; i < 5; i++) {
        f[i] = strtok_r(i == 0 ? buf : NULL, " \n", &save);
        if (f[i] == NULL)
            return KX_ERR_INTERNAL;
    }
    int64_t uid = 0;
    if (!kx_uuid_valid(f[0]) || strlen(f[1]) >= sizeof out->state ||
        kx_parse_int("uid", f[2], 0, UINT32_MAX, &uid) != KX_OK ||
        kx_parse_int("created", f[3], 0, INT64_MAX, &out->created_ms) != KX_OK ||
        kx_parse_int("updated", f[4], 0, INT64_MAX, &out->updated_ms) != KX_OK)
        return KX_ERR_INTERNAL;
    snprintf(out->id, sizeof out->id, "%s", f[0]);
    snprintf(out->state, sizeof out->state, "%s", f[1]);
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
    int n = snprintf(buf, sizeof buf, "%s %s %u %lld %lld\n", st->id, st->state, (unsigned)st->uid,
                     (long long)st->created_ms, (long long)st->updated_ms);
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
    info->broker = strcmp(st->state, "running") == 0 ? b->svc->instance_id : "";
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

/* Sets the record's state (when it has one) and publishes it. */
static kx_err set_state(sb_broker *b, const char *project_id, const char *state, sb_state *st)
{
    if (sb_state_load(&b->cfg, project_id, st) != KX_OK)
        return KX_ERR_NOT_FOUND;
    snprintf(st->state, sizeof st->state, "%s", state);
    st->updated_ms = next_stamp();
    if (state_save(&b->cfg, project_id, st) != KX_OK)
        return KX_ERR_INTERNAL;
    publish(b, project_id, st);
    return KX_OK;
}

kx_err sb_lifecycle_on_up(sb_broker *b, const char *project_id, uid_t uid, char *why,
                          size_t whylen)
{
    sb_state st;
    bool fresh = sb_state_load(&b->cfg, project_id, &st) != KX_OK;
    if (fresh) {
        kx_uuid_new(st.id);
        st.created_ms = kx_now_ms();
    }
    snprintf(st.state, sizeof st.state, "running");
    st.uid = uid;
    st.updated_ms = next_stamp();
    if (state_save(&b->cfg, project_id, &st) != KX_OK) {
        snprintf(why, whylen, "could not record the sandbox: %s", strerror(errno));
        return KX_ERR_INTERNAL;
    }
    if (fresh)
        kx_info("sandbox: project %s: sandbox %s created", project_id, st.id);
    publish(b, project_id, &st);
    return KX_OK;
}

void sb_lifecycle_on_down(sb_broker *b, const char *project_id)
{
    sb_state st;
    if (sb_state_load(&b->cfg, project_id, &st) == KX_OK && strcmp(st.state, "running") == 0)
        (void)set_state(b, project_id, "stopped", &st);
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

/* Makes the sandbox run (made when missing), within the request's deadline. */
static kx_err ensure(sb_broker *b, const char *project_id, kx_deadline deadline, sb_state *st,
                     char *why, size_t whylen)
{
    int64_t left = kx_deadline_remaining(deadline) - SB_REPLY_MARGIN_MS;
    if (left <= 0) {
        snprintf(why, whylen, "the request's deadline passed before the sandbox could start");
        return KX_ERR_TIMEOUT;
    }
    sb_sandbox *s = NULL;
    kx_err err = sb_sandbox_ensure(b, project_id, left, &s, why, whylen);
    if (err != KX_OK)
        return err;
    if (sb_state_load(&b->cfg, project_id, st) != KX_OK) {
        snprintf(why, whylen, "the sandbox's record could not be read");
        return KX_ERR_INTERNAL;
    }
    return KX_OK;
}

static kx_err run_op(sb_broker *b, enum sb_op op, const char *project_id, kx_deadline deadline,
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
    case OP_ENSURE: return ensure(b, project_id, deadline, st, why, whylen);
    case OP_GET:
        if (have == KX_ERR_NOT_FOUND) {
            snprintf(why, whylen, "project %s has no sandbox", project_id);
            return KX_ERR_NOT_FOUND;
        }
        /* A record saying running whose jail is not here: its broker ended (a restart). */
        if (running == NULL && strcmp(st->state, "running") == 0)
            snprintf(st->state, sizeof st->state, "stopped");
        return KX_OK;
    case OP_START:
        if (have == KX_ERR_NOT_FOUND) {
            snprintf(why, whylen, "project %s has no sandbox: create it first", project_id);
            return KX_ERR_NOT_FOUND;
        }
        return ensure(b, project_id, deadline, st, why, whylen);
    case OP_STOP:
    case OP_ARCHIVE:
        if (have == KX_ERR_NOT_FOUND) {
            snprintf(why, whylen, "project %s has no sandbox", project_id);
            return KX_ERR_NOT_FOUND;
        }
        if (running != NULL)
            sb_sandbox_stop(running, op == OP_STOP ? "stop requested" : "archive requested");
        if (op == OP_STOP && strcmp(st->state, "archived") == 0)
            return sb_state_load(&b->cfg, project_id, st); /* stays archived */
        if (set_state(b, project_id, op == OP_STOP ? "stopped" : "archived", st) != KX_OK) {
            snprintf(why, whylen, "the sandbox's record could not be written");
            return KX_ERR_INTERNAL;
        }
        return KX_OK;
    case OP_DELETE:
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
        err = run_op(b, c->op, project, meta.deadline, &st, why, sizeof why);
    }
    if (err != KX_OK)
        kx_info("sandbox: %s for project %s refused: %s", OP_NAMES[c->op], project, why);
    reply(b, msg, project, &st, err, why);
    kx_pb_free(rq);
}

/* At start no jail is ours: a record still saying running is from before a restart (its
 * processes ended with the old broker; its files are all there) and now says stopped. One
 * broker per KX_SANDBOX_ROOT (README "Not done": several replicas). */
static void reconcile(sb_broker *b)
{
    DIR *d = opendir(b->cfg.root);
    if (d == NULL)
        return;
    struct dirent *de;
    int n = 0;
    while ((de = readdir(d)) != NULL) {
        sb_state st;
        if (kx_uuid_valid(de->d_name) && sb_state_load(&b->cfg, de->d_name, &st) == KX_OK &&
            strcmp(st.state, "running") == 0 && set_state(b, de->d_name, "stopped", &st) == KX_OK)
            n++;
    }
    closedir(d);
    if (n > 0)
        kx_info("sandbox: %d sandbox(es) left running by a previous broker are now stopped "
                "(their files are kept)",
                n);
}

kx_err sb_lifecycle_start(sb_broker *b)
{
    reconcile(b);
    for (size_t i = 0; i < NOPS; i++) {
        g_ops[i].b = b;
        g_ops[i].op = (enum sb_op)i;
        char subj[64];
        snprintf(subj, sizeof subj, KX_SUBJ_SANDBOX_LIFECYCLE_PREFIX "%s", OP_NAMES[i]);
        kx_err err = kx_bus_subscribe_loop(b->svc->bus, b->svc->loop, subj, "sandbox-broker",
                                           on_op, &g_ops[i], &b->lifecycle_subs[i]);
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
        if (set_state(b, de->d_name, "archived", &st) == KX_OK)
            kx_info("sandbox: project %s: archived after %lld ms stopped", de->d_name,
                    (long long)(now - st.updated_ms));
    }
    closedir(d);
}
