/* sandbox_state.c — records the sandbox-broker's state events (kx.sandbox.state, SandboxInfo)
 * on projects.sandbox (see sandbox_routes.h). One gateway of a fleet records each event (queue
 * group); the database write runs on cnats' delivery thread for this subscription, never on the
 * loop, and is bounded by the pool's wait and the statement timeout. */
#include "kx/bus.h"
#include "kx/log.h"
#include "kx/pb.h"
#include "sandbox_routes.h"

static void on_state(natsMsg *msg, void *arg)
{
    gw_app *app = arg;
    Kx__V1__SandboxInfo *info =
        kx_pb_unpack(&kx__v1__sandbox_info__descriptor, natsMsg_GetData(msg),
                     (size_t)natsMsg_GetDataLength(msg));
    if (info == NULL)
        kx_warn("gateway: a kx.sandbox.state message that is not a SandboxInfo was dropped");
    else
        (void)gw_sandbox_record(app, info); /* logs its own failure */
    kx_pb_free(info);
    natsMsg_Destroy(msg);
}

static natsSubscription *g_sub; /* main thread: made at start, drained before the pool goes */
static kx_bus *g_bus;           /* the bus g_sub is on */

kx_err gw_sandbox_state_start(gw_app *app)
{
    g_bus = app->svc->bus;
    kx_err err = kx_bus_subscribe(g_bus, KX_SUBJ_SANDBOX_STATE, "gateway-sandbox-state", on_state,
                                  app, &g_sub);
    if (err != KX_OK)
        kx_error("gateway: cannot subscribe to %s: %s", KX_SUBJ_SANDBOX_STATE, kx_err_str(err));
    return err;
}

void gw_sandbox_state_stop(void)
{
    if (g_sub == NULL)
        return;
    /* A drain lets the events already delivered here be recorded; it needs the server (the
     * UNSUB and its PONG), so with NATS gone it would only wait out its 5 s and delay the exit:
     * skipped then, and the events still queued in this process are dropped (kx.sandbox.state
     * is a core subject: what NATS could not deliver is lost either way). */
    if (kx_bus_connected(g_bus) && natsSubscription_Drain(g_sub) == NATS_OK)
        (void)natsSubscription_WaitForDrainCompletion(g_sub, 5000);
    natsSubscription_Destroy(g_sub);
    g_sub = NULL;
}
