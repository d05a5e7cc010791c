/* dispatch.c — publishing kx.v1.RunDispatch on kx.run.dispatch (JetStream work queue
 * KX_RUN_DISPATCH), for the submit consumer and the sweep.
 *
 * The dispatch carries the run's wall deadline both in its body (wall_deadline_ms) and as its
 * Kx-Deadline header: that is the deadline of the work it hands out. kx_bus_js_publish_pb
 * bounds the wait for the stream's ack by KX_BUS_TIMEOUT_MS, so a JetStream that does not
 * answer holds the scheduler's loop for at most that long. */
#include <stdlib.h>
#include <string.h>

#include "kx/log.h"
#include "kx/metrics.h"
#include "kx/pb.h"
#include "sched.h"

kx_err sched_dispatch(scheduler *s, const sched_run_row *row)
{
    kx_deadline wall = kx_deadline_in(s->cfg.wall_time_s * 1000);
    Kx__V1__RunDispatch d = KX__V1__RUN_DISPATCH__INIT;
    d.run_id = (char *)row->run_id;
    d.thread_id = (char *)row->thread_id;
    d.account_id = (char *)row->account_id;
    d.project_id = (char *)row->project_id;
    d.attempt = row->attempt + 1;
    d.wall_deadline_ms = wall;
    kx_bus_meta meta;
    kx_bus_meta_init(&meta, wall, row->account_id);
    kx_err err = kx_bus_js_publish_pb(s->svc->bus, KX_SUBJ_RUN_DISPATCH, &d.base, &meta);
    if (err != KX_OK) {
        kx_log(KX_LOG_WARN, row->run_id, NULL, "scheduler: could not dispatch run %s: %s",
               row->run_id, kx_err_str(err));
        return err;
    }
    kx_counter_add(kx_metrics_counter("kx_scheduler_runs_dispatched_total", "",
                                      "RunDispatch messages published"), 1);
    kx_log(KX_LOG_INFO, row->run_id, NULL, "scheduler: dispatched run %s (attempt %d)",
           row->run_id, d.attempt);
    return KX_OK;
}
