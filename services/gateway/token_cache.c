/* token_cache.c — verified bearer tokens (see token_cache.h for what a hit promises).
 *
 * A power-of-two array of slots, direct-mapped by FNV-1a of the token mixed with a random
 * seed drawn at creation (so that nobody can aim tokens at one slot from outside), and one
 * mutex per STRIPES slots. A slot holds its own copy of the token, compared in full with
 * CRYPTO_memcmp so that a near-miss tells nothing by its timing. */
#include "token_cache.h"

#include <openssl/crypto.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "kx/jwt.h"

#define STRIPES 64

typedef struct slot {
    uint64_t hash;
    size_t len;      /* 0: empty */
    char *token;     /* malloc'd copy (NUL-terminated) */
    int64_t exp;     /* the token's exp */
    int64_t until_s; /* verified_at + GW_TOKEN_CACHE_MAX_S */
    char account[KX_UUID_LEN + 1];
} slot;

struct gw_token_cache {
    size_t mask;
    uint64_t seed;
    slot *slots;
    pthread_mutex_t mu[STRIPES];
};

gw_token_cache *gw_token_cache_new(size_t slots)
{
    if (slots == 0)
        return NULL;
    size_t n = 1;
    while (n < slots)
        n <<= 1;
    gw_token_cache *c = calloc(1, sizeof *c);
    if (c == NULL)
        return NULL;
    c->slots = calloc(n, sizeof *c->slots);
    if (c->slots == NULL) {
        free(c);
        return NULL;
    }
    c->mask = n - 1;
    if (getrandom(&c->seed, sizeof c->seed, 0) != (ssize_t)sizeof c->seed)
        c->seed = (uint64_t)(uintptr_t)c ^ 0x9e3779b97f4a7c15ULL; /* still per-process */
    for (int i = 0; i < STRIPES; i++)
        pthread_mutex_init(&c->mu[i], NULL);
    return c;
}

void gw_token_cache_free(gw_token_cache *c)
{
    if (c == NULL)
        return;
    for (size_t i = 0; i <= c->mask; i++)
        free(c->slots[i].token);
    for (int i = 0; i < STRIPES; i++)
        pthread_mutex_destroy(&c->mu[i]);
    free(c->slots);
    free(c);
}

static uint64_t token_hash(const gw_token_cache *c, const char *token, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ULL ^ c->seed;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)token[i];
        h *= 0x100000001b3ULL;
    }
    return h ^ (h >> 29);
}

bool gw_token_cache_get(gw_token_cache *c, const char *token, int64_t now_s,
                        char account[KX_UUID_LEN + 1])
{
    if (c == NULL || token == NULL)
        return false;
    size_t len = strlen(token);
    if (len == 0 || len > GW_TOKEN_CACHE_MAX_TOKEN)
        return false;
    uint64_t h = token_hash(c, token, len);
    size_t i = (size_t)h & c->mask;
    pthread_mutex_t *mu = &c->mu[i % STRIPES];
    bool hit = false;
    pthread_mutex_lock(mu);
    slot *s = &c->slots[i];
    if (s->len == len && s->hash == h && CRYPTO_memcmp(s->token, token, len) == 0) {
        if (now_s - KX_JWT_LEEWAY_S > s->exp || now_s >= s->until_s) {
            free(s->token); /* expired (as kx_jwt_verify would say), or kept long enough */
            memset(s, 0, sizeof *s);
        } else {
            memcpy(account, s->account, KX_UUID_LEN + 1);
            hit = true;
        }
    }
    pthread_mutex_unlock(mu);
    return hit;
}

void gw_token_cache_put(gw_token_cache *c, const char *token, int64_t now_s, int64_t exp,
                        const char *account)
{
    if (c == NULL || token == NULL || account == NULL || strlen(account) != KX_UUID_LEN)
        return;
    size_t len = strlen(token);
    if (len == 0 || len > GW_TOKEN_CACHE_MAX_TOKEN)
        return;
    char *copy = strdup(token);
    if (copy == NULL)
        return;
    uint64_t h = token_hash(c, token, len);
    size_t i = (size_t)h & c->mask;
    pthread_mutex_t *mu = &c->mu[i % STRIPES];
    pthread_mutex_lock(mu);
    slot *s = &c->slots[i];
    char *old = s->token;
    s->token = copy;
    s->len = len;
    s->hash = h;
    s->exp = exp;
    s->until_s = now_s + GW_TOKEN_CACHE_MAX_S;
    memcpy(s->account, account, KX_UUID_LEN + 1);
    pthread_mutex_unlock(mu);
    free(old);
}
