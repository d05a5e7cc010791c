/* httpd.c — the operations HTTP server every service runs (/healthz, /readyz, /metrics), on
 * libmicrohttpd with its own epoll thread, and the route function the gateway mounts in its
 * own server.
 *
 * Answers: /healthz 200 "ok"; /readyz 200 "ready" or 503 with the reason the ready function
 * gave; /metrics 200 with the Prometheus text. Only GET and HEAD (405 otherwise); any other
 * path is 404. The address comes from the caller, else KX_BIND_ADDR, else 127.0.0.1; IPv6
 * literals work too. */
#include "kx/httpd.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "kx/config.h"
#include "kx/log.h"
#include "kx/metrics.h"

#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

struct kx_httpd {
    struct MHD_Daemon *daemon;
    uint16_t port;
    kx_ready_fn ready;
    void *arg;
};

/* Queues a response with body (copied unless must_free) and returns MHD's result. */
static enum MHD_Result answer(struct MHD_Connection *conn, unsigned int status,
                              const char *content_type, char *body, size_t len, bool must_free)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(len, body,
                                        must_free ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_MUST_COPY);
    if (r == NULL) {
        if (must_free)
            free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    enum MHD_Result ret = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result answer_text(struct MHD_Connection *conn, unsigned int status,
                                   const char *text)
{
    return answer(conn, status, "text/plain; charset=utf-8", (char *)text, strlen(text), false);
}

bool kx_httpd_ops_route(struct MHD_Connection *conn, const char *method, const char *url,
                        kx_ready_fn ready, void *arg, int *mhd_ret)
{
    bool health = strcmp(url, "/healthz") == 0, readyz = strcmp(url, "/readyz") == 0,
         metrics = strcmp(url, "/metrics") == 0;
    if (!health && !readyz && !metrics)
        return false;
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
        *mhd_ret = answer_text(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed");
        return true;
    }
    if (health) {
        *mhd_ret = answer_text(conn, MHD_HTTP_OK, "ok");
    } else if (readyz) {
        char why[256] = "";
        if (ready == NULL || ready(arg, why, sizeof why)) {
            *mhd_ret = answer_text(conn, MHD_HTTP_OK, "ready");
        } else {
            if (why[0] == '\0')
                snprintf(why, sizeof why, "not ready");
            *mhd_ret = answer_text(conn, MHD_HTTP_SERVICE_UNAVAILABLE, why);
        }
    } else {
        size_t len = 0;
        char *text = kx_metrics_render(&len);
        *mhd_ret = text != NULL
            ? answer(conn, MHD_HTTP_OK, METRICS_CONTENT_TYPE, text, len, true)
            : answer_text(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory");
    }
    return true;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    kx_httpd *h = cls;
    int ret = MHD_NO;
    if (kx_httpd_ops_route(conn, method, url, h->ready, h->arg, &ret))
        return (enum MHD_Result)ret;
    return answer_text(conn, MHD_HTTP_NOT_FOUND, "not found");
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    msg[strcspn(msg, "\n")] = '\0';
    kx_warn("httpd: %s", msg);
}

kx_err kx_httpd_start(const char *bind_addr, uint16_t port, kx_ready_fn ready, void *arg,
                      kx_httpd **out)
{
    *out = NULL;
    if (bind_addr == NULL)
        bind_addr = kx_env_str("KX_BIND_ADDR", "127.0.0.1");
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    unsigned int flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO | MHD_USE_ERROR_LOG;
    struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, bind_addr, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons(port);
    } else if (inet_pton(AF_INET6, bind_addr, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(port);
        flags |= MHD_USE_IPv6;
    } else {
        kx_error("httpd: bind address \"%s\" is not an IPv4 or IPv6 literal", bind_addr);
        return KX_ERR_INVALID;
    }
    kx_httpd *h = calloc(1, sizeof *h);
    if (h == NULL)
        return KX_ERR_NOMEM;
    h->ready = ready;
    h->arg = arg;
    /* The logger must be the first option to catch every message. */
    h->daemon =
        MHD_start_daemon(flags, port, NULL, NULL, on_request, h, MHD_OPTION_EXTERNAL_LOGGER,
                         mhd_log, NULL, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
                         MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)30, MHD_OPTION_END);
    if (h->daemon == NULL) {
        kx_error("httpd: cannot listen on %s port %u", bind_addr, port);
        free(h);
        return KX_ERR_IO;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(h->daemon, MHD_DAEMON_INFO_BIND_PORT);
    h->port = info != NULL ? info->port : port;
    kx_info("httpd: ops server on %s port %u (/healthz, /readyz, /metrics)", bind_addr, h->port);
    *out = h;
    return KX_OK;
}

uint16_t kx_httpd_port(const kx_httpd *h)
{
    return h->port;
}

void kx_httpd_stop(kx_httpd *h)
{
    if (h == NULL)
        return;
    MHD_stop_daemon(h->daemon);
    free(h);
}
