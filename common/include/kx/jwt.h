/* kx/jwt.h — JSON Web Tokens, HS256 only (OpenSSL HMAC-SHA256).
 *
 * Verification checks, in order: three base64url parts; header alg == "HS256" (anything else,
 * including "none", is refused); the signature, in constant time; exp (if present) in the
 * future and nbf (if present) in the past, with 30 s leeway; sub present and a string.
 * The reason for a refusal is a static string for the 401 body. */
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

kx_err kx_jwt_verify(const char *token, const char *secret, size_t secret_len, int64_t now_s,
                     kx_jwt_claims *out, const char **why);
/* A signed token for sub, valid until exp (0 = no exp). malloc'd, caller frees; NULL on OOM. */
/* Unpadded base64url of n bytes into out (room for 4 * ceil(n / 3) + 1, NUL-terminated);
 * returns the length written. */
size_t kx_b64url_encode(const unsigned char *in, size_t n, char *out);

char *kx_jwt_sign(const char *sub, int64_t iat, int64_t exp, const char *secret,
                  size_t secret_len);

#endif
