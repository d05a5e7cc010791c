/* server.h — the demo model's HTTP server (libmicrohttpd, event-driven):
 *   POST /v1/chat/completions   the scripted model ("stream" true or false)
 *   GET  /v1/models             lists DEMO_MODEL_NAME
 *   GET  /healthz               200 "ok"
 * One epoll thread (or a small pool, opts.threads) serves every connection; no thread per
 * connection. `sleep`, `hang` and paced stream chunks suspend the connection
 * (MHD_suspend_connection) and hand it to the waiter (waiter.h), whose one thread resumes it
 * when its time comes or its client hangs up — so 10 000 slow streams cost 10 000 sockets and
 * a few KiB each, not 10 000 threads, and a client that goes away is noticed at once. The
 * connection limit is opts.max_connections (the caller raises RLIMIT_NOFILE to match). One
 * log line per request on stderr.
 *
 * Ownership: demo_server_start returns a server the caller ends with demo_server_stop. */
#ifndef KX_DEMO_SERVER_H
#define KX_DEMO_SERVER_H

#include <stdint.h>

typedef struct demo_server demo_server;

typedef struct demo_server_opts {
    unsigned max_connections; /* KX_MODEL_MAX_CONNECTIONS: libmicrohttpd's connection limit */
    unsigned threads;         /* KX_MODEL_THREADS: epoll threads (1 = one internal thread) */
    int64_t chunk_ms;         /* KX_MODEL_CHUNK_MS: pause between streamed chunks (0 = none) */
} demo_server_opts;

/* Listens on bind_addr (IPv4 or IPv6 literal) : port (0 = any free port). NULL on failure
 * (logged). */
demo_server *demo_server_start(const char *bind_addr, uint16_t port, const demo_server_opts *opts);
uint16_t demo_server_port(const demo_server *s);
/* Wakes every waiting request (sleep, hang, paced chunks), stops the daemon, frees the
 * server. */
void demo_server_stop(demo_server *s);

#endif
