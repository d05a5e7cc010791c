/* server.c — libmicrohttpd wiring, the edge's limits, bodies, auth and metrics (see server.h;
 * the route table is in routes.c, CORS in cors.c).
 *
 * libmicrohttpd calls on_request several times per request: once when the headers are in (we
 * check the URL/header/query limits, answer a CORS preflight, match the route, authenticate
 * and check Content-Length — all before any body byte is read), once per piece of body (we
 * accumulate it, or feed the form parser), and a last time with no data (we call the handler
 * and queue its answer). on_completed frees the per-request state.
 *
 * Every answer is {"detail": ...} JSON, including the refusals libmicrohttpd would otherwise
 * write itself as HTML: the connection memory pool (KX_HTTP_CONN_MEMORY) is sized so that our
 * own limits on the URL, the query and the headers are always reached first. */
#include "server.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <openssl/crypto.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <pthread.h>
#include <sys/resource.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth.h"
#include "form.h"
#include "health.h"
#include "held.h"
#include "kx/buf.h"
#include "kx/httpd.h"
#include "kx/log.h"
#include "kx/metrics.h"
#include "kx/time.h"
#include "reply.h"
#include "route.h"
#include "work.h"
#include "cors.h"

#define NROUTES gw_nroutes

/* The answer counters of a route, by status, filled as statuses first occur: count_answer finds
 * a route's counter here without formatting its labels and walking the registry's lists
 * (kx_metrics_counter: a lock and string compares, ~3 % of the gateway's CPU per request). A
 * row holds the first ANSWER_STATUSES statuses of its route; any further status is looked up. */
#define ANSWER_STATUSES 8
typedef struct answer_counter {
    atomic_uint status; /* 0: free; set (release) after cnt */
    _Atomic(kx_counter *) cnt;
} answer_counter;

struct gw_server {
    gw_app *app;
    struct MHD_Daemon *daemon;
    uint16_t port;
    atomic_int inflight;
    atomic_bool quiesced;
    int listen_fd;          /* returned by MHD_quiesce_daemon; closed at free */
    gw_work *work;          /* runs the handlers (work.h) */
    kx_histogram **latency; /* per route, last slot: unmatched requests */
    answer_counter (*answers)[ANSWER_STATUSES]; /* per route, last slot: unmatched */
    pthread_mutex_t answers_mu;                 /* taken only to fill a free entry */
};

/* Per-request state, libmicrohttpd's *con_cls. */
typedef struct gw_conn {
    gw_request req;
    const gw_route *route; /* NULL: unmatched */
    kx_buf body;           /* a JSON body as it arrives */
    bool too_large;
    bool form_bad;
    bool preflight; /* a CORS preflight: the answer carries the preflight headers */
    bool has_early; /* refused before its body: early is sent once the body is read */
    gw_reply early;
    size_t discarded; /* body bytes read and dropped for a refused request */
    int64_t start_us;
    gw_server *srv;
    /* Handed to a worker (under mu): the connection is suspended until the worker is done. */
    pthread_mutex_t mu;
    bool queued;    /* the handler was queued */
    bool suspended; /* libmicrohttpd has the connection suspended */
    bool done;      /* the worker filled result */
    gw_reply result;
} gw_conn;

/* A refused request's body is read and dropped (never kept) up to this much before the answer
 * is sent, so that the client, still sending, is not reset before it reads the answer; a larger
 * declared body gets the answer at once. */
#define DISCARD_MAX (8u << 20)

static const char oom_body[] = "{\"detail\": \"Internal server error\"}";

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

/* kx_gateway_http_requests_total{route, status} of a route slot (see answer_counter). */
static kx_counter *answer_counter_of(gw_server *srv, size_t slot, const char *label,
                                     unsigned int status)
{
    answer_counter *row = srv->answers[slot];
    for (int i = 0; i < ANSWER_STATUSES; i++) {
        unsigned int st = atomic_load_explicit(&row[i].status, memory_order_acquire);
        if (st == status)
            return atomic_load_explicit(&row[i].cnt, memory_order_relaxed);
        if (st == 0)
            break;
    }
    char labels[256];
    snprintf(labels, sizeof labels, "route=\"%s\",status=\"%u\"", label, status);
    kx_counter *cnt = kx_metrics_counter("kx_gateway_http_requests_total", labels,
                                         "HTTP requests answered, per route and status");
    if (cnt == NULL || status == 0)
        return cnt;
    pthread_mutex_lock(&srv->answers_mu);
    for (int i = 0; i < ANSWER_STATUSES; i++) {
        unsigned int st = atomic_load_explicit(&row[i].status, memory_order_relaxed);
        if (st == status)
            break;
        if (st == 0) {
            atomic_store_explicit(&row[i].cnt, cnt, memory_order_relaxed);
            atomic_store_explicit(&row[i].status, status, memory_order_release);
            break;
        }
    }
    pthread_mutex_unlock(&srv->answers_mu);
    return cnt;
}

static void count_answer(gw_server *srv, gw_conn *c, unsigned int status)
{
    const char *label = c->route ? c->route->label : "unmatched";
    size_t slot = c->route ? (size_t)(c->route - gw_routes) : NROUTES;
    kx_counter *cnt = answer_counter_of(srv, slot, label, status);
    if (cnt != NULL)
        kx_counter_add(cnt, 1);
    double secs = (double)(kx_mono_us() - c->start_us) / 1e6;
    if (srv->latency[slot] != NULL)
        kx_histogram_observe(srv->latency[slot], secs);
    kx_log_level level = status >= 500 ? KX_LOG_WARN : KX_LOG_DEBUG;
    if (level < kx_log_get_level())
        return; /* the usual case: not even the trace id is formatted */
    char trace[33] = "";
    if (c->req.traceparent[0] != '\0')
        snprintf(trace, sizeof trace, "%.32s", c->req.traceparent + 3);
    kx_log(level, NULL, trace[0] ? trace : NULL, "http: %s %s -> %u (%.1f ms)", c->req.method,
           c->req.url, status, secs * 1000.0);
}

/* Queues reply on the connection and counts it. Takes what the reply owns. */
static enum MHD_Result send_reply(gw_server *srv, gw_conn *c, gw_reply *r)
{
    struct MHD_Response *resp = r->resp;
    unsigned int status = r->status ? r->status : MHD_HTTP_INTERNAL_SERVER_ERROR;
    r->resp = NULL;
    if (resp == NULL) {
        size_t len = r->body != NULL ? strlen(r->body) : 0;
        if (len >= GW_HELD_MIN && !gw_held_take(srv->app->held, c->req.account, len)) {
            gw_reply_free(r); /* too much held already: a short 503 instead (held.h) */
            gw_held_refuse(r);
            status = r->status;
            len = r->body != NULL ? strlen(r->body) : 0;
        }
        if (len >= GW_HELD_MIN) {
            resp = gw_held_response(srv->app->held, c->req.account, r->body, len);
            r->body = NULL; /* the response frees it (or it was freed) */
        } else if (r->body != NULL) {
            resp = MHD_create_response_from_buffer(len, r->body, MHD_RESPMEM_MUST_FREE);
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
    gw_cors_headers(&srv->app->cfg, c->req.conn, resp, c->preflight);
    if (status == MHD_HTTP_METHOD_NOT_ALLOWED) {
        char allow[128];
        gw_route_methods(c->req.url, allow, sizeof allow);
        if (allow[0] != '\0')
            MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow);
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

/* Answers a request refused (or answered: a CORS preflight) from its headers. A request with a
 * body up to DISCARD_MAX keeps the answer until the body has been read (and dropped): closing
 * on a client that is still sending would reset the connection and lose the answer. A request
 * without a body gets it on the next call too when keep is set: libmicrohttpd 0.9.75 closes the
 * connection after an answer queued on a request's first call ("Connection: close"), which
 * would cost a keep-alive client (a browser's preflight, a 401, a 404) its connection and the
 * next request a new one. The refusals of the edge's limits (within_limits) close, as before.
 * Returns like begin_request. */
static bool answer_early_keep(gw_server *srv, gw_conn *c, gw_reply *r, bool keep,
                              enum MHD_Result *ret)
{
    const char *cl =
        MHD_lookup_connection_value(c->req.conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    const char *te = MHD_lookup_connection_value(c->req.conn, MHD_HEADER_KIND,
                                                 MHD_HTTP_HEADER_TRANSFER_ENCODING);
    unsigned long long len = cl != NULL ? strtoull(cl, NULL, 10) : 0;
    bool body = len > 0 || te != NULL;
    if ((body || keep) && len <= DISCARD_MAX) {
        c->early = *r;
        c->has_early = true;
        *ret = MHD_YES;
        return false;
    }
    *ret = send_reply(srv, c, r);
    return false;
}

static bool answer_early(gw_server *srv, gw_conn *c, gw_reply *r, enum MHD_Result *ret)
{
    return answer_early_keep(srv, c, r, true, ret);
}

static bool refuse(gw_server *srv, gw_conn *c, unsigned int status, const char *detail,
                   enum MHD_Result *ret)
{
    gw_reply r = {0};
    gw_reply_error(&r, status, "%s", detail);
    return answer_early(srv, c, &r, ret);
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

typedef struct sizes {
    size_t bytes;
    int count;
} sizes;

static enum MHD_Result add_size(void *cls, enum MHD_ValueKind kind, const char *key,
                                const char *value)
{
    sizes *z = cls;
    z->bytes += strlen(key) + (value != NULL ? strlen(value) : 0) + 4;
    z->count++;
    return MHD_YES;
}

/* The edge's own limits on what the headers carry, checked before anything else so that the
 * answer is ours ({"detail": ...}) and prompt. Returns false with the answer queued. */
static bool within_limits(gw_server *srv, gw_conn *c, enum MHD_Result *ret)
{
    const gw_config *cfg = &srv->app->cfg;
    sizes args = {0}, hdrs = {0};
    MHD_get_connection_values(c->req.conn, MHD_GET_ARGUMENT_KIND, add_size, &args);
    MHD_get_connection_values(c->req.conn, MHD_HEADER_KIND, add_size, &hdrs);
    char detail[160];
    unsigned int status = 0;
    if (strlen(c->req.url) + args.bytes > cfg->max_url_bytes) {
        status = MHD_HTTP_URI_TOO_LONG;
        snprintf(detail, sizeof detail, "Request URL too long: the limit is %zu bytes",
                 cfg->max_url_bytes);
    } else if (args.count > cfg->max_query_args) {
        status = MHD_HTTP_BAD_REQUEST;
        snprintf(detail, sizeof detail, "Too many query parameters: the limit is %d",
                 cfg->max_query_args);
    } else if (hdrs.bytes > cfg->max_header_bytes) {
        status = MHD_HTTP_REQUEST_HEADER_FIELDS_TOO_LARGE;
        snprintf(detail, sizeof detail, "Request headers too large: the limit is %zu bytes",
                 cfg->max_header_bytes);
    }
    if (status == 0)
        return true;
    gw_reply r = {0};
    gw_reply_error(&r, status, "%s", detail);
    return answer_early_keep(srv, c, &r, false, ret);
}

/* The ops routes (/healthz, /readyz, /metrics) live on KX_HEALTH_PORT; on the API port they
 * answer only to "Authorization: Bearer <KX_OPS_TOKEN>" (and are a 404 without the token).
 * Returns true when url was an ops route (the answer is queued). */
static bool ops_route(gw_server *srv, gw_conn *c, enum MHD_Result *ret)
{
    const char *url = c->req.url;
    if (strcmp(url, "/healthz") != 0 && strcmp(url, "/readyz") != 0 &&
        strcmp(url, "/metrics") != 0)
        return false;
    const char *tok = srv->app->cfg.ops_token;
    const char *h =
        MHD_lookup_connection_value(c->req.conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    bool ok = tok != NULL && h != NULL && strncmp(h, "Bearer ", 7) == 0 &&
        strlen(h + 7) == strlen(tok) && CRYPTO_memcmp(h + 7, tok, strlen(tok)) == 0;
    int ops_ret = MHD_NO;
    if (ok && kx_httpd_ops_route(c->req.conn, c->req.method, url, ops_ready, srv->app, &ops_ret))
        *ret = (enum MHD_Result)ops_ret;
    else
        (void)refuse(srv, c, MHD_HTTP_NOT_FOUND, "Not Found", ret);
    return true;
}

/* First call of a request (the headers are in, no body byte was read): limits, preflight,
 * route, auth, Content-Length, form parser. Returns false when the request is answered: queued
 * already, or kept in c->early for the next call (*ret is then the result). */
static bool begin_request(gw_server *srv, gw_conn *c, enum MHD_Result *ret)
{
    if (!within_limits(srv, c, ret))
        return false;
    if (gw_cors_is_preflight(c->req.conn, c->req.method)) {
        const char *why = NULL;
        unsigned int status = gw_cors_preflight(&srv->app->cfg, c->req.conn, &why);
        c->preflight = status == MHD_HTTP_OK;
        gw_reply r = {0};
        if (why != NULL)
            gw_reply_error(&r, status, "%s", why);
        else
            gw_reply_json(&r, status, json_pack("{s:s}", "status", "ok"));
        return answer_early(srv, c, &r, ret);
    }
    if (ops_route(srv, c, ret))
        return false;

    bool path_known = false;
    c->route = gw_route_find(c->req.method, c->req.url, &c->req, &path_known);
    if (c->route == NULL) {
        return path_known ? refuse(srv, c, MHD_HTTP_METHOD_NOT_ALLOWED, "Method Not Allowed", ret)
                          : refuse(srv, c, MHD_HTTP_NOT_FOUND, "Not Found", ret);
    }
    c->req.route = c->route->pattern;
    const char *tp = MHD_lookup_connection_value(c->req.conn, MHD_HEADER_KIND, "traceparent");
    if (header_valid_traceparent(tp))
        snprintf(c->req.traceparent, sizeof c->req.traceparent, "%s", tp);

    /* Auth before any body byte is read: an anonymous upload costs us nothing. */
    gw_reply reply = {0};
    bool authed = c->route->auth == AUTH_NONE ||
        (c->route->auth == AUTH_OPTIONAL
             ? gw_auth_optional(srv->app, &c->req, &reply)
             : gw_auth(srv->app, &c->req, c->route->auth == AUTH_BEARER_OR_QUERY, &reply));
    if (!authed)
        return answer_early(srv, c, &reply, ret);

    const char *cl =
        MHD_lookup_connection_value(c->req.conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl != NULL && strtoull(cl, NULL, 10) > srv->app->cfg.max_body_bytes) {
        char detail[128];
        snprintf(detail, sizeof detail, "Request body too large: the limit is %zu bytes",
                 srv->app->cfg.max_body_bytes);
        return refuse(srv, c, MHD_HTTP_CONTENT_TOO_LARGE, detail, ret);
    }

    c->req.content_type =
        MHD_lookup_connection_value(c->req.conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
    if (c->route->body == BODY_FORM && gw_form_content_type(c->req.content_type)) {
        const char *why = NULL;
        c->req.form = gw_form_new(c->req.conn, &why);
        if (c->req.form == NULL) {
            char detail[256];
            snprintf(detail, sizeof detail, "Malformed form data: %s", why);
            return refuse(srv, c, MHD_HTTP_BAD_REQUEST, detail, ret);
        }
    }
    return true;
}

/* A worker: runs the handler (unless the request waited too long for it, or the gateway is
 * stopping), then resumes the connection so that libmicrohttpd calls on_request again. */
static void run_handler(void *arg, bool stopping)
{
    gw_conn *c = arg;
    gw_server *srv = c->srv;
    gw_reply reply = {0};
    int64_t waited_ms = (kx_mono_us() - c->start_us) / 1000;
    if (stopping)
        gw_reply_error(&reply, MHD_HTTP_SERVICE_UNAVAILABLE, "Server is shutting down");
    else if (waited_ms > srv->app->cfg.queue_wait_ms)
        gw_reply_error(&reply, MHD_HTTP_SERVICE_UNAVAILABLE,
                       "Server busy: no worker free within %lld ms (a dependency is slow)",
                       (long long)srv->app->cfg.queue_wait_ms);
    else if (c->req.api_key[0] == '\0' || gw_auth_api_key(srv->app, &c->req, &reply))
        c->route->handler(srv->app, &c->req, &reply); /* an API key is checked here: a read */
    pthread_mutex_lock(&c->mu);
    c->result = reply;
    c->done = true;
    if (c->suspended) {
        c->suspended = false;
        MHD_resume_connection(c->req.conn);
    }
    pthread_mutex_unlock(&c->mu);
}

/* Last call: the body is complete (auth passed in begin_request). The handler runs on a worker
 * while the connection is suspended; this thread goes on serving other connections. */
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

    if (c->route->cached != NULL && c->req.api_key[0] == '\0') {
        gw_reply hit = {0};
        if (c->route->cached(srv->app, &c->req, &hit))
            return send_reply(srv, c, &hit); /* from memory: no worker, no dependency */
        gw_reply_free(&hit);
    }
    c->queued = true;
    if (!gw_work_submit(srv->work, run_handler, c)) {
        c->queued = false;
        return send_error(srv, c, MHD_HTTP_SERVICE_UNAVAILABLE,
                          "Server busy: too many requests waiting (a dependency is slow)");
    }
    pthread_mutex_lock(&c->mu);
    if (!c->done) {
        c->suspended = true;
        MHD_suspend_connection(c->req.conn);
        pthread_mutex_unlock(&c->mu);
        return MHD_YES;
    }
    pthread_mutex_unlock(&c->mu);
    return send_reply(srv, c, &c->result); /* the worker was quicker than this thread */
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    gw_server *srv = cls;
    gw_conn *c = *con_cls;

    if (c == NULL) {
        c = calloc(1, sizeof *c);
        if (c == NULL)
            return MHD_NO; /* libmicrohttpd closes the connection */
        c->start_us = kx_mono_us();
        c->srv = srv;
        pthread_mutex_init(&c->mu, NULL);
        c->req.conn = conn;
        c->req.method = method;
        c->req.url = url;
        c->req.version = version;
        *con_cls = c;
        atomic_fetch_add(&srv->inflight, 1);
        enum MHD_Result ret = MHD_YES;
        if (!begin_request(srv, c, &ret))
            return ret;
        return MHD_YES;
    }
    if (c->queued) { /* resumed by its worker: answer */
        pthread_mutex_lock(&c->mu);
        bool done = c->done;
        pthread_mutex_unlock(&c->mu);
        if (!done)
            return MHD_YES;
        c->queued = false;
        return send_reply(srv, c, &c->result);
    }
    if (c->has_early) { /* refused: drop the body, then answer */
        c->discarded += *upload_data_size;
        bool more = *upload_data_size > 0;
        *upload_data_size = 0;
        if (more && c->discarded <= DISCARD_MAX)
            return MHD_YES;
        c->has_early = false;
        return send_reply(srv, c, &c->early);
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
    gw_reply_free(&c->early);
    gw_reply_free(&c->result);
    pthread_mutex_destroy(&c->mu);
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

#define FD_RESERVE 256 /* descriptors kept for NATS, Postgres, logs and the ops server */

/* Raises RLIMIT_NOFILE's soft limit so that want connections fit; returns the number of
 * connections that do fit (want, or less with a warning when the hard limit is lower). */
static unsigned int raise_nofile(unsigned int want)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return want;
    rlim_t need = (rlim_t)want + FD_RESERVE;
    if (rl.rlim_cur < need) {
        rlim_t old = rl.rlim_cur;
        rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= need ? need : rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0 && getrlimit(RLIMIT_NOFILE, &rl) != 0)
            rl.rlim_cur = old;
    }
    if (rl.rlim_cur < need) {
        unsigned int fit = rl.rlim_cur > 2 * FD_RESERVE ? (unsigned int)(rl.rlim_cur - FD_RESERVE)
                                                        : (unsigned int)(rl.rlim_cur / 2);
        kx_warn("http: RLIMIT_NOFILE is %llu: at most %u connections instead of %u",
                (unsigned long long)rl.rlim_cur, fit, want);
        return fit;
    }
    return want;
}

/* Frees what gw_server_start allocated before the daemon (the tables, the lock, srv). */
static void gw_server_release(gw_server *srv)
{
    pthread_mutex_destroy(&srv->answers_mu);
    free(srv->answers);
    free(srv->latency);
    free(srv);
}

kx_err gw_server_start(gw_app *app, gw_server **out)
{
    *out = NULL;
    gw_server *srv = calloc(1, sizeof *srv);
    if (srv == NULL)
        return KX_ERR_NOMEM;
    srv->app = app;
    srv->listen_fd = -1;
    srv->latency = calloc(NROUTES + 1, sizeof *srv->latency);
    srv->answers = calloc(NROUTES + 1, sizeof *srv->answers);
    if (srv->latency == NULL || srv->answers == NULL) {
        free(srv->latency);
        free(srv->answers);
        free(srv);
        return KX_ERR_NOMEM;
    }
    pthread_mutex_init(&srv->answers_mu, NULL);
    for (size_t i = 0; i <= NROUTES; i++) {
        char labels[160];
        snprintf(labels, sizeof labels, "route=\"%s\"",
                 i < NROUTES ? gw_routes[i].label : "unmatched");
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
        gw_server_release(srv);
        return KX_ERR_INVALID;
    }

    /* A connection that sends nothing for KX_HTTP_TIMEOUT_S (headers, body, or between
     * keep-alive requests) is closed; a suspended SSE stream does not time out, and a stream
     * being written to is not idle. */
    unsigned int conns = raise_nofile((unsigned int)app->cfg.max_conns);
    srv->work = gw_work_new(app->cfg.http_workers, app->cfg.queue_max);
    if (srv->work == NULL) {
        gw_server_release(srv);
        return KX_ERR_NOMEM;
    }
    srv->daemon =
        MHD_start_daemon(flags, 0, NULL, NULL, on_request, srv, MHD_OPTION_EXTERNAL_LOGGER,
                         on_mhd_error, srv, /* first, or MHD logs to stderr */
                         MHD_OPTION_THREAD_POOL_SIZE, (unsigned int)app->cfg.http_threads,
                         MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss, MHD_OPTION_NOTIFY_COMPLETED,
                         on_completed, srv, MHD_OPTION_CONNECTION_TIMEOUT,
                         (unsigned int)app->cfg.conn_timeout_s, MHD_OPTION_CONNECTION_LIMIT, conns,
                         MHD_OPTION_PER_IP_CONNECTION_LIMIT,
                         (unsigned int)app->cfg.max_conns_per_ip,
                         MHD_OPTION_CONNECTION_MEMORY_LIMIT, app->cfg.conn_memory,
                         MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned int)1024, MHD_OPTION_END);
    if (srv->daemon == NULL) {
        kx_error("http: cannot listen on %s:%u (port in use, or a bad address?)",
                 app->cfg.bind_addr, (unsigned)app->cfg.http_port);
        gw_work_free(srv->work);
        gw_server_release(srv);
        return KX_ERR_IO;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(srv->daemon, MHD_DAEMON_INFO_BIND_PORT);
    srv->port = info != NULL ? info->port : app->cfg.http_port;
    kx_info("http: API listening on %s:%u (%d threads, at most %u connections, %d per address)",
            app->cfg.bind_addr, (unsigned)srv->port, app->cfg.http_threads, conns,
            app->cfg.max_conns_per_ip);
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
    gw_work_free(srv->work); /* every queued request is answered and resumed first */
    MHD_stop_daemon(srv->daemon);
    if (srv->listen_fd >= 0)
        close(srv->listen_fd);
    gw_server_release(srv);
}
