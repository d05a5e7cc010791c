/* kx/db.h — PostgreSQL: connections that reconnect, prepared statements, a small pool, and
 * migrations.
 *
 * A kx_db is one libpq connection; it is NOT thread-safe (one thread at a time). Services with
 * several threads take connections from a kx_db_pool. Statements are declared once per service
 * as a static table of {name, sql}; each connection prepares them on first use and again after
 * every reconnect. Every connection sets statement_timeout (KX_DB_STATEMENT_TIMEOUT_MS,
 * default 5000) so no query outlives the bus-and-database deadline, and TimeZone=UTC so that
 * timestamps print as ISO-8601 with +00:00.
 *
 * Ownership: PGresult pointers returned to the caller are the caller's (PQclear). Parameter
 * strings are borrowed for the duration of the call.
 */
#ifndef KX_DB_H
#define KX_DB_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "kx/err.h"
#include "kx/time.h"

typedef struct kx_db_stmt {
    const char *name;
    const char *sql; /* with $1..$n placeholders; cast them ($1::uuid) to fix types */
} kx_db_stmt;
#define KX_DB_STMT_END \
    {                  \
        NULL, NULL     \
    }

typedef struct kx_db kx_db;
typedef struct kx_db_pool kx_db_pool;

/* Connects (conninfo: a libpq URL or key=value string). stmts is a table ending in
 * KX_DB_STMT_END with static lifetime, or NULL. On failure returns KX_ERR_UNAVAILABLE and *out
 * is still a usable handle that will try to reconnect on the next call (so services can start
 * before Postgres). */
kx_err kx_db_connect(const char *conninfo, const kx_db_stmt *stmts, kx_db **out);
void kx_db_close(kx_db *db); /* NULL is a no-op */
bool kx_db_ok(kx_db *db);    /* connected now (tries one reconnect if not) */

/* Runs a prepared statement by name. Returns the result (PGRES_TUPLES_OK or PGRES_COMMAND_OK)
 * or NULL with *err set (and the detail logged): KX_ERR_UNAVAILABLE when the connection is
 * down (one reconnect and retry is attempted, outside a transaction only, and only when the
 * statement is a plain SELECT, or a write whose PREPARE failed so it ran nowhere — the first
 * use of a connection that died while idle: a write whose answer was lost may have committed,
 * so it is never blindly run again — see kx_db_exec_idem), KX_ERR_CONFLICT on
 * a unique/foreign-key violation (SQLSTATE 23xxx), KX_ERR_TIMEOUT on statement_timeout,
 * KX_ERR_INVALID on data errors (22xxx), KX_ERR_CONFLICT also for our own SQLSTATE class KX
 * (a rule of the schema refused the write, e.g. KX429 / KX403 of an account's limits: see
 * deploy/migrations/005_account_limits_triggers.sql), KX_ERR_INTERNAL otherwise. nparams
 * may be 0. A NULL entry in params is SQL NULL. */
PGresult *kx_db_exec(kx_db *db, const char *stmt, int nparams, const char *const *params,
                     kx_err *err);
/* As kx_db_exec for statements without rows: *rows (may be NULL) gets PQcmdTuples. */
kx_err kx_db_exec_cmd(kx_db *db, const char *stmt, int nparams, const char *const *params,
                      long *rows);
/* The same for a write the caller declares idempotent: running it a second time after a lost
 * answer gives the same outcome as the first (client-generated ids with ON CONFLICT DO NOTHING,
 * compare-and-set statements that re-read the row and recognise their own success). Only such
 * statements are retried after a lost connection. */
PGresult *kx_db_exec_idem(kx_db *db, const char *stmt, int nparams, const char *const *params,
                          kx_err *err);
kx_err kx_db_exec_cmd_idem(kx_db *db, const char *stmt, int nparams, const char *const *params,
                           long *rows);
/* kx_db_exec whose result has a row: the result (the caller PQclears it), or KX_ERR_NOT_FOUND
 * and *res NULL when it has none; kx_db_exec's errors otherwise. */
kx_err kx_db_exec_row(kx_db *db, const char *stmt, int nparams, const char *const *params,
                      PGresult **res);
/* kx_db_exec_row's first column of the first row, malloc'd in *out (the caller frees it; SQL
 * NULL is ""); out may be NULL when the row's existence is the answer. */
kx_err kx_db_exec_text(kx_db *db, const char *stmt, int nparams, const char *const *params,
                       char **out);
/* Unprepared SQL (DDL, BEGIN/COMMIT, tests). */
PGresult *kx_db_exec_sql(kx_db *db, const char *sql, kx_err *err);

kx_err kx_db_begin(kx_db *db);
kx_err kx_db_commit(kx_db *db);
void kx_db_rollback(kx_db *db); /* best effort */

/* Pipeline mode: several prepared statements sent before any answer is read, one round trip
 * for all of them (libpq pipeline mode). The sequence, on one thread, is always
 *
 *   kx_db_pipe_begin(db);                        connects if needed; pair it with _end ALWAYS
 *   kx_db_pipe_send(db, "stmt", n, params);      any number, in order (prepared statements of
 *   kx_db_pipe_send_sql(db, "BEGIN");              the table, prepared inside the pipeline when
 *   kx_db_pipe_sync(db);                           this connection has not yet; or plain SQL
 *   r = kx_db_pipe_result(db, &err);  (x sent)     without parameters: BEGIN, COMMIT)
 *   kx_db_pipe_end(db);                          reads what was not read, leaves pipeline mode
 *
 * Every send makes exactly one result, read back in send order by kx_db_pipe_result: the
 * statement's PGresult (the caller's, PQclear) or NULL with *err mapped as kx_db_exec maps it.
 * After the first statement that fails, the server skips the rest up to the sync: their
 * results are NULL with KX_ERR_CANCELLED ("not run"), never success, and kx_db_last_sqlstate
 * stays the failing one's. A send that could not be sent (unknown statement: KX_ERR_INVALID;
 * the connection is down: KX_ERR_UNAVAILABLE, for it and every later result) still makes its
 * result, carrying that error. Nothing is retried: the caller decides (statements inside an
 * explicit BEGIN are rolled back with the transaction; the transaction is NOT ended by
 * kx_db_pipe_end: COMMIT it in the pipeline or call kx_db_rollback after). kx_db_pipe_sync is
 * optional (the first kx_db_pipe_result syncs). While a pipeline is open every other call on db
 * except kx_db_rollback (which ends it first) fails with KX_ERR_INTERNAL. Parameter strings are
 * copied by libpq at send. */
kx_err kx_db_pipe_begin(kx_db *db);
kx_err kx_db_pipe_send(kx_db *db, const char *stmt, int nparams, const char *const *params);
kx_err kx_db_pipe_send_sql(kx_db *db, const char *sql);
kx_err kx_db_pipe_sync(kx_db *db);
PGresult *kx_db_pipe_result(kx_db *db, kx_err *err);
/* The same for a statement without rows: *rows (may be NULL) gets PQcmdTuples. */
kx_err kx_db_pipe_result_cmd(kx_db *db, long *rows);
/* Results sent so far in this pipeline (its sends), and read so far. */
size_t kx_db_pipe_sent(const kx_db *db);
size_t kx_db_pipe_read(const kx_db *db);
/* Reads and drops results until upto have been read (at most every one sent); returns the
 * first error among them, KX_OK if none. */
kx_err kx_db_pipe_skip(kx_db *db, size_t upto);
void kx_db_pipe_end(kx_db *db); /* no-op outside a pipeline */

/* The SQLSTATE of the last failed call ("" if none). */
const char *kx_db_last_sqlstate(const kx_db *db);
const char *kx_db_last_error(const kx_db *db);
/* The DETAIL field of the last failure ("" if it had none), whole (up to 4 KiB). */
const char *kx_db_last_detail(const kx_db *db);

/* Applies every "*.sql" file of dir not yet recorded in kx_schema_migrations, in file-name
 * order, each in its own transaction, all under pg_advisory_lock so that concurrent services
 * migrate once. Idempotent. */
kx_err kx_db_migrate(kx_db *db, const char *dir);
/* The migrations directory: KX_MIGRATIONS_DIR, else the source tree's deploy/migrations. */
const char *kx_db_migrations_dir(void);

/* Pool: size connections created lazily. kx_db_pool_get blocks until one is free or the
 * deadline passes (NULL then). Return every connection with kx_db_pool_put. */
kx_err kx_db_pool_new(const char *conninfo, const kx_db_stmt *stmts, int size, kx_db_pool **out);
kx_db *kx_db_pool_get(kx_db_pool *pool, kx_deadline deadline);
void kx_db_pool_put(kx_db_pool *pool, kx_db *db);
void kx_db_pool_free(kx_db_pool *pool); /* all connections must have been returned */

#endif
