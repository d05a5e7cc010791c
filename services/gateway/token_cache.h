/* token_cache.h — bearer tokens the gateway has verified, so that a client sending the same JWT
 * on every request pays the HMAC, the base64 and the JSON of kx_jwt_verify once.
 *
 * What a hit promises: the exact same token (every byte compared, in constant time) passed
 * kx_jwt_verify with this process's secret and audience, and it is still within its `exp`
 * (checked on every hit with the same 30 s leeway as kx_jwt_verify). An entry is also dropped
 * GW_TOKEN_CACHE_MAX_S after it was verified, whatever its exp, so a future revocation check
 * added to the verify path would be honoured within that bound. Failed verifications are never
 * cached. Direct-mapped by a seeded hash of the token: a collision evicts, never confuses.
 *
 * Thread-safe (striped mutexes); owned by gw_app, freed at shutdown. */
#ifndef GW_TOKEN_CACHE_H
#define GW_TOKEN_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kx/uuid.h"

#define GW_TOKEN_CACHE_MAX_S 60       /* longest life of an entry, whatever the token's exp */
#define GW_TOKEN_CACHE_MAX_TOKEN 2048 /* longer tokens are verified every time */

typedef struct gw_token_cache gw_token_cache;

/* slots: entries kept (rounded up to a power of two); 0 disables the cache (NULL). */
gw_token_cache *gw_token_cache_new(size_t slots);
void gw_token_cache_free(gw_token_cache *c);

/* True, with account (the lower-cased sub), when token was verified and is still valid at
 * now_s (Unix seconds). c may be NULL (always false). */
bool gw_token_cache_get(gw_token_cache *c, const char *token, int64_t now_s,
                        char account[KX_UUID_LEN + 1]);
/* Remembers a token that kx_jwt_verify accepted at now_s, with its exp and account. */
void gw_token_cache_put(gw_token_cache *c, const char *token, int64_t now_s, int64_t exp,
                        const char *account);

#endif
