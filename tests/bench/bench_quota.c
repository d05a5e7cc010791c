/* bench_quota.c — what an account's quotas (account_limits: runs_per_day, tokens_per_month;
 * migration 005's BEFORE INSERT trigger on agent_runs) cost one more run's creation as the
 * account's runs of the day / month grow (issue 12: 10 000 runs in one account), against the
 * same insert in an account without limits (the baseline: the trigger's one lookup), in the
 * same run on the same server and connection. Also GET /api/billing/check-status's function
 * (kx_account_status) for the limited account.
 *
 *   bench_quota [--each K (300)] [--levels 0,1000,10000]
 *
 * A fresh PostgreSQL (the harness's: fsync off) with the migrations; account L has a row in
 * account_limits with runs_per_day and tokens_per_month high enough never to refuse, account U
 * has none; each has one project and thread. At each level N, both accounts are filled up to
 * N runs created today (completed, 30 tokens each; L's through its trigger), then K runs are
 * created one per transaction alternating L and U (the INSERT of the gateway's initiate
 * reduced to the run row), and K kx_account_status(L) calls made. Prints the backend's CPU
 * (/proc/<pid>/schedstat) and the wall time per statement, L / U, and each figure over its
 * N = first level value. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "harness.h"
#include "kx/db.h"
#include "kx/log.h"
#include "pgdb.h"

static const kx_db_stmt STMTS[] = {
    {"bq_run",
     "INSERT INTO agent_runs (thread_id, account_id, project_id, status, tokens_used, metadata) "
     "VALUES ($1::uuid, $2::uuid, $3::uuid, 'completed', 30, '{}')"},
    {"bq_status", "SELECT kx_account_status($1::uuid)::text"},
    KX_DB_STMT_END};

static int64_t wall_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

typedef struct account {
    char id[40], project[40], thread[40];
    double server_us, wall_us; /* per statement, last pass */
} account;

static int make_account(kx_db *db, account *a, int limited)
{
    kx_err err = KX_OK;
    PGresult *res = kx_db_exec_sql(
        db,
        "WITH a AS (SELECT gen_random_uuid() acc, gen_random_uuid() proj, gen_random_uuid() th), "
        "p AS (INSERT INTO projects (project_id, name, account_id) SELECT proj, 'p', acc FROM a), "
        "t AS (INSERT INTO threads (thread_id, account_id, project_id) SELECT th, acc, proj FROM a) "
        "SELECT acc::text, proj::text, th::text FROM a",
        &err);
    if (res == NULL || PQntuples(res) != 1) {
        PQclear(res);
        return -1;
    }
    snprintf(a->id, sizeof a->id, "%s", PQgetvalue(res, 0, 0));
    snprintf(a->project, sizeof a->project, "%s", PQgetvalue(res, 0, 1));
    snprintf(a->thread, sizeof a->thread, "%s", PQgetvalue(res, 0, 2));
    PQclear(res);
    if (!limited)
        return 0;
    char sql[256];
    snprintf(sql, sizeof sql,
             "INSERT INTO account_limits (account_id, runs_per_day, tokens_per_month) "
             "VALUES ('%s', 1000000000, 1000000000000000)",
             a->id);
    res = kx_db_exec_sql(db, sql, &err);
    PQclear(res);
    return res == NULL ? -1 : 0;
}

/* Fills account a up to n runs created today; returns its count, -1 on failure. */
static long fill(kx_db *db, const account *a, long n)
{
    char sql[512];
    snprintf(
        sql, sizeof sql,
        "WITH have AS (SELECT count(*) c FROM agent_runs WHERE account_id = '%s') "
        "INSERT INTO agent_runs (thread_id, account_id, project_id, status, tokens_used) "
        "SELECT '%s', '%s', '%s', 'completed', 30 FROM have, generate_series(1, %ld - have.c)",
        a->id, a->thread, a->id, a->project, n);
    kx_err err = KX_OK;
    PGresult *res = kx_db_exec_sql(db, sql, &err);
    PQclear(res);
    if (res == NULL)
        return -1;
    PQclear(kx_db_exec_sql(db, "VACUUM ANALYZE", &err)); /* autovacuum's best case */
    snprintf(sql, sizeof sql, "SELECT count(*) FROM agent_runs WHERE account_id = '%s'", a->id);
    res = kx_db_exec_sql(db, sql, &err);
    long got = res != NULL ? strtol(PQgetvalue(res, 0, 0), NULL, 10) : -1;
    PQclear(res);
    return got;
}

/* k statements stmt($1 = a's ids) for each account in turn; per-statement figures into a. */
static int pass(kx_db *db, int pid, const char *stmt, account **as, size_t nas, long k)
{
    int64_t server[4] = {0}, wall[4] = {0};
    for (long i = 0; i < k; i++)
        for (size_t j = 0; j < nas; j++) {
            const char *run[] = {as[j]->thread, as[j]->id, as[j]->project};
            const char *st[] = {as[j]->id};
            int64_t s0 = kx_th_proc_cpu_ns(pid), w0 = wall_ns();
            kx_err err = KX_OK;
            PGresult *res = strcmp(stmt, "bq_run") == 0 ? kx_db_exec(db, stmt, 3, run, &err)
                                                        : kx_db_exec(db, stmt, 1, st, &err);
            wall[j] += wall_ns() - w0;
            server[j] += kx_th_proc_cpu_ns(pid) - s0;
            PQclear(res);
            if (res == NULL) {
                fprintf(stderr, "bench_quota: %s failed: %s\n", stmt, kx_err_str(err));
                return -1;
            }
        }
    for (size_t j = 0; j < nas; j++) {
        as[j]->server_us = (double)server[j] / 1000.0 / (double)k;
        as[j]->wall_us = (double)wall[j] / 1000.0 / (double)k;
    }
    return 0;
}

static const char *arg(int argc, char **argv, const char *name, const char *dflt)
{
    for (int i = 1; i + 1 < argc; i++)
        if (strcmp(argv[i], name) == 0)
            return argv[i + 1];
    return dflt;
}

int main(int argc, char **argv)
{
    kx_log_init("bench_quota", "bench");
    long each = strtol(arg(argc, argv, "--each", "300"), NULL, 10);
    char levels[128];
    snprintf(levels, sizeof levels, "%s", arg(argc, argv, "--levels", "0,1000,10000"));
    if (each <= 0) {
        fprintf(stderr, "bench_quota: --each >= 1\n");
        return 2;
    }
    kx_th_pgdb d;
    kx_db *db = NULL;
    int rc = 1, pid = 0;
    account lim = {0}, unl = {0};
    kx_err err = KX_OK;
    PGresult *res = NULL;
    if (kx_th_pgdb_start("kx-bench-quota", &d) != KX_OK ||
        kx_th_pgdb_connect(&d, STMTS, &db, &pid) != KX_OK ||
        (res = kx_db_exec_sql(db, "SET statement_timeout = 0", &err)) == NULL ||
        (PQclear(res), make_account(db, &lim, 1)) != 0 || make_account(db, &unl, 0) != 0)
        goto out;
    if (getenv("BENCH_QUOTA_SQL") != NULL) /* e.g. auto_explain settings */
        PQclear(kx_db_exec_sql(db, getenv("BENCH_QUOTA_SQL"), &err));
    if (kx_th_proc_cpu_ns(pid) < 0) {
        fprintf(stderr, "bench_quota: cannot read the backend's /proc/%d/schedstat\n", pid);
        goto out;
    }
    char load[64];
    kx_th_loadavg(load, sizeof load);
    printf("bench_quota: one run created per transaction, %ld per account and level; "
           "L = account with limits, U = without (baseline); load %s\n",
           each, load);
    double first_l = 0, first_u = 0, first_s = 0;
    account *both[] = {&lim, &unl}, *only_l[] = {&lim};
    for (char *save = NULL, *tok = strtok_r(levels, ",", &save); tok != NULL;
         tok = strtok_r(NULL, ",", &save)) {
        long n = strtol(tok, NULL, 10);
        int64_t w0 = wall_ns();
        long nl = fill(db, &lim, n), nu = fill(db, &unl, n);
        double fill_ms = (double)(wall_ns() - w0) / 1e6;
        if (nl < 0 || nu < 0)
            goto out;
        /* warm-up, then the measured pass */
        if (pass(db, pid, "bq_run", both, 2, 20) != 0 || pass(db, pid, "bq_run", both, 2, each))
            goto out;
        double l = lim.server_us, u = unl.server_us, lw = lim.wall_us, uw = unl.wall_us;
        if (pass(db, pid, "bq_status", only_l, 1, 20) != 0 ||
            pass(db, pid, "bq_status", only_l, 1, each) != 0)
            goto out;
        double s = lim.server_us;
        if (first_l == 0) {
            first_l = l;
            first_u = u;
            first_s = s;
        }
        printf("N = %6ld runs today: create a run: L %7.1f us (wall %7.1f), U %6.1f us (wall "
               "%6.1f), L / U %6.2f x; vs first level: L %6.2f x, U %5.2f x; "
               "kx_account_status(L) %7.1f us (%5.2f x); fill %.0f ms\n",
               nl, l, lw, u, uw, l / u, l / first_l, u / first_u, s, s / first_s, fill_ms);
    }
    rc = 0;
out:
    if (rc != 0)
        fprintf(stderr, "bench_quota: failed\n");
    kx_db_close(db);
    kx_th_pgdb_stop(&d);
    return rc;
}
