/* drain.c — SIGTERM for the sandbox-broker: stop taking requests, kill every running
 * command's namespace (background sessions included), end every sandbox, tell every waiting caller
 * "broker shutting down" (error unavailable), wait for the killed processes to be reaped
 * (at most DRAIN_REAP_MS), then exit. */
#include "broker.h"
#include "exec.h"
#include "fleet.h"
#include "sandbox.h"
#include "kx/log.h"

#define DRAIN_REAP_MS 1000

static void on_drain_timeout(kx_loop *loop, void *arg)
{
    sb_broker *b = arg;
    b->drain_timer = NULL;
    kx_warn("sandbox: %zu killed command(s) not reaped after %d ms; exiting anyway", b->nexecs,
            DRAIN_REAP_MS);
    kx_svc_exit(b->svc);
}

void sb_drain_check(sb_broker *b)
{
    if (!b->draining || b->nexecs > 0)
        return;
    kx_timer_cancel(b->drain_timer);
    b->drain_timer = NULL;
    kx_info("sandbox: drained");
    kx_svc_exit(b->svc);
}

void sb_drain(kx_svc *svc, void *arg)
{
    sb_broker *b = arg;
    if (b->draining) { /* second signal: exit now */
        kx_svc_exit(svc);
        return;
    }
    b->draining = true;
    sb_files_drain(b);
    kx_timer_cancel(b->idle_timer);
    b->idle_timer = NULL;
    kx_info("sandbox: draining: %zu command(s) running", b->nexecs);
    natsSubscription **subs[] = {&b->exec_sub,        &b->kill_sub,        &b->session_subs[0],
                                 &b->session_subs[1], &b->session_subs[2], &b->files_sub};
    for (size_t i = 0; i < sizeof subs / sizeof subs[0]; i++) {
        if (*subs[i] != NULL) {
            natsSubscription_Unsubscribe(*subs[i]);
            natsSubscription_Destroy(*subs[i]);
            *subs[i] = NULL;
        }
    }

    sb_exec *e = b->execs;
    while (e != NULL) {
        sb_exec *next = sb_exec_next(e);
        sb_exec_abort(e, "broker shutting down"); /* may free e */
        e = next;
    }
    sb_sandbox_stop_all(b); /* every sandbox's namespace dies; their execs end */
    sb_fleet_stop(b);       /* fleet.c: their records say stopped: the lease can go */
    if (b->nexecs == 0) {
        sb_drain_check(b);
        return;
    }
    b->drain_timer = kx_loop_timer(svc->loop, DRAIN_REAP_MS, on_drain_timeout, b);
    if (b->drain_timer == NULL)
        kx_svc_exit(svc);
}
