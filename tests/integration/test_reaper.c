/* test_reaper.c — the scheduler against a private PostgreSQL and nats-server:
 *   - a RunSubmit for a queued run becomes a RunDispatch (attempt, wall deadline) and sets
 *     dispatched_at; a submit for a run that is not queued dispatches nothing;
 *   - a heartbeat renews the runner's one lease row (its size does not grow with the runs it
 *     holds); a run kept alive by its runner's heartbeats is not reaped, and is reaped once
 *     they stop; the answer lists the leases the runner lost (a stop), with their new epoch;
 *   - the reaper fails a running run whose lease expired on its last attempt: status, error,
 *     epoch + 1, a STOP on kx.run.ctl.<id> and the terminal event on kx.run.ev.<id>; a run
 *     with attempts left goes back to queued, with a non-terminal "retried" event carrying
 *     the new epoch and a new dispatch; and a run past its wall time fails;
 *   - the sweep dispatches queued runs nobody dispatched, and ones whose dispatch was lost,
 *     but not ones whose dispatch still waits in the stream;
 *   - with Postgres down, a submit's run is dispatched once Postgres is back (admission
 *     after a reaper tick);
 *   - a submit made while no scheduler runs (kx.run.submit is core: lost) still has its run
 *     dispatched by the next scheduler; no KX_RUN_SUBMIT stream exists. */
#include <jansson.h>
#include <libpq-fe.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"
#include "kx/bus.h"
#include "kx/http.h"
#include "kx/pb.h"
#include "kx/time.h"
#include "kx/uuid.h"
#include "sandbox_client.h"

#define LEASE_TTL_MS 1000
#define REAPER_MS 200
#define SWEEP_MS 500
#define WALL_S 3600

static char *g_tmp;
static kx_th_nats g_nats;
static kx_th_pg g_pg;
static pid_t g_sched;
static kx_bus *g_bus;
static PGconn *g_db;
static natsSubscription *g_dispatch_sub; /* pull consumer "agent-runners" */
/* Every dispatch fetched so far (acked), so that waiting for one run does not lose another
 * that came in the same batch. */
#define MAX_SEEN 256
static Kx__V1__RunDispatch *g_seen[MAX_SEEN];
static size_t g_nseen;
static char g_account[KX_UUID_LEN + 1], g_project[KX_UUID_LEN + 1], g_thread[KX_UUID_LEN + 1];

/* ---- setup ---------------------------------------------------------------------------- */

static void sql(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void sql(const char *fmt, ...)
{
    char q[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(q, sizeof q, fmt, ap);
    va_end(ap);
    PGresult *r = PQexec(g_db, q);
    if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK)
        fail_msg("SQL failed: %s\n%s", q, PQerrorMessage(g_db));
    PQclear(r);
}

/* The first column of the first row of a query, into out ("" for NULL). */
static void sql_value(char *out, size_t outlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void sql_value(char *out, size_t outlen, const char *fmt, ...)
{
    char q[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(q, sizeof q, fmt, ap);
    va_end(ap);
    PGresult *r = PQexec(g_db, q);
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) < 1)
        fail_msg("SQL failed or no row: %s\n%s", q, PQerrorMessage(g_db));
    snprintf(out, outlen, "%s", PQgetisnull(r, 0, 0) ? "" : PQgetvalue(r, 0, 0));
    PQclear(r);
}

static uint16_t g_sched_port; /* the running scheduler's KX_HEALTH_PORT (/metrics) */

static pid_t start_scheduler_with(int reaper_ms)
{
    uint16_t port = kx_th_free_port();
    g_sched_port = port;
    char port_env[64], nats_env[128], db_env[320], log_path[600], url[128], bin[512];
    char ttl[64], reaper[64], sweep[64], wall[64];
    snprintf(port_env, sizeof port_env, "KX_HEALTH_PORT=%u", port);
    snprintf(nats_env, sizeof nats_env, "KX_NATS_URL=%s", g_nats.url);
    snprintf(db_env, sizeof db_env, "KX_DATABASE_URL=%s", g_pg.url);
    snprintf(ttl, sizeof ttl, "KX_LEASE_TTL_MS=%d", LEASE_TTL_MS);
    snprintf(reaper, sizeof reaper, "KX_REAPER_INTERVAL_MS=%d", reaper_ms);
    snprintf(sweep, sizeof sweep, "KX_SWEEP_INTERVAL_MS=%d", SWEEP_MS);
    snprintf(wall, sizeof wall, "KX_RUN_WALL_TIME_S=%d", WALL_S);
    snprintf(log_path, sizeof log_path, "%s/scheduler.log", g_tmp);
    snprintf(bin, sizeof bin, "%s/services/scheduler/scheduler", KX_BUILD_DIR);
    const char *env[] = {port_env,
                         nats_env,
                         db_env,
                         ttl,
                         reaper,
                         sweep,
                         wall,
                         "KX_MAX_PARALLEL_RUNS=1000",
                         "KX_LOG_LEVEL=debug",
                         NULL};
    const char *argv[] = {bin, NULL};
    pid_t pid = 0;
    if (kx_th_spawn(argv, env, log_path, &pid) != KX_OK)
        return 0;
    snprintf(url, sizeof url, "http://127.0.0.1:%u/readyz", port);
    if (kx_th_wait_http(url, 20000) != KX_OK) {
        kx_th_kill(pid);
        return 0;
    }
    return pid;
}

static pid_t start_scheduler(void)
{
    return start_scheduler_with(REAPER_MS);
}

static int group_setup(void **state)
{
    if (nats_Open(-1) != NATS_OK)
        return -1;
    g_tmp = kx_th_tmpdir("kx-it-reaper");
    if (g_tmp == NULL || kx_th_nats_start(g_tmp, &g_nats) != KX_OK ||
        kx_th_pg_start(g_tmp, &g_pg) != KX_OK)
        return -1;
    g_sched = start_scheduler(); /* migrates the schema and creates the streams */
    if (g_sched == 0)
        return -1;
    g_db = PQconnectdb(g_pg.url);
    if (PQstatus(g_db) != CONNECTION_OK)
        return -1;
    if (kx_bus_connect(g_nats.url, "it-reaper", &g_bus) != KX_OK)
        return -1;
    for (int i = 0; i < 500 && !kx_bus_connected(g_bus); i++)
        usleep(10 * 1000);
    /* The scheduler's /readyz can answer before it has migrated the schema and created the
     * streams (seen under load: "stream not found" below, then failed inserts). Wait for the
     * schema; creating the streams here too is idempotent. */
    for (int i = 0; i < 200; i++) {
        PGresult *probe = PQexec(g_db, "SELECT 1 FROM threads LIMIT 1");
        bool migrated = PQresultStatus(probe) == PGRES_TUPLES_OK;
        PQclear(probe);
        if (migrated)
            break;
        usleep(100 * 1000);
    }
    for (int i = 0; i < 100 && kx_bus_ensure_streams(g_bus) != KX_OK; i++)
        usleep(20 * 1000);
    /* Play the agent-runners' pull consumer, to read what the scheduler dispatches. The
     * streams the scheduler created can take a moment to show to another connection on a
     * loaded machine (seen: ~400 ms): retried for up to 10 s. */
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = KX_STREAM_DISPATCH;
    natsStatus ps = NATS_ERR;
    for (int i = 0; i < 100 && ps != NATS_OK; i++) {
        ps = js_PullSubscribe(&g_dispatch_sub, kx_bus_js(g_bus), KX_SUBJ_RUN_DISPATCH,
                              KX_CONSUMER_RUNNERS, NULL, &so, NULL);
        if (ps != NATS_OK)
            usleep(100 * 1000);
    }
    if (ps != NATS_OK) {
        fprintf(stderr, "setup: cannot pull-subscribe to %s: %s\n", KX_SUBJ_RUN_DISPATCH,
                natsStatus_GetText(ps));
        return -1;
    }
    kx_uuid_new(g_account);
    kx_uuid_new(g_project);
    kx_uuid_new(g_thread);
    PGresult *r =
        PQexecParams(g_db,
                     "INSERT INTO projects (project_id, name, account_id) "
                     "VALUES ($1, 'p', $2)",
                     2, NULL, (const char *const[]){g_project, g_account}, NULL, NULL, 0);
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    r = PQexecParams(g_db,
                     "INSERT INTO threads (thread_id, account_id, project_id) "
                     "VALUES ($1, $2, $3)",
                     3, NULL, (const char *const[]){g_thread, g_account, g_project}, NULL, NULL,
                     0);
    ok = ok && PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    if (!ok)
        fprintf(stderr, "setup: cannot create the project and thread: %s\n", PQerrorMessage(g_db));
    return ok ? 0 : -1;
}

static int group_teardown(void **state)
{
    if (g_dispatch_sub != NULL)
        natsSubscription_Destroy(g_dispatch_sub);
    while (g_nseen > 0)
        kx_pb_free(g_seen[--g_nseen]);
    kx_bus_close(g_bus, 1000);
    if (g_db != NULL)
        PQfinish(g_db);
    if (g_sched > 0)
        kx_th_kill(g_sched);
    kx_th_pg_stop(&g_pg);
    kx_th_nats_stop(&g_nats);
    kx_th_rmrf(g_tmp);
    free(g_tmp);
    return 0;
}

/* ---- helpers -------------------------------------------------------------------------- */

/* A new run row, on a thread of its own (g_thread becomes that thread: the scheduler admits one
 * active run per thread), with the given extra column assignments, e.g. "status, started_at" /
 * "'running', now()". Returns its id in out. */
static void insert_run(char out[KX_UUID_LEN + 1], const char *cols, const char *vals)
{
    kx_uuid_new(g_thread);
    sql("INSERT INTO threads (thread_id, account_id, project_id) VALUES ('%s', '%s', '%s')",
        g_thread, g_account, g_project);
    kx_uuid_new(out);
    sql("INSERT INTO agent_runs (id, thread_id, account_id, project_id%s%s) "
        "VALUES ('%s', '%s', '%s', '%s'%s%s)",
        cols[0] ? ", " : "", cols, out, g_thread, g_account, g_project, vals[0] ? ", " : "", vals);
}

static void submit(const char *run_id)
{
    /* a core publish, as the gateway's (kx.run.submit is not stored: issue 12) */
    assert_int_equal(kx_th_run_submit(g_bus, run_id, g_thread, g_account), KX_OK);
}

/* Removes and returns the seen dispatch for run_id, or NULL. */
static Kx__V1__RunDispatch *take_seen(const char *run_id)
{
    for (size_t i = 0; i < g_nseen; i++) {
        if (strcmp(g_seen[i]->run_id, run_id) == 0) {
            Kx__V1__RunDispatch *d = g_seen[i];
            g_seen[i] = g_seen[--g_nseen];
            return d;
        }
    }
    return NULL;
}

/* Fetches (and acks) dispatches until one for run_id has arrived or timeout_ms passes.
 * Returns it (kx_pb_free) or NULL. */
static Kx__V1__RunDispatch *wait_dispatch(const char *run_id, int64_t timeout_ms)
{
    int64_t end = kx_mono_ms() + timeout_ms;
    Kx__V1__RunDispatch *found = take_seen(run_id);
    while (found == NULL && kx_mono_ms() < end) {
        natsMsgList list = {0};
        natsStatus st = natsSubscription_Fetch(&list, g_dispatch_sub, 16, 200, NULL);
        for (int i = 0; st == NATS_OK && i < list.Count; i++) {
            natsMsg_Ack(list.Msgs[i], NULL);
            Kx__V1__RunDispatch *d =
                kx_pb_unpack(&kx__v1__run_dispatch__descriptor, natsMsg_GetData(list.Msgs[i]),
                             (size_t)natsMsg_GetDataLength(list.Msgs[i]));
            if (d != NULL && g_nseen < MAX_SEEN)
                g_seen[g_nseen++] = d;
            else
                kx_pb_free(d);
        }
        natsMsgList_Destroy(&list);
        found = take_seen(run_id);
    }
    return found;
}

/* One heartbeat request of runner; returns the answer (kx_pb_free) or NULL. */
static Kx__V1__RunnerHeartbeatAnswer *heartbeat(const char *runner, int64_t since_ms)
{
    Kx__V1__RunnerHeartbeat hb = KX__V1__RUNNER_HEARTBEAT__INIT;
    hb.runner_id = (char *)runner;
    hb.sent_at_ms = kx_now_ms();
    hb.capacity = 10;
    hb.held = 100000;
    hb.revoked_since_ms = since_ms;
    /* O(1): the message does not list the runs held */
    assert_true(protobuf_c_message_get_packed_size(&hb.base) < 128);
    return kx_th_bus_ask(g_bus, KX_SUBJ_RUN_HB, &hb.base, NULL, 2000,
                         &kx__v1__runner_heartbeat_answer__descriptor, NULL, NULL);
}

static bool wait_status(const char *run_id, const char *want, int64_t timeout_ms)
{
    int64_t end = kx_mono_ms() + timeout_ms;
    char status[32];
    do {
        sql_value(status, sizeof status, "SELECT status FROM agent_runs WHERE id = '%s'", run_id);
        if (strcmp(status, want) == 0)
            return true;
        usleep(20 * 1000);
    } while (kx_mono_ms() < end);
    return false;
}

/* ---- tests ---------------------------------------------------------------------------- */

static void test_submit_dispatches_queued_run(void **state)
{
    char run[KX_UUID_LEN + 1];
    insert_run(run, "", "");
    int64_t before = kx_now_ms();
    submit(run);
    Kx__V1__RunDispatch *d = wait_dispatch(run, 3000);
    assert_non_null(d);
    assert_string_equal(d->thread_id, g_thread);
    assert_string_equal(d->account_id, g_account);
    assert_string_equal(d->project_id, g_project);
    assert_int_equal(d->attempt, 1);
    assert_in_range(d->wall_deadline_ms, before + WALL_S * 1000LL, kx_now_ms() + WALL_S * 1000LL);
    kx_pb_free(d);
    char v[64];
    sql_value(v, sizeof v, "SELECT dispatched_at IS NOT NULL FROM agent_runs WHERE id = '%s'",
              run);
    assert_string_equal(v, "t");

    /* Not queued any more (a runner has it): a second submit dispatches nothing. */
    sql("UPDATE agent_runs SET status = 'running', started_at = now(), lease_epoch = 1, "
        "lease_owner = 'r', lease_expires_at = now() + interval '1 hour' WHERE id = '%s'",
        run);
    submit(run);
    d = wait_dispatch(run, 1000);
    assert_null(d);
    sql("UPDATE agent_runs SET status = 'completed', lease_expires_at = NULL WHERE id = '%s'",
        run);

    /* An invalid submit is dropped without harming the subscription. */
    Kx__V1__RunSubmit rs = KX__V1__RUN_SUBMIT__INIT;
    rs.run_id = "not-a-uuid";
    kx_bus_meta meta;
    kx_bus_meta_init(&meta, kx_deadline_in(5000), g_account);
    assert_int_equal(kx_bus_publish_pb(g_bus, KX_SUBJ_RUN_SUBMIT, &rs.base, &meta), KX_OK);
    insert_run(run, "", "");
    submit(run);
    d = wait_dispatch(run, 3000);
    assert_non_null(d);
    kx_pb_free(d);
    sql("UPDATE agent_runs SET status = 'stopped' WHERE id = '%s'", run);
}

static void test_heartbeats_renew_the_runner_lease(void **state)
{
    char run[KX_UUID_LEN + 1], stopped[KX_UUID_LEN + 1];
    insert_run(run, "status, started_at, lease_owner, lease_epoch, lease_expires_at, attempt",
               "'running', now(), 'runner-a', 5, now() + interval '300 milliseconds', 2");
    insert_run(stopped, "status, started_at, lease_owner, lease_epoch, lease_expires_at",
               "'running', now(), 'runner-a', 7, now() + interval '300 milliseconds'");
    int64_t since = kx_now_ms() - 1000;
    /* Kept alive for 2 s (twice the TTL) by heartbeats every 200 ms. */
    for (int i = 0; i < 10; i++) {
        Kx__V1__RunnerHeartbeatAnswer *a = heartbeat("runner-a", since);
        assert_non_null(a);
        assert_true(a->applied);
        assert_int_equal(a->n_revoked, 0);
        assert_true(a->watermark_ms > 0);
        kx_pb_free(a);
        usleep(200 * 1000);
    }
    char status[32];
    sql_value(status, sizeof status, "SELECT status FROM agent_runs WHERE id = '%s'", run);
    assert_string_equal(status, "running");
    char v[64];
    sql_value(v, sizeof v,
              "SELECT (extract(epoch FROM expires_at - now()) * 1000)::bigint "
              "FROM runner_leases WHERE runner_id = 'runner-a'");
    assert_in_range(strtoll(v, NULL, 10), 500, LEASE_TTL_MS);
    /* One lease row per runner, however many runs it holds. */
    sql_value(v, sizeof v, "SELECT count(*) FROM runner_leases WHERE runner_id = 'runner-a'");
    assert_string_equal(v, "1");

    /* The user stops one run: the next answer says the runner lost it, at epoch 8. */
    sql("UPDATE agent_runs SET status = 'stopped', lease_epoch = lease_epoch + 1 "
        "WHERE id = '%s'",
        stopped);
    Kx__V1__RunnerHeartbeatAnswer *a = heartbeat("runner-a", since);
    assert_non_null(a);
    assert_int_equal(a->n_revoked, 1);
    assert_string_equal(a->revoked[0]->run_id, stopped);
    assert_int_equal(a->revoked[0]->lease_epoch, 8);
    /* Asked from after that, it is not repeated. */
    int64_t later = a->watermark_ms + 1;
    kx_pb_free(a);
    a = heartbeat("runner-a", later);
    assert_non_null(a);
    assert_int_equal(a->n_revoked, 0);
    kx_pb_free(a);
    /* Another runner's heartbeat does not keep runner-a's runs alive. */
    for (int i = 0; i < 8; i++) {
        kx_pb_free(heartbeat("runner-b", since));
        usleep(200 * 1000);
    }
    /* runner-a's heartbeats stopped: its last-attempt run fails within the TTL plus a few
     * reaper intervals. */
    assert_true(wait_status(run, "failed", LEASE_TTL_MS + 5 * REAPER_MS));
    char err[256];
    sql_value(err, sizeof err, "SELECT error FROM agent_runs WHERE id = '%s'", run);
    assert_non_null(strstr(err, "reaped: runner runner-a stopped heartbeating at 20"));
}

/* STOP messages seen on kx.run.ctl.> */
typedef struct ctl_seen {
    atomic_int count;
    char run_id[64];
    char reason[256];
    int64_t epoch;
    int signal;
} ctl_seen;

static void on_ctl(natsMsg *msg, void *arg)
{
    ctl_seen *c = arg;
    Kx__V1__RunControl *rc = kx_pb_unpack(&kx__v1__run_control__descriptor, natsMsg_GetData(msg),
                                          (size_t)natsMsg_GetDataLength(msg));
    if (rc != NULL) {
        snprintf(c->run_id, sizeof c->run_id, "%s", rc->run_id);
        snprintf(c->reason, sizeof c->reason, "%s", rc->reason);
        c->epoch = rc->lease_epoch;
        c->signal = rc->signal;
        atomic_fetch_add(&c->count, 1);
    }
    kx_pb_free(rc);
    natsMsg_Destroy(msg);
}

/* The last event of a run from the KX_RUN_EVENTS stream (kx_pb_free), polling up to
 * timeout_ms. */
static Kx__V1__RunEvent *last_event(const char *run_id, int64_t timeout_ms)
{
    char subject[128];
    snprintf(subject, sizeof subject, "%s%s", KX_SUBJ_RUN_EV_PREFIX, run_id);
    int64_t end = kx_mono_ms() + timeout_ms;
    do {
        natsMsg *m = NULL;
        if (js_GetLastMsg(&m, kx_bus_js(g_bus), KX_STREAM_EVENTS, subject, NULL, NULL) ==
            NATS_OK) {
            Kx__V1__RunEvent *ev = kx_pb_unpack(&kx__v1__run_event__descriptor, natsMsg_GetData(m),
                                                (size_t)natsMsg_GetDataLength(m));
            natsMsg_Destroy(m);
            return ev;
        }
        usleep(20 * 1000);
    } while (kx_mono_ms() < end);
    return NULL;
}

static void test_reaper_fails_expired_lease(void **state)
{
    static ctl_seen ctl;
    natsSubscription *sub = NULL;
    assert_int_equal(kx_bus_subscribe(g_bus, KX_SUBJ_RUN_CTL_PREFIX ">", NULL, on_ctl, &ctl, &sub),
                     KX_OK);
    natsConnection_Flush(kx_bus_conn(g_bus));

    char run[KX_UUID_LEN + 1];
    int64_t t0 = kx_mono_ms();
    insert_run(run,
               "status, started_at, lease_owner, lease_epoch, lease_expires_at, attempt, "
               "heartbeat_at",
               "'running', now() - interval '1 minute', 'runner-dead', 3, "
               "now() - interval '1 second', 2, '2026-01-02 03:04:05.678+00'");
    assert_true(wait_status(run, "failed", 3 * REAPER_MS + 500));
    assert_true(kx_mono_ms() - t0 < 3 * REAPER_MS + 500);

    PGresult *r = PQexecParams(g_db,
                               "SELECT error, lease_epoch, lease_expires_at IS NULL, "
                               "completed_at IS NOT NULL FROM agent_runs WHERE id = $1",
                               1, NULL, (const char *const[]){run}, NULL, NULL, 0);
    assert_int_equal(PQntuples(r), 1);
    assert_string_equal(PQgetvalue(r, 0, 0),
                        "reaped: runner runner-dead stopped heartbeating "
                        "at 2026-01-02T03:04:05.678Z");
    assert_string_equal(PQgetvalue(r, 0, 1), "4"); /* fenced: epoch + 1 */
    assert_string_equal(PQgetvalue(r, 0, 2), "t");
    assert_string_equal(PQgetvalue(r, 0, 3), "t");
    PQclear(r);

    Kx__V1__RunEvent *ev = last_event(run, 2000);
    assert_non_null(ev);
    assert_true(ev->terminal);
    assert_int_equal(ev->kind, KX__V1__RUN_EVENT_KIND__RUN_EVENT_KIND_STATUS);
    assert_int_equal(ev->lease_epoch, 0);
    assert_string_equal(ev->run_id, run);
    assert_string_equal(ev->payload_json,
                        "{\"type\": \"status\", \"status\": \"failed\", \"message\": \"Agent run "
                        "failed: reaped: runner runner-dead stopped heartbeating at "
                        "2026-01-02T03:04:05.678Z\"}");
    kx_pb_free(ev);

    for (int i = 0; i < 100 && atomic_load(&ctl.count) == 0; i++)
        usleep(10 * 1000);
    assert_int_equal(atomic_load(&ctl.count), 1);
    assert_string_equal(ctl.run_id, run);
    assert_int_equal(ctl.signal, KX__V1__RUN_SIGNAL__RUN_SIGNAL_STOP);
    assert_int_equal(ctl.epoch, 3);
    assert_string_equal(ctl.reason,
                        "reaped: runner runner-dead stopped heartbeating at "
                        "2026-01-02T03:04:05.678Z");

    /* Attempts left: queued again (epoch + 1, same thread), a non-terminal event saying so
     * with the new epoch, and a new dispatch for attempt 2. */
    char retried[KX_UUID_LEN + 1];
    insert_run(retried,
               "status, started_at, lease_owner, lease_epoch, lease_expires_at, "
               "attempt",
               "'running', now() - interval '1 minute', 'runner-dead', 1, "
               "now() - interval '1 second', 1");
    Kx__V1__RunDispatch *d = wait_dispatch(retried, 3 * REAPER_MS + 2000);
    assert_non_null(d);
    assert_int_equal(d->attempt, 2);
    assert_string_equal(d->thread_id, g_thread);
    kx_pb_free(d);
    char st[64];
    for (int i = 0; i < 100; i++) { /* the notice is cleared right after the dispatch */
        sql_value(st, sizeof st,
                  "SELECT status || ' ' || lease_epoch || ' ' || "
                  "(notice IS NULL) FROM agent_runs WHERE id = '%s'",
                  retried);
        if (strcmp(st, "queued 2 true") == 0)
            break;
        usleep(20 * 1000);
    }
    assert_string_equal(st, "queued 2 true");
    ev = last_event(retried, 2000);
    assert_non_null(ev);
    assert_false(ev->terminal);
    assert_int_equal(ev->lease_epoch, 2);
    assert_non_null(strstr(ev->payload_json,
                           "\"status\": \"running\", \"message\": \"Agent "
                           "run retried (attempt 2 of 2): reaped: runner "
                           "runner-dead stopped heartbeating at"));
    kx_pb_free(ev);
    sql("UPDATE agent_runs SET status = 'stopped' WHERE id = '%s'", retried);
    natsSubscription_Unsubscribe(sub);
    natsSubscription_Destroy(sub);

    /* A run with a live lease but past its wall time. */
    insert_run(run, "status, started_at, lease_owner, lease_epoch, lease_expires_at",
               "'running', now() - interval '2 hours', 'runner-slow', 1, "
               "now() + interval '1 hour'");
    assert_true(wait_status(run, "failed", 3 * REAPER_MS + 500));
    char err[128];
    sql_value(err, sizeof err, "SELECT error FROM agent_runs WHERE id = '%s'", run);
    assert_string_equal(err, "exceeded max wall time of 3600 s");
    ev = last_event(run, 2000);
    assert_non_null(ev);
    assert_non_null(strstr(ev->payload_json, "Agent run failed: exceeded max wall time"));
    kx_pb_free(ev);

    /* Runs in other states are never touched. */
    insert_run(run, "status, lease_expires_at", "'completed', now() - interval '1 hour'");
    usleep(3 * REAPER_MS * 1000);
    char status[32];
    sql_value(status, sizeof status, "SELECT status FROM agent_runs WHERE id = '%s'", run);
    assert_string_equal(status, "completed");
}

static void test_sweep_redispatches(void **state)
{
    char never[KX_UUID_LEN + 1], lost[KX_UUID_LEN + 1], fresh[KX_UUID_LEN + 1];
    insert_run(never, "created_at", "now() - interval '10 seconds'");
    insert_run(lost, "created_at, dispatched_at",
               "now() - interval '5 minutes', now() - interval '2 minutes'");
    insert_run(fresh, "created_at, dispatched_at", "now() - interval '10 seconds', now()");
    Kx__V1__RunDispatch *d = wait_dispatch(never, 3 * SWEEP_MS + 1000);
    assert_non_null(d);
    assert_int_equal(d->attempt, 1);
    kx_pb_free(d);
    d = wait_dispatch(lost, 3 * SWEEP_MS + 1000);
    assert_non_null(d);
    kx_pb_free(d);
    d = wait_dispatch(fresh, 2 * SWEEP_MS); /* dispatched recently: left alone */
    assert_null(d);
    sql("UPDATE agent_runs SET status = 'stopped' WHERE id IN ('%s', '%s', '%s')", never, lost,
        fresh);

    /* Dispatched long ago but its message still waits in the stream (runners are busy): not
     * lost, so not dispatched again — an overloaded queue does not fill with duplicates. */
    char waiting[KX_UUID_LEN + 1];
    kx_uuid_new(waiting);
    Kx__V1__RunDispatch wd = KX__V1__RUN_DISPATCH__INIT;
    wd.run_id = waiting;
    wd.thread_id = g_thread;
    wd.account_id = g_account;
    wd.project_id = g_project;
    wd.attempt = 1;
    uint64_t seq = 0;
    assert_int_equal(kx_bus_js_publish_pb_ex(g_bus, KX_SUBJ_RUN_DISPATCH, &wd.base, NULL, NULL,
                                             &seq),
                     KX_OK);
    assert_true(seq > 0);
    sql("INSERT INTO agent_runs (id, thread_id, account_id, project_id, created_at, "
        "dispatched_at, dispatch_seq) VALUES ('%s', '%s', '%s', '%s', now() - interval "
        "'5 minutes', now() - interval '2 minutes', %llu)",
        waiting, g_thread, g_account, g_project, (unsigned long long)seq);
    usleep(4 * SWEEP_MS * 1000);
    jsStreamInfo *si = NULL;
    assert_int_equal(js_GetStreamInfo(&si, kx_bus_js(g_bus), KX_STREAM_DISPATCH, NULL, NULL),
                     NATS_OK);
    assert_int_equal(si->State.Msgs, 1); /* only ours: no duplicate */
    jsStreamInfo_Destroy(si);
    char looked[8];
    sql_value(looked, sizeof looked,
              "SELECT dispatched_at > now() - interval '1 minute' FROM "
              "agent_runs WHERE id = '%s'",
              waiting);
    assert_string_equal(looked, "t"); /* the sweep looked, and moved it to the back */
    d = wait_dispatch(waiting, 2000); /* consume it */
    assert_non_null(d);
    kx_pb_free(d);
    sql("UPDATE agent_runs SET status = 'stopped' WHERE id = '%s'", waiting);
}

static void test_submit_while_postgres_down(void **state)
{
    char run[KX_UUID_LEN + 1];
    /* created "in the future" so that the sweep leaves it alone: only admission can
     * dispatch it */
    insert_run(run, "created_at", "now() + interval '1 hour'");
    PQfinish(g_db);
    g_db = NULL;
    assert_int_equal(kx_th_pg_down(&g_pg), KX_OK);
    submit(run);
    usleep(1500 * 1000); /* the submit's admission pass fails ... */
    assert_int_equal(kx_th_pg_up(&g_pg), KX_OK);
    /* ... and the admission after a reaper tick dispatches it */
    Kx__V1__RunDispatch *d = wait_dispatch(run, 8000);
    assert_non_null(d);
    kx_pb_free(d);
    g_db = PQconnectdb(g_pg.url);
    assert_int_equal(PQstatus(g_db), CONNECTION_OK);
    sql("UPDATE agent_runs SET status = 'stopped' WHERE id = '%s'", run);
}

/* A counter of the scheduler's /metrics (the first sample named exactly `name`), -1 if absent. */
static long long sched_metric(const char *name)
{
    return kx_th_metric(g_sched_port, name);
}

static long count_of(const char *fmt, const char *account)
{
    char v[32];
    sql_value(v, sizeof v, fmt, account);
    return strtol(v, NULL, 10);
}

/* Regression (bench_lease: 10 000 runs of a killed runner took 29 s to leave `running`): the
 * reaper moved at most SCHED_REAP_BATCH (1000) runs per tick, so a runner that died holding
 * 1500 runs was reaped over two ticks. Now one tick moves them all. A scheduler with a 4 s
 * reaper interval: 1 s after the first run left `running`, none may be left. */
static void test_reaper_moves_more_than_a_batch_in_one_tick(void **state)
{
    assert_int_equal(kx_th_kill(g_sched), 0);
    g_sched = 0;
    char account[KX_UUID_LEN + 1];
    kx_uuid_new(account);
    /* 1500 runs of a runner without a lease row, on their last attempt: all dead */
    sql("INSERT INTO agent_runs (id, thread_id, account_id, project_id, status, started_at, "
        "lease_epoch, lease_owner, lease_expires_at, attempt) SELECT gen_random_uuid(), '%s', "
        "'%s', '%s', 'running', now(), 1, 'runner-dead-with-1500', now() - interval '1 minute', "
        "2 FROM generate_series(1, 1500)",
        g_thread, account, g_project);
    g_sched = start_scheduler_with(4000);
    assert_true(g_sched > 0);
    const char *running = "SELECT count(*) FROM agent_runs WHERE account_id = '%s' AND "
                          "status = 'running'";
    int64_t give_up = kx_mono_ms() + 20000;
    while (count_of(running, account) == 1500) {
        if (kx_mono_ms() > give_up)
            fail_msg("no run reaped within 20 s");
        usleep(20 * 1000);
    }
    usleep(1000 * 1000); /* the next tick is 3 s away */
    long left = count_of(running, account);
    print_message("[ reaper   ] runs still running 1 s after the first tick reaped: %ld\n", left);
    assert_int_equal(left, 0);
    assert_int_equal(count_of("SELECT count(*) FROM agent_runs WHERE account_id = '%s' AND "
                              "status = 'failed' AND lease_epoch = 2",
                              account),
                     1500);
    /* and every notice is published (STOP + terminal event), within a few ticks */
    give_up = kx_mono_ms() + 15000;
    while (count_of("SELECT count(*) FROM agent_runs WHERE account_id = '%s' AND notice IS NOT "
                    "NULL",
                    account) > 0) {
        if (kx_mono_ms() > give_up)
            fail_msg("reaper notices not all published within 15 s");
        usleep(50 * 1000);
    }
    assert_int_equal(kx_th_kill(g_sched), 0);
    g_sched = start_scheduler();
    assert_true(g_sched > 0);
}

/* Regression (bench_lease: with 10 000 runs submitted, heartbeats reached the scheduler 36 s
 * late): every submit ran its own admission pass, which reads every active run, so a burst
 * of N submits cost O(N²) on the loop that also applies heartbeats. Now the submits that
 * arrive while a pass runs (on a database thread) share the next one. 300 submits delivered at once (the scheduler is stopped while they
 * are published) must take far fewer than 300 passes, and every run is dispatched. */
static void test_a_burst_of_submits_shares_admission_passes(void **state)
{
    char account[KX_UUID_LEN + 1];
    kx_uuid_new(account);
    /* 300 waiting runs, each on a thread of its own, created "in the future" so that nothing
     * but admission picks them */
    sql("WITH t AS (INSERT INTO threads (thread_id, account_id, project_id) SELECT "
        "gen_random_uuid(), '%s', '%s' FROM generate_series(1, 300) RETURNING thread_id) "
        "INSERT INTO agent_runs (id, thread_id, account_id, project_id, created_at) SELECT "
        "gen_random_uuid(), thread_id, '%s', '%s', now() + interval '1 hour' FROM t",
        account, g_project, account, g_project);
    long long passes0 = sched_metric("kx_scheduler_admission_passes_total");
    long long submits0 = sched_metric("kx_scheduler_submits_total");
    assert_true(kx_th_freeze(g_sched));
    PGresult *ids = PQexecParams(g_db, "SELECT id::text FROM agent_runs WHERE account_id = $1", 1,
                                 NULL, (const char *const[]){account}, NULL, NULL, 0);
    assert_int_equal(PQntuples(ids), 300);
    for (int i = 0; i < PQntuples(ids); i++)
        submit(PQgetvalue(ids, i, 0));
    PQclear(ids);
    usleep(300 * 1000);
    assert_int_equal(kill(g_sched, SIGCONT), 0);
    int64_t give_up = kx_mono_ms() + 20000;
    while (count_of("SELECT count(*) FROM agent_runs WHERE account_id = '%s' AND dispatched_at "
                    "IS NULL",
                    account) > 0) {
        if (kx_mono_ms() > give_up)
            fail_msg("the 300 runs were not all dispatched within 20 s");
        usleep(50 * 1000);
    }
    long long submits = 0, passes = 0;
    give_up = kx_mono_ms() + 20000;
    do { /* every submit settled */
        submits = sched_metric("kx_scheduler_submits_total") - (submits0 < 0 ? 0 : submits0);
        passes = sched_metric("kx_scheduler_admission_passes_total") - (passes0 < 0 ? 0 : passes0);
        if (submits >= 300)
            break;
        usleep(50 * 1000);
    } while (kx_mono_ms() < give_up);
    print_message("[ admit    ] 300 submits at once: %lld settled by %lld admission pass(es)\n",
                  submits, passes);
    assert_int_equal(submits, 300);
    assert_true(passes >= 1);
    assert_true(passes <= 100);
}

/* kx.run.submit is core (issue 12): a submit made while no scheduler runs reaches nobody, and
 * the run is admitted anyway by the next scheduler's first reaper tick (the row is the truth);
 * the retired KX_RUN_SUBMIT stream is not there to pile submits up. */
static void test_submit_lost_while_no_scheduler_still_dispatched(void **state)
{
    assert_int_equal(kx_th_kill(g_sched), 0); /* SIGTERM: drains */
    g_sched = 0;
    char run[KX_UUID_LEN + 1];
    insert_run(run, "", "");
    submit(run); /* nobody subscribed: lost */
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    natsStatus st = js_GetStreamInfo(&si, kx_bus_js(g_bus), KX_STREAM_SUBMIT, NULL, &jerr);
    assert_true(st == NATS_NOT_FOUND || jerr == JSStreamNotFoundErr);
    jsStreamInfo_Destroy(si);
    g_sched = start_scheduler();
    assert_true(g_sched != 0);
    /* dispatched_at, not the message: the earlier burst's dispatches fill the queue first */
    int64_t give_up = kx_mono_ms() + 8000;
    char v[32] = "";
    for (;;) {
        sql_value(v, sizeof v,
                  "SELECT count(*) FROM agent_runs WHERE id = '%s' AND dispatched_at IS NOT NULL",
                  run);
        if (strcmp(v, "1") == 0 || kx_mono_ms() > give_up)
            break;
        usleep(50 * 1000);
    }
    assert_string_equal(v, "1");
    sql("UPDATE agent_runs SET status = 'stopped' WHERE id = '%s'", run);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_submit_dispatches_queued_run),
        cmocka_unit_test(test_heartbeats_renew_the_runner_lease),
        cmocka_unit_test(test_reaper_fails_expired_lease),
        cmocka_unit_test(test_sweep_redispatches),
        cmocka_unit_test(test_submit_while_postgres_down),
        cmocka_unit_test(test_reaper_moves_more_than_a_batch_in_one_tick),
        cmocka_unit_test(test_a_burst_of_submits_shares_admission_passes),
        cmocka_unit_test(test_submit_lost_while_no_scheduler_still_dispatched),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
