/* route.h — the gateway's route table: which handler answers which method + path, the auth it
 * needs and the kind of body it takes.
 *
 * Adding a route is one line in routes.c's table (and the handler's prototype in gateway.h):
 *
 *     ROUTE("GET", "/api/sandboxes/{id}/preview/{*}", AUTH_BEARER, BODY_NONE, gw_route_preview),
 *
 * Patterns: literal segments, "{id}" (one path segment, into req->id; a UUID is lower-cased so
 * every id has one spelling), and a final "{*}" (the rest of the path, possibly empty, into
 * req->rest). The first route whose pattern and method match wins; a path that matches some
 * pattern under another method is a 405. Auth runs as soon as the headers are in, before any
 * body byte is read; the body kind decides how the server reads it (BODY_NONE: none is read).
 *
 * Ownership: the table is static and read-only. */
#ifndef GW_ROUTE_H
#define GW_ROUTE_H

#include <stdbool.h>
#include <stddef.h>
#include "gateway.h"

typedef enum gw_auth_mode {
    AUTH_NONE,            /* anyone */
    AUTH_BEARER,          /* Authorization: Bearer <jwt> */
    AUTH_BEARER_OR_QUERY, /* the same, or ?token=<jwt> (EventSource cannot send headers) */
    AUTH_OPTIONAL,        /* none (req->account ""), or valid credentials: public reads */
} gw_auth_mode;

typedef enum gw_body_kind {
    BODY_NONE,
    BODY_JSON,
    BODY_FORM,
    BODY_RAW /* any bytes, kept as sent (a preview link's request body) */
} gw_body_kind;

typedef struct gw_route {
    const char *method;
    const char *pattern; /* "/api/agent-run/{id}/stop" */
    gw_auth_mode auth;
    gw_body_kind body;
    gw_handler handler;
    const char *label; /* "POST /api/agent-run/{id}/stop", for metrics and logs */
    /* Optional: answers from memory on the HTTP thread (it must never block) and returns true,
     * or returns false and the handler runs on a worker as usual. Not called for API keys. */
    bool (*cached)(gw_app *app, gw_request *req, gw_reply *reply);
} gw_route;

#define ROUTE(m, p, a, b, h)         \
    {                                \
        m, p, a, b, h, m " " p, NULL \
    }
#define ROUTE_CACHED(m, p, a, b, h, c) \
    {                                  \
        m, p, a, b, h, m " " p, c      \
    }

extern const gw_route gw_routes[];
extern const size_t gw_nroutes;

/* The route for method + url, filling req->id and req->rest; NULL when none matches, with
 * *path_known telling a 405 (the path exists under another method) from a 404. */
const gw_route *gw_route_find(const char *method, const char *url, gw_request *req,
                              bool *path_known);
/* The methods the path answers to, as "GET, POST" (for Allow and CORS); "" when none. */
void gw_route_methods(const char *url, char *out, size_t cap);

#endif
