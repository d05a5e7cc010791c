/* fuzz.c — the HS256 JWT verifier of libkx (common/src/jwt.c): the gateway's bearer tokens.
 *
 * Byte 0 picks the mode:
 *   even: the rest is a token as a client sends it (base64url parts, dots, anything);
 *   odd:  the rest is "header-json \n payload-json"; the target encodes and signs them with
 *         the secret, so the claim checks behind the signature get fuzzed too.
 * Properties: a token is accepted only with a non-empty sub of printable length and without
 * NUL; a refusal always has a reason; a token signed with the right secret never fails as
 * "bad signature"; and a token verified with another secret never passes. */
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdbool.h>
#include <string.h>

#include "fuzz_util.h"
#include "kx/jwt.h"

static const char SECRET[] = "fuzz-secret";
static const int64_t NOW = 1767225600; /* 2026-01-01 */

static void check(const char *token, bool signed_by_us)
{
    kx_jwt_claims claims;
    const char *why = NULL;
    kx_err err =
        kx_jwt_verify(token, SECRET, strlen(SECRET), NOW, KX_JWT_DEFAULT_AUDIENCE, &claims, &why);
    if (err == KX_OK) {
        FUZZ_CHECK(why == NULL);
        FUZZ_CHECK(claims.sub[0] != '\0' && strlen(claims.sub) < sizeof claims.sub);
    } else {
        FUZZ_CHECK(err == KX_ERR_INVALID && why != NULL && why[0] != '\0');
        if (signed_by_us)
            FUZZ_CHECK(strcmp(why, "bad signature") != 0);
    }
    err = kx_jwt_verify(token, "other", 5, NOW, NULL, NULL, &why);
    FUZZ_CHECK(err != KX_OK);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    if ((data[0] & 1) == 0) {
        char *token = fuzz_cstr(data + 1, size - 1);
        check(token, false);
        free(token);
        return 0;
    }
    const uint8_t *h = data + 1;
    const uint8_t *nl = memchr(h, '\n', size - 1);
    size_t hlen = nl != NULL ? (size_t)(nl - h) : size - 1;
    const uint8_t *p = nl != NULL ? nl + 1 : data + size;
    size_t plen = (size_t)(data + size - p);
    char *tok = malloc((hlen + plen + 32) / 3 * 4 + 64);
    FUZZ_CHECK(tok != NULL);
    size_t o = kx_b64url_encode(h, hlen, tok);
    tok[o++] = '.';
    o += kx_b64url_encode(p, plen, tok + o);
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;
    FUZZ_CHECK(HMAC(EVP_sha256(), SECRET, (int)strlen(SECRET), (const unsigned char *)tok, o, mac,
                    &maclen) != NULL);
    tok[o++] = '.';
    kx_b64url_encode(mac, maclen, tok + o);
    /* the empty-part forms are refused before the signature: only check well-formed ones */
    check(tok, hlen > 0 && plen > 0);
    free(tok);
    return 0;
}
