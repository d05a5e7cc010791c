/* run_ops.c — a run's queue of database work, its batches and their completions (see
 * run_ops.h). */
#include "run_ops.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "context.h"
#include "events.h"
#include "kx/json.h"
#include "kx/log.h"
#include "kx/metrics.h"
#include "kx/uuid.h"
#include "rdb.h"
#include "run.h"
#include "store.h"

typedef enum op_kind {
    OP_INSERT,
    OP_PUBLISH,
    OP_FINISH,
    OP_HANDBACK,
    OP_LOAD
} op_kind;

struct run_op {
    run_op *next;
    op_kind kind;
    /* OP_INSERT */
    char message_id[40];
    char type[32];
    bool is_llm;
    char *content, *metadata; /* JSON texts for the row */
    json_t *ev_content, *ev_metadata;
    bool event_after_next;
    store_row row; /* result */
    /* OP_PUBLISH */
    int ev_kind;
    bool terminal;
    bool early; /* asked for while nothing was queued: held only to leave with the next row */
    char *payload;
    /* OP_FINISH / OP_HANDBACK */
    char status[16];
    char *error;      /* the finish's error, the hand-back's reason */
    bool if_answered; /* OP_FINISH: only if the answer is still the newest LLM message */
    bool release;     /* OP_HANDBACK: the release to the reaper (run_ops_handback) instead */
    bool won, ours;   /* result: ended by us; not ended but still ours */
    /* OP_LOAD */
    bool with_agent;
    run_load_then then;
    run_loaded loaded; /* result */
};

struct run_batch {
    rdb_job base;
    run *run; /* NULL once the run was freed */
    char run_id[40], thread_id[40];
    int64_t epoch;
    int64_t read_bytes; /* a load's bound (KX_CONTEXT_READ_MAX_MB) */
    run_op *ops;
    size_t nops;
    kx_err err;       /* the batch's outcome */
    run_op *failed;   /* the op that failed, or NULL (BEGIN/COMMIT) */
    char why[400];    /* a failed load's message */
    char server[300]; /* a failed write's server message (kx_db_last_error), "" for none */
    bool transient;   /* ... and it was a race lost: 40001, 40P01 (sent again: batch_retry) */
    int64_t sent_ms;  /* for the metric */
};

static void op_free(run_op *op)
{
    free(op->content);
    free(op->metadata);
    json_decref(op->ev_content);
    json_decref(op->ev_metadata);
    free(op->payload);
    free(op->error);
    run_loaded_clear(&op->loaded);
    free(op);
}

static void ops_free(run_op *op)
{
    while (op != NULL) {
        run_op *next = op->next;
        op_free(op);
        op = next;
    }
}

static void batch_free(run_batch *b)
{
    ops_free(b->ops);
    free(b);
}

/* ---- the database thread ------------------------------------------------------------------- */

/* The rows one statement writes from first on: first and the OP_INSERTs after it, up to the
 * first op that is neither an insert nor an event (an event runs no SQL: it is published in op
 * order after the commit either way) and up to the caps of store.h. Into group and rows; how
 * many. The same ops give the same group every time (the batch's send and receive halves
 * both call it). */
static size_t insert_group(run_op *first, run_op *group[STORE_INSERT_MAX_ROWS],
                           store_new_row rows[STORE_INSERT_MAX_ROWS])
{
    size_t n = 0, bytes = 0;
    for (run_op *op = first; op != NULL && n < STORE_INSERT_MAX_ROWS; op = op->next) {
        if (op->kind == OP_PUBLISH)
            continue;
        if (op->kind != OP_INSERT)
            break;
        bytes += strlen(op->content) + strlen(op->metadata);
        if (n > 0 && bytes > STORE_INSERT_MAX_BYTES)
            break;
        rows[n] = (store_new_row){op->message_id, op->type, op->is_llm, op->content, op->metadata};
        group[n++] = op;
    }
    return n;
}

/* One statement of the batch, from op on: a run of coalesced inserts (insert_group) or one op
 * (a load is its reads: run_ops_load_send). A finish right behind a run of inserts (events
 * between them aside) goes in the same statement (store_insert_finish): the end of a run that
 * answered only when the run's last LLM row is the answer (its rows are the thread's newest
 * when written, so the answer is the newest LLM message: what the check of
 * store_finish_answered_send would find). Sent in the open pipeline (send_stmt), then read
 * back in the same order (recv_stmt). Each returns through *next the op after the statement;
 * on an error, *failed is the op whose statement failed (the first insert's, when a finish
 * went with them). */
typedef struct stmt {
    run_op *group[STORE_INSERT_MAX_ROWS];
    store_new_row rows[STORE_INSERT_MAX_ROWS];
    size_t n;       /* rows, when op is an OP_INSERT */
    run_op *finish; /* the OP_FINISH that goes with those rows, or NULL */
    run_op *next;   /* the op after this statement */
} stmt;

/* Whether the finish fin can go in the statement of the rows of st (see above). */
static bool finish_folds(const run_op *fin, const stmt *st)
{
    if (fin->kind != OP_FINISH)
        return false;
    if (!fin->if_answered)
        return true;
    for (size_t i = st->n; i-- > 0;)
        if (st->rows[i].is_llm)
            return strcmp(st->rows[i].type, "assistant") == 0;
    return false; /* no LLM row: the check needs the thread (runner_finish_answered) */
}

static void stmt_at(run_op *op, stmt *st)
{
    st->n = 0;
    st->finish = NULL;
    st->next = op->next;
    if (op->kind == OP_INSERT) {
        st->n = insert_group(op, st->group, st->rows);
        st->next = st->group[st->n - 1]->next;
        run_op *after = st->next;
        while (after != NULL && after->kind == OP_PUBLISH)
            after = after->next;
        if (after != NULL && finish_folds(after, st)) {
            st->finish = after;
            st->next = after->next;
        }
    }
}

static kx_err send_stmt(kx_db *db, run_batch *b, run_op *op, stmt *st)
{
    stmt_at(op, st);
    switch (op->kind) {
    case OP_PUBLISH: return KX_OK;
    case OP_INSERT:
        return st->finish != NULL
            ? store_insert_finish_send(db, b->run_id, b->epoch, st->rows, st->n,
                                       st->finish->status, st->finish->error)
            : store_insert_messages_send(db, b->run_id, b->epoch, st->rows, st->n);
    case OP_FINISH:
        return op->if_answered
            ? store_finish_answered_send(db, b->run_id, b->epoch)
            : store_finish_run_send(db, b->run_id, b->epoch, op->status, op->error);
    case OP_HANDBACK:
        return op->release ? store_release_run_send(db, b->run_id, b->epoch, op->error)
                           : store_handback_run_send(db, b->run_id, b->epoch, op->error);
    case OP_LOAD:
        return run_ops_load_send(db, b->run_id, b->thread_id, op->with_agent, b->read_bytes);
    }
    return KX_ERR_INTERNAL;
}

static kx_err recv_stmt(kx_db *db, run_batch *b, run_op *op, stmt *st)
{
    stmt_at(op, st);
    switch (op->kind) {
    case OP_PUBLISH: return KX_OK;
    case OP_INSERT: {
        store_row out[STORE_INSERT_MAX_ROWS];
        kx_err err;
        if (st->finish != NULL) {
            st->finish->ours = false; /* never declined: the answer is the newest (above) */
            err = store_insert_finish_recv(db, st->rows, st->n, out, &st->finish->won);
        } else {
            err = store_insert_messages_recv(db, st->rows, st->n, out);
        }
        for (size_t i = 0; i < st->n && err == KX_OK; i++)
            st->group[i]->row = out[i];
        return err;
    }
    case OP_FINISH:
        op->ours = false;
        return op->if_answered ? store_finish_answered_recv(db, &op->won, &op->ours)
                               : store_finish_run_recv(db, &op->won);
    case OP_HANDBACK: return store_let_go_recv(db);
    case OP_LOAD: return run_ops_load_recv(db, op->with_agent, &op->loaded, b->why, sizeof b->why);
    }
    return KX_ERR_INTERNAL;
}

/* What a batch sends: its statements (its inserts coalesced; a load counts once), the
 * inserts among them and the rows these write. */
typedef struct batch_shape {
    size_t statements, inserts, rows;
} batch_shape;

static batch_shape batch_shape_of(run_batch *b)
{
    batch_shape s = {0};
    stmt st;
    for (run_op *op = b->ops; op != NULL; op = st.next) {
        stmt_at(op, &st);
        s.statements += op->kind != OP_PUBLISH;
        s.inserts += op->kind == OP_INSERT;
        s.rows += st.n;
    }
    return s;
}

/* At debug level: what the batch holds, in op order (insert[types] load finish ...). */
static void log_batch(run_batch *b)
{
    if (KX_LOG_DEBUG < kx_log_get_level())
        return;
    char buf[600];
    size_t len = 0;
    stmt st;
    for (run_op *op = b->ops; op != NULL && len < sizeof buf - 80; op = st.next) {
        stmt_at(op, &st);
        const char *what = op->kind == OP_FINISH ? " finish"
            : op->kind == OP_HANDBACK            ? (op->release ? " release" : " handback")
            : op->kind == OP_LOAD                ? " load"
                                                 : "";
        len += (size_t)snprintf(buf + len, sizeof buf - len, "%s", what);
        for (size_t i = 0; i < st.n && len < sizeof buf - 80; i++) {
            /* a status row by its status_type */
            const char *t = strstr(st.rows[i].content_json, "\"status_type\":\"");
            int tl = t ? (int)strcspn(t += 15, "\"") : (int)strlen(st.rows[i].type);
            len += (size_t)snprintf(buf + len, sizeof buf - len, "%s%.*s%s", i ? "," : " insert[",
                                    tl > 40 ? 40 : tl, t ? t : st.rows[i].type,
                                    i + 1 == st.n ? "]" : "");
        }
        if (st.finish != NULL) /* in the insert's statement */
            len += (size_t)snprintf(buf + len, sizeof buf - len, "+finish");
    }
    kx_log(KX_LOG_DEBUG, b->run_id, NULL, "run: batch:%s", buf);
}

/* The counters of the batches sent (/metrics; the tests read them per run). */
static void count_batch(const batch_shape *s)
{
    static kx_counter *batches, *inserts, *rows;
    if (batches == NULL) { /* loop thread only; registration is idempotent */
        batches = kx_metrics_counter("kx_runner_db_batches_total", "",
                                     "Database batches of runs sent (run_ops.h)");
        inserts = kx_metrics_counter("kx_runner_db_insert_statements_total", "",
                                     "Multi-row message insert statements of run batches");
        rows = kx_metrics_counter("kx_runner_db_message_rows_total", "",
                                  "Message rows written by run batches");
    }
    kx_counter_add(batches, 1);
    kx_counter_add(inserts, s->inserts);
    kx_counter_add(rows, s->rows);
}

/* A (re)start of the batch's work: what an earlier run recorded is forgotten. */
static void batch_reset(run_batch *b)
{
    b->failed = NULL;
    b->why[0] = '\0';
    b->server[0] = '\0';
    b->transient = false;
    b->err = KX_OK;
}

/* After op's statement failed with err: the server's message and whether it was a race lost.
 * Only a write's failure is a server's own (a load's may be ours: its why says), and then
 * kx_db's last failure is this statement's (its sqlstate is not reset by a success). A
 * statement timeout is one too: the run's reason names it (run.c, run_db_failed). */
static void batch_note_server(kx_db *db, run_batch *b, const run_op *op, kx_err err)
{
    if (op->kind == OP_LOAD || op->kind == OP_PUBLISH ||
        (err != KX_ERR_INTERNAL && err != KX_ERR_INVALID && err != KX_ERR_TIMEOUT))
        return;
    const char *st = kx_db_last_sqlstate(db);
    snprintf(b->server, sizeof b->server, "%.*s (SQLSTATE %s)",
             (int)strcspn(kx_db_last_error(db), "\n"), kx_db_last_error(db), st);
    b->transient = strcmp(st, "40001") == 0 || strcmp(st, "40P01") == 0;
}

/* The batch inside its worker's transaction (kx/db_worker.h): its statements, no
 * BEGIN/COMMIT, pipelined (batch_send, batch_recv). A later call (after the group was rolled
 * back, or a lost connection) starts afresh. */
static kx_err batch_send(kx_db *db, rdb_job *j)
{
    run_batch *b = (run_batch *)j;
    kx_err err = KX_OK;
    stmt st;
    for (run_op *op = b->ops; op != NULL && err == KX_OK; op = st.next)
        err = send_stmt(db, b, op, &st);
    return err;
}

static kx_err batch_recv(kx_db *db, rdb_job *j)
{
    run_batch *b = (run_batch *)j;
    batch_reset(b);
    stmt st;
    for (run_op *op = b->ops; op != NULL && b->err == KX_OK; op = st.next)
        if ((b->err = recv_stmt(db, b, op, &st)) != KX_OK) {
            b->failed = op;
            batch_note_server(db, b, op, b->err);
        }
    return b->err;
}

/* ---- a load's reads (also the claim's: dispatch.c) ----------------------------------------- */

kx_err run_ops_load_send(kx_db *db, const char *run_id, const char *thread_id, bool with_agent,
                         int64_t read_bytes)
{
    kx_err err = with_agent ? store_load_agent_send(db, run_id) : KX_OK;
    kx_err err2 = store_load_llm_messages_send(db, thread_id, read_bytes);
    return err != KX_OK ? err : err2;
}

kx_err run_ops_load_recv(kx_db *db, bool with_agent, run_loaded *l, char *why, size_t whylen)
{
    run_loaded_clear(l); /* a second try starts afresh */
    kx_err err = KX_OK;
    if (with_agent) {
        store_agent row;
        err = store_load_agent_recv(db, &row);
        if (err != KX_OK)
            snprintf(why, whylen, "could not read the run's agent: %s", kx_err_str(err));
        else if ((err = agent_config_from_row(&row, &l->agent, why, whylen)) != KX_OK)
            agent_config_clear(&l->agent);
        else
            l->agent_loaded = true;
    }
    store_msg *rows = NULL;
    size_t n = 0;
    kx_err rerr = store_load_llm_messages_recv(db, &rows, &n); /* read even after a failure */
    if (err == KX_OK && rerr == KX_OK)
        rerr = context_from_rows(rows, n, &l->msgs, l->last_type, sizeof l->last_type);
    store_msgs_free(rows, n);
    if (err == KX_OK && rerr != KX_OK) {
        err = rerr;
        snprintf(why, whylen, "internal error: could not load the thread's messages: %s",
                 kx_err_str(err));
    }
    if (err != KX_OK)
        run_loaded_clear(l);
    return err;
}

void run_loaded_clear(run_loaded *l)
{
    json_decref(l->msgs);
    l->msgs = NULL;
    l->last_type[0] = '\0';
    if (l->agent_loaded)
        agent_config_clear(&l->agent);
    l->agent_loaded = false;
}

/* ---- the loop ------------------------------------------------------------------------------ */

static void send_batch(run *r);

/* Publishes an event (takes payload): into the batch being gathered, if any, else alone. */
static void publish_now(run *r, int kind, bool terminal, char *payload)
{
    events_batch one, *b = r->ops.evb;
    /* A run's epoch is its claim's, set once in run_start: a batch begun for it has it. */
    assert(b == NULL || b->epoch == r->epoch);
    if (b == NULL)
        events_batch_begin_pub(b = &one, r->owner->events, r->id, r->epoch, &r->meta);
    events_batch_add(b, r->ev_seq++, (Kx__V1__RunEventKind)kind, terminal, payload);
    if (b == &one)
        events_batch_end(&one);
}

/* Gathers what the run publishes from here to batch_end into b (one message). false when a
 * batch is being gathered already (a completion that leads here): that one takes them, in
 * order, and b is not used. */
static bool batch_begin(run *r, events_batch *b)
{
    if (r->ops.evb != NULL)
        return false;
    events_batch_begin_pub(b, r->owner->events, r->id, r->epoch, &r->meta);
    r->ops.evb = b;
    return true;
}

static void batch_end(run *r, events_batch *b, bool own)
{
    if (!own)
        return;
    if (r->ops.evb == b)
        r->ops.evb = NULL;
    events_batch_end(b);
}

static void publish_row(run *r, run_op *op)
{
    char *payload =
        events_row_json(op->row.message_id, r->thread_id, op->type, op->is_llm, op->ev_content,
                        op->ev_metadata, op->row.created_at, op->row.updated_at);
    if (payload == NULL) {
        kx_log(KX_LOG_ERROR, r->id, NULL, "run: out of memory building the event of row %s",
               op->row.message_id);
        return;
    }
    publish_now(r, KX__V1__RUN_EVENT_KIND__RUN_EVENT_KIND_MESSAGE, false, payload);
}

static void on_kick(kx_loop *loop, void *arg);

#define RUN_OPS_RETRIES 3

/* A batch that lost a race (b->transient) goes again, whole, ahead of what was queued
 * meanwhile, after a short pause (run_ops.h); false when it does not (then b is as it was). */
static bool batch_retry(run *r, run_batch *b)
{
    if (!b->transient || r->ops.retries >= RUN_OPS_RETRIES || b->ops == NULL)
        return false;
    int64_t pause_ms = (int64_t)20 << r->ops.retries;
    r->ops.retries++;
    kx_log(KX_LOG_WARN, r->id, NULL, "run: batch failed: %s; sent again in %lld ms (%d of %d)",
           b->server, (long long)pause_ms, r->ops.retries, RUN_OPS_RETRIES);
    run_op *last = b->ops;
    while (last->next != NULL)
        last = last->next;
    last->next = r->ops.head;
    if (r->ops.tail == NULL)
        r->ops.tail = last;
    r->ops.head = b->ops;
    b->ops = NULL;
    b->failed = NULL;
    kx_timer_cancel(r->ops.kick);
    r->ops.kick = kx_loop_timer(r->owner->loop, pause_ms, on_kick, r);
    if (r->ops.kick == NULL) /* out of memory for a timer: at once */
        send_batch(r);
    return true;
}

/* Whether the batch held the run's end (the statement that failed may be a row's before it,
 * or the finish's insert, or the COMMIT): nothing of it was written either way. */
static bool batch_has_finish(const run_batch *b)
{
    for (const run_op *op = b->ops; op != NULL; op = op->next)
        if (op->kind == OP_FINISH)
            return true;
    return false;
}

/* The batch failed as a whole (rolled back). */
static void batch_failed(run *r, run_batch *b)
{
    if (batch_retry(r, b))
        return;
    r->ops.retries = 0;
    bool at_finish = batch_has_finish(b);
    r->ops.finishing = false; /* neither is queued any more (below): what follows decides */
    r->ops.handing_back = false;
    /* Events held only to share the batch's message (run_ops_insert) would have gone out
     * before it alone: they still do, unless the fence failed (the run is no longer ours). */
    for (run_op *op = b->ops; op != NULL && b->err != KX_ERR_CONFLICT; op = op->next)
        if (op->kind == OP_PUBLISH && op->early && op->payload != NULL) {
            publish_now(r, op->ev_kind, op->terminal, op->payload);
            op->payload = NULL;
        }
    ops_free(r->ops.head); /* nothing queued after a failure is written */
    r->ops.head = r->ops.tail = NULL;
    run_op *op = b->failed;
    const char *server = b->server[0] != '\0' ? b->server : kx_err_str(b->err);
    char why[500];
    stmt st = {0};
    if (op != NULL && op->kind == OP_INSERT)
        stmt_at(op, &st);
    if (op != NULL && op->kind == OP_LOAD && b->why[0] != '\0')
        snprintf(why, sizeof why, "%s", b->why);
    else if (op != NULL && op->kind == OP_INSERT && st.finish != NULL) /* its own insert */
        snprintf(why, sizeof why,
                 "internal error: could not save the run's last rows and its end: %s", server);
    else if (op != NULL && op->kind == OP_INSERT)
        snprintf(why, sizeof why, "internal error: could not save a %s message: %s", op->type,
                 server);
    else if (op != NULL && op->kind == OP_FINISH)
        snprintf(why, sizeof why, "internal error: could not record the end of the run: %s",
                 server);
    else if (op != NULL && op->kind == OP_HANDBACK && op->release)
        snprintf(why, sizeof why, "could not release the run to the reaper: %s", server);
    else
        snprintf(why, sizeof why, "internal error: could not write to Postgres: %s", server);
    run_db_failed(r, b->err, at_finish, op != NULL && op->kind == OP_HANDBACK, why);
}

static void batch_done(rdb_job *j, bool live)
{
    run_batch *b = (run_batch *)j;
    run *r = live ? b->run : NULL; /* not live: runner_free freed the runs (detached) first */
    if (r == NULL) {               /* the run or the runner went away meanwhile */
        batch_free(b);
        return;
    }
    r->ops.inflight = NULL;
    if (b->base.err != b->err) { /* its transaction's outcome (a COMMIT that failed, ...) */
        /* a COMMIT's conflict (a deferred constraint, ...) is a server error, not the fence */
        b->err = b->base.err == KX_ERR_CONFLICT ? KX_ERR_INTERNAL : b->base.err;
        b->failed = NULL;
    }
    kx_histogram_observe(kx_metrics_histogram("kx_runner_db_batch_seconds", "",
                                              "A run's database batch, sent to answered",
                                              kx_metrics_latency_buckets,
                                              kx_metrics_latency_nbuckets),
                         (double)(kx_mono_ms() - b->sent_ms) / 1000.0);
    if (r->state == RUN_DEAD) {
        batch_free(b);
        return;
    }
    if (b->err == KX_ERR_UNAVAILABLE || b->err == KX_ERR_TIMEOUT)
        atomic_store(&r->owner->db_ok, false);
    else
        atomic_store(&r->owner->db_ok, true);
    if (b->err != KX_OK) {
        batch_failed(r, b);
        batch_free(b);
        return;
    }
    r->ops.retries = 0;
    run_op *held_row = NULL; /* a row event that goes after the next row's */
    events_batch evb;
    bool own = batch_begin(r, &evb);
    for (run_op *op = b->ops; op != NULL && r->state != RUN_DEAD; op = op->next) {
        switch (op->kind) {
        case OP_INSERT:
            if (op->ev_content != NULL && op->event_after_next) {
                held_row = op;
                break;
            }
            if (op->ev_content != NULL)
                publish_row(r, op);
            if (held_row != NULL) {
                publish_row(r, held_row);
                held_row = NULL;
            }
            break;
        case OP_PUBLISH:
            if (held_row != NULL) {
                publish_row(r, held_row);
                held_row = NULL;
            }
            publish_now(r, op->ev_kind, op->terminal, op->payload);
            op->payload = NULL;
            break;
        case OP_FINISH:
            r->ops.finishing = false;
            if (op->if_answered && !op->won && op->ours)
                run_answer_not_last(r); /* a newer message came: the run goes on */
            else
                run_finished(r, op->status, op->error, op->won);
            break;
        case OP_HANDBACK:
            r->ops.handing_back = false;
            if (op->release)
                kx_log(KX_LOG_WARN, r->id, NULL, "run: released to the reaper: %s", op->error);
            run_handed_back(r, op->release ? NULL : op->error);
            break;
        case OP_LOAD:
            if (!r->ops.handing_back) /* a drain came meanwhile: the run goes no further */
                op->then(r, &op->loaded);
            break;
        }
    }
    if (held_row != NULL && r->state != RUN_DEAD)
        publish_row(r, held_row);
    batch_end(r, &evb, own);
    batch_free(b);
    if (r->state != RUN_DEAD && r->ops.head != NULL && r->ops.kick == NULL)
        send_batch(r);
}

static void send_batch(run *r)
{
    if (r->ops.inflight != NULL || r->ops.head == NULL || r->state == RUN_DEAD)
        return;
    bool sql = false;
    for (run_op *op = r->ops.head; op != NULL && !sql; op = op->next)
        sql = op->kind != OP_PUBLISH;
    if (!sql) { /* only events: out now, in order */
        run_op *ops = r->ops.head;
        r->ops.head = r->ops.tail = NULL;
        events_batch evb;
        bool own = batch_begin(r, &evb);
        for (run_op *op = ops; op != NULL; op = op->next) {
            publish_now(r, op->ev_kind, op->terminal, op->payload);
            op->payload = NULL;
        }
        batch_end(r, &evb, own);
        ops_free(ops);
        return;
    }
    run_batch *b = calloc(1, sizeof *b);
    if (b == NULL) {
        run_db_failed(r, KX_ERR_NOMEM, false, false,
                      "internal error: out of memory sending a database batch");
        return;
    }
    b->run = r;
    snprintf(b->run_id, sizeof b->run_id, "%s", r->id);
    snprintf(b->thread_id, sizeof b->thread_id, "%s", r->thread_id);
    b->epoch = r->epoch;
    b->read_bytes = r->owner->cfg->context_read_bytes;
    b->ops = r->ops.head;
    b->sent_ms = kx_mono_ms();
    r->ops.head = r->ops.tail = NULL;
    batch_shape shape = batch_shape_of(b);
    log_batch(b);
    /* one statement (a run of coalesced rows, or one load) alone: no BEGIN */
    rdb_group_job how = {.send = batch_send,
                         .recv = batch_recv,
                         .one_write = shape.statements <= 1};
    kx_err err = rdb_submit_group(r->owner, r->id, &b->base, &how, batch_done);
    if (err != KX_OK) {
        b->failed = NULL;
        b->err = err;
        batch_failed(r, b);
        batch_free(b);
        return;
    }
    r->ops.inflight = b;
    count_batch(&shape);
}

static void on_kick(kx_loop *loop, void *arg)
{
    (void)loop;
    run *r = arg;
    r->ops.kick = NULL;
    send_batch(r);
}

static void enqueue(run *r, run_op *op)
{
    if (r->ops.tail != NULL)
        r->ops.tail->next = op;
    else
        r->ops.head = op;
    r->ops.tail = op;
    if (r->owner->loop_over) /* shutdown: nobody runs the loop; send_now does it */
        return;
    if (r->ops.kick == NULL && r->ops.inflight == NULL)
        r->ops.kick = kx_loop_timer(r->owner->loop, 0, on_kick, r);
}

bool run_ops_busy(const run *r)
{
    return r->ops.head != NULL || r->ops.inflight != NULL;
}

bool run_ops_insert(run *r, const char *type, bool is_llm, json_t *content, json_t *metadata,
                    json_t *ev_content, json_t *ev_metadata, bool event_after_next,
                    char message_id_out[40])
{
    run_op *op = calloc(1, sizeof *op);
    if (op != NULL) {
        op->kind = OP_INSERT;
        op->content = content ? kx_json_dumps_compact(content) : NULL;
        op->metadata = metadata ? kx_json_dumps_compact(metadata) : NULL;
        op->ev_content = ev_content;
        op->ev_metadata = ev_metadata;
        ev_content = ev_metadata = NULL;
    }
    json_decref(content);
    json_decref(metadata);
    json_decref(ev_content);
    json_decref(ev_metadata);
    if (op == NULL || op->content == NULL || op->metadata == NULL ||
        (op->ev_content != NULL && op->ev_metadata == NULL)) {
        if (op != NULL)
            op_free(op);
        return false;
    }
    kx_uuid_new_v7(op->message_id); /* time-ordered: appends to messages_pkey's right edge */
    snprintf(op->type, sizeof op->type, "%s", type);
    op->is_llm = is_llm;
    op->event_after_next = event_after_next;
    if (message_id_out != NULL)
        snprintf(message_id_out, 40, "%s", op->message_id);
    if (op->ev_content != NULL) {
        /* The text streamed so far goes before this row's event, and in the same message:
         * queued right ahead of the row even when nothing else is (run_ops_publish), not
         * published alone one commit earlier (run_ops.h). */
        r->ops.hold = !run_ops_busy(r); /* busy: the flush queues behind what is, as ever */
        chunks_flush(&r->chunks);
        r->ops.hold = false;
    }
    enqueue(r, op);
    return true;
}

void run_ops_publish(run *r, int kind, bool terminal, char *payload)
{
    if (payload == NULL) {
        kx_log(KX_LOG_ERROR, r->id, NULL, "run: out of memory building event %llu; not published",
               (unsigned long long)r->ev_seq);
        return;
    }
    bool busy = run_ops_busy(r);
    if (!busy && (!r->ops.hold || r->ops.evb != NULL)) { /* a completion gathering: with it */
        publish_now(r, kind, terminal, payload);
        return;
    }
    run_op *op = calloc(1, sizeof *op);
    if (op == NULL) {
        kx_log(KX_LOG_ERROR, r->id, NULL, "run: out of memory queueing event %llu; not published",
               (unsigned long long)r->ev_seq);
        free(payload);
        return;
    }
    op->kind = OP_PUBLISH;
    op->ev_kind = kind;
    op->terminal = terminal;
    op->early = !busy || r->ops.hold; /* every event of the flush, not only its first */
    op->payload = payload;
    enqueue(r, op);
}

static run_op *end_op(op_kind kind, const char *status, const char *text)
{
    run_op *op = calloc(1, sizeof *op);
    if (op == NULL)
        return NULL;
    op->kind = kind;
    snprintf(op->status, sizeof op->status, "%s", status ? status : "");
    if (text != NULL && (op->error = strdup(text)) == NULL) {
        free(op);
        return NULL;
    }
    return op;
}

void run_ops_finish(run *r, const char *status, const char *error)
{
    run_op *op = end_op(OP_FINISH, status, error);
    if (op == NULL) {
        run_db_failed(r, KX_ERR_NOMEM, true, false,
                      "internal error: out of memory recording the end of the run");
        return;
    }
    r->ops.finishing = true;
    enqueue(r, op);
}

void run_ops_finish_answered(run *r)
{
    run_op *op = end_op(OP_FINISH, "completed", NULL);
    if (op == NULL) {
        run_db_failed(r, KX_ERR_NOMEM, true, false,
                      "internal error: out of memory recording the end of the run");
        return;
    }
    op->if_answered = true;
    r->ops.finishing = true;
    enqueue(r, op);
}

void run_ops_handback(run *r, const char *why, bool release)
{
    run_op *op = end_op(OP_HANDBACK, "", why);
    if (op == NULL) {
        run_db_failed(r, KX_ERR_NOMEM, false, true,
                      release ? "internal error: out of memory releasing the run"
                              : "internal error: out of memory handing the run back");
        return;
    }
    op->release = release;
    r->ops.handing_back = true;
    enqueue(r, op);
}

void run_ops_load(run *r, bool with_agent, run_load_then then)
{
    run_op *op = calloc(1, sizeof *op);
    if (op == NULL) {
        run_db_failed(r, KX_ERR_NOMEM, false, false,
                      "internal error: out of memory loading the thread");
        return;
    }
    op->kind = OP_LOAD;
    op->with_agent = with_agent;
    op->then = then;
    enqueue(r, op);
}

void run_ops_send_now(run *r)
{
    kx_timer_cancel(r->ops.kick);
    r->ops.kick = NULL;
    if (r->ops.head == NULL)
        return;
    /* the same connection runs the jobs of a run in order; nobody reads the answers now */
    if (r->ops.inflight != NULL)
        r->ops.inflight->run = NULL;
    r->ops.inflight = NULL;
    send_batch(r);
    if (r->ops.inflight != NULL)
        r->ops.inflight->run = NULL;
    r->ops.inflight = NULL;
}

void run_ops_clear(run *r)
{
    kx_timer_cancel(r->ops.kick);
    r->ops.kick = NULL;
    ops_free(r->ops.head);
    r->ops.head = r->ops.tail = NULL;
    if (r->ops.inflight != NULL)
        r->ops.inflight->run = NULL; /* it frees itself when it comes back */
    r->ops.inflight = NULL;
}
