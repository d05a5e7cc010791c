/* bench_rows.c — what a run's rows cost Postgres and the runner's database thread, written as
 * one fenced insert per row (the runner before issue 12's multi-row insert: ~15 statements per
 * run; its statement as it was at 89a7370, below) versus one fenced multi-row insert per batch
 * (store_insert_messages), in the same run on the same server and connection: the same rows,
 * one transaction per run, the two ways alternating after a warm-up pass of each.
 *
 *   bench_rows [--runs N (1000)] [--rows R per run (15)] [--per K rows per statement (4)]
 *              [--rounds n (3)]
 *
 * A fresh PostgreSQL (the harness's: fsync off) with the migrations; N running runs, each on a
 * thread of its own. Per run: BEGIN, its R rows (types and sizes as a tool run writes them,
 * two of them a turn's usage row), COMMIT. Prints per run: the backend's CPU (on-CPU time of
 * the connection's server process, /proc/<pid>/schedstat), the client's CPU (this thread) and
 * the wall time, for both ways, and the ratio multi-row / one per row. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "harness.h"
#include "kx/db.h"
#include "kx/log.h"
#include "kx/time.h"
#include "kx/uuid.h"
#include "pgdb.h"
#include "store.h"

enum {
    MAX_ROWS = 64
};

/* The baseline: the runner's single-row fenced insert before the multi-row one (store.c at
 * 89a7370, runner_insert_message). */
#define SQL_ONE_ROW                                                                            \
    "WITH ins AS (INSERT INTO messages (message_id, thread_id, account_id, type, "             \
    "  is_llm_message, content, metadata, agent_run_id) "                                      \
    "  SELECT $7::uuid, r.thread_id, r.account_id, $3, $4::boolean, $5::jsonb, $6::jsonb, "    \
    "    r.id FROM agent_runs r WHERE r.id=$1::uuid AND r.lease_epoch=$2::bigint AND "         \
    "    r.status IS NOT DISTINCT FROM 'running' FOR SHARE OF r "                              \
    "  ON CONFLICT (message_id) DO NOTHING "                                                   \
    "  RETURNING message_id, created_at, updated_at) "                                         \
    "SELECT message_id, to_json(created_at)#>>'{}', to_json(updated_at)#>>'{}' FROM ins "      \
    "UNION ALL "                                                                               \
    "SELECT message_id, to_json(created_at)#>>'{}', to_json(updated_at)#>>'{}' FROM messages " \
    "WHERE message_id=$7::uuid AND agent_run_id=$1::uuid AND NOT EXISTS (SELECT 1 FROM ins)"

/* The runner's statements and the baseline's (built in main). */
static kx_db_stmt g_stmts[32];

static kx_err insert_one_row(kx_db *db, const char *run_id, const store_new_row *row)
{
    const char *params[] = {run_id,
                            "1",
                            row->type,
                            row->is_llm ? "true" : "false",
                            row->content_json,
                            row->metadata_json,
                            row->message_id};
    kx_err err = KX_OK;
    PGresult *res = kx_db_exec_idem(db, "bench_insert_one_row", 7, params, &err);
    if (res == NULL)
        return err != KX_OK ? err : KX_ERR_INTERNAL;
    err = PQntuples(res) == 1 ? KX_OK : KX_ERR_CONFLICT;
    PQclear(res);
    return err;
}

typedef struct cost {
    double server_us, client_us, wall_us; /* per run */
} cost;

static int64_t thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int64_t wall_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* The row types of a tool run, in order, cycled; the usage rows carry a turn's usage. */
static const char *const TYPES[] = {
    "status", "assistant", "status", "assistant_response_end", "tool",
    "status", "assistant", "status", "assistant_response_end", "status"};

static void make_content(char *out, size_t cap, const char *type, size_t i)
{
    if (strcmp(type, "assistant_response_end") == 0)
        snprintf(out, cap,
                 "{\"usage\": {\"prompt_tokens\": %zu, \"completion_tokens\": 12, "
                 "\"total_tokens\": %zu}, \"model\": \"demo\"}",
                 100 + i, 112 + i);
    else if (strcmp(type, "status") == 0)
        snprintf(out, cap, "{\"status_type\": \"tool_started\", \"tool_index\": %zu}", i);
    else
        snprintf(out, cap,
                 "{\"role\": \"%s\", \"content\": \"row %zu: I looked at the tasks and "
                 "found \\\"three\\\" open ones; the next step is to view them.\"}",
                 strcmp(type, "tool") == 0 ? "tool" : "assistant", i);
}

/* One pass over every run, k rows per statement (0: the baseline, one row per statement). */
static int pass(kx_db *db, int pid, char (*runs)[KX_UUID_LEN + 1], size_t nruns, size_t nrows,
                size_t k, cost *out)
{
    char ids[MAX_ROWS][KX_UUID_LEN + 1], content[MAX_ROWS][256];
    store_new_row rows[MAX_ROWS];
    store_row got[MAX_ROWS];
    int64_t s0 = kx_th_proc_cpu_ns(pid), c0 = thread_cpu_ns(), w0 = wall_ns();
    for (size_t r = 0; r < nruns; r++) {
        for (size_t i = 0; i < nrows; i++) {
            const char *type = TYPES[i % (sizeof TYPES / sizeof TYPES[0])];
            kx_uuid_new(ids[i]);
            make_content(content[i], sizeof content[i], type, i);
            rows[i] = (store_new_row){ids[i], type, strcmp(type, "status") != 0, content[i], "{}"};
        }
        if (kx_db_begin(db) != KX_OK)
            return -1;
        for (size_t at = 0; at<nrows; at += k> 0 ? k : 1) {
            size_t n = k == 0 ? 1 : nrows - at < k ? nrows - at : k;
            kx_err err = k == 0 ? insert_one_row(db, runs[r], &rows[at])
                                : store_insert_messages(db, runs[r], 1, rows + at, n, got + at);
            if (err != KX_OK) {
                fprintf(stderr, "bench_rows: insert failed: %s\n", kx_err_str(err));
                kx_db_rollback(db);
                return -1;
            }
        }
        if (kx_db_commit(db) != KX_OK)
            return -1;
    }
    out->server_us = (double)(kx_th_proc_cpu_ns(pid) - s0) / 1000.0 / (double)nruns;
    out->client_us = (double)(thread_cpu_ns() - c0) / 1000.0 / (double)nruns;
    out->wall_us = (double)(wall_ns() - w0) / 1000.0 / (double)nruns;
    return 0;
}

static size_t arg(int argc, char **argv, const char *name, size_t dflt)
{
    for (int i = 1; i + 1 < argc; i++)
        if (strcmp(argv[i], name) == 0)
            return (size_t)strtoul(argv[i + 1], NULL, 10);
    return dflt;
}

int main(int argc, char **argv)
{
    kx_log_init("bench_rows", "bench");
    size_t nruns = arg(argc, argv, "--runs", 1000), nrows = arg(argc, argv, "--rows", 15),
           per = arg(argc, argv, "--per", 4), rounds = arg(argc, argv, "--rounds", 3);
    if (nruns == 0 || nrows == 0 || nrows > MAX_ROWS || per == 0 || per > STORE_INSERT_MAX_ROWS) {
        fprintf(stderr, "bench_rows: --runs >= 1, --rows 1..%d, --per 1..%d\n", MAX_ROWS,
                STORE_INSERT_MAX_ROWS);
        return 2;
    }
    kx_th_pgdb d;
    kx_db *db = NULL;
    int rc = 1, pid = 0;
    char(*runs)[KX_UUID_LEN + 1] = calloc(nruns, sizeof *runs);
    size_t ns = 0;
    for (const kx_db_stmt *st = store_statements(); st->name != NULL && ns < 30; st++)
        g_stmts[ns++] = *st;
    g_stmts[ns++] = (kx_db_stmt){"bench_insert_one_row", SQL_ONE_ROW};
    g_stmts[ns] = (kx_db_stmt)KX_DB_STMT_END;
    if (kx_th_pgdb_start("kx-bench-rows", &d) != KX_OK || runs == NULL ||
        kx_th_pgdb_connect(&d, g_stmts, &db, &pid) != KX_OK)
        goto out;
    char n[24];
    snprintf(n, sizeof n, "%zu", nruns);
    kx_err err = KX_OK;
    char sql[1024];
    snprintf(sql, sizeof sql,
             "WITH a AS MATERIALIZED (SELECT gen_random_uuid() acc, gen_random_uuid() proj, "
             "gen_random_uuid() th, gen_random_uuid() run FROM generate_series(1, %s)), "
             "p AS (INSERT INTO projects (project_id, name, account_id) SELECT proj, 'p', acc "
             "FROM a), t AS (INSERT INTO threads (thread_id, account_id, project_id) "
             "SELECT th, acc, proj FROM a) INSERT INTO agent_runs (id, thread_id, account_id, "
             "project_id, status, lease_epoch, lease_owner) SELECT run, th, acc, proj, "
             "'running', 1, 'bench' FROM a RETURNING id::text",
             n);
    PGresult *res = kx_db_exec_sql(db, sql, &err);
    if (res == NULL || PQntuples(res) != (int)nruns) {
        fprintf(stderr, "bench_rows: could not create the runs: %s\n", kx_err_str(err));
        PQclear(res);
        goto out;
    }
    for (size_t i = 0; i < nruns; i++)
        snprintf(runs[i], sizeof runs[i], "%s", PQgetvalue(res, (int)i, 0));
    PQclear(res);
    if (getenv("BENCH_ROWS_SQL") != NULL)
        PQclear(kx_db_exec_sql(db, getenv("BENCH_ROWS_SQL"), &err));
    PQclear(kx_db_exec_sql(db, "ANALYZE", &err));
    if (kx_th_proc_cpu_ns(pid) < 0) {
        fprintf(stderr, "bench_rows: cannot read the backend's /proc/%d/schedstat\n", pid);
        goto out;
    }
    char load[64];
    kx_th_loadavg(load, sizeof load);
    printf("bench_rows: %zu runs x %zu rows, one transaction per run; one row per statement "
           "vs %zu rows per statement (%zu statements per run); load %s\n",
           nruns, nrows, per, (nrows + per - 1) / per, load);
    cost one = {0}, multi = {0}, sum1 = {0}, summ = {0};
    if (pass(db, pid, runs, nruns, nrows, 0, &one) != 0 || /* warm-up: plans, caches */
        pass(db, pid, runs, nruns, nrows, per, &multi) != 0)
        goto out;
    for (size_t r = 0; r < rounds; r++) {
        if (pass(db, pid, runs, nruns, nrows, 0, &one) != 0 ||
            pass(db, pid, runs, nruns, nrows, per, &multi) != 0)
            goto out;
        printf(
            "round %zu: one per row (before): server %7.1f us/run, client %6.1f us/run, wall %7.1f "
            "us/run\n",
            r + 1, one.server_us, one.client_us, one.wall_us);
        printf("         %zu per statement: server %7.1f us/run, client %6.1f us/run, wall "
               "%7.1f us/run  (x %.2f, %.2f, %.2f)\n",
               per, multi.server_us, multi.client_us, multi.wall_us,
               multi.server_us / one.server_us, multi.client_us / one.client_us,
               multi.wall_us / one.wall_us);
        sum1.server_us += one.server_us;
        sum1.client_us += one.client_us;
        sum1.wall_us += one.wall_us;
        summ.server_us += multi.server_us;
        summ.client_us += multi.client_us;
        summ.wall_us += multi.wall_us;
    }
    printf("all rounds: multi-row / one per row: server %.2f x, client %.2f x, wall %.2f x\n",
           summ.server_us / sum1.server_us, summ.client_us / sum1.client_us,
           summ.wall_us / sum1.wall_us);
    rc = 0;
out:
    kx_db_close(db);
    free(runs);
    kx_th_pgdb_stop(&d);
    return rc;
}
