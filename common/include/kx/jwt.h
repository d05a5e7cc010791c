/* kx/jwt.h — JSON Web Tokens, HS256 only (OpenSSL HMAC-SHA256).
 *
 * Verification checks, in order: three parts in canonical base64url (no padding, no stray
 * bits in the last character); header alg == "HS256" (anything else, including "none", is
 * refused); the signature, in constant time; exp present (a token that never expires is
 * refused: "missing exp") and in the future, nbf (if present) in the past, both with 30 s
 * leeway; sub present and a string; aud equal to (or, for an array, containing) the audience
 * asked for, when one is asked for. The reason for a refusal is a static string for the 401
 * body. */
#ifndef KX_JWT_H
#define KX_JWT_H

#include <stddef.h>
#include <stdint.h>
#include "kx/err.h"

typedef struct kx_jwt_claims {
    char sub[128];
    int64_t exp; /* 0 if absent */
    int64_t iat; /* 0 if absent */
} kx_jwt_claims;

/* Supabase's audience for signed-in users, and the gateway's default (KX_JWT_AUDIENCE). */
#define KX_JWT_DEFAULT_AUDIENCE "authenticated"
#define KX_JWT_LEEWAY_S 30 /* clock skew allowed on exp and nbf */

/* audience: the aud the token must carry; NULL: aud is not checked. */
kx_err kx_jwt_verify(const char *token, const char *secret, size_t secret_len, int64_t now_s,
                     const char *audience, kx_jwt_claims *out, const char **why);
/* Unpadded base64url of n bytes into out (room for 4 * ceil(n / 3) + 1, NUL-terminated);
 * returns the length written. */
size_t kx_b64url_encode(const unsigned char *in, size_t n, char *out);

/* A signed token for sub with aud KX_JWT_DEFAULT_AUDIENCE, valid until exp (0 = no exp claim,
 * which kx_jwt_verify refuses). malloc'd, caller frees; NULL on OOM. */
char *kx_jwt_sign(const char *sub, int64_t iat, int64_t exp, const char *secret,
                  size_t secret_len);
/* The same with another aud (NULL: no aud claim). */
char *kx_jwt_sign_aud(const char *sub, const char *aud, int64_t iat, int64_t exp,
                      const char *secret, size_t secret_len);

#endif
