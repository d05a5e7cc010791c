/* submit.c — the scheduler's consumer of kx.run.submit (docs/subjects.md).
 *
 * The durable push consumer "scheduler" on stream KX_RUN_SUBMIT delivers to queue group
 * "scheduler", so replicas share the work. It is created explicitly (js_AddConsumer) and then
 * bound to: a consumer that the subscribe call created itself would be deleted by cnats on
 * unsubscribe, which would pull it away from under the other replicas at every restart.
 *
 * Messages arrive on a cnats thread and are posted to the loop. For each kx.v1.RunSubmit:
 *   valid               -> an admission pass (admit.c: dispatches this run if limits allow,
 *                          else it waits queued for a later pass), ack
 *   undecodable/invalid -> term (never redelivered) + log
 *   Postgres or JetStream unreachable -> nak with a delay (retried later)
 *   draining            -> nak at once (another replica takes it)
 * One admission pass serves every submit that arrived while the previous pass ran (admit.c:
 * passes run on a database thread, one at a time), and settles them all with its outcome: one
 * pass per submit made a burst of N submits cost N passes (tests/bench/bench_lease.c). */
#include <stdlib.h>
#include <string.h>

#include "kx/log.h"
#include "kx/metrics.h"
#include "kx/pb.h"
#include "kx/uuid.h"
#include "sched.h"

#define SUBMIT_DELIVER_SUBJECT "kx.sched.submit.deliver"
#define SUBMIT_ACK_WAIT_S 30
#define RETRY_DELAY_MS 1000

static void handle_submit(kx_loop *loop, void *arg);
static void on_admitted(scheduler *s, kx_err err, void *arg);

/* A valid submit waiting for the admission pass that serves it. */
typedef struct waiting_submit {
    natsMsg *msg;
    char run_id[40];
} waiting_submit;

typedef struct submit_task {
    scheduler *s;
    natsMsg *msg;
} submit_task;

/* A submit the loop never ran (it shut down first): not acked, so the stream redelivers it. */
static void drop_submit(void *arg)
{
    submit_task *t = arg;
    natsMsg_Destroy(t->msg);
    free(t);
}

/* cnats thread: hand the message to the loop. */
static void on_submit_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *arg)
{
    scheduler *s = arg;
    submit_task *t = malloc(sizeof *t);
    if (t != NULL) {
        t->s = s;
        t->msg = msg;
    }
    if (t == NULL || kx_loop_post_owned(s->svc->loop, handle_submit, t, drop_submit) != KX_OK) {
        kx_error("scheduler: out of memory handing a submit to the loop; it will be redelivered");
        natsMsg_Nak(msg, NULL);
        natsMsg_Destroy(msg);
        free(t);
    }
}

static void settle(natsMsg *msg, const char *what, natsStatus st)
{
    if (st != NATS_OK)
        kx_warn("scheduler: could not %s a submit message: %s", what, natsStatus_GetText(st));
}

static void handle_submit(kx_loop *loop, void *arg)
{
    (void)loop;
    submit_task *t = arg;
    scheduler *s = t->s;
    natsMsg *msg = t->msg;
    free(t);

    if (atomic_load(&s->draining)) {
        settle(msg, "nak", natsMsg_Nak(msg, NULL));
        natsMsg_Destroy(msg);
        return;
    }
    Kx__V1__RunSubmit *rs = kx_pb_unpack(&kx__v1__run_submit__descriptor, natsMsg_GetData(msg),
                                         (size_t)natsMsg_GetDataLength(msg));
    if (rs == NULL || !kx_uuid_valid(rs->run_id)) {
        kx_warn("scheduler: dropping a kx.run.submit message: %s",
                rs == NULL ? "not a valid kx.v1.RunSubmit" : "run_id is not a UUID");
        settle(msg, "term", natsMsg_Term(msg, NULL));
        natsMsg_Destroy(msg);
        kx_pb_free(rs);
        return;
    }

    /* The row is the truth: admission dispatches this run now if its account, its thread and
     * fairness allow, else later (each reaper tick); either way the submit is done. Every
     * submit made while a pass runs is served by the next one (admit.c). */
    waiting_submit *w = malloc(sizeof *w);
    if (w == NULL) {
        kx_error("scheduler: out of memory queueing a submit; it will be redelivered");
        settle(msg, "nak", natsMsg_NakWithDelay(msg, RETRY_DELAY_MS, NULL));
        natsMsg_Destroy(msg);
        kx_pb_free(rs);
        return;
    }
    w->msg = msg;
    snprintf(w->run_id, sizeof w->run_id, "%s", rs->run_id);
    kx_pb_free(rs);
    sched_admit(s, on_admitted, w);
}

/* Settles one submit with the outcome of the admission pass that served it. */
static void settle_submit(natsMsg *msg, const char *run_id, kx_err err)
{
    if (err == KX_OK) {
        settle(msg, "ack", natsMsg_Ack(msg, NULL));
    } else if (err == KX_ERR_UNAVAILABLE || err == KX_ERR_TIMEOUT) {
        kx_log(KX_LOG_WARN, run_id, NULL, "scheduler: run %s: %s; submit retried in %d ms", run_id,
               kx_err_str(err), RETRY_DELAY_MS);
        settle(msg, "nak", natsMsg_NakWithDelay(msg, RETRY_DELAY_MS, NULL));
    } else if (err == KX_ERR_INVALID) {
        kx_log(KX_LOG_WARN, run_id, NULL,
               "scheduler: run %s: refused by the database (%s); "
               "submit dropped",
               run_id, kx_err_str(err));
        settle(msg, "term", natsMsg_Term(msg, NULL));
    } else {
        settle(msg, "nak", natsMsg_NakWithDelay(msg, 5 * RETRY_DELAY_MS, NULL));
    }
    natsMsg_Destroy(msg);
}

/* Loop (or shutdown): the admission pass that served this submit ended with err. */
static void on_admitted(scheduler *s, kx_err err, void *arg)
{
    waiting_submit *w = arg;
    if (s->loop_over || atomic_load(&s->draining)) { /* another replica takes it */
        natsMsg_Nak(w->msg, NULL);
        natsMsg_Destroy(w->msg);
    } else {
        settle_submit(w->msg, w->run_id, err);
        kx_counter_add(kx_metrics_counter("kx_scheduler_submits_total", "",
                                          "Valid kx.run.submit messages settled"),
                       1);
    }
    free(w);
}

/* Creates the durable consumer if it is missing (a replica may have just created it). */
static kx_err ensure_consumer(scheduler *s)
{
    jsConsumerConfig cc;
    jsConsumerConfig_Init(&cc);
    cc.Durable = KX_CONSUMER_SCHEDULER;
    cc.DeliverSubject = SUBMIT_DELIVER_SUBJECT;
    cc.DeliverGroup = KX_CONSUMER_SCHEDULER;
    cc.AckPolicy = js_AckExplicit;
    cc.AckWait = (int64_t)SUBMIT_ACK_WAIT_S * 1000000000;
    cc.FilterSubject = KX_SUBJ_RUN_SUBMIT;
    cc.MaxAckPending = 1000;
    return kx_bus_ensure_consumer(s->svc->bus, KX_STREAM_SUBMIT, &cc);
}

kx_err sched_submit_subscribe(scheduler *s)
{
    kx_err err = ensure_consumer(s);
    if (err != KX_OK)
        return err;
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = KX_STREAM_SUBMIT;
    so.Consumer = KX_CONSUMER_SCHEDULER;
    so.Queue = KX_CONSUMER_SCHEDULER;
    so.ManualAck = true;
    jsErrCode jerr = 0;
    natsStatus st = js_Subscribe(&s->submit_sub, kx_bus_js(s->svc->bus), KX_SUBJ_RUN_SUBMIT,
                                 on_submit_msg, s, NULL, &so, &jerr);
    if (st != NATS_OK) {
        kx_warn("scheduler: cannot bind to consumer %s: %s (JetStream error %d)",
                KX_CONSUMER_SCHEDULER, natsStatus_GetText(st), (int)jerr);
        s->submit_sub = NULL;
        return KX_ERR_UNAVAILABLE;
    }
    return KX_OK;
}
