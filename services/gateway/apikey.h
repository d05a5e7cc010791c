/* apikey.h — API keys' text: the "pk_<32 hex>:sk_<64 hex>" form of X-API-Key, making a new
 * pair, and the stored digest of a secret (docs/api.md, "API keys").
 *
 * The public half names the key (api_keys.public_key, unique); the secret half is 256 random
 * bits, shown once at creation and stored only as HMAC-SHA256(secret) under the gateway's
 * KX_API_KEY_SECRET, in hex. Why a keyed hash and not a slow one: a slow hash protects
 * low-entropy passwords; a 256-bit random secret cannot be guessed from its digest anyway, and
 * the key (kept out of the database) makes a leaked table useless for testing guesses, while
 * each API-key request costs one HMAC (about a microsecond) instead of milliseconds.
 *
 * Pure functions, no I/O; thread-safe. */
#ifndef GW_APIKEY_H
#define GW_APIKEY_H

#include <stdbool.h>
#include <stddef.h>

#define GW_APIKEY_PUBLIC_LEN 35 /* "pk_" + 32 hex */
#define GW_APIKEY_SECRET_LEN 67 /* "sk_" + 64 hex */
#define GW_APIKEY_DIGEST_LEN 64 /* hex of an HMAC-SHA256 */

/* Splits "pk_…:sk_…" into its halves (NUL-terminated copies). False when the text is not
 * exactly that form (lower-case hex of the right lengths). */
bool gw_apikey_parse(const char *header, char pub[GW_APIKEY_PUBLIC_LEN + 1],
                     char secret[GW_APIKEY_SECRET_LEN + 1]);
/* A new random pair from the OS's CSPRNG. False if it failed. */
bool gw_apikey_generate(char pub[GW_APIKEY_PUBLIC_LEN + 1], char secret[GW_APIKEY_SECRET_LEN + 1]);
/* HMAC-SHA256(secret) under key, in lower-case hex. False on a crypto failure. */
bool gw_apikey_digest(const char *key, size_t key_len, const char *secret,
                      char digest[GW_APIKEY_DIGEST_LEN + 1]);
/* Constant-time comparison of two digests (hex text of GW_APIKEY_DIGEST_LEN). */
bool gw_apikey_digest_equal(const char *a, const char *b);

#endif
