/* key_store.h — the SQL of API keys (routes_keys.c, auth.c): rows of api_keys
 * (deploy/migrations/008_api_keys_projects.sql), always filtered by the owner's account for
 * the management routes, so another account's key is "not found".
 *
 * The key the client sees never carries secret_hash. status is computed: "expired" once
 * expires_at has passed (the stored status stays 'active').
 *
 * Errors: kx_err from kx_db; KX_ERR_NOT_FOUND when no row of this account matched.
 * Ownership: char ** outputs are malloc'd and the caller's. The kx_db is borrowed. */
#ifndef GW_KEY_STORE_H
#define GW_KEY_STORE_H

#include <stdbool.h>

#include "apikey.h"
#include "kx/db.h"
#include "kx/err.h"
#include "kx/uuid.h"
#include "store.h"

/* clang-format off */
#define GW_KEY_JSON                                                                            \
    "json_build_object('key_id', key_id, 'public_key', public_key, 'title', title, "           \
    "'description', description, 'status', CASE WHEN status = 'active' AND expires_at <= now() " \
    "THEN 'expired' ELSE status END, "                                                          \
    "'expires_at', " GW_SQL_ISO("expires_at") ", 'last_used_at', " GW_SQL_ISO("last_used_at")   \
    ", 'created_at', " GW_SQL_ISO("created_at") ")"

/* Spliced into gw_store_statements (store.c; no trailing comma). */
#define GW_KEY_STATEMENTS                                                                      \
    {"gw_key_create",                                                                          \
     "INSERT INTO api_keys (account_id, public_key, secret_hash, title, description, "         \
     "expires_at) VALUES ($1::uuid, $2::text, $3::text, $4::text, $5::text, "                  \
     "CASE WHEN $6::int IS NULL THEN NULL ELSE now() + make_interval(days => $6::int) END) "   \
     "RETURNING " GW_KEY_JSON "::text"},                                                       \
    /* $1 account, $2 rows at most, $3 rows skipped, $4 the key the page starts after (NULL:  \
     * from the newest): the array, or NULL when $4 is none of the account's keys */           \
    {"gw_keys_list",                                                                           \
     "SELECT CASE WHEN "                                                                       \
     GW_SQL_CURSOR_UNKNOWN("api_keys", "key_id", "$4::uuid", "account_id = $1::uuid")          \
     " THEN NULL ELSE "                                                                        \
     "coalesce(json_agg(" GW_KEY_JSON " ORDER BY created_at DESC, key_id), "                   \
     "'[]'::json)::text END FROM (SELECT * FROM api_keys a WHERE account_id = $1::uuid AND "   \
     GW_SQL_BEFORE("a", "api_keys", "key_id", "$4::uuid", "account_id = $1::uuid") " "        \
     "ORDER BY created_at DESC, key_id LIMIT $2::int OFFSET $3::int) k"},                      \
    {"gw_key_revoke",                                                                          \
     "UPDATE api_keys SET status = 'revoked' WHERE key_id = $1::uuid AND account_id = $2::uuid " \
     "RETURNING 1"},                                                                           \
    {"gw_key_delete",                                                                          \
     "DELETE FROM api_keys WHERE key_id = $1::uuid AND account_id = $2::uuid RETURNING 1"},    \
    {"gw_key_lookup",                                                                          \
     "SELECT key_id::text, account_id::text, secret_hash, status = 'active' "                  \
     "AND (expires_at IS NULL OR expires_at > now()), "                                        \
     "last_used_at IS NULL OR last_used_at < now() - interval '60 seconds' "                   \
     "FROM api_keys WHERE public_key = $1::text"},                                             \
    {"gw_key_touch",                                                                           \
     "UPDATE api_keys SET last_used_at = now() WHERE key_id = $1::uuid"}
/* clang-format on */

/* Inserts a key; expires_in_days 0: never expires. */
kx_err gw_key_create(kx_db *db, const char *account, const char *public_key,
                     const char *secret_hash, const char *title, const char *description,
                     int expires_in_days, char **json);
kx_err gw_keys_list(kx_db *db, const char *account, const gw_page *page, char **json);
kx_err gw_key_revoke(kx_db *db, const char *key_id, const char *account);
kx_err gw_key_delete(kx_db *db, const char *key_id, const char *account);

/* What an X-API-Key check needs of a key: one read by the unique index on public_key. */
typedef struct gw_key_row {
    char key_id[KX_UUID_LEN + 1];
    char account[KX_UUID_LEN + 1];
    char secret_hash[GW_APIKEY_DIGEST_LEN + 1];
    bool usable;    /* active and not expired */
    bool touch_due; /* last_used_at is over a minute old (or never set) */
} gw_key_row;
kx_err gw_key_lookup(kx_db *db, const char *public_key, gw_key_row *out);
/* last_used_at = now() (at most once a minute per key: callers check touch_due). */
kx_err gw_key_touch(kx_db *db, const char *key_id);

#endif
