/* session.c — one MCP server's session: transport lifecycle, the MCP handshake and the
 * operations (tools/list, tools/call) waiting on it (see session.h).
 *
 * States:  IDLE --first operation--> STARTING --initialize answered--> READY
 *          STARTING/READY --transport closed--> IDLE (operations failed; the next restarts)
 *          STARTING/READY --HTTP session expired--> STARTING (operations re-sent after init)
 *          STARTING --initialize times out / is refused--> STOPPING (killed) --closed--> IDLE
 * Operations that arrive while an old transport is STOPPING wait for the next one.
 *
 * Re-entrancy rule: transports never call on_closed from inside a vt call, so an operation is
 * never freed while code up the stack (sending a request) still uses it. */
#include "session.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http_transport.h"
#include "jsonrpc.h"
#include "log_budget.h"
#include "kx/breaker.h"
#include "kx/log.h"
#include "kx/metrics.h"
#include "kx/svc.h"
#include "stdio_adapter.h"
#include "transport.h"
#include "user_stdio.h"

typedef enum sstate {
    S_IDLE,
    S_STARTING,
    S_READY,
    S_STOPPING
} sstate;

#define MCP_EXPIRY_MIN_MS 1000
typedef enum op_kind {
    OP_LIST,
    OP_CALL
} op_kind;

struct mcp_op {
    mcp_session *s;
    struct mcp_op *prev, *next;
    op_kind kind;
    kx_deadline deadline;
    int64_t start_ms;
    kx_timer *timer;       /* the deadline */
    bool in_flight;        /* our request is at the server */
    bool for_next_process; /* arrived while the previous transport was stopping */
    int64_t rpc_id;
    int64_t token; /* progressToken (calls with progress), unique per session */
    /* list */
    json_t *tools;
    char *cursor;
    int pages;
    size_t list_bytes; /* the pages' messages as received */
    mcp_list_cb list_cb;
    /* call */
    char *tool;
    json_t *args;
    mcp_call_cb call_cb;
    mcp_progress_cb progress_cb;
    void *arg;
};

struct mcp_session {
    kx_loop *loop;
    mcp_server_config cfg; /* our copy */
    mcp_session_hooks hooks;
    int64_t timeout_ms;
    sstate state;
    mcp_transport *io;
    mcp_rpc *rpc;
    kx_timer *init_timer;
    int64_t started_ms;
    bool answered; /* this transport has answered a request since initialize */
    int64_t last_used_ms;
    int64_t next_token;
    char *server_name;
    char *protocol_version;
    mcp_op *ops;   /* every operation not answered yet */
    char **envp;   /* a stdio child's environment, built once */
    size_t rx_len; /* the length of the message being received (a tools/list page's size) */
    mcp_log_budget log_budget; /* lines of the server's making we log: its log, its garbage */
    kx_breaker breaker;
    bool shutting_down;
    void (*done)(void *arg);
    void *done_arg;
    kx_timer *stop_timer;
    int stop_stage; /* 0: closed politely, 1: SIGTERM sent */
};

static const char *const versions[] = {"2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05",
                                       NULL};

bool mcp_protocol_supported(const char *v)
{
    for (const char *const *p = versions; v && *p; p++)
        if (strcmp(*p, v) == 0)
            return true;
    return false;
}

static void session_start(mcp_session *s);

/* ---- the child's environment (stdio) ---- */

/* Inherited from our environment; everything else must be named in the server's "env" (so the
 * proxy's own settings and secrets do not leak into third-party servers). */
static const char *const inherited_env[] = {"HOME", "LOGNAME", "PATH",   "SHELL", "TERM", "USER",
                                            "LANG", "LC_ALL",  "TMPDIR", "TZ",    NULL};

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
    while (cfg->env && cfg->env[ncfg])
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

/* Answers op (result on success, else code + message) and frees it. For a list, result is an
 * mcp_tools_result; for a call, the tools/call result json. */
static void op_finish(mcp_op *op, const void *result, const char *code, const char *message)
{
    mcp_session *s = op->s;
    op_unlink(s, op);
    if (op->timer != NULL)
        kx_timer_cancel(op->timer);
    if (op->in_flight && s->rpc != NULL)
        mcp_rpc_cancel(s->rpc, op->rpc_id);
    if (op->kind == OP_LIST)
        op->list_cb(result, code, message, op->arg);
    else
        op->call_cb(result, code, message, op->arg);
    json_decref(op->tools);
    json_decref(op->args);
    free(op->cursor);
    free(op->tool);
    free(op);
}

/* Fails every operation (or only those of the current transport) with code and message. */
static void fail_ops(mcp_session *s, bool include_next, const char *code, const char *message)
{
    mcp_op *op = s->ops;
    while (op != NULL) {
        /* False positive: a finished op is unlinked before it is freed; the head's prev is
         * always NULL (calloc, op_link), so s->ops never holds a freed op */
        // NOLINTNEXTLINE(clang-analyzer-unix.Malloc): safe, see the comment above
        mcp_op *next = op->next; /* callbacks answer the bus; they do not touch the list */
        if (include_next || !op->for_next_process) {
            if (op->kind == OP_CALL && op->in_flight && strcmp(code, "unavailable") == 0) {
                char msg[600];
                snprintf(msg, sizeof msg, "%s during the call to '%s'; its outcome is unknown",
                         message, op->tool);
                op_finish(op, NULL, code, msg);
            } else {
                op_finish(op, NULL, code, message);
            }
        }
        op = next;
    }
}

static void on_page(const json_t *result, const mcp_rpc_error *error, void *arg);
static void on_call_result(const json_t *result, const mcp_rpc_error *error, void *arg);

/* Sends op's request (the next tools/list page, or the tools/call). Afterwards op is in flight
 * or finished. */
static void op_send(mcp_op *op)
{
    mcp_session *s = op->s;
    json_t *params;
    kx_err err;
    const char *method;
    if (op->kind == OP_LIST) {
        method = "tools/list";
        params = op->cursor ? json_pack("{s:s}", "cursor", op->cursor) : json_object();
        err = mcp_rpc_request(s->rpc, method, params, on_page, op, &op->rpc_id);
    } else {
        method = "tools/call";
        params = json_pack("{s:s, s:O}", "name", op->tool, "arguments", op->args);
        if (params != NULL && op->progress_cb != NULL)
            json_object_set_new(params, "_meta",
                                json_pack("{s:I}", "progressToken", (json_int_t)op->token));
        err = mcp_rpc_request(s->rpc, method, params, on_call_result, op, &op->rpc_id);
    }
    if (err != KX_OK) {
        char msg[256];
        snprintf(msg, sizeof msg, "cannot send %s to MCP server '%s': %s", method, s->cfg.name,
                 kx_err_str(err));
        op_finish(op, NULL, "unavailable", msg);
        return;
    }
    op->in_flight = true;
}

static void on_page(const json_t *result, const mcp_rpc_error *error, void *arg)
{
    mcp_op *op = arg;
    mcp_session *s = op->s;
    s->answered = true;
    char msg[512];
    op->in_flight = false;
    if (error != NULL) {
        snprintf(msg, sizeof msg, "MCP server '%s' answered tools/list with error %lld: %s",
                 s->cfg.name, (long long)error->code, error->message);
        op_finish(op, NULL, "internal", msg);
        return;
    }
    const json_t *tools = json_object_get(result, "tools");
    if (!json_is_array(tools)) {
        snprintf(msg, sizeof msg,
                 "MCP server '%s' sent a tools/list result without a "
                 "\"tools\" array",
                 s->cfg.name);
        op_finish(op, NULL, "internal", msg);
        return;
    }
    op->list_bytes += s->rx_len;
    if (op->list_bytes > MCP_MAX_LIST_BYTES) {
        snprintf(msg, sizeof msg,
                 "MCP server '%s' listed more than %u MiB of tools (%d pages); a list that "
                 "large cannot be offered",
                 s->cfg.name, MCP_MAX_LIST_BYTES >> 20, op->pages + 1);
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
                     s->cfg.name, MCP_MAX_PAGES);
            op_finish(op, NULL, "internal", msg);
            return;
        }
        free(op->cursor);
        op->cursor = strdup(cursor);
        if (op->cursor == NULL) {
            op_finish(op, NULL, "internal", "out of memory");
            return;
        }
        op_send(op);
        return;
    }
    kx_breaker_success(&s->breaker);
    mcp_tools_result r = {.tools = op->tools,
                          .server_name = s->server_name ? s->server_name : "",
                          .protocol_version = s->protocol_version ? s->protocol_version : ""};
    op_finish(op, &r, NULL, NULL);
}

static void on_call_result(const json_t *result, const mcp_rpc_error *error, void *arg)
{
    mcp_op *op = arg;
    mcp_session *s = op->s;
    s->answered = true;
    op->in_flight = false;
    if (error != NULL) {
        /* A JSON-RPC error (unknown tool, invalid params): the call failed, the server is
         * fine. It becomes an error result the agent can read. */
        char msg[600];
        snprintf(msg, sizeof msg, "MCP server '%s' refused tools/call '%s': error %lld: %s",
                 s->cfg.name, op->tool, (long long)error->code, error->message);
        json_t *r = json_pack("{s:[{s:s, s:s}], s:b}", "content", "type", "text", "text", msg,
                              "isError", 1);
        kx_breaker_success(&s->breaker);
        op_finish(op, r, r ? NULL : "internal", r ? NULL : "out of memory");
        json_decref(r);
        return;
    }
    if (!json_is_object(result)) {
        op_finish(op, NULL, "internal", "the tools/call result is not an object");
        return;
    }
    kx_breaker_success(&s->breaker);
    op_finish(op, result, NULL, NULL);
}

/* Tells the server to stop working on request id. */
static void send_cancelled(mcp_session *s, int64_t id, const char *reason)
{
    if (s->rpc == NULL)
        return;
    json_t *params = json_pack("{s:I, s:s}", "requestId", (json_int_t)id, "reason", reason);
    mcp_rpc_notify(s->rpc, "notifications/cancelled", params);
}

static void on_op_deadline(kx_loop *loop, void *arg)
{
    (void)loop;
    mcp_op *op = arg;
    mcp_session *s = op->s;
    op->timer = NULL; /* the loop freed it */
    bool in_flight = op->in_flight && s->rpc != NULL;
    int64_t id = op->rpc_id;
    char msg[400];
    int64_t waited = kx_mono_ms() - op->start_ms;
    if (op->in_flight)
        snprintf(msg, sizeof msg, "MCP server '%s' did not answer %s%s within %lld ms",
                 s->cfg.name, op->kind == OP_LIST ? "tools/list" : "tools/call ",
                 op->kind == OP_LIST ? "" : op->tool, (long long)waited);
    else
        snprintf(msg, sizeof msg,
                 "MCP server '%s' did not finish starting (initialize) "
                 "within %lld ms",
                 s->cfg.name, (long long)waited);
    op_finish(op, NULL, "deadline_exceeded", msg);
    /* After finishing: sending must not find op half-done. */
    if (in_flight)
        send_cancelled(s, id, "deadline exceeded");
}

void mcp_session_cancel(mcp_op *op, const char *reason)
{
    mcp_session *s = op->s;
    bool in_flight = op->in_flight && s->rpc != NULL;
    int64_t id = op->rpc_id;
    char msg[300];
    snprintf(msg, sizeof msg, "the call was cancelled: %s", reason);
    op_finish(op, NULL, "cancelled", msg);
    if (in_flight)
        send_cancelled(s, id, reason);
}

/* Sends the requests of every operation waiting for the server to be ready. */
static void send_waiting(mcp_session *s)
{
    for (;;) {
        mcp_op *op = s->ops;
        /* False positive: an op op_send frees is unlinked first;
         * the head's prev is always NULL (calloc, op_link), so s->ops moves past it */
        // NOLINTNEXTLINE(clang-analyzer-unix.Malloc): safe, see the comment above
        while (op != NULL && (op->in_flight || op->for_next_process))
            op = op->next;
        if (op == NULL || s->state != S_READY)
            return;
        op_send(op);
    }
}

/* ---- the protocol ---- */

static kx_err rpc_send(const char *text, size_t len, void *arg)
{
    mcp_session *s = arg;
    return s->io ? s->io->vt->send(s->io, text, len) : KX_ERR_UNAVAILABLE;
}

static mcp_op *op_by_token(mcp_session *s, const json_t *token)
{
    if (!json_is_integer(token))
        return NULL;
    for (mcp_op *op = s->ops; op; op = op->next)
        if (op->kind == OP_CALL && op->progress_cb && op->token == json_integer_value(token))
            return op;
    return NULL;
}

/* Whether a line of the server's making (its notifications/message, a message we cannot use)
 * may go to our log now: the server sends them as fast as it likes (log_budget.h). */
static bool server_log_ok(mcp_session *s)
{
    uint64_t dropped = 0;
    if (!mcp_log_budget_take(&s->log_budget, kx_mono_ms(), &dropped))
        return false;
    mcp_log_dropped(s->cfg.name, "of its log messages and unusable messages", dropped);
    return true;
}

/* Requests and notifications from the server. We declared no capabilities, so the only request
 * we answer is ping. */
static void on_incoming(mcp_rpc *rpc, const char *method, const json_t *params, const json_t *id,
                        void *arg)
{
    mcp_session *s = arg;
    if (id != NULL) {
        if (strcmp(method, "ping") == 0) {
            mcp_rpc_reply_result(rpc, id, json_object());
        } else {
            char msg[160];
            snprintf(msg, sizeof msg, "Method not found: %.100s", method);
            kx_debug("mcp server '%s' asked for %s, which we do not offer", s->cfg.name, method);
            mcp_rpc_reply_error(rpc, id, MCP_RPC_METHOD_NOT_FOUND, msg);
        }
        return;
    }
    if (strcmp(method, "notifications/progress") == 0) {
        mcp_op *op = op_by_token(s, json_object_get(params, "progressToken"));
        if (op != NULL)
            op->progress_cb(json_number_value(json_object_get(params, "progress")),
                            json_number_value(json_object_get(params, "total")),
                            json_string_value(json_object_get(params, "message")), op->arg);
    } else if (strcmp(method, "notifications/tools/list_changed") == 0) {
        kx_info("mcp server '%s' says its tool list changed", s->cfg.name);
        if (s->hooks.on_list_changed)
            s->hooks.on_list_changed(s, s->hooks.arg);
    } else if (strcmp(method, "notifications/message") == 0) { /* the server's log */
        if (!server_log_ok(s))
            return;
        char *text = json_dumps(params, JSON_COMPACT);
        kx_info("mcp server '%s' log: %.1000s", s->cfg.name, text ? text : "?");
        free(text);
    } else {
        kx_debug("mcp server '%s' notification %s", s->cfg.name, method);
    }
}

/* Stops a transport we gave up on (wedged, refused initialize): killed now, restarted by the
 * next operation once it has closed. */
static void abandon_process(mcp_session *s)
{
    s->state = S_STOPPING;
    kx_breaker_failure(&s->breaker, kx_mono_ms());
    if (s->io)
        s->io->vt->kill(s->io);
}

static void on_init_timeout(kx_loop *loop, void *arg)
{
    (void)loop;
    mcp_session *s = arg;
    s->init_timer = NULL;
    char msg[256];
    snprintf(msg, sizeof msg,
             "MCP server '%s' did not answer initialize within %lld ms; it "
             "was stopped and the next call starts it again",
             s->cfg.name, (long long)s->timeout_ms);
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
    if (error != NULL || version == NULL || !mcp_protocol_supported(version)) {
        if (error != NULL)
            snprintf(msg, sizeof msg, "MCP server '%s' refused initialize: error %lld: %s",
                     s->cfg.name, (long long)error->code, error->message);
        else if (version == NULL)
            snprintf(msg, sizeof msg,
                     "MCP server '%s' answered initialize without a "
                     "protocolVersion",
                     s->cfg.name);
        else
            snprintf(msg, sizeof msg,
                     "MCP server '%s' wants protocol version %.40s, which we "
                     "do not speak (we speak 2025-11-25, 2025-06-18, 2025-03-26, 2024-11-05)",
                     s->cfg.name, version);
        kx_warn("%s; stopping it", msg);
        abandon_process(s);
        fail_ops(s, false, "unavailable", msg);
        return;
    }
    const char *name =
        json_string_value(json_object_get(json_object_get(result, "serverInfo"), "name"));
    const char *sv =
        json_string_value(json_object_get(json_object_get(result, "serverInfo"), "version"));
    free(s->protocol_version);
    free(s->server_name);
    s->protocol_version = strdup(version);
    s->server_name = strdup(name ? name : "");
    if (s->protocol_version == NULL || s->server_name == NULL) {
        abandon_process(s);
        fail_ops(s, false, "internal", "out of memory");
        return;
    }
    s->io->vt->set_protocol_version(s->io, version);
    if (mcp_rpc_notify(s->rpc, "notifications/initialized", NULL) != KX_OK) {
        snprintf(msg, sizeof msg, "cannot send notifications/initialized to MCP server '%s'",
                 s->cfg.name);
        abandon_process(s);
        fail_ops(s, false, "unavailable", msg);
        return;
    }
    s->state = S_READY;
    kx_info("mcp server '%s' ready: %s %s, protocol %s, in %lld ms", s->cfg.name, s->server_name,
            sv ? sv : "", version, (long long)(kx_mono_ms() - s->started_ms));
    send_waiting(s);
}

/* ---- the transport ---- */

static void on_message(const char *text, size_t len, void *arg)
{
    mcp_session *s = arg;
    if (len == 0 || s->rpc == NULL)
        return;
    char why[256];
    s->rx_len = len;
    kx_err err = mcp_rpc_receive(s->rpc, text, len, why, sizeof why);
    if (err == KX_ERR_NOT_FOUND)
        kx_debug("mcp server '%s': %s (a request we gave up on)", s->cfg.name, why);
    else if (err != KX_OK && server_log_ok(s))
        kx_warn("mcp server '%s' sent a message that is not usable JSON-RPC (%s): %.200s",
                s->cfg.name, why, text);
}

static void finish_shutdown(mcp_session *s)
{
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
}

static void on_closed(const char *how, bool expired, void *arg)
{
    mcp_session *s = arg;
    char msg[512];
    /* A server that forgets every session at once would have us re-initialize in a loop: an
     * expiry within MCP_EXPIRY_MIN_MS of the initialize, before the session answered anything,
     * is a failure instead. A session that has answered was real: a restarted server forgetting
     * it (however soon) is an expiry, and what was in flight is sent again. */
    if (expired && !s->answered && kx_mono_ms() - s->started_ms < MCP_EXPIRY_MIN_MS)
        expired = false;
    snprintf(msg, sizeof msg, "MCP server '%s' %s", s->cfg.name, how);
    bool expected = s->shutting_down || s->state == S_STOPPING;
    if (expected || expired)
        kx_info("%s", msg);
    else
        kx_warn("%s", msg);
    char labels[160];
    snprintf(labels, sizeof labels, "server=\"%s\"", s->cfg.name);
    kx_counter_add(kx_metrics_counter("kx_mcp_server_exits_total", labels,
                                      "MCP server sessions that ended"),
                   1);
    if (!expected && !expired)
        kx_breaker_failure(&s->breaker, kx_mono_ms());

    if (s->init_timer != NULL) {
        kx_timer_cancel(s->init_timer);
        s->init_timer = NULL;
    }
    if (s->stop_timer != NULL && !s->shutting_down) {
        kx_timer_cancel(s->stop_timer);
        s->stop_timer = NULL;
    }
    mcp_rpc_free(s->rpc); /* pending requests: their operations are handled just below */
    s->rpc = NULL;
    s->io->vt->free(s->io); /* allowed: on_closed is the transport's last callback */
    s->io = NULL;
    s->state = S_IDLE;
    for (mcp_op *op = s->ops; op; op = op->next)
        if (!op->for_next_process && expired)
            op->in_flight = false; /* the server never saw them: re-sent after init */
    if (!expired)
        fail_ops(s, false, "unavailable", msg);
    if (s->shutting_down) {
        finish_shutdown(s);
        return;
    }
    for (mcp_op *op = s->ops; op; op = op->next) {
        /* False positive: as in fail_ops, s->ops never holds a freed op */
        // NOLINTNEXTLINE(clang-analyzer-unix.Malloc): safe, see the comment above
        op->for_next_process = false;
        op->in_flight = false;
    }
    if (s->ops != NULL)
        session_start(s);
}

/* Opens the transport for the configuration; KX_OK or an error with why. */
static kx_err open_transport(mcp_session *s, char *why, size_t whylen)
{
    static const mcp_transport_cbs cbs = {.on_message = on_message, .on_closed = on_closed};
    if (s->cfg.kind == MCP_T_STDIO) {
        if (s->cfg.user)
            return mcp_user_stdio_open(s->loop, s->hooks.jail, s->hooks.account, &s->cfg, &cbs, s,
                                       &s->io, why, whylen);
        kx_err err = mcp_stdio_open(s->loop, s->cfg.name, (const char *const *)s->cfg.argv,
                                    (const char *const *)s->envp, &cbs, s, &s->io);
        if (err != KX_OK)
            snprintf(why, whylen, "cannot start MCP server '%s' (%s): %s", s->cfg.name,
                     s->cfg.argv[0], kx_err_str(err));
        return err;
    }
    if (s->hooks.curlm == NULL) {
        snprintf(why, whylen, "MCP server '%s': no HTTP client on this loop", s->cfg.name);
        return KX_ERR_UNAVAILABLE;
    }
    return mcp_http_open(s->loop, s->hooks.curlm, &s->cfg, &cbs, s, &s->io, why, whylen);
}

static void session_start(mcp_session *s)
{
    char msg[512];
    int64_t retry_ms = 0;
    if (!kx_breaker_allow(&s->breaker, kx_mono_ms(), &retry_ms)) {
        snprintf(msg, sizeof msg,
                 "MCP server '%s' failed %d times in a row; not retried for "
                 "another %lld ms (circuit open)",
                 s->cfg.name, s->breaker.failures, (long long)retry_ms);
        fail_ops(s, true, "unavailable", msg);
        return;
    }
    if (s->cfg.kind == MCP_T_STDIO && s->cfg.user && s->hooks.may_start != NULL &&
        !s->hooks.may_start(s, s->hooks.arg, msg, sizeof msg)) {
        kx_warn("%s", msg);
        fail_ops(s, true, "unavailable", msg);
        return;
    }
    s->state = S_STARTING;
    s->started_ms = kx_mono_ms();
    s->answered = false;
    s->rpc = mcp_rpc_new(rpc_send, on_incoming, s);
    kx_err err = s->rpc ? open_transport(s, msg, sizeof msg) : KX_ERR_NOMEM;
    if (err != KX_OK) {
        if (s->rpc == NULL)
            snprintf(msg, sizeof msg, "out of memory");
        mcp_rpc_free(s->rpc);
        s->rpc = NULL;
        s->io = NULL;
        s->state = S_IDLE;
        if (!(s->cfg.kind == MCP_T_STDIO && s->cfg.user))
            kx_breaker_failure(&s->breaker, kx_mono_ms());
        kx_error("%s", msg);
        fail_ops(s, true, "unavailable", msg);
        return;
    }
    char labels[160];
    snprintf(labels, sizeof labels, "server=\"%s\"", s->cfg.name);
    kx_counter_add(kx_metrics_counter("kx_mcp_server_starts_total", labels,
                                      "MCP server sessions started"),
                   1);
    kx_info("mcp server '%s': %s (%s); initializing", s->cfg.name,
            s->cfg.kind == MCP_T_STDIO ? "started" : "connecting", s->io->vt->describe(s->io));

    json_t *params =
        json_pack("{s:s, s:{}, s:{s:s, s:s}}", "protocolVersion", MCP_PROTOCOL_VERSION,
                  "capabilities", "clientInfo", "name", MCP_CLIENT_NAME, "version", KX_VERSION);
    s->init_timer = kx_loop_timer(s->loop, s->timeout_ms, on_init_timeout, s);
    err = s->init_timer ? mcp_rpc_request(s->rpc, "initialize", params, on_init_response, s, NULL)
                        : KX_ERR_NOMEM;
    if (s->init_timer == NULL)
        json_decref(params);
    if (err != KX_OK) {
        snprintf(msg, sizeof msg, "cannot send initialize to MCP server '%s': %s", s->cfg.name,
                 kx_err_str(err));
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

mcp_session *mcp_session_new(kx_loop *loop, const mcp_server_config *cfg, int64_t timeout_ms,
                             const mcp_session_hooks *hooks)
{
    mcp_session *s = calloc(1, sizeof *s);
    if (s == NULL)
        return NULL;
    s->loop = loop;
    if (mcp_server_copy(cfg, &s->cfg) != 0) {
        free(s);
        return NULL;
    }
    if (hooks)
        s->hooks = *hooks;
    s->timeout_ms = timeout_ms;
    s->last_used_ms = kx_mono_ms();
    kx_breaker_init(&s->breaker, 3, 1000, 60000);
    if (s->cfg.kind == MCP_T_STDIO && (s->envp = build_env(&s->cfg)) == NULL) {
        mcp_server_free(&s->cfg);
        free(s);
        return NULL;
    }
    return s;
}

const char *mcp_session_name(const mcp_session *s)
{
    return s->cfg.name;
}

const mcp_server_config *mcp_session_config(const mcp_session *s)
{
    return &s->cfg;
}

bool mcp_session_idle(const mcp_session *s)
{
    return s->ops == NULL;
}

int64_t mcp_session_last_used(const mcp_session *s)
{
    return s->last_used_ms;
}

/* Common admission of an operation: refuses (calling back) when shutting down or late.
 * Returns a linked op with its deadline timer, or NULL when it was answered already. */
static mcp_op *op_admit(mcp_session *s, op_kind kind, kx_deadline deadline, mcp_list_cb lcb,
                        mcp_call_cb ccb, void *arg)
{
    char msg[256];
    const char *code = NULL;
    int64_t left = kx_deadline_remaining(deadline);
    if (s->shutting_down) {
        code = "unavailable";
        snprintf(msg, sizeof msg, "mcp-proxy is shutting down");
    } else if (left <= 0) {
        code = "deadline_exceeded";
        snprintf(msg, sizeof msg,
                 "the deadline passed before the request for MCP server '%s' "
                 "was served",
                 s->cfg.name);
    }
    mcp_op *op = code ? NULL : calloc(1, sizeof *op);
    if (op == NULL && code == NULL) {
        code = "internal";
        snprintf(msg, sizeof msg, "out of memory");
    }
    if (op != NULL) {
        op->s = s;
        op->kind = kind;
        op->deadline = deadline;
        op->start_ms = kx_mono_ms();
        op->list_cb = lcb;
        op->call_cb = ccb;
        op->arg = arg;
        op->timer = kx_loop_timer(s->loop, left, on_op_deadline, op);
        if (op->timer == NULL) {
            free(op);
            op = NULL;
            code = "internal";
            snprintf(msg, sizeof msg, "out of memory");
        }
    }
    if (op == NULL) {
        if (lcb)
            lcb(NULL, code, msg, arg);
        else
            /* False positive: every caller passes lcb
             * (list) or ccb (call), never neither */
            // NOLINTNEXTLINE(clang-analyzer-core.CallAndMessage): safe, see the comment above
            ccb(NULL, code, msg, arg);
        return NULL;
    }
    s->last_used_ms = op->start_ms;
    op_link(s, op);
    return op;
}

/* Starts op per the session's state. */
static void op_go(mcp_session *s, mcp_op *op)
{
    switch (s->state) {
    case S_READY: op_send(op); break;
    case S_IDLE: session_start(s); break;
    case S_STARTING: break; /* sent when initialize completes */
    case S_STOPPING:
        op->for_next_process = true; /* started again once the old one has closed */
        break;
    }
}

void mcp_session_list_tools(mcp_session *s, kx_deadline deadline, mcp_list_cb cb, void *arg)
{
    mcp_op *op = op_admit(s, OP_LIST, deadline, cb, NULL, arg);
    if (op == NULL)
        return;
    if ((op->tools = json_array()) == NULL) {
        op_finish(op, NULL, "internal", "out of memory");
        return;
    }
    op_go(s, op);
}

mcp_op *mcp_session_call(mcp_session *s, const char *tool, json_t *arguments, kx_deadline deadline,
                         mcp_progress_cb progress, mcp_call_cb cb, void *arg)
{
    mcp_op *op = op_admit(s, OP_CALL, deadline, NULL, cb, arg);
    if (op == NULL) {
        json_decref(arguments);
        return NULL;
    }
    op->args = arguments ? arguments : json_object();
    op->tool = strdup(tool);
    op->progress_cb = progress;
    op->token = ++s->next_token;
    if (op->args == NULL || op->tool == NULL) {
        op_finish(op, NULL, "internal", "out of memory");
        return NULL;
    }
    /* The op may finish inside op_go (a refused start, a failed send): the caller learns that
     * from its callback, which ran first; returning the freed pointer would be a use after
     * free. */
    op_go(s, op);
    /* False positive: a finished op is unlinked before it is freed;
     * the head's prev is always NULL (calloc, op_link), so s->ops never holds a freed op */
    // NOLINTBEGIN(clang-analyzer-unix.Malloc): safe, see the comment above
    for (mcp_op *o = s->ops; o; o = o->next)
        if (o == op)
            return op;
    // NOLINTEND(clang-analyzer-unix.Malloc)
    return NULL;
}

static void on_stop_timer(kx_loop *loop, void *arg)
{
    (void)loop;
    mcp_session *s = arg;
    s->stop_timer = NULL;
    if (s->io == NULL)
        return;
    bool term = s->stop_stage == 0 && s->cfg.kind == MCP_T_STDIO;
    kx_info("mcp server '%s' (%s) still runs %d ms after %s; %s", s->cfg.name,
            s->io->vt->describe(s->io), MCP_STOP_GRACE_MS,
            s->stop_stage == 0 ? "we asked it to close" : "SIGTERM",
            term ? "sending SIGTERM to its group" : "killing it");
    if (term)
        mcp_stdio_signal(s->io, SIGTERM);
    else
        s->io->vt->kill(s->io);
    if (s->stop_stage++ == 0)
        s->stop_timer = kx_loop_timer(s->loop, MCP_STOP_GRACE_MS, on_stop_timer, s);
}

void mcp_session_rest(mcp_session *s)
{
    if (s->ops != NULL || s->io == NULL || s->state != S_READY || s->shutting_down)
        return;
    kx_info("mcp server '%s': idle; stopping it until the next use", s->cfg.name);
    s->state = S_STOPPING;
    s->io->vt->close(s->io);
    s->stop_stage = 0;
    s->stop_timer = kx_loop_timer(s->loop, MCP_STOP_GRACE_MS, on_stop_timer, s);
    if (s->stop_timer == NULL)
        s->io->vt->kill(s->io);
}

bool mcp_session_stopped(const mcp_session *s)
{
    return s->io == NULL;
}

void mcp_session_shutdown(mcp_session *s, const char *message, void (*done)(void *arg), void *arg)
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
    s->io->vt->close(s->io);
    s->stop_stage = 0;
    s->stop_timer = kx_loop_timer(s->loop, MCP_STOP_GRACE_MS, on_stop_timer, s);
    if (s->stop_timer == NULL)
        s->io->vt->kill(s->io);
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
    if (s->io)
        s->io->vt->free(s->io);
    free(s->server_name);
    free(s->protocol_version);
    for (char **e = s->envp; e && *e; e++)
        free(*e);
    free(s->envp);
    mcp_server_free(&s->cfg);
    free(s);
}
