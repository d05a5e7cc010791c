/* daytona.c — the daytona provider's settings, ops (resolve, start), lifecycle and preview links,
 * and the provider's start and drain (see daytona.h). Daytona's REST API as used
 * here (its public API reference and SDKs; docs/architecture.md cites them):
 *   POST   /sandbox                         {snapshot, target, labels, env, public, cpu, memory,
 *                                            disk, autoStopInterval, autoArchiveInterval}
 *   GET    /sandbox?labels=<json>           [Sandbox]: the project's sandbox by label "id";
 *                                            an account's by label "kx_account" (admit)
 *   GET    /sandbox/{id}                    Sandbox {id, state, createdAt, ...}
 *   POST   /sandbox/{id}/start | stop | archive
 *   DELETE /sandbox/{id}
 *   GET    /sandbox/{id}/ports/{port}/preview-url   {url, token}
 * States: started, stopped, archived, and transient ones (creating, starting, stopping, ...). */
#include "daytona.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "kx/config.h"
#include "kx/json.h"
#include "kx/log.h"
#include "kx/metrics.h"
#include "reply.h"

#define DT_BUCKETS 256

typedef struct dt_map_entry {
    char project[KX_UUID_LEN + 1];
    char sid[128];
    struct dt_map_entry *next;
} dt_map_entry;

struct sb_daytona {
    sb_broker *b;
    sb_dt_config cfg;
    sb_dt_client *http;
    dt_map_entry *map[DT_BUCKETS]; /* project -> Daytona sandbox id, filled as learned */
    sb_dt_op *ops;                 /* in flight */
    natsSubscription *subs[16];
    size_t nsubs;
    int64_t last_stamp;
};

static const char *const KIND_NAMES[] = {"create", "get",           "start", "stop",  "archive",
                                         "delete", "ensure_active", "exec",  "files", "preview"};

const sb_dt_config *sb_dt_cfg(const sb_daytona *d)
{
    return &d->cfg;
}
sb_dt_client *sb_dt_http(sb_daytona *d)
{
    return d->http;
}
sb_broker *sb_dt_broker(sb_daytona *d)
{
    return d->b;
}

/* ---- settings --------------------------------------------------------------------------- */

static kx_err load_config(sb_dt_config *c)
{
    memset(c, 0, sizeof *c);
    const char *url = kx_env_str("DAYTONA_SERVER_URL", kx_env_str("DAYTONA_API_URL", NULL));
    const char *key = kx_env_str("DAYTONA_API_KEY", NULL);
    if (url == NULL || url[0] == '\0' || key == NULL || key[0] == '\0') {
        kx_error("config: KX_SANDBOX_PROVIDER=daytona needs DAYTONA_SERVER_URL and "
                 "DAYTONA_API_KEY");
        return KX_ERR_INVALID;
    }
    if (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0) {
        kx_error("config: DAYTONA_SERVER_URL=\"%.200s\" is not valid: expected http(s)://...",
                 url);
        return KX_ERR_INVALID;
    }
    if (strlen(url) >= sizeof c->url || strlen(key) >= sizeof c->key) {
        kx_error("config: DAYTONA_SERVER_URL or DAYTONA_API_KEY is too long");
        return KX_ERR_INVALID;
    }
    snprintf(c->url, sizeof c->url, "%s", url);
    for (size_t n = strlen(c->url); n > 0 && c->url[n - 1] == '/'; n--)
        c->url[n - 1] = '\0';
    snprintf(c->key, sizeof c->key, "%s", key);
    snprintf(c->target, sizeof c->target, "%s", kx_env_str("DAYTONA_TARGET", ""));
    snprintf(c->snapshot, sizeof c->snapshot, "%s",
             kx_env_str("KX_DAYTONA_SNAPSHOT", "kortix/suna:0.1.3"));
    snprintf(c->env, sizeof c->env, "%s", kx_env_str("KX_DAYTONA_ENV", ""));
    kx_err err = KX_OK;
#define INT(name, def, lo, hi, dst) \
    if (err == KX_OK)               \
    err = kx_env_int(name, def, lo, hi, dst)
    INT("KX_DAYTONA_CPU", 2, 1, 64, &c->cpu);
    INT("KX_DAYTONA_MEMORY_GB", 4, 1, 1024, &c->memory_gb);
    INT("KX_DAYTONA_DISK_GB", 5, 1, 10240, &c->disk_gb);
    INT("KX_SANDBOX_AUTO_STOP_MIN", 15, 0, 7 * 24 * 60, &c->stop_min);
    INT("KX_SANDBOX_AUTO_ARCHIVE_MIN", 120, 0, 365 * 24 * 60, &c->archive_min);
    INT("KX_DAYTONA_GET_MS", 10000, 50, 600000, &c->get_ms);
    INT("KX_DAYTONA_START_MS", 30000, 50, 1800000, &c->start_ms);
    INT("KX_DAYTONA_CREATE_MS", 60000, 50, 1800000, &c->create_ms);
    INT("KX_DAYTONA_PREVIEW_MS", 10000, 50, 600000, &c->preview_ms);
    INT("KX_DAYTONA_FILES_MS", 30000, 50, 600000, &c->files_ms);
    INT("KX_DAYTONA_POLL_MS", 500, 10, 60000, &c->poll_ms);
    INT("KX_DAYTONA_BREAKER_FAILURES", 5, 1, 1000000, &c->breaker);
    INT("KX_SANDBOX_MAX_OUTPUT", SB_DEFAULT_MAX_OUTPUT, 1024, (int64_t)256 * 1024 * 1024,
        &c->max_output);
    INT("KX_SANDBOX_MAX_PER_ACCOUNT", 20, 0, 1000000, &c->per_account);
#undef INT
    return err;
}

/* ---- project -> sandbox id -------------------------------------------------------------- */

static unsigned bucket_of(const char *project)
{
    unsigned h = 2166136261u;
    for (const char *p = project; *p != '\0'; p++)
        h = (h ^ (unsigned char)*p) * 16777619u;
    return h % DT_BUCKETS;
}

static dt_map_entry *map_find(sb_daytona *d, const char *project)
{
    for (dt_map_entry *e = d->map[bucket_of(project)]; e != NULL; e = e->next)
        if (strcmp(e->project, project) == 0)
            return e;
    return NULL;
}

static void map_set(sb_daytona *d, const char *project, const char *sid)
{
    dt_map_entry *e = map_find(d, project);
    if (e == NULL) {
        e = calloc(1, sizeof *e);
        if (e == NULL)
            return; /* not remembered: the next op asks the API again */
        snprintf(e->project, sizeof e->project, "%s", project);
        unsigned h = bucket_of(project);
        e->next = d->map[h];
        d->map[h] = e;
    }
    snprintf(e->sid, sizeof e->sid, "%s", sid);
}

static void map_forget(sb_daytona *d, const char *project)
{
    for (dt_map_entry **pp = &d->map[bucket_of(project)]; *pp != NULL; pp = &(*pp)->next) {
        if (strcmp((*pp)->project, project) == 0) {
            dt_map_entry *e = *pp;
            *pp = e->next;
            free(e);
            return;
        }
    }
}

/* ---- ops -------------------------------------------------------------------------------- */

int64_t sb_dt_budget(const sb_dt_op *op, int64_t setting_ms)
{
    int64_t left = kx_deadline_remaining(op->deadline);
    return left < setting_ms ? left : setting_ms;
}

void sb_dt_op_end(sb_dt_op *op)
{
    sb_daytona *d = op->d;
    if (op->prev != NULL)
        op->prev->next = op->next;
    else
        d->ops = op->next;
    if (op->next != NULL)
        op->next->prev = op->prev;
    sb_dt_cancel(d->http, op->call);
    kx_timer_cancel(op->timer);
    kx_pb_free(op->exec);
    kx_pb_free(op->files);
    json_decref(op->cmds);
    kx_buf_free(&op->logs);
    if (op->msg != NULL)
        natsMsg_Destroy(op->msg);
    free(op);
}

static sb_dt_op *op_new(sb_daytona *d, enum sb_dt_kind kind, natsMsg *msg, const char *project,
                        kx_deadline deadline, const char *trace_id, const char *account)
{
    sb_dt_op *op = calloc(1, sizeof *op);
    if (op == NULL)
        return NULL;
    op->d = d;
    op->kind = kind;
    op->msg = msg;
    for (size_t i = 0; i < KX_UUID_LEN && project[i] != '\0'; i++)
        op->project[i] =
            (char)((project[i] >= 'A' && project[i] <= 'F') ? project[i] + 32 : project[i]);
    op->deadline = deadline - SB_REPLY_MARGIN_MS;
    snprintf(op->trace_id, sizeof op->trace_id, "%s", trace_id != NULL ? trace_id : "");
    snprintf(op->account, sizeof op->account, "%s", account != NULL ? account : "");
    op->next = d->ops;
    if (d->ops != NULL)
        d->ops->prev = op;
    d->ops = op;
    return op;
}

static int64_t next_stamp(sb_daytona *d)
{
    int64_t now = kx_now_ms();
    d->last_stamp = now > d->last_stamp ? now : d->last_stamp + 1;
    return d->last_stamp;
}

static void fill_info(sb_dt_op *op, Kx__V1__SandboxInfo *info, int64_t stamp)
{
    info->id = op->sid;
    info->project_id = op->project;
    info->state = op->state;
    info->provider = "daytona";
    info->broker = "";
    info->created_unix_ms = op->created_ms;
    info->updated_unix_ms = stamp;
}

static bool changes_state(enum sb_dt_kind k)
{
    return k == DT_CREATE || k == DT_START || k == DT_STOP || k == DT_ARCHIVE || k == DT_DELETE ||
        k == DT_ENSURE;
}

static void answer_lifecycle(sb_dt_op *op, kx_err err, const char *why)
{
    sb_broker *b = op->d->b;
    Kx__V1__SandboxLifecycleReply rep = KX__V1__SANDBOX_LIFECYCLE_REPLY__INIT;
    Kx__V1__SandboxInfo info = KX__V1__SANDBOX_INFO__INIT;
    Kx__V1__Error e = KX__V1__ERROR__INIT;
    int64_t stamp = next_stamp(op->d);
    if (err != KX_OK) {
        e.code = (char *)kx_err_code(err);
        e.message = (char *)why;
        rep.error = &e;
        kx_log(KX_LOG_INFO, NULL, op->trace_id, "sandbox: daytona %s for project %s: %s",
               KIND_NAMES[op->kind], op->project, why);
    } else {
        fill_info(op, &info, stamp);
        rep.sandbox = &info;
        if (changes_state(op->kind)) {
            kx_err perr = kx_bus_publish_pb(b->svc->bus, KX_SUBJ_SANDBOX_STATE, &info.base, NULL);
            if (perr != KX_OK)
                kx_warn("sandbox: project %s: could not publish its state %s: %s", op->project,
                        op->state, kx_err_str(perr));
        }
    }
    if (natsMsg_GetReply(op->msg) != NULL) {
        kx_err rerr = kx_bus_respond_pb(b->svc->bus, op->msg, &rep.base);
        if (rerr != KX_OK)
            kx_warn("sandbox: could not answer a lifecycle request: %s", kx_err_str(rerr));
    }
    sb_dt_op_end(op);
}

static void answer_preview(sb_dt_op *op, kx_err err, const char *why, const char *url,
                           const char *token)
{
    Kx__V1__SandboxPreviewReply rep = KX__V1__SANDBOX_PREVIEW_REPLY__INIT;
    Kx__V1__Error e = KX__V1__ERROR__INIT;
    rep.sandbox_id = op->sid;
    rep.port = op->port;
    if (err != KX_OK) {
        e.code = (char *)kx_err_code(err);
        e.message = (char *)why;
        rep.error = &e;
    } else {
        rep.url = (char *)url;
        rep.token = (char *)token;
    }
    if (natsMsg_GetReply(op->msg) != NULL) {
        kx_err rerr = kx_bus_respond_pb(op->d->b->svc->bus, op->msg, &rep.base);
        if (rerr != KX_OK)
            kx_warn("sandbox: could not answer a preview request: %s", kx_err_str(rerr));
    }
    sb_dt_op_end(op);
}

/* Answers op with an error, whatever its kind. */
static void fail(sb_dt_op *op, kx_err err, const char *why)
{
    switch (op->kind) {
    case DT_OUTPUT:
    case DT_TERMINATE:
    case DT_LIST: sb_dt_sessions_fail(op, err, why); return;
    case DT_EXEC: sb_dt_exec_fail(op, err, why); return;
    case DT_FILES: sb_dt_files_fail(op, err, why); return;
    case DT_PREVIEW: answer_preview(op, err, why, NULL, NULL); return;
    default: answer_lifecycle(op, err, why); return;
    }
}

void sb_dt_fail(sb_dt_op *op, kx_err err, const char *why)
{
    fail(op, err, why);
}

/* ---- the sandbox's JSON ----------------------------------------------------------------- */

int64_t sb_dt_iso_ms(const char *s)
{
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    const char *rest = s != NULL ? strptime(s, "%Y-%m-%dT%H:%M:%S", &tm) : NULL;
    if (rest == NULL)
        return 0;
    int64_t ms = (int64_t)timegm(&tm) * 1000;
    if (*rest == '.') { /* a fraction of a second: its first three digits are ms */
        int scale = 100;
        for (const char *p = rest + 1; *p >= '0' && *p <= '9' && scale > 0; p++, scale /= 10)
            ms += (*p - '0') * scale;
    }
    return ms;
}

/* Reads a Sandbox object into op (id, state, created). False when it is not one. */
static bool read_sandbox(sb_dt_op *op, const json_t *sb)
{
    const char *id = json_is_object(sb) ? kx_json_str(sb, "id", NULL) : NULL;
    if (id == NULL || id[0] == '\0' || strlen(id) >= sizeof op->sid)
        return false;
    snprintf(op->sid, sizeof op->sid, "%s", id);
    const char *st = kx_json_str(sb, "state", "");
    if (strcasecmp(st, "started") == 0)
        snprintf(op->state, sizeof op->state, "running");
    else if (strcasecmp(st, "destroyed") == 0)
        snprintf(op->state, sizeof op->state, "deleted");
    else
        snprintf(op->state, sizeof op->state, "%.31s", st); /* stopped, archived, starting.. */
    op->created_ms = sb_dt_iso_ms(kx_json_str(sb, "createdAt", NULL));
    map_set(op->d, op->project, op->sid);
    return true;
}

static bool needs_running(enum sb_dt_kind k)
{
    return k == DT_CREATE || k == DT_START || k == DT_ENSURE || k == DT_EXEC || k == DT_FILES ||
        k == DT_PREVIEW;
}

static void proceed(sb_dt_op *op);
static void do_create(sb_dt_op *op);
static void do_start(sb_dt_op *op);
static void do_get(sb_dt_op *op);

/* Issues a call for op; a call that could not even be made fails op. */
static void call(sb_dt_op *op, const char *method, const char *path, const char *body,
                 int64_t budget_ms, sb_dt_done done)
{
    op->call = sb_dt_request(op->d->http, method, path, body, body != NULL ? strlen(body) : 0,
                             NULL, budget_ms, done, op);
    if (op->call == NULL)
        fail(op, KX_ERR_NOMEM, "daytona: out of memory");
}

/* ---- the sandbox is started: what the op is for ----------------------------------------- */

static void on_preview(const sb_dt_resp *r, void *arg)
{
    sb_dt_op *op = arg;
    op->call = NULL;
    if (r->err != KX_OK) {
        fail(op, r->err, r->why);
        return;
    }
    const char *url = kx_json_str(r->json, "url", NULL);
    if (url == NULL || url[0] == '\0') {
        fail(op, KX_ERR_PROTOCOL, "daytona: the preview-url answer has no url");
        return;
    }
    answer_preview(op, KX_OK, NULL, url, kx_json_str(r->json, "token", ""));
}

/* The sandbox runs (op->state == "running"): the op's own call, or its answer. */
static void proceed(sb_dt_op *op)
{
    char path[256];
    switch (op->kind) {
    case DT_EXEC: sb_dt_exec_run(op); return;
    case DT_FILES: sb_dt_files_run(op); return;
    case DT_PREVIEW:
        snprintf(path, sizeof path, "/sandbox/%s/ports/%d/preview-url", op->sid, op->port);
        call(op, "GET", path, NULL, sb_dt_budget(op, op->d->cfg.preview_ms), on_preview);
        return;
    default: answer_lifecycle(op, KX_OK, NULL); return;
    }
}

/* ---- starting: start or create, then GET until started ----------------------------------- */

static void not_started(sb_dt_op *op)
{
    char why[300];
    snprintf(why, sizeof why, "daytona: sandbox %s did not start in time (still %s)", op->sid,
             op->state);
    fail(op, KX_ERR_TIMEOUT, why);
}

static void on_poll_timer(kx_loop *loop, void *arg)
{
    (void)loop;
    sb_dt_op *op = arg;
    op->timer = NULL;
    int64_t now = kx_now_ms();
    if (now >= op->phase_end || kx_deadline_expired(op->deadline))
        not_started(op); /* the timer fired late: no time for one more GET */
    else {
        op->polling = true;
        do_get(op);
    }
}

/* ---- lists by label --------------------------------------------------------------------- */

/* GET /sandbox?labels={"<key>":"<value>"}, answered to cb. */
static void list_by_label(sb_dt_op *op, const char *key, const char *value, sb_dt_done cb)
{
    json_t *want = json_pack("{s:s}", key, value);
    char *labels = want != NULL ? json_dumps(want, JSON_COMPACT) : NULL;
    json_decref(want);
    if (labels == NULL) {
        fail(op, KX_ERR_NOMEM, "daytona: out of memory");
        return;
    }
    char q[400], path[512];
    sb_dt_escape(labels, q, sizeof q);
    free(labels);
    snprintf(path, sizeof path, "/sandbox?labels=%s", q);
    call(op, "GET", path, NULL, sb_dt_budget(op, op->d->cfg.get_ms), cb);
}

/* The sandboxes of a list answer (an array, or a page {"items": [...]}); NULL when the call
 * failed or the answer is not a list: op failed then. */
static const json_t *list_items(sb_dt_op *op, const sb_dt_resp *r)
{
    op->call = NULL;
    if (r->err != KX_OK) {
        fail(op, r->err, r->why);
        return NULL;
    }
    const json_t *items = json_is_array(r->json) ? r->json : json_object_get(r->json, "items");
    if (!json_is_array(items))
        fail(op, KX_ERR_PROTOCOL, "daytona: GET /sandbox did not answer a list of sandboxes");
    return json_is_array(items) ? items : NULL;
}

/* ---- the account's share: counted before a create or a start ------------------------------ */

/* A Daytona state in which a sandbox holds its resources (runs, or is on its way to). */
static bool state_runs(const char *st)
{
    static const char *const RUNS[] = {"started",         "starting",      "creating",
                                       "restoring",       "pending_build", "building_snapshot",
                                       "pulling_snapshot"};
    for (size_t i = 0; i < sizeof RUNS / sizeof RUNS[0]; i++)
        if (strcasecmp(st, RUNS[i]) == 0)
            return true;
    return false;
}

static void admit(sb_dt_op *op);

static void on_account_list(const sb_dt_resp *r, void *arg)
{
    sb_dt_op *op = arg;
    const json_t *items = list_items(op, r);
    if (items == NULL)
        return;
    int64_t n = 0;
    size_t i;
    const json_t *sb;
    json_array_foreach(items, i, sb)
    {
        const char *project = kx_json_str(json_object_get(sb, "labels"), "id", "");
        n += strcmp(project, op->project) != 0 && state_runs(kx_json_str(sb, "state", ""));
    }
    if (n >= op->d->cfg.per_account) {
        char why[300];
        sb_account_full(why, sizeof why, op->account, n, op->d->cfg.stop_min * 60);
        fail(op, KX_ERR_QUOTA, why);
        return;
    }
    op->admitted = true;
    admit(op);
}

/* Creates the project's sandbox (no sid yet) or starts it, once the request's account is known
 * to have fewer than KX_SANDBOX_MAX_PER_ACCOUNT other sandboxes running: one GET of the
 * sandboxes labelled with it (do_create labels each new one "kx_account"). Daytona's own
 * quotas are the organisation's, shared by every account. */
static void admit(sb_dt_op *op)
{
    const sb_dt_config *c = &op->d->cfg;
    if (!op->admitted && c->per_account > 0 && op->account[0] != '\0') {
        list_by_label(op, "kx_account", op->account, on_account_list);
        return;
    }
    if (op->sid[0] == '\0')
        do_create(op);
    else
        do_start(op);
}

/* After a start/create/get answer: started -> proceed; stopped -> start; else poll. */
static void settle(sb_dt_op *op)
{
    if (strcmp(op->state, "running") == 0) {
        proceed(op);
        return;
    }
    if (op->kind == DT_GET) {
        answer_lifecycle(op, KX_OK, NULL);
        return;
    }
    if (strcasecmp(op->state, "error") == 0 || strcasecmp(op->state, "build_failed") == 0) {
        char why[200];
        snprintf(why, sizeof why, "daytona: sandbox %s is in state %s", op->sid, op->state);
        fail(op, KX_ERR_UNAVAILABLE, why);
        return;
    }
    if (!op->started_once &&
        (strcmp(op->state, "stopped") == 0 || strcmp(op->state, "archived") == 0)) {
        admit(op);
        return;
    }
    int64_t now = kx_now_ms();
    if (op->phase_end == 0)
        op->phase_end = now + op->d->cfg.start_ms;
    if (now + op->d->cfg.poll_ms >= op->phase_end ||
        kx_deadline_remaining(op->deadline) <= op->d->cfg.poll_ms) {
        not_started(op);
        return;
    }
    op->timer = kx_loop_timer(op->d->b->svc->loop, op->d->cfg.poll_ms, on_poll_timer, op);
    if (op->timer == NULL)
        fail(op, KX_ERR_NOMEM, "daytona: out of memory");
}

static void on_sandbox(const sb_dt_resp *r, void *arg)
{
    sb_dt_op *op = arg;
    op->call = NULL;
    bool poll = op->polling;
    op->polling = false;
    if (r->err == KX_ERR_NOT_FOUND) {
        map_forget(op->d, op->project); /* deleted behind our back */
        op->sid[0] = '\0';
        if (needs_running(op->kind) && op->kind != DT_START && !op->started_once) {
            admit(op);
            return;
        }
        char why[200];
        snprintf(why, sizeof why, "project %s has no sandbox%s", op->project,
                 op->kind == DT_START ? ": create it first" : "");
        fail(op, KX_ERR_NOT_FOUND, why);
        return;
    }
    /* A poll GET gets only what is left of the phase: when it runs out with the phase, the
     * sandbox did not start in time (a GET that hung for its own setting is still its fault). */
    if (poll && r->err == KX_ERR_TIMEOUT && kx_now_ms() >= op->phase_end) {
        not_started(op);
        return;
    }
    if (r->err != KX_OK) {
        fail(op, r->err, r->why);
        return;
    }
    if (!read_sandbox(op, r->json)) {
        fail(op, KX_ERR_PROTOCOL, "daytona: the answer is not a Sandbox object with an id");
        return;
    }
    settle(op);
}

/* Within the current phase (start/create) or, outside one, the get deadline. */
static int64_t phase_budget(sb_dt_op *op, int64_t setting_ms)
{
    int64_t b = sb_dt_budget(op, setting_ms);
    if (op->phase_end > 0 && op->phase_end - kx_now_ms() < b)
        b = op->phase_end - kx_now_ms();
    return b;
}

static void do_get(sb_dt_op *op)
{
    char path[256];
    snprintf(path, sizeof path, "/sandbox/%s", op->sid);
    call(op, "GET", path, NULL, phase_budget(op, op->d->cfg.get_ms), on_sandbox);
}

static void do_start(sb_dt_op *op)
{
    op->started_once = true;
    op->phase_end = kx_now_ms() + op->d->cfg.start_ms;
    char path[256];
    snprintf(path, sizeof path, "/sandbox/%s/start", op->sid);
    call(op, "POST", path, NULL, phase_budget(op, op->d->cfg.start_ms), on_sandbox);
}

/* {"K":"V",...} from KX_DAYTONA_ENV ("K=V,K=V") plus KX_PROJECT_ID. */
static json_t *create_env(sb_dt_op *op)
{
    json_t *env = json_object();
    json_object_set_new(env, "KX_PROJECT_ID", json_string(op->project));
    char buf[sizeof op->d->cfg.env];
    snprintf(buf, sizeof buf, "%s", op->d->cfg.env);
    char *save = NULL;
    for (char *kv = strtok_r(buf, ",", &save); kv != NULL; kv = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(kv, '=');
        if (eq == NULL || eq == kv)
            continue;
        *eq = '\0';
        json_object_set_new(env, kv, json_string(eq + 1));
    }
    return env;
}

static void do_create(sb_dt_op *op)
{
    const sb_dt_config *c = &op->d->cfg;
    op->started_once = true; /* a new sandbox starts by itself */
    op->phase_end = kx_now_ms() + c->create_ms;
    json_t *body =
        json_pack("{s:s, s:{s:s}, s:o, s:b, s:I, s:I, s:I, s:I, s:I}", "snapshot", c->snapshot,
                  "labels", "id", op->project, "env", create_env(op), "public", 0, "cpu",
                  (json_int_t)c->cpu, "memory", (json_int_t)c->memory_gb, "disk",
                  (json_int_t)c->disk_gb, "autoStopInterval", (json_int_t)c->stop_min,
                  "autoArchiveInterval", (json_int_t)c->archive_min);
    if (body != NULL && c->target[0] != '\0')
        json_object_set_new(body, "target", json_string(c->target));
    if (body != NULL && op->account[0] != '\0') /* admit counts the account's sandboxes by it */
        json_object_set_new(json_object_get(body, "labels"), "kx_account",
                            json_string(op->account));
    char *text = body != NULL ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (text == NULL) {
        fail(op, KX_ERR_NOMEM, "daytona: out of memory");
        return;
    }
    kx_log(KX_LOG_INFO, NULL, op->trace_id, "sandbox: project %s: creating a Daytona sandbox",
           op->project);
    call(op, "POST", "/sandbox", text, phase_budget(op, c->create_ms), on_sandbox);
    free(text);
}

/* ---- stop, archive, delete ------------------------------------------------------------- */

static void on_changed(const sb_dt_resp *r, void *arg)
{
    sb_dt_op *op = arg;
    op->call = NULL;
    if (r->err == KX_ERR_NOT_FOUND) {
        map_forget(op->d, op->project);
        if (op->kind == DT_DELETE) { /* already gone: deleted */
            snprintf(op->state, sizeof op->state, "deleted");
            answer_lifecycle(op, KX_OK, NULL);
            return;
        }
        char why[160];
        snprintf(why, sizeof why, "project %s has no sandbox", op->project);
        fail(op, KX_ERR_NOT_FOUND, why);
        return;
    }
    if (r->err != KX_OK) {
        fail(op, r->err, r->why);
        return;
    }
    if (op->kind == DT_DELETE) {
        map_forget(op->d, op->project);
        snprintf(op->state, sizeof op->state, "deleted");
    } else if (!read_sandbox(op, r->json)) { /* the API may answer without a body */
        snprintf(op->state, sizeof op->state, "%s", op->kind == DT_STOP ? "stopped" : "archived");
    }
    answer_lifecycle(op, KX_OK, NULL);
}

/* ---- resolving the project's sandbox ---------------------------------------------------- */

/* op->sid is known or known to be absent: the op's first call. */
static void act(sb_dt_op *op)
{
    char path[256];
    const sb_dt_config *c = &op->d->cfg;
    if (op->kind == DT_OUTPUT || op->kind == DT_TERMINATE || op->kind == DT_LIST) {
        sb_dt_sessions_run(op); /* never starts or makes a sandbox */
        return;
    }
    if (op->sid[0] == '\0') {
        if (op->kind == DT_DELETE) {
            snprintf(op->state, sizeof op->state, "deleted");
            answer_lifecycle(op, KX_OK, NULL);
        } else if (needs_running(op->kind) && op->kind != DT_START) {
            admit(op);
        } else {
            char why[160];
            snprintf(why, sizeof why, "project %s has no sandbox%s", op->project,
                     op->kind == DT_START ? ": create it first" : "");
            fail(op, KX_ERR_NOT_FOUND, why);
        }
        return;
    }
    switch (op->kind) {
    case DT_STOP:
    case DT_ARCHIVE:
        snprintf(path, sizeof path, "/sandbox/%s/%s", op->sid,
                 op->kind == DT_STOP ? "stop" : "archive");
        call(op, "POST", path, NULL, sb_dt_budget(op, c->get_ms), on_changed);
        return;
    case DT_DELETE:
        snprintf(path, sizeof path, "/sandbox/%s", op->sid);
        call(op, "DELETE", path, NULL, sb_dt_budget(op, c->get_ms), on_changed);
        return;
    default: do_get(op); return;
    }
}

static void on_list(const sb_dt_resp *r, void *arg)
{
    sb_dt_op *op = arg;
    const json_t *items = list_items(op, r);
    if (items == NULL)
        return;
    size_t i;
    const json_t *sb;
    json_array_foreach(items, i, sb)
    {
        const json_t *labels = json_object_get(sb, "labels");
        if (strcmp(kx_json_str(labels, "id", ""), op->project) == 0 && read_sandbox(op, sb))
            break;
    }
    act(op);
}

void sb_dt_resolve(sb_dt_op *op)
{
    const dt_map_entry *e = map_find(op->d, op->project);
    if (e != NULL) {
        snprintf(op->sid, sizeof op->sid, "%s", e->sid);
        act(op);
        return;
    }
    list_by_label(op, "id", op->project, on_list);
}

/* ---- requests (daytona_requests.c and daytona_sessions.c use these) ------------------ */

/* Reads the headers (deadline, account) into *meta and the trace id. The reason to refuse any
 * request before looking at it (*err set), or NULL. */
const char *sb_dt_gate(sb_daytona *d, natsMsg *msg, kx_bus_meta *meta, char trace_id[33],
                       kx_err *err)
{
    memset(meta, 0, sizeof *meta);
    kx_err merr = kx_bus_meta_read(msg, meta);
    kx_bus_trace_id(meta, trace_id);
    *err = KX_ERR_INVALID;
    if (d->b->draining) {
        *err = KX_ERR_UNAVAILABLE;
        return "broker shutting down";
    }
    if (merr != KX_OK || meta->deadline == KX_NO_DEADLINE)
        return "the Kx-Deadline header (absolute unix ms) is required";
    return NULL;
}

/* A new op for a valid request, or NULL (out of memory: msg and req destroyed). */
sb_dt_op *sb_dt_start_op(sb_daytona *d, enum sb_dt_kind kind, natsMsg *msg, const char *project,
                         kx_deadline deadline, const char *trace_id, const char *account,
                         void *req)
{
    sb_dt_op *op = op_new(d, kind, msg, project, deadline, trace_id, account);
    if (op == NULL) {
        kx_warn("sandbox: daytona %s: out of memory", KIND_NAMES[kind]);
        natsMsg_Destroy(msg);
        kx_pb_free(req);
    }
    return op;
}

kx_err sb_dt_subscribe(sb_daytona *d, const char *subject, const char *queue, kx_bus_msg_cb cb,
                       void *arg)
{
    if (d->nsubs >= sizeof d->subs / sizeof d->subs[0])
        return KX_ERR_INTERNAL;
    kx_err err = kx_bus_subscribe_loop(d->b->svc->bus, d->b->svc->loop, subject, queue, cb, arg,
                                       &d->subs[d->nsubs]);
    if (err != KX_OK) {
        kx_error("sandbox: cannot subscribe to %s: %s", subject, kx_err_str(err));
        return err;
    }
    d->nsubs++;
    return KX_OK;
}

kx_err sb_daytona_start(sb_broker *b)
{
    static sb_daytona d; /* one per process, like the broker */
    memset(&d, 0, sizeof d);
    d.b = b;
    if (load_config(&d.cfg) != KX_OK)
        return KX_ERR_INVALID;
    b->cfg.max_output = d.cfg.max_output; /* the one broker setting exec.c's twin needs */
    b->daytona = &d;
    kx_err err = sb_dt_client_new(b->svc->loop, d.cfg.url, d.cfg.key, (int)d.cfg.breaker, &d.http);
    if (err != KX_OK) {
        kx_error("sandbox: daytona: cannot start the HTTP client: %s", kx_err_str(err));
        return err;
    }
    int64_t mp = natsConnection_GetMaxPayload(kx_bus_conn(b->svc->bus));
    b->max_reply = mp > 0 ? (size_t)mp : 1024 * 1024;
    err = sb_dt_requests_start(&d); /* daytona_requests.c */
    if (err == KX_OK)
        err = sb_dt_sessions_start(&d); /* daytona_sessions.c */
    if (err != KX_OK)
        return err;
    char notes[700];
    snprintf(notes, sizeof notes,
             "sandboxes: daytona provider at %s (target %s, snapshot %s); partial writes and "
             "preview token checks not implemented",
             d.cfg.url, d.cfg.target[0] != '\0' ? d.cfg.target : "default", d.cfg.snapshot);
    kx_svc_set_notes(b->svc, notes);
    kx_info("sandbox: %s", notes);
    if (kx_bus_flush(b->svc->bus, 2000) == KX_OK)
        atomic_store(&b->serving, true);
    else
        kx_warn("sandbox: the subscriptions were not confirmed by NATS yet; /readyz waits");
    return KX_OK;
}

void sb_daytona_drain(kx_svc *svc, void *arg)
{
    sb_broker *b = arg;
    sb_daytona *d = b->daytona;
    if (b->draining || d == NULL) {
        kx_svc_exit(svc);
        return;
    }
    b->draining = true;
    for (size_t i = 0; i < d->nsubs; i++) {
        natsSubscription_Unsubscribe(d->subs[i]);
        natsSubscription_Destroy(d->subs[i]);
        d->subs[i] = NULL;
    }
    d->nsubs = 0;
    sb_dt_op *op = d->ops;
    while (op != NULL) {
        sb_dt_op *next = op->next;
        fail(op, KX_ERR_UNAVAILABLE, "broker shutting down"); /* frees op */
        op = next;
    }
    sb_dt_client_free(d->http);
    d->http = NULL;
    for (size_t i = 0; i < DT_BUCKETS; i++) {
        while (d->map[i] != NULL) {
            dt_map_entry *e = d->map[i];
            d->map[i] = e->next;
            free(e);
        }
    }
    memset(d->cfg.key, 0, sizeof d->cfg.key);
    kx_info("sandbox: drained (daytona)");
    kx_svc_exit(svc);
}
