/* apikey.c — API keys' text form, generation and digest (see apikey.h). */
#include "apikey.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <string.h>

static bool hex_run(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return true;
}

bool gw_apikey_parse(const char *header, char pub[GW_APIKEY_PUBLIC_LEN + 1],
                     char secret[GW_APIKEY_SECRET_LEN + 1])
{
    if (header == NULL || strlen(header) != GW_APIKEY_PUBLIC_LEN + 1 + GW_APIKEY_SECRET_LEN)
        return false;
    const char *s = header + GW_APIKEY_PUBLIC_LEN + 1;
    if (strncmp(header, "pk_", 3) != 0 || !hex_run(header + 3, GW_APIKEY_PUBLIC_LEN - 3) ||
        header[GW_APIKEY_PUBLIC_LEN] != ':' || strncmp(s, "sk_", 3) != 0 ||
        !hex_run(s + 3, GW_APIKEY_SECRET_LEN - 3))
        return false;
    memcpy(pub, header, GW_APIKEY_PUBLIC_LEN);
    pub[GW_APIKEY_PUBLIC_LEN] = '\0';
    memcpy(secret, s, GW_APIKEY_SECRET_LEN);
    secret[GW_APIKEY_SECRET_LEN] = '\0';
    return true;
}

static void to_hex(const unsigned char *b, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[b[i] >> 4];
        out[2 * i + 1] = digits[b[i] & 15];
    }
    out[2 * n] = '\0';
}

bool gw_apikey_generate(char pub[GW_APIKEY_PUBLIC_LEN + 1], char secret[GW_APIKEY_SECRET_LEN + 1])
{
    unsigned char p[16], s[32];
    if (RAND_bytes(p, sizeof p) != 1 || RAND_bytes(s, sizeof s) != 1)
        return false;
    memcpy(pub, "pk_", 4); /* with its NUL; the hex goes after it */
    to_hex(p, sizeof p, pub + 3);
    memcpy(secret, "sk_", 4);
    to_hex(s, sizeof s, secret + 3);
    OPENSSL_cleanse(s, sizeof s);
    return true;
}

bool gw_apikey_digest(const char *key, size_t key_len, const char *secret,
                      char digest[GW_APIKEY_DIGEST_LEN + 1])
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (HMAC(EVP_sha256(), key, (int)key_len, (const unsigned char *)secret, strlen(secret), mac,
             &len) == NULL ||
        len != GW_APIKEY_DIGEST_LEN / 2)
        return false;
    to_hex(mac, len, digest);
    return true;
}

bool gw_apikey_digest_equal(const char *a, const char *b)
{
    return strlen(a) == GW_APIKEY_DIGEST_LEN && strlen(b) == GW_APIKEY_DIGEST_LEN &&
        CRYPTO_memcmp(a, b, GW_APIKEY_DIGEST_LEN) == 0;
}
