/* control.h — kx.run.ctl.<run_id> (kx.v1.RunControl) onto the loop. STOP for a run this
 * instance holds cancels its LLM transfer (kx_curlm_remove) and its tool request
 * (kx_bus_async_cancel) at once and lets the run go without further writes or events: whoever
 * sent STOP has already fenced the run (epoch + 1) and published its terminal event. */
#ifndef RUNNER_CONTROL_H
#define RUNNER_CONTROL_H

#include "kx/err.h"
#include "runner.h"

/* Subscribes to kx.run.ctl.> (no queue group: every runner checks). The subscription belongs
 * to the bus (freed by kx_bus_close). */
kx_err control_subscribe(runner *r);

#endif
