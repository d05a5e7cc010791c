/* jobs.c — the scheduler's database threads (KX_SCHED_DB_CONNS connections, kx/db_lanes.h)
 * and its periodic work on them.
 *
 * A tick (sched_tick) is a loop timer whose work runs as one job on a database thread, with
 * the database connection of that thread: the loop only arms the timer, queues the job and,
 * from its completion, runs the tick's `then` (on the loop) and re-arms the timer. So a tick
 * never overlaps itself (one job of it in flight), the loop never waits for Postgres or for
 * the JetStream acks the work waits for, and heartbeats and submits flow while a tick runs.
 * The key of a tick's jobs is its name: a tick's jobs stay on one lane, in order. */
#include <stdio.h>

#include "kx/log.h"
#include "sched.h"

kx_err sched_db_open(scheduler *s)
{
    /* a pass, a tick of each kind and the heartbeats of every runner: far below this */
    size_t max_queue = 4096;
    return kx_db_lanes_new(s->cfg.database_url, sched_statements, s->svc->loop,
                           (size_t)s->cfg.db_conns, max_queue, &s->dbl);
}

kx_err sched_job(scheduler *s, const char *key, kx_db_job_run run, kx_db_job_done done, void *arg)
{
    return kx_db_lanes_submit(s->dbl, key, run, done, arg);
}

static void tick_arm(sched_tick *t, int64_t in_ms);

static void tick_run(kx_db *db, void *arg)
{
    sched_tick *t = arg;
    t->result = t->run(t->s, db);
}

static void tick_done(void *arg, kx_err err)
{
    sched_tick *t = arg;
    scheduler *s = t->s;
    t->busy = false;
    if (s->loop_over || atomic_load(&s->draining))
        return;
    bool again = true;
    if (err == KX_OK && t->then != NULL)
        again = t->then(s, t->result);
    if (again)
        tick_arm(t, t->every_ms);
}

static void on_tick(kx_loop *loop, void *arg)
{
    (void)loop;
    sched_tick *t = arg;
    t->timer = NULL;
    if (atomic_load(&t->s->draining))
        return;
    if (sched_job(t->s, t->name, tick_run, tick_done, t) != KX_OK) {
        kx_warn("scheduler: %s not queued (database threads busy or stopping); retried in "
                "%lld ms",
                t->name, (long long)t->every_ms);
        tick_arm(t, t->every_ms);
        return;
    }
    t->busy = true;
}

static void tick_arm(sched_tick *t, int64_t in_ms)
{
    t->timer = kx_loop_timer(t->s->svc->loop, in_ms, on_tick, t);
    if (t->timer == NULL)
        kx_error("scheduler: could not arm the %s timer: it stops", t->name);
}

void sched_tick_start(scheduler *s, sched_tick *t, const char *name, int64_t first_ms,
                      int64_t every_ms, sched_tick_run run, sched_tick_then then)
{
    t->s = s;
    t->name = name;
    t->every_ms = every_ms;
    t->run = run;
    t->then = then;
    t->busy = false;
    tick_arm(t, first_ms);
}

void sched_tick_stop(sched_tick *t)
{
    kx_timer_cancel(t->timer);
    t->timer = NULL;
}
