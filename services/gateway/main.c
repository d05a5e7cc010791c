/* main.c — the gateway: Kortix's HTTP API (under /api), JWT auth, account isolation, SSE run
 * streams and /api/health, in front of the bus and Postgres. This file is the table of
 * contents:
 *
 *   1. kx_svc_init("gateway", 9100)   logging, loop, signals, NATS, health responder, ops port
 *   2. gw_config_load                 KX_* variables (refuses to start without KX_JWT_SECRET);
 *                                     the token and run caches (token_cache.h, run_cache.h),
 *                                     the count of large answers held until read (held.h)
 *   3. Postgres pool + migrations     (migrations run at start, under an advisory lock)
 *   4. kx_bus_ensure_streams          JetStream streams (retried on the loop until NATS is up)
 *   5. the HTTP server (server.c)     routes in routes_*.c, stream.c, health.c; the pool
 *                                     that reads streamed sandbox files (download.h)
 *   5b. kx.run.start / kx.run.stop    runs over NATS (run_nats.c), on a worker pool of its own
 *   5c. the purger                    deleted threads' messages, a batch at a time (purge.h)
 *   6. kx_svc_run                     until SIGTERM
 *   7. drain                          stop accepting, close SSE streams, wait for requests,
 *                                     stop libmicrohttpd, close everything
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "download.h"
#include "gateway.h"
#include "health.h"
#include "held.h"
#include "kx/db.h"
#include "kx/log.h"
#include "kx/svc.h"
#include "purge.h"
#include "run_cache.h"
#include "run_nats.h"
#include "sandbox_routes.h"
#include "server.h"
#include "store.h"
#include "stream.h"
#include "token_cache.h"

#define MIGRATE_WAIT_MS 30000 /* how long to wait for Postgres at start */
#define STREAMS_RETRY_MS 1000
#define DRAIN_POLL_MS 50
#define RUN_CACHE_SLOTS 4096 /* runs whose last GET answer is kept (run_cache.h) */

/* 3. Migrations need Postgres; wait for it a little (it may start after us), then give up so
 * the supervisor restarts the gateway with a clear log line. */
static kx_err migrate(gw_app *app)
{
    int64_t until = kx_mono_ms() + MIGRATE_WAIT_MS;
    for (;;) {
        kx_db *db = kx_db_pool_get(app->pool, kx_deadline_in(app->cfg.db_wait_ms));
        kx_err err = KX_ERR_UNAVAILABLE;
        if (db != NULL) {
            err = kx_db_migrate(db, kx_db_migrations_dir());
            kx_db_pool_put(app->pool, db);
        }
        if (err == KX_OK)
            return KX_OK;
        if (err != KX_ERR_UNAVAILABLE || kx_mono_ms() > until) {
            kx_error("gateway: database migrations failed (%s); see the lines above",
                     kx_err_str(err));
            return err;
        }
        kx_warn("gateway: Postgres not reachable yet; retrying the migrations");
        if (kx_svc_pause(app->svc, 500)) /* SIGTERM meanwhile: stop (exit 0) */
            return err;
    }
}

/* 4. The streams exist as soon as NATS answers; until then publishes fail (and are logged). */
static void ensure_streams(kx_loop *loop, void *arg)
{
    gw_app *app = arg;
    if (kx_bus_ensure_streams(app->svc->bus) == KX_OK) {
        kx_info("gateway: JetStream streams ready");
        return;
    }
    kx_warn("gateway: cannot create the JetStream streams yet; retrying in %d ms",
            STREAMS_RETRY_MS);
    kx_loop_timer(loop, STREAMS_RETRY_MS, ensure_streams, app);
}

static void start_pings(kx_loop *loop, void *arg)
{
    gw_app *app = arg;
    gw_streams_start_pings(app->streams, loop);
}

static bool svc_ready(kx_svc *svc, void *arg, char *why, size_t whylen)
{
    return gw_ready(arg, why, whylen);
}

/* 7. Drain: runs on the loop; polls until every accepted request has completed (the svc's
 * drain timeout exits anyway). */
static void drain_poll(kx_loop *loop, void *arg)
{
    gw_app *app = arg;
    int inflight = gw_server_inflight(app->server);
    if (inflight == 0) {
        kx_info("gateway: drained");
        kx_svc_exit(app->svc);
        return;
    }
    kx_loop_timer(loop, DRAIN_POLL_MS, drain_poll, app);
}

static void on_drain(kx_svc *svc, void *arg)
{
    gw_app *app = arg;
    kx_info("gateway: draining");
    atomic_store(&app->draining, true);
    gw_server_quiesce(app->server);
    gw_run_nats_stop(app->run_nats); /* no new runs over NATS; queued ones are answered */
    gw_streams_stop_pings(app->streams);
    gw_streams_close_all(app->streams);
    drain_poll(svc->loop, app);
}

int main(void)
{
    kx_svc svc;
    if (kx_svc_init(&svc, "gateway", 9100) != KX_OK)
        return 1;
    gw_app app;
    memset(&app, 0, sizeof app);
    app.svc = &svc;
    int rc = 1;

    if (gw_config_load(&app.cfg) != KX_OK)
        goto out_svc;
    app.tokens = gw_token_cache_new((size_t)app.cfg.auth_cache_slots); /* NULL: off */
    app.run_cache = gw_run_cache_new(RUN_CACHE_SLOTS, app.cfg.run_cache_ms);
    app.held = gw_held_new(app.cfg.held_total, app.cfg.held_per_account);
    if (app.held == NULL) {
        kx_error("gateway: out of memory");
        goto out_cfg;
    }
    if (kx_db_pool_new(app.cfg.conninfo, gw_store_statements, app.cfg.db_pool_size, &app.pool) !=
        KX_OK) {
        kx_error("gateway: cannot create the Postgres pool");
        goto out_cfg;
    }
    kx_svc_on_ready(&svc, svc_ready, &app); /* not ready until the API listens */
    if (migrate(&app) != KX_OK) {
        if (kx_svc_draining(&svc))
            rc = 0; /* told to stop while it waited for Postgres */
        goto out_pool;
    }
    app.streams = gw_streams_new(&app);
    if (app.streams == NULL)
        goto out_pool;
    app.downloads = gw_downloads_new(&app);
    if (app.downloads == NULL)
        goto out_streams;
    if (gw_server_start(&app, &app.server) != KX_OK)
        goto out_streams;
    if (gw_run_nats_start(&app, &app.run_nats) != KX_OK)
        goto out_server;

    kx_svc_on_drain(&svc, on_drain, &app);
    if (kx_loop_post(svc.loop, ensure_streams, &app) != KX_OK ||
        kx_loop_post(svc.loop, start_pings, &app) != KX_OK)
        goto out_server;
    if (gw_sandbox_state_start(&app) != KX_OK) /* sandbox_state.c: projects.sandbox */
        goto out_server;
    if ((app.purger = gw_purger_start(&app)) == NULL) /* purge.h: deleted threads' messages */
        goto out_server;
    if (kx_bus_flush(svc.bus, 5000) != KX_OK) /* NATS knows the subscriptions before ready */
        kx_warn("gateway: NATS did not confirm the subscriptions in 5 s; ready anyway");
    atomic_store(&app.listening, true); /* /readyz */
    kx_info("gateway: ready on port %u", (unsigned)gw_server_port(app.server));

    rc = kx_svc_run(&svc);

out_server:
    atomic_store(&app.draining, true);
    gw_server_quiesce(app.server);
    gw_run_nats_stop(app.run_nats); /* before the pool its requests use */
    gw_purger_stop(app.purger);     /* the same */
    gw_streams_stop_pings(app.streams);
    gw_streams_close_all(app.streams);
    gw_streams_abort_all(app.streams); /* what the writers still hold, before the stop */
    gw_downloads_stop(app.downloads);  /* the READs end and resume their connections, first */
    gw_server_free(app.server);
out_streams:
    gw_downloads_free(app.downloads); /* every response freed: no download left */
    gw_streams_free(app.streams);
out_pool:
    gw_sandbox_state_stop();
    kx_db_pool_free(app.pool);
out_cfg:
    gw_config_free(&app.cfg);
out_svc:
    kx_svc_close(&svc);
    gw_run_nats_free(app.run_nats); /* after the bus: no callback can reach it any more */
    gw_run_cache_free(app.run_cache);
    gw_token_cache_free(app.tokens);
    gw_held_free(app.held); /* after the server: its last answers gave their bytes back */
    return rc;
}
