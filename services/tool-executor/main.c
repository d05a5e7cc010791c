/* main.c — the tool-executor, as a table of contents.
 *
 * It serves kx.tool.exec: looks the tool up (registry.c), validates its arguments
 * (tool_args.c), gives it a deadline that ends before the caller's (deadline.c), runs it —
 * execute_command through the sandbox-broker (tool_execute_command.c) — and always answers
 * with a kx.v1.ToolResult in time (call.c, outcome.c). A STOP of a run aborts its calls and
 * kills their commands (control.c). The web tools call their HTTP APIs on the loop through a
 * curl multi (tools_web.c); expose_port and see_image go to the broker (tools_expose.c,
 * tools_vision.c). See README.md. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "executor.h"
#include "kx/curlm.h"
#include "kx/log.h"
#include "kx/svc.h"
#include "db_call.h"
#include "kx/db_worker.h"
#include "registry.h"
#include "result_cap.h"
#include "runs.h"

static bool te_ready(kx_svc *svc, void *arg, char *why, size_t whylen)
{
    (void)svc;
    te_executor *ex = arg;
    if (atomic_load(&ex->subscribed))
        return true;
    snprintf(why, whylen, "not subscribed yet");
    return false;
}

int main(void)
{
    kx_svc svc;
    if (kx_svc_init(&svc, "tool-executor", 9103) != KX_OK)
        return 1; /* the reason is logged */

    static te_executor ex; /* the service's one state object */
    memset(&ex, 0, sizeof ex);
    ex.svc = &svc;
    kx_svc_on_ready(&svc, te_ready, &ex);   /* not ready until subscribed (below) */
    if (te_config_load(&ex.cfg) != KX_OK) { /* te_config.c */
        kx_svc_close(&svc);
        return 1;
    }
    ex.runs = te_runs_new((size_t)ex.cfg.stop_memory_runs, ex.cfg.stop_memory_s * 1000);
    ex.breakers = te_breakers_new((int)ex.cfg.breaker_failures, ex.cfg.breaker_open_ms);
    const char *db_url = getenv("KX_DATABASE_URL"); /* the task list, expand_message */
    if (db_url != NULL && db_url[0] != '\0' &&
        kx_db_worker_new(db_url, te_db_stmts, svc.loop, 1024, &ex.db) != KX_OK)
        kx_warn("tool-executor: no database thread: task list tools will answer unavailable");
    int64_t max_payload = natsConnection_GetMaxPayload(kx_bus_conn(svc.bus));
    ex.result_budget =
        te_result_budget(/* result_cap.c: every result fits the bus */
                         max_payload > 0 ? (size_t)max_payload : (size_t)1024 * 1024);
    te_web_config_load(); /* tools_web.c: the web APIs' keys (no key: the tool is not offered) */
    if (te_registry_init() != KX_OK ||                /* registry.c: schemas */
        kx_curlm_new(svc.loop, &ex.curlm) != KX_OK || /* HTTP of the web tools, on the loop */
        ex.runs == NULL || ex.breakers == NULL ||     /* runs.c, breakers.c */
        kx_bus_async_new(svc.bus, svc.loop, &ex.async) != KX_OK || /* replies on the loop */
        te_calls_start(&ex) != KX_OK ||   /* call.c -> registry.c -> tools */
        te_control_start(&ex) != KX_OK || /* control.c: STOP kills a run's tools */
        te_schemas_start(&ex) != KX_OK) { /* schemas.c: kx.tool.schemas */
        kx_bus_async_free(ex.async);
        kx_curlm_free(ex.curlm);
        te_runs_free(ex.runs);
        te_breakers_free(ex.breakers);
        kx_db_worker_free(ex.db);
        te_registry_free();
        kx_svc_close(&svc);
        return 1;
    }
    kx_svc_on_drain(&svc, te_drain, &ex);     /* call.c */
    if (kx_bus_flush(svc.bus, 5000) != KX_OK) /* the server knows the subscriptions ... */
        kx_warn("tool-executor: NATS did not confirm the subscriptions in 5 s; ready anyway");
    atomic_store(&ex.subscribed, true); /* ... so /readyz: only now are STOPs and calls heard */
    kx_info("tool-executor: sandbox tools limited to %lld s, other tools to %lld s",
            (long long)ex.cfg.sandbox_tool_timeout_s, (long long)ex.cfg.tool_timeout_s);

    int rc = kx_svc_run(&svc);
    kx_bus_async_free(ex.async); /* pending requests: no callbacks */
    kx_curlm_free(ex.curlm);     /* transfers still added: removed, no callbacks */
    te_kills_free(&ex);          /* ... so free what they held */
    te_schemas_free();           /* schemas.c: requests waiting for the mcp-proxy */
    kx_db_worker_free(ex.db);    /* jobs still queued are failed (their calls were answered) */
    te_runs_free(ex.runs);
    te_breakers_free(ex.breakers);
    te_registry_free();
    kx_svc_close(&svc);
    return rc;
}
