/* tests/harness/pgproxy.c — the cutting PostgreSQL proxy (see pgproxy.h). One thread polls the
 * listening socket and every (client, server) pair. Client bytes are forwarded as they come
 * and also fed to a small frontend-protocol reader (startup packet, then typed messages) that
 * spots the armed statement name in a Bind ('B': portal, statement) or a Query ('Q'). After
 * such a message the next server bytes of that connection are the answer: they are dropped and
 * the pair is closed. The server flushes its answer only at Sync, after the implicit commit,
 * so a cut there is "committed, answer lost". */
#include "pgproxy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_CONNS 64
#define IO_BUF 65536

typedef struct conn {
    int cfd, sfd;         /* client side, server side; -1 when unused */
    bool started;         /* the startup packet was read */
    bool cut_next_answer; /* the armed statement went through: drop what comes back */
    unsigned char *pbuf;  /* unparsed client bytes */
    size_t plen, pcap;
} conn;

struct kx_th_pgproxy {
    int lfd;
    uint16_t port, upstream;
    pthread_t thread;
    atomic_bool stop;
    pthread_mutex_t mu;
    char armed[128]; /* "" = disarmed */
    atomic_int cuts;
    conn conns[MAX_CONNS];
};

static void conn_close(conn *c)
{
    if (c->cfd >= 0)
        close(c->cfd);
    if (c->sfd >= 0)
        close(c->sfd);
    c->cfd = c->sfd = -1;
    free(c->pbuf);
    c->pbuf = NULL;
    c->plen = c->pcap = 0;
    c->started = c->cut_next_answer = false;
}

static uint32_t be32(const unsigned char *b)
{
    return ((uint32_t)b[0] << 24) | ((uint32_t)b[1] << 16) | ((uint32_t)b[2] << 8) | b[3];
}

/* Does this complete client message name the armed statement? */
static bool names_armed(kx_th_pgproxy *p, unsigned char type, const unsigned char *body,
                        size_t len)
{
    pthread_mutex_lock(&p->mu);
    bool hit = false;
    size_t alen = strlen(p->armed);
    if (alen > 0) {
        if (type == 'B') {
            const unsigned char *portal_end = memchr(body, '\0', len);
            if (portal_end != NULL) {
                const char *stmt = (const char *)portal_end + 1;
                size_t rest = len - (size_t)(portal_end + 1 - body);
                hit = rest > alen && memcmp(stmt, p->armed, alen) == 0 && stmt[alen] == '\0';
            }
        } else if (type == 'Q') {
            hit = memmem(body, len, p->armed, alen) != NULL;
        }
        if (hit)
            p->armed[0] = '\0';
    }
    pthread_mutex_unlock(&p->mu);
    return hit;
}

/* Feeds client bytes to the protocol reader. */
static void parse_client(kx_th_pgproxy *p, conn *c, const unsigned char *data, size_t n)
{
    if (c->plen + n > c->pcap) {
        size_t cap = c->pcap ? c->pcap : 4096;
        while (cap < c->plen + n)
            cap *= 2;
        unsigned char *nb = realloc(c->pbuf, cap);
        if (nb == NULL)
            return;
        c->pbuf = nb;
        c->pcap = cap;
    }
    memcpy(c->pbuf + c->plen, data, n);
    c->plen += n;
    size_t off = 0;
    for (;;) {
        size_t avail = c->plen - off;
        if (!c->started) {
            if (avail < 8)
                break;
            uint32_t len = be32(c->pbuf + off);
            if (avail < len)
                break;
            off += len;
            c->started = true;
            continue;
        }
        if (avail < 5)
            break;
        uint32_t len = be32(c->pbuf + off + 1);
        if (avail < 1 + (size_t)len)
            break;
        if (names_armed(p, c->pbuf[off], c->pbuf + off + 5, len - 4))
            c->cut_next_answer = true;
        off += 1 + len;
    }
    memmove(c->pbuf, c->pbuf + off, c->plen - off);
    c->plen -= off;
}

static bool write_all(int fd, const unsigned char *b, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, b, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return false;
        b += w;
        n -= (size_t)w;
    }
    return true;
}

static void accept_one(kx_th_pgproxy *p)
{
    int cfd = accept(p->lfd, NULL, NULL);
    if (cfd < 0)
        return;
    int sfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(p->upstream)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (sfd < 0 || connect(sfd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(cfd);
        if (sfd >= 0)
            close(sfd);
        return;
    }
    for (int i = 0; i < MAX_CONNS; i++) {
        if (p->conns[i].cfd < 0) {
            p->conns[i].cfd = cfd;
            p->conns[i].sfd = sfd;
            return;
        }
    }
    close(cfd);
    close(sfd);
}

static void *proxy_main(void *arg)
{
    kx_th_pgproxy *p = arg;
    unsigned char *buf = malloc(IO_BUF);
    while (buf != NULL && !atomic_load(&p->stop)) {
        struct pollfd fds[1 + 2 * MAX_CONNS];
        int idx[1 + 2 * MAX_CONNS];
        nfds_t n = 0;
        fds[n++] = (struct pollfd){.fd = p->lfd, .events = POLLIN};
        for (int i = 0; i < MAX_CONNS; i++) {
            if (p->conns[i].cfd < 0)
                continue;
            idx[n] = i;
            fds[n++] = (struct pollfd){.fd = p->conns[i].cfd, .events = POLLIN};
            idx[n] = i;
            fds[n++] = (struct pollfd){.fd = p->conns[i].sfd, .events = POLLIN};
        }
        if (poll(fds, n, 100) <= 0)
            continue;
        if (fds[0].revents & POLLIN)
            accept_one(p);
        for (nfds_t k = 1; k < n; k++) {
            if (fds[k].revents == 0)
                continue;
            conn *c = &p->conns[idx[k]];
            if (c->cfd < 0)
                continue;
            bool from_client = fds[k].fd == c->cfd;
            if (fds[k].fd != c->cfd && fds[k].fd != c->sfd)
                continue;
            ssize_t r = read(fds[k].fd, buf, IO_BUF);
            if (r <= 0) {
                conn_close(c);
                continue;
            }
            if (from_client) {
                parse_client(p, c, buf, (size_t)r);
                if (!write_all(c->sfd, buf, (size_t)r))
                    conn_close(c);
            } else if (c->cut_next_answer) {
                atomic_fetch_add(&p->cuts, 1);
                conn_close(c);
            } else if (!write_all(c->cfd, buf, (size_t)r)) {
                conn_close(c);
            }
        }
    }
    free(buf);
    return NULL;
}

kx_err kx_th_pgproxy_start(uint16_t upstream_port, kx_th_pgproxy **out)
{
    *out = NULL;
    kx_th_pgproxy *p = calloc(1, sizeof *p);
    if (p == NULL)
        return KX_ERR_NOMEM;
    for (int i = 0; i < MAX_CONNS; i++)
        p->conns[i].cfd = p->conns[i].sfd = -1;
    p->upstream = upstream_port;
    pthread_mutex_init(&p->mu, NULL);
    p->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof sa;
    if (p->lfd < 0 || bind(p->lfd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
        listen(p->lfd, 64) != 0 || getsockname(p->lfd, (struct sockaddr *)&sa, &len) != 0) {
        fprintf(stderr, "[pgproxy] cannot listen: %s\n", strerror(errno));
        if (p->lfd >= 0)
            close(p->lfd);
        free(p);
        return KX_ERR_IO;
    }
    p->port = ntohs(sa.sin_port);
    if (pthread_create(&p->thread, NULL, proxy_main, p) != 0) {
        close(p->lfd);
        free(p);
        return KX_ERR_INTERNAL;
    }
    *out = p;
    return KX_OK;
}

void kx_th_pgproxy_stop(kx_th_pgproxy *p)
{
    if (p == NULL)
        return;
    atomic_store(&p->stop, true);
    pthread_join(p->thread, NULL);
    for (int i = 0; i < MAX_CONNS; i++)
        conn_close(&p->conns[i]);
    close(p->lfd);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

uint16_t kx_th_pgproxy_port(const kx_th_pgproxy *p)
{
    return p->port;
}

void kx_th_pgproxy_arm(kx_th_pgproxy *p, const char *name)
{
    pthread_mutex_lock(&p->mu);
    snprintf(p->armed, sizeof p->armed, "%s", name);
    pthread_mutex_unlock(&p->mu);
}

int kx_th_pgproxy_cuts(kx_th_pgproxy *p)
{
    return atomic_load(&p->cuts);
}
