/* jwt.c — HS256 JSON Web Tokens: verification for the gateway, signing for tests and the
 * local dev token.
 *
 * The token is base64url(header) "." base64url(payload) "." base64url(HMAC-SHA256(secret,
 * first two parts)), without padding. Verification refuses anything but alg HS256 (so "none"
 * and RS256-with-the-secret-as-key tricks fail), compares signatures in constant time, and
 * allows 30 s of clock skew on exp and nbf. */
#include "kx/jwt.h"

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LEEWAY_S KX_JWT_LEEWAY_S
#define SHA256_LEN 32

static const char B64URL[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* ---- base64url without padding --------------------------------------------------------- */

size_t kx_b64url_encode(const unsigned char *in, size_t n, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < n)
            v |= in[i + 2];
        out[o++] = B64URL[(v >> 18) & 63];
        out[o++] = B64URL[(v >> 12) & 63];
        if (i + 1 < n)
            out[o++] = B64URL[(v >> 6) & 63];
        if (i + 2 < n)
            out[o++] = B64URL[v & 63];
    }
    out[o] = '\0';
    return o;
}

static int b64url_value(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

/* Decodes n characters of in into a malloc'd buffer (NUL-terminated for convenience).
 * NULL when a character is not base64url, the length is impossible, or the encoding is not
 * canonical (the unused low bits of the last character must be zero, so that each byte string
 * has exactly one spelling and a signature cannot be altered without changing its bytes). */
static unsigned char *b64url_decode(const char *in, size_t n, size_t *out_len)
{
    if (n % 4 == 1)
        return NULL;
    unsigned char *out = malloc(n / 4 * 3 + 3 + 1);
    if (out == NULL)
        return NULL;
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64url_value(in[i]);
        if (v < 0) {
            free(out);
            return NULL;
        }
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    if (acc != 0) { /* padding bits set: a second spelling of the same bytes */
        free(out);
        return NULL;
    }
    out[o] = '\0';
    *out_len = o;
    return out;
}

static bool hmac_sha256(const char *secret, size_t secret_len, const char *msg, size_t msg_len,
                        unsigned char mac[SHA256_LEN])
{
    unsigned int len = 0;
    /* A valid pointer even for an empty secret: OpenSSL refuses a NULL key. */
    const void *key = secret != NULL ? secret : "";
    return HMAC(EVP_sha256(), key, (int)secret_len, (const unsigned char *)msg, msg_len, mac,
                &len) != NULL &&
        len == SHA256_LEN;
}

/* ---- verify ---------------------------------------------------------------------------- */

/* A numeric claim: true and *out when present as a number, *present false when absent;
 * false when present but not a number. */
static bool numeric_claim(const json_t *payload, const char *name, int64_t *out, bool *present)
{
    const json_t *v = json_object_get(payload, name);
    *present = v != NULL;
    *out = 0;
    if (v == NULL)
        return true;
    if (json_is_integer(v)) {
        *out = (int64_t)json_integer_value(v);
        return true;
    }
    if (json_is_real(v)) {
        /* Clamped: converting an out-of-range double to an integer is undefined. */
        double d = json_real_value(v);
        *out = d > 4e18 ? (int64_t)4e18 : d < -4e18 ? (int64_t)-4e18 : (int64_t)d;
        return true;
    }
    return false;
}

static kx_err refuse(const char **why, const char *reason)
{
    if (why != NULL)
        *why = reason;
    return KX_ERR_INVALID;
}

/* The header must be a JSON object whose alg is HS256. NULL when it is, else the reason. */
static const char *check_header(const unsigned char *header, size_t len)
{
    json_t *h = json_loadb((const char *)header, len, 0, NULL);
    const char *why = NULL;
    if (!json_is_object(h)) {
        why = "malformed token";
    } else {
        const json_t *alg = json_object_get(h, "alg");
        if (!json_is_string(alg) || strcmp(json_string_value(alg), "HS256") != 0)
            why = "unsupported alg";
    }
    json_decref(h);
    return why;
}

/* Is audience among the token's aud (a string or an array of strings, RFC 7519 4.1.3)? */
static bool audience_ok(const json_t *aud, const char *audience)
{
    if (json_is_string(aud))
        return strcmp(json_string_value(aud), audience) == 0;
    if (!json_is_array(aud))
        return false;
    size_t i;
    const json_t *v;
    json_array_foreach(aud, i, v)
    {
        if (json_is_string(v) && strcmp(json_string_value(v), audience) == 0)
            return true;
    }
    return false;
}

/* The claims checks on a payload whose signature is good. */
static kx_err check_claims(const unsigned char *payload, size_t len, int64_t now_s,
                           const char *audience, kx_jwt_claims *out, const char **why)
{
    json_t *p = json_loadb((const char *)payload, len, 0, NULL);
    if (!json_is_object(p)) {
        json_decref(p);
        return refuse(why, "malformed token");
    }
    int64_t exp, nbf, iat;
    bool has_exp, has_nbf, has_iat;
    if (!numeric_claim(p, "exp", &exp, &has_exp) || !numeric_claim(p, "nbf", &nbf, &has_nbf) ||
        !numeric_claim(p, "iat", &iat, &has_iat)) {
        json_decref(p);
        return refuse(why, "malformed token");
    }
    kx_err err = KX_OK;
    const json_t *sub = json_object_get(p, "sub");
    /* Written so that no claim value can overflow the arithmetic (now_s is sane). */
    if (has_exp && now_s - LEEWAY_S > exp)
        err = refuse(why, "token expired");
    else if (has_nbf && now_s + LEEWAY_S < nbf)
        err = refuse(why, "token not yet valid");
    else if (!json_is_string(sub) || json_string_length(sub) == 0)
        err = refuse(why, "missing sub");
    else if (json_string_length(sub) >= sizeof out->sub ||
             strlen(json_string_value(sub)) != json_string_length(sub))
        err = refuse(why, "malformed token"); /* too long, or contains a NUL */
    else if (!has_exp)
        err = refuse(why, "missing exp"); /* a token that never expires is not accepted */
    else if (audience != NULL && !audience_ok(json_object_get(p, "aud"), audience))
        err = refuse(why, "invalid audience");
    if (err == KX_OK && out != NULL) {
        memset(out, 0, sizeof *out);
        snprintf(out->sub, sizeof out->sub, "%s", json_string_value(sub));
        out->exp = exp;
        out->iat = has_iat ? iat : 0;
    }
    json_decref(p);
    return err;
}

kx_err kx_jwt_verify(const char *token, const char *secret, size_t secret_len, int64_t now_s,
                     const char *audience, kx_jwt_claims *out, const char **why)
{
    if (why != NULL)
        *why = NULL;
    if (token == NULL)
        return refuse(why, "malformed token");
    const char *dot1 = strchr(token, '.');
    const char *dot2 = dot1 != NULL ? strchr(dot1 + 1, '.') : NULL;
    /* An empty signature part is let through here so that alg "none" tokens are refused
     * for their alg. */
    if (dot1 == NULL || dot2 == NULL || strchr(dot2 + 1, '.') != NULL || dot1 == token ||
        dot2 == dot1 + 1)
        return refuse(why, "malformed token");

    size_t hlen = 0, plen = 0, slen = 0;
    unsigned char *header = b64url_decode(token, (size_t)(dot1 - token), &hlen);
    unsigned char *payload = b64url_decode(dot1 + 1, (size_t)(dot2 - dot1 - 1), &plen);
    unsigned char *sig = b64url_decode(dot2 + 1, strlen(dot2 + 1), &slen);
    kx_err err = KX_OK;
    unsigned char mac[SHA256_LEN];
    const char *header_problem = NULL;
    if (header == NULL || payload == NULL || sig == NULL)
        err = refuse(why, "malformed token");
    else if ((header_problem = check_header(header, hlen)) != NULL)
        err = refuse(why, header_problem);
    else if (!hmac_sha256(secret, secret_len, token, (size_t)(dot2 - token), mac))
        err = refuse(why, "bad signature");
    else if (slen != SHA256_LEN || CRYPTO_memcmp(mac, sig, SHA256_LEN) != 0)
        err = refuse(why, "bad signature");
    else
        err = check_claims(payload, plen, now_s, audience, out, why);
    free(header);
    free(payload);
    free(sig);
    return err;
}

/* ---- sign ------------------------------------------------------------------------------ */

char *kx_jwt_sign(const char *sub, int64_t iat, int64_t exp, const char *secret, size_t secret_len)
{
    return kx_jwt_sign_aud(sub, KX_JWT_DEFAULT_AUDIENCE, iat, exp, secret, secret_len);
}

char *kx_jwt_sign_aud(const char *sub, const char *aud, int64_t iat, int64_t exp,
                      const char *secret, size_t secret_len)
{
    static const char header[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
    json_t *claims = json_object();
    if (claims == NULL)
        return NULL;
    json_object_set_new(claims, "sub", json_string(sub != NULL ? sub : ""));
    if (iat != 0)
        json_object_set_new(claims, "iat", json_integer(iat));
    if (exp != 0)
        json_object_set_new(claims, "exp", json_integer(exp));
    if (aud != NULL)
        json_object_set_new(claims, "aud", json_string(aud));
    char *payload = json_dumps(claims, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(claims);
    if (payload == NULL)
        return NULL;
    size_t hl = strlen(header), pl = strlen(payload);
    size_t cap = (hl + 2) / 3 * 4 + 1 + (pl + 2) / 3 * 4 + 1 + (SHA256_LEN + 2) / 3 * 4 + 1;
    char *tok = malloc(cap);
    if (tok == NULL) {
        free(payload);
        return NULL;
    }
    size_t n = kx_b64url_encode((const unsigned char *)header, hl, tok);
    tok[n++] = '.';
    n += kx_b64url_encode((const unsigned char *)payload, pl, tok + n);
    free(payload);
    unsigned char mac[SHA256_LEN];
    if (!hmac_sha256(secret, secret_len, tok, n, mac)) {
        free(tok);
        return NULL;
    }
    tok[n++] = '.';
    kx_b64url_encode(mac, SHA256_LEN, tok + n);
    return tok;
}
