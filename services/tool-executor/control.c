/* control.c — STOP reaches the tools too. The executor subscribes to kx.run.ctl.> (no queue
 * group: a run's calls may be on any executor instance) and, when a run is stopped — by the
 * user through the gateway, or by the scheduler's reaper after its runner died — aborts every
 * call of that run it has in flight: the sandbox command's process group is killed
 * (kx.sandbox.kill) and the call is answered "cancelled". Without this a stopped run's command
 * would keep running until its own deadline, up to KX_SANDBOX_TOOL_TIMEOUT_S.
 * The STOP is also remembered (runs.h): the bus does not order kx.run.ctl against
 * kx.tool.exec, so a call of the run that arrives after its STOP is answered "cancelled" at
 * once. A STOP with lease_epoch E fences epochs <= E only (0 = every epoch). */
#include <string.h>

#include "executor.h"
#include "kx/log.h"
#include "kx/metrics.h"
#include "kx/pb.h"
#include "registry.h"
#include "runs.h"

static void on_control(natsMsg *msg, void *arg)
{
    te_executor *ex = arg;
    Kx__V1__RunControl *ctl = kx_pb_unpack(&kx__v1__run_control__descriptor, natsMsg_GetData(msg),
                                           (size_t)natsMsg_GetDataLength(msg));
    natsMsg_Destroy(msg);
    if (ctl == NULL) {
        kx_warn("tool-executor: ignoring a kx.run.ctl message that is not a kx.v1.RunControl");
        return;
    }
    if (ctl->signal != KX__V1__RUN_SIGNAL__RUN_SIGNAL_STOP || kx_pb_str_empty(ctl->run_id)) {
        kx_pb_free(ctl);
        return;
    }
    const char *reason = kx_pb_str_empty(ctl->reason) ? "STOP" : ctl->reason;
    te_runs_stop(ex->runs, ctl->run_id, ctl->lease_epoch, reason, kx_mono_ms());
    size_t aborted = 0;
    te_call *c = ex->calls;
    while (c != NULL) {
        te_call *next = c->next; /* aborting finishes (frees) c */
        if (c->call != NULL && c->tool != NULL && c->call->run_id != NULL &&
            strcmp(c->call->run_id, ctl->run_id) == 0 &&
            (ctl->lease_epoch == 0 || c->call->lease_epoch <= ctl->lease_epoch)) {
            te_outcome o;
            te_outcome_init(&o);
            te_outcome_error(&o, KX_ERR_CANCELLED, "the run was stopped: %s", reason);
            if (c->tool->abort != NULL)
                c->tool->abort(c, &o);
            else
                te_call_finish(c, &o);
            aborted++;
        }
        c = next;
    }
    if (aborted > 0) {
        kx_log(KX_LOG_INFO, ctl->run_id, NULL,
               "tool-executor: run %s stopped: %zu call(s) "
               "aborted and their commands killed",
               ctl->run_id, aborted);
        kx_counter_add(kx_metrics_counter("kx_tool_calls_cancelled_total", "",
                                          "Tool calls aborted because their run was stopped"),
                       aborted);
    }
    kx_pb_free(ctl);
}

kx_err te_control_start(te_executor *ex)
{
    kx_err err = kx_bus_subscribe_loop(ex->svc->bus, ex->svc->loop, KX_SUBJ_RUN_CTL_PREFIX ">",
                                       NULL, on_control, ex, &ex->ctl_sub);
    if (err != KX_OK)
        kx_error("tool-executor: cannot subscribe to %s>: %s", KX_SUBJ_RUN_CTL_PREFIX,
                 kx_err_str(err));
    return err;
}
