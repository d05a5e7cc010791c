/* run_nats.c — kx.run.start and kx.run.stop served by the gateway (see run_nats.h). */
#include "run_nats.h"

#include <ctype.h>
#include <jansson.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "kx/log.h"
#include "kx/time.h"
#include "kx/v1/run.pb-c.h"
#include "reply.h"
#include "run_ops.h"
#include "work.h"

#define RN_THREADS 2
#define RN_QUEUE_MAX 256

struct gw_run_nats {
    gw_app *app;
    pthread_mutex_t mu;
    gw_work *work; /* NULL once stopped */
    natsSubscription *start_sub, *stop_sub;
};

typedef struct rn_job {
    gw_run_nats *rn;
    natsMsg *msg;
    bool is_start;
} rn_job;

/* The error text and status of a refused gw_reply: the detail string, or its "message". */
static void reply_error(const gw_reply *r, char **text, char **detail_json)
{
    json_t *v = r->body ? json_loads(r->body, 0, NULL) : NULL;
    const json_t *d = json_object_get(v, "detail");
    const char *s = json_is_string(d) ? json_string_value(d)
                                      : json_string_value(json_object_get(d, "message"));
    *text = strdup(s ? s : "refused");
    *detail_json = r->body ? strdup(r->body) : NULL;
    json_decref(v);
}

/* The request's context from the headers: account (a UUID, lower-cased), traceparent. False
 * with status/why when the headers do not allow the request. */
static bool read_headers(natsMsg *msg, gw_request *req, unsigned *status, const char **why)
{
    kx_bus_meta meta;
    memset(req, 0, sizeof *req);
    if (kx_bus_meta_read(msg, &meta) != KX_OK) {
        *status = MHD_HTTP_BAD_REQUEST;
        *why = "Kx-Deadline must be unix milliseconds";
        return false;
    }
    if (!kx_uuid_valid(meta.account)) {
        *status = MHD_HTTP_UNAUTHORIZED;
        *why = "Kx-Account header is required (the account's UUID)";
        return false;
    }
    if (kx_deadline_expired(meta.deadline)) {
        *status = MHD_HTTP_GATEWAY_TIMEOUT;
        *why = "Kx-Deadline has passed: nothing was done";
        return false;
    }
    for (size_t i = 0; i < KX_UUID_LEN; i++)
        req->account[i] = (char)tolower((unsigned char)meta.account[i]);
    req->account[KX_UUID_LEN] = '\0';
    snprintf(req->traceparent, sizeof req->traceparent, "%s", meta.traceparent);
    return true;
}

/* Whether a request may be served: not while the gateway stops (503), not when its body did not
 * decode (400, undecoded says why), and then its headers (read_headers). Otherwise *status and
 * *why say why not. */
static bool admitted(natsMsg *msg, bool stopping, bool decoded, const char *undecoded,
                     gw_request *req, unsigned *status, const char **why)
{
    if (stopping) {
        *status = MHD_HTTP_SERVICE_UNAVAILABLE;
        *why = "Server is shutting down";
        return false;
    }
    if (!decoded) {
        *status = MHD_HTTP_BAD_REQUEST;
        *why = undecoded;
        return false;
    }
    return read_headers(msg, req, status, why);
}

/* "" -> NULL (protobuf's absent string). */
static const char *opt(const char *s)
{
    return s != NULL && s[0] != '\0' ? s : NULL;
}

static void serve_start(gw_run_nats *rn, natsMsg *msg, bool stopping)
{
    Kx__V1__RunStartReply out = KX__V1__RUN_START_REPLY__INIT;
    char thread_id[KX_UUID_LEN + 1] = "", run_id[KX_UUID_LEN + 1] = "";
    char *err_text = NULL, *detail_json = NULL;
    gw_reply reply = {0};
    gw_request req;
    unsigned status = MHD_HTTP_OK;
    const char *why = NULL;
    Kx__V1__RunStartRequest *in =
        kx__v1__run_start_request__unpack(NULL, (size_t)natsMsg_GetDataLength(msg),
                                          (const uint8_t *)natsMsg_GetData(msg));
    if (admitted(msg, stopping, in != NULL, "the request is not a RunStartRequest", &req, &status,
                 &why)) {
        gw_run_new n = {.thread_id = opt(in->thread_id), .prompt = opt(in->prompt)};
        n.opts.agent_id = opt(in->agent_id);
        n.opts.model_name = opt(in->model_name);
        n.opts.enable_thinking = in->enable_thinking;
        n.opts.reasoning_effort = opt(in->reasoning_effort) ? in->reasoning_effort : "low";
        const char *strategy = opt(in->multitask_strategy) ? in->multitask_strategy : "enqueue";
        if (strcmp(n.opts.reasoning_effort, "low") != 0 &&
            strcmp(n.opts.reasoning_effort, "medium") != 0 &&
            strcmp(n.opts.reasoning_effort, "high") != 0) {
            gw_reply_error(&reply, MHD_HTTP_BAD_REQUEST,
                           "reasoning_effort must be low, medium or high");
        } else if (strcmp(strategy, "enqueue") == 0 || strcmp(strategy, "reject") == 0 ||
                   strcmp(strategy, "interrupt") == 0) {
            n.strategy = strategy[0] == 'e' ? GW_MULTITASK_ENQUEUE
                : strategy[0] == 'r'        ? GW_MULTITASK_REJECT
                                            : GW_MULTITASK_INTERRUPT;
            if (n.thread_id != NULL && !kx_uuid_valid(n.thread_id))
                gw_reply_error(&reply, MHD_HTTP_NOT_FOUND, "Thread not found");
            else
                gw_run_create(rn->app, &req, &n, thread_id, run_id, &reply);
        } else {
            gw_reply_error(&reply, MHD_HTTP_BAD_REQUEST,
                           "multitask_strategy must be enqueue, reject or interrupt");
        }
        if (run_id[0] == '\0') {
            status = reply.status;
            reply_error(&reply, &err_text, &detail_json);
        }
    }
    out.status = (int32_t)status;
    out.error = err_text ? err_text : (char *)(why ? why : "");
    out.detail_json = detail_json ? detail_json : (char *)"";
    out.thread_id = run_id[0] ? thread_id : (char *)"";
    out.agent_run_id = run_id;
    kx_err e = kx_bus_respond_pb(rn->app->svc->bus, msg, (const ProtobufCMessage *)&out);
    if (e != KX_OK)
        kx_warn("gateway: reply on %s failed: %s", KX_SUBJ_RUN_START, kx_err_str(e));
    else if (run_id[0] != '\0')
        kx_info("gateway: run %s created over NATS (thread %s)", run_id, thread_id);
    free(err_text);
    free(detail_json);
    gw_reply_free(&reply);
    kx__v1__run_start_request__free_unpacked(in, NULL);
}

static void serve_stop(gw_run_nats *rn, natsMsg *msg, bool stopping)
{
    Kx__V1__RunStopReply out = KX__V1__RUN_STOP_REPLY__INIT;
    char run_status[16] = "";
    char *err_text = NULL, *detail_json = NULL;
    gw_reply reply = {0};
    gw_request req;
    unsigned status = MHD_HTTP_OK;
    const char *why = NULL;
    Kx__V1__RunStopRequest *in =
        kx__v1__run_stop_request__unpack(NULL, (size_t)natsMsg_GetDataLength(msg),
                                         (const uint8_t *)natsMsg_GetData(msg));
    if (admitted(msg, stopping, in != NULL, "the request is not a RunStopRequest", &req, &status,
                 &why) &&
        !gw_run_stop(rn->app, &req, in->run_id ? in->run_id : "", run_status, &reply)) {
        status = reply.status;
        reply_error(&reply, &err_text, &detail_json);
    }
    out.code = (int32_t)status;
    out.status = run_status;
    out.error = err_text ? err_text : (char *)(why ? why : "");
    kx_err e = kx_bus_respond_pb(rn->app->svc->bus, msg, (const ProtobufCMessage *)&out);
    if (e != KX_OK)
        kx_warn("gateway: reply on %s failed: %s", KX_SUBJ_RUN_STOP, kx_err_str(e));
    free(err_text);
    free(detail_json);
    gw_reply_free(&reply);
    kx__v1__run_stop_request__free_unpacked(in, NULL);
}

static void run_job(void *arg, bool stopping)
{
    rn_job *j = arg;
    if (j->is_start)
        serve_start(j->rn, j->msg, stopping);
    else
        serve_stop(j->rn, j->msg, stopping);
    natsMsg_Destroy(j->msg);
    free(j);
}

/* A cnats thread: queue the request, never wait. A request that cannot be queued (queue full,
 * or the gateway draining) is answered 503 at once, so its caller does not wait out its
 * deadline. */
static void on_request(natsMsg *msg, void *arg, bool is_start)
{
    gw_run_nats *rn = arg;
    rn_job *j = malloc(sizeof *j);
    bool queued = false;
    pthread_mutex_lock(&rn->mu);
    bool open = rn->work != NULL;
    if (j != NULL && open) {
        *j = (rn_job){.rn = rn, .msg = msg, .is_start = is_start};
        queued = gw_work_submit(rn->work, run_job, j);
    }
    pthread_mutex_unlock(&rn->mu);
    if (queued)
        return;
    free(j);
    const char *why =
        open ? "Server busy: too many run requests waiting" : "Server is shutting down";
    if (natsMsg_GetReply(msg) != NULL) {
        if (is_start) {
            Kx__V1__RunStartReply out = KX__V1__RUN_START_REPLY__INIT;
            out.status = MHD_HTTP_SERVICE_UNAVAILABLE;
            out.error = (char *)why;
            kx_bus_respond_pb(rn->app->svc->bus, msg, (const ProtobufCMessage *)&out);
        } else {
            Kx__V1__RunStopReply out = KX__V1__RUN_STOP_REPLY__INIT;
            out.code = MHD_HTTP_SERVICE_UNAVAILABLE;
            out.error = (char *)why;
            kx_bus_respond_pb(rn->app->svc->bus, msg, (const ProtobufCMessage *)&out);
        }
    }
    natsMsg_Destroy(msg);
}

static void on_start(natsMsg *msg, void *arg)
{
    on_request(msg, arg, true);
}

static void on_stop(natsMsg *msg, void *arg)
{
    on_request(msg, arg, false);
}

kx_err gw_run_nats_start(gw_app *app, gw_run_nats **out)
{
    gw_run_nats *rn = calloc(1, sizeof *rn);
    *out = rn;
    if (rn == NULL)
        return KX_ERR_NOMEM;
    rn->app = app;
    pthread_mutex_init(&rn->mu, NULL);
    rn->work = gw_work_new(RN_THREADS, RN_QUEUE_MAX);
    if (rn->work == NULL ||
        kx_bus_subscribe(app->svc->bus, KX_SUBJ_RUN_START, "gateway", on_start, rn,
                         &rn->start_sub) != KX_OK ||
        kx_bus_subscribe(app->svc->bus, KX_SUBJ_RUN_STOP, "gateway", on_stop, rn, &rn->stop_sub) !=
            KX_OK) {
        kx_error("gateway: cannot serve %s / %s", KX_SUBJ_RUN_START, KX_SUBJ_RUN_STOP);
        gw_run_nats_stop(rn); /* rn itself is freed by gw_run_nats_free, after the bus */
        return KX_ERR_INTERNAL;
    }
    kx_info("gateway: serving %s and %s", KX_SUBJ_RUN_START, KX_SUBJ_RUN_STOP);
    return KX_OK;
}

void gw_run_nats_stop(gw_run_nats *rn)
{
    if (rn == NULL)
        return;
    /* The subscriptions stay until the bus is closed (kx_bus_close destroys them; unsubscribing
     * here would leave them to nobody): from now on they answer 503 at once. */
    pthread_mutex_lock(&rn->mu);
    gw_work *w = rn->work;
    rn->work = NULL; /* later deliveries are dropped */
    pthread_mutex_unlock(&rn->mu);
    gw_work_free(w); /* queued requests are answered "shutting down" */
}

void gw_run_nats_free(gw_run_nats *rn)
{
    if (rn == NULL)
        return;
    gw_run_nats_stop(rn);
    pthread_mutex_destroy(&rn->mu);
    free(rn);
}
