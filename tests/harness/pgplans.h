/* tests/harness/pgplans.h — the generic plans of a service's prepared statements, checked
 * against the trap of docs/performance.md (issue 12, "A generic plan that walked every running
 * run"): a prepared statement gets a generic plan at its sixth call and keeps it; made while a
 * table holds few rows, the planner may take a partial index whose predicate the statement
 * repeats (status = 'running', status IN ('queued', 'running'), ...) as a mere filter over the
 * whole index, instead of the primary key. At 10 000 runs every such call walks every active
 * run.
 *
 * kx_th_plans_check prepares each statement with
 * plan_cache_mode = force_generic_plan, EXPLAINs it with every parameter NULL (a generic plan
 * does not look at the values) and fails a statement when its plan
 *   - scans a partial index without an Index Cond (it walks every entry of that index), unless
 *     the statement's expectation allows exactly that index (a sweep that means to), or
 *   - reads agent_runs or messages with a sequential scan (the plan of the empty, never
 *     analyzed database is the one a service caches at its start: PostgreSQL takes a never
 *     analyzed table for 10 pages, and a sequential scan of 10 pages for cheaper than two
 *     index probes; the plan is kept as the table grows, until the first ANALYZE), unless
 *     the expectation's sweeps name that table, or
 *   - does not use the index the expectation requires.
 * A statement whose walk is a known open issue (the expectation's `open`) is printed with its
 * plan and the reason, and not failed.
 *
 * Ownership: the connection is the caller's; the session's plan_cache_mode is reset after. */
#ifndef KX_TEST_PGPLANS_H
#define KX_TEST_PGPLANS_H

#include <libpq-fe.h>
#include <stddef.h>
#include "kx/db.h"

typedef struct kx_th_plan_expect {
    const char *stmt;     /* statement name; NULL ends the table */
    const char *requires; /* an index the plan must use (NULL: none required) */
    const char *sweeps;   /* partial indexes (or agent_runs, messages) the statement may
                           * walk whole, comma-separated (NULL: none) */
    const char *open;     /* a walk known and not fixed yet: why (printed, not failed) */
} kx_th_plan_expect;

/* The SQL of the statement called name in stmts (a table ending in KX_DB_STMT_END), or NULL
 * when there is none: for tests that prepare a service's statement themselves. */
const char *kx_th_stmt_sql(const kx_db_stmt *stmts, const char *name);

/* The shared buffers (hit and read) the plan of sql touched when run — EXPLAIN (ANALYZE,
 * BUFFERS) of it, planning not counted — or -1 (the reason on stderr). sql runs: within a
 * transaction the caller rolls back when it writes. A bound on what a statement reads
 * (e.g. "EXECUTE s(...)" of a service's statement prepared with kx_th_stmt_sql). */
long kx_th_plan_buffers(PGconn *c, const char *sql);

/* The generic plan of sql (EXPLAIN, text format) as a malloc'd string, or NULL with the reason
 * in why. */
char *kx_th_generic_plan(PGconn *c, const char *sql, char *why, size_t cap);

/* Checks every statement of stmts (a table ending in KX_DB_STMT_END) as described above, with
 * expect (ending in a NULL stmt; may be NULL) for the statements that need one. Prints each
 * failure with its plan to stderr; returns the number of failing statements (or of
 * expectations naming no statement of stmts). */
int kx_th_plans_check(PGconn *c, const kx_db_stmt *stmts, const kx_th_plan_expect *expect);

/* A whole test: a migrated database (pgdb.h, no rows), kx_th_plans_check on it empty and
 * again with ended runs, and what it started stopped. 0 when every plan is good (a process
 * exit status). name prefixes the temp dir. */
int kx_th_plans_test(const char *name, const kx_db_stmt *stmts, const kx_th_plan_expect *expect);

#endif
