/* db.c — PostgreSQL over libpq: one connection that reconnects by itself, lazily prepared
 * statements, the mapping from SQLSTATE to kx_err, transactions, pipeline mode (kx_db_pipe_*:
 * what was sent is remembered in order, a PREPARE queued in front of a statement this
 * connection has not prepared yet, so each answer is matched to its send), migrations, and the
 * small pool (which needs to see whether a returned connection is still inside a
 * transaction).
 *
 * Reconnection: when the connection is found broken (PQstatus CONNECTION_BAD, or a call failed
 * because the connection went away), the next call resets it, but never more often than a
 * short, growing backoff (100 ms doubling to 2 s) so a down database is not hammered. A call
 * that lost the connection outside a transaction is retried once on the new connection ONLY
 * when a second execution cannot differ from the first: a prepared statement whose SQL is a
 * plain SELECT, or one the caller declares idempotent (kx_db_exec_idem: the statement finds
 * its own earlier success, see docs/architecture.md "Run core"). Any other write that lost its
 * answer fails with KX_ERR_UNAVAILABLE: it may or may not have committed. Inside a transaction
 * it fails with KX_ERR_UNAVAILABLE and the connection stays down until
 * kx_db_rollback ends the transaction (a reconnect there would silently run the rest of the
 * transaction's statements in autocommit). After a reconnect no statement is prepared; each is
 * prepared again on first use. */
#include "kx/db.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "kx/config.h"
#include "kx/file.h"
#include "kx/log.h"

#define RECONNECT_BACKOFF_MIN_MS 100
#define RECONNECT_BACKOFF_MAX_MS 2000
#define CONNECT_TIMEOUT_S "5"
/* pg_advisory_lock key that serialises migrations across processes ("kx_migra" in ASCII). */
#define MIGRATION_LOCK_KEY "7743542548017916513"

/* One thing sent in a pipeline: a caller's statement, or a PREPARE queued in front of one. */
typedef struct pipe_item {
    int stmt;     /* index in the statement table; -1: SQL text (BEGIN, COMMIT) */
    bool prep;    /* our PREPARE of stmt, not a caller's result */
    kx_err err;   /* KX_OK: sent; else it was not sent, and why */
    char sql[24]; /* stmt -1: the SQL's start, for the log */
} pipe_item;

struct pipe_state {
    bool piping;
    bool synced;
    kx_err stop;      /* KX_OK, or why nothing more is sent (the first failure to send) */
    bool lost;        /* the connection went: every result not yet read is UNAVAILABLE */
    bool aborted;     /* a statement failed: the server skips the rest up to the sync */
    kx_err prep_fail; /* a PREPARE failed: reported as its statement's result */
    pipe_item *items;
    size_t nitems, cap, cursor;
    size_t sent, read; /* caller's results */
};

struct kx_db {
    PGconn *conn; /* NULL until the first successful PQconnectdbParams */
    char *conninfo;
    char options[96];          /* "-c statement_timeout=N -c TimeZone=UTC" */
    char tcp_user_timeout[24]; /* ms: statement timeout + 5 s (0 = kernel default) */
    const kx_db_stmt *stmts;   /* static table, may be NULL */
    size_t nstmts;
    bool *prepared;          /* per statement: prepared on this connection */
    bool in_tx;              /* a transaction is open (or was, when the connection broke) */
    int64_t next_attempt_ms; /* monotonic: no reconnect before this */
    int64_t backoff_ms;
    char sqlstate[6];
    char errmsg[512];
    char errdetail[4096];   /* the failure's DETAIL field ("" if none) */
    struct pipe_state pipe; /* kx_db_pipe_*: piping only between _begin and _end */
};

/* What kind of SQL a call runs. */
typedef enum call_kind {
    CALL_PREPARED,
    CALL_PARAMS,
    CALL_SIMPLE
} call_kind;

/* ---- errors -------------------------------------------------------------------------------- */

static kx_err map_sqlstate(const char *st)
{
    if (st == NULL || st[0] == '\0')
        return KX_ERR_INTERNAL;
    if (strncmp(st, "23", 2) == 0)
        return KX_ERR_CONFLICT; /* integrity constraint violation */
    if (strcmp(st, "40001") == 0 || strcmp(st, "40P01") == 0)
        return KX_ERR_CONFLICT; /* serialization failure, deadlock: lost a race */
    if (strcmp(st, "57014") == 0)
        return KX_ERR_TIMEOUT; /* query_canceled: statement_timeout */
    if (strncmp(st, "22", 2) == 0)
        return KX_ERR_INVALID; /* data exception */
    if (strncmp(st, "KX", 2) == 0)
        return KX_ERR_CONFLICT; /* refused by one of our rules (e.g. an account quota) */
    if (strncmp(st, "08", 2) == 0 || strcmp(st, "57P01") == 0 || strcmp(st, "57P02") == 0 ||
        strcmp(st, "57P03") == 0)
        return KX_ERR_UNAVAILABLE; /* connection exception, server shutting down */
    return KX_ERR_INTERNAL;
}

/* Records the failure in db (last_sqlstate/last_error), logs it naming label, returns the
 * kx_err. res may be NULL (then the connection's message is used). */
static kx_err record_failure(kx_db *db, const char *label, const PGresult *res)
{
    const char *st = res != NULL ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    const char *msg = res != NULL ? PQresultErrorMessage(res) : NULL;
    if (msg == NULL || msg[0] == '\0')
        msg = db->conn != NULL ? PQerrorMessage(db->conn) : "not connected";
    bool lost = db->conn == NULL || PQstatus(db->conn) == CONNECTION_BAD;
    if ((st == NULL || st[0] == '\0') && lost)
        st = "08006"; /* connection_failure */
    snprintf(db->sqlstate, sizeof db->sqlstate, "%s", st != NULL ? st : "");
    snprintf(db->errmsg, sizeof db->errmsg, "%s", msg);
    db->errmsg[strcspn(db->errmsg, "\n")] = '\0';
    const char *detail = res != NULL ? PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL) : NULL;
    snprintf(db->errdetail, sizeof db->errdetail, "%s", detail != NULL ? detail : "");
    kx_err err = lost ? KX_ERR_UNAVAILABLE : map_sqlstate(db->sqlstate);
    kx_log_level level = err == KX_ERR_CONFLICT            ? KX_LOG_INFO
        : (err == KX_ERR_TIMEOUT || err == KX_ERR_INVALID) ? KX_LOG_WARN
                                                           : KX_LOG_ERROR;
    kx_log(level, NULL, NULL, "db: %s failed: %s (SQLSTATE %s, %s)", label, db->errmsg,
           db->sqlstate, kx_err_str(err));
    return err;
}

/* ---- connecting ---------------------------------------------------------------------------- */

static void notice_to_log(void *arg, const char *message)
{
    kx_debug("db: notice: %.*s", (int)strcspn(message, "\n"), message);
}

static void forget_prepared(kx_db *db)
{
    for (size_t i = 0; i < db->nstmts; i++)
        db->prepared[i] = false;
}

/* A fresh connection attempt (first connect or reset). Updates the backoff. */
static kx_err try_connect(kx_db *db)
{
    if (db->conn == NULL) {
        /* Later keywords override earlier ones, and dbname is expanded as a URL or
         * key=value string: connect_timeout and the keepalives are defaults the conninfo may
         * override, statement_timeout always applies. statement_timeout runs on the server:
         * against a dead peer (host gone, network partition) only TCP can tell, so keepalives
         * and tcp_user_timeout make a blocking query fail within seconds instead of hanging
         * the calling thread — often an event loop — for the kernel's ~15 minutes. */
        const char *keys[] = {"connect_timeout",
                              "keepalives",
                              "keepalives_idle",
                              "keepalives_interval",
                              "keepalives_count",
                              "tcp_user_timeout",
                              "fallback_application_name",
                              "dbname",
                              "options",
                              NULL};
        const char *vals[] = {CONNECT_TIMEOUT_S,
                              "1",
                              "5",
                              "2",
                              "3",
                              db->tcp_user_timeout,
                              program_invocation_short_name,
                              db->conninfo,
                              db->options,
                              NULL};
        db->conn = PQconnectdbParams(keys, vals, 1);
        if (db->conn == NULL) {
            kx_error("db: out of memory creating a connection");
            return KX_ERR_NOMEM;
        }
        PQsetNoticeProcessor(db->conn, notice_to_log, NULL);
    } else {
        PQreset(db->conn);
        if (PQpipelineStatus(db->conn) != PQ_PIPELINE_OFF) /* a pipeline the old one broke */
            (void)PQexitPipelineMode(db->conn);
    }
    forget_prepared(db);
    if (PQstatus(db->conn) == CONNECTION_OK) {
        db->backoff_ms = 0;
        db->next_attempt_ms = 0;
        return KX_OK;
    }
    db->backoff_ms = db->backoff_ms == 0 ? RECONNECT_BACKOFF_MIN_MS : db->backoff_ms * 2;
    if (db->backoff_ms > RECONNECT_BACKOFF_MAX_MS)
        db->backoff_ms = RECONNECT_BACKOFF_MAX_MS;
    db->next_attempt_ms = kx_mono_ms() + db->backoff_ms;
    snprintf(db->sqlstate, sizeof db->sqlstate, "08006");
    snprintf(db->errmsg, sizeof db->errmsg, "%s", PQerrorMessage(db->conn));
    db->errmsg[strcspn(db->errmsg, "\n")] = '\0';
    kx_warn("db: cannot connect (next attempt in %lld ms): %s", (long long)db->backoff_ms,
            db->errmsg);
    return KX_ERR_UNAVAILABLE;
}

/* KX_OK when the connection is usable now, reconnecting if allowed (not inside a transaction,
 * backoff elapsed). */
static kx_err ensure_connected(kx_db *db)
{
    if (db->conn != NULL && PQstatus(db->conn) == CONNECTION_OK)
        return KX_OK;
    if (db->in_tx) {
        snprintf(db->sqlstate, sizeof db->sqlstate, "08006");
        snprintf(db->errmsg, sizeof db->errmsg, "connection lost inside a transaction");
        kx_warn("db: connection lost inside a transaction; roll back before retrying");
        return KX_ERR_UNAVAILABLE;
    }
    if (db->next_attempt_ms != 0 && kx_mono_ms() < db->next_attempt_ms) {
        snprintf(db->sqlstate, sizeof db->sqlstate, "08006");
        return KX_ERR_UNAVAILABLE;
    }
    return try_connect(db);
}

kx_err kx_db_connect(const char *conninfo, const kx_db_stmt *stmts, kx_db **out)
{
    *out = NULL;
    int64_t timeout_ms = 5000;
    kx_err err = kx_env_int("KX_DB_STATEMENT_TIMEOUT_MS", 5000, 0, 24 * 3600 * 1000, &timeout_ms);
    if (err != KX_OK)
        return err;
    kx_db *db = calloc(1, sizeof *db);
    if (db == NULL)
        return KX_ERR_NOMEM;
    db->conninfo = strdup(conninfo);
    db->stmts = stmts;
    while (stmts != NULL && stmts[db->nstmts].name != NULL)
        db->nstmts++;
    db->prepared = calloc(db->nstmts + 1, sizeof *db->prepared);
    if (db->conninfo == NULL || db->prepared == NULL) {
        kx_db_close(db);
        return KX_ERR_NOMEM;
    }
    /* UTC sessions: to_json(timestamptz) then prints "...+00:00", as Kortix's API does. */
    snprintf(db->options, sizeof db->options, "-c statement_timeout=%lld -c TimeZone=UTC",
             (long long)timeout_ms);
    snprintf(db->tcp_user_timeout, sizeof db->tcp_user_timeout, "%lld",
             timeout_ms > 0 ? (long long)timeout_ms + 5000 : 0LL);
    err = try_connect(db);
    if (err == KX_ERR_NOMEM) {
        kx_db_close(db);
        return err;
    }
    *out = db;
    return err;
}

void kx_db_close(kx_db *db)
{
    if (db == NULL)
        return;
    if (db->conn != NULL)
        PQfinish(db->conn);
    free(db->pipe.items);
    free(db->prepared);
    free(db->conninfo);
    free(db);
}

bool kx_db_ok(kx_db *db)
{
    return ensure_connected(db) == KX_OK;
}

const char *kx_db_last_sqlstate(const kx_db *db)
{
    return db->sqlstate;
}

const char *kx_db_last_error(const kx_db *db)
{
    return db->errmsg;
}

const char *kx_db_last_detail(const kx_db *db)
{
    return db->errdetail;
}

/* ---- running statements -------------------------------------------------------------------- */

static bool transaction_open(PGconn *conn)
{
    PGTransactionStatusType ts = PQtransactionStatus(conn);
    return ts == PQTRANS_INTRANS || ts == PQTRANS_INERROR || ts == PQTRANS_ACTIVE;
}

/* Prepares statement i on the current connection if it is not yet. NULL result = OK. */
static kx_err prepare_if_needed(kx_db *db, size_t i)
{
    if (db->prepared[i])
        return KX_OK;
    PGresult *r = PQprepare(db->conn, db->stmts[i].name, db->stmts[i].sql, 0, NULL);
    ExecStatusType st = PQresultStatus(r);
    const char *code = r != NULL ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    /* 42P05 duplicate_prepared_statement: it is there, which is all we need. */
    if (st == PGRES_COMMAND_OK || (code != NULL && strcmp(code, "42P05") == 0)) {
        PQclear(r);
        db->prepared[i] = true;
        return KX_OK;
    }
    char label[160];
    snprintf(label, sizeof label, "prepare %s", db->stmts[i].name);
    kx_err err = record_failure(db, label, r);
    PQclear(r);
    return err;
}

/* One attempt of a call; NULL and *err on failure. *unsent: it failed before the statement
 * itself was sent (its PREPARE did), so it ran nowhere. */
static PGresult *attempt(kx_db *db, call_kind kind, size_t stmt_index, const char *sql,
                         int nparams, const char *const *params, const char *label, kx_err *err,
                         bool *unsent)
{
    PGresult *r = NULL;
    *unsent = false;
    switch (kind) {
    case CALL_PREPARED:
        *err = prepare_if_needed(db, stmt_index);
        if (*err != KX_OK) {
            *unsent = true;
            return NULL;
        }
        r = PQexecPrepared(db->conn, db->stmts[stmt_index].name, nparams, params, NULL, NULL, 0);
        break;
    case CALL_PARAMS: r = PQexecParams(db->conn, sql, nparams, NULL, params, NULL, NULL, 0); break;
    case CALL_SIMPLE: r = PQexec(db->conn, sql); break;
    }
    ExecStatusType st = PQresultStatus(r);
    if (r != NULL &&
        (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK || st == PGRES_EMPTY_QUERY)) {
        *err = KX_OK;
        return r;
    }
    *err = record_failure(db, label, r);
    PQclear(r);
    return NULL;
}

/* The common path of every call: connect if needed, run, and on a lost connection outside a
 * transaction reconnect and run once more. */
static PGresult *run(kx_db *db, call_kind kind, size_t stmt_index, const char *sql, int nparams,
                     const char *const *params, const char *label, bool retry_ok, kx_err *err)
{
    if (db->pipe.piping) {
        kx_error("db: %s: called inside a pipeline (kx_db_pipe_end it first)", label);
        *err = KX_ERR_INTERNAL;
        return NULL;
    }
    for (int tries = 0;; tries++) {
        *err = ensure_connected(db);
        if (*err != KX_OK) {
            if (tries == 0)
                kx_warn("db: %s: database unavailable", label);
            return NULL;
        }
        bool was_in_tx = db->in_tx || transaction_open(db->conn);
        bool unsent = false;
        PGresult *r = attempt(db, kind, stmt_index, sql, nparams, params, label, err, &unsent);
        if (PQstatus(db->conn) == CONNECTION_OK) {
            db->in_tx = transaction_open(db->conn);
            return r;
        }
        /* The connection broke during the call. */
        db->in_tx = was_in_tx;
        forget_prepared(db);
        if (r != NULL)
            return r; /* the answer arrived before the connection went */
        *err = KX_ERR_UNAVAILABLE;
        if (was_in_tx || tries > 0)
            return NULL;
        /* A write runs again only if it ran nowhere: a connection that died while idle (a
         * server restart) fails at the statement's PREPARE, before the write was sent. */
        if (!retry_ok && !unsent) {
            kx_warn("db: %s: connection lost before the answer; not retried (a write that may "
                    "have committed)",
                    label);
            return NULL;
        }
        db->next_attempt_ms = 0; /* the first reconnect after a loss is immediate */
        kx_info("db: %s: connection lost, reconnecting once", label);
    }
}

static bool find_stmt(const kx_db *db, const char *name, size_t *index)
{
    for (size_t i = 0; i < db->nstmts; i++) {
        if (strcmp(db->stmts[i].name, name) == 0) {
            *index = i;
            return true;
        }
    }
    return false;
}

/* True when sql is a plain SELECT (no data-modifying WITH): running it twice is harmless. */
static bool read_only(const char *sql)
{
    while (*sql == ' ' || *sql == '\n' || *sql == '\t')
        sql++;
    return strncasecmp(sql, "SELECT", 6) == 0;
}

static PGresult *exec_stmt(kx_db *db, const char *stmt, int nparams, const char *const *params,
                           bool idempotent, kx_err *err)
{
    size_t i = 0;
    if (!find_stmt(db, stmt, &i)) {
        kx_error("db: no statement named \"%s\" in this connection's table", stmt);
        snprintf(db->errmsg, sizeof db->errmsg, "unknown statement %s", stmt);
        db->sqlstate[0] = '\0';
        *err = KX_ERR_INVALID;
        return NULL;
    }
    return run(db, CALL_PREPARED, i, NULL, nparams, params, stmt,
               idempotent || read_only(db->stmts[i].sql), err);
}

PGresult *kx_db_exec(kx_db *db, const char *stmt, int nparams, const char *const *params,
                     kx_err *err)
{
    return exec_stmt(db, stmt, nparams, params, false, err);
}

PGresult *kx_db_exec_idem(kx_db *db, const char *stmt, int nparams, const char *const *params,
                          kx_err *err)
{
    return exec_stmt(db, stmt, nparams, params, true, err);
}

static kx_err exec_cmd(kx_db *db, const char *stmt, int nparams, const char *const *params,
                       long *rows, bool idempotent)
{
    kx_err err = KX_OK;
    PGresult *r = exec_stmt(db, stmt, nparams, params, idempotent, &err);
    if (r == NULL)
        return err;
    if (rows != NULL)
        *rows = strtol(PQcmdTuples(r), NULL, 10);
    PQclear(r);
    return KX_OK;
}

kx_err kx_db_exec_cmd(kx_db *db, const char *stmt, int nparams, const char *const *params,
                      long *rows)
{
    return exec_cmd(db, stmt, nparams, params, rows, false);
}

kx_err kx_db_exec_cmd_idem(kx_db *db, const char *stmt, int nparams, const char *const *params,
                           long *rows)
{
    return exec_cmd(db, stmt, nparams, params, rows, true);
}

kx_err kx_db_exec_row(kx_db *db, const char *stmt, int nparams, const char *const *params,
                      PGresult **res)
{
    kx_err err = KX_OK;
    *res = exec_stmt(db, stmt, nparams, params, false, &err);
    if (*res == NULL)
        return err != KX_OK ? err : KX_ERR_INTERNAL;
    if (PQntuples(*res) == 0) {
        PQclear(*res);
        *res = NULL;
        return KX_ERR_NOT_FOUND;
    }
    return KX_OK;
}

kx_err kx_db_exec_text(kx_db *db, const char *stmt, int nparams, const char *const *params,
                       char **out)
{
    PGresult *res = NULL;
    if (out != NULL)
        *out = NULL;
    kx_err err = kx_db_exec_row(db, stmt, nparams, params, &res);
    if (err != KX_OK)
        return err;
    if (out != NULL && (*out = strdup(PQgetvalue(res, 0, 0))) == NULL)
        err = KX_ERR_NOMEM;
    PQclear(res);
    return err;
}

PGresult *kx_db_exec_sql(kx_db *db, const char *sql, kx_err *err)
{
    char label[64];
    snprintf(label, sizeof label, "sql \"%.40s\"", sql);
    return run(db, CALL_SIMPLE, 0, sql, 0, NULL, label, true, err);
}

/* Unprepared SQL with parameters (migrations' bookkeeping). */
static PGresult *exec_params(kx_db *db, const char *sql, int nparams, const char *const *params,
                             kx_err *err)
{
    char label[64];
    snprintf(label, sizeof label, "sql \"%.40s\"", sql);
    return run(db, CALL_PARAMS, 0, sql, nparams, params, label, true, err);
}

/* Runs SQL that returns no rows we need. */
static kx_err exec_simple(kx_db *db, const char *sql)
{
    kx_err err = KX_OK;
    PGresult *r = kx_db_exec_sql(db, sql, &err);
    PQclear(r);
    return err;
}

/* ---- pipeline mode ------------------------------------------------------------------------- */

static void pipe_push(kx_db *db, int stmt, bool prep, kx_err err, const char *sql)
{
    struct pipe_state *p = &db->pipe;
    if (p->nitems == p->cap) {
        size_t cap = p->cap == 0 ? 64 : p->cap * 2;
        pipe_item *n = realloc(p->items, cap * sizeof *n);
        if (n == NULL) { /* cannot even remember it: stop sending, report on every result */
            kx_error("db: out of memory recording a pipelined statement");
            if (p->stop == KX_OK)
                p->stop = KX_ERR_NOMEM;
            if (!prep)
                p->sent++; /* its result: the error above (pipe_next_user finds no item) */
            return;
        }
        p->items = n;
        p->cap = cap;
    }
    pipe_item *it = &p->items[p->nitems++];
    *it = (pipe_item){.stmt = stmt, .prep = prep, .err = err};
    snprintf(it->sql, sizeof it->sql, "%s", sql != NULL ? sql : "?");
    if (!prep)
        p->sent++;
}

/* A send failed (err): nothing more is sent; the connection's state decides whether the rest
 * is UNAVAILABLE (lost) or CANCELLED (not run). */
static kx_err pipe_send_failed(kx_db *db, const char *label)
{
    kx_err err = record_failure(db, label, NULL);
    db->pipe.stop = err;
    return err;
}

kx_err kx_db_pipe_begin(kx_db *db)
{
    struct pipe_state *p = &db->pipe;
    if (p->piping) {
        kx_error("db: kx_db_pipe_begin inside a pipeline");
        return KX_ERR_INTERNAL; /* the open one stays as it is */
    }
    p->piping = true;
    p->synced = p->lost = p->aborted = false;
    p->stop = p->prep_fail = KX_OK;
    p->nitems = p->cursor = p->sent = p->read = 0;
    kx_err err = ensure_connected(db);
    if (err == KX_OK && PQenterPipelineMode(db->conn) != 1)
        err = pipe_send_failed(db, "enter pipeline mode");
    if (err != KX_OK) {
        p->stop = err;
        p->lost = err == KX_ERR_UNAVAILABLE;
    }
    return err;
}

/* Why a send is not sent now (KX_OK: send it). */
static kx_err pipe_cannot_send(kx_db *db, const char *what)
{
    if (!db->pipe.piping) {
        kx_error("db: %s sent outside a pipeline (kx_db_pipe_begin first)", what);
        return KX_ERR_INTERNAL;
    }
    if (db->pipe.synced) {
        kx_error("db: %s sent after the pipeline's sync", what);
        return KX_ERR_INTERNAL;
    }
    if (db->pipe.stop != KX_OK)
        return db->pipe.stop == KX_ERR_UNAVAILABLE ? KX_ERR_UNAVAILABLE : KX_ERR_CANCELLED;
    return KX_OK;
}

kx_err kx_db_pipe_send(kx_db *db, const char *stmt, int nparams, const char *const *params)
{
    kx_err err = pipe_cannot_send(db, stmt);
    if (err == KX_ERR_INTERNAL)
        return err;
    size_t i = 0;
    if (err == KX_OK && !find_stmt(db, stmt, &i)) {
        kx_error("db: no statement named \"%s\" in this connection's table", stmt);
        snprintf(db->errmsg, sizeof db->errmsg, "unknown statement %s", stmt);
        db->sqlstate[0] = '\0';
        err = db->pipe.stop = KX_ERR_INVALID;
    }
    if (err == KX_OK && !db->prepared[i]) {
        if (PQsendPrepare(db->conn, db->stmts[i].name, db->stmts[i].sql, 0, NULL) != 1) {
            err = pipe_send_failed(db, stmt);
        } else {
            db->prepared[i] = true; /* for the sends after it; undone if it fails */
            pipe_push(db, (int)i, true, KX_OK, NULL);
        }
    }
    if (err == KX_OK &&
        PQsendQueryPrepared(db->conn, db->stmts[i].name, nparams, params, NULL, NULL, 0) != 1)
        err = pipe_send_failed(db, stmt);
    pipe_push(db, err == KX_OK ? (int)i : -1, false, err, stmt);
    return err;
}

kx_err kx_db_pipe_send_sql(kx_db *db, const char *sql)
{
    kx_err err = pipe_cannot_send(db, sql);
    if (err == KX_ERR_INTERNAL)
        return err;
    /* extended protocol: the simple one (PQsendQuery) is not allowed in a pipeline */
    if (err == KX_OK && PQsendQueryParams(db->conn, sql, 0, NULL, NULL, NULL, NULL, 0) != 1)
        err = pipe_send_failed(db, sql);
    pipe_push(db, -1, false, err, sql);
    return err;
}

kx_err kx_db_pipe_sync(kx_db *db)
{
    struct pipe_state *p = &db->pipe;
    if (!p->piping) {
        kx_error("db: kx_db_pipe_sync outside a pipeline");
        return KX_ERR_INTERNAL;
    }
    if (p->synced)
        return KX_OK;
    p->synced = true;
    if (p->lost)
        return KX_ERR_UNAVAILABLE;
    if (PQpipelineSync(db->conn) != 1) { /* sends the sync and flushes (blocking connection) */
        kx_err err = pipe_send_failed(db, "pipeline sync");
        p->lost = true;
        return err;
    }
    return KX_OK;
}

/* The connection went while reading: every result not yet read is UNAVAILABLE. */
static kx_err pipe_lost(kx_db *db, const char *label, const PGresult *r, bool recorded)
{
    kx_err err = KX_ERR_UNAVAILABLE;
    if (!db->pipe.lost) {
        if (!recorded)
            err = record_failure(db, label, r);
        db->pipe.lost = true;
        forget_prepared(db);
        db->next_attempt_ms = 0; /* the first reconnect after a loss is immediate */
    }
    return err == KX_OK ? KX_ERR_UNAVAILABLE : err;
}

/* Reads the answer to one sent item: its result (the caller's) and the NULL that ends it. */
static PGresult *pipe_read_one(kx_db *db, const char *label, kx_err *err)
{
    if (db->pipe.lost || PQstatus(db->conn) != CONNECTION_OK) {
        *err = pipe_lost(db, label, NULL, false);
        return NULL;
    }
    PGresult *r = PQgetResult(db->conn);
    if (r == NULL) {
        *err = pipe_lost(db, label, NULL, false);
        return NULL;
    }
    ExecStatusType st = PQresultStatus(r);
    if (st == PGRES_PIPELINE_SYNC) { /* more results asked for than were sent: a bug */
        PQclear(r);
        kx_error("db: %s: pipeline out of step (its sync came first)", label);
        db->pipe.lost = true; /* do not read past it */
        *err = KX_ERR_INTERNAL;
        return NULL;
    }
    PGresult *end = PQgetResult(db->conn); /* NULL ends a statement's results */
    while (end != NULL) {
        PQclear(end);
        end = PQgetResult(db->conn);
    }
    if (PQstatus(db->conn) != CONNECTION_OK && st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
        *err = pipe_lost(db, label, r, false);
        PQclear(r);
        return NULL;
    }
    *err = KX_OK;
    return r;
}

/* The next caller's result: a PREPARE in front of it is read (and judged) first. */
static PGresult *pipe_next(kx_db *db, kx_err *err)
{
    struct pipe_state *p = &db->pipe;
    if (!p->piping) {
        kx_error("db: kx_db_pipe_result outside a pipeline");
        *err = KX_ERR_INTERNAL;
        return NULL;
    }
    if (p->read >= p->sent) {
        kx_error("db: kx_db_pipe_result: all %zu results were read already", p->sent);
        *err = KX_ERR_INTERNAL;
        return NULL;
    }
    if (!p->synced)
        (void)kx_db_pipe_sync(db);
    p->read++;
    while (p->cursor < p->nitems) {
        pipe_item it = p->items[p->cursor++];
        char label[48];
        snprintf(label, sizeof label, "%s%s%s", it.stmt >= 0 ? "" : "sql \"",
                 it.stmt >= 0 ? db->stmts[it.stmt].name : it.sql, it.stmt >= 0 ? "" : "\"");
        if (it.err != KX_OK) { /* never sent */
            *err = it.err;
            return NULL;
        }
        PGresult *r = pipe_read_one(db, label, err);
        ExecStatusType st = PQresultStatus(r);
        if (it.prep) {
            const char *code = r != NULL ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
            if (r != NULL &&
                !(st == PGRES_COMMAND_OK || (code != NULL && strcmp(code, "42P05") == 0))) {
                db->prepared[it.stmt] = false;
                if (st == PGRES_PIPELINE_ABORTED) {
                    p->prep_fail = KX_ERR_CANCELLED;
                } else {
                    char what[160];
                    snprintf(what, sizeof what, "prepare %s", label);
                    p->prep_fail = record_failure(db, what, r);
                    p->aborted = true;
                }
            } else if (r == NULL) {
                db->prepared[it.stmt] = false;
            }
            PQclear(r);
            continue;
        }
        kx_err prep_fail = p->prep_fail;
        p->prep_fail = KX_OK;
        if (r == NULL)
            return NULL; /* *err: lost */
        if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK || st == PGRES_EMPTY_QUERY) {
            *err = KX_OK;
            return r;
        }
        if (st == PGRES_PIPELINE_ABORTED)
            *err = prep_fail != KX_OK ? prep_fail : KX_ERR_CANCELLED;
        else if ((*err = record_failure(db, label, r)) == KX_ERR_UNAVAILABLE)
            *err = pipe_lost(db, label, r, true); /* the server ends it (57P01, 08xxx) */
        else
            p->aborted = true;
        PQclear(r);
        return NULL;
    }
    /* pipe_push ran out of memory for this one */
    *err = p->stop != KX_OK ? p->stop : KX_ERR_INTERNAL;
    return NULL;
}

PGresult *kx_db_pipe_result(kx_db *db, kx_err *err)
{
    return pipe_next(db, err);
}

kx_err kx_db_pipe_result_cmd(kx_db *db, long *rows)
{
    kx_err err = KX_OK;
    PGresult *r = pipe_next(db, &err);
    if (r == NULL)
        return err != KX_OK ? err : KX_ERR_INTERNAL;
    if (rows != NULL)
        *rows = strtol(PQcmdTuples(r), NULL, 10);
    PQclear(r);
    return KX_OK;
}

size_t kx_db_pipe_sent(const kx_db *db)
{
    return db->pipe.sent;
}

size_t kx_db_pipe_read(const kx_db *db)
{
    return db->pipe.read;
}

kx_err kx_db_pipe_skip(kx_db *db, size_t upto)
{
    kx_err first = KX_OK;
    while (db->pipe.piping && db->pipe.read < upto && db->pipe.read < db->pipe.sent) {
        kx_err err = KX_OK;
        PQclear(pipe_next(db, &err));
        if (first == KX_OK)
            first = err;
    }
    return first;
}

void kx_db_pipe_end(kx_db *db)
{
    struct pipe_state *p = &db->pipe;
    if (!p->piping)
        return;
    bool anything = p->nitems > 0;
    if (anything && !p->synced)
        (void)kx_db_pipe_sync(db);
    (void)kx_db_pipe_skip(db, p->sent);
    if (!p->lost && p->synced && anything) { /* the sync's own answer */
        PGresult *r = PQgetResult(db->conn);
        if (PQresultStatus(r) != PGRES_PIPELINE_SYNC)
            p->lost = true;
        PQclear(r);
    }
    bool left = PQstatus(db->conn) == CONNECTION_OK && !p->lost;
    if (left && PQexitPipelineMode(db->conn) != 1) { /* a NULL may still follow the sync */
        PGresult *r = PQgetResult(db->conn);
        left = r == NULL && PQexitPipelineMode(db->conn) == 1;
        PQclear(r);
    }
    if (left) {
        db->in_tx = transaction_open(db->conn);
    } else {
        /* Gone (or out of step, which we do not try to mend): the transaction went with the
         * connection; the next call reconnects (PQreset leaves pipeline mode). */
        if (PQstatus(db->conn) == CONNECTION_OK) {
            if (!p->lost)
                kx_error("db: could not leave pipeline mode (%s): dropping the connection",
                         PQerrorMessage(db->conn));
            PQfinish(db->conn);
            db->conn = NULL;
            db->next_attempt_ms = 0;
        }
        forget_prepared(db);
        db->in_tx = false;
    }
    p->piping = false;
    p->nitems = p->cursor = 0;
}

/* ---- transactions -------------------------------------------------------------------------- */

kx_err kx_db_begin(kx_db *db)
{
    kx_err err = exec_simple(db, "BEGIN");
    if (err == KX_OK)
        db->in_tx = true;
    return err;
}

kx_err kx_db_commit(kx_db *db)
{
    if (db->pipe.piping) {
        kx_error("db: COMMIT called inside a pipeline (kx_db_pipe_end it first)");
        return KX_ERR_INTERNAL;
    }
    /* Whatever happens below, the transaction is over: a lost connection took it along, so
     * the handle may reconnect on its next use even if the caller does not roll back. */
    if (db->conn == NULL || PQstatus(db->conn) != CONNECTION_OK) {
        kx_warn("db: COMMIT impossible: the connection was lost, the transaction is gone");
        snprintf(db->errmsg, sizeof db->errmsg, "connection lost inside a transaction");
        db->in_tx = false;
        return KX_ERR_UNAVAILABLE;
    }
    kx_err err = KX_OK;
    PGresult *r = kx_db_exec_sql(db, "COMMIT", &err);
    if (PQstatus(db->conn) != CONNECTION_OK)
        db->in_tx = false;
    if (r == NULL)
        return err;
    /* COMMIT of a failed transaction "succeeds" with the tag ROLLBACK. */
    bool rolled_back = strcmp(PQcmdStatus(r), "ROLLBACK") == 0;
    PQclear(r);
    if (rolled_back) {
        kx_error("db: COMMIT rolled back: a statement of the transaction had failed");
        snprintf(db->errmsg, sizeof db->errmsg, "transaction had failed and was rolled back");
        return KX_ERR_INTERNAL;
    }
    return KX_OK;
}

void kx_db_rollback(kx_db *db)
{
    kx_db_pipe_end(db);
    if (db->conn != NULL && PQstatus(db->conn) == CONNECTION_OK) {
        PGresult *r = PQexec(db->conn, "ROLLBACK");
        PQclear(r);
    }
    /* Either rolled back, or the connection (and so the transaction) is gone. */
    db->in_tx =
        db->conn != NULL && PQstatus(db->conn) == CONNECTION_OK && transaction_open(db->conn);
}

/* ---- migrations ---------------------------------------------------------------------------- */

const char *kx_db_migrations_dir(void)
{
    return kx_env_str("KX_MIGRATIONS_DIR", KX_SOURCE_DIR "/deploy/migrations");
}

#define MIGRATION_MAX_BYTES (64u * 1024 * 1024) /* a migration file read whole */

static int is_sql_file(const struct dirent *e)
{
    size_t n = strlen(e->d_name);
    return e->d_name[0] != '.' && n > 4 && strcmp(e->d_name + n - 4, ".sql") == 0;
}

/* 1-based line of character offset pos (1-based, as PG_DIAG_STATEMENT_POSITION) in sql. */
static int line_of(const char *sql, long pos)
{
    int line = 1;
    for (long i = 0; i < pos - 1 && sql[i] != '\0'; i++)
        if (sql[i] == '\n')
            line++;
    return line;
}

/* Applies one migration file in its own transaction and records it. */
static kx_err apply_one(kx_db *db, const char *dir, const char *file, const char *version)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    char *sql = NULL;
    size_t len = 0;
    kx_err rerr = kx_file_read(path, MIGRATION_MAX_BYTES, &sql, &len);
    if (rerr != KX_OK) {
        kx_error("db: migrate: cannot read %s: %s%s%s", path, kx_err_str(rerr),
                 rerr == KX_ERR_IO ? ": " : "", rerr == KX_ERR_IO ? strerror(errno) : "");
        return KX_ERR_IO;
    }
    kx_err err = kx_db_begin(db);
    if (err != KX_OK) {
        free(sql);
        return err;
    }
    PGresult *r = PQexec(db->conn, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK) {
        const char *pos = r != NULL ? PQresultErrorField(r, PG_DIAG_STATEMENT_POSITION) : NULL;
        int line = pos != NULL ? line_of(sql, strtol(pos, NULL, 10)) : 0;
        char label[300];
        snprintf(label, sizeof label, "migration %s (line %d)", file, line);
        err = record_failure(db, label, r);
        PQclear(r);
        free(sql);
        kx_db_rollback(db);
        return err;
    }
    PQclear(r);
    free(sql);
    const char *params[] = {version};
    r = exec_params(db, "INSERT INTO kx_schema_migrations (version) VALUES ($1)", 1, params, &err);
    PQclear(r);
    if (err != KX_OK) {
        kx_db_rollback(db);
        return err;
    }
    err = kx_db_commit(db);
    if (err == KX_OK)
        kx_info("db: applied migration %s", file);
    return err;
}

/* KX_OK and *applied when version is recorded. */
static kx_err is_applied(kx_db *db, const char *version, bool *applied)
{
    kx_err err = KX_OK;
    const char *params[] = {version};
    PGresult *r =
        exec_params(db, "SELECT 1 FROM kx_schema_migrations WHERE version = $1", 1, params, &err);
    if (r == NULL)
        return err;
    *applied = PQntuples(r) > 0;
    PQclear(r);
    return KX_OK;
}

/* The work done while holding the advisory lock. */
static kx_err migrate_locked(kx_db *db, const char *dir)
{
    kx_err err = exec_simple(db,
                             "CREATE TABLE IF NOT EXISTS kx_schema_migrations ("
                             " version text PRIMARY KEY,"
                             " applied_at timestamptz NOT NULL DEFAULT now())");
    if (err != KX_OK)
        return err;
    struct dirent **entries = NULL;
    int n = scandir(dir, &entries, is_sql_file, alphasort);
    if (n < 0) {
        kx_error("db: migrate: cannot read directory %s: %s", dir, strerror(errno));
        return KX_ERR_IO;
    }
    for (int i = 0; i < n && err == KX_OK; i++) {
        const char *file = entries[i]->d_name;
        char version[256];
        snprintf(version, sizeof version, "%.*s", (int)(strlen(file) - 4), file);
        bool applied = false;
        err = is_applied(db, version, &applied);
        if (err == KX_OK && !applied)
            err = apply_one(db, dir, file, version);
    }
    for (int i = 0; i < n; i++)
        free(entries[i]);
    free(entries);
    return err;
}

kx_err kx_db_migrate(kx_db *db, const char *dir)
{
    /* Waiting for another migrator and long DDL must not hit statement_timeout. */
    kx_err err = exec_simple(db, "SET statement_timeout = 0");
    if (err != KX_OK)
        return err;
    err = exec_simple(db, "SELECT pg_advisory_lock(" MIGRATION_LOCK_KEY ")");
    if (err == KX_OK) {
        err = migrate_locked(db, dir);
        /* Also after a failure. If the connection is gone, so is the (session) lock. */
        kx_err unlock = exec_simple(db, "SELECT pg_advisory_unlock(" MIGRATION_LOCK_KEY ")");
        if (err == KX_OK)
            err = unlock;
    }
    kx_err reset = exec_simple(db, "RESET statement_timeout");
    if (err == KX_OK)
        err = reset;
    if (err != KX_OK)
        kx_error("db: migrations from %s failed: %s", dir, kx_err_str(err));
    return err;
}

/* ---- pool ---------------------------------------------------------------------------------- */

struct kx_db_pool {
    pthread_mutex_t mu;
    pthread_cond_t freed; /* signalled when a connection is returned or a slot opens */
    char *conninfo;
    const kx_db_stmt *stmts;
    int size;
    int created; /* connections that exist (idle or lent out) */
    int nidle;
    kx_db **idle; /* stack of size entries */
};

kx_err kx_db_pool_new(const char *conninfo, const kx_db_stmt *stmts, int size, kx_db_pool **out)
{
    *out = NULL;
    if (size <= 0) {
        kx_error("db: pool size must be positive, got %d", size);
        return KX_ERR_INVALID;
    }
    kx_db_pool *p = calloc(1, sizeof *p);
    if (p == NULL)
        return KX_ERR_NOMEM;
    p->conninfo = strdup(conninfo);
    p->idle = calloc((size_t)size, sizeof *p->idle);
    if (p->conninfo == NULL || p->idle == NULL) {
        free(p->conninfo);
        free(p->idle);
        free(p);
        return KX_ERR_NOMEM;
    }
    p->stmts = stmts;
    p->size = size;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->freed, NULL);
    *out = p;
    return KX_OK;
}

kx_db *kx_db_pool_get(kx_db_pool *p, kx_deadline deadline)
{
    struct timespec until = {.tv_sec = deadline / 1000, .tv_nsec = (deadline % 1000) * 1000000L};
    pthread_mutex_lock(&p->mu);
    for (;;) {
        if (p->nidle > 0) {
            kx_db *db = p->idle[--p->nidle];
            pthread_mutex_unlock(&p->mu);
            return db;
        }
        if (p->created < p->size) {
            /* Connect outside the lock: it takes milliseconds. */
            p->created++;
            pthread_mutex_unlock(&p->mu);
            kx_db *db = NULL;
            kx_db_connect(p->conninfo, p->stmts, &db); /* a down database still gives a handle */
            if (db != NULL)
                return db;
            pthread_mutex_lock(&p->mu);
            p->created--;
            pthread_cond_signal(&p->freed);
            pthread_mutex_unlock(&p->mu);
            return NULL;
        }
        /* The deadline is wall-clock unix ms, the default clock of pthread_cond_timedwait. */
        int rc = deadline == KX_NO_DEADLINE ? pthread_cond_wait(&p->freed, &p->mu)
                                            : pthread_cond_timedwait(&p->freed, &p->mu, &until);
        if (rc == ETIMEDOUT && p->nidle == 0) {
            pthread_mutex_unlock(&p->mu);
            kx_warn("db: no pooled connection free before the deadline (pool size %d)", p->size);
            return NULL;
        }
    }
}

void kx_db_pool_put(kx_db_pool *p, kx_db *db)
{
    if (db == NULL)
        return;
    if (db->in_tx) {
        kx_warn("db: connection returned to the pool inside a transaction: rolling back");
        kx_db_rollback(db);
    }
    pthread_mutex_lock(&p->mu);
    p->idle[p->nidle++] = db;
    pthread_cond_signal(&p->freed);
    pthread_mutex_unlock(&p->mu);
}

void kx_db_pool_free(kx_db_pool *p)
{
    if (p == NULL)
        return;
    if (p->nidle != p->created)
        kx_error("db: pool freed with %d connection(s) still lent out", p->created - p->nidle);
    for (int i = 0; i < p->nidle; i++)
        kx_db_close(p->idle[i]);
    pthread_cond_destroy(&p->freed);
    pthread_mutex_destroy(&p->mu);
    free(p->conninfo);
    free(p->idle);
    free(p);
}
