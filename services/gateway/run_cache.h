/* run_cache.h — recent answers of GET /api/agent-run/{id}, so that a run polled by many
 * clients (or one client in a tight loop) is answered on the HTTP thread, with no hand-off to a
 * worker and no Postgres round trip.
 *
 * What a hit promises:
 *   - it is never another account's: an entry holds the run's account and is served only to a
 *     request authenticated as that account (any other request takes the full path: the
 *     database decides, 404 as before);
 *   - it is at most KX_RUN_CACHE_MS old (default 100 ms), counted from *before* the read that
 *     filled it started, so the status a client sees lags Postgres by at most that;
 *   - what this gateway learns of a change drops the entry at once: its own stop of the run
 *     (publish.c) and every event of the run reaching one of its feeds (feed.c: a runner's
 *     status and terminal events). A read that started before such a drop never refills the
 *     entry with what it read (a per-slot generation, taken before the read, must still match).
 * Past half its life, one request of the owner is sent to the database to refresh the entry (the
 * others still hit it). KX_RUN_CACHE_MS=0 turns the cache off (every GET reads Postgres).
 *
 * Thread-safe (striped mutexes, direct-mapped slots); owned by gw_app. */
#ifndef GW_RUN_CACHE_H
#define GW_RUN_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gateway.h"
#include "kx/uuid.h"

typedef struct gw_run_cache gw_run_cache;

/* Taken before the read whose result may be put (gw_run_cache_begin). */
typedef struct gw_run_cache_ticket {
    uint64_t gen;
    int64_t started_us;
    bool valid;
} gw_run_cache_ticket;

/* slots: entries kept (a power of two at least); ttl_ms <= 0 or slots 0: NULL (off). */
gw_run_cache *gw_run_cache_new(size_t slots, int64_t ttl_ms);
void gw_run_cache_free(gw_run_cache *c);

gw_run_cache_ticket gw_run_cache_begin(gw_run_cache *c, const char *run_id);
/* Keeps body (the answer's JSON text, copied) for run_id of account, unless the entry was
 * dropped since ticket was taken. */
void gw_run_cache_put(gw_run_cache *c, const gw_run_cache_ticket *t, const char *run_id,
                      const char *account, const char *body);
/* A malloc'd copy of the answer for run_id if one is fresh at now_us and belongs to account;
 * NULL otherwise. */
char *gw_run_cache_get(gw_run_cache *c, const char *run_id, const char *account, int64_t now_us);
/* Drops run_id's entry and makes reads in flight unable to put theirs. */
void gw_run_cache_invalidate(gw_run_cache *c, const char *run_id);

/* The fast path of GET /api/agent-run/{id} (route.h): answers from the cache on the HTTP
 * thread and returns true, or returns false for the worker to run gw_route_run_get. */
bool gw_route_run_get_cached(gw_app *app, gw_request *req, gw_reply *reply);

#endif
