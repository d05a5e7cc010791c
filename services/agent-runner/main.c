/* main.c — the agent-runner: the table of contents of the service.
 *
 *   heap_tune                           malloc keeps its free heap top (heap.c)
 *   kx_svc_init("agent-runner", 9102)   identity, logs, loop, signals, NATS, health, ops HTTP
 *   runner_config_load                  KX_* / provider settings (config.c)
 *   runner_config_check_fds             RLIMIT_NOFILE raised for the capacity, or refuse
 *   kx_db_connect + kx_db_migrate       the schema (a connection of its own, closed after)
 *   kx_bus_ensure_streams               KX_RUN_DISPATCH and KX_RUN_EVENTS exist
 *   kx_curlm_new_shards                 libcurl multis on the loop, for the LLM streams (llm.c)
 *   runner_new                          the instance: held runs, the database threads (rdb.c:
 *                                       claims, a run's batched writes and reads, hand-backs;
 *                                       store.c has every statement), LLM client, async requests
 *   dispatch_start                      the fetcher thread pulling RunDispatch (dispatch.c)
 *   control_subscribe                   STOP on kx.run.ctl.> (control.c)
 *   heartbeat_start                     RunnerHeartbeat on kx.run.hb (heartbeat.c)
 *   kx_svc_run                          the loop; every run is a state machine on it (run.c):
 *                                       its agent (agent_config.c), the thread fitted to the
 *                                       model's budget (context_budget.c), the new project's
 *                                       name after its first run (project_name.c)
 *
 * Drain (SIGTERM): stop fetching dispatches, let the held runs finish until the drain timeout
 * (KX_DRAIN_TIMEOUT_MS); runs still held 500 ms before it are handed back to the queue
 * (runner.c), so another runner continues them and a rolling deploy loses no run. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define LLM_CURL_SHARDS 16

#include "config.h"
#include "control.h"
#include "dispatch.h"
#include "heap.h"
#include "heartbeat.h"
#include "kx/bus.h"
#include "kx/curlm.h"
#include "kx/db.h"
#include "kx/log.h"
#include "kx/svc.h"
#include "project_name.h"
#include "runner.h"
#include "store.h"

typedef struct app {
    kx_svc svc;
    runner_config cfg;
    kx_db *db;
    kx_curlm *curlm;
    runner *runner;
    dispatch *dispatch;
    heartbeat *heartbeat;
} app;

static void on_drain(kx_svc *svc, void *arg)
{
    app *a = arg;
    dispatch_stop(a->dispatch);
    runner_drain(a->runner);
}

static bool on_ready(kx_svc *svc, void *arg, char *why, size_t whylen)
{
    app *a = arg;
    if (a->runner != NULL && !atomic_load(&a->runner->db_ok)) {
        snprintf(why, whylen, "postgres: not reachable");
        return false;
    }
    return true;
}

/* Everything after kx_svc_init; on failure the caller cleans up what was made. */
static kx_err start(app *a)
{
    kx_err err = runner_config_load(&a->cfg);
    if (err == KX_OK)
        err = runner_config_check_fds(&a->cfg); /* RLIMIT_NOFILE for the capacity */
    if (err != KX_OK) {
        kx_error("agent-runner refuses to start: bad configuration (see above)");
        return err;
    }
    kx_info("config: default provider %s, default model %s, fallback %s, %d alias(es), "
            "capacity %lld, max iterations %lld",
            a->cfg.provider_name, a->cfg.model,
            a->cfg.fallback_model[0] ? a->cfg.fallback_model : "(none)", a->cfg.naliases,
            (long long)a->cfg.capacity, (long long)a->cfg.max_iterations);

    err = kx_db_connect(a->cfg.database_url, store_statements(), &a->db);
    if (err != KX_OK && a->db == NULL)
        return err;
    /* the schema must exist before the first claim; Postgres may still be starting */
    while ((err = kx_db_migrate(a->db, kx_db_migrations_dir())) != KX_OK) {
        if (err != KX_ERR_UNAVAILABLE)
            return err;
        kx_warn("db: not reachable yet; retrying the migrations in 1 s");
        if (kx_svc_pause(&a->svc, 1000)) /* SIGTERM meanwhile: stop */
            return err;
    }
    while ((err = kx_bus_ensure_streams(a->svc.bus)) != KX_OK) {
        kx_warn("bus: JetStream streams not ready (%s); retrying in 1 s", kx_err_str(err));
        if (kx_svc_pause(&a->svc, 1000))
            return err;
    }
    /* LLM_CURL_SHARDS multi handles: libcurl walks all of a multi's connections to the model's
     * host for each new stream (kx/curlm.h); with 1 500 streams open that walk was 7 % of
     * the loop thread's time in one multi. */
    if ((err = kx_curlm_new_shards(a->svc.loop, LLM_CURL_SHARDS, &a->curlm)) != KX_OK)
        return err;
    kx_db_close(a->db); /* the runner's own connections live on its database threads */
    a->db = NULL;
    if ((err = runner_new(&a->cfg, &a->svc, a->curlm, &a->runner)) != KX_OK)
        return err;
    if ((err = control_subscribe(a->runner)) != KX_OK)
        return err;
    if ((err = heartbeat_start(a->runner, &a->heartbeat)) != KX_OK)
        return err;
    if ((err = dispatch_start(a->runner, &a->dispatch)) != KX_OK)
        return err;
    kx_svc_on_drain(&a->svc, on_drain, a);
    kx_svc_on_ready(&a->svc, on_ready, a);
    return KX_OK;
}

int main(void)
{
    static app a;
    bool heap_ok = heap_tune(); /* before any thread: every arena gets the thresholds */
    if (kx_svc_init(&a.svc, "agent-runner", 9102) != KX_OK)
        return 1;
    if (!heap_ok)
        kx_warn("malloc: the heap thresholds were refused; glibc's defaults stay");
    int code = 1;
    if (start(&a) == KX_OK)
        code = kx_svc_run(&a.svc);
    else if (kx_svc_draining(&a.svc))
        code = 0; /* told to stop while it waited for Postgres or NATS */
    /* With nats-server gone the fetcher may sit in a JetStream call for ~10 s (making the
     * consumer, then looking it up): closing the connection returns it at once. */
    (void)kx_bus_close_if_down(a.svc.bus);
    dispatch_free(a.dispatch); /* before the bus closes: the subscription is on it */
    if (a.runner != NULL)
        runner_shutdown(a.runner,
                        "handed back: the agent-runner shut down before the run "
                        "finished");
    heartbeat_free(a.heartbeat);
    project_name_cancel_all(); /* naming requests in flight, before the LLM client goes */
    runner_free(a.runner);
    kx_curlm_free(a.curlm);
    kx_svc_close(&a.svc);
    kx_db_close(a.db);
    return code;
}
