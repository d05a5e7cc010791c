/* server.c — libmicrohttpd wiring, the route table, bodies, auth and metrics (see server.h).
 *
 * libmicrohttpd calls on_request several times per request: once when the headers are in (we
 * match the route and check Content-Length), once per piece of body (we accumulate it, or feed
 * the form parser), and a last time with no data (we authenticate, call the handler and queue
 * its answer). on_completed frees the per-request state. */
#include "server.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth.h"
#include "form.h"
#include "health.h"
#include "kx/buf.h"
#include "kx/httpd.h"
#include "kx/log.h"
#include "kx/metrics.h"
#include "kx/time.h"
#include "reply.h"
#include "routes_triggers.h"

typedef enum gw_auth_mode {
    AUTH_NONE,
    AUTH_BEARER,
    AUTH_BEARER_OR_QUERY
} gw_auth_mode;
typedef enum gw_body_kind {
    BODY_NONE,
    BODY_JSON,
    BODY_FORM
} gw_body_kind;

typedef struct gw_route {
    const char *method;
    const char *pattern; /* "/api/agent-run/{id}/stop": {id} matches one path segment */
    gw_auth_mode auth;
    gw_body_kind body;
    gw_handler handler;
    const char *label; /* "POST /api/agent-run/{id}/stop", for metrics and logs */
} gw_route;

#define ROUTE(m, p, a, b, h)   \
    {                          \
        m, p, a, b, h, m " " p \
    }
static const gw_route routes[] = {
    ROUTE("GET", "/api/health", AUTH_NONE, BODY_NONE, gw_route_health),
    ROUTE("POST", "/api/agent/initiate", AUTH_BEARER, BODY_FORM, gw_route_initiate),
    ROUTE("POST", "/api/thread/{id}/agent/start", AUTH_BEARER, BODY_JSON, gw_route_thread_start),
    ROUTE("GET", "/api/thread/{id}/agent-runs", AUTH_BEARER, BODY_NONE, gw_route_thread_runs),
    ROUTE("GET", "/api/agent-run/{id}", AUTH_BEARER, BODY_NONE, gw_route_run_get),
    ROUTE("POST", "/api/agent-run/{id}/stop", AUTH_BEARER, BODY_NONE, gw_route_run_stop),
    ROUTE("GET", "/api/agent-run/{id}/stream", AUTH_BEARER_OR_QUERY, BODY_NONE,
          gw_route_run_stream),
    ROUTE("GET", "/api/threads/{id}/messages", AUTH_BEARER, BODY_NONE, gw_route_messages_list),
    ROUTE("POST", "/api/threads/{id}/messages", AUTH_BEARER, BODY_JSON, gw_route_messages_add),
    ROUTE("GET", "/api/agents/{id}/custom-mcp-tools", AUTH_BEARER, BODY_NONE,
          gw_route_custom_mcp_tools),
    ROUTE("POST", "/api/agents/{id}/custom-mcp-tools", AUTH_BEARER, BODY_JSON,
          gw_route_custom_mcp_tools),
    ROUTE("POST", "/api/triggers", AUTH_BEARER, BODY_JSON, gw_route_trigger_create),
    ROUTE("GET", "/api/triggers", AUTH_BEARER, BODY_NONE, gw_route_triggers_list),
    ROUTE("GET", "/api/triggers/{id}", AUTH_BEARER, BODY_NONE, gw_route_trigger_get),
    ROUTE("PATCH", "/api/triggers/{id}", AUTH_BEARER, BODY_JSON, gw_route_trigger_update),
    ROUTE("DELETE", "/api/triggers/{id}", AUTH_BEARER, BODY_NONE, gw_route_trigger_delete),
};
#define NROUTES (sizeof routes / sizeof routes[0])

struct gw_server {
    gw_app *app;
    struct MHD_Daemon *daemon;
    uint16_t port;
    atomic_int inflight;
    atomic_bool quiesced;
    int listen_fd;                      /* returned by MHD_quiesce_daemon; closed at free */
    kx_histogram *latency[NROUTES + 1]; /* last slot: unmatched requests */
};

/* Per-request state, libmicrohttpd's *con_cls. */
typedef struct gw_conn {
    gw_request req;
    const gw_route *route; /* NULL: unmatched */
    kx_buf body;           /* a JSON body as it arrives */
    bool too_large;
    bool form_bad;
    int64_t start_us;
} gw_conn;

static const char oom_body[] = "{\"detail\": \"Internal server error\"}";

/* ---- routing ---- */

/* Does url match pattern? Fills id (the {id} segment) when it does. */
static bool path_match(const char *pattern, const char *url, char *id, size_t idcap)
{
    const char *p = pattern, *u = url;
    while (*p != '\0' && *u != '\0') {
        if (strncmp(p, "{id}", 4) == 0) {
            const char *end = strchr(u, '/');
            size_t n = end ? (size_t)(end - u) : strlen(u);
            if (n == 0)
                return false;
            if (n < idcap) {
                memcpy(id, u, n);
                id[n] = '\0';
            } else {
                id[0] = '\0'; /* too long to be an id: the handler answers 404 */
            }
            p += 4;
            u += n;
            continue;
        }
        if (*p != *u)
            return false;
        p++;
        u++;
    }
    return *p == '\0' && *u == '\0';
}

/* The route for method + url; *path_known tells a 405 from a 404 when there is none. */
static const gw_route *find_route(const char *method, const char *url, char *id, size_t idcap,
                                  bool *path_known)
{
    *path_known = false;
    for (size_t i = 0; i < NROUTES; i++) {
        if (!path_match(routes[i].pattern, url, id, idcap))
            continue;
        *path_known = true;
        if (strcmp(routes[i].method, method) == 0)
            return &routes[i];
    }
    id[0] = '\0';
    return NULL;
}

/* ---- answers ---- */

static bool header_valid_traceparent(const char *tp)
{
    if (tp == NULL || strlen(tp) != 55 || strncmp(tp, "00-", 3) != 0 || tp[35] != '-' ||
        tp[52] != '-')
        return false;
    for (int i = 3; i < 55; i++) {
        if (i == 35 || i == 52)
            continue;
        char c = tp[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return false;
    }
    return true;
}

static void count_answer(gw_server *srv, gw_conn *c, unsigned int status)
{
    const char *label = c->route ? c->route->label : "unmatched";
    size_t slot = c->route ? (size_t)(c->route - routes) : NROUTES;
    char labels[256];
    snprintf(labels, sizeof labels, "route=\"%s\",status=\"%u\"", label, status);
    kx_counter *cnt = kx_metrics_counter("kx_gateway_http_requests_total", labels,
                                         "HTTP requests answered, per route and status");
    if (cnt != NULL)
        kx_counter_add(cnt, 1);
    double secs = (double)(kx_mono_us() - c->start_us) / 1e6;
    if (srv->latency[slot] != NULL)
        kx_histogram_observe(srv->latency[slot], secs);
    char trace[33] = "";
    if (c->req.traceparent[0] != '\0')
        snprintf(trace, sizeof trace, "%.32s", c->req.traceparent + 3);
    kx_log(status >= 500 ? KX_LOG_WARN : KX_LOG_DEBUG, NULL, trace[0] ? trace : NULL,
           "http: %s %s -> %u (%.1f ms)", c->req.method, c->req.url, status, secs * 1000.0);
}

/* Queues reply on the connection and counts it. Takes what the reply owns. */
static enum MHD_Result send_reply(gw_server *srv, gw_conn *c, gw_reply *r)
{
    struct MHD_Response *resp = r->resp;
    unsigned int status = r->status ? r->status : MHD_HTTP_INTERNAL_SERVER_ERROR;
    r->resp = NULL;
    if (resp == NULL) {
        if (r->body != NULL) {
            resp =
                MHD_create_response_from_buffer(strlen(r->body), r->body, MHD_RESPMEM_MUST_FREE);
            if (resp != NULL)
                r->body = NULL; /* libmicrohttpd frees it */
        }
        if (resp == NULL) {
            status = MHD_HTTP_INTERNAL_SERVER_ERROR;
            resp = MHD_create_response_from_buffer(sizeof oom_body - 1, (void *)oom_body,
                                                   MHD_RESPMEM_PERSISTENT);
        }
        if (resp == NULL) {
            gw_reply_free(r);
            return MHD_NO;
        }
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    }
    enum MHD_Result ret = MHD_queue_response(c->req.conn, status, resp);
    MHD_destroy_response(resp);
    gw_reply_free(r);
    count_answer(srv, c, status);
    return ret;
}

static enum MHD_Result send_error(gw_server *srv, gw_conn *c, unsigned int status,
                                  const char *detail)
{
    gw_reply r = {0};
    gw_reply_error(&r, status, "%s", detail);
    return send_reply(srv, c, &r);
}

/* ---- bodies ---- */

/* A piece of body: counted against the cap, then kept (JSON) or parsed (form). */
static void take_body(gw_server *srv, gw_conn *c, const char *data, size_t n)
{
    size_t total = c->req.body_len + n; /* body_len counts every byte received */
    c->req.body_len = total;
    if (c->too_large || c->form_bad)
        return;
    if (total > srv->app->cfg.max_body_bytes) {
        c->too_large = true;
        kx_buf_free(&c->body);
        return;
    }
    if (c->req.form != NULL) {
        if (!gw_form_feed(c->req.form, data, n))
            c->form_bad = true;
        return;
    }
    if (c->route != NULL && c->route->body != BODY_NONE && kx_buf_add(&c->body, data, n) != KX_OK)
        c->too_large = true; /* out of memory for a body below the cap: refuse it alike */
}

/* ---- the request handler ---- */

static bool ops_ready(void *arg, char *why, size_t whylen)
{
    return gw_ready(arg, why, whylen);
}

/* First call of a request: route, Content-Length, form parser. Returns false when an answer
 * was queued already (*ret is then the result). */
static bool begin_request(gw_server *srv, gw_conn *c, enum MHD_Result *ret)
{
    bool path_known = false;
    c->route = find_route(c->req.method, c->req.url, c->req.id, sizeof c->req.id, &path_known);
    if (c->route == NULL) {
        *ret = path_known ? send_error(srv, c, MHD_HTTP_METHOD_NOT_ALLOWED, "Method Not Allowed")
                          : send_error(srv, c, MHD_HTTP_NOT_FOUND, "Not Found");
        return false;
    }
    c->req.route = c->route->pattern;

    const char *cl =
        MHD_lookup_connection_value(c->req.conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl != NULL && strtoull(cl, NULL, 10) > srv->app->cfg.max_body_bytes) {
        char detail[128];
        snprintf(detail, sizeof detail, "Request body too large: the limit is %zu bytes",
                 srv->app->cfg.max_body_bytes);
        *ret = send_error(srv, c, MHD_HTTP_CONTENT_TOO_LARGE, detail);
        return false;
    }

    c->req.content_type =
        MHD_lookup_connection_value(c->req.conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
    if (c->route->body == BODY_FORM && gw_form_content_type(c->req.content_type)) {
        const char *why = NULL;
        c->req.form = gw_form_new(c->req.conn, &why);
        if (c->req.form == NULL) {
            char detail[256];
            snprintf(detail, sizeof detail, "Malformed form data: %s", why);
            *ret = send_error(srv, c, MHD_HTTP_BAD_REQUEST, detail);
            return false;
        }
    }
    const char *tp = MHD_lookup_connection_value(c->req.conn, MHD_HEADER_KIND, "traceparent");
    if (header_valid_traceparent(tp))
        snprintf(c->req.traceparent, sizeof c->req.traceparent, "%s", tp);
    return true;
}

/* Last call: the body is complete. */
static enum MHD_Result finish_request(gw_server *srv, gw_conn *c)
{
    if (c->too_large) {
        char detail[128];
        snprintf(detail, sizeof detail, "Request body too large: the limit is %zu bytes",
                 srv->app->cfg.max_body_bytes);
        return send_error(srv, c, MHD_HTTP_CONTENT_TOO_LARGE, detail);
    }
    if (c->req.form != NULL && (c->form_bad || !gw_form_finish(c->req.form)))
        return send_error(srv, c, MHD_HTTP_BAD_REQUEST,
                          "Malformed form data: the body does not follow its Content-Type");
    c->req.body = c->body.s;
    c->req.body_len = c->body.len;

    gw_reply reply = {0};
    if (c->route->auth != AUTH_NONE &&
        !gw_auth(srv->app, &c->req, c->route->auth == AUTH_BEARER_OR_QUERY, &reply))
        return send_reply(srv, c, &reply);
    c->route->handler(srv->app, &c->req, &reply);
    return send_reply(srv, c, &reply);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    gw_server *srv = cls;
    gw_conn *c = *con_cls;

    if (c == NULL) {
        int ops_ret = MHD_NO;
        if (kx_httpd_ops_route(conn, method, url, ops_ready, srv->app, &ops_ret))
            return (enum MHD_Result)ops_ret;
        c = calloc(1, sizeof *c);
        if (c == NULL)
            return MHD_NO; /* libmicrohttpd closes the connection */
        c->start_us = kx_mono_us();
        c->req.conn = conn;
        c->req.method = method;
        c->req.url = url;
        *con_cls = c;
        atomic_fetch_add(&srv->inflight, 1);
        enum MHD_Result ret = MHD_YES;
        if (!begin_request(srv, c, &ret))
            return ret;
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        take_body(srv, c, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return MHD_YES;
    }
    return finish_request(srv, c);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    gw_server *srv = cls;
    gw_conn *c = *con_cls;
    if (c == NULL)
        return;
    gw_form_free(c->req.form);
    kx_buf_free(&c->body);
    free(c);
    *con_cls = NULL;
    atomic_fetch_sub(&srv->inflight, 1);
}

static void on_mhd_error(void *cls, const char *fmt, va_list ap)
{
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = '\0';
    kx_warn("http: libmicrohttpd: %s", msg);
}

/* ---- lifecycle ---- */

kx_err gw_server_start(gw_app *app, gw_server **out)
{
    *out = NULL;
    gw_server *srv = calloc(1, sizeof *srv);
    if (srv == NULL)
        return KX_ERR_NOMEM;
    srv->app = app;
    srv->listen_fd = -1;
    for (size_t i = 0; i <= NROUTES; i++) {
        char labels[160];
        snprintf(labels, sizeof labels, "route=\"%s\"",
                 i < NROUTES ? routes[i].label : "unmatched");
        srv->latency[i] =
            kx_metrics_histogram("kx_gateway_http_request_seconds", labels,
                                 "Time from request to queued answer", kx_metrics_latency_buckets,
                                 kx_metrics_latency_nbuckets);
    }

    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    unsigned int flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL |
        MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    struct sockaddr_in *v4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, app->cfg.bind_addr, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons(app->cfg.http_port);
    } else if (inet_pton(AF_INET6, app->cfg.bind_addr, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(app->cfg.http_port);
        flags |= MHD_USE_IPv6;
    } else {
        kx_error("config: KX_BIND_ADDR=\"%s\" is not an IPv4 or IPv6 address", app->cfg.bind_addr);
        free(srv);
        return KX_ERR_INVALID;
    }

    /* Idle keep-alive connections are closed after this; SSE streams write a ping well before
     * (suspended connections do not time out at all). */
    unsigned int idle_s = (unsigned int)(app->cfg.sse_ping_ms / 1000) * 2 + 60;
    srv->daemon =
        MHD_start_daemon(flags, 0, NULL, NULL, on_request, srv, MHD_OPTION_EXTERNAL_LOGGER,
                         on_mhd_error, srv, /* first, or MHD logs to stderr */
                         MHD_OPTION_THREAD_POOL_SIZE, (unsigned int)app->cfg.http_threads,
                         MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss, MHD_OPTION_NOTIFY_COMPLETED,
                         on_completed, srv, MHD_OPTION_CONNECTION_TIMEOUT, idle_s, MHD_OPTION_END);
    if (srv->daemon == NULL) {
        kx_error("http: cannot listen on %s:%u (port in use, or a bad address?)",
                 app->cfg.bind_addr, (unsigned)app->cfg.http_port);
        free(srv);
        return KX_ERR_IO;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(srv->daemon, MHD_DAEMON_INFO_BIND_PORT);
    srv->port = info != NULL ? info->port : app->cfg.http_port;
    kx_info("http: API listening on %s:%u (%d threads)", app->cfg.bind_addr, (unsigned)srv->port,
            app->cfg.http_threads);
    *out = srv;
    return KX_OK;
}

uint16_t gw_server_port(const gw_server *srv)
{
    return srv->port;
}

void gw_server_quiesce(gw_server *srv)
{
    if (srv == NULL || atomic_exchange(&srv->quiesced, true))
        return;
    srv->listen_fd = (int)MHD_quiesce_daemon(srv->daemon);
    kx_info("http: no longer accepting connections");
}

int gw_server_inflight(const gw_server *srv)
{
    return atomic_load(&srv->inflight);
}

void gw_server_free(gw_server *srv)
{
    if (srv == NULL)
        return;
    MHD_stop_daemon(srv->daemon);
    if (srv->listen_fd >= 0)
        close(srv->listen_fd);
    free(srv);
}
