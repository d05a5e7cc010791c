/* preview.c — preview links: kx.sandbox.preview (mint a token for a port / check one) and the
 * relay that carries a gateway's HTTP connection to that port inside the sandbox.
 *
 * A sandbox has its own network namespace with loopback only: nothing on the host can connect
 * to its ports. The relay bridges that without giving the host a route in:
 *
 *   gateway ──TCP──▶ 127.0.0.1:<relay port> (this broker, one listener)
 *                    first line "<project_id> <port> <token>\n" (checked against the tokens
 *                    minted for the running sandbox; anything else: the connection is closed)
 *   broker ──CONNECT port──▶ the sandbox's init, which opens a socket to its own
 *                    127.0.0.1:<port> and sends it back (SCM_RIGHTS, sbproto.h)
 *   a relay thread copies bytes both ways until both sides ended, or KX_SANDBOX_PREVIEW_MAX_S,
 *   or KX_SANDBOX_PREVIEW_MAX_MB per connection; at most KX_SANDBOX_PREVIEW_CONNS connections at
 *   once (more are closed at accept).
 *
 * Tokens: 128 random bits per (sandbox, port), kept in the running sandbox (sandbox.h); they die
 * when it stops, so a link is valid while the sandbox runs. The loop thread accepts, reads the
 * first line (non-blocking, at most 256 bytes, 5 s) and asks init; only the copying runs on
 * threads. Ownership: a relay connection is owned by the loop until its socket is handed to
 * its thread, then by the thread. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "broker.h"
#include "fleet.h"
#include "kx/config.h"
#include "kx/log.h"
#include "kx/metrics.h"
#include "kx/pb.h"
#include "kx/uuid.h"
#include "lifecycle.h"
#include "sandbox.h"

#define PREAMBLE_MAX 256
#define PREAMBLE_MS 5000
#define COPY_BUF (64 * 1024)

struct sb_preview {
    int listen_fd;
    uint16_t port;
    atomic_int conns; /* relay connections open (loop + threads) */
};

typedef struct relay {
    sb_broker *b;
    int client;
    int up;
    kx_timer *timer;
    size_t got;
    char line[PREAMBLE_MAX + 1];
} relay;

static void count(const char *outcome)
{
    char labels[64];
    snprintf(labels, sizeof labels, "outcome=\"%s\"", outcome);
    kx_counter_add(kx_metrics_counter("kx_sandbox_preview_conns_total", labels,
                                      "Preview relay connections, by outcome"),
                   1);
}

/* ---- tokens ----------------------------------------------------------------------------- */

static bool same(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    unsigned char d = la != lb;
    for (size_t i = 0; i < la && i < lb; i++)
        d |= (unsigned char)(a[i] ^ b[i]);
    return d == 0;
}

/* The port's token in the running sandbox (made when missing); NULL when every slot is used. */
static const char *mint(sb_sandbox *s, int port)
{
    sb_preview_token *t = sb_sandbox_tokens(s);
    sb_preview_token *free_slot = NULL;
    for (int i = 0; i < SB_PREVIEW_TOKENS; i++) {
        if (t[i].port == port)
            return t[i].token;
        if (t[i].port == 0 && free_slot == NULL)
            free_slot = &t[i];
    }
    if (free_slot == NULL)
        return NULL;
    unsigned char r[16];
    if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r)
        return NULL;
    for (int i = 0; i < 16; i++)
        snprintf(free_slot->token + 2 * i, 3, "%02x", r[i]);
    free_slot->port = port;
    return free_slot->token;
}

static bool token_ok(sb_sandbox *s, int port, const char *token)
{
    const sb_preview_token *t = sb_sandbox_tokens(s);
    for (int i = 0; i < SB_PREVIEW_TOKENS; i++) {
        if (t[i].port == port)
            return same(t[i].token, token);
    }
    return false;
}

/* ---- kx.sandbox.preview ----------------------------------------------------------------- */

static void on_preview(natsMsg *msg, void *arg)
{
    sb_broker *b = arg;
    Kx__V1__SandboxPreviewReply rep = KX__V1__SANDBOX_PREVIEW_REPLY__INIT;
    Kx__V1__Error e = KX__V1__ERROR__INIT;
    char why[512] = "", url[160] = "", relay_addr[32] = "";
    kx_err err = KX_ERR_INVALID;
    const char *code = NULL; /* a code kx_err has no name for */
    sb_state st;
    memset(&st, 0, sizeof st);
    kx_bus_meta meta;
    memset(&meta, 0, sizeof meta);
    Kx__V1__SandboxPreviewRequest *rq =
        kx_pb_unpack(&kx__v1__sandbox_preview_request__descriptor, natsMsg_GetData(msg),
                     (size_t)natsMsg_GetDataLength(msg));
    if (b->draining) {
        err = KX_ERR_UNAVAILABLE;
        snprintf(why, sizeof why, "broker shutting down");
    } else if (kx_bus_meta_read(msg, &meta) != KX_OK || meta.deadline == KX_NO_DEADLINE) {
        snprintf(why, sizeof why, "the Kx-Deadline header (absolute unix ms) is required");
    } else if (rq == NULL) {
        snprintf(why, sizeof why, "request is not a valid kx.v1.SandboxPreviewRequest");
    } else if (!kx_uuid_valid(rq->project_id)) {
        snprintf(why, sizeof why, "project_id '%.64s' is not a valid UUID",
                 rq->project_id ? rq->project_id : "");
    } else if (rq->port < 1 || rq->port > 65535) {
        snprintf(why, sizeof why, "port %d is not valid: expected 1..65535", rq->port);
    } else if (sb_fleet_route(b, msg, rq->project_id)) { /* fleet.c: its owner answers */
        kx_pb_free(rq);
        return;
    } else if (kx_pb_str_empty(rq->token)) { /* mint */
        sb_sandbox *s = NULL;
        int64_t left = kx_deadline_remaining(meta.deadline) - SB_REPLY_MARGIN_MS;
        err = left > 0
            ? sb_sandbox_ensure(b, rq->project_id, meta.account, left, &s, why, sizeof why)
            : KX_ERR_TIMEOUT;
        if (err == KX_ERR_TIMEOUT && why[0] == '\0')
            snprintf(why, sizeof why, "the request's deadline passed");
        const char *tok = s != NULL ? mint(s, rq->port) : NULL;
        if (err == KX_OK && tok == NULL) {
            err = KX_ERR_CONFLICT;
            code = "resource_exhausted";
            snprintf(why, sizeof why, "at most %d ports may be exposed per sandbox",
                     SB_PREVIEW_TOKENS);
        }
        if (err == KX_OK && sb_state_load(&b->cfg, sb_sandbox_project(s), &st) != KX_OK) {
            err = KX_ERR_INTERNAL;
            snprintf(why, sizeof why, "the sandbox's record could not be read");
        }
        if (err == KX_OK) {
            snprintf(url, sizeof url, "/api/sandboxes/%s/preview/%d/", st.id, rq->port);
            rep.token = (char *)tok;
            kx_info("sandbox: project %s: port %d exposed", sb_sandbox_project(s), rq->port);
        }
    } else { /* check */
        sb_sandbox *s = sb_sandbox_find(b, rq->project_id);
        if (s == NULL) {
            err = KX_ERR_NOT_FOUND;
            snprintf(why, sizeof why, "the sandbox is not running: expose the port again");
        } else if (!token_ok(s, rq->port, rq->token)) {
            err = KX_ERR_CONFLICT;
            code = "permission_denied";
            snprintf(why, sizeof why, "the preview token is not valid for port %d", rq->port);
        } else if (sb_state_load(&b->cfg, sb_sandbox_project(s), &st) != KX_OK) {
            err = KX_ERR_INTERNAL;
            snprintf(why, sizeof why, "the sandbox's record could not be read");
        } else {
            err = KX_OK;
            snprintf(relay_addr, sizeof relay_addr, "127.0.0.1:%u", (unsigned)b->preview->port);
            snprintf(url, sizeof url, "/api/sandboxes/%s/preview/%d/", st.id, rq->port);
            rep.relay = relay_addr;
        }
    }
    if (err != KX_OK) {
        e.code = (char *)(code != NULL ? code : kx_err_code(err));
        e.message = why;
        rep.error = &e;
        rep.token = NULL;
    } else {
        rep.sandbox_id = st.id;
        rep.port = rq->port;
        rep.url = url;
    }
    if (natsMsg_GetReply(msg) != NULL && kx_bus_respond_pb(b->svc->bus, msg, &rep.base) != KX_OK)
        kx_warn("sandbox: could not answer a preview request");
    natsMsg_Destroy(msg);
    kx_pb_free(rq);
}

/* ---- the relay -------------------------------------------------------------------------- */

static void relay_free(relay *r, const char *outcome)
{
    if (r->timer != NULL)
        kx_timer_cancel(r->timer);
    if (r->client >= 0) {
        kx_loop_unwatch(r->b->svc->loop, r->client);
        close(r->client);
    }
    if (r->up >= 0)
        close(r->up);
    atomic_fetch_sub(&r->b->preview->conns, 1);
    count(outcome);
    free(r);
}

/* Writes all of buf (the socket has a send timeout). */
static bool write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        buf += n;
        len -= (size_t)n;
    }
    return true;
}

/* The copying thread: both sockets blocking with timeouts, poll until both directions ended. */
static void *relay_thread(void *arg)
{
    relay *r = arg;
    sb_broker *b = r->b;
    int64_t until = kx_mono_ms() + b->cfg.preview_s * 1000;
    int64_t budget = b->cfg.preview_bytes;
    const char *outcome = "done";
    /* The connect in the sandbox may still be in progress. */
    struct pollfd w = {.fd = r->up, .events = POLLOUT};
    int soerr = 0;
    socklen_t sl = sizeof soerr;
    if (poll(&w, 1, 10000) != 1 || getsockopt(r->up, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0 ||
        soerr != 0) {
        outcome = "refused";
        goto out;
    }
    for (int i = 0; i < 2; i++) {
        int fd = i == 0 ? r->client : r->up;
        (void)fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
        struct timeval tv = {.tv_sec = 10};
        (void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    }
    char *buf = malloc(COPY_BUF);
    if (buf == NULL)
        goto out;
    bool open_in[2] = {true, true}; /* client -> up, up -> client */
    while (open_in[0] || open_in[1]) {
        int64_t left = until - kx_mono_ms();
        if (left <= 0) {
            outcome = "time_limit";
            break;
        }
        struct pollfd p[2] = {{.fd = open_in[0] ? r->client : -1, .events = POLLIN},
                              {.fd = open_in[1] ? r->up : -1, .events = POLLIN}};
        int n = poll(p, 2, (int)(left > 60000 ? 60000 : left));
        if (n < 0 && errno != EINTR)
            break;
        bool failed = false;
        for (int i = 0; i < 2 && !failed; i++) {
            if (p[i].revents == 0)
                continue;
            int from = i == 0 ? r->client : r->up;
            int to = i == 0 ? r->up : r->client;
            ssize_t got = recv(from, buf, COPY_BUF, 0);
            if (got < 0 && errno == EINTR)
                continue;
            if (got <= 0) {
                open_in[i] = false;
                (void)shutdown(to, SHUT_WR);
                if (got < 0)
                    failed = true;
                continue;
            }
            budget -= got;
            if (budget < 0) {
                outcome = "byte_limit";
                failed = true;
            } else if (!write_all(to, buf, (size_t)got)) {
                failed = true;
            }
        }
        if (failed)
            break;
    }
    free(buf);
out:
    close(r->client);
    close(r->up);
    r->client = r->up = -1;
    atomic_fetch_sub(&b->preview->conns, 1);
    count(outcome);
    free(r);
    return NULL;
}

static void on_connected(int fd, const char *why, void *arg)
{
    relay *r = arg;
    if (fd < 0) {
        kx_info("sandbox: preview relay: %s", why ? why : "could not connect");
        relay_free(r, "refused"); /* the gateway sees EOF before any answer: 502 */
        return;
    }
    r->up = fd;
    pthread_t t;
    if (pthread_create(&t, NULL, relay_thread, r) != 0) {
        relay_free(r, "no_thread");
        return;
    }
    pthread_detach(t);
}

static void on_preamble_timeout(kx_loop *loop, void *arg)
{
    relay *r = arg;
    r->timer = NULL;
    relay_free(r, "slow_preamble");
}

/* Reads the first line (never beyond it: what follows is the HTTP request), then asks init. */
static void on_client(kx_loop *loop, int fd, uint32_t events, void *arg)
{
    relay *r = arg;
    char peek[PREAMBLE_MAX];
    ssize_t n = recv(fd, peek, sizeof peek, MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        relay_free(r, "closed");
        return;
    }
    char *nl = memchr(peek, '\n', (size_t)n);
    if (nl == NULL) {
        if (n >= PREAMBLE_MAX)
            relay_free(r, "bad_preamble");
        return; /* wait for the rest of the line */
    }
    size_t len = (size_t)(nl - peek) + 1;
    if (recv(fd, r->line, len, MSG_DONTWAIT) != (ssize_t)len) {
        relay_free(r, "closed");
        return;
    }
    r->line[len - 1] = '\0';
    kx_loop_unwatch(loop, fd);
    kx_timer_cancel(r->timer);
    r->timer = NULL;
    /* "<project> <port> <token>" */
    char *save = NULL;
    const char *project = strtok_r(r->line, " ", &save);
    const char *port_s = strtok_r(NULL, " ", &save);
    const char *token = strtok_r(NULL, " ", &save);
    int64_t port = 0;
    sb_sandbox *s = NULL;
    if (project == NULL || port_s == NULL || token == NULL || !kx_uuid_valid(project) ||
        kx_parse_int("port", port_s, 1, 65535, &port) != KX_OK ||
        (s = sb_sandbox_find(r->b, project)) == NULL || !token_ok(s, (int)port, token)) {
        kx_info("sandbox: preview relay: a connection without a valid token was closed");
        relay_free(r, "denied");
        return;
    }
    char why[256];
    if (sb_sandbox_connect(s, (int)port, on_connected, r, why, sizeof why) != KX_OK) {
        kx_info("sandbox: preview relay: %s", why);
        relay_free(r, "refused");
    }
}

static void on_accept(kx_loop *loop, int fd, uint32_t events, void *arg)
{
    sb_broker *b = arg;
    for (int i = 0; i < 16; i++) {
        int c = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (c < 0)
            return;
        if (b->draining || atomic_load(&b->preview->conns) >= b->cfg.preview_conns) {
            close(c);
            count("over_limit");
            continue;
        }
        relay *r = calloc(1, sizeof *r);
        if (r == NULL) {
            close(c);
            continue;
        }
        r->b = b;
        r->client = c;
        r->up = -1;
        atomic_fetch_add(&b->preview->conns, 1);
        r->timer = kx_loop_timer(loop, PREAMBLE_MS, on_preamble_timeout, r);
        if (r->timer == NULL || kx_loop_watch(loop, c, EPOLLIN, on_client, r) != KX_OK)
            relay_free(r, "internal");
    }
}

kx_err sb_preview_start(sb_broker *b)
{
    static struct sb_preview pv;
    pv.listen_fd = -1;
    b->preview = &pv;
    int64_t port = 0;
    if (kx_env_int("KX_SANDBOX_PREVIEW_PORT", 0, 0, 65535, &port) != KX_OK)
        return KX_ERR_INVALID;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof sa;
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(fd, 64) != 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &sl) != 0) {
        kx_error("sandbox: cannot listen for preview connections on 127.0.0.1:%lld: %s",
                 (long long)port, strerror(errno));
        if (fd >= 0)
            close(fd);
        return KX_ERR_UNAVAILABLE;
    }
    pv.listen_fd = fd;
    pv.port = ntohs(sa.sin_port);
    kx_err err = kx_loop_watch(b->svc->loop, fd, EPOLLIN, on_accept, b);
    if (err == KX_OK)
        err = sb_fleet_subscribe(b, KX_SUBJ_SANDBOX_PREVIEW, "sandbox-broker", on_preview, b,
                                 &b->preview_sub);
    if (err != KX_OK)
        kx_error("sandbox: cannot start preview links: %s", kx_err_str(err));
    else
        kx_info("sandbox: preview relay on 127.0.0.1:%u", (unsigned)pv.port);
    return err;
}
