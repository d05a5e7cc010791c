/* submit.c — the scheduler's subscription to kx.run.submit (docs/subjects.md).
 *
 * A core subscription in queue group "scheduler", so replicas share the submits. A submit is
 * only a nudge: the run row (state queued) is the truth, and admission runs after every
 * reaper tick (KX_REAPER_INTERVAL_MS, 1 s) whatever comes on the bus, so a submit lost
 * (no scheduler up, NATS restarted, a replica draining) delays its run by one tick at most.
 * That is why kx.run.submit is not stored in a JetStream stream any more: a stored submit
 * cost nats-server a file-store append, a delivery through the durable consumer, the
 * scheduler's ack and a work-queue deletion per run, for a durability Postgres already gives
 * (docs/performance.md, "nats-server per run").
 *
 * Messages arrive on a cnats thread and are posted to the loop. For each kx.v1.RunSubmit:
 *   valid               -> an admission pass (admit.c: dispatches this run if limits allow,
 *                          else it waits queued for a later pass)
 *   undecodable/invalid -> dropped + log
 *   draining            -> ignored (another replica's or the next scheduler's tick admits it)
 * One admission pass serves every submit that arrived while the previous pass ran (admit.c:
 * passes run on a database thread, one at a time): one pass per submit made a burst of N
 * submits cost N passes (tests/bench/bench_lease.c). */
#include <stdlib.h>
#include <string.h>

#include "kx/log.h"
#include "kx/metrics.h"
#include "kx/pb.h"
#include "kx/uuid.h"
#include "sched.h"

static void on_admitted(scheduler *s, kx_err err, void *arg);

/* Loop: one message on kx.run.submit. */
static void on_submit(natsMsg *msg, void *arg)
{
    scheduler *s = arg;
    if (atomic_load(&s->draining)) {
        kx_bus_msg_free(msg);
        return;
    }
    Kx__V1__RunSubmit *rs = kx_pb_unpack(&kx__v1__run_submit__descriptor, natsMsg_GetData(msg),
                                         (size_t)natsMsg_GetDataLength(msg));
    kx_bus_msg_free(msg);
    if (rs == NULL || !kx_uuid_valid(rs->run_id)) {
        kx_warn("scheduler: dropping a kx.run.submit message: %s",
                rs == NULL ? "not a valid kx.v1.RunSubmit" : "run_id is not a UUID");
        kx_pb_free(rs);
        return;
    }
    /* The row is the truth: admission dispatches this run now if its account, its thread and
     * fairness allow, else later (each reaper tick). Every submit made while a pass runs is
     * served by the next one (admit.c). */
    char *run_id = strdup(rs->run_id);
    kx_pb_free(rs);
    sched_admit(s, on_admitted, run_id); /* run_id NULL (no memory): only the log loses it */
}

/* Loop (or shutdown): the admission pass that served this submit ended with err. */
static void on_admitted(scheduler *s, kx_err err, void *arg)
{
    char *run_id = arg;
    if (!s->loop_over && !atomic_load(&s->draining)) {
        if (err != KX_OK)
            kx_log(KX_LOG_WARN, run_id, NULL,
                   "scheduler: run %s: admission failed (%s); the next reaper tick admits it",
                   run_id != NULL ? run_id : "?", kx_err_str(err));
        kx_counter_add(kx_metrics_counter("kx_scheduler_submits_total", "",
                                          "Valid kx.run.submit messages served"),
                       1);
    }
    free(run_id);
}

kx_err sched_submit_subscribe(scheduler *s)
{
    kx_err err = kx_bus_subscribe_loop(s->svc->bus, s->svc->loop, KX_SUBJ_RUN_SUBMIT,
                                       KX_CONSUMER_SCHEDULER, on_submit, s, &s->submit_sub);
    if (err != KX_OK) {
        kx_warn("scheduler: cannot subscribe to %s: %s", KX_SUBJ_RUN_SUBMIT, kx_err_str(err));
        s->submit_sub = NULL;
    }
    return err;
}
