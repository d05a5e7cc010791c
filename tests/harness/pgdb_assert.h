/* tests/harness/pgdb_assert.h — SQL for cmocka tests over a direct libpq connection (a
 * kx_th_pgdb's sql, or any other): run a statement and fail the test, naming the statement and
 * PostgreSQL's error, when it does not succeed. Header-only so that the harness library itself
 * never asserts and never links cmocka; include <cmocka.h> (with its prerequisites) first.
 *
 * Ownership: kx_th_sql_q's result is the caller's (PQclear). */
#ifndef KX_TEST_PGDB_ASSERT_H
#define KX_TEST_PGDB_ASSERT_H

#include <libpq-fe.h>
#include <time.h>

/* PQexecParams(c, sql, n params as text); the result when it is COMMAND_OK or TUPLES_OK,
 * otherwise the test fails. */
static inline PGresult *kx_th_sql_q(PGconn *c, const char *sql, int n, const char *const *params)
{
    PGresult *r = PQexecParams(c, sql, n, NULL, params, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
        fail_msg("SQL failed: %s: %s", sql, PQerrorMessage(c));
    return r;
}

/* kx_th_sql_q with the result dropped. */
static inline void kx_th_sql_exec(PGconn *c, const char *sql, int n, const char *const *params)
{
    PQclear(kx_th_sql_q(c, sql, n, params));
}

/* A new connection to url (a second session, for the concurrent cases); the test fails when it
 * cannot connect. The caller PQfinish-es it. */
static inline PGconn *kx_th_sql_connect(const char *url)
{
    PGconn *c = PQconnectdb(url);
    assert_int_equal(PQstatus(c), CONNECTION_OK);
    return c;
}

/* Sends sql on c (not waiting for the answer) and checks that it is still waiting (for a lock)
 * after 300 ms; the caller collects the answer with PQgetResult. */
static inline void kx_th_sql_send_blocked(PGconn *c, const char *sql, int n,
                                          const char *const *params)
{
    assert_int_equal(PQsendQueryParams(c, sql, n, NULL, params, NULL, NULL, 0), 1);
    struct timespec ts = {0, 300 * 1000 * 1000};
    nanosleep(&ts, NULL);
    assert_int_equal(PQconsumeInput(c), 1);
    assert_int_equal(PQisBusy(c), 1);
}

#endif
