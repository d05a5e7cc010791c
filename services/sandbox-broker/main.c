/* main.c — the sandbox-broker, as a table of contents.
 *
 * It runs commands in a project's sandbox — a bubblewrap jail per project (user, PID, mount,
 * network namespaces, its own host uid, rlimits) whose init runs each command in a PID
 * namespace of its own, so that it can be killed whole — for the tool-executor, on
 * kx.sandbox.exec and kx.sandbox.kill, and gives its /workspace as files on kx.sandbox.files.
 * With KX_SANDBOX_PROVIDER=daytona the same subjects are answered by sandboxes of a Daytona API
 * instead (daytona.c). See README.md. */
#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "daytona.h"
#include "fleet.h"
#include "kx/log.h"
#include "kx/svc.h"
#include "provider.h"

int main(void)
{
    kx_svc svc;
    if (kx_svc_init(&svc, "sandbox-broker", 9104) != KX_OK)
        return 1; /* the reason is logged */

    static sb_broker broker; /* the service's one state object */
    memset(&broker, 0, sizeof broker);
    broker.svc = &svc;
    kx_svc_on_ready(&svc, sb_ready, &broker); /* handlers.c: ready once subscribed */
    sb_provider provider;
    if (sb_provider_load(&provider) != KX_OK) { /* provider.c: local or daytona */
        kx_svc_close(&svc);
        return 1;
    }
    if (provider == SB_PROVIDER_DAYTONA) {
        /* daytona.c: its own settings; kx.sandbox.* over a Daytona API, nothing jailed here */
        if (sb_daytona_start(&broker) != KX_OK) {
            kx_svc_close(&svc);
            return 1;
        }
        kx_svc_on_drain(&svc, sb_daytona_drain, &broker);
        int rc = kx_svc_run(&svc);
        kx_svc_close(&svc);
        return rc;
    }
    if (sb_config_load(&broker.cfg) != KX_OK) { /* broker_config.c */
        kx_svc_close(&svc);
        return 1;
    }
    kx_info("sandbox: workspaces under %s, %lld bytes of output kept per stream", broker.cfg.root,
            (long long)broker.cfg.max_output);

    if (sb_isolation_check(&broker) != KX_OK) { /* broker_config.c: bwrap, or refuse */
        kx_svc_close(&svc);
        return 1;
    }
    if (sb_fleet_init(&broker) != KX_OK) { /* fleet.c: this broker's id and lease */
        kx_svc_close(&svc);
        return 1;
    }
    /* handlers.c -> exec.c -> sandbox.c; sessions.c, files.c, lifecycle.c (adopts what was left
     * running), preview.c, fleet.c (kx.sandbox.<id>.>, the beat: takeover) */
    if (sb_handlers_start(&broker) != KX_OK) {
        sb_files_stop(&broker);
        kx_svc_close(&svc);
        return 1;
    }
    if (sb_sandbox_sweep_start(&broker) != KX_OK) { /* sandbox.c: auto-stop of idle ones */
        sb_files_stop(&broker);
        kx_svc_close(&svc);
        return 1;
    }
    kx_svc_on_drain(&svc, sb_drain, &broker); /* drain.c */

    int rc = kx_svc_run(&svc);
    sb_files_stop(&broker); /* files.c: the file workers answer what waits, then end */
    kx_svc_close(&svc);
    return rc;
}
