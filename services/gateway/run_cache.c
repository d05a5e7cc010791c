/* run_cache.c — recent GET /api/agent-run/{id} answers (see run_cache.h for what a hit
 * promises). Direct-mapped slots by a hash of the run id; a slot keeps its generation across
 * evictions, so a put checks that nothing dropped the slot since its ticket was taken (an
 * eviction by another run also bumps it: a lost put, never a stale one).
 *
 * Refresh ahead: the first request of the owner that finds an entry past half its TTL is let
 * through to the database (a miss) and its answer replaces the entry, while the others keep
 * hitting it until the TTL. A run polled without pause is so read about twice per TTL, and the
 * requests do not all miss together when an entry expires. */
#include "run_cache.h"

#include <microhttpd.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "kx/metrics.h"
#include "kx/time.h"

#define STRIPES 64

typedef struct slot {
    uint64_t gen; /* bumped by every drop and every replacement */
    bool used;
    char run_id[KX_UUID_LEN + 1];
    char account[KX_UUID_LEN + 1];
    int64_t read_us; /* when the read that filled it started */
    bool refreshing; /* past half its life, one request was sent to read it again */
    char *body;
} slot;

struct gw_run_cache {
    size_t mask;
    int64_t ttl_us;
    kx_counter *hits, *misses; /* kx_gateway_run_cache_total{result} */
    slot *slots;
    pthread_mutex_t mu[STRIPES];
};

gw_run_cache *gw_run_cache_new(size_t slots, int64_t ttl_ms)
{
    if (slots == 0 || ttl_ms <= 0)
        return NULL;
    size_t n = 1;
    while (n < slots)
        n <<= 1;
    gw_run_cache *c = calloc(1, sizeof *c);
    if (c == NULL)
        return NULL;
    c->slots = calloc(n, sizeof *c->slots);
    if (c->slots == NULL) {
        free(c);
        return NULL;
    }
    c->mask = n - 1;
    c->ttl_us = ttl_ms * 1000;
    c->hits = kx_metrics_counter("kx_gateway_run_cache_total", "result=\"hit\"",
                                 "GET /api/agent-run/{id} answered from the cache, or not");
    c->misses = kx_metrics_counter("kx_gateway_run_cache_total", "result=\"miss\"",
                                   "GET /api/agent-run/{id} answered from the cache, or not");
    for (int i = 0; i < STRIPES; i++)
        pthread_mutex_init(&c->mu[i], NULL);
    return c;
}

void gw_run_cache_free(gw_run_cache *c)
{
    if (c == NULL)
        return;
    for (size_t i = 0; i <= c->mask; i++)
        free(c->slots[i].body);
    for (int i = 0; i < STRIPES; i++)
        pthread_mutex_destroy(&c->mu[i]);
    free(c->slots);
    free(c);
}

static size_t slot_of(const gw_run_cache *c, const char *run_id)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (const char *p = run_id; *p != '\0'; p++) {
        h ^= (unsigned char)*p;
        h *= 0x100000001b3ULL;
    }
    return (size_t)(h ^ (h >> 31)) & c->mask;
}

/* Empties s (its stripe locked). */
static void drop(slot *s)
{
    free(s->body);
    s->body = NULL;
    s->used = false;
    s->gen++;
}

gw_run_cache_ticket gw_run_cache_begin(gw_run_cache *c, const char *run_id)
{
    gw_run_cache_ticket t = {0};
    if (c == NULL || run_id == NULL || strlen(run_id) != KX_UUID_LEN)
        return t;
    size_t i = slot_of(c, run_id);
    pthread_mutex_lock(&c->mu[i % STRIPES]);
    t.gen = c->slots[i].gen;
    pthread_mutex_unlock(&c->mu[i % STRIPES]);
    t.started_us = kx_mono_us();
    t.valid = true;
    return t;
}

void gw_run_cache_put(gw_run_cache *c, const gw_run_cache_ticket *t, const char *run_id,
                      const char *account, const char *body)
{
    if (c == NULL || t == NULL || !t->valid || body == NULL || account == NULL ||
        strlen(account) != KX_UUID_LEN || strlen(run_id) != KX_UUID_LEN)
        return;
    char *copy = strdup(body);
    if (copy == NULL)
        return;
    size_t i = slot_of(c, run_id);
    pthread_mutex_lock(&c->mu[i % STRIPES]);
    slot *s = &c->slots[i];
    if (s->gen == t->gen) {
        drop(s); /* frees what was there (another run's answer, or an older one) */
        s->used = true;
        memcpy(s->run_id, run_id, KX_UUID_LEN + 1);
        memcpy(s->account, account, KX_UUID_LEN + 1);
        s->read_us = t->started_us;
        s->refreshing = false;
        s->body = copy;
        copy = NULL;
    }
    pthread_mutex_unlock(&c->mu[i % STRIPES]);
    free(copy); /* dropped meanwhile: what was read may predate the change */
}

char *gw_run_cache_get(gw_run_cache *c, const char *run_id, const char *account, int64_t now_us)
{
    if (c == NULL || run_id == NULL || account == NULL || strlen(run_id) != KX_UUID_LEN ||
        strlen(account) != KX_UUID_LEN)
        return NULL;
    size_t i = slot_of(c, run_id);
    char *out = NULL;
    pthread_mutex_lock(&c->mu[i % STRIPES]);
    slot *s = &c->slots[i];
    if (s->used && strcmp(s->run_id, run_id) == 0) {
        if (now_us - s->read_us >= c->ttl_us) {
            free(s->body); /* too old: emptied, but not a change (no generation bump) */
            s->body = NULL;
            s->used = false;
        } else if (strcmp(s->account, account) == 0) {
            if (!s->refreshing && now_us - s->read_us >= c->ttl_us / 2)
                s->refreshing = true; /* this one reads it again; the others still hit */
            else
                out = strdup(s->body); /* NULL on OOM: the full path answers */
        }
    }
    pthread_mutex_unlock(&c->mu[i % STRIPES]);
    kx_counter *count = out != NULL ? c->hits : c->misses;
    if (count != NULL)
        kx_counter_add(count, 1);
    return out;
}

void gw_run_cache_invalidate(gw_run_cache *c, const char *run_id)
{
    if (c == NULL || run_id == NULL || strlen(run_id) != KX_UUID_LEN)
        return;
    size_t i = slot_of(c, run_id);
    pthread_mutex_lock(&c->mu[i % STRIPES]);
    slot *s = &c->slots[i];
    /* Whether or not it holds run_id: a read of run_id in flight has this slot's generation. */
    drop(s);
    pthread_mutex_unlock(&c->mu[i % STRIPES]);
}

bool gw_route_run_get_cached(gw_app *app, gw_request *req, gw_reply *reply)
{
    if (req->account[0] == '\0')
        return false;
    char *body = gw_run_cache_get(app->run_cache, req->id, req->account, kx_mono_us());
    if (body == NULL)
        return false;
    reply->status = MHD_HTTP_OK;
    reply->body = body;
    return true;
}
