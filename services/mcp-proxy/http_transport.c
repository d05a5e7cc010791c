/* http_transport.c — Streamable HTTP and legacy HTTP+SSE on the loop (see http_transport.h).
 *
 * Every HTTP exchange is an xfer (one curl easy handle on the shared kx_curlm). Bytes arriving
 * in curl's callbacks are only parsed and queued here (t->inbox); a zero-delay loop timer
 * hands the queued messages, and then a pending close, to the session. So the session never
 * runs inside a curl callback (where curl forbids adding or removing transfers) and never
 * inside one of our vt calls (transport.h's rule).
 *
 * A POST for a request of ours remembers the request's id: when it fails (HTTP error, network
 * error) we queue a JSON-RPC error response for that id, so the operation fails with a clear
 * message instead of waiting for its deadline; when its SSE stream ends before the response,
 * it is resumed with GET + Last-Event-ID after the server's retry delay.
 *
 * Streamable HTTP: once our notifications/initialized is accepted, a GET opens the server's
 * stream for messages outside any request (notifications/tools/list_changed at any time). 405
 * (or any answer that is not an event stream) means the server offers none: we stop asking.
 * A stream that ends or breaks is re-opened after the server's retry delay (Last-Event-ID when
 * it gave ids), doubling per attempt that brought no event, given up after
 * MCP_HTTP_LISTEN_TRIES such attempts in a row. */
#include "http_transport.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "kx/buf.h"
#include "kx/curl_easy.h"
#include "kx/log.h"
#include "kx/sse.h"

#include "jsonrpc.h"

typedef enum xkind {
    X_POST,
    X_RESUME,
    X_STREAM, /* legacy: the SSE stream that carries everything */
    X_LISTEN, /* Streamable HTTP: the GET stream for messages outside requests */
    X_DELETE
} xkind;

typedef struct http_t http_t;

typedef struct xfer {
    http_t *t;
    struct xfer *prev, *next;
    xkind kind;
    CURL *easy;
    struct curl_slist *hdrs;
    char *body;  /* the POST body (curl reads it from here) */
    kx_buf resp; /* a JSON body, or an error body */
    bool sse;    /* the response is text/event-stream */
    bool typed;  /* sse decided */
    kx_sse_parser parser;
    bool has_id;          /* the POST carries a request of ours */
    json_t *req_id;       /* its id */
    bool answered;        /* a response to req_id came */
    bool carried_session; /* the request carried Mcp-Session-Id */
    bool opens_listen;    /* notifications/initialized: once accepted, open the GET stream */
    int events;           /* X_LISTEN: messages it brought */
    int resumes;
    char resume_id[128]; /* X_RESUME: the Last-Event-ID to send */
    char refused[200];   /* the address guard refused the connection */
} xfer;

typedef struct inmsg {
    struct inmsg *next;
    size_t len;
    char text[];
} inmsg;

struct http_t {
    mcp_transport base;
    kx_loop *loop;
    kx_curlm *m;
    const mcp_server_config *cfg; /* the session's; it outlives us */
    mcp_transport_cbs cbs;
    void *arg;
    char *session_id;
    char version[32];
    char *post_url; /* Streamable: cfg->url; legacy: the endpoint, once known */
    xfer *xfers;
    inmsg *inbox, **inbox_tail;
    inmsg *outbox, **outbox_tail; /* legacy: messages sent before the endpoint arrived */
    kx_timer *flush_timer;
    kx_timer *resume_timer;
    xfer *to_resume;          /* waiting for resume_timer */
    kx_timer *listen_timer;   /* re-opens the GET stream */
    int listen_fails;         /* GET streams in a row that brought no event */
    char listen_last_id[128]; /* its last event id (Last-Event-ID on re-opening) */
    bool close_pending;
    bool closed; /* on_closed delivered (or freed) */
    bool close_expired;
    bool closing; /* close/kill was asked */
    char close_how[640];
    char allow[256]; /* KX_MCP_ALLOW_LOOPBACK_PORTS */
    char desc[128];
};

static void schedule_flush(http_t *t);

/* ---- the address guard ---- */

static bool port_listed(const char *list, long port)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s", list ? list : "");
    char *save = NULL;
    for (char *tok = strtok_r(buf, ", ", &save); tok; tok = strtok_r(NULL, ", ", &save))
        if (strtol(tok, NULL, 10) == port && port > 0)
            return true;
    return false;
}

bool mcp_http_address_allowed(const char *ip, long port, const char *allow_ports)
{
    unsigned char a[16];
    bool local = false;
    if (inet_pton(AF_INET, ip, a) == 1) {
        local = a[0] == 127 || a[0] == 0 || (a[0] == 169 && a[1] == 254);
    } else if (inet_pton(AF_INET6, ip, a) == 1) {
        static const unsigned char zero[16] = {0};
        bool mapped = memcmp(a, zero, 10) == 0 && a[10] == 0xff && a[11] == 0xff;
        local = (memcmp(a, zero, 15) == 0 && (a[15] == 0 || a[15] == 1)) ||
            (a[0] == 0xfe && (a[1] & 0xc0) == 0x80) ||
            (mapped && (a[12] == 127 || a[12] == 0 || (a[12] == 169 && a[13] == 254)));
    } else {
        return false; /* not an address we understand: refuse */
    }
    return !local || port_listed(allow_ports, port);
}

static int on_prereq(void *arg, char *conn_primary_ip, char *conn_local_ip, int conn_primary_port,
                     int conn_local_port)
{
    (void)conn_local_ip;
    (void)conn_local_port;
    xfer *x = arg;
    if (mcp_http_address_allowed(conn_primary_ip, conn_primary_port, x->t->allow))
        return CURL_PREREQFUNC_OK;
    snprintf(x->refused, sizeof x->refused,
             "%s port %d is a loopback, unspecified or "
             "link-local address, which servers from an agent's config may not use",
             conn_primary_ip, conn_primary_port);
    return CURL_PREREQFUNC_ABORT;
}

/* ---- incoming messages ---- */

static void inbox_add(http_t *t, const char *text, size_t len)
{
    inmsg *m = malloc(sizeof *m + len + 1);
    if (m == NULL) {
        kx_error("mcp server '%s': out of memory; a message was dropped", t->cfg->name);
        return;
    }
    m->next = NULL;
    m->len = len;
    memcpy(m->text, text, len);
    m->text[len] = '\0';
    *t->inbox_tail = m;
    t->inbox_tail = &m->next;
    schedule_flush(t);
}

/* A message from x's response: noted (is it the answer to x's request?) and queued. */
static void got_message(xfer *x, const char *text, size_t len)
{
    if (x->has_id && !x->answered) {
        /* read as mcp_rpc_receive reads it: an answer holding \u0000 still counts */
        json_t *j = mcp_json_loadb(text, len, NULL);
        json_t *id = json_object_get(j, "id");
        if (id && json_equal(id, x->req_id) &&
            (json_object_get(j, "result") || json_object_get(j, "error")))
            x->answered = true;
        json_decref(j);
    }
    inbox_add(x->t, text, len);
}

/* Queues a JSON-RPC error answering x's request (it failed at the HTTP level). */
static void fail_request(xfer *x, const char *why)
{
    if (!x->has_id || x->answered)
        return;
    x->answered = true;
    json_t *e = json_pack("{s:s, s:O, s:{s:i, s:s}}", "jsonrpc", "2.0", "id", x->req_id, "error",
                          "code", -32000, "message", why);
    char *s = e ? json_dumps(e, JSON_COMPACT) : NULL;
    if (s)
        inbox_add(x->t, s, strlen(s));
    free(s);
    json_decref(e);
}

static void on_event(const char *event, const char *data, size_t len, const char *id, void *arg)
{
    (void)id;
    xfer *x = arg;
    http_t *t = x->t;
    if (x->kind == X_STREAM && strcmp(event, "endpoint") == 0) {
        /* Legacy: where to POST. Absolute, or a path on the stream's origin. */
        char url[2200];
        if (strncmp(data, "http://", 7) == 0 || strncmp(data, "https://", 8) == 0) {
            snprintf(url, sizeof url, "%.*s", (int)len, data);
        } else {
            const char *base = t->cfg->url;
            const char *host = strstr(base, "://");
            const char *path = host ? strchr(host + 3, '/') : NULL;
            int origin = path ? (int)(path - base) : (int)strlen(base);
            if (len > 0 && data[0] == '/')
                snprintf(url, sizeof url, "%.*s%.*s", origin, base, (int)len, data);
            else
                snprintf(url, sizeof url, "%.*s/%.*s", origin, base, (int)len, data);
        }
        free(t->post_url);
        t->post_url = strdup(url);
        kx_debug("mcp server '%s': legacy SSE endpoint %s", t->cfg->name, url);
        schedule_flush(t); /* sends what waited for the endpoint */
        return;
    }
    if (strcmp(event, "message") == 0 && len > 0) {
        x->events++;
        got_message(x, data, len);
    }
}

static size_t on_header(char *buf, size_t size, size_t n, void *arg)
{
    xfer *x = arg;
    size_t len = size * n;
    static const char name[] = "mcp-session-id:";
    if (len > sizeof name - 1 && strncasecmp(buf, name, sizeof name - 1) == 0) {
        const char *v = buf + sizeof name - 1;
        size_t vl = len - (sizeof name - 1);
        while (vl > 0 && (*v == ' ' || *v == '\t'))
            v++, vl--;
        while (vl > 0 && isspace((unsigned char)v[vl - 1]))
            vl--;
        if (vl > 0 && vl < 512) {
            char *sid = strndup(v, vl);
            if (sid) {
                free(x->t->session_id);
                x->t->session_id = sid;
            }
        }
    }
    return len;
}

static size_t on_body(char *buf, size_t size, size_t n, void *arg)
{
    xfer *x = arg;
    size_t len = size * n;
    if (!x->typed) {
        char *ct = NULL;
        curl_easy_getinfo(x->easy, CURLINFO_CONTENT_TYPE, &ct);
        x->sse = ct != NULL && strncasecmp(ct, "text/event-stream", 17) == 0;
        x->typed = true;
    }
    if (x->sse)
        return kx_sse_feed(&x->parser, buf, len) == KX_OK ? len : 0;
    return kx_buf_add(&x->resp, buf, len) == KX_OK ? len : 0;
}

/* ---- transfers ---- */

static void xfer_free(http_t *t, xfer *x, bool remove)
{
    if (x->prev)
        x->prev->next = x->next;
    else if (t->xfers == x)
        t->xfers = x->next;
    if (x->next)
        x->next->prev = x->prev;
    if (t->to_resume == x) {
        t->to_resume = NULL;
        if (t->resume_timer) {
            kx_timer_cancel(t->resume_timer);
            t->resume_timer = NULL;
        }
    }
    if (remove && x->easy)
        kx_curlm_remove(t->m, x->easy);
    if (x->easy)
        curl_easy_cleanup(x->easy);
    curl_slist_free_all(x->hdrs);
    free(x->body);
    kx_buf_free(&x->resp);
    kx_sse_free(&x->parser);
    json_decref(x->req_id);
    free(x);
}

static void on_done(CURL *easy, CURLcode rc, void *arg);

/* Starts an exchange: method with body (NULL for GET/DELETE) to url. On an error x is
 * freed. */
static kx_err xfer_start(http_t *t, xfer *x, const char *method, const char *url)
{
    x->t = t;
    kx_sse_init(&x->parser, on_event, x);
    x->parser.max_event_bytes = MCP_HTTP_MAX_MESSAGE;
    x->resp.max = MCP_HTTP_MAX_MESSAGE;
    if ((x->easy = curl_easy_init()) == NULL) {
        xfer_free(t, x, false);
        return KX_ERR_NOMEM;
    }
    CURL *e = x->easy;
    char h[700];
    if (x->kind == X_POST) {
        x->hdrs = curl_slist_append(x->hdrs, "Content-Type: application/json");
        x->hdrs = curl_slist_append(x->hdrs, "Accept: application/json, text/event-stream");
    } else if (x->kind != X_DELETE) {
        x->hdrs = curl_slist_append(x->hdrs, "Accept: text/event-stream");
    }
    if (t->session_id && t->cfg->kind == MCP_T_HTTP) {
        snprintf(h, sizeof h, "Mcp-Session-Id: %s", t->session_id);
        x->hdrs = curl_slist_append(x->hdrs, h);
        x->carried_session = true;
    }
    if (t->version[0] && t->cfg->kind == MCP_T_HTTP) {
        snprintf(h, sizeof h, "MCP-Protocol-Version: %s", t->version);
        x->hdrs = curl_slist_append(x->hdrs, h);
    }
    if ((x->kind == X_RESUME || x->kind == X_LISTEN) && x->resume_id[0]) {
        snprintf(x->parser.id, sizeof x->parser.id, "%s", x->resume_id);
        snprintf(h, sizeof h, "Last-Event-ID: %s", x->resume_id);
        x->hdrs = curl_slist_append(x->hdrs, h);
    }
    for (char **hd = t->cfg->headers; hd && *hd; hd++)
        x->hdrs = curl_slist_append(x->hdrs, *hd);
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->hdrs);
    /* no transfer timeout: a listening GET stream stays open; requests keep their deadlines */
    kx_curl_opts o = {.on_body = on_body,
                      .body_arg = x,
                      .errbuf = NULL,
                      .user_agent = "kortix-mcp-proxy",
                      .timeout_ms = 0,
                      .connect_ms = 10000};
    kx_curl_easy_setup(e, &o);
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, x);
    if (t->cfg->user) {
        curl_easy_setopt(e, CURLOPT_PREREQFUNCTION, on_prereq);
        curl_easy_setopt(e, CURLOPT_PREREQDATA, x);
    }
    if (x->body) {
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, x->body);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)strlen(x->body));
    } else if (strcmp(method, "GET") != 0) {
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
    }
    if (x->hdrs == NULL) {
        xfer_free(t, x, false);
        return KX_ERR_NOMEM;
    }
    x->next = t->xfers;
    if (t->xfers)
        t->xfers->prev = x;
    t->xfers = x;
    kx_err err = kx_curlm_add(t->m, e, on_done, x);
    if (err != KX_OK) {
        xfer_free(t, x, false);
        return err;
    }
    return KX_OK;
}

static void report_close(http_t *t, const char *how, bool expired)
{
    if (t->close_pending || t->closed)
        return;
    t->close_pending = true;
    t->close_expired = expired;
    snprintf(t->close_how, sizeof t->close_how, "%s", how);
    schedule_flush(t);
}

static void on_resume(kx_loop *loop, void *arg)
{
    (void)loop;
    http_t *t = arg;
    t->resume_timer = NULL;
    xfer *old = t->to_resume;
    t->to_resume = NULL;
    if (old == NULL)
        return;
    xfer *x = calloc(1, sizeof *x);
    if (x == NULL) {
        fail_request(old, "out of memory resuming the SSE stream");
        xfer_free(t, old, false);
        return;
    }
    x->kind = X_RESUME;
    x->has_id = old->has_id;
    x->req_id = json_incref(old->req_id);
    x->resumes = old->resumes + 1;
    snprintf(x->resume_id, sizeof x->resume_id, "%s", old->parser.id);
    kx_debug("mcp server '%s': resuming an SSE stream (Last-Event-ID %s, attempt %d)",
             t->cfg->name, x->resume_id, x->resumes);
    json_t *req_id = json_incref(old->req_id);
    bool has_id = old->has_id;
    xfer_free(t, old, false);
    kx_err err = xfer_start(t, x, "GET", t->cfg->url);
    if (err != KX_OK) {
        xfer tmp = {.t = t, .has_id = has_id, .req_id = req_id};
        fail_request(&tmp, "cannot resume the response stream");
    }
    json_decref(req_id);
}

/* ---- the GET stream for server-initiated messages (Streamable HTTP) ---- */

static void listen_open(http_t *t)
{
    if (t->closing || t->closed || t->close_pending || t->cfg->kind != MCP_T_HTTP)
        return;
    for (xfer *o = t->xfers; o; o = o->next)
        if (o->kind == X_LISTEN)
            return; /* one at a time */
    xfer *x = calloc(1, sizeof *x);
    if (x == NULL)
        return; /* only notifications outside requests are missed */
    x->kind = X_LISTEN;
    snprintf(x->resume_id, sizeof x->resume_id, "%s", t->listen_last_id);
    if (xfer_start(t, x, "GET", t->cfg->url) != KX_OK)
        kx_warn("mcp server '%s': cannot open the GET stream for server messages", t->cfg->name);
}

static void on_listen_timer(kx_loop *loop, void *arg)
{
    (void)loop;
    http_t *t = arg;
    t->listen_timer = NULL;
    listen_open(t);
}

/* The GET stream x ended (rc, HTTP status). Frees x. */
static void listen_done(http_t *t, xfer *x, CURLcode rc, long status)
{
    bool stream = x->sse && status == 200;
    int events = x->events;
    long retry = x->parser.retry_ms;
    if (x->parser.id[0])
        snprintf(t->listen_last_id, sizeof t->listen_last_id, "%s", x->parser.id);
    xfer_free(t, x, false);
    if (t->closing || t->closed || t->close_pending)
        return;
    if (!stream && rc == CURLE_OK) {
        if (status == 405)
            kx_debug("mcp server '%s' offers no stream for server messages (GET: 405)",
                     t->cfg->name);
        else
            kx_info("mcp server '%s' answered the GET for server messages with HTTP %ld; "
                    "its notifications arrive only with responses",
                    t->cfg->name, status);
        return;
    }
    t->listen_fails = events > 0 ? 0 : t->listen_fails + 1;
    if (t->listen_fails >= MCP_HTTP_LISTEN_TRIES) {
        kx_warn("mcp server '%s': its GET stream for server messages failed %d times in a row "
                "(%s); not re-opened for this session",
                t->cfg->name, t->listen_fails,
                rc == CURLE_OK ? "ended without events" : curl_easy_strerror(rc));
        return;
    }
    long delay = retry >= 0 ? retry : 1000;
    for (int i = 0; i < t->listen_fails && delay < 30000; i++)
        delay *= 2;
    if (delay > 30000)
        delay = 30000;
    if (t->listen_timer == NULL)
        t->listen_timer = kx_loop_timer(t->loop, delay, on_listen_timer, t);
}

static void on_done(CURL *easy, CURLcode rc, void *arg)
{
    xfer *x = arg;
    http_t *t = x->t;
    long status = 0;
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
    char why[600];
    if (x->refused[0]) {
        snprintf(why, sizeof why, "refused to connect to %s: %s", t->cfg->url, x->refused);
        fail_request(x, why);
        report_close(t, why, false);
        xfer_free(t, x, false);
        return;
    }
    if (x->kind == X_LISTEN) {
        listen_done(t, x, rc, status);
        return;
    }
    if (rc != CURLE_OK && !(x->sse && x->typed && rc == CURLE_PARTIAL_FILE)) {
        if (x->kind == X_POST || x->kind == X_RESUME) {
            if (x->sse && x->has_id && !x->answered && x->parser.id[0] &&
                x->resumes < MCP_HTTP_MAX_RESUMES && !t->closing)
                goto resume; /* broken mid-stream: resume it */
            snprintf(why, sizeof why, "HTTP request to %s failed: %s", t->cfg->url,
                     curl_easy_strerror(rc));
            fail_request(x, why);
            if (rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST ||
                rc == CURLE_OPERATION_TIMEDOUT)
                report_close(t, why, false);
        } else if (x->kind == X_STREAM) {
            snprintf(why, sizeof why, "SSE stream from %s failed: %s", t->cfg->url,
                     curl_easy_strerror(rc));
            report_close(t, why, false);
        } else {
            report_close(t, "closed (DELETE failed)", false);
        }
        xfer_free(t, x, false);
        return;
    }
    switch (x->kind) {
    case X_LISTEN: break; /* handled above */
    case X_DELETE: report_close(t, "closed (session deleted)", false); break;
    case X_STREAM:
        report_close(t, status >= 400 ? "refused the SSE stream" : "ended its SSE stream", false);
        break;
    case X_POST:
    case X_RESUME:
        /* 404: the spec's "session expired". 400 too: servers such as server-everything
         * answer an unknown session id with it. Either way the request was not processed. */
        if ((status == 404 || status == 400) && x->carried_session && t->cfg->kind == MCP_T_HTTP) {
            snprintf(why, sizeof why, "rejected our session (HTTP %ld); re-initializing", status);
            report_close(t, why, true);
            break;
        }
        if (status >= 400 || (status != 200 && status != 202 && status != 201 && status != 204)) {
            snprintf(why, sizeof why, "%s answered HTTP %ld: %.300s", t->cfg->url, status,
                     x->resp.s ? x->resp.s : "");
            fail_request(x, why);
            if (!t->version[0]) /* initialize itself failed */
                report_close(t, why, false);
            break;
        }
        if (!x->sse && x->resp.len > 0 && t->cfg->kind == MCP_T_HTTP) {
            json_t *j = mcp_json_loadb(x->resp.s, x->resp.len, NULL);
            if (json_is_array(j)) {
                size_t i;
                json_t *m;
                json_array_foreach(j, i, m)
                {
                    char *s = json_dumps(m, JSON_COMPACT);
                    if (s)
                        got_message(x, s, strlen(s));
                    free(s);
                }
            } else {
                got_message(x, x->resp.s, x->resp.len);
            }
            json_decref(j);
        }
        if (x->opens_listen && t->cfg->kind == MCP_T_HTTP)
            listen_open(t);
        if (x->sse && x->has_id && !x->answered && t->cfg->kind == MCP_T_HTTP) {
            if (x->parser.id[0] && x->resumes < MCP_HTTP_MAX_RESUMES && !t->closing)
                goto resume;
            fail_request(x,
                         "the server ended the response stream without answering and "
                         "without an event id to resume from");
        }
        break;
    }
    xfer_free(t, x, false);
    return;
resume:
    /* The easy handle is done; keep x (its last event id) until the retry delay passed. */
    if (t->to_resume != NULL) { /* one resume at a time; the other one fails */
        fail_request(x, "the response stream broke");
        xfer_free(t, x, false);
        return;
    }
    curl_easy_cleanup(x->easy);
    x->easy = NULL;
    t->to_resume = x;
    long delay = x->parser.retry_ms >= 0 ? x->parser.retry_ms : 1000;
    if (delay > 30000)
        delay = 30000;
    t->resume_timer = kx_loop_timer(t->loop, delay, on_resume, t);
    if (t->resume_timer == NULL) {
        t->to_resume = NULL;
        fail_request(x, "out of memory");
        xfer_free(t, x, false);
    }
}

/* ---- delivery ---- */

static kx_err post(http_t *t, const char *text, size_t len);

static void on_flush(kx_loop *loop, void *arg)
{
    (void)loop;
    http_t *t = arg;
    t->flush_timer = NULL;
    /* Legacy: the endpoint may have arrived; send what waited for it. */
    while (t->post_url && t->outbox) {
        inmsg *m = t->outbox;
        t->outbox = m->next;
        if (t->outbox == NULL)
            t->outbox_tail = &t->outbox;
        post(t, m->text, m->len);
        free(m);
    }
    while (t->inbox && !t->closed) {
        inmsg *m = t->inbox;
        t->inbox = m->next;
        if (t->inbox == NULL)
            t->inbox_tail = &t->inbox;
        t->cbs.on_message(m->text, m->len, t->arg);
        free(m);
        if (t->flush_timer != NULL)
            return; /* the session reacted (e.g. killed us): continue on the next turn */
    }
    if (t->close_pending && !t->closed) {
        t->closed = true;
        char how[sizeof t->close_how];
        snprintf(how, sizeof how, "%s", t->close_how);
        t->cbs.on_closed(how, t->close_expired, t->arg); /* last: may free t */
    }
}

static void schedule_flush(http_t *t)
{
    if (t->flush_timer == NULL && !t->closed)
        t->flush_timer = kx_loop_timer(t->loop, 0, on_flush, t);
}

static kx_err post(http_t *t, const char *text, size_t len)
{
    xfer *x = calloc(1, sizeof *x);
    if (x == NULL || (x->body = strndup(text, len)) == NULL) {
        free(x);
        return KX_ERR_NOMEM;
    }
    x->kind = X_POST;
    json_t *j = mcp_json_loadb(text, len, NULL);
    json_t *id = json_object_get(j, "id");
    if (id != NULL && json_object_get(j, "method") != NULL) {
        x->has_id = true;
        x->req_id = json_incref(id);
    }
    const char *method = json_string_value(json_object_get(j, "method"));
    x->opens_listen = id == NULL && method && strcmp(method, "notifications/initialized") == 0;
    json_decref(j);
    return xfer_start(t, x, "POST", t->post_url); /* on an error the caller fails it */
}

/* ---- the interface ---- */

static kx_err vt_send(mcp_transport *base, const char *text, size_t len)
{
    http_t *t = (http_t *)base;
    if (t->closing || t->closed || t->close_pending)
        return KX_ERR_UNAVAILABLE;
    if (t->post_url == NULL) { /* legacy, before the endpoint: queue */
        inmsg *m = malloc(sizeof *m + len + 1);
        if (m == NULL)
            return KX_ERR_NOMEM;
        m->next = NULL;
        m->len = len;
        memcpy(m->text, text, len);
        m->text[len] = '\0';
        *t->outbox_tail = m;
        t->outbox_tail = &m->next;
        return KX_OK;
    }
    return post(t, text, len);
}

static void vt_version(mcp_transport *base, const char *v)
{
    http_t *t = (http_t *)base;
    snprintf(t->version, sizeof t->version, "%s", v);
}

static void abort_all(http_t *t)
{
    /* False positive: xfer_free unlinks before it frees, and the head's prev is always NULL
     * (calloc, linked at the head), so t->xfers moves past the freed transfer */
    while (t->xfers)
        xfer_free(t, t->xfers, true); // NOLINT(clang-analyzer-unix.Malloc): see above
    if (t->to_resume)
        xfer_free(t, t->to_resume, false);
    if (t->listen_timer) {
        kx_timer_cancel(t->listen_timer);
        t->listen_timer = NULL;
    }
}

static void vt_close(mcp_transport *base)
{
    http_t *t = (http_t *)base;
    if (t->closing)
        return;
    t->closing = true;
    abort_all(t);
    if (t->cfg->kind == MCP_T_HTTP && t->session_id != NULL) {
        xfer *x = calloc(1, sizeof *x);
        if (x != NULL) {
            x->kind = X_DELETE;
            if (xfer_start(t, x, "DELETE", t->cfg->url) == KX_OK)
                return; /* on_done reports the close */
        }
    }
    report_close(t, "closed", false);
}

static void vt_kill(mcp_transport *base)
{
    http_t *t = (http_t *)base;
    t->closing = true;
    abort_all(t);
    report_close(t, "disconnected", false);
}

static void free_list(inmsg *m)
{
    while (m) {
        inmsg *n = m->next;
        free(m);
        m = n;
    }
}

static void vt_free(mcp_transport *base)
{
    http_t *t = (http_t *)base;
    t->closed = true;
    abort_all(t);
    if (t->flush_timer)
        kx_timer_cancel(t->flush_timer);
    free_list(t->inbox);
    free_list(t->outbox);
    free(t->session_id);
    free(t->post_url);
    free(t);
}

static const char *vt_describe(mcp_transport *base)
{
    return ((http_t *)base)->desc;
}

static const mcp_transport_vt http_vt = {vt_send, vt_version, vt_close,
                                         vt_kill, vt_free,    vt_describe};

kx_err mcp_http_open(kx_loop *loop, kx_curlm *curlm, const mcp_server_config *cfg,
                     const mcp_transport_cbs *cbs, void *arg, mcp_transport **out, char *why,
                     size_t whylen)
{
    http_t *t = calloc(1, sizeof *t);
    if (t == NULL) {
        snprintf(why, whylen, "out of memory");
        return KX_ERR_NOMEM;
    }
    t->base.vt = &http_vt;
    t->loop = loop;
    t->m = curlm;
    t->cfg = cfg;
    t->cbs = *cbs;
    t->arg = arg;
    t->inbox_tail = &t->inbox;
    t->outbox_tail = &t->outbox;
    const char *allow = getenv("KX_MCP_ALLOW_LOOPBACK_PORTS");
    snprintf(t->allow, sizeof t->allow, "%s", allow ? allow : "");
    snprintf(t->desc, sizeof t->desc, "%s %.100s",
             cfg->kind == MCP_T_HTTP ? "Streamable HTTP" : "legacy SSE", cfg->url);
    if (cfg->kind == MCP_T_HTTP) {
        if ((t->post_url = strdup(cfg->url)) == NULL) {
            free(t);
            snprintf(why, whylen, "out of memory");
            return KX_ERR_NOMEM;
        }
    } else {
        xfer *x = calloc(1, sizeof *x);
        kx_err err = x ? KX_OK : KX_ERR_NOMEM;
        if (x) {
            x->kind = X_STREAM;
            err = xfer_start(t, x, "GET", cfg->url);
        }
        if (err != KX_OK) {
            snprintf(why, whylen, "MCP server '%s': cannot open the SSE stream %s: %s", cfg->name,
                     cfg->url, kx_err_str(err));
            vt_free(&t->base);
            return err;
        }
    }
    *out = &t->base;
    return KX_OK;
}
