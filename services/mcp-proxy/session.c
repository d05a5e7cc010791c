/* session.c — one MCP server's session: process lifecycle, the MCP handshake and the
 * operations waiting on it (see session.h).
 *
 * States:  IDLE --first operation--> STARTING --initialize answered--> READY
 *          STARTING/READY --process exits--> IDLE (operations failed; the next one restarts it)
 *          STARTING --initialize times out / is refused--> STOPPING (group killed) --exit--> IDLE
 * Operations that arrive while an old process is STOPPING wait for the next process.
 *
 * Re-entrancy rule: nothing here fails operations from inside a transport callback other than
 * on_exit, and on_broken only records why; so an operation is never freed while code up the
 * stack (sending a request, reading a line) still uses it. */
#include "session.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "jsonrpc.h"
#include "kx/log.h"
#include "kx/metrics.h"
#include "kx/svc.h"
#include "stdio_transport.h"

typedef enum sstate { S_IDLE, S_STARTING, S_READY, S_STOPPING } sstate;

typedef struct mcp_op {
    mcp_session *s;
    struct mcp_op *prev, *next;
    kx_deadline deadline;
    int64_t start_ms;
    kx_timer *timer;          /* the deadline */
    bool in_flight;           /* a tools/list request of ours is at the server */
    bool for_next_process;    /* arrived while the previous process was stopping */
    int64_t rpc_id;
    json_t *tools;            /* collected over the pages */
    char *cursor;
    int pages;
    mcp_list_cb cb;
    void *arg;
} mcp_op;

struct mcp_session {
    kx_loop *loop;
    const mcp_server_config *cfg;
    int64_t timeout_ms;
    sstate state;
    mcp_stdio *io;
    mcp_rpc *rpc;
    kx_timer *init_timer;
    int64_t started_ms;
    char *server_name;
    char *protocol_version;
    char broken_reason[256];  /* why the transport broke, "" if it did not */
    mcp_op *ops;              /* every operation not answered yet */
    char **envp;              /* the child's environment, built once */
    bool shutting_down;
    void (*done)(void *arg);
    void *done_arg;
    kx_timer *stop_timer;
    int stop_stage;           /* 0: stdin closed, 1: SIGTERM sent */
};

static void session_start(mcp_session *s);

/* ---- the child's environment ---- */

/* Inherited from our environment; everything else must be named in the server's "env" (so the
 * proxy's own settings and secrets do not leak into third-party servers). */
static const char *const inherited_env[] = {"HOME", "LOGNAME", "PATH", "SHELL", "TERM", "USER",
                                            "LANG", "LC_ALL", "TMPDIR", "TZ", NULL};

static bool env_has(char *const *env, const char *name)
{
    size_t n = strlen(name);
    for (; env && *env; env++)
        if (strncmp(*env, name, n) == 0 && (*env)[n] == '=')
            return true;
    return false;
}

static char **build_env(const mcp_server_config *cfg)
{
    size_t ncfg = 0;
    while (cfg->env[ncfg])
        ncfg++;
    size_t cap = ncfg + sizeof inherited_env / sizeof inherited_env[0] + 2, n = 0;
    char **env = calloc(cap, sizeof *env);
    if (env == NULL)
        return NULL;
    for (const char *const *name = inherited_env; *name; name++) {
        const char *v = getenv(*name);
        if (v == NULL || env_has(cfg->env, *name))
            continue;
        size_t len = strlen(*name) + strlen(v) + 2;
        if ((env[n] = malloc(len)) == NULL)
            goto oom;
        snprintf(env[n++], len, "%s=%s", *name, v);
    }
    if (!env_has(env, "PATH") && !env_has(cfg->env, "PATH") &&
        (env[n++] = strdup("PATH=/usr/local/bin:/usr/bin:/bin")) == NULL)
        goto oom;
    for (size_t i = 0; i < ncfg; i++)
        if ((env[n++] = strdup(cfg->env[i])) == NULL)
            goto oom;
    return env;
oom:
    for (size_t i = 0; i < cap; i++)
        free(env[i]);
    free(env);
    return NULL;
}

/* ---- operations ---- */

static void op_link(mcp_session *s, mcp_op *op)
{
    op->next = s->ops;
    if (s->ops)
        s->ops->prev = op;
    s->ops = op;
}

static void op_unlink(mcp_session *s, mcp_op *op)
{
    if (op->prev)
        op->prev->next = op->next;
    else
        s->ops = op->next;
    if (op->next)
        op->next->prev = op->prev;
    op->prev = op->next = NULL;
}

/* Answers op (result on success, else code + message) and frees it. */
static void op_finish(mcp_op *op, const mcp_tools_result *result, const char *code,
                      const char *message)
{
    mcp_session *s = op->s;
    op_unlink(s, op);
    if (op->timer != NULL)
        kx_timer_cancel(op->timer);
    if (op->in_flight && s->rpc != NULL)
        mcp_rpc_cancel(s->rpc, op->rpc_id);
    op->cb(result, code, message, op->arg);
    json_decref(op->tools);
    free(op->cursor);
    free(op);
}

/* Fails every operation (or only those of the current process) with code and message. */
static void fail_ops(mcp_session *s, bool include_next, const char *code, const char *message)
{
    mcp_op *op = s->ops;
    while (op != NULL) {
        mcp_op *next = op->next;   /* callbacks answer the bus; they do not touch the list */
        if (include_next || !op->for_next_process)
            op_finish(op, NULL, code, message);
        op = next;
    }
}

static void on_page(const json_t *result, const mcp_rpc_error *error, void *arg);

/* Sends the next tools/list page request. Afterwards op is in flight or finished. */
static void op_send_page(mcp_op *op)
{
    mcp_session *s = op->s;
    json_t *params = op->cursor ? json_pack("{s:s}", "cursor", op->cursor) : json_object();
    kx_err err = mcp_rpc_request(s->rpc, "tools/list", params, on_page, op, &op->rpc_id);
    if (err != KX_OK) {
        char msg[256];
        snprintf(msg, sizeof msg, "cannot send tools/list to MCP server '%s': %s",
                 s->cfg->name, kx_err_str(err));
        op_finish(op, NULL, "unavailable", msg);
        return;
    }
    op->in_flight = true;
}

static void on_page(const json_t *result, const mcp_rpc_error *error, void *arg)
{
    mcp_op *op = arg;
    mcp_session *s = op->s;
    char msg[512];
    op->in_flight = false;
    if (error != NULL) {
        snprintf(msg, sizeof msg, "MCP server '%s' answered tools/list with error %lld: %s",
                 s->cfg->name, (long long)error->code, error->message);
        op_finish(op, NULL, "internal", msg);
        return;
    }
    const json_t *tools = json_object_get(result, "tools");
    if (!json_is_array(tools)) {
        snprintf(msg, sizeof msg, "MCP server '%s' sent a tools/list result without a "
                 "\"tools\" array", s->cfg->name);
        op_finish(op, NULL, "internal", msg);
        return;
    }
    if (json_array_extend(op->tools, (json_t *)tools) != 0) {
        op_finish(op, NULL, "internal", "out of memory collecting tools");
        return;
    }
    op->pages++;
    const char *cursor = json_string_value(json_object_get(result, "nextCursor"));
    if (cursor != NULL && cursor[0] != '\0') {
        if (op->pages >= MCP_MAX_PAGES) {
            snprintf(msg, sizeof msg, "MCP server '%s' kept paging tools/list past %d pages",
                     s->cfg->name, MCP_MAX_PAGES);
            op_finish(op, NULL, "internal", msg);
            return;
        }
        free(op->cursor);
        op->cursor = strdup(cursor);
        if (op->cursor == NULL) {
            op_finish(op, NULL, "internal", "out of memory");
            return;
        }
        op_send_page(op);
        return;
    }
    mcp_tools_result r = {.tools = op->tools,
                          .server_name = s->server_name ? s->server_name : "",
                          .protocol_version = s->protocol_version ? s->protocol_version : ""};
    op_finish(op, &r, NULL, NULL);
}

static void on_op_deadline(kx_loop *loop, void *arg)
{
    mcp_op *op = arg;
    mcp_session *s = op->s;
    op->timer = NULL;   /* the loop freed it */
    bool in_flight = op->in_flight && s->rpc != NULL;
    int64_t id = op->rpc_id;
    char msg[256];
    int64_t waited = kx_mono_ms() - op->start_ms;
    if (op->in_flight)
        snprintf(msg, sizeof msg, "MCP server '%s' did not list its tools within %lld ms",
                 s->cfg->name, (long long)waited);
    else
        snprintf(msg, sizeof msg, "MCP server '%s' did not finish starting (initialize) "
                 "within %lld ms", s->cfg->name, (long long)waited);
    op_finish(op, NULL, "deadline_exceeded", msg);
    /* After finishing: sending can break the transport, which must not find op half-done. */
    if (in_flight && s->rpc != NULL) {
        json_t *params = json_pack("{s:I, s:s}", "requestId", (json_int_t)id, "reason",
                                   "deadline exceeded");
        mcp_rpc_notify(s->rpc, "notifications/cancelled", params);
    }
}

/* Sends the requests of every operation waiting for the server to be ready. */
static void send_waiting(mcp_session *s)
{
    for (;;) {
        mcp_op *op = s->ops;
        while (op != NULL && (op->in_flight || op->for_next_process))
            op = op->next;
        if (op == NULL || s->state != S_READY)
            return;
        op_send_page(op);
    }
}

/* ---- the protocol ---- */

static kx_err rpc_send(const char *text, size_t len, void *arg)
{
    mcp_session *s = arg;
    return s->io ? mcp_stdio_send(s->io, text, len) : KX_ERR_UNAVAILABLE;
}

/* Requests and notifications from the server. We declared no capabilities, so the only request
 * we answer is ping. */
static void on_incoming(mcp_rpc *rpc, const char *method, const json_t *params,
                        const json_t *id, void *arg)
{
    mcp_session *s = arg;
    if (id != NULL) {
        if (strcmp(method, "ping") == 0) {
            mcp_rpc_reply_result(rpc, id, json_object());
        } else {
            char msg[160];
            snprintf(msg, sizeof msg, "Method not found: %.100s", method);
            kx_debug("mcp server '%s' asked for %s, which we do not offer", s->cfg->name,
                     method);
            mcp_rpc_reply_error(rpc, id, MCP_RPC_METHOD_NOT_FOUND, msg);
        }
        return;
    }
    if (strcmp(method, "notifications/message") == 0) {   /* the server's log */
        char *text = json_dumps(params, JSON_COMPACT);
        kx_info("mcp server '%s' log: %.1000s", s->cfg->name, text ? text : "?");
        free(text);
    } else {
        kx_debug("mcp server '%s' notification %s", s->cfg->name, method);
    }
}

/* Stops a process we gave up on (wedged, refused initialize): killed now, restarted by the
 * next operation once its exit has been seen. */
static void abandon_process(mcp_session *s)
{
    s->state = S_STOPPING;
    if (s->io)
        mcp_stdio_kill(s->io, SIGKILL);
}

static void on_init_timeout(kx_loop *loop, void *arg)
{
    mcp_session *s = arg;
    s->init_timer = NULL;
    char msg[256];
    snprintf(msg, sizeof msg, "MCP server '%s' did not answer initialize within %lld ms; its "
             "process was killed and the next call starts it again", s->cfg->name,
             (long long)s->timeout_ms);
    kx_warn("%s", msg);
    abandon_process(s);
    fail_ops(s, false, "deadline_exceeded", msg);
}

static void on_init_response(const json_t *result, const mcp_rpc_error *error, void *arg)
{
    mcp_session *s = arg;
    if (s->init_timer != NULL) {
        kx_timer_cancel(s->init_timer);
        s->init_timer = NULL;
    }
    char msg[512];
    const char *version = json_string_value(json_object_get(result, "protocolVersion"));
    if (error != NULL || version == NULL) {
        if (error != NULL)
            snprintf(msg, sizeof msg, "MCP server '%s' refused initialize: error %lld: %s",
                     s->cfg->name, (long long)error->code, error->message);
        else
            snprintf(msg, sizeof msg, "MCP server '%s' answered initialize without a "
                     "protocolVersion", s->cfg->name);
        kx_warn("%s; stopping it", msg);
        abandon_process(s);
        fail_ops(s, false, "unavailable", msg);
        return;
    }
    const char *name = json_string_value(
        json_object_get(json_object_get(result, "serverInfo"), "name"));
    const char *sv = json_string_value(
        json_object_get(json_object_get(result, "serverInfo"), "version"));
    s->protocol_version = strdup(version);
    s->server_name = strdup(name ? name : "");
    if (s->protocol_version == NULL || s->server_name == NULL) {
        abandon_process(s);
        fail_ops(s, false, "internal", "out of memory");
        return;
    }
    if (strcmp(version, MCP_PROTOCOL_VERSION) != 0)
        kx_info("mcp server '%s' speaks protocol %s (we asked for %s); tools/list is the same",
                s->cfg->name, version, MCP_PROTOCOL_VERSION);
    if (mcp_rpc_notify(s->rpc, "notifications/initialized", NULL) != KX_OK) {
        snprintf(msg, sizeof msg, "cannot send notifications/initialized to MCP server '%s'",
                 s->cfg->name);
        abandon_process(s);
        fail_ops(s, false, "unavailable", msg);
        return;
    }
    s->state = S_READY;
    kx_info("mcp server '%s' ready: %s %s, protocol %s, in %lld ms", s->cfg->name,
            s->server_name, sv ? sv : "", version, (long long)(kx_mono_ms() - s->started_ms));
    send_waiting(s);
}

/* ---- the process ---- */

static void on_line(const char *line, size_t len, void *arg)
{
    mcp_session *s = arg;
    if (len == 0 || s->rpc == NULL)
        return;
    char why[256];
    kx_err err = mcp_rpc_receive(s->rpc, line, len, why, sizeof why);
    if (err == KX_ERR_NOT_FOUND)
        kx_debug("mcp server '%s': %s (a request we gave up on)", s->cfg->name, why);
    else if (err != KX_OK)
        kx_warn("mcp server '%s' wrote a line that is not a usable JSON-RPC message (%s): "
                "%.200s", s->cfg->name, why, line);
}

static void on_broken(const char *why, void *arg)
{
    mcp_session *s = arg;
    snprintf(s->broken_reason, sizeof s->broken_reason, "%s", why);
    s->state = S_STOPPING;   /* the exit follows; operations are failed there */
}

static void on_stop_timer(kx_loop *loop, void *arg);

static void on_process_exit(int wstatus, void *arg)
{
    mcp_session *s = arg;
    char how[64], msg[512];
    if (WIFEXITED(wstatus))
        snprintf(how, sizeof how, "status %d", WEXITSTATUS(wstatus));
    else if (WIFSIGNALED(wstatus))
        snprintf(how, sizeof how, "signal %d", WTERMSIG(wstatus));
    else
        snprintf(how, sizeof how, "wait status %d", wstatus);
    if (s->broken_reason[0])
        snprintf(msg, sizeof msg, "MCP server '%s' exited (%s) after %s", s->cfg->name, how,
                 s->broken_reason);
    else
        snprintf(msg, sizeof msg, "MCP server '%s' exited (%s)", s->cfg->name, how);
    if (s->shutting_down || s->state == S_STOPPING)
        kx_info("%s", msg);
    else
        kx_warn("%s", msg);
    char labels[160];
    snprintf(labels, sizeof labels, "server=\"%s\"", s->cfg->name);
    kx_counter_add(kx_metrics_counter("kx_mcp_server_exits_total", labels,
                                      "MCP server processes that exited"), 1);

    if (s->init_timer != NULL) {
        kx_timer_cancel(s->init_timer);
        s->init_timer = NULL;
    }
    mcp_rpc_free(s->rpc);   /* pending requests: their operations are failed just below */
    s->rpc = NULL;
    mcp_stdio_free(s->io);  /* allowed: on_exit is the transport's last callback */
    s->io = NULL;
    free(s->server_name);
    free(s->protocol_version);
    s->server_name = s->protocol_version = NULL;
    s->broken_reason[0] = '\0';
    s->state = S_IDLE;
    for (mcp_op *op = s->ops; op; op = op->next)
        if (!op->for_next_process)
            op->in_flight = false;   /* their requests died with the rpc */
    fail_ops(s, false, "unavailable", msg);

    if (s->shutting_down) {
        if (s->stop_timer != NULL) {
            kx_timer_cancel(s->stop_timer);
            s->stop_timer = NULL;
        }
        fail_ops(s, true, "unavailable", "mcp-proxy is shutting down");
        if (s->done != NULL) {
            void (*done)(void *) = s->done;
            s->done = NULL;
            done(s->done_arg);
        }
        return;
    }
    for (mcp_op *op = s->ops; op; op = op->next)
        op->for_next_process = false;
    if (s->ops != NULL)
        session_start(s);
}

static void session_start(mcp_session *s)
{
    static const mcp_stdio_cbs cbs = {.on_line = on_line, .on_broken = on_broken,
                                      .on_exit = on_process_exit};
    char msg[512];
    s->state = S_STARTING;
    s->started_ms = kx_mono_ms();
    s->rpc = mcp_rpc_new(rpc_send, on_incoming, s);
    kx_err err = s->rpc ? mcp_stdio_start(s->loop, s->cfg->name,
                                          (const char *const *)s->cfg->argv,
                                          (const char *const *)s->envp, &cbs, s, &s->io)
                        : KX_ERR_NOMEM;
    if (err != KX_OK) {
        mcp_rpc_free(s->rpc);
        s->rpc = NULL;
        s->state = S_IDLE;
        snprintf(msg, sizeof msg, "cannot start MCP server '%s' (%s): %s", s->cfg->name,
                 s->cfg->argv[0], kx_err_str(err));
        kx_error("%s", msg);
        fail_ops(s, true, "unavailable", msg);
        return;
    }
    char labels[160];
    snprintf(labels, sizeof labels, "server=\"%s\"", s->cfg->name);
    kx_counter_add(kx_metrics_counter("kx_mcp_server_starts_total", labels,
                                      "MCP server processes started"), 1);
    kx_info("mcp server '%s': started %s (pid %d); initializing", s->cfg->name,
            s->cfg->argv[0], (int)mcp_stdio_pid(s->io));

    json_t *params = json_pack("{s:s, s:{}, s:{s:s, s:s}}", "protocolVersion",
                               MCP_PROTOCOL_VERSION, "capabilities", "clientInfo", "name",
                               MCP_CLIENT_NAME, "version", KX_VERSION);
    s->init_timer = kx_loop_timer(s->loop, s->timeout_ms, on_init_timeout, s);
    err = s->init_timer ? mcp_rpc_request(s->rpc, "initialize", params, on_init_response, s,
                                          NULL)
                        : KX_ERR_NOMEM;
    if (s->init_timer == NULL)
        json_decref(params);
    if (err != KX_OK) {
        snprintf(msg, sizeof msg, "cannot send initialize to MCP server '%s': %s",
                 s->cfg->name, kx_err_str(err));
        kx_error("%s", msg);
        if (s->init_timer != NULL) {
            kx_timer_cancel(s->init_timer);
            s->init_timer = NULL;
        }
        abandon_process(s);
        fail_ops(s, false, "unavailable", msg);
    }
}

/* ---- public ---- */

mcp_session *mcp_session_new(kx_loop *loop, const mcp_server_config *cfg, int64_t timeout_ms)
{
    mcp_session *s = calloc(1, sizeof *s);
    if (s == NULL)
        return NULL;
    s->loop = loop;
    s->cfg = cfg;
    s->timeout_ms = timeout_ms;
    s->envp = build_env(cfg);
    if (s->envp == NULL) {
        free(s);
        return NULL;
    }
    return s;
}

const char *mcp_session_name(const mcp_session *s)
{
    return s->cfg->name;
}

void mcp_session_list_tools(mcp_session *s, kx_deadline deadline, mcp_list_cb cb, void *arg)
{
    char msg[256];
    if (s->shutting_down) {
        cb(NULL, "unavailable", "mcp-proxy is shutting down", arg);
        return;
    }
    int64_t left = kx_deadline_remaining(deadline);
    if (left <= 0) {
        snprintf(msg, sizeof msg, "the deadline passed before the request for MCP server '%s' "
                 "was served", s->cfg->name);
        cb(NULL, "deadline_exceeded", msg, arg);
        return;
    }
    mcp_op *op = calloc(1, sizeof *op);
    if (op != NULL)
        op->tools = json_array();
    if (op == NULL || op->tools == NULL) {
        free(op);
        cb(NULL, "internal", "out of memory", arg);
        return;
    }
    op->s = s;
    op->deadline = deadline;
    op->start_ms = kx_mono_ms();
    op->cb = cb;
    op->arg = arg;
    op->timer = kx_loop_timer(s->loop, left, on_op_deadline, op);
    if (op->timer == NULL) {
        json_decref(op->tools);
        free(op);
        cb(NULL, "internal", "out of memory", arg);
        return;
    }
    op_link(s, op);
    switch (s->state) {
    case S_READY:
        op_send_page(op);
        break;
    case S_IDLE:
        session_start(s);
        break;
    case S_STARTING:
        break;   /* sent when initialize completes */
    case S_STOPPING:
        op->for_next_process = true;   /* started again once the old one has exited */
        break;
    }
}

static void on_stop_timer(kx_loop *loop, void *arg)
{
    mcp_session *s = arg;
    s->stop_timer = NULL;
    if (s->io == NULL)
        return;
    int sig = s->stop_stage == 0 ? SIGTERM : SIGKILL;
    kx_info("mcp server '%s' (pid %d) still runs %d ms after %s; sending %s to its group",
            s->cfg->name, (int)mcp_stdio_pid(s->io), MCP_STOP_GRACE_MS,
            s->stop_stage == 0 ? "its stdin was closed" : "SIGTERM",
            sig == SIGTERM ? "SIGTERM" : "SIGKILL");
    mcp_stdio_kill(s->io, sig);
    if (s->stop_stage++ == 0)
        s->stop_timer = kx_loop_timer(s->loop, MCP_STOP_GRACE_MS, on_stop_timer, s);
}

void mcp_session_shutdown(mcp_session *s, const char *message, void (*done)(void *arg),
                          void *arg)
{
    s->shutting_down = true;
    fail_ops(s, true, "unavailable", message);
    if (s->io == NULL) {
        done(arg);
        return;
    }
    s->done = done;
    s->done_arg = arg;
    s->state = S_STOPPING;
    mcp_stdio_close_stdin(s->io);
    s->stop_stage = 0;
    s->stop_timer = kx_loop_timer(s->loop, MCP_STOP_GRACE_MS, on_stop_timer, s);
    if (s->stop_timer == NULL)
        mcp_stdio_kill(s->io, SIGKILL);
}

void mcp_session_free(mcp_session *s)
{
    if (s == NULL)
        return;
    s->shutting_down = true;
    s->done = NULL;
    fail_ops(s, true, "unavailable", "mcp-proxy is shutting down");
    if (s->init_timer)
        kx_timer_cancel(s->init_timer);
    if (s->stop_timer)
        kx_timer_cancel(s->stop_timer);
    mcp_rpc_free(s->rpc);
    mcp_stdio_free(s->io);
    free(s->server_name);
    free(s->protocol_version);
    for (char **e = s->envp; e && *e; e++)
        free(*e);
    free(s->envp);
    free(s);
}
