/* cors.c — CORS headers and preflights (see cors.h). */
#include "cors.h"

#include <microhttpd.h>
#include <string.h>
#include <strings.h>

#define ALLOW_METHODS "GET, POST, PUT, PATCH, DELETE, OPTIONS"
#define ALLOW_HEADERS                                                                        \
    "Accept, Accept-Language, Content-Language, Content-Type, Authorization, X-Project-Id, " \
    "X-MCP-URL, X-MCP-Type, X-MCP-Headers, X-Refresh-Token, X-API-Key, Last-Event-ID"

static const char *const allowed_headers[] = {
    "accept",        "accept-language", "content-language", "content-type",
    "authorization", "x-project-id",    "x-mcp-url",        "x-mcp-type",
    "x-mcp-headers", "x-refresh-token", "x-api-key",        "last-event-id",
};

static const char *const allowed_methods[] = {"GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"};

static bool method_allowed(const char *m)
{
    for (size_t i = 0; m != NULL && i < sizeof allowed_methods / sizeof allowed_methods[0]; i++)
        if (strcmp(allowed_methods[i], m) == 0)
            return true;
    return false;
}

static bool origin_allowed(const gw_config *cfg, const char *origin)
{
    if (origin == NULL || origin[0] == '\0')
        return false;
    for (char **o = cfg->cors_origins; o != NULL && *o != NULL; o++)
        if (strcmp(*o, "*") == 0 || strcmp(*o, origin) == 0)
            return true;
    return false;
}

static const char *header(struct MHD_Connection *conn, const char *name)
{
    return MHD_lookup_connection_value(conn, MHD_HEADER_KIND, name);
}

bool gw_cors_is_preflight(struct MHD_Connection *conn, const char *method)
{
    return strcmp(method, "OPTIONS") == 0 && header(conn, "Origin") != NULL &&
        header(conn, "Access-Control-Request-Method") != NULL;
}

/* Every name of the comma-separated list is allowed (case-insensitive). */
static bool headers_allowed(const char *list)
{
    const char *p = list;
    while (p != NULL && *p != '\0') {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        size_t n = strcspn(p, ", \t");
        if (n == 0)
            break;
        bool ok = false;
        for (size_t i = 0; i < sizeof allowed_headers / sizeof allowed_headers[0] && !ok; i++)
            ok = strlen(allowed_headers[i]) == n && strncasecmp(allowed_headers[i], p, n) == 0;
        if (!ok)
            return false;
        p += n;
    }
    return true;
}

unsigned int gw_cors_preflight(const gw_config *cfg, struct MHD_Connection *conn,
                               const char **detail)
{
    const char *method = header(conn, "Access-Control-Request-Method");
    *detail = NULL;
    if (!origin_allowed(cfg, header(conn, "Origin")))
        *detail = "Disallowed CORS origin";
    else if (!method_allowed(method))
        *detail = "Disallowed CORS method";
    else if (!headers_allowed(header(conn, "Access-Control-Request-Headers")))
        *detail = "Disallowed CORS headers";
    return *detail == NULL ? MHD_HTTP_OK : MHD_HTTP_BAD_REQUEST;
}

void gw_cors_headers(const gw_config *cfg, struct MHD_Connection *conn, struct MHD_Response *resp,
                     bool preflight)
{
    const char *origin = header(conn, "Origin");
    if (!origin_allowed(cfg, origin))
        return;
    /* The SSE answer carries Kortix's "*": a credentialed request needs the origin itself. */
    MHD_del_response_header(resp, MHD_HTTP_HEADER_ACCESS_CONTROL_ALLOW_ORIGIN, "*");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    MHD_add_response_header(resp, "Access-Control-Allow-Credentials", "true");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_VARY, "Origin");
    if (preflight) {
        MHD_add_response_header(resp, "Access-Control-Allow-Methods", ALLOW_METHODS);
        MHD_add_response_header(resp, "Access-Control-Allow-Headers", ALLOW_HEADERS);
        MHD_add_response_header(resp, "Access-Control-Max-Age", "600");
    }
}
