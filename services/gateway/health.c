/* health.c — readiness and GET /api/health (see health.h).
 *
 * /api/health answers 200 {"status": "ok", "timestamp", "instance_id", "parts": {...}} when
 * every part is "ok", else 503 with "status": "degraded" and each failing part's reason. The
 * five service checks run on their own threads so the whole check takes one timeout, not five;
 * "no responders" comes back at once. */
#include "health.h"

#include <jansson.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "kx/log.h"
#include "kx/pb.h"
#include "kx/time.h"
#include "reply.h"
#include "store.h"

static const char *const services[] = {
    "scheduler", "agent-runner", "tool-executor", "sandbox-broker", "mcp-proxy",
};
#define NSERVICES (sizeof services / sizeof services[0])

typedef struct svc_check {
    gw_app *app;
    const char *name;
    char reason[640]; /* "ok", "ok; <notes>" or why not */
} svc_check;

/* "ok", or why Postgres cannot be used now. */
static void check_database(gw_app *app, int64_t timeout_ms, char *out, size_t cap)
{
    kx_db *db = kx_db_pool_get(app->pool, kx_deadline_in(timeout_ms));
    if (db == NULL) {
        snprintf(out, cap, "no database connection within %lld ms", (long long)timeout_ms);
        return;
    }
    kx_err err = gw_store_ping(db);
    if (err == KX_OK)
        snprintf(out, cap, "ok");
    else
        snprintf(out, cap, "SELECT 1 failed: %s", kx_err_str(err));
    kx_db_pool_put(app->pool, db);
}

/* Asks kx.svc.health.<name>; fills c->reason. Runs on its own thread. */
static void *check_service(void *arg)
{
    svc_check *c = arg;
    char subject[96];
    snprintf(subject, sizeof subject, "%s%s", KX_SUBJ_HEALTH_PREFIX, c->name);
    Kx__V1__HealthRequest req = KX__V1__HEALTH_REQUEST__INIT;
    kx_bus_meta meta;
    kx_bus_meta_init(&meta, kx_deadline_in(c->app->cfg.health_timeout_ms), NULL);
    natsMsg *reply = NULL;
    kx_err err = kx_bus_request_pb(c->app->svc->bus, subject, (const ProtobufCMessage *)&req,
                                   &meta, &reply);
    if (err == KX_ERR_UNAVAILABLE) {
        snprintf(c->reason, sizeof c->reason, "unavailable: no instance answers on %s", subject);
        return NULL;
    }
    if (err == KX_ERR_TIMEOUT) {
        snprintf(c->reason, sizeof c->reason, "timeout: no answer within %lld ms",
                 (long long)c->app->cfg.health_timeout_ms);
        return NULL;
    }
    if (err != KX_OK) {
        snprintf(c->reason, sizeof c->reason, "request failed: %s", kx_err_str(err));
        return NULL;
    }
    const char *code = NULL;
    if (natsMsgHeader_Get(reply, KX_HDR_ERROR, &code) == NATS_OK && code != NULL) {
        snprintf(c->reason, sizeof c->reason, "error: %s", code);
        natsMsg_Destroy(reply);
        return NULL;
    }
    Kx__V1__HealthReply *hr =
        kx_pb_unpack(&kx__v1__health_reply__descriptor, natsMsg_GetData(reply),
                     (size_t)natsMsg_GetDataLength(reply));
    if (hr == NULL)
        snprintf(c->reason, sizeof c->reason, "malformed HealthReply");
    else if (!hr->ready)
        snprintf(c->reason, sizeof c->reason, "not ready: %s",
                 kx_pb_str_empty(hr->detail) ? "(no detail)" : hr->detail);
    else if (!kx_pb_str_empty(hr->notes))
        snprintf(c->reason, sizeof c->reason, "ok; %s", hr->notes);
    else
        snprintf(c->reason, sizeof c->reason, "ok");
    kx_pb_free(hr);
    natsMsg_Destroy(reply);
    return NULL;
}

void gw_route_health(gw_app *app, gw_request *req, gw_reply *reply)
{
    svc_check checks[NSERVICES];
    pthread_t threads[NSERVICES];
    bool started[NSERVICES];
    for (size_t i = 0; i < NSERVICES; i++) {
        checks[i].app = app;
        checks[i].name = services[i];
        snprintf(checks[i].reason, sizeof checks[i].reason, "not checked");
        started[i] = pthread_create(&threads[i], NULL, check_service, &checks[i]) == 0;
    }
    char db_reason[256];
    check_database(app, app->cfg.health_timeout_ms, db_reason, sizeof db_reason);
    for (size_t i = 0; i < NSERVICES; i++) {
        if (started[i])
            pthread_join(threads[i], NULL);
        else
            check_service(&checks[i]); /* no thread to spare: ask inline */
    }

    bool ok = strcmp(db_reason, "ok") == 0;
    json_t *parts = json_object();
    json_object_set_new(parts, "database", json_string(db_reason));
    bool nats_ok = kx_bus_connected(app->svc->bus);
    ok = ok && nats_ok;
    json_object_set_new(parts, "nats", json_string(nats_ok ? "ok" : "not connected"));
    for (size_t i = 0; i < NSERVICES; i++) {
        ok = ok && strncmp(checks[i].reason, "ok", 2) == 0 &&
            (checks[i].reason[2] == '\0' || checks[i].reason[2] == ';');
        json_object_set_new(parts, services[i], json_string(checks[i].reason));
    }
    char ts[48];
    kx_time_iso(ts, sizeof ts, kx_now_us());
    gw_reply_json(reply, ok ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE,
                  json_pack("{s:s, s:s, s:s, s:o}", "status", ok ? "ok" : "degraded", "timestamp",
                            ts, "instance_id", app->svc->instance_id, "parts", parts));
}

bool gw_ready(void *arg, char *why, size_t whylen)
{
    gw_app *app = arg;
    if (atomic_load(&app->draining)) {
        snprintf(why, whylen, "draining");
        return false;
    }
    if (!atomic_load(&app->listening)) {
        snprintf(why, whylen, "not started yet (migrations, API, NATS subscriptions)");
        return false;
    }
    if (!kx_bus_connected(app->svc->bus)) {
        snprintf(why, whylen, "NATS not connected");
        return false;
    }
    char reason[256];
    check_database(app, 250, reason, sizeof reason);
    if (strcmp(reason, "ok") != 0) {
        snprintf(why, whylen, "database: %s", reason);
        return false;
    }
    return true;
}
