/* tests/harness/gateway_alone.c — the gateway alone and raw-socket HTTP (see gateway_alone.h). */
#include "gateway_alone.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "kx/buf.h"
#include "kx/sse.h"
#include "kx/time.h"

kx_err kx_th_gw_start(kx_th_gw *g, const char *prefix, const char *const *env_extra)
{
    kx_th_stack *s = &g->s;
    s->dir = kx_th_tmpdir(prefix);
    if (s->dir == NULL || kx_th_nats_start(s->dir, &s->nats) != KX_OK ||
        kx_th_pg_start(s->dir, &s->pg) != KX_OK)
        return KX_ERR_UNAVAILABLE;
    s->http_port = kx_th_free_port();
    do
        g->health_port = kx_th_free_port();
    while (g->health_port == s->http_port);
    snprintf(s->base_url, sizeof s->base_url, "http://127.0.0.1:%u", (unsigned)s->http_port);
    snprintf(s->secret, sizeof s->secret, "gateway-edge-test-secret");

    char e_port[64], e_hport[64], e_nats[128], e_db[320], e_secret[128], e_mig[600];
    snprintf(e_port, sizeof e_port, "KX_HTTP_PORT=%u", (unsigned)s->http_port);
    snprintf(e_hport, sizeof e_hport, "KX_HEALTH_PORT=%u", (unsigned)g->health_port);
    snprintf(e_nats, sizeof e_nats, "KX_NATS_URL=%s", s->nats.url);
    snprintf(e_db, sizeof e_db, "KX_DATABASE_URL=%s", s->pg.url);
    snprintf(e_secret, sizeof e_secret, "KX_JWT_SECRET=%s", s->secret);
    snprintf(e_mig, sizeof e_mig, "KX_MIGRATIONS_DIR=%s/deploy/migrations", KX_SOURCE_DIR);
    const char *base[] = {e_port,
                          e_hport,
                          e_nats,
                          e_db,
                          e_secret,
                          e_mig,
                          "KX_SSE_PING_S=1",
                          "KX_LOG_LEVEL=debug",
                          "KX_DRAIN_TIMEOUT_MS=3000"};
    size_t nb = sizeof base / sizeof base[0], ne = 0;
    while (env_extra != NULL && env_extra[ne] != NULL)
        ne++;
    const char **env = calloc(nb + ne + 1, sizeof *env);
    if (env == NULL)
        return KX_ERR_NOMEM;
    /* A default that env_extra sets again is left out: with both in the environment the
     * gateway's getenv would see the first, the default (the benchmark's KX_LOG_LEVEL=warn and
     * KX_SSE_PING_S=15 were ignored that way: it ran with debug logs and 1 s pings). */
    size_t k = 0;
    for (size_t i = 0; i < nb; i++) {
        size_t keylen = (size_t)(strchr(base[i], '=') - base[i]) + 1; /* with the '=' */
        bool again = false;
        for (size_t j = 0; j < ne && !again; j++)
            again = strncmp(env_extra[j], base[i], keylen) == 0;
        if (!again)
            env[k++] = base[i];
    }
    for (size_t i = 0; i < ne; i++)
        env[k++] = env_extra[i];
    const char *bin = getenv("KX_TEST_GATEWAY_BIN");
    char path[512];
    snprintf(path, sizeof path, "%s", bin ? bin : KX_BUILD_DIR "/services/gateway/gateway");
    const char *argv[] = {path, NULL};
    snprintf(g->log, sizeof g->log, "%s/gateway.log", s->dir);
    kx_err err = kx_th_spawn(argv, env, g->log, &g->pid);
    free(env);
    if (err != KX_OK)
        return err;
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%u/readyz", (unsigned)g->health_port);
    if (kx_th_wait_http(url, 30000) != KX_OK)
        return KX_ERR_TIMEOUT;
    /* Ready implies listening; checked anyway, so a regression shows as such. */
    for (int i = 0; i < 600; i++) {
        int fd = kx_th_raw_connect(s->http_port, NULL);
        if (fd >= 0) {
            close(fd);
            return KX_OK;
        }
        usleep(50 * 1000);
    }
    return KX_ERR_TIMEOUT;
}

void kx_th_gw_stop(kx_th_gw *g, bool failed)
{
    if (g->pid > 0)
        kx_th_kill(g->pid);
    g->pid = 0;
    if (failed && g->log[0] != '\0') {
        char cmd[700];
        snprintf(cmd, sizeof cmd, "tail -n 60 %s >&2", g->log);
        if (system(cmd) != 0)
            fprintf(stderr, "(cannot print %s)\n", g->log);
    }
    kx_th_nats_stop(&g->s.nats);
    kx_th_pg_stop(&g->s.pg);
    if (g->s.dir != NULL) {
        if (!failed)
            kx_th_rmrf(g->s.dir);
        else
            fprintf(stderr, "kept %s\n", g->s.dir);
        free(g->s.dir);
        g->s.dir = NULL;
    }
}

int kx_th_raw_connect(uint16_t port, const char *src)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (src != NULL) {
        struct sockaddr_in a = {.sin_family = AF_INET};
        if (inet_pton(AF_INET, src, &a.sin_addr) != 1 ||
            bind(fd, (struct sockaddr *)&a, sizeof a) != 0) {
            close(fd);
            return -1;
        }
    }
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

int kx_th_raw(uint16_t port, const char *src, const char *bytes, size_t n, int64_t timeout_ms,
              char **out)
{
    if (out != NULL)
        *out = NULL;
    int fd = kx_th_raw_connect(port, src);
    if (fd < 0)
        return 0;
    int64_t until = kx_mono_ms() + timeout_ms;
    kx_buf in = KX_BUF_INIT;
    size_t sent = 0;
    bool peer_closed = false;
    while (!peer_closed && kx_mono_ms() < until) {
        struct pollfd p = {.fd = fd, .events = POLLIN | (sent < n ? POLLOUT : 0)};
        int64_t left = until - kx_mono_ms();
        if (poll(&p, 1, (int)(left > 0 ? left : 0)) <= 0)
            continue;
        if ((p.revents & POLLOUT) && sent < n) {
            ssize_t w = send(fd, bytes + sent, n - sent, MSG_NOSIGNAL);
            if (w > 0)
                sent += (size_t)w;
            else if (w < 0 && errno != EAGAIN && errno != EINTR)
                sent = n; /* the peer stopped reading: read what it answered */
        }
        if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
            char chunk[16384];
            ssize_t r = recv(fd, chunk, sizeof chunk, 0);
            if (r > 0)
                kx_buf_add(&in, chunk, (size_t)r);
            else if (r == 0 || (errno != EAGAIN && errno != EINTR))
                peer_closed = true;
        }
    }
    close(fd);
    int status = 0;
    if (in.s != NULL && strncmp(in.s, "HTTP/1.", 7) == 0 && in.len > 12)
        status = (int)strtol(in.s + 9, NULL, 10);
    if (out != NULL) {
        *out = in.s != NULL ? in.s : strdup("");
        in.s = NULL;
    }
    kx_buf_free(&in);
    return status;
}

const char *kx_th_raw_body(const char *answer)
{
    const char *p = answer != NULL ? strstr(answer, "\r\n\r\n") : NULL;
    return p != NULL ? p + 4 : "";
}

/* ---- SSE with ids ---- */

int kx_th_events_open(uint16_t port, const char *path, const char *token,
                      const char *last_event_id, int rcvbuf)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (rcvbuf > 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    char req[2048];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n%s%s%s%s%s%s\r\n",
                     path, token ? "Authorization: Bearer " : "", token ? token : "",
                     token ? "\r\n" : "", last_event_id ? "Last-Event-ID: " : "",
                     last_event_id ? last_event_id : "", last_event_id ? "\r\n" : "");
    if (n <= 0 || (size_t)n >= sizeof req || send(fd, req, (size_t)n, MSG_NOSIGNAL) != n) {
        close(fd);
        return -1;
    }
    return fd;
}

typedef struct collect_state {
    kx_th_events *out;
    size_t got;
    size_t max; /* 0: no limit; else events after the max-th are dropped, as by a client that
                 * goes away right after it (whatever else it had received) */
} collect_state;

static void on_event_cb(const char *event, const char *data, size_t len, const char *id, void *arg)
{
    collect_state *cs = arg;
    kx_th_events *e = cs->out;
    if (cs->max > 0 && cs->got >= cs->max)
        return;
    char **d = realloc(e->data, (e->n + 1) * sizeof *d);
    unsigned long long *ids = realloc(e->id, (e->n + 1) * sizeof *ids);
    if (d != NULL)
        e->data = d;
    if (ids != NULL)
        e->id = ids;
    char **texts =
        d != NULL && ids != NULL ? realloc(e->id_text, (e->n + 1) * sizeof *texts) : NULL;
    if (texts == NULL)
        return;
    e->id_text = texts;
    e->data[e->n] = strndup(data, len);
    e->id[e->n] = id != NULL && id[0] != '\0' ? strtoull(id, NULL, 10) : 0;
    e->id_text[e->n] = strdup(id != NULL ? id : "");
    e->n++;
    cs->got++;
}

void kx_th_events_collect(int fd, size_t max_events, int64_t timeout_ms, kx_th_events *out)
{
    collect_state cs = {out, 0, max_events};
    kx_sse_parser p;
    kx_sse_init(&p, on_event_cb, &cs);
    kx_buf head = KX_BUF_INIT;
    bool in_body = false;
    int64_t until = kx_mono_ms() + timeout_ms;
    kx_buf body = KX_BUF_INIT;
    while (kx_mono_ms() < until && (max_events == 0 || cs.got < max_events)) {
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        int64_t left = until - kx_mono_ms();
        if (poll(&pf, 1, (int)(left > 0 ? left : 0)) <= 0)
            continue;
        char chunk[16384];
        ssize_t r = recv(fd, chunk, sizeof chunk, 0);
        if (r <= 0) {
            out->ended = true;
            break;
        }
        const char *data = chunk;
        size_t n = (size_t)r;
        if (!in_body) {
            kx_buf_add(&head, chunk, n);
            char *eoh = head.s != NULL ? strstr(head.s, "\r\n\r\n") : NULL;
            if (eoh == NULL)
                continue;
            in_body = true;
            size_t hl = (size_t)(eoh - head.s) + 4;
            if (strncmp(head.s, "HTTP/1.", 7) == 0)
                out->status = (int)strtol(head.s + 9, NULL, 10);
            free(out->head);
            out->head = strndup(head.s, hl);
            data = head.s + hl;
            n = head.len - hl;
            if (out->status != 200) {
                kx_buf_add(&body, data, n);
                continue;
            }
            kx_sse_feed(&p, data, n);
            continue;
        }
        if (out->status != 200)
            kx_buf_add(&body, data, n);
        else
            kx_sse_feed(&p, data, n);
    }
    if (out->status != 200 && body.s != NULL) {
        free(out->body);
        out->body = body.s;
        body.s = NULL;
    }
    kx_buf_free(&body);
    kx_buf_free(&head);
    kx_sse_free(&p);
    close(fd);
}

void kx_th_events_free(kx_th_events *e)
{
    for (size_t i = 0; i < e->n; i++) {
        free(e->data[i]);
        if (e->id_text != NULL)
            free(e->id_text[i]);
    }
    free(e->data);
    free(e->id);
    free(e->id_text);
    free(e->head);
    free(e->body);
    memset(e, 0, sizeof *e);
}
