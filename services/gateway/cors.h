/* cors.h — cross-origin requests as Kortix's FastAPI CORS middleware answers them, so its
 * frontend on another origin can call the API.
 *
 * Allowed origins come from KX_CORS_ORIGINS (comma-separated, exact match; "*" allows any
 * origin). For an allowed Origin every answer carries Access-Control-Allow-Origin: <origin>,
 * Access-Control-Allow-Credentials: true and Vary: Origin. A preflight (OPTIONS with Origin and
 * Access-Control-Request-Method) is answered before routing and auth: 200 with the allowed
 * methods (GET, POST, PUT, PATCH, DELETE, OPTIONS), Kortix's allowed headers (Content-Type,
 * Authorization, X-Project-Id, X-MCP-URL, X-MCP-Type, X-MCP-Headers, X-Refresh-Token,
 * X-API-Key, plus the CORS-safelisted ones) and Access-Control-Max-Age: 600; or 400
 * {"detail": "Disallowed CORS origin|method|headers"}.
 *
 * Stateless; thread-safe. */
#ifndef GW_CORS_H
#define GW_CORS_H

#include <stdbool.h>
#include <stddef.h>
#include "config.h"

struct MHD_Connection;
struct MHD_Response;

/* Is this request a CORS preflight? */
bool gw_cors_is_preflight(struct MHD_Connection *conn, const char *method);
/* The preflight's status (200, or 400 with *detail set to a static reason). */
unsigned int gw_cors_preflight(const gw_config *cfg, struct MHD_Connection *conn,
                               const char **detail);
/* Adds the CORS headers to resp when the request's Origin is allowed (preflight: also the
 * allowed methods, headers and max age). */
void gw_cors_headers(const gw_config *cfg, struct MHD_Connection *conn, struct MHD_Response *resp,
                     bool preflight);

#endif
