/* tests/harness/pgdb.h — a migrated database for tests of SQL: a temp dir, PostgreSQL started
 * in it (kx_th_pg_start), the migrations of deploy/migrations applied (no rows), and a direct
 * libpq connection for setup and assertions. What test_db, test_runner_store,
 * test_runner_usage_hot and the plan checks (pgplans.c) each did in their setup. And what the
 * benchmarks of SQL (bench_rows, bench_quota) measure with: a kx_db connection with prepared
 * statements and its backend's pid, that backend's CPU, the machine's load.
 *
 * Ownership: the struct is the caller's; kx_th_pgdb_stop closes the connection, stops the
 * server and removes the temp dir (unless KX_TEST_KEEP=1), and may be called on a struct
 * whose start failed. */
#ifndef KX_TEST_PGDB_H
#define KX_TEST_PGDB_H

#include <libpq-fe.h>
#include <stddef.h>
#include <stdint.h>

#include "harness.h"
#include "kx/db.h"

typedef struct kx_th_pgdb {
    char *tmp;   /* the temp dir (malloc'd) */
    kx_th_pg pg; /* the server; pg.url is the database's URL */
    PGconn *sql; /* a connection to pg.url */
} kx_th_pgdb;

/* The temp dir /tmp/<prefix>-XXXXXX, the server, the migrations, the connection. On failure
 * the reason is printed, what was started is stopped, and *out is left for kx_th_pgdb_stop. */
kx_err kx_th_pgdb_start(const char *prefix, kx_th_pgdb *out);
void kx_th_pgdb_stop(kx_th_pgdb *d);

/* A kx_db connection to d's database with stmts prepared (NULL: none) into *db (the caller's,
 * kx_db_close) and its server process's pid into *backend_pid. */
kx_err kx_th_pgdb_connect(const kx_th_pgdb *d, const kx_db_stmt *stmts, kx_db **db,
                          int *backend_pid);
/* The CPU time process pid has run, in ns (/proc/<pid>/schedstat); -1 when unreadable. */
int64_t kx_th_proc_cpu_ns(int pid);
/* /proc/loadavg's line without its newline into out ("?" when unreadable). */
void kx_th_loadavg(char *out, size_t n);

#endif
