/* server.h — the demo model's HTTP server (libmicrohttpd, one thread per connection):
 *   POST /v1/chat/completions   the scripted model ("stream" true or false)
 *   GET  /v1/models             lists DEMO_MODEL_NAME
 *   GET  /healthz               200 "ok"
 * A thread per connection keeps `sleep` and `hang` simple: the connection's own thread waits in
 * poll(2) on the client socket and on a stop pipe, so it burns no CPU, notices a client that went
 * away, and never holds up another connection. One log line per request on stderr.
 *
 * Ownership: demo_server_start returns a server the caller ends with demo_server_stop. */
#ifndef KX_DEMO_SERVER_H
#define KX_DEMO_SERVER_H

#include <stdint.h>

typedef struct demo_server demo_server;

/* Listens on bind_addr (IPv4 or IPv6 literal) : port (0 = any free port). NULL on failure
 * (logged). */
demo_server *demo_server_start(const char *bind_addr, uint16_t port);
uint16_t demo_server_port(const demo_server *s);
/* Wakes every waiting request (sleep, hang), stops the daemon, frees the server. */
void demo_server_stop(demo_server *s);

#endif
