/* test_jwt.c — HS256 tokens: our signatures verify, a token made elsewhere (jwt.io's example,
 * checked with `openssl dgst -sha256 -hmac`) verifies, and every refusal has its reason:
 * tampering, wrong secret, other algs including "none", expiry and nbf with 30 s leeway,
 * missing sub, garbage. Tokens with chosen headers/payloads are built here with OpenSSL
 * directly, independently of jwt.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kx/jwt.h"

#define SECRET "test-secret-0123456789"
#define NOW 1700000000LL

/* base64url without padding, via OpenSSL's base64. */
static void b64url(const void *in, size_t n, char *out)
{
    EVP_EncodeBlock((unsigned char *)out, in, (int)n);
    for (char *c = out; *c != '\0'; c++) {
        if (*c == '+')
            *c = '-';
        else if (*c == '/')
            *c = '_';
        else if (*c == '=')
            *c = '\0';
    }
}

/* A token with this header and payload JSON, signed with secret. */
static char *make_token(const char *header, const char *payload, const char *secret)
{
    static char tok[2048];
    char h[512], p[1024], s[64];
    b64url(header, strlen(header), h);
    b64url(payload, strlen(payload), p);
    snprintf(tok, sizeof tok, "%s.%s", h, p);
    unsigned char mac[32];
    unsigned int len = 0;
    HMAC(EVP_sha256(), secret, (int)strlen(secret), (unsigned char *)tok, strlen(tok), mac, &len);
    b64url(mac, len, s);
    size_t n = strlen(tok);
    snprintf(tok + n, sizeof tok - n, ".%s", s);
    return tok;
}

#define HS256 "{\"alg\":\"HS256\",\"typ\":\"JWT\"}"

/* Verifies tok at NOW and expects a refusal for reason. */
static void expect_refused(const char *tok, const char *reason)
{
    const char *why = NULL;
    kx_jwt_claims c;
    assert_int_equal(kx_jwt_verify(tok, SECRET, strlen(SECRET), NOW, &c, &why), KX_ERR_INVALID);
    assert_non_null(why);
    assert_string_equal(why, reason);
}

static void test_sign_verify_roundtrip(void **state)
{
    char *tok = kx_jwt_sign("user-42", NOW - 10, NOW + 3600, SECRET, strlen(SECRET));
    assert_non_null(tok);
    assert_null(strchr(tok, '='));
    kx_jwt_claims c;
    const char *why = "unset";
    assert_int_equal(kx_jwt_verify(tok, SECRET, strlen(SECRET), NOW, &c, &why), KX_OK);
    assert_null(why);
    assert_string_equal(c.sub, "user-42");
    assert_int_equal(c.exp, NOW + 3600);
    assert_int_equal(c.iat, NOW - 10);
    /* Signed by us == signed by an independent HS256 implementation of the same claims. */
    char payload[200];
    snprintf(payload, sizeof payload, "{\"sub\":\"user-42\",\"iat\":%lld,\"exp\":%lld}", NOW - 10,
             NOW + 3600);
    assert_string_equal(tok, make_token(HS256, payload, SECRET));
    free(tok);

    /* No exp: valid forever; exp and iat come back as 0. */
    tok = kx_jwt_sign("dev", 0, 0, SECRET, strlen(SECRET));
    assert_int_equal(kx_jwt_verify(tok, SECRET, strlen(SECRET), NOW, &c, NULL), KX_OK);
    assert_int_equal(c.exp, 0);
    assert_int_equal(c.iat, 0);
    free(tok);
}

static void test_foreign_token_verifies(void **state)
{
    const char *tok = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZ"
                      "SI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6y"
                      "JV_adQssw5c";
    const char *secret = "your-256-bit-secret";
    kx_jwt_claims c;
    assert_int_equal(kx_jwt_verify(tok, secret, strlen(secret), NOW, &c, NULL), KX_OK);
    assert_string_equal(c.sub, "1234567890");
    assert_int_equal(c.iat, 1516239022);
}

static void test_tampering_and_wrong_secret(void **state)
{
    char *tok = kx_jwt_sign("user-42", NOW, NOW + 3600, SECRET, strlen(SECRET));
    char *bad = strdup(tok);
    /* Flip the last signature character. */
    size_t n = strlen(bad);
    bad[n - 1] = bad[n - 1] == 'A' ? 'B' : 'A';
    expect_refused(bad, "bad signature");
    /* Swap in another payload, keep the signature. */
    char *other = kx_jwt_sign("admin", NOW, NOW + 3600, SECRET, strlen(SECRET));
    char forged[1024];
    const char *sig = strrchr(tok, '.');
    snprintf(forged, sizeof forged, "%.*s%s", (int)(strrchr(other, '.') - other), other, sig);
    expect_refused(forged, "bad signature");
    /* Truncated signature. */
    memcpy(bad, tok, n - 4); /* bad has strlen(tok) + 1 bytes */
    bad[n - 4] = '\0';
    expect_refused(bad, "bad signature");
    /* Another secret. */
    const char *why = NULL;
    assert_int_equal(kx_jwt_verify(tok, "other", 5, NOW, NULL, &why), KX_ERR_INVALID);
    assert_string_equal(why, "bad signature");
    free(tok);
    free(bad);
    free(other);
}

static void test_other_algs_refused(void **state)
{
    const char *payload = "{\"sub\":\"admin\"}";
    /* alg none with an empty signature, as attackers send it. */
    char none[512], h[128], p[128];
    const char *none_header = "{\"alg\":\"none\",\"typ\":\"JWT\"}";
    b64url(none_header, strlen(none_header), h);
    b64url(payload, strlen(payload), p);
    snprintf(none, sizeof none, "%s.%s.", h, p);
    expect_refused(none, "unsupported alg");
    /* Correctly HMAC-signed but claiming another alg. */
    expect_refused(make_token("{\"alg\":\"none\"}", payload, SECRET), "unsupported alg");
    expect_refused(make_token("{\"alg\":\"HS512\"}", payload, SECRET), "unsupported alg");
    expect_refused(make_token("{\"alg\":\"RS256\"}", payload, SECRET), "unsupported alg");
    expect_refused(make_token("{\"typ\":\"JWT\"}", payload, SECRET), "unsupported alg");
    expect_refused(make_token("{\"alg\":\"hs256\"}", payload, SECRET), "unsupported alg");
    /* HS256 with an empty signature. */
    b64url(HS256, strlen(HS256), h);
    snprintf(none, sizeof none, "%s.%s.", h, p);
    expect_refused(none, "bad signature");
}

static void test_time_claims_with_leeway(void **state)
{
    char payload[200];
    snprintf(payload, sizeof payload, "{\"sub\":\"u\",\"exp\":%lld}", NOW - 31);
    expect_refused(make_token(HS256, payload, SECRET), "token expired");
    snprintf(payload, sizeof payload, "{\"sub\":\"u\",\"exp\":%lld}", NOW - 29);
    kx_jwt_claims c;
    assert_int_equal(kx_jwt_verify(make_token(HS256, payload, SECRET), SECRET, strlen(SECRET), NOW,
                                   &c, NULL),
                     KX_OK);
    snprintf(payload, sizeof payload, "{\"sub\":\"u\",\"nbf\":%lld}", NOW + 31);
    expect_refused(make_token(HS256, payload, SECRET), "token not yet valid");
    snprintf(payload, sizeof payload, "{\"sub\":\"u\",\"nbf\":%lld}", NOW + 29);
    assert_int_equal(kx_jwt_verify(make_token(HS256, payload, SECRET), SECRET, strlen(SECRET), NOW,
                                   &c, NULL),
                     KX_OK);
    /* A real-valued exp (some issuers send floats) counts too. */
    snprintf(payload, sizeof payload, "{\"sub\":\"u\",\"exp\":%lld.5}", NOW - 100);
    expect_refused(make_token(HS256, payload, SECRET), "token expired");
    /* Absurd values neither overflow nor pass. */
    expect_refused(make_token(HS256, "{\"sub\":\"u\",\"exp\":-9223372036854775807}", SECRET),
                   "token expired");
    expect_refused(make_token(HS256, "{\"sub\":\"u\",\"exp\":-1e300}", SECRET), "token expired");
    expect_refused(make_token(HS256, "{\"sub\":\"u\",\"nbf\":9223372036854775807}", SECRET),
                   "token not yet valid");
    assert_int_equal(kx_jwt_verify(make_token(HS256, "{\"sub\":\"u\",\"exp\":1e300}", SECRET),
                                   SECRET, strlen(SECRET), NOW, &c, NULL),
                     KX_OK);
    /* exp that is not a number. */
    expect_refused(make_token(HS256, "{\"sub\":\"u\",\"exp\":\"soon\"}", SECRET),
                   "malformed token");
}

static void test_missing_sub(void **state)
{
    expect_refused(make_token(HS256, "{\"name\":\"x\"}", SECRET), "missing sub");
    expect_refused(make_token(HS256, "{\"sub\":42}", SECRET), "missing sub");
    expect_refused(make_token(HS256, "{\"sub\":\"\"}", SECRET), "missing sub");
    expect_refused(make_token(HS256, "{\"sub\":null}", SECRET), "missing sub");
    char *tok = kx_jwt_sign("", NOW, 0, SECRET, strlen(SECRET));
    expect_refused(tok, "missing sub");
    free(tok);
    /* Longer than kx_jwt_claims.sub can hold: refused rather than cut. */
    char payload[400], sub[200];
    memset(sub, 'a', 150);
    sub[150] = '\0';
    snprintf(payload, sizeof payload, "{\"sub\":\"%s\"}", sub);
    expect_refused(make_token(HS256, payload, SECRET), "malformed token");
}

static void test_garbage(void **state)
{
    expect_refused("", "malformed token");
    expect_refused("abc", "malformed token");
    expect_refused("a.b", "malformed token");
    expect_refused("a.b.c.d", "malformed token");
    expect_refused("..", "malformed token");
    expect_refused("!!!!.????.****", "malformed token");
    expect_refused("eyJhbGciOiJIUzI1NiJ9.e30=.abc", "malformed token"); /* padding */
    expect_refused(make_token("not json", "{\"sub\":\"u\"}", SECRET), "malformed token");
    expect_refused(make_token(HS256, "[1,2]", SECRET), "malformed token");
    expect_refused(make_token(HS256, "{\"sub\":", SECRET), "malformed token");
    const char *why = NULL;
    assert_int_equal(kx_jwt_verify(NULL, SECRET, strlen(SECRET), NOW, NULL, &why), KX_ERR_INVALID);
    assert_string_equal(why, "malformed token");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sign_verify_roundtrip),
        cmocka_unit_test(test_foreign_token_verifies),
        cmocka_unit_test(test_tampering_and_wrong_secret),
        cmocka_unit_test(test_other_algs_refused),
        cmocka_unit_test(test_time_claims_with_leeway),
        cmocka_unit_test(test_missing_sub),
        cmocka_unit_test(test_garbage),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
