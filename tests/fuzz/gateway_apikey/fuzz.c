/* fuzz.c — the gateway's X-API-Key header (apikey.c: gw_apikey_parse, gw_apikey_digest,
 * gw_apikey_digest_equal), which every request may carry before any other check.
 * Properties: a header is accepted exactly when it is "pk_" + 32 lower-case hex + ":" + "sk_" +
 * 64 lower-case hex (checked here independently); the halves of an accepted header put back
 * together are the header; the digest of an accepted secret is 64 lower-case hex, equal to
 * itself and to a second digest of the same secret, and unequal to the digest of another. */
#include <stdbool.h>

#include "apikey.h"
#include "fuzz_util.h"

static bool hex_run(const char *s, size_t n)
{
    /* fuzz_cstr fills every byte (memcpy + NUL) and callers check the length first; the
     * analyzer does not see the copy: */
    /* NOLINTBEGIN(clang-analyzer-core.UndefinedBinaryOperatorResult) */
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    /* NOLINTEND(clang-analyzer-core.UndefinedBinaryOperatorResult) */
    return true;
}

static bool well_formed(const char *s)
{
    return strlen(s) == 103 && strncmp(s, "pk_", 3) == 0 && hex_run(s + 3, 32) && s[35] == ':' &&
        strncmp(s + 36, "sk_", 3) == 0 && hex_run(s + 39, 64);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *h = fuzz_cstr(data, size);
    char pub[GW_APIKEY_PUBLIC_LEN + 1], secret[GW_APIKEY_SECRET_LEN + 1];
    bool ok = gw_apikey_parse(h, pub, secret);
    FUZZ_CHECK(ok == well_formed(h)); /* both see the C string (to a NUL) */
    if (ok) {
        char joined[GW_APIKEY_PUBLIC_LEN + GW_APIKEY_SECRET_LEN + 2];
        snprintf(joined, sizeof joined, "%s:%s", pub, secret);
        FUZZ_CHECK(strcmp(joined, h) == 0);
        char d1[GW_APIKEY_DIGEST_LEN + 1], d2[GW_APIKEY_DIGEST_LEN + 1];
        char d3[GW_APIKEY_DIGEST_LEN + 1];
        FUZZ_CHECK(gw_apikey_digest("k", 1, secret, d1));
        FUZZ_CHECK(gw_apikey_digest("k", 1, secret, d2));
        FUZZ_CHECK(strlen(d1) == GW_APIKEY_DIGEST_LEN && hex_run(d1, GW_APIKEY_DIGEST_LEN));
        FUZZ_CHECK(gw_apikey_digest_equal(d1, d2));
        secret[GW_APIKEY_SECRET_LEN - 1] = secret[GW_APIKEY_SECRET_LEN - 1] == '0' ? '1' : '0';
        FUZZ_CHECK(gw_apikey_digest("k", 1, secret, d3));
        FUZZ_CHECK(!gw_apikey_digest_equal(d1, d3));
    }
    free(h);
    return 0;
}
