/* tests/harness/pgdb_assert.h — SQL for cmocka tests over a direct libpq connection (a
 * kx_th_pgdb's sql, or any other): run a statement and fail the test, naming the statement and
 * PostgreSQL's error, when it does not succeed. Header-only so that the harness library itself
 * never asserts and never links cmocka; include <cmocka.h> (with its prerequisites) first.
 *
 * Ownership: kx_th_sql_q's result is the caller's (PQclear). */
#ifndef KX_TEST_PGDB_ASSERT_H
#define KX_TEST_PGDB_ASSERT_H

#include <libpq-fe.h>

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

#endif
