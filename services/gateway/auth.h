/* auth.h — who is calling: the HS256 JWT of docs/api.md ("Authentication").
 *
 * The token comes from "Authorization: Bearer <jwt>" or, for the SSE route only, from the
 * "?token=<jwt>" query parameter (EventSource cannot send headers). The signature is verified
 * with KX_JWT_SECRET (Kortix did not verify it); exp/nbf are honoured; sub is the account id
 * and must be a UUID. An X-API-Key header ("pk_…:sk_…") is checked first, as in Kortix: see
 * gw_auth_api_key. */
#ifndef GW_AUTH_H
#define GW_AUTH_H

#include <stdbool.h>
#include "gateway.h"

/* On success writes the account id (lowercase UUID) into req->account and returns true.
 * Otherwise sets a 401 reply with the detail of the API table and returns false. */
bool gw_auth(const gw_app *app, gw_request *req, bool allow_query_token, gw_reply *reply);

/* For routes anyone may read (a public project's threads): no credentials at all is fine
 * (req->account stays ""); credentials that are given must be valid, as in gw_auth. */
bool gw_auth_optional(const gw_app *app, gw_request *req, gw_reply *reply);

/* X-API-Key: "pk_…:sk_…" acts as the key's account. gw_auth only checks the header's form on
 * the HTTP thread and keeps it in req->api_key; this, on the worker before the handler, reads
 * the key (one read by the unique index on public_key, no cache: a revoked key fails on its
 * next request), compares HMAC-SHA256(secret) with the stored digest in constant time, and
 * fills req->account. Wrong, unknown, revoked or expired: 401 {"detail": ...}. It refreshes
 * last_used_at at most once a minute per key. Clears req->api_key. */
bool gw_auth_api_key(gw_app *app, gw_request *req, gw_reply *reply);

#endif
