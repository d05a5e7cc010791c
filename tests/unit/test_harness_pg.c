/* test_harness_pg.c — the harness's PostgreSQL and nats-server do not outlive the test that
 * started them: a child process starts both and is killed with SIGKILL (as ctest kills a test
 * at its timeout); within a few seconds the postmaster and nats-server are gone, the port
 * closed and no process holds a file of the temp dir. (Before, pg_ctl daemonized the
 * postmaster and nats-server was left in its own session: both ran on, orphaned, until someone
 * stopped them by hand.) The same after a restart with fsync on (kx_th_pg.durable, what
 * bench_run's durable phase does). Also the migrated-database helper
 * (kx_th_pgdb_start) and the statement lookup (kx_th_stmt_sql). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "kx/log.h"
#include "kx/time.h"
#include "pgdb.h"
#include "procstat.h"
#include "pgplans.h"

/* The postmaster's pid from <dir>/postgres/pg/postmaster.pid, 0 if unreadable. */
static pid_t postmaster_of(const char *tmp)
{
    char dir[512];
    snprintf(dir, sizeof dir, "%s/postgres/pg", tmp);
    return kx_th_postmaster_of(dir);
}

/* SHOW fsync on the server at url is "on". */
static bool fsync_on(const char *url)
{
    PGconn *c = PQconnectdb(url);
    PGresult *r = PQexec(c, "SHOW fsync");
    bool on = PQresultStatus(r) == PGRES_TUPLES_OK && strcmp(PQgetvalue(r, 0, 0), "on") == 0;
    PQclear(r);
    PQfinish(c);
    return on;
}

/* The test process: starts Postgres and nats-server (restart_durable: then restarts Postgres
 * with fsync on, as bench_run's durable phase does), is killed; nothing of it may remain. */
static void servers_die_with_their_test(bool restart_durable)
{
    char *tmp = kx_th_tmpdir("kx-th-orphan");
    assert_non_null(tmp);
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) { /* the "test" that ctest will kill */
        close(fds[0]);
        kx_th_pg pg;
        kx_th_nats nats;
        bool up = kx_th_pg_start(tmp, &pg) == KX_OK;
        if (up && restart_durable) {
            pg.durable = true;
            up = kx_th_pg_down(&pg) == KX_OK && kx_th_pg_up(&pg) == KX_OK && fsync_on(pg.url);
        }
        long msg[2] = {up ? pg.port : 0, kx_th_nats_start(tmp, &nats) == KX_OK ? nats.pid : 0};
        if (write(fds[1], msg, sizeof msg) != (ssize_t)sizeof msg)
            _exit(1);
        for (;;)
            pause();
    }
    close(fds[1]);
    long msg[2] = {0, 0};
    ssize_t r;
    do {
        r = read(fds[0], msg, sizeof msg);
    } while (r < 0 && errno == EINTR);
    close(fds[0]);
    assert_int_equal(r, sizeof msg);
    long port = msg[0];
    pid_t nats = (pid_t)msg[1];
    assert_true(port > 0);
    assert_true(nats > 0);
    assert_true(kx_th_alive(nats));
    pid_t pm = postmaster_of(tmp);
    assert_true(pm > 0);
    assert_true(kx_th_alive(pm));
    assert_true(kx_th_port_accepts((uint16_t)port));

    assert_int_equal(kill(child, SIGKILL), 0);
    assert_int_equal(waitpid(child, NULL, 0), child);

    int64_t t0 = kx_mono_ms(), give_up = t0 + 10000; /* room for a loaded machine */
    while ((kx_th_alive(pm) || kx_th_port_accepts((uint16_t)port) || kx_th_alive(nats)) &&
           kx_mono_ms() < give_up)
        usleep(20000);
    bool pm_gone = !kx_th_alive(pm);
    bool port_closed = !kx_th_port_accepts((uint16_t)port);
    bool nats_gone = !kx_th_alive(nats);
    printf("%lld ms after its test's SIGKILL: postmaster %d %s, nats-server %d %s\n",
           (long long)(kx_mono_ms() - t0), (int)pm, pm_gone ? "gone" : "STILL RUNNING", (int)nats,
           nats_gone ? "gone" : "STILL RUNNING");
    int holders = -1;
    while (kx_mono_ms() < give_up + 2000 && (holders = kx_th_procs_using(tmp)) != 0)
        usleep(100000);
    if (!pm_gone) /* the leak this test is about: do not leave it running */
        kill(pm, SIGQUIT);
    if (!nats_gone)
        kill(nats, SIGKILL);
    kx_th_rmrf(tmp);
    free(tmp);
    assert_true(pm_gone);
    assert_true(port_closed);
    assert_true(nats_gone);
    assert_int_equal(holders, 0);
}

static void test_servers_die_with_their_test(void **state)
{
    (void)state;
    servers_die_with_their_test(false);
}

/* bench_run's durable phase: its second postmaster (fsync on) dies with the bench too (it was
 * started with pg_ctl, daemonized, and outlived a killed bench). */
static void test_durable_restart_dies_with_its_test(void **state)
{
    (void)state;
    servers_die_with_their_test(true);
}

/* kx_th_pgdb_start: a migrated database with a connection; kx_th_stmt_sql finds a statement's
 * SQL by name in a statement table. */
static const kx_db_stmt STMTS[] = {
    {"one", "SELECT 1"},
    {"two", "SELECT 2"},
    KX_DB_STMT_END,
};

static void test_migrated_database(void **state)
{
    (void)state;
    kx_th_pgdb d;
    assert_int_equal(kx_th_pgdb_start("kx-th-pgdb", &d), KX_OK);
    PGresult *r = PQexec(d.sql, "SELECT count(*) FROM agent_runs");
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    assert_string_equal(PQgetvalue(r, 0, 0), "0");
    PQclear(r);
    char dir[512];
    snprintf(dir, sizeof dir, "%s", d.tmp);
    kx_th_pgdb_stop(&d);
    assert_null(d.sql);
    assert_null(d.tmp);
    assert_int_not_equal(access(dir, F_OK), 0);

    assert_string_equal(kx_th_stmt_sql(STMTS, "two"), "SELECT 2");
    assert_null(kx_th_stmt_sql(STMTS, "three"));
}

int main(void)
{
    kx_log_init("test_harness_pg", "test");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_servers_die_with_their_test),
        cmocka_unit_test(test_durable_restart_dies_with_its_test),
        cmocka_unit_test(test_migrated_database),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
