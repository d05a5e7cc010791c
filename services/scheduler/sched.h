/* sched.h — the scheduler's state and its modules.
 *
 * The scheduler turns queued runs into dispatches, extends leases from runner heartbeats,
 * reaps runs whose lease expired or whose wall time passed, and sweeps Postgres for queued
 * runs whose dispatch was lost. It is one loop thread with timers: every database statement
 * and bus publish runs on that thread (each bounded by statement_timeout / a publish wait),
 * so no state needs a lock except the flags that the ops server's readiness check reads.
 *
 * Modules:
 *   sched_config.c  settings (docs/operations.md, "scheduler")
 *   store.c         every SQL statement, and whether Postgres is reachable
 *   lifecycle.c     bring-up (migrations, streams, consumer — retried until done),
 *                   readiness, SIGTERM drain
 *   submit.c        the JetStream consumer "scheduler" on kx.run.submit
 *   dispatch.c      publishing kx.v1.RunDispatch
 *   heartbeat.c     kx.run.hb -> one UPDATE extending every matching lease
 *   hb_arrays.c     the UPDATE's array parameters (pure)
 *   reaper.c        failing runs whose lease or wall time ran out; STOP + terminal event
 *   terminal.c      the terminal event's payload (pure)
 *   sweep.c         re-dispatching queued runs nobody dispatched */
#ifndef SCHED_H
#define SCHED_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "kx/db.h"
#include "kx/svc.h"

typedef struct sched_config {
    char database_url[1024];      /* KX_DATABASE_URL */
    int64_t lease_ttl_ms;         /* KX_LEASE_TTL_MS */
    int64_t reaper_interval_ms;   /* KX_REAPER_INTERVAL_MS */
    int64_t wall_time_s;          /* KX_RUN_WALL_TIME_S */
    int64_t sweep_interval_ms;    /* KX_SWEEP_INTERVAL_MS */
    int64_t bus_timeout_ms;       /* KX_BUS_TIMEOUT_MS: longest wait for a JetStream ack */
} sched_config;

/* A terminal event the reaper could not publish yet (NATS down); retried every tick. */
typedef struct sched_pending_event {
    struct sched_pending_event *next;
    char run_id[40];
    char account_id[40];
    int64_t fenced_epoch;
    char *error;                  /* malloc'd */
} sched_pending_event;

typedef struct scheduler {
    kx_svc *svc;
    sched_config cfg;
    kx_db *db;
    /* read by the readiness check on the ops server's thread */
    atomic_bool db_up;
    atomic_bool migrated;
    atomic_bool consumer_ready;
    bool streams_ready;
    natsSubscription *submit_sub;
    natsSubscription *hb_sub;
    kx_timer *bringup_timer;
    kx_timer *reaper_timer;
    kx_timer *sweep_timer;
    bool draining;
    /* Lease reaping is blind while heartbeats cannot be applied (Postgres or NATS down, or the
     * scheduler not yet running): an expired lease then says nothing about its runner. After
     * such a gap no lease is reaped before lease_reap_after_ms (monotonic), one TTL after
     * sight came back, so that live runners' heartbeats land first. Loop thread only. */
    bool blind;
    bool blind_logged;
    int64_t lease_reap_after_ms;
    sched_pending_event *pending;     /* FIFO of unpublished terminal events */
    sched_pending_event **pending_tail;
    size_t npending;
} scheduler;

/* One row of a run to dispatch (strings are copied out of the PGresult). */
typedef struct sched_run_row {
    char run_id[40];
    char thread_id[40];
    char account_id[40];
    char project_id[40];
    int attempt;                  /* agent_runs.attempt as it is now */
} sched_run_row;

/* sched_config.c */
kx_err sched_config_load(sched_config *cfg);

/* store.c — each returns KX_ERR_UNAVAILABLE / KX_ERR_TIMEOUT when Postgres is unreachable or
 * slow (callers retry later), other errors as kx_db maps them. */
extern const kx_db_stmt sched_statements[];
kx_err sched_store_migrate(scheduler *s);
/* Sets dispatched_at on a queued run; *found is false when the run is not queued (any more). */
kx_err sched_store_mark_dispatched(scheduler *s, const char *run_id, sched_run_row *row,
                                   bool *found);
/* Clears dispatched_at again after a failed publish, so the sweep picks the run up soon. */
kx_err sched_store_unmark_dispatched(scheduler *s, const char *run_id);
/* The heartbeat UPDATE; *rows = leases extended. */
kx_err sched_store_extend_leases(scheduler *s, const char *ids, const char *epochs, long *rows);
/* The reaper UPDATE; PGresult rows: id, lease_owner, error, lease_epoch (new), account_id.
 * reap_leases false: only wall time is reaped (lease expiry is ignored). */
PGresult *sched_store_reap(scheduler *s, bool reap_leases, kx_err *err);
/* The sweep UPDATE; PGresult rows: id, thread_id, account_id, project_id, attempt. */
PGresult *sched_store_sweep(scheduler *s, kx_err *err);
/* Copies row i of a mark/sweep result into *row. */
void sched_store_row(const PGresult *res, int i, sched_run_row *row);

/* lifecycle.c */
void sched_bringup_start(scheduler *s);
bool sched_ready(kx_svc *svc, void *arg, char *why, size_t whylen);
void sched_drain(kx_svc *svc, void *arg);

/* submit.c */
kx_err sched_submit_subscribe(scheduler *s);

/* dispatch.c: publishes RunDispatch for row (attempt + 1, wall deadline from now). */
kx_err sched_dispatch(scheduler *s, const sched_run_row *row);

/* heartbeat.c */
kx_err sched_heartbeat_subscribe(scheduler *s);

/* reaper.c / sweep.c: start their periodic timers. */
void sched_reaper_start(scheduler *s);
/* Heartbeats cannot be applied right now (Postgres or NATS unreachable): the reaper stops
 * reaping expired leases until one TTL after they can again (reaper.c). Loop thread. */
static inline void sched_blind(scheduler *s) { s->blind = true; }
void sched_sweep_start(scheduler *s);

#endif
