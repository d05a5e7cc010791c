/* auth.h — who is calling: the HS256 JWT of docs/api.md ("Authentication").
 *
 * The token comes from "Authorization: Bearer <jwt>" or, for the SSE route only, from the
 * "?token=<jwt>" query parameter (EventSource cannot send headers). The signature is verified
 * with KX_JWT_SECRET (Kortix did not verify it); exp/nbf are honoured; sub is the account id
 * and must be a UUID. */
#ifndef GW_AUTH_H
#define GW_AUTH_H

#include <stdbool.h>
#include "gateway.h"

/* On success writes the account id (lowercase UUID) into req->account and returns true.
 * Otherwise sets a 401 reply with the detail of the API table and returns false. */
bool gw_auth(const gw_app *app, gw_request *req, bool allow_query_token, gw_reply *reply);

#endif
