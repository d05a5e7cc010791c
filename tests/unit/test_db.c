/* test_db.c — kx/db.h against a real PostgreSQL started by the test harness: the real schema
 * migration (idempotent, once under concurrency, rollback of a broken file), prepared
 * statements, SQLSTATE mapping, statement_timeout, reconnection after a server restart,
 * pipeline mode (results in order, a failed statement's followers reported as not run, misuse
 * refused, statements prepared again after a reconnect) and the pool. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "kx/db.h"
#include "kx/log.h"
#include "kx/time.h"
#include "pgdb.h"

static kx_th_pgdb g_db; /* the shared database, with the real schema */

static const kx_db_stmt STMTS[] = {
    {"project_insert",
     "INSERT INTO projects (project_id, name, account_id) VALUES ($1::uuid, $2, $3::uuid)"},
    {"project_name", "SELECT name, description FROM projects WHERE project_id = $1::uuid"},
    {"project_desc", "UPDATE projects SET description = $2 WHERE project_id = $1::uuid"},
    {"sleep", "SELECT pg_sleep($1::float8)"},
    KX_DB_STMT_END,
};

#define ACCOUNT "11111111-1111-1111-1111-111111111111"

/* A new empty database; its URL into url. */
static void fresh_db(const char *name, char *url, size_t len)
{
    char admin[300];
    snprintf(admin, sizeof admin, "host=127.0.0.1 port=%u user=postgres dbname=postgres",
             g_db.pg.port);
    PGconn *c = PQconnectdb(admin);
    assert_int_equal(PQstatus(c), CONNECTION_OK);
    char sql[200];
    snprintf(sql, sizeof sql, "CREATE DATABASE %s", name);
    PGresult *r = PQexec(c, sql);
    assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
    PQclear(r);
    PQfinish(c);
    snprintf(url, len, "postgresql://postgres@127.0.0.1:%u/%s", g_db.pg.port, name);
}

static long count(kx_db *db, const char *sql)
{
    kx_err err = KX_OK;
    PGresult *r = kx_db_exec_sql(db, sql, &err);
    assert_non_null(r);
    long n = strtol(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return n;
}

static int setup(void **state)
{
    kx_log_init("test_db", "test");
    /* The shared database gets the real schema once; tests that need their own make one. */
    return kx_th_pgdb_start("kx-test-db", &g_db) == KX_OK ? 0 : -1;
}

static int teardown(void **state)
{
    kx_th_pgdb_stop(&g_db);
    return 0;
}

static void test_migrate_real_schema_is_idempotent(void **state)
{
    char url[300];
    fresh_db("t_idem", url, sizeof url);
    kx_db *db = NULL;
    assert_int_equal(kx_db_connect(url, NULL, &db), KX_OK);
    assert_int_equal(kx_db_migrate(db, kx_db_migrations_dir()), KX_OK);
    long applied = count(db, "SELECT count(*) FROM kx_schema_migrations");
    assert_true(applied >= 1);
    assert_int_equal(count(db,
                           "SELECT count(*) FROM kx_schema_migrations "
                           "WHERE version = '001_kortix_schema'"),
                     1);
    /* Every table of the schema is there. */
    assert_int_equal(count(db,
                           "SELECT count(*) FROM information_schema.tables WHERE "
                           "table_schema = 'public' AND table_name IN ('projects', "
                           "'threads', 'agents', 'agent_versions', 'messages', "
                           "'agent_runs')"),
                     6);
    assert_int_equal(kx_db_migrate(db, kx_db_migrations_dir()), KX_OK);
    assert_int_equal(count(db, "SELECT count(*) FROM kx_schema_migrations"), applied);
    /* The advisory lock was released: another session can take it at once. */
    assert_int_equal(count(db, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"), 0);
    kx_db_close(db);
}

typedef struct migrator {
    const char *url;
    kx_err err;
} migrator;

static void *migrate_thread(void *arg)
{
    migrator *m = arg;
    kx_db *db = NULL;
    m->err = kx_db_connect(m->url, NULL, &db);
    if (m->err == KX_OK)
        m->err = kx_db_migrate(db, kx_db_migrations_dir());
    kx_db_close(db);
    return NULL;
}

static void test_concurrent_migrations_apply_once(void **state)
{
    char url[300];
    fresh_db("t_concurrent", url, sizeof url);
    migrator a = {.url = url, .err = KX_ERR_INTERNAL}, b = a;
    pthread_t ta, tb;
    assert_int_equal(pthread_create(&ta, NULL, migrate_thread, &a), 0);
    assert_int_equal(pthread_create(&tb, NULL, migrate_thread, &b), 0);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    /* Without the lock, the second CREATE TABLE projects would fail. */
    assert_int_equal(a.err, KX_OK);
    assert_int_equal(b.err, KX_OK);
    kx_db *db = NULL;
    assert_int_equal(kx_db_connect(url, NULL, &db), KX_OK);
    assert_int_equal(count(db,
                           "SELECT count(*) FROM kx_schema_migrations "
                           "WHERE version = '001_kortix_schema'"),
                     1);
    kx_db_close(db);
}

static void write_file(const char *dir, const char *name, const char *content)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(content, f);
    fclose(f);
}

static void test_migrations_in_order_and_broken_one_rolls_back(void **state)
{
    char url[300], dir[300];
    fresh_db("t_order", url, sizeof url);
    snprintf(dir, sizeof dir, "%s/migr", g_db.tmp);
    assert_int_equal(mkdir(dir, 0755), 0);
    /* Written out of order; 002 depends on 001. Not-.sql files are ignored. */
    write_file(dir, "002_b.sql", "INSERT INTO t (v) VALUES ('b');\n");
    write_file(dir, "001_a.sql", "CREATE TABLE t (v text);\nINSERT INTO t (v) VALUES ('a');\n");
    write_file(dir, "README", "not sql");
    kx_db *db = NULL;
    assert_int_equal(kx_db_connect(url, NULL, &db), KX_OK);
    assert_int_equal(kx_db_migrate(db, dir), KX_OK);
    assert_int_equal(count(db, "SELECT count(*) FROM t"), 2);

    /* A broken file: its first statement must not stay applied, nor the version recorded. */
    write_file(dir, "003_broken.sql",
               "INSERT INTO t (v) VALUES ('c');\nINSERT INTO no_such_table VALUES (1);\n");
    assert_int_not_equal(kx_db_migrate(db, dir), KX_OK);
    assert_int_equal(count(db, "SELECT count(*) FROM t"), 2);
    assert_int_equal(count(db, "SELECT count(*) FROM kx_schema_migrations"), 2);
    assert_int_equal(count(db, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"), 0);
    /* The connection is still usable and outside any transaction. */
    assert_int_equal(count(db, "SELECT 1"), 1);
    kx_db_close(db);
}

static void test_prepared_statements_and_conflict(void **state)
{
    kx_db *db = NULL;
    assert_int_equal(kx_db_connect(g_db.pg.url, STMTS, &db), KX_OK);
    const char *p1[] = {"22222222-2222-2222-2222-222222222222", "first", ACCOUNT};
    long rows = -1;
    assert_int_equal(kx_db_exec_cmd(db, "project_insert", 3, p1, &rows), KX_OK);
    assert_int_equal(rows, 1);

    kx_err err = KX_ERR_INTERNAL;
    const char *key[] = {p1[0]};
    PGresult *r = kx_db_exec(db, "project_name", 1, key, &err);
    assert_non_null(r);
    assert_int_equal(err, KX_OK);
    assert_int_equal(PQntuples(r), 1);
    assert_string_equal(PQgetvalue(r, 0, 0), "first");
    assert_true(PQgetisnull(r, 0, 1)); /* description is NULL */
    PQclear(r);

    /* A NULL parameter is SQL NULL; a second use of a statement reuses the preparation. */
    const char *upd[] = {p1[0], "described"};
    assert_int_equal(kx_db_exec_cmd(db, "project_desc", 2, upd, &rows), KX_OK);
    const char *upd_null[] = {p1[0], NULL};
    assert_int_equal(kx_db_exec_cmd(db, "project_desc", 2, upd_null, &rows), KX_OK);
    assert_int_equal(rows, 1);
    r = kx_db_exec(db, "project_name", 1, key, &err);
    assert_non_null(r);
    assert_true(PQgetisnull(r, 0, 1));
    PQclear(r);
    assert_int_equal(count(db, "SELECT count(*) FROM pg_prepared_statements"), 3);

    /* Same primary key again: a unique violation is a conflict. */
    assert_int_equal(kx_db_exec_cmd(db, "project_insert", 3, p1, NULL), KX_ERR_CONFLICT);
    assert_string_equal(kx_db_last_sqlstate(db), "23505");
    assert_non_null(strstr(kx_db_last_error(db), "duplicate key"));

    /* A malformed uuid is a data error (22P02). */
    const char *bad[] = {"not-a-uuid"};
    r = kx_db_exec(db, "project_name", 1, bad, &err);
    assert_null(r);
    assert_int_equal(err, KX_ERR_INVALID);
    assert_string_equal(kx_db_last_sqlstate(db), "22P02");

    /* An unknown statement name is the caller's mistake. */
    r = kx_db_exec(db, "no_such_statement", 0, NULL, &err);
    assert_null(r);
    assert_int_equal(err, KX_ERR_INVALID);

    /* A failed statement inside a transaction makes COMMIT fail. */
    assert_int_equal(kx_db_begin(db), KX_OK);
    assert_int_equal(kx_db_exec_cmd(db, "project_insert", 3, p1, NULL), KX_ERR_CONFLICT);
    assert_int_not_equal(kx_db_commit(db), KX_OK);
    /* And a good transaction commits. */
    const char *p2[] = {"33333333-3333-3333-3333-333333333333", "second", ACCOUNT};
    assert_int_equal(kx_db_begin(db), KX_OK);
    assert_int_equal(kx_db_exec_cmd(db, "project_insert", 3, p2, NULL), KX_OK);
    assert_int_equal(kx_db_commit(db), KX_OK);
    /* Rolled back work is gone. */
    const char *p3[] = {"44444444-4444-4444-4444-444444444444", "third", ACCOUNT};
    assert_int_equal(kx_db_begin(db), KX_OK);
    assert_int_equal(kx_db_exec_cmd(db, "project_insert", 3, p3, NULL), KX_OK);
    kx_db_rollback(db);
    assert_int_equal(count(db,
                           "SELECT count(*) FROM projects WHERE project_id = "
                           "'44444444-4444-4444-4444-444444444444'"),
                     0);
    kx_db_close(db);
}

static void test_statement_timeout_maps_to_timeout(void **state)
{
    assert_int_equal(setenv("KX_DB_STATEMENT_TIMEOUT_MS", "200", 1), 0);
    kx_db *db = NULL;
    kx_err err = kx_db_connect(g_db.pg.url, STMTS, &db);
    unsetenv("KX_DB_STATEMENT_TIMEOUT_MS");
    assert_int_equal(err, KX_OK);
    int64_t t0 = kx_mono_ms();
    const char *secs[] = {"3"};
    PGresult *r = kx_db_exec(db, "sleep", 1, secs, &err);
    int64_t took = kx_mono_ms() - t0;
    assert_null(r);
    assert_int_equal(err, KX_ERR_TIMEOUT);
    assert_string_equal(kx_db_last_sqlstate(db), "57014");
    assert_true(took >= 150 && took < 2000);
    /* The connection survives a cancelled statement. */
    const char *short_secs[] = {"0.01"};
    r = kx_db_exec(db, "sleep", 1, short_secs, &err);
    assert_non_null(r);
    PQclear(r);
    kx_db_close(db);
}

static void test_reconnects_after_server_restart(void **state)
{
    kx_db *db = NULL;
    assert_int_equal(kx_db_connect(g_db.pg.url, STMTS, &db), KX_OK);
    const char *key[] = {"22222222-2222-2222-2222-222222222222"};
    kx_err err = KX_ERR_INTERNAL;
    PGresult *r = kx_db_exec(db, "project_name", 1, key, &err);
    assert_non_null(r);
    PQclear(r);

    /* Outside a transaction the statement is re-prepared on a new connection, transparently. */
    assert_int_equal(kx_th_pg_restart(&g_db.pg), KX_OK);
    r = kx_db_exec(db, "project_name", 1, key, &err);
    assert_non_null(r);
    assert_int_equal(err, KX_OK);
    assert_string_equal(PQgetvalue(r, 0, 0), "first");
    PQclear(r);

    /* A write on a connection that died while idle (here by a restart) whose statement was
     * never prepared on it: its PREPARE fails first, so the write ran nowhere and is run again
     * on a new connection (it was refused as "may have committed": after a Postgres restart
     * the gateway answered 503 to the first request on each of its pooled connections). */
    kx_db *w = NULL;
    assert_int_equal(kx_db_connect(g_db.pg.url, STMTS, &w), KX_OK);
    r = kx_db_exec(w, "project_name", 1, key, &err); /* connected, project_desc not prepared */
    assert_non_null(r);
    PQclear(r);
    assert_int_equal(kx_th_pg_restart(&g_db.pg), KX_OK);
    const char *desc[] = {"22222222-2222-2222-2222-222222222222", "after a restart"};
    long rows = 0;
    assert_int_equal(kx_db_exec_cmd(w, "project_desc", 2, desc, &rows), KX_OK);
    assert_int_equal(rows, 1);
    kx_db_close(w);

    /* Inside a transaction a lost connection is an error, not a silent autocommit. */
    assert_int_equal(kx_db_begin(db), KX_OK);
    assert_int_equal(kx_th_pg_restart(&g_db.pg), KX_OK);
    r = kx_db_exec(db, "project_name", 1, key, &err);
    assert_null(r);
    assert_int_equal(err, KX_ERR_UNAVAILABLE);
    r = kx_db_exec(db, "project_name", 1, key, &err);
    assert_null(r);
    assert_int_equal(err, KX_ERR_UNAVAILABLE);
    assert_int_equal(kx_db_commit(db), KX_ERR_UNAVAILABLE);
    kx_db_rollback(db);
    r = kx_db_exec(db, "project_name", 1, key, &err);
    assert_non_null(r);
    PQclear(r);
    /* A failed COMMIT also ends the transaction: no rollback needed to recover. */
    assert_int_equal(kx_db_begin(db), KX_OK);
    assert_int_equal(kx_th_pg_restart(&g_db.pg), KX_OK);
    assert_int_equal(kx_db_commit(db), KX_ERR_UNAVAILABLE);
    r = kx_db_exec(db, "project_name", 1, key, &err);
    assert_non_null(r);
    PQclear(r);

    /* Server down: unavailable; the handle recovers once the server is back. */
    assert_int_equal(kx_th_pg_down(&g_db.pg), KX_OK);
    r = kx_db_exec(db, "project_name", 1, key, &err);
    assert_null(r);
    assert_int_equal(err, KX_ERR_UNAVAILABLE);
    assert_false(kx_db_ok(db));
    assert_int_equal(kx_th_pg_up(&g_db.pg), KX_OK);
    int64_t give_up = kx_mono_ms() + 5000;
    while (!kx_db_ok(db) && kx_mono_ms() < give_up) {
    }
    assert_true(kx_db_ok(db));
    r = kx_db_exec(db, "project_name", 1, key, &err);
    assert_non_null(r);
    PQclear(r);
    kx_db_close(db);
}

/* Pipeline mode: results come back in send order, matched to their statements; after a
 * failure the rest up to the sync is "not run" (never success) while last_sqlstate stays the
 * failing one's; an unknown statement is reported on its own result; other calls are refused
 * while a pipeline is open; after a reconnect the statements are prepared again inside the
 * pipeline. */
static void test_pipeline_results_in_order_and_aborts(void **state)
{
    kx_db *db = NULL;
    assert_int_equal(kx_db_connect(g_db.pg.url, STMTS, &db), KX_OK);
    const char *pa[] = {"55555555-5555-5555-5555-555555555555", "pa", ACCOUNT};
    const char *pb[] = {"66666666-6666-6666-6666-666666666666", "pb", ACCOUNT};
    const char *ka[] = {pa[0]}, *kb[] = {pb[0]};

    /* BEGIN, two inserts, two reads, COMMIT: one round trip, results in order. */
    assert_int_equal(kx_db_pipe_begin(db), KX_OK);
    assert_int_equal(kx_db_pipe_send_sql(db, "BEGIN"), KX_OK);
    assert_int_equal(kx_db_pipe_send(db, "project_insert", 3, pa), KX_OK);
    assert_int_equal(kx_db_pipe_send(db, "project_insert", 3, pb), KX_OK);
    assert_int_equal(kx_db_pipe_send(db, "project_name", 1, kb), KX_OK);
    assert_int_equal(kx_db_pipe_send(db, "project_name", 1, ka), KX_OK);
    assert_int_equal(kx_db_pipe_send_sql(db, "COMMIT"), KX_OK);
    assert_int_equal(kx_db_pipe_sent(db), 6);
    /* misuse while it is open: refused, the pipeline unharmed */
    kx_err err = KX_OK;
    assert_null(kx_db_exec(db, "project_name", 1, ka, &err));
    assert_int_equal(err, KX_ERR_INTERNAL);
    assert_int_equal(kx_db_begin(db), KX_ERR_INTERNAL);
    assert_int_equal(kx_db_pipe_begin(db), KX_ERR_INTERNAL);
    assert_int_equal(kx_db_pipe_sync(db), KX_OK);
    assert_int_equal(kx_db_pipe_send(db, "project_name", 1, ka), KX_ERR_INTERNAL); /* synced */
    long rows = 0;
    assert_int_equal(kx_db_pipe_result_cmd(db, NULL), KX_OK); /* BEGIN */
    assert_int_equal(kx_db_pipe_result_cmd(db, &rows), KX_OK);
    assert_int_equal(rows, 1);
    assert_int_equal(kx_db_pipe_result_cmd(db, &rows), KX_OK);
    PGresult *r = kx_db_pipe_result(db, &err);
    assert_non_null(r);
    assert_string_equal(PQgetvalue(r, 0, 0), "pb");
    PQclear(r);
    r = kx_db_pipe_result(db, &err);
    assert_non_null(r);
    assert_string_equal(PQgetvalue(r, 0, 0), "pa");
    PQclear(r);
    assert_int_equal(kx_db_pipe_result_cmd(db, NULL), KX_OK); /* COMMIT */
    assert_null(kx_db_pipe_result(db, &err));                 /* no 7th */
    assert_int_equal(err, KX_ERR_INTERNAL);
    assert_int_equal(kx_db_pipe_read(db), 6);
    kx_db_pipe_end(db);
    assert_int_equal(count(db, "SELECT count(*) FROM projects WHERE name IN ('pa', 'pb')"), 2);

    /* The second insert conflicts: the read after it and COMMIT are not run; nothing of the
     * transaction stays; the connection is usable after kx_db_rollback. */
    const char *pc[] = {"77777777-7777-7777-7777-777777777777", "pc", ACCOUNT};
    assert_int_equal(kx_db_pipe_begin(db), KX_OK);
    assert_int_equal(kx_db_pipe_send_sql(db, "BEGIN"), KX_OK);
    assert_int_equal(kx_db_pipe_send(db, "project_insert", 3, pc), KX_OK);
    assert_int_equal(kx_db_pipe_send(db, "project_insert", 3, pa), KX_OK);
    assert_int_equal(kx_db_pipe_send(db, "project_name", 1, ka), KX_OK);
    assert_int_equal(kx_db_pipe_send_sql(db, "COMMIT"), KX_OK);
    assert_int_equal(kx_db_pipe_result_cmd(db, NULL), KX_OK); /* syncs by itself */
    assert_int_equal(kx_db_pipe_result_cmd(db, NULL), KX_OK);
    assert_int_equal(kx_db_pipe_result_cmd(db, NULL), KX_ERR_CONFLICT);
    assert_null(kx_db_pipe_result(db, &err));
    assert_int_equal(err, KX_ERR_CANCELLED);
    assert_int_equal(kx_db_pipe_skip(db, 5), KX_ERR_CANCELLED); /* COMMIT: not run */
    assert_string_equal(kx_db_last_sqlstate(db), "23505");
    kx_db_pipe_end(db);
    kx_db_rollback(db);
    assert_int_equal(count(db, "SELECT count(*) FROM projects WHERE name = 'pc'"), 0);

    /* An unknown statement: its own result says so, later ones are not run, earlier ones
     * are. Without BEGIN each statement commits by itself. */
    const char *pd[] = {"88888888-8888-8888-8888-888888888888", "pd", ACCOUNT};
    assert_int_equal(kx_db_pipe_begin(db), KX_OK);
    assert_int_equal(kx_db_pipe_send(db, "project_insert", 3, pd), KX_OK);
    assert_int_equal(kx_db_pipe_send(db, "no_such_statement", 0, NULL), KX_ERR_INVALID);
    assert_int_equal(kx_db_pipe_send(db, "project_name", 1, ka), KX_ERR_CANCELLED);
    assert_int_equal(kx_db_pipe_result_cmd(db, NULL), KX_OK);
    assert_int_equal(kx_db_pipe_result_cmd(db, NULL), KX_ERR_INVALID);
    assert_int_equal(kx_db_pipe_result_cmd(db, NULL), KX_ERR_CANCELLED);
    kx_db_pipe_end(db);
    assert_int_equal(count(db, "SELECT count(*) FROM projects WHERE name = 'pd'"), 1);

    /* Ended without reading: the results are dropped, the connection is in step again. */
    assert_int_equal(kx_db_pipe_begin(db), KX_OK);
    assert_int_equal(kx_db_pipe_send(db, "project_name", 1, ka), KX_OK);
    assert_int_equal(kx_db_pipe_send(db, "project_name", 1, kb), KX_OK);
    kx_db_pipe_end(db);
    r = kx_db_exec(db, "project_name", 1, kb, &err);
    assert_non_null(r);
    assert_string_equal(PQgetvalue(r, 0, 0), "pb");
    PQclear(r);

    /* The server restarts: the pipeline prepares its statements again on the new connection
     * (pg_prepared_statements is per connection). */
    assert_int_equal(kx_th_pg_restart(&g_db.pg), KX_OK);
    assert_false(kx_db_pipe_send(db, "project_name", 1, ka) == KX_OK); /* not in a pipeline */
    /* the old connection looks fine until used: this pipeline finds it gone */
    assert_int_equal(kx_db_pipe_begin(db), KX_OK);
    assert_int_equal(kx_db_pipe_send(db, "project_name", 1, ka), KX_OK);
    assert_int_equal(kx_db_pipe_result_cmd(db, NULL), KX_ERR_UNAVAILABLE);
    kx_db_pipe_end(db);
    int64_t give_up = kx_mono_ms() + 5000;
    while (!kx_db_ok(db) && kx_mono_ms() < give_up) {
    }
    assert_int_equal(kx_db_pipe_begin(db), KX_OK);
    assert_int_equal(kx_db_pipe_send(db, "project_name", 1, ka), KX_OK);
    assert_int_equal(kx_db_pipe_send(db, "project_name", 1, kb), KX_OK);
    r = kx_db_pipe_result(db, &err);
    assert_non_null(r);
    assert_string_equal(PQgetvalue(r, 0, 0), "pa");
    PQclear(r);
    r = kx_db_pipe_result(db, &err);
    assert_non_null(r);
    assert_string_equal(PQgetvalue(r, 0, 0), "pb");
    PQclear(r);
    kx_db_pipe_end(db);
    assert_int_equal(count(db, "SELECT count(*) FROM pg_prepared_statements"), 1);

    /* The connection dies inside a pipeline: the rest is UNAVAILABLE; the next call
     * reconnects. */
    assert_int_equal(kx_db_pipe_begin(db), KX_OK);
    assert_int_equal(kx_db_pipe_send_sql(db, "SELECT pg_terminate_backend(pg_backend_pid())"),
                     KX_OK);
    assert_int_equal(kx_db_pipe_send(db, "project_name", 1, ka), KX_OK);
    assert_int_equal(kx_db_pipe_result_cmd(db, NULL), KX_ERR_UNAVAILABLE);
    assert_int_equal(kx_db_pipe_result_cmd(db, NULL), KX_ERR_UNAVAILABLE);
    kx_db_pipe_end(db);
    r = kx_db_exec(db, "project_name", 1, kb, &err);
    assert_non_null(r);
    PQclear(r);
    kx_db_close(db);
}

static void test_connect_while_down_gives_a_handle(void **state)
{
    char url[300];
    snprintf(url, sizeof url, "postgresql://postgres@127.0.0.1:%u/kortix", kx_th_free_port());
    kx_db *db = NULL;
    assert_int_equal(kx_db_connect(url, STMTS, &db), KX_ERR_UNAVAILABLE);
    assert_non_null(db);
    kx_err err = KX_OK;
    assert_null(kx_db_exec(db, "project_name", 0, NULL, &err));
    assert_int_equal(err, KX_ERR_UNAVAILABLE);
    assert_string_equal(kx_db_last_sqlstate(db), "08006");
    kx_db_close(db);
}

/* A "server" that accepts TCP connections and closes them at once, counting them. */
typedef struct slammer {
    int fd;
    atomic_int accepted;
    atomic_bool stop;
} slammer;

static void *slam_thread(void *arg)
{
    slammer *s = arg;
    while (!atomic_load(&s->stop)) {
        struct pollfd pfd = {.fd = s->fd, .events = POLLIN};
        if (poll(&pfd, 1, 10) == 1) {
            int c = accept(s->fd, NULL, NULL);
            if (c >= 0) {
                atomic_fetch_add(&s->accepted, 1);
                close(c);
            }
        }
    }
    return NULL;
}

static void test_reconnect_attempts_back_off(void **state)
{
    slammer s = {.fd = socket(AF_INET, SOCK_STREAM, 0)};
    assert_true(s.fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    assert_int_equal(bind(s.fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(s.fd, 64), 0);
    assert_int_equal(getsockname(s.fd, (struct sockaddr *)&sa, &len), 0);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, slam_thread, &s), 0);

    char url[300];
    snprintf(url, sizeof url, "postgresql://postgres@127.0.0.1:%u/kortix", ntohs(sa.sin_port));
    kx_db *db = NULL;
    assert_int_equal(kx_db_connect(url, STMTS, &db), KX_ERR_UNAVAILABLE);
    /* Callers that retry in a tight loop for 350 ms: attempts at about 0, 100, 300 ms. */
    int64_t until = kx_mono_ms() + 350;
    int calls = 0;
    while (kx_mono_ms() < until) {
        assert_false(kx_db_ok(db));
        calls++;
    }
    kx_db_close(db);
    atomic_store(&s.stop, true);
    pthread_join(t, NULL);
    close(s.fd);
    int attempts = atomic_load(&s.accepted);
    assert_true(calls > 100);
    assert_true(attempts >= 2 && attempts <= 5);
}

typedef struct waiter {
    kx_db_pool *pool;
    kx_db *got;
} waiter;

static void *pool_waiter(void *arg)
{
    waiter *w = arg;
    w->got = kx_db_pool_get(w->pool, kx_deadline_in(5000));
    return NULL;
}

static void test_pool_blocks_until_deadline_or_put(void **state)
{
    kx_db_pool *pool = NULL;
    assert_int_equal(kx_db_pool_new(g_db.pg.url, STMTS, 2, &pool), KX_OK);
    kx_db *a = kx_db_pool_get(pool, kx_deadline_in(1000));
    kx_db *b = kx_db_pool_get(pool, kx_deadline_in(1000));
    assert_non_null(a);
    assert_non_null(b);
    assert_ptr_not_equal(a, b);
    assert_true(kx_db_ok(a));

    int64_t t0 = kx_mono_ms();
    assert_null(kx_db_pool_get(pool, kx_deadline_in(200)));
    int64_t took = kx_mono_ms() - t0;
    assert_true(took >= 150 && took < 1500);

    waiter w = {.pool = pool};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, pool_waiter, &w), 0);
    /* A connection returned inside a transaction is rolled back first. */
    assert_int_equal(kx_db_begin(a), KX_OK);
    kx_db_pool_put(pool, a);
    pthread_join(t, NULL);
    assert_ptr_equal(w.got, a);
    kx_err err = KX_OK;
    PGresult *r = kx_db_exec_sql(a, "SELECT now() = statement_timestamp()", &err);
    assert_non_null(r);
    assert_string_equal(PQgetvalue(r, 0, 0), "t"); /* not inside the old transaction */
    PQclear(r);
    kx_db_pool_put(pool, w.got);
    kx_db_pool_put(pool, b);
    kx_db_pool_free(pool);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_migrate_real_schema_is_idempotent),
        cmocka_unit_test(test_concurrent_migrations_apply_once),
        cmocka_unit_test(test_migrations_in_order_and_broken_one_rolls_back),
        cmocka_unit_test(test_prepared_statements_and_conflict),
        cmocka_unit_test(test_statement_timeout_maps_to_timeout),
        cmocka_unit_test(test_reconnects_after_server_restart),
        cmocka_unit_test(test_pipeline_results_in_order_and_aborts),
        cmocka_unit_test(test_connect_while_down_gives_a_handle),
        cmocka_unit_test(test_reconnect_attempts_back_off),
        cmocka_unit_test(test_pool_blocks_until_deadline_or_put),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
