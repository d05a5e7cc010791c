/* server.c — the demo model's HTTP server (see server.h): routing, request bodies, the chat
 * endpoint that plays the script (demo_body / demo_script / demo_conv / demo_turn) as a small state machine
 * across libmicrohttpd's calls of the handler, and the suspensions of `sleep`, `hang` and paced
 * stream chunks (ended by the waiter, waiter.h). */
#include "server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "demo_attempts.h"
#include "demo_body.h"
#include "demo_conv.h"
#include "demo_script.h"
#include "demo_turn.h"
#include "kx/buf.h"
#include "kx/log.h"
#include "kx/time.h"
#include "waiter.h"

#define MAX_BODY_BYTES (32u << 20) /* a larger request body is answered 413 */

struct demo_server {
    struct MHD_Daemon *daemon;
    demo_attempts *attempts;
    waiter *waiter;
    demo_server_opts opts;
    atomic_uint_fast64_t next_id;
    uint16_t port;
};

typedef struct chat_req chat_req;

/* What the waiter needs to resume a suspended connection (lives in the request or stream). */
typedef struct suspension {
    struct MHD_Connection *conn;
    atomic_int *woke;
} suspension;

/* Where a chat request is between MHD's calls of the handler. */
typedef enum chat_phase {
    PHASE_NEW = 0, /* not parsed yet */
    PHASE_SLEEP,   /* suspended for `sleep` */
    PHASE_READY,   /* slept (or no sleep): hang, fail or answer now */
    PHASE_HANG,    /* suspended for `hang` */
} chat_phase;

/* One request's state across MHD's calls of the handler (its *con_cls). */
typedef struct request {
    kx_buf body; /* body.max = MAX_BODY_BYTES */
    bool too_large;
    int64_t start_ms;
    struct MHD_Connection *conn;
    chat_req *chat; /* parsed once, freed at completion */
    chat_phase phase;
    int attempt;
    atomic_int woke; /* waiter_reason of the wait that resumed us */
    suspension susp; /* while suspended */
} request;

/* ---- suspending (sleep, hang, paced chunks) ---- */

static void resume_after_wait(void *arg, waiter_reason why);

/* The client socket of conn, or -1. */
static int conn_fd(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    return ci ? ci->connect_fd : -1;
}

/* Suspends conn until ms pass (< 0: until the client or the server goes away); *woke gets the
 * reason before the connection is resumed. If the wait cannot start, the connection is resumed
 * at once as if the server were stopping. */

static void suspend_for(demo_server *srv, struct MHD_Connection *conn, atomic_int *woke,
                        suspension *slot, int64_t ms)
{
    slot->conn = conn;
    slot->woke = woke;
    MHD_suspend_connection(conn);
    if (waiter_add(srv->waiter, conn_fd(conn), ms, resume_after_wait, slot) != 0) {
        atomic_store(woke, WAIT_STOPPED);
        MHD_resume_connection(conn);
    }
}

/* Waiter thread: record why, then hand the connection back to libmicrohttpd. */
static void resume_after_wait(void *arg, waiter_reason why)
{
    suspension *slot = arg;
    atomic_store(slot->woke, (int)why);
    MHD_resume_connection(slot->conn);
}

/* ---- responses ---- */

static enum MHD_Result send_body(struct MHD_Connection *conn, unsigned status, char *body,
                                 const char *content_type)
{
    if (body == NULL)
        return MHD_NO; /* out of memory: drop the connection */
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
    if (r == NULL) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    enum MHD_Result ret = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result send_error(struct MHD_Connection *conn, unsigned status, const char *code,
                                  const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static enum MHD_Result send_error(struct MHD_Connection *conn, unsigned status, const char *code,
                                  const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return send_body(conn, status, demo_render_error((int)status, msg, code), "application/json");
}

/* The SSE body of a streamed answer: the prepared chunks, handed to MHD one per call; with
 * opts.chunk_ms the connection is suspended between two chunks (a paced, "slow" stream). */
typedef struct stream_body {
    char **chunks;
    size_t n, idx, off;
    demo_server *srv;
    struct MHD_Connection *conn;
    bool paused; /* suspended before chunk idx; woke says why it resumed */
    atomic_int woke;
    suspension susp;
} stream_body;

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    stream_body *s = cls;
    if (s->idx == s->n)
        return MHD_CONTENT_READER_END_OF_STREAM;
    bool paced = s->srv->opts.chunk_ms > 0;
    if (paced && s->idx > 0 && s->off == 0) {
        if (!s->paused) {
            s->paused = true;
            suspend_for(s->srv, s->conn, &s->woke, &s->susp, s->srv->opts.chunk_ms);
            return 0;
        }
        s->paused = false;
        if (atomic_load(&s->woke) != WAIT_ELAPSED) /* the client left, or we stop */
            return MHD_CONTENT_READER_END_WITH_ERROR;
    }
    /* Unpaced, as many chunks as fit go out in one call: one write (and one HTTP chunk) for
     * what used to take one per SSE event; the bytes of the body are the same. */
    size_t n = 0;
    do {
        const char *c = s->chunks[s->idx];
        size_t left = strlen(c + s->off);
        size_t take = left < max - n ? left : max - n;
        memcpy(buf + n, c + s->off, take);
        n += take;
        s->off += take;
        if (take < left)
            break;
        s->idx++;
        s->off = 0;
    } while (!paced && s->idx < s->n && n < max);
    return (ssize_t)n;
}

static void stream_free(void *cls)
{
    stream_body *s = cls;
    demo_chunks_free(s->chunks, s->n);
    free(s);
}

static enum MHD_Result send_stream(demo_server *srv, struct MHD_Connection *conn, char **chunks,
                                   size_t n)
{
    stream_body *s = calloc(1, sizeof *s);
    if (s == NULL) {
        demo_chunks_free(chunks, n);
        return MHD_NO;
    }
    s->chunks = chunks;
    s->n = n;
    s->srv = srv;
    s->conn = conn;
    struct MHD_Response *r =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, stream_read, s, stream_free);
    if (r == NULL) {
        stream_free(s);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    enum MHD_Result ret = MHD_queue_response(conn, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    return ret;
}

/* ---- POST /v1/chat/completions ---- */

static const char *step_label(const demo_step *step, char *buf, size_t len)
{
    if (step == NULL)
        return "final answer";
    if (step->is_error)
        return "say (directive error)";
    if (step->kind == DEMO_STEP_SAY)
        return "say";
    snprintf(buf, len, "%s %s", step->kind == DEMO_STEP_CALL ? "call" : "xml", step->tool);
    return buf;
}

struct chat_req {
    demo_body body;
    const char *model; /* body.model, or DEMO_MODEL_NAME */
    demo_conv conv;
    demo_script script;
};

/* Validates the body into c. On a problem, writes it into why and returns false. */
static bool chat_parse(const request *rq, chat_req *c, char *why, size_t whylen)
{
    if (demo_body_read(rq->body.s, rq->body.len, &c->body, why, whylen) != 0)
        return false;
    c->model = c->body.model ? c->body.model : DEMO_MODEL_NAME;
    if (demo_conv_read(c->body.messages, &c->conv, why, whylen) != 0)
        return false;
    if (demo_script_parse(c->conv.script, &c->script) != 0) {
        snprintf(why, whylen, "out of memory parsing the script");
        return false;
    }
    return true;
}

static void chat_free(chat_req *c)
{
    if (c == NULL)
        return;
    demo_script_free(&c->script);
    demo_conv_free(&c->conv);
    demo_body_free(&c->body);
    free(c);
}

/* The step's answer: a scripted failure, or the turn (streamed or not). */
static enum MHD_Result chat_answer(demo_server *srv, struct MHD_Connection *conn, request *rq)
{
    chat_req *c = rq->chat;
    size_t idx = c->conv.step_index;
    const demo_step *step = demo_script_step(&c->script, idx);
    const demo_mods *mods = demo_script_mods(&c->script, idx);
    char label_buf[128];
    const char *label = step_label(step, label_buf, sizeof label_buf);
    if (mods->fail_status != 0 && rq->attempt <= mods->fail_count) {
        kx_info("POST /v1/chat/completions %d: step %zu (%s) scripted failure, attempt %d of %d",
                mods->fail_status, idx, label, rq->attempt, mods->fail_count);
        return send_error(conn, (unsigned)mods->fail_status, "demo_scripted_failure",
                          "demo model: scripted failure of step %zu, attempt %d of %d "
                          "(`fail %d %d`)",
                          idx, rq->attempt, mods->fail_count, mods->fail_status, mods->fail_count);
    }
    uint64_t key = demo_conv_key(&c->conv, idx);
    demo_turn turn;
    char id[64];
    snprintf(id, sizeof id, "chatcmpl-%016llx%llx", (unsigned long long)key,
             (unsigned long long)atomic_fetch_add(&srv->next_id, 1));
    demo_reply_meta meta = {.id = id,
                            .model = c->model,
                            .created = (int64_t)time(NULL),
                            .prompt_chars = c->conv.prompt_chars};
    enum MHD_Result ret;
    if (demo_turn_build(step, idx, &c->conv, &turn) != 0)
        return send_error(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal", "out of memory");
    if (c->body.stream) {
        char **chunks = NULL;
        size_t n = 0;
        if (demo_render_stream(&turn, &meta, &chunks, &n) != 0)
            ret = send_error(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal", "out of memory");
        else
            ret = send_stream(srv, conn, chunks, n);
    } else {
        ret =
            send_body(conn, MHD_HTTP_OK, demo_render_completion(&turn, &meta), "application/json");
    }
    kx_info("POST /v1/chat/completions 200 %s: step %zu (%s), finish_reason %s, %lld ms",
            c->body.stream ? "stream" : "non-stream", idx, label,
            turn.finish_reason ? turn.finish_reason : "-",
            (long long)(kx_mono_ms() - rq->start_ms));
    demo_turn_free(&turn);
    return ret;
}

/* Called once the body is read, and again after each suspension ends: parse, then `sleep`
 * (suspended), then `hang` (suspended until the client or the server goes away), then the
 * failure or the answer. */
static enum MHD_Result chat(demo_server *srv, struct MHD_Connection *conn, request *rq)
{
    if (rq->phase == PHASE_NEW) {
        char why[512];
        rq->chat = calloc(1, sizeof *rq->chat);
        if (rq->chat == NULL)
            return MHD_NO;
        if (!chat_parse(rq, rq->chat, why, sizeof why)) {
            kx_info("POST /v1/chat/completions 400: %s", why);
            chat_free(rq->chat);
            rq->chat = NULL;
            return send_error(conn, MHD_HTTP_BAD_REQUEST, "invalid_request", "%s", why);
        }
        kx_buf_free(&rq->body); /* parsed: a request held for `sleep` keeps only what it needs */
    }
    chat_req *c = rq->chat;
    size_t idx = c->conv.step_index;
    const demo_step *step = demo_script_step(&c->script, idx);
    const demo_mods *mods = demo_script_mods(&c->script, idx);
    char label_buf[128];
    const char *label = step_label(step, label_buf, sizeof label_buf);

    switch (rq->phase) {
    case PHASE_NEW:
        if (mods->fail_status != 0 || (mods->hang && mods->hang_count > 0))
            rq->attempt = demo_attempts_next(srv->attempts, demo_conv_key(&c->conv, idx));
        if (mods->sleep_ms > 0) {
            rq->phase = PHASE_SLEEP;
            suspend_for(srv, conn, &rq->woke, &rq->susp, mods->sleep_ms);
            return MHD_YES;
        }
        rq->phase = PHASE_READY;
        break;
    case PHASE_SLEEP:
        if (atomic_load(&rq->woke) != WAIT_ELAPSED) {
            kx_info("POST /v1/chat/completions step %zu (%s): client left during sleep %lld ms",
                    idx, label, (long long)mods->sleep_ms);
            return MHD_NO;
        }
        rq->phase = PHASE_READY;
        break;
    case PHASE_HANG:
        kx_info("POST /v1/chat/completions step %zu (%s): `hang` held the request %lld ms, "
                "until the client or the server went away",
                idx, label, (long long)(kx_mono_ms() - rq->start_ms));
        return MHD_NO;
    case PHASE_READY: break;
    }
    if (mods->hang && (mods->hang_count == 0 || rq->attempt <= mods->hang_count)) {
        rq->phase = PHASE_HANG;
        suspend_for(srv, conn, &rq->woke, &rq->susp, -1);
        return MHD_YES;
    }
    return chat_answer(srv, conn, rq);
}

/* ---- routing ---- */

static enum MHD_Result route(demo_server *srv, struct MHD_Connection *conn, const char *url,
                             const char *method, request *rq)
{
    bool get = strcmp(method, "GET") == 0, post = strcmp(method, "POST") == 0;
    if (strcmp(url, "/v1/chat/completions") == 0) {
        if (!post)
            goto not_allowed;
        if (rq->too_large) {
            kx_info("POST %s 413: body over %u bytes", url, MAX_BODY_BYTES);
            return send_error(conn, MHD_HTTP_CONTENT_TOO_LARGE, "request_too_large",
                              "the request body is larger than %u bytes", MAX_BODY_BYTES);
        }
        return chat(srv, conn, rq);
    }
    if (strcmp(url, "/v1/models") == 0) {
        if (!get)
            goto not_allowed;
        kx_info("GET %s 200", url);
        return send_body(conn, MHD_HTTP_OK,
                         strdup("{\"object\":\"list\",\"data\":[{\"id\":\"" DEMO_MODEL_NAME
                                "\",\"object\":\"model\",\"created\":0,"
                                "\"owned_by\":\"kortix\"}]}"),
                         "application/json");
    }
    if (strcmp(url, "/healthz") == 0) {
        if (!get)
            goto not_allowed;
        kx_info("GET %s 200", url);
        return send_body(conn, MHD_HTTP_OK, strdup("ok\n"), "text/plain");
    }
    kx_info("%s %s 404", method, url);
    return send_error(conn, MHD_HTTP_NOT_FOUND, "not_found",
                      "no route %s %s (try POST /v1/chat/completions, GET /v1/models, "
                      "GET /healthz)",
                      method, url);
not_allowed:
    kx_info("%s %s 405", method, url);
    return send_error(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "method_not_allowed",
                      "%s is not allowed on %s", method, url);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    demo_server *srv = cls;
    request *rq = *con_cls;
    if (rq == NULL) { /* first call: headers only */
        rq = calloc(1, sizeof *rq);
        if (rq == NULL)
            return MHD_NO;
        rq->start_ms = kx_mono_ms();
        rq->body.max = MAX_BODY_BYTES;
        rq->conn = conn;
        *con_cls = rq;
        return MHD_YES;
    }
    if (*upload_data_size > 0) { /* a piece of the body */
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (rq->too_large)
            return MHD_YES;
        kx_err err = kx_buf_add(&rq->body, upload_data, n);
        if (err == KX_ERR_INVALID) /* over MAX_BODY_BYTES: read on, answer 413 */
            rq->too_large = true;
        else if (err != KX_OK)
            return MHD_NO;
        return MHD_YES;
    }
    return route(srv, conn, url, method, rq);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    request *rq = *con_cls;
    if (rq != NULL) {
        chat_free(rq->chat);
        kx_buf_free(&rq->body);
        free(rq);
        *con_cls = NULL;
    }
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n > 0 && msg[n - 1] == '\n')
        msg[--n] = '\0';
    /* Returning MHD_NO after a hang or an interrupted sleep is how we drop a connection; MHD
     * calls that an "internal error". The request's own log line already says what happened. */
    if (strstr(msg, "Application reported internal error") != NULL)
        kx_debug("libmicrohttpd: %s", msg);
    else
        kx_warn("libmicrohttpd: %s", msg);
}

/* ---- lifecycle ---- */

demo_server *demo_server_start(const char *bind_addr, uint16_t port, const demo_server_opts *opts)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    /* epoll, no thread per connection: waits are suspensions (waiter.h) */
    unsigned flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, bind_addr, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons(port);
    } else if (inet_pton(AF_INET6, bind_addr, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons(port);
        flags |= MHD_USE_IPv6;
    } else {
        kx_error("demo-model: KX_BIND_ADDR=\"%s\" is not an IPv4 or IPv6 address", bind_addr);
        return NULL;
    }

    demo_server *srv = calloc(1, sizeof *srv);
    if (srv == NULL)
        return NULL;
    srv->opts = *opts;
    if (srv->opts.threads == 0)
        srv->opts.threads = 1;
    srv->attempts = demo_attempts_new();
    srv->waiter = srv->attempts ? waiter_start() : NULL;
    if (srv->waiter == NULL) {
        kx_error("demo-model: cannot set up the server: %s", strerror(errno));
        demo_attempts_free(srv->attempts);
        free(srv);
        return NULL;
    }
    /* MHD_OPTION_THREAD_POOL_SIZE only when there is a pool (MHD warns about a size of 0) */
    struct MHD_OptionItem pool[] = {
        {srv->opts.threads > 1 ? MHD_OPTION_THREAD_POOL_SIZE : MHD_OPTION_END,
         (intptr_t)srv->opts.threads, NULL},
        {MHD_OPTION_END, 0, NULL},
    };
    srv->daemon = MHD_start_daemon(flags, port, NULL, NULL, on_request, srv,
                                   MHD_OPTION_EXTERNAL_LOGGER, mhd_log, srv, MHD_OPTION_SOCK_ADDR,
                                   (struct sockaddr *)&ss, MHD_OPTION_NOTIFY_COMPLETED,
                                   on_completed, srv, MHD_OPTION_CONNECTION_LIMIT,
                                   srv->opts.max_connections, MHD_OPTION_LISTEN_BACKLOG_SIZE,
                                   (unsigned)4096, MHD_OPTION_ARRAY, pool, MHD_OPTION_END);
    if (srv->daemon == NULL) {
        kx_error("demo-model: cannot listen on %s:%u (is the port in use?)", bind_addr,
                 (unsigned)port);
        waiter_stop(srv->waiter);
        demo_attempts_free(srv->attempts);
        free(srv);
        return NULL;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(srv->daemon, MHD_DAEMON_INFO_BIND_PORT);
    srv->port = di ? di->port : port;
    return srv;
}

uint16_t demo_server_port(const demo_server *s)
{
    return s->port;
}

void demo_server_stop(demo_server *s)
{
    if (s == NULL)
        return;
    /* No new connections; every suspended one is resumed (its wait ends WAIT_STOPPED) before the
     * daemon stops, as libmicrohttpd requires. */
    MHD_socket lfd = MHD_quiesce_daemon(s->daemon);
    waiter_stop(s->waiter);
    MHD_stop_daemon(s->daemon);
    if (lfd != MHD_INVALID_SOCKET)
        close(lfd);
    demo_attempts_free(s->attempts);
    free(s);
}
