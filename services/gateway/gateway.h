/* gateway.h — the gateway's shared context (gw_app) and the request/route types every handler
 * sees. main.c fills one gw_app; the HTTP server passes it to each handler.
 *
 * Threads: handlers run on libmicrohttpd's pool threads, several at once. Everything in gw_app
 * is either read-only after start (config, pointers) or thread-safe (the bus, the pool, the
 * stream registry).
 *
 * Ownership: gw_app is owned by main(); the server, the pool and the stream registry it points
 * to are created and freed by main(). */
#ifndef GW_GATEWAY_H
#define GW_GATEWAY_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "kx/bus.h"
#include "kx/db.h"
#include "kx/svc.h"
#include "kx/uuid.h"

struct MHD_Connection;
typedef struct gw_server gw_server;
typedef struct gw_streams gw_streams;
typedef struct gw_form gw_form;
typedef struct gw_run_nats gw_run_nats;
typedef struct gw_run_cache gw_run_cache;
typedef struct gw_token_cache gw_token_cache;
typedef struct gw_held gw_held;
typedef struct gw_downloads gw_downloads;

typedef struct gw_purger gw_purger;
typedef struct gw_app {
    gw_config cfg;
    kx_svc *svc; /* instance id, loop, bus */
    kx_db_pool *pool;
    gw_server *server;
    gw_streams *streams;     /* open SSE streams (stream.h) */
    gw_run_nats *run_nats;   /* kx.run.start / kx.run.stop (run_nats.h) */
    atomic_bool draining;    /* set when SIGTERM arrived: new streams are refused */
    atomic_bool listening;   /* the API port accepts connections and NATS confirmed the
                              * subscriptions (ready needs it) */
    gw_token_cache *tokens;  /* verified bearer tokens (token_cache.h); NULL: off */
    gw_run_cache *run_cache; /* recent GET /api/agent-run/{id} answers (run_cache.h); NULL: off */
    gw_held *held;           /* large answers held until read (held.h) */
    gw_downloads *downloads; /* sandbox files streamed to their clients (download.h) */
    gw_purger *purger;       /* deleted threads' messages removed after the delete (purge.h) */
} gw_app;

/* One HTTP request, as a handler sees it. Strings are valid until the handler returns. */
typedef struct gw_request {
    struct MHD_Connection *conn;
    const char *method;
    const char *url;               /* path only, as libmicrohttpd decoded it */
    const char *version;           /* "HTTP/1.1", as libmicrohttpd gave it */
    const char *route;             /* the matched pattern, e.g. "/api/agent-run/{id}" */
    char id[128];                  /* the {id} segment of the path ("" if the route has none);
                                    lower-cased when it is a UUID */
    const char *rest;              /* what a final {*} of the pattern matched, or NULL */
    char account[KX_UUID_LEN + 1]; /* the JWT sub (a UUID) when the route needs auth, else "" */
    char api_key[112];             /* "pk_…:sk_…" of X-API-Key, well-formed, until the worker
                                      checked it (auth.h); "" otherwise */
    bool via_api_key;              /* the account comes from an API key (not a JWT) */
    char traceparent[56];          /* the request's W3C traceparent header if valid, else "" */
    const char *body;              /* raw body (NUL-terminated) for JSON routes; NULL if none */
    size_t body_len;
    gw_form *form;            /* parsed form fields for form routes; NULL otherwise */
    const char *content_type; /* Content-Type header or NULL */
} gw_request;

/* What a handler answers. Either body (JSON text, malloc'd, owned by the reply) with status,
 * or resp (an already-built libmicrohttpd response, e.g. the SSE stream) with status. */
struct MHD_Response;
typedef struct gw_reply {
    unsigned int status;
    char *body;
    struct MHD_Response *resp;
} gw_reply;

typedef void (*gw_handler)(gw_app *app, gw_request *req, gw_reply *reply);

/* The route handlers (routes_runs.c, routes_threads.c, stream.c, health.c). */
void gw_route_health(gw_app *app, gw_request *req, gw_reply *reply);
void gw_route_initiate(gw_app *app, gw_request *req, gw_reply *reply);
void gw_route_thread_start(gw_app *app, gw_request *req, gw_reply *reply);
void gw_route_run_get(gw_app *app, gw_request *req, gw_reply *reply);
void gw_route_run_stop(gw_app *app, gw_request *req, gw_reply *reply);
void gw_route_thread_runs(gw_app *app, gw_request *req, gw_reply *reply);
void gw_route_messages_list(gw_app *app, gw_request *req, gw_reply *reply);
void gw_route_messages_add(gw_app *app, gw_request *req, gw_reply *reply);
void gw_route_run_stream(gw_app *app, gw_request *req, gw_reply *reply);
/* routes_threads.c (threads as rows) */
void gw_route_threads_list(gw_app *app, gw_request *req, gw_reply *reply);
void gw_route_thread_create(gw_app *app, gw_request *req, gw_reply *reply);
void gw_route_thread_get(gw_app *app, gw_request *req, gw_reply *reply);
void gw_route_thread_update(gw_app *app, gw_request *req, gw_reply *reply);
void gw_route_thread_delete(gw_app *app, gw_request *req, gw_reply *reply);
/* Both soft deletes that stop runs (the thread's, or the project's with its threads): 404 for
 * a malformed id, a missing one or another account's; then STOP and the terminal event of
 * each stopped run, and {"message": "<Thread|Project> deleted successfully", "stopped_runs"}. */
void gw_route_delete_stopping(gw_app *app, gw_request *req, gw_reply *reply, bool project);
void gw_route_message_delete(gw_app *app, gw_request *req, gw_reply *reply);
void gw_route_message_add_query(gw_app *app, gw_request *req, gw_reply *reply);
/* routes_projects.c */
void gw_route_projects_list(gw_app *app, gw_request *req, gw_reply *reply);
void gw_route_project_create(gw_app *app, gw_request *req, gw_reply *reply);
void gw_route_project_get(gw_app *app, gw_request *req, gw_reply *reply);
void gw_route_project_update(gw_app *app, gw_request *req, gw_reply *reply);
void gw_route_project_delete(gw_app *app, gw_request *req, gw_reply *reply);
/* routes_keys.c */
void gw_route_key_create(gw_app *app, gw_request *req, gw_reply *reply);
void gw_route_keys_list(gw_app *app, gw_request *req, gw_reply *reply);
void gw_route_key_revoke(gw_app *app, gw_request *req, gw_reply *reply);
void gw_route_key_delete(gw_app *app, gw_request *req, gw_reply *reply);
/* routes_runs.c (the thread's agent) */
void gw_route_thread_agent(gw_app *app, gw_request *req, gw_reply *reply);
/* routes_mcp.c */
void gw_route_custom_mcp_tools(gw_app *app, gw_request *req, gw_reply *reply);
void gw_route_mcp_discover(gw_app *app, gw_request *req, gw_reply *reply);

#endif
