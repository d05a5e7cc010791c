/* dispatch.c — publishing kx.v1.RunDispatch on kx.run.dispatch (JetStream work queue
 * KX_RUN_DISPATCH), for admission (admit.c) and the sweep. Runs on the database threads (the
 * publish waits for the stream's acks; the loop never does).
 *
 * The run's wall time counts from its claim (the runner's and the reaper's one rule), so the
 * dispatch's wall_deadline_ms and Kx-Deadline header only bound how long the message itself
 * is worth handing out: now + the wall time. kx_bus_js_publish_pb_ex bounds the wait for the
 * stream's ack by KX_BUS_TIMEOUT_MS. The stream sequence the message got is stored with the
 * run (dispatch_seq): the sweep re-dispatches a queued run only once that message is gone.
 * Admission publishes a batch's dispatches pipelined (kx_bus_js_publish_many: all sent, then
 * the acks collected) and records their sequences in one statement (admit.c). */
#include <stdlib.h>
#include <string.h>

#include "kx/log.h"
#include "kx/metrics.h"
#include "kx/pb.h"
#include "sched.h"

/* The RunDispatch of row (attempt + 1), with its headers. */
static void dispatch_of(scheduler *s, const sched_run_row *row, Kx__V1__RunDispatch *d,
                        kx_bus_meta *meta)
{
    kx_deadline wall = kx_deadline_in(s->cfg.wall_time_s * 1000);
    Kx__V1__RunDispatch init = KX__V1__RUN_DISPATCH__INIT;
    *d = init;
    d->run_id = (char *)row->run_id;
    d->thread_id = (char *)row->thread_id;
    d->account_id = (char *)row->account_id;
    d->project_id = (char *)row->project_id;
    d->attempt = row->attempt + 1;
    d->wall_deadline_ms = wall;
    kx_bus_meta_init(meta, wall, row->account_id);
}

static void dispatched(const sched_run_row *row)
{
    kx_counter_add(kx_metrics_counter("kx_scheduler_runs_dispatched_total", "",
                                      "RunDispatch messages published"),
                   1);
    kx_log(KX_LOG_INFO, row->run_id, NULL, "scheduler: dispatched run %s (attempt %d)",
           row->run_id, row->attempt + 1);
}

kx_err sched_dispatch_publish(scheduler *s, const sched_run_row *row, uint64_t *seq)
{
    *seq = 0;
    Kx__V1__RunDispatch d;
    kx_bus_meta meta;
    dispatch_of(s, row, &d, &meta);
    kx_err err =
        kx_bus_js_publish_pb_ex(s->svc->bus, KX_SUBJ_RUN_DISPATCH, &d.base, &meta, NULL, seq);
    if (err != KX_OK) {
        kx_log(KX_LOG_WARN, row->run_id, NULL, "scheduler: could not dispatch run %s: %s",
               row->run_id, kx_err_str(err));
        return err;
    }
    dispatched(row);
    return KX_OK;
}

kx_err sched_dispatch_publish_many(scheduler *s, size_t n, const sched_run_row *rows,
                                   uint64_t *seqs)
{
    for (size_t i = 0; i < n; i++)
        seqs[i] = 0;
    if (n == 0)
        return KX_OK;
    natsMsg **msgs = calloc(n, sizeof *msgs);
    if (msgs == NULL)
        return KX_ERR_NOMEM;
    kx_err err = KX_OK;
    for (size_t i = 0; i < n && err == KX_OK; i++) {
        Kx__V1__RunDispatch d;
        kx_bus_meta meta;
        dispatch_of(s, &rows[i], &d, &meta);
        err = kx_bus_pb_msg(KX_SUBJ_RUN_DISPATCH, &d.base, &meta, &msgs[i]);
    }
    if (err == KX_OK)
        err = kx_bus_js_publish_many(s->svc->bus, n, msgs, s->cfg.bus_timeout_ms, seqs);
    for (size_t i = 0; i < n; i++) {
        kx_bus_msg_free(msgs[i]); /* left when a message could not be made */
        if (seqs[i] > 0)
            dispatched(&rows[i]);
        else
            kx_log(KX_LOG_WARN, rows[i].run_id, NULL, "scheduler: could not dispatch run %s: %s",
                   rows[i].run_id, kx_err_str(err != KX_OK ? err : KX_ERR_IO));
    }
    free(msgs);
    return err;
}

kx_err sched_dispatch_queued(scheduler *s, kx_db *db, const char *run_id)
{
    sched_run_row row;
    bool found = false;
    kx_err err = sched_store_mark_dispatched(s, db, run_id, &row, &found);
    if (err != KX_OK || !found) {
        if (err == KX_OK)
            kx_log(KX_LOG_DEBUG, run_id, NULL,
                   "scheduler: run %s is not queued; nothing to "
                   "dispatch",
                   run_id);
        return err;
    }
    uint64_t seq = 0;
    err = sched_dispatch_publish(s, &row, &seq);
    if (err != KX_OK) {
        if (sched_store_unmark_dispatched(s, db, run_id) != KX_OK)
            kx_log(KX_LOG_WARN, run_id, NULL,
                   "scheduler: run %s stays marked dispatched; the "
                   "sweep re-dispatches it within 10 s",
                   run_id);
        return err;
    }
    /* Not fatal: without a sequence the sweep takes the dispatch for lost after 10 s and
     * sends another one, which the runners' claim makes harmless. */
    if (seq > 0 && sched_store_set_dispatch_seq(s, db, run_id, seq) != KX_OK)
        kx_log(KX_LOG_WARN, run_id, NULL, "scheduler: dispatch sequence of run %s not recorded",
               run_id);
    return KX_OK;
}
