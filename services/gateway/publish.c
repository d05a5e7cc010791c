/* publish.c — RunSubmit, RunControl STOP and the stop's terminal RunEvent (see publish.h).
 *
 * None of them waits for NATS: RunSubmit and STOP are core publishes (the submit lands in its
 * JetStream stream without an ack), the terminal event a JetStream publish whose ack, or
 * failure, is handled and logged by the bus in the background, so a slow or paused
 * nats-server never holds an HTTP thread here. Postgres is the truth either way: a queued run
 * whose submit is lost is dispatched by the scheduler's sweep, a stopped run's stream ends
 * from Postgres' status. */
#include "publish.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kx/log.h"
#include "kx/pb.h"
#include "kx/time.h"
#include "run_cache.h"

static void meta_for(const gw_app *app, const gw_request *req, kx_bus_meta *meta)
{
    kx_bus_meta_init(meta, kx_deadline_in(app->cfg.bus_timeout_ms), req->account);
    if (req->traceparent[0] != '\0')
        snprintf(meta->traceparent, sizeof meta->traceparent, "%s", req->traceparent);
}

kx_err gw_publish_submit(gw_app *app, const gw_request *req, const char *run_id,
                         const char *thread_id)
{
    Kx__V1__RunSubmit msg = KX__V1__RUN_SUBMIT__INIT;
    msg.run_id = (char *)run_id;
    msg.thread_id = (char *)thread_id;
    msg.account_id = (char *)req->account;
    msg.submitted_at_ms = kx_now_ms();

    kx_bus_meta meta;
    meta_for(app, req, &meta);
    char trace[33];
    kx_bus_trace_id(&meta, trace);
    if (!kx_bus_connected(app->svc->bus)) {
        /* Answer now rather than wait out the deadline: the sweep will find the run. */
        kx_log(KX_LOG_WARN, run_id, trace,
               "gateway: NATS not connected; RunSubmit skipped, the scheduler's sweep will "
               "dispatch the queued run");
        return KX_ERR_UNAVAILABLE;
    }
    /* A core publish, not stored and not acked (issue 12: a JetStream publish's ack cost this
     * gateway ~10 % of its CPU per run, and storing the submit cost nats-server 3x a core
     * message). A lost submit is what the scheduler's admission after each reaper tick
     * covers. */
    kx_err err = kx_bus_publish_pb(app->svc->bus, KX_SUBJ_RUN_SUBMIT,
                                   (const ProtobufCMessage *)&msg, &meta);
    if (err != KX_OK)
        kx_log(KX_LOG_WARN, run_id, trace,
               "gateway: RunSubmit on %s failed (%s); the run stays queued in Postgres and the "
               "scheduler's sweep will dispatch it",
               KX_SUBJ_RUN_SUBMIT, kx_err_str(err));
    else
        kx_log(KX_LOG_INFO, run_id, trace, "gateway: run submitted (thread %s)", thread_id);
    return err;
}

kx_err gw_publish_stop(gw_app *app, const gw_request *req, const char *run_id,
                       int64_t fenced_epoch)
{
    gw_run_cache_invalidate(app->run_cache, run_id); /* the row changed: no cached answer */
    kx_bus_meta meta;
    meta_for(app, req, &meta);
    char trace[33];
    kx_bus_trace_id(&meta, trace);
    char subject[128];

    /* Tell the runner holding the run to cancel its LLM transfer and tool calls now. */
    Kx__V1__RunControl ctl = KX__V1__RUN_CONTROL__INIT;
    ctl.run_id = (char *)run_id;
    ctl.signal = KX__V1__RUN_SIGNAL__RUN_SIGNAL_STOP;
    ctl.reason = (char *)"stopped by user";
    ctl.lease_epoch = fenced_epoch;
    snprintf(subject, sizeof subject, "%s%s", KX_SUBJ_RUN_CTL_PREFIX, run_id);
    kx_err err = kx_bus_publish_pb(app->svc->bus, subject, (const ProtobufCMessage *)&ctl, &meta);
    if (err != KX_OK)
        kx_log(KX_LOG_WARN, run_id, trace, "gateway: STOP on %s failed: %s", subject,
               kx_err_str(err));

    /* The terminal event: SSE streams print it and close. The gateway won the stop CAS, so it
     * is the one writer of this run's terminal event. */
    Kx__V1__RunEvent ev = KX__V1__RUN_EVENT__INIT;
    ev.run_id = (char *)run_id;
    ev.lease_epoch = 0;
    ev.seq = 0;
    ev.kind = KX__V1__RUN_EVENT_KIND__RUN_EVENT_KIND_STATUS;
    ev.terminal = true;
    ev.payload_json = (char *)GW_STOPPED_PAYLOAD;
    snprintf(subject, sizeof subject, "%s%s", KX_SUBJ_RUN_EV_PREFIX, run_id);
    kx_err err2 =
        kx_bus_js_publish_pb_async(app->svc->bus, subject, (const ProtobufCMessage *)&ev, &meta);
    if (err2 != KX_OK)
        kx_log(KX_LOG_WARN, run_id, trace, "gateway: terminal event on %s failed: %s", subject,
               kx_err_str(err2));
    else
        kx_log(KX_LOG_INFO, run_id, trace, "gateway: run stopped by user");
    return err != KX_OK ? err : err2;
}

/* After a delete committed: STOP and the terminal event of each run it stopped. */
void gw_publish_stops(gw_app *app, const gw_request *req, gw_stopped_run *stopped, size_t n)
{
    for (size_t i = 0; i < n; i++)
        gw_publish_stop(app, req, stopped[i].id, stopped[i].epoch > 0 ? stopped[i].epoch - 1 : 0);
    free(stopped);
}
