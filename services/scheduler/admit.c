/* admit.c — admission: turning waiting runs (queued, never dispatched, or given back by a
 * reap or a drain) into dispatches, within the limits.
 *
 * One statement (store.c "sched_admit") decides, in Postgres, so that it holds across
 * scheduler replicas and restarts: at most KX_MAX_PARALLEL_RUNS active runs per account
 * (running, or dispatched and not yet claimed — over the limit a run simply waits queued),
 * one active run per thread (a thread's next run waits for the current one: multitask
 * "enqueue"), and round-robin fairness between accounts (every account's first waiting run
 * before any account's second), so one busy account cannot starve the others.
 *
 * A pass runs on a database thread, never on the loop, and at most one pass is in flight: the
 * requests (a submit each, a reaper tick, a trigger tick) made while one runs wait for the
 * next, which starts when it ends and serves them all. So a burst of submits costs a few
 * passes, not one per submit — group commit: a pass is the admit UPDATE (one commit for up to
 * ADMIT_BATCH runs; index-driven, it reads O(batch) rows, not every active and waiting run),
 * and the admitted runs' dispatches published pipelined (all sent, then the acks collected:
 * about one round trip to the stream per batch, not one per run), repeated while
 * the statement says runs are left (a full batch, or a short one cut by its per-account
 * quota, store.c). A run whose dispatch was not acknowledged (refused, not sent,
 * or no ack in time) is given back, all of them in one statement (sched_unmark_many): a run
 * stays marked dispatched only with an acknowledged message, whose sequence is recorded.
 *
 * Sequences: the stream sequence of a dispatch is recorded by the first admit statement that
 * runs SCHED_SEQ_DELAY_MS (2 s) or more after the stream acknowledged it (no statement and no
 * commit of its own), and only on a run still queued then: a run claimed by then (nearly all
 * of them) needs none, the sweep looks at queued runs only. Written right after the publish,
 * as before, they were a second commit per batch and an extra non-HOT update of nearly every
 * run, and the runners' claims of those very rows waited for that commit. Admission runs
 * after every reaper tick, so a sequence waits at most SCHED_SEQ_DELAY_MS plus one tick; with
 * a reaper interval over SCHED_HOLD_SEQS_MAX_MS, over SCHED_SEQ_HELD_MAX held, or while
 * draining, they are recorded at once as before. Sequences lost (a failed statement, a
 * scheduler stopped with some held) cost nothing but a second dispatch by the sweep of a run
 * still queued 10 s later, which the runners' claim makes harmless.
 *
 * Counting: the per-account limit needs each account's active runs, counted up to the limit
 * (agent_runs_active_idx): with a limit in the thousands, every pass read every active run of
 * a busy account (~2 000 in the issue-12 throughput benchmark, most of the statement's cost).
 * So a pass keeps, per account, an upper bound of its active runs (table admission_bounds,
 * migration 014): a pass that counts writes the count plus what it admits (only if that leaves
 * room for a batch: near the limit, every pass counts anyway); the next passes add
 * what they admit and do not count, as long as the bound leaves room for a whole batch (then
 * the decisions are those an exact count gives) and the count is less than
 * SCHED_BOUND_MAX_AGE_MS old. Only admission makes runs active (one pass at a time, the
 * advisory lock, the bound written in the pass's own transaction); ends, stops and reaps only
 * loosen the bound. The rare activations outside admission (a runner claiming a queued run a
 * stale dispatch named, the sweep re-dispatching a run given back meanwhile) overran the
 * limit before too; the age bounds how long a pass may not see them.
 *
 * Exactly once: the admit UPDATE marks a run dispatched only while it is queued and not yet
 * dispatched, so two passes (or two replicas) never both pick it. A pass that dies half way
 * (Postgres restarts, the connection drops) loses nothing: a run marked but not published, or
 * published without its sequence recorded, is found by the sweep (marked over 10 s ago, its
 * message not in the stream) and dispatched again; a second dispatch of a run is harmless,
 * the runner's claim is a compare-and-set on the row. */
#include <stdlib.h>
#include <string.h>

#include "kx/log.h"
#include "kx/metrics.h"
#include "kx/time.h"
#include "sched.h"

#define ADMIT_BATCH 200
/* Batches one pass runs at most before it ends (and serves its waiters); the next pass, if one
 * was asked for, is queued behind whatever came meanwhile. Kept small: a pass holds its
 * database lane, and the heartbeats of a runner whose id hashes to that lane wait behind it
 * (a heartbeat that waits half a lease TTL makes the reaper blind, and one written later than
 * its lease let a run be reaped: seen once in bench_lease at 10 000 runs with 10 batches). */
#define ADMIT_MAX_PASSES 2

/* A request waiting for the pass that serves it. */
typedef struct admit_waiter {
    struct admit_waiter *next;
    sched_admit_done done;
    void *arg;
} admit_waiter;

/* The dispatch sequences not recorded yet (see "Sequences" above), oldest first. */
typedef struct held_seqs {
    sched_seq_note *notes;
    size_t n, cap;
} held_seqs;

typedef struct sched_admission {
    admit_waiter *next_head, *next_tail; /* served by the next pass */
    bool pending;                        /* a pass was asked for (maybe without a waiter) */
    bool inflight;                       /* a pass runs on a database thread */
    held_seqs held;                      /* between passes (the pass in flight has them) */
} sched_admission;

/* One pass, on a database thread; waiters are the requests it serves. */
typedef struct admit_job {
    scheduler *s;
    admit_waiter *waiters;
    held_seqs held; /* the pass's admits record the due ones and add their own */
    kx_err err;
    int admitted;
} admit_job;

static void start_pass(scheduler *s);

/* Whether a batch's sequences wait for the next pass: only when one comes soon (admission
 * runs after every reaper tick, and the sweep takes a dispatch without a sequence for lost
 * after 10 s); never while draining (no pass follows). */
static bool hold_seqs(scheduler *s)
{
    return s->cfg.reaper_interval_ms <= SCHED_HOLD_SEQS_MAX_MS && !atomic_load(&s->draining);
}

/* How many of the held sequences (the oldest) are due: acknowledged SCHED_SEQ_DELAY_MS ago. */
static size_t seqs_due(const held_seqs *h, int64_t now)
{
    size_t k = 0;
    while (k < h->n && h->notes[k].acked_ms <= now - SCHED_SEQ_DELAY_MS)
        k++;
    return k;
}

/* Appends n notes to h; false when h would exceed SCHED_SEQ_HELD_MAX or out of memory. */
static bool seqs_hold(held_seqs *h, const sched_seq_note *notes, size_t n)
{
    if (h->n + n > SCHED_SEQ_HELD_MAX)
        return false;
    if (h->n + n > h->cap) {
        size_t cap = h->cap > 0 ? h->cap * 2 : 256;
        while (cap < h->n + n)
            cap *= 2;
        sched_seq_note *grown = realloc(h->notes, cap * sizeof *grown);
        if (grown == NULL)
            return false;
        h->notes = grown;
        h->cap = cap;
    }
    memcpy(h->notes + h->n, notes, n * sizeof *notes);
    h->n += n;
    return true;
}

/* One batch: admit (recording the held sequences that are due), publish, hold (or record)
 * the batch's sequences. Returns the rows admitted (< 0 on a database error); *more: whether
 * runs may be left to admit now (a full batch, or a per-account quota hit). */
static int admit_batch(scheduler *s, kx_db *db, held_seqs *held, kx_err *err, bool *more)
{
    *more = false;
    size_t due = seqs_due(held, kx_mono_ms());
    PGresult *res = sched_store_admit(s, db, ADMIT_BATCH, due, held->notes, err);
    /* recorded, or dropped with a failed statement (so that they can never keep admission
     * failing; without them the sweep looks at those runs after 10 s) */
    if (due > 0) {
        memmove(held->notes, held->notes + due, (held->n - due) * sizeof *held->notes);
        held->n -= due;
    }
    if (res == NULL) {
        kx_warn("scheduler: admission could not run: %s", kx_err_str(*err));
        return -1;
    }
    int n = PQntuples(res);
    sched_run_row *rows = calloc((size_t)(n > 0 ? n : 1), sizeof *rows);
    sched_seq_note *notes = calloc((size_t)(n > 0 ? n : 1), sizeof *notes);
    const char **back = calloc((size_t)(n > 0 ? 2 * n : 1), sizeof *back);
    uint64_t *seqs = calloc((size_t)(n > 0 ? n : 1), sizeof *seqs);
    if (rows == NULL || notes == NULL || back == NULL || seqs == NULL) {
        /* marked but not published: the sweep dispatches them after 10 s */
        kx_error("scheduler: out of memory in an admission pass; the sweep dispatches its runs");
        *err = KX_ERR_NOMEM;
        n = -1;
        goto out;
    }
    for (int i = 0; i < n; i++)
        sched_store_row(res, i, &rows[i]);
    int more_col = PQfnumber(res, "more");
    *more = n == ADMIT_BATCH ||
        (n > 0 && more_col >= 0 && strcmp(PQgetvalue(res, 0, more_col), "t") == 0);
    /* all of the batch's dispatches leave before any ack is waited for */
    kx_err bus_err = sched_dispatch_publish_many(s, (size_t)n, rows, seqs);
    size_t nsent = 0, nback = 0;
    const char **back_tids = back + n; /* run ids, then their row versions */
    int64_t acked = kx_mono_ms();
    for (int i = 0; i < n; i++) {
        /* a row without its version (never: admission returns it) is found by no probe */
        const char *tid = rows[i].tid[0] != '\0' ? rows[i].tid : "(0,0)";
        if (seqs[i] > 0) {
            sched_seq_note *sn = &notes[nsent++];
            snprintf(sn->run_id, sizeof sn->run_id, "%s", rows[i].run_id);
            snprintf(sn->tid, sizeof sn->tid, "%s", tid);
            sn->seq = seqs[i];
            sn->acked_ms = acked;
        } else {
            /* not acknowledged: given back, so that the next pass dispatches it again (if it
             * did reach the stream, the second dispatch is harmless: the claim is a CAS) */
            back_tids[nback] = tid;
            back[nback++] = rows[i].run_id;
        }
    }
    if (nsent > 0 && !(hold_seqs(s) && seqs_hold(held, notes, nsent)) &&
        sched_store_set_dispatch_seqs(s, db, nsent, notes) != KX_OK) {
        /* Not fatal: without a sequence the sweep takes a dispatch for lost after 10 s and
         * sends another one, which the runners' claim makes harmless. */
        kx_warn("scheduler: dispatch sequences of %zu run(s) not recorded", nsent);
    }
    if (nback > 0 && sched_store_unmark_many(s, db, nback, back, back_tids) != KX_OK)
        kx_warn("scheduler: %zu run(s) whose dispatch failed stay marked dispatched; the sweep "
                "dispatches them within 10 s",
                nback);
    if (bus_err != KX_OK) {
        *err = bus_err;
        n = -1;
    }
out:
    free(seqs);
    free(back);
    free(notes);
    free(rows);
    PQclear(res);
    return n;
}

static void pass_run(kx_db *db, void *arg)
{
    admit_job *j = arg;
    scheduler *s = j->s;
    j->err = KX_OK;
    for (int pass = 0; pass < ADMIT_MAX_PASSES; pass++) {
        if (atomic_load(&s->draining)) {
            (void)sched_store_set_dispatch_seqs(s, db, j->held.n, j->held.notes);
            j->held.n = 0;
            j->err = KX_ERR_UNAVAILABLE;
            return;
        }
        bool more = false;
        int n = admit_batch(s, db, &j->held, &j->err, &more);
        if (n < 0)
            return;
        j->admitted += n;
        /* a batch shorter than ADMIT_BATCH may still leave runs to admit (the statement's
         * per-account quota, store.c): the statement says so */
        if (!more)
            return;
    }
}

static void serve(scheduler *s, admit_waiter *w, kx_err err)
{
    while (w != NULL) {
        admit_waiter *next = w->next;
        if (w->done != NULL)
            w->done(s, err, w->arg);
        free(w);
        w = next;
    }
}

static void pass_done(void *arg, kx_err err)
{
    admit_job *j = arg;
    scheduler *s = j->s;
    if (err == KX_OK)
        err = j->err;
    admit_waiter *w = j->waiters;
    held_seqs held = j->held;
    free(j);
    if (s->loop_over) { /* shutdown: the waiters only release what they hold */
        /* the held sequences are lost: the sweep re-dispatches those runs that are still
         * queued 10 s after their dispatch (harmless, the claim is a CAS) */
        free(held.notes);
        serve(s, w, KX_ERR_UNAVAILABLE);
        return;
    }
    s->admission->held = held;
    s->admission->inflight = false;
    kx_counter_add(kx_metrics_counter("kx_scheduler_admission_passes_total", "",
                                      "Admission passes run (one serves every request made "
                                      "while the previous one ran)"),
                   1);
    serve(s, w, err);
    if (s->admission->pending)
        start_pass(s);
}

static void start_pass(scheduler *s)
{
    sched_admission *a = s->admission;
    admit_job *j = calloc(1, sizeof *j);
    if (j == NULL) {
        kx_error("scheduler: out of memory starting an admission pass; retried next tick");
        return; /* pending stays: the next request or reaper tick starts it */
    }
    j->s = s;
    j->waiters = a->next_head;
    j->held = a->held;
    if (sched_job(s, "admission", pass_run, pass_done, j) != KX_OK) {
        kx_warn("scheduler: admission pass not queued (database threads busy or stopping)");
        free(j); /* the held sequences stay with a */
        /* the waiters are not stranded: they are answered "unavailable" (a submit is
         * redelivered); pending stays for the next tick */
        admit_waiter *w = a->next_head;
        a->next_head = a->next_tail = NULL;
        serve(s, w, KX_ERR_UNAVAILABLE);
        return;
    }
    a->next_head = a->next_tail = NULL;
    a->held = (held_seqs){NULL, 0, 0};
    a->pending = false;
    a->inflight = true;
}

void sched_admit(scheduler *s, sched_admit_done done, void *arg)
{
    if (s->admission == NULL) {
        s->admission = calloc(1, sizeof *s->admission);
        if (s->admission == NULL) {
            kx_error("scheduler: out of memory for the admission state");
            if (done != NULL)
                done(s, KX_ERR_NOMEM, arg);
            return;
        }
    }
    sched_admission *a = s->admission;
    if (done != NULL) {
        admit_waiter *w = calloc(1, sizeof *w);
        if (w == NULL) {
            done(s, KX_ERR_NOMEM, arg);
            return;
        }
        w->done = done;
        w->arg = arg;
        if (a->next_tail != NULL)
            a->next_tail->next = w;
        else
            a->next_head = w;
        a->next_tail = w;
    }
    a->pending = true;
    if (!a->inflight)
        start_pass(s);
}

void sched_admit_free(scheduler *s)
{
    if (s->admission == NULL)
        return;
    admit_waiter *w = s->admission->next_head;
    s->admission->next_head = s->admission->next_tail = NULL;
    serve(s, w, KX_ERR_UNAVAILABLE);
    free(s->admission->held.notes);
    free(s->admission);
    s->admission = NULL;
}
