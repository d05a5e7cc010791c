/* svc.c — the skeleton every service process shares: identity, logging, configuration common
 * to all services, the loop, signals, the NATS bus, the health responder on
 * kx.svc.health.<name>, the ops HTTP server, and the SIGTERM drain protocol:
 *   first SIGTERM/SIGINT -> draining = true, the service's drain callback runs (no callback:
 *   exit at once) and a timer (KX_DRAIN_TIMEOUT_MS) exits anyway; a second signal exits now.
 * main.c of a service calls kx_svc_init, registers its modules, kx_svc_run, kx_svc_close. */
#include "kx/svc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kx/config.h"
#include "kx/http.h"
#include "kx/log.h"
#include "kx/metrics.h"
#include "kx/pb.h"
#include "kx/signal.h"
#include "kx/time.h"
#include "kx/uuid.h"

#define BUS_CLOSE_TIMEOUT_MS 2000

/* Exit code of the kx_svc_run on this thread: callbacks that end the run (drain timeout,
 * second signal) run on the loop thread, which is the thread in kx_svc_run. */
static _Thread_local int tl_exit_code;

static void make_instance_id(kx_svc *svc)
{
    char host[64];
    if (gethostname(host, sizeof host) != 0 || host[0] == '\0')
        snprintf(host, sizeof host, "localhost");
    host[sizeof host - 1] = '\0';
    char *dot = strchr(host, '.'); /* the short name is enough */
    if (dot)
        *dot = '\0';
    char rnd[KX_UUID_LEN + 1]; /* 4 random hex digits tell restarts with the same pid apart */
    kx_uuid_new(rnd);
    /* the host name is cut so the whole id fits in instance_id (name and pid are short) */
    int fixed = snprintf(NULL, 0, "%s--%ld-%.4s", svc->name, (long)getpid(), rnd);
    int room = (int)sizeof svc->instance_id - 1 - fixed;
    if (room < 1)
        room = 1;
    snprintf(svc->instance_id, sizeof svc->instance_id, "%s-%.*s-%ld-%.4s", svc->name, room, host,
             (long)getpid(), rnd);
}

/* Readiness: the bus is connected and the service's own check (if any) passes.
 * Called from the ops server's threads and cnats' threads. */
static bool svc_ready(kx_svc *svc, char *why, size_t whylen)
{
    if (atomic_load(&svc->draining)) {
        snprintf(why, whylen, "draining");
        return false;
    }
    if (!atomic_load(&svc->ready_known)) {
        snprintf(why, whylen, "starting");
        return false;
    }
    if (!kx_bus_connected(svc->bus)) {
        snprintf(why, whylen, "nats: not connected");
        return false;
    }
    if (svc->ready_fn != NULL)
        return svc->ready_fn(svc, svc->ready_arg, why, whylen);
    return true;
}

static bool ops_ready(void *arg, char *why, size_t whylen)
{
    return svc_ready(arg, why, whylen);
}

/* kx.svc.health.<name>: answered on the cnats thread (quick, no loop round trip). */
static void on_health(natsMsg *msg, void *arg)
{
    kx_svc *svc = arg;
    char why[256] = "";
    Kx__V1__HealthReply reply = KX__V1__HEALTH_REPLY__INIT;
    reply.service = (char *)svc->name;
    reply.instance_id = svc->instance_id;
    reply.version = (char *)KX_VERSION;
    reply.uptime_ms = kx_mono_ms() - svc->started_mono_ms;
    reply.ready = svc_ready(svc, why, sizeof why);
    reply.detail = reply.ready ? (char *)"" : why;
    reply.notes = svc->notes;
    if (natsMsg_GetReply(msg) != NULL && natsMsg_GetReply(msg)[0] != '\0')
        kx_bus_respond_pb(svc->bus, msg, &reply.base);
    kx_bus_msg_free(msg);
}

void kx_svc_set_notes(kx_svc *svc, const char *notes)
{
    snprintf(svc->notes, sizeof svc->notes, "%s", notes ? notes : "");
}

static void on_drain_timeout(kx_loop *loop, void *arg)
{
    kx_svc *svc = arg;
    svc->drain_timer = NULL; /* the loop freed it */
    kx_warn("svc: drain did not finish within %lld ms; exiting anyway",
            (long long)svc->drain_timeout_ms);
    tl_exit_code = 1;
    kx_loop_stop(loop);
}

static void on_term(kx_loop *loop, int signo, void *arg)
{
    kx_svc *svc = arg;
    if (atomic_load(&svc->draining)) {
        kx_warn("svc: second %s while draining; exiting now", strsignal(signo));
        tl_exit_code = 1;
        kx_loop_stop(loop);
        return;
    }
    atomic_store(&svc->draining, true);
    kx_gauge_set(kx_metrics_gauge("kx_draining", "", "1 while the service drains"), 1);
    if (svc->drain_fn == NULL) {
        kx_info("svc: %s: nothing to drain; exiting", strsignal(signo));
        kx_loop_stop(loop);
        return;
    }
    kx_info("svc: %s: draining (at most %lld ms)", strsignal(signo),
            (long long)svc->drain_timeout_ms);
    svc->drain_timer = kx_loop_timer(loop, svc->drain_timeout_ms, on_drain_timeout, svc);
    if (svc->drain_timer == NULL) {
        kx_error("svc: could not arm the drain timer; exiting now");
        tl_exit_code = 1;
        kx_loop_stop(loop);
        return;
    }
    svc->drain_fn(svc, svc->drain_arg);
}

static kx_err read_config(kx_svc *svc, uint16_t default_health_port, const char **nats_url,
                          const char **bind_addr)
{
    kx_err err = KX_OK;
    *nats_url = kx_env_str("KX_NATS_URL", KX_DEFAULT_NATS_URL);
    *bind_addr = kx_env_str("KX_BIND_ADDR", "127.0.0.1");
    if (kx_env_port("KX_HEALTH_PORT", default_health_port, &svc->health_port) != KX_OK)
        err = KX_ERR_INVALID;
    if (kx_env_int("KX_DRAIN_TIMEOUT_MS", 10000, 0, 3600000, &svc->drain_timeout_ms) != KX_OK)
        err = KX_ERR_INVALID;
    int64_t ev_bytes = 0; /* read again where the streams are made; a bad value stops us here */
    if (kx_bus_events_max_bytes(&ev_bytes) != KX_OK)
        err = KX_ERR_INVALID;
    return err;
}

kx_err kx_svc_init(kx_svc *svc, const char *name, uint16_t default_health_port)
{
    memset(svc, 0, sizeof *svc);
    atomic_init(&svc->draining, false);
    svc->name = name;
    svc->started_mono_ms = kx_mono_ms();
    make_instance_id(svc);
    bool level_ok = kx_log_init(name, svc->instance_id);

    const char *nats_url = NULL, *bind_addr = NULL;
    kx_err err = read_config(svc, default_health_port, &nats_url, &bind_addr);
    if (!level_ok)
        err = KX_ERR_INVALID;
    if (err != KX_OK) {
        kx_error("svc: %s refuses to start: bad configuration (see above)", name);
        return err;
    }
    err = kx_http_global_init();
    if (err != KX_OK)
        return err;

    svc->loop = kx_loop_new();
    if (svc->loop == NULL)
        return KX_ERR_NOMEM;
    err = kx_signal_watch(svc->loop, on_term, svc);
    if (err == KX_OK)
        err = kx_bus_connect(nats_url, svc->instance_id, &svc->bus);
    if (err == KX_OK) {
        char subject[128];
        snprintf(subject, sizeof subject, "%s%s", KX_SUBJ_HEALTH_PREFIX, name);
        err = kx_bus_subscribe(svc->bus, subject, NULL, on_health, svc, &svc->health_sub);
    }
    if (err == KX_OK)
        err = kx_httpd_start(bind_addr, svc->health_port, ops_ready, svc, &svc->ops);
    if (err != KX_OK) {
        kx_error("svc: %s could not start: %s", name, kx_err_str(err));
        kx_svc_close(svc);
        return err;
    }
    char labels[160];
    snprintf(labels, sizeof labels, "service=\"%s\",version=\"%s\"", name, KX_VERSION);
    kx_gauge_set(kx_metrics_gauge("kx_service_info", labels, "Service name and version"), 1);
    kx_gauge_set(kx_metrics_gauge("kx_draining", "", "1 while the service drains"), 0);
    kx_info("svc: %s %s started (instance %s, ops on %s:%u, NATS %s)", name, KX_VERSION,
            svc->instance_id, bind_addr, (unsigned)kx_httpd_port(svc->ops), nats_url);
    return KX_OK;
}

void kx_svc_on_drain(kx_svc *svc, kx_svc_drain_fn fn, void *arg)
{
    svc->drain_fn = fn;
    svc->drain_arg = arg;
}

void kx_svc_on_ready(kx_svc *svc, kx_svc_ready_fn fn, void *arg)
{
    svc->ready_fn = fn;
    svc->ready_arg = arg;
    atomic_store(&svc->ready_known, true); /* after fn and arg: a reader that sees it sees them */
}

int kx_svc_run(kx_svc *svc)
{
    tl_exit_code = 0;
    kx_err err = kx_loop_run(svc->loop);
    if (svc->drain_timer != NULL) { /* drained in time: the timer has nothing left to do */
        kx_timer_cancel(svc->drain_timer);
        svc->drain_timer = NULL;
    }
    int code = err == KX_OK ? tl_exit_code : 1;
    kx_info("svc: %s stopping (exit code %d)", svc->name, code);
    return code;
}

void kx_svc_exit(kx_svc *svc)
{
    kx_loop_stop(svc->loop);
}

bool kx_svc_draining(const kx_svc *svc)
{
    return atomic_load(&svc->draining);
}

bool kx_svc_pause(kx_svc *svc, int64_t ms)
{
    int signo = 0;
    if (kx_signal_wait(ms, &signo)) {
        kx_info("svc: %s while starting; stopping", strsignal(signo));
        atomic_store(&svc->draining, true);
    }
    return atomic_load(&svc->draining);
}

void kx_svc_close(kx_svc *svc)
{
    kx_httpd_stop(svc->ops); /* first: its readiness callback reads the bus */
    svc->ops = NULL;
    bool clean = kx_bus_close(svc->bus, BUS_CLOSE_TIMEOUT_MS); /* also destroys health_sub */
    svc->bus = NULL;
    svc->health_sub = NULL;
    if (!clean) { /* a cnats callback may still post to the loop: leak it with the bus */
        kx_error("svc: leaking the loop too, the process is exiting anyway");
        svc->loop = NULL;
        svc->drain_timer = NULL;
        return;
    }
    kx_loop_free(svc->loop); /* frees the drain timer if still armed */
    svc->loop = NULL;
    svc->drain_timer = NULL;
}
