/* preview_proxy.c — one HTTP request to a port inside a sandbox, through the broker's relay
 * (see preview_proxy.h). Runs on a libmicrohttpd pool thread; every wait is bounded. */
#include "preview_proxy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "kx/time.h"

/* The answer's headers a browser needs; hop-by-hop and length headers are libmicrohttpd's. */
static const char *const PASSED[] = {"Content-Type", "Cache-Control",   "Last-Modified",
                                     "ETag",         "Location",        "Content-Disposition",
                                     "Expires",      "Content-Language"};

void gw_proxy_resp_free(gw_proxy_resp *r)
{
    free(r->body);
    free(r->raw);
    memset(r, 0, sizeof *r);
}

/* Decodes a chunked body in place; false when malformed. */
static bool dechunk(char *b, size_t len, size_t *out_len)
{
    size_t in = 0, out = 0;
    for (;;) {
        char *eol = in < len ? memchr(b + in, '\n', len - in) : NULL;
        if (eol == NULL)
            return false;
        char *end = NULL;
        unsigned long n = strtoul(b + in, &end, 16);
        if (end == b + in || (size_t)(eol - b) + 1 > len)
            return false;
        in = (size_t)(eol - b) + 1;
        if (n == 0) {
            *out_len = out;
            return true;
        }
        if (n > len - in)
            return false;
        memmove(b + out, b + in, n);
        out += n;
        in += n;
        if (in < len && b[in] == '\r')
            in++;
        if (in < len && b[in] == '\n')
            in++;
    }
}

kx_err gw_proxy_parse(char *raw, size_t len, gw_proxy_resp *out, char *why, size_t whylen)
{
    memset(out, 0, sizeof *out);
    char *hend = NULL;
    size_t hlen = 0;
    for (size_t i = 0; i + 3 < len; i++) {
        if (memcmp(raw + i, "\r\n\r\n", 4) == 0) {
            hend = raw + i;
            hlen = 4;
            break;
        }
    }
    if (hend == NULL) {
        snprintf(why, whylen, "the server in the sandbox did not send a complete HTTP answer");
        return KX_ERR_PROTOCOL;
    }
    *hend = '\0';
    /* "HTTP/1.x NNN ...": three digits after the version and a space. */
    char *end = NULL;
    long status = -1;
    if (strncmp(raw, "HTTP/1.", 7) == 0 && raw[7] != '\0' && raw[8] == ' ' && raw[9] >= '0' &&
        raw[9] <= '9') {
        status = strtol(raw + 9, &end, 10);
        if (end != raw + 12 || (*end != ' ' && *end != '\r' && *end != '\0'))
            status = -1;
    }
    if (status < 100 || status > 599) {
        snprintf(why, whylen, "the server in the sandbox did not answer HTTP");
        return KX_ERR_PROTOCOL;
    }
    out->status = (unsigned int)status;
    bool chunked = false;
    char *save = NULL;
    (void)strtok_r(raw, "\r\n", &save); /* the status line */
    for (char *line; (line = strtok_r(NULL, "\r\n", &save)) != NULL;) {
        char *colon = strchr(line, ':');
        if (colon == NULL)
            continue;
        *colon = '\0';
        char *v = colon + 1;
        while (*v == ' ' || *v == '\t')
            v++;
        if (strcasecmp(line, "Transfer-Encoding") == 0 && strcasestr(v, "chunked") != NULL)
            chunked = true;
        for (size_t i = 0; i < sizeof PASSED / sizeof PASSED[0]; i++) {
            if (strcasecmp(line, PASSED[i]) == 0 && out->nheaders < GW_PROXY_MAX_HEADERS) {
                out->names[out->nheaders] = PASSED[i];
                out->values[out->nheaders++] = v;
            }
        }
    }
    char *body = hend + hlen;
    size_t blen = len - (size_t)(body - raw);
    if (chunked && !dechunk(body, blen, &blen)) {
        snprintf(why, whylen, "the server in the sandbox sent a malformed chunked body");
        return KX_ERR_PROTOCOL;
    }
    out->body = malloc(blen + 1);
    if (out->body == NULL) {
        snprintf(why, whylen, "out of memory");
        return KX_ERR_NOMEM;
    }
    memcpy(out->body, body, blen);
    out->body[blen] = '\0';
    out->body_len = blen;
    return KX_OK;
}

static bool send_all(int fd, const char *b, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return false;
        b += w;
        n -= (size_t)w;
    }
    return true;
}

kx_err gw_proxy_fetch(const char *relay, const char *preamble, const gw_proxy_req *rq,
                      size_t max_bytes, int64_t timeout_ms, gw_proxy_resp *out, char *why,
                      size_t whylen)
{
    int port = rq->port;
    memset(out, 0, sizeof *out);
    char host[64];
    const char *colon = strrchr(relay, ':');
    char *pend = NULL;
    unsigned long rport = colon != NULL ? strtoul(colon + 1, &pend, 10) : 0;
    if (colon == NULL || (size_t)(colon - relay) >= sizeof host || pend == colon + 1 ||
        *pend != '\0' || rport == 0 || rport > 65535) {
        snprintf(why, whylen, "the sandbox-broker gave no usable relay address");
        return KX_ERR_PROTOCOL;
    }
    memcpy(host, relay, (size_t)(colon - relay));
    host[colon - relay] = '\0';
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)rport)};
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        snprintf(why, whylen, "the sandbox-broker gave no usable relay address");
        return KX_ERR_PROTOCOL;
    }
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(why, whylen, "socket: %s", strerror(errno));
        return KX_ERR_IO;
    }
    struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
    (void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    (void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    int64_t until = kx_mono_ms() + timeout_ms;
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        snprintf(why, whylen, "the sandbox-broker's preview relay is not reachable: %s",
                 strerror(errno));
        close(fd);
        return KX_ERR_UNAVAILABLE;
    }
    char head[8192], length[48] = "";
    const char *accept = rq->accept, *ctype = rq->content_type;
    if (rq->body != NULL) /* a request with a body says how long it is (HTTP/1.0: no chunks) */
        snprintf(length, sizeof length, "Content-Length: %zu\r\n", rq->body_len);
    int n = snprintf(head, sizeof head,
                     "%s\n%s %s HTTP/1.0\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n"
                     "%s%s%s%s%s%s%s\r\n",
                     preamble, rq->method, rq->path_query, port, accept ? "Accept: " : "",
                     accept ? accept : "", accept ? "\r\n" : "", ctype ? "Content-Type: " : "",
                     ctype ? ctype : "", ctype ? "\r\n" : "", length);
    if (n < 0 || (size_t)n >= sizeof head || !send_all(fd, head, (size_t)n) ||
        (rq->body != NULL && !send_all(fd, rq->body, rq->body_len))) {
        snprintf(why, whylen, "could not send the request to the sandbox");
        close(fd);
        return KX_ERR_IO;
    }
    size_t cap = 64 * 1024, len = 0;
    char *buf = malloc(cap + 1);
    kx_err err = buf != NULL ? KX_OK : KX_ERR_NOMEM;
    while (err == KX_OK) {
        int64_t left = until - kx_mono_ms();
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (left <= 0 || poll(&p, 1, (int)left) == 0) {
            err = KX_ERR_TIMEOUT;
            snprintf(why, whylen,
                     "the server on port %d in the sandbox did not answer within %lld ms", port,
                     (long long)timeout_ms);
            break;
        }
        if (len == cap) {
            if (cap >= max_bytes) {
                err = KX_ERR_NOMEM;
                snprintf(why, whylen, "the answer of port %d is larger than %zu bytes", port,
                         max_bytes);
                break;
            }
            size_t ncap = cap * 2 > max_bytes ? max_bytes : cap * 2;
            char *nb = realloc(buf, ncap + 1);
            if (nb == NULL) {
                err = KX_ERR_NOMEM;
                snprintf(why, whylen, "out of memory");
                break;
            }
            buf = nb;
            cap = ncap;
        }
        ssize_t r = recv(fd, buf + len, cap - len, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && len == 0) {
            err = KX_ERR_UNAVAILABLE;
            snprintf(why, whylen, "nothing answered on port %d in the sandbox", port);
            break;
        }
        if (r <= 0)
            break;
        len += (size_t)r;
    }
    close(fd);
    if (err == KX_OK && len == 0) {
        err = KX_ERR_UNAVAILABLE;
        snprintf(why, whylen, "nothing answered on port %d in the sandbox", port);
    }
    if (err == KX_OK) {
        buf[len] = '\0';
        err = gw_proxy_parse(buf, len, out, why, whylen);
        if (err == KX_OK) {
            out->raw = buf; /* the header values point into it */
            buf = NULL;
        }
    }
    free(buf);
    return err;
}
