/* sched.h — the scheduler's state and its modules.
 *
 * The scheduler turns queued runs into dispatches, extends leases from runner heartbeats,
 * reaps runs whose lease expired or whose wall time passed, and sweeps Postgres for queued
 * runs whose dispatch was lost. Its loop thread owns the state and the timers, and never waits
 * for Postgres: every database statement (and the JetStream publishes that go with it) runs
 * as a job on one of KX_SCHED_DB_CONNS database threads (kx/db_lanes.h), each with its own
 * connection, and its completion comes back to the loop. Each kind of work has at most one job
 * in flight (one admission pass, one reaper tick, one sweep, one trigger tick, one bring-up;
 * heartbeats one per message), so a job's thread may use the state its kind owns; what
 * several threads touch is atomic (db_up, migrated, consumer_ready, draining, blind).
 *
 * Modules:
 *   sched_config.c  settings (docs/operations.md, "scheduler")
 *   jobs.c          the database threads, and the ticks (timer -> job -> completion)
 *   store.c         every SQL statement, and whether Postgres is reachable
 *   lifecycle.c     bring-up (migrations, streams, submit subscription — retried until done),
 *                   readiness, SIGTERM drain
 *   submit.c        kx.run.submit (core, queue group "scheduler") -> an admission pass
 *   admit.c         admission: per-account limits, one run per thread, fairness
 *   dispatch.c      publishing kx.v1.RunDispatch
 *   heartbeat.c     kx.run.hb requests -> renew the runner's one lease row; answer with the
 *                   leases it lost (O(1) per runner, bounded answer)
 *   reaper.c        runs whose runner lease or wall time ran out -> queued again (retry) or
 *                   failed, written with a notice (outbox); notices -> STOP + stream event
 *   terminal.c      the reaper's event payloads (pure)
 *   sweep.c         re-dispatching queued runs whose dispatch was lost (and only those)
 *   triggers.c      scheduled runs: firing each due cron trigger once (across replicas) */
#ifndef SCHED_H
#define SCHED_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "kx/db.h"
#include "kx/db_lanes.h"
#include "kx/svc.h"

typedef struct sched_config {
    char database_url[1024];    /* KX_DATABASE_URL */
    int64_t lease_ttl_ms;       /* KX_LEASE_TTL_MS */
    int64_t reaper_interval_ms; /* KX_REAPER_INTERVAL_MS */
    int64_t wall_time_s;        /* KX_RUN_WALL_TIME_S */
    int64_t sweep_interval_ms;  /* KX_SWEEP_INTERVAL_MS */
    int64_t bus_timeout_ms;     /* KX_BUS_TIMEOUT_MS: longest wait for a JetStream ack */
    int64_t max_attempts;       /* KX_RUN_MAX_ATTEMPTS: a reaped run is retried below this */
    int64_t max_parallel_runs;  /* KX_MAX_PARALLEL_RUNS: active runs per account */
    int64_t trigger_poll_ms;    /* KX_TRIGGER_POLL_MS: how often due triggers are looked for */
    int64_t db_conns;           /* KX_SCHED_DB_CONNS: database threads (connections) */
} sched_config;

/* Most revoked leases one heartbeat answer carries (~60 B each: the answer stays far below
 * NATS' 1 MB max_payload); the runner asks again for the rest. */
#define SCHED_HB_MAX_REVOKED 2000
/* Admission records a dispatch's stream sequence with the first pass at least
 * SCHED_SEQ_DELAY_MS after the dispatch (admit.c, "Sequences"), holding at most
 * SCHED_SEQ_HELD_MAX of them, and only while the reaper tick, after which a pass always runs,
 * is at most SCHED_HOLD_SEQS_MAX_MS: a sequence is then recorded within 7 s, before the sweep
 * (10 s) needs it. */
#define SCHED_SEQ_DELAY_MS 2000
#define SCHED_SEQ_HELD_MAX 20000
#define SCHED_HOLD_SEQS_MAX_MS 5000
/* Admission trusts an account's bound on its active runs (table admission_bounds, migration
 * 014; admit.c, "Counting") for at most this long after the count it started from, then
 * counts again. */
#define SCHED_BOUND_MAX_AGE_MS 1000
/* Most runs one reaper pass moves, and most notices one pass publishes. */
#define SCHED_REAP_BATCH 1000

typedef struct scheduler scheduler;

/* jobs.c: a loop timer whose work runs as one job on a database thread. run (database thread)
 * returns a result that then (loop thread, may be NULL) gets; then returns false to stop the
 * ticks. A tick never overlaps itself. */
typedef int (*sched_tick_run)(scheduler *s, kx_db *db);
typedef bool (*sched_tick_then)(scheduler *s, int result);
typedef struct sched_tick {
    scheduler *s;
    const char *name; /* log name and lane key */
    int64_t every_ms;
    sched_tick_run run;
    sched_tick_then then;
    kx_timer *timer; /* armed, or NULL while the job runs */
    bool busy;       /* the job is queued or runs */
    int result;      /* run's, for then */
} sched_tick;

struct scheduler {
    kx_svc *svc;
    sched_config cfg;
    kx_db_lanes *dbl; /* owned: the database threads (store.c's statements run there) */
    /* read by the readiness check on the ops server's thread */
    atomic_bool db_up;
    atomic_bool migrated;
    atomic_bool consumer_ready;
    bool streams_ready; /* bring-up job only */
    natsSubscription *submit_sub;
    natsSubscription *hb_sub;
    sched_tick bringup, reaper, sweep, triggers;
    atomic_bool draining; /* set on the loop (SIGTERM), read by the jobs */
    bool loop_over;       /* the loop stopped: completions only release what they hold */
    struct sched_admission *admission; /* owned (admit.c): the pass in flight and who waits */
    /* Lease reaping is blind while heartbeats cannot be applied (Postgres or NATS down, or the
     * scheduler not yet running): an expired lease then says nothing about its runner. After
     * such a gap no lease is reaped before lease_reap_after_ms (monotonic), one TTL after
     * sight came back, so that live runners' heartbeats land first. blind is set by any thread;
     * the rest belongs to the reaper job. */
    atomic_bool blind;
    bool blind_logged;
    int64_t lease_reap_after_ms;
    int64_t next_cleanup_ms; /* monotonic: next purge of old lease rows */
};

/* One row of a run to dispatch (strings are copied out of the PGresult). */
typedef struct sched_run_row {
    char run_id[40];
    char thread_id[40];
    char account_id[40];
    char project_id[40];
    int attempt;          /* agent_runs.attempt as it is now */
    int64_t dispatch_seq; /* sweep only: the last dispatch's stream sequence, 0 = none */
    char tid[24];         /* admission only: the row version it wrote, "(page,item)", or "" */
} sched_run_row;

/* sched_config.c */
kx_err sched_config_load(sched_config *cfg);

/* store.c — each returns KX_ERR_UNAVAILABLE / KX_ERR_TIMEOUT when Postgres is unreachable or
 * slow (callers retry later), other errors as kx_db maps them. */
extern const kx_db_stmt sched_statements[];
kx_err sched_store_migrate(scheduler *s, kx_db *db);
/* Sets dispatched_at on a queued run; *found is false when the run is not queued (any more). */
kx_err sched_store_mark_dispatched(scheduler *s, kx_db *db, const char *run_id, sched_run_row *row,
                                   bool *found);
/* Clears dispatched_at again after a failed publish, so the sweep picks the run up soon. */
kx_err sched_store_unmark_dispatched(scheduler *s, kx_db *db, const char *run_id);
/* Records the stream sequence of the dispatch just published (the sweep's proof of loss). */
kx_err sched_store_set_dispatch_seq(scheduler *s, kx_db *db, const char *run_id, uint64_t seq);
/* A dispatch sequence to record: the run, the row version admission returned for it
 * (sched_run_row.tid: the run is found by it, and skipped when that version is gone) and the
 * stream sequence its dispatch got. */
typedef struct sched_seq_note {
    char run_id[40];
    char tid[24];
    uint64_t seq;
    int64_t acked_ms; /* admit.c: when the stream acknowledged the dispatch (monotonic ms) */
} sched_seq_note;
/* The same as set_dispatch_seq for n runs at once (one statement, one commit). */
kx_err sched_store_set_dispatch_seqs(scheduler *s, kx_db *db, size_t n,
                                     const sched_seq_note *notes);
/* unmark_dispatched for n runs at once, found as above. */
kx_err sched_store_unmark_many(scheduler *s, kx_db *db, size_t n, const char *const *run_ids,
                               const char *const *tids);
/* The heartbeat: renews runner_id's lease row and returns the revocations since since_ms:
 * rows run_id, epoch, revoked_at ms; plus one last row (NULL, NULL, server now ms). */
PGresult *sched_store_heartbeat(scheduler *s, kx_db *db, const char *runner_id, int capacity,
                                int64_t since_ms, kx_err *err);
/* The reaper UPDATE (writes notices; returns nothing). reap_leases false: only wall time is
 * reaped (lease expiry is ignored). *rows = runs moved. */
kx_err sched_store_reap(scheduler *s, kx_db *db, bool reap_leases, long *rows);
/* Runs with a notice to publish; rows: id, lease_owner, error, notice_epoch, account_id,
 * notice, thread_id, project_id, attempt, status. */
PGresult *sched_store_notices(scheduler *s, kx_db *db, kx_err *err);
kx_err sched_store_notice_done(scheduler *s, kx_db *db, const char *run_id, int64_t notice_epoch);
/* Admission (see store.c): marks dispatched and returns (rows as mark_dispatched, plus a
 * column "more": whether runs may be left to admit now although fewer than batch came back,
 * and "tid": the row version written) the waiting runs that may start now, at most batch; in
 * the same statement, records the dispatch sequences of notes (an earlier pass's runs) as
 * set_dispatch_seqs does. */
PGresult *sched_store_admit(scheduler *s, kx_db *db, int batch, size_t nnotes,
                            const sched_seq_note *notes, kx_err *err);
/* The sweep's candidates (queued, no dispatch yet or the last one over 10 s ago); rows: id,
 * thread_id, account_id, project_id, attempt, dispatch_seq. */
PGresult *sched_store_sweep(scheduler *s, kx_db *db, kx_err *err);
/* A candidate whose dispatch (sequence seq) is still in the stream: looked at again later. */
kx_err sched_store_sweep_seen(scheduler *s, kx_db *db, const char *run_id, int64_t seq);
/* Scheduled runs (triggers.c): the active triggers due now, oldest first, at most batch; rows:
 * trigger_id, cron_expression, next_fire_at (text, exact), next_fire_at and now (unix s). */
PGresult *sched_store_triggers_due(scheduler *s, kx_db *db, int batch, kx_err *err);
/* kx_fire_trigger (migration 005): fires the trigger for its due time `due` (as read) and moves
 * next_fire_at to next (unix s; 0: none). Rows: outcome (fired, refused, duplicate, skipped),
 * run id or "", detail or "". Idempotent: a retry finds next_fire_at moved and skips. */
PGresult *sched_store_trigger_fire(scheduler *s, kx_db *db, const char *trigger_id,
                                   const char *due, int64_t next, kx_err *err);
/* A trigger whose expression cannot be read any more (edited by hand): no next fire, and why. */
kx_err sched_store_trigger_disable(scheduler *s, kx_db *db, const char *trigger_id,
                                   const char *due, const char *why);
/* Purges old revocations and lease rows of long-gone runners. */
kx_err sched_store_cleanup(scheduler *s, kx_db *db);
/* Copies row i of a mark/sweep result into *row. */
void sched_store_row(const PGresult *res, int i, sched_run_row *row);

/* lifecycle.c */
void sched_bringup_start(scheduler *s);
bool sched_ready(kx_svc *svc, void *arg, char *why, size_t whylen);
void sched_drain(kx_svc *svc, void *arg);

/* submit.c */
kx_err sched_submit_subscribe(scheduler *s);

/* dispatch.c (database threads): publishes RunDispatch for row (attempt + 1); *seq gets the
 * stream sequence it got (0 when unknown). The caller records it. */
kx_err sched_dispatch_publish(scheduler *s, const sched_run_row *row, uint64_t *seq);
/* The same for n admitted runs at once, pipelined (kx_bus_js_publish_many): seqs[i] > 0 for
 * each run whose dispatch the stream acknowledged, 0 for the others (not sent, refused, or no
 * ack in time: maybe in the stream). KX_OK when all were acknowledged, else the first error. */
kx_err sched_dispatch_publish_many(scheduler *s, size_t n, const sched_run_row *rows,
                                   uint64_t *seqs);
/* mark dispatched + dispatch + record the sequence (+ unmark on failure), for one run the sweep
 * found lost. KX_OK also when the run is not queued (nothing sent). */
kx_err sched_dispatch_queued(scheduler *s, kx_db *db, const char *run_id);
/* admit.c (loop thread): asks for an admission pass — dispatches every waiting run that
 * per-account limits, one run per thread and fairness let start now. The pass runs on a
 * database thread, at most one at a time: a request made while one runs is served by the next
 * (which then serves every request made meanwhile: group commit). done (may be NULL) is called
 * once on the loop with the outcome of the pass that served this request, or with
 * KX_ERR_UNAVAILABLE when none will (shutdown; s->loop_over tells whether the loop still
 * runs). Called on submits, after each reaper tick and after triggers fired. */
typedef void (*sched_admit_done)(scheduler *s, kx_err err, void *arg);
void sched_admit(scheduler *s, sched_admit_done done, void *arg);
/* Frees the admission state (after the database threads were freed). */
void sched_admit_free(scheduler *s);

/* jobs.c: starts the database threads (s->dbl; connections are made lazily). */
kx_err sched_db_open(scheduler *s);
/* Submits a job to the database threads (key picks the lane, see kx/db_lanes.h). */
kx_err sched_job(scheduler *s, const char *key, kx_db_job_run run, kx_db_job_done done, void *arg);
/* First tick after first_ms, then every_ms after each tick's end. */
void sched_tick_start(scheduler *s, sched_tick *t, const char *name, int64_t first_ms,
                      int64_t every_ms, sched_tick_run run, sched_tick_then then);
void sched_tick_stop(sched_tick *t); /* cancels the timer; a job in flight ends by itself */

/* heartbeat.c */
kx_err sched_heartbeat_subscribe(scheduler *s);

/* reaper.c / sweep.c: start their periodic timers. */
void sched_reaper_start(scheduler *s);
/* Heartbeats cannot be applied right now (Postgres or NATS unreachable): the reaper stops
 * reaping expired leases until one TTL after they can again (reaper.c). Loop thread. */
static inline void sched_blind(scheduler *s)
{
    atomic_store(&s->blind, true);
}
void sched_sweep_start(scheduler *s);
/* triggers.c: starts the timer that fires due triggers every KX_TRIGGER_POLL_MS. */
void sched_triggers_start(scheduler *s);

#endif
