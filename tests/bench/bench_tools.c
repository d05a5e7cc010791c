/* bench_tools.c — a tool call's round trip: runner-style request (kx.v1.ToolCall on
 * kx.tool.exec, kx_bus_request_pb) → tool-executor → view_tasks on an empty list (validation,
 * the database thread: the thread's ownership and its task_list row read from PostgreSQL) →
 * reply; beside a bare request/reply (the same client, an in-process responder answering a
 * ToolResult at once) measured in the same run against the same nats-server. Prints
 * p50/p90/p99 and the ratios (goal: p50 ≤ 2× the bare round trip).
 *
 *   build/tests/bench/bench_tools [requests]      (default 2000 per variant)
 *
 * Bounded: sequential requests on 127.0.0.1, each with a 5 s deadline. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "kx/bus.h"
#include "kx/db.h"
#include "kx/log.h"
#include "kx/pb.h"
#include "kx/time.h"
#include "kx/uuid.h"
#include "sandbox_client.h"

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static void pct(int64_t *v, int n, int64_t *p50, int64_t *p90, int64_t *p99)
{
    qsort(v, (size_t)n, sizeof *v, cmp_i64);
    *p50 = v[n / 2];
    *p90 = v[(n * 9) / 10];
    *p99 = v[(n * 99) / 100];
}

static kx_bus *g_resp_bus;
static void bare_echo(natsMsg *msg, void *arg)
{
    (void)arg;
    Kx__V1__ToolCall *call = kx_pb_unpack(&kx__v1__tool_call__descriptor, natsMsg_GetData(msg),
                                          (size_t)natsMsg_GetDataLength(msg));
    Kx__V1__ToolResult res = KX__V1__TOOL_RESULT__INIT;
    res.call_id = call != NULL ? call->call_id : "";
    res.success = true;
    res.output_json = "{\"sections\": [], \"tasks\": []}";
    res.status = "ok";
    kx_bus_respond_pb(g_resp_bus, msg, &res.base);
    kx_pb_free(call);
    natsMsg_Destroy(msg);
}

static char g_account[KX_UUID_LEN + 1], g_thread[KX_UUID_LEN + 1], g_project[KX_UUID_LEN + 1];

static int run(kx_bus *bus, const char *subject, const char *tool, int n, int64_t *lat)
{
    for (int i = 0; i < n; i++) {
        char id[KX_UUID_LEN + 1];
        kx_uuid_new(id);
        Kx__V1__ToolCall tc = KX__V1__TOOL_CALL__INIT;
        tc.call_id = id;
        tc.run_id = id;
        tc.account_id = g_account;
        tc.project_id = g_project;
        tc.thread_id = g_thread;
        tc.tool_name = (char *)tool;
        tc.arguments_json = "{}";
        kx_err err = KX_OK;
        Kx__V1__ToolResult *r = kx_th_bus_ask(bus, subject, &tc.base, g_account, 5000,
                                              &kx__v1__tool_result__descriptor, &lat[i], &err);
        if (err != KX_OK && err != KX_ERR_PROTOCOL)
            return -1;
        bool ok = r != NULL && r->success;
        if (!ok)
            fprintf(stderr, "bench: %s failed: %s\n", tool,
                    r && r->error ? r->error->message : "no result");
        kx_pb_free(r);
        if (!ok)
            return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? (int)strtol(argv[1], NULL, 10) : 2000;
    if (n < 100)
        n = 100;
    kx_log_init("bench_tools", "bench");
    nats_Open(-1);
    char *tmp = kx_th_tmpdir("kx-bench-tools");
    kx_th_nats nats;
    kx_th_pg pg;
    if (tmp == NULL || kx_th_nats_start(tmp, &nats) != KX_OK || kx_th_pg_start(tmp, &pg) != KX_OK)
        return 1;
    kx_uuid_new(g_account);
    kx_uuid_new(g_thread);
    kx_uuid_new(g_project);
    kx_db *db = NULL;
    char sql[600];
    snprintf(sql, sizeof sql, "INSERT INTO threads (thread_id, account_id) VALUES ('%s', '%s')",
             g_thread, g_account);
    kx_err err = kx_db_connect(pg.url, NULL, &db);
    if (err == KX_OK)
        err = kx_db_migrate(db, kx_db_migrations_dir());
    if (err == KX_OK)
        PQclear(kx_db_exec_sql(db, sql, &err));
    kx_db_close(db);
    if (err != KX_OK)
        return 1;

    uint16_t port = kx_th_free_port();
    char port_env[64], nats_env[128], db_env[300], log_path[600], bin[512], url[128];
    snprintf(port_env, sizeof port_env, "KX_HEALTH_PORT=%u", port);
    snprintf(nats_env, sizeof nats_env, "KX_NATS_URL=%s", nats.url);
    snprintf(db_env, sizeof db_env, "KX_DATABASE_URL=%s", pg.url);
    snprintf(log_path, sizeof log_path, "%s/tool-executor.log", tmp);
    snprintf(bin, sizeof bin, "%s/services/tool-executor/tool-executor", KX_BUILD_DIR);
    const char *env[] = {port_env, nats_env, db_env, "KX_LOG_LEVEL=warn", NULL};
    const char *args[] = {bin, NULL};
    pid_t pid = 0;
    snprintf(url, sizeof url, "http://127.0.0.1:%u/readyz", port);
    if (kx_th_spawn(args, env, log_path, &pid) != KX_OK || kx_th_wait_http(url, 10000) != KX_OK)
        return 1;

    kx_bus *bus = NULL;
    natsSubscription *sub = NULL;
    if (kx_bus_connect(nats.url, "bench-tools", &bus) != KX_OK ||
        kx_bus_connect(nats.url, "bench-tools-resp", &g_resp_bus) != KX_OK ||
        kx_bus_subscribe(g_resp_bus, "bench.bare", NULL, bare_echo, NULL, &sub) != KX_OK)
        return 1;
    usleep(200 * 1000);

    int64_t *bare = calloc((size_t)n, sizeof *bare), *tool = calloc((size_t)n, sizeof *tool);
    int64_t warm[200];
    int rc = 0;
    if (run(bus, "bench.bare", "view_tasks", 200, warm) != 0 ||
        run(bus, KX_SUBJ_TOOL_EXEC, "view_tasks", 200, warm) != 0 ||
        run(bus, "bench.bare", "view_tasks", n, bare) != 0 ||
        run(bus, KX_SUBJ_TOOL_EXEC, "view_tasks", n, tool) != 0) {
        rc = 1;
    } else {
        int64_t b50, b90, b99, t50, t90, t99;
        pct(bare, n, &b50, &b90, &b99);
        pct(tool, n, &t50, &t90, &t99);
        printf("bench_tools: %d sequential requests per variant\n", n);
        printf("  bare request/reply (in-process responder):  p50 %6lld us  p90 %6lld us  p99 "
               "%6lld us\n",
               (long long)b50, (long long)b90, (long long)b99);
        printf("  view_tasks via tool-executor + Postgres:    p50 %6lld us  p90 %6lld us  p99 "
               "%6lld us\n",
               (long long)t50, (long long)t90, (long long)t99);
        printf("  ratio p50 %.2fx  p99 %.2fx  (goal p50 <= 2x)\n", (double)t50 / (double)b50,
               (double)t99 / (double)b99);
    }
    free(bare);
    free(tool);
    natsSubscription_Unsubscribe(sub);
    natsSubscription_Destroy(sub);
    kx_bus_close(bus, 1000);
    kx_bus_close(g_resp_bus, 1000);
    kx_th_kill(pid);
    kx_th_pg_stop(&pg);
    kx_th_nats_stop(&nats);
    kx_th_rmrf(tmp);
    free(tmp);
    return rc;
}
