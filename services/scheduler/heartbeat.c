/* heartbeat.c — kx.run.hb (core NATS, queue group "scheduler" so that one replica handles
 * each heartbeat): every kx.v1.RunnerHeartbeat extends, in ONE UPDATE, the lease of each run
 * it lists whose epoch still matches and which is still running, by KX_LEASE_TTL_MS.
 * A run that was stopped or reaped meanwhile has another epoch or status and is left alone:
 * its runner finds out at its next fenced write. */
#include <stdlib.h>

#include "hb_arrays.h"
#include "kx/log.h"
#include "kx/metrics.h"
#include "kx/pb.h"
#include "sched.h"

static void on_heartbeat(natsMsg *msg, void *arg)
{
    scheduler *s = arg;
    Kx__V1__RunnerHeartbeat *hb = kx_pb_unpack(&kx__v1__runner_heartbeat__descriptor,
                                               natsMsg_GetData(msg),
                                               (size_t)natsMsg_GetDataLength(msg));
    natsMsg_Destroy(msg);
    if (hb == NULL) {
        kx_warn("scheduler: ignoring a kx.run.hb message that is not a kx.v1.RunnerHeartbeat");
        return;
    }
    char *ids = NULL, *epochs = NULL;
    size_t n = 0, skipped = 0;
    kx_err err = sched_hb_arrays(hb, &ids, &epochs, &n, &skipped);
    if (err != KX_OK) {
        kx_error("scheduler: out of memory reading a heartbeat of runner %s", hb->runner_id);
        kx_pb_free(hb);
        return;
    }
    if (skipped > 0)
        kx_warn("scheduler: heartbeat of runner %s: %zu entr%s with an invalid run id or epoch "
                "ignored", hb->runner_id, skipped, skipped == 1 ? "y" : "ies");
    if (n > 0 && !s->draining && atomic_load(&s->migrated)) {
        long rows = 0;
        err = sched_store_extend_leases(s, ids, epochs, &rows);
        if (err == KX_OK) {
            kx_counter_add(kx_metrics_counter("kx_scheduler_leases_extended_total", "",
                                              "Run leases extended by heartbeats"),
                           (uint64_t)rows);
            kx_debug("scheduler: heartbeat of runner %s: %ld of %zu lease(s) extended",
                     hb->runner_id, rows, n);
        } else {
            /* Nothing to retry: the next heartbeat comes within a second. */
            kx_warn("scheduler: heartbeat of runner %s not applied: %s", hb->runner_id,
                    kx_err_str(err));
        }
    }
    free(ids);
    free(epochs);
    kx_pb_free(hb);
}

kx_err sched_heartbeat_subscribe(scheduler *s)
{
    kx_err err = kx_bus_subscribe_loop(s->svc->bus, s->svc->loop, KX_SUBJ_RUN_HB,
                                       KX_CONSUMER_SCHEDULER, on_heartbeat, s, &s->hb_sub);
    if (err != KX_OK)
        kx_error("scheduler: cannot subscribe to %s: %s", KX_SUBJ_RUN_HB, kx_err_str(err));
    return err;
}
