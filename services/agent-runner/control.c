/* control.c — STOP handling for held runs (see control.h). */
#include "control.h"

#include <stdio.h>
#include <string.h>

#include "kx/log.h"
#include "kx/pb.h"
#include "run.h"

static void on_control(natsMsg *msg, void *arg)
{
    runner *r = arg;
    Kx__V1__RunControl *c = kx_pb_unpack(&kx__v1__run_control__descriptor, natsMsg_GetData(msg),
                                         (size_t)natsMsg_GetDataLength(msg));
    if (c == NULL) {
        kx_warn("control: ignoring a message on %s that is not a kx.v1.RunControl",
                natsMsg_GetSubject(msg));
        kx_bus_msg_free(msg);
        return;
    }
    /* the run id is in the message; the subject's last token says the same */
    const char *run_id = c->run_id;
    if (kx_pb_str_empty(run_id)) {
        const char *subj = natsMsg_GetSubject(msg);
        run_id = subj + strlen(KX_SUBJ_RUN_CTL_PREFIX);
    }
    run *x = runner_find(r, run_id);
    if (x == NULL) { /* not ours (another runner holds it, or it already ended) */
        kx_pb_free(c);
        kx_bus_msg_free(msg);
        return;
    }
    if (c->signal != KX__V1__RUN_SIGNAL__RUN_SIGNAL_STOP) {
        kx_log(KX_LOG_WARN, run_id, NULL, "control: unknown signal %d ignored", (int)c->signal);
    } else if (c->lease_epoch != 0 && c->lease_epoch < x->epoch) {
        /* a STOP for an earlier attempt of this run: the current one is not fenced by it */
        kx_log(KX_LOG_INFO, run_id, NULL, "control: STOP for epoch %lld ignored (we hold %lld)",
               (long long)c->lease_epoch, (long long)x->epoch);
    } else {
        run_stop(x, c->reason);
    }
    kx_pb_free(c);
    kx_bus_msg_free(msg);
}

kx_err control_subscribe(runner *r)
{
    natsSubscription *sub = NULL;
    kx_err err = kx_bus_subscribe_loop(r->bus, r->loop, KX_SUBJ_RUN_CTL_PREFIX ">", NULL,
                                       on_control, r, &sub);
    if (err != KX_OK)
        kx_error("control: could not subscribe to %s>: %s", KX_SUBJ_RUN_CTL_PREFIX,
                 kx_err_str(err));
    return err;
}
