/* db_call.h — tools that read or write Postgres (task list, expand_message) without blocking
 * the loop: the work runs on the executor's kx_db_worker thread (kx/db_worker.h) and its
 * result is posted back. The call is still answered by its deadline (a timer): a job that
 * finishes after the call was answered (timeout, STOP) is dropped. The job works on copies
 * (arguments, ids), never on the call.
 *
 * Ownership: a te_dbjob is allocated by te_db_call and freed after its done callback. */
#ifndef TE_DB_CALL_H
#define TE_DB_CALL_H

#include <jansson.h>

#include "executor.h"
#include "kx/db.h"
#include "kx/uuid.h"

typedef struct te_dbjob te_dbjob;
struct te_dbjob {
    te_call *c;      /* NULL once the call was answered without this job */
    kx_timer *timer; /* the call's deadline */
    char tool[48];
    char thread_id[KX_UUID_LEN + 1];
    char account_id[KX_UUID_LEN + 1];
    json_t *args; /* a copy of the validated arguments */
    void (*run)(kx_db *db, te_dbjob *j);
    /* set by run (on the worker thread): */
    json_t *output; /* success: the output (owned) */
    kx_err err;     /* failure: its kind ... */
    char why[400];  /* ... and message */
};

/* The prepared statements of the executor's database connection. */
extern const kx_db_stmt te_db_stmts[];

/* Starts run on the database thread for call c (the call needs a valid thread_id and
 * account_id: refused otherwise). Finishes c itself on every path. */
void te_db_call(te_call *c, void (*run)(kx_db *db, te_dbjob *j));
/* The abort of every database tool: the call is answered now, the job dropped on arrival. */
void te_db_abort(te_call *c, te_outcome *o);

#endif
