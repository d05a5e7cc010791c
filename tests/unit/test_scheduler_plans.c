/* test_scheduler_plans.c — the generic plan of every statement of the scheduler
 * (services/scheduler/store.c) on an empty database and on one whose runs have all ended
 * (tests/harness/pgplans.h): a statement that finds a run by its id uses the primary key (it
 * walked every queued run on each dispatch before), admission reads its own indexes (not every
 * queued run), only the sweeps walk the index they sweep, and none reads agent_runs whole
 * (admission's update, the reaper's and set_dispatch_seqs did on a never-analyzed table). */
#include "pgplans.h"
#include "sched.h"

static const kx_th_plan_expect EXPECT[] = {
    {"sched_mark_dispatched", "agent_runs_pkey", NULL, NULL},
    {"sched_unmark_dispatched", "agent_runs_pkey", NULL, NULL},
    {"sched_set_dispatch_seq", "agent_runs_pkey", NULL, NULL},
    /* each run probed by the row version admission returned (a TID scan, no index); joined
     * by id ("= ANY($1)") the generic plan made on a never-analyzed agent_runs was a
     * sequential scan of it, kept until the first ANALYZE: every admission pass read every
     * run (pgplans.c now fails a statement that reads agent_runs or messages whole) */
    {"sched_set_dispatch_seqs", NULL, NULL, NULL},
    {"sched_unmark_many", NULL, NULL, NULL},
    {"sched_sweep_seen", "agent_runs_pkey", NULL, NULL},
    {"sched_notice_done", "agent_runs_pkey", NULL, NULL},
    /* the reaper sweeps the running runs (either index holds them), then updates by key */
    {"sched_reap", NULL, "agent_runs_lease_expiry_idx,agent_runs_active_idx", NULL},
    {"sched_notices", NULL, "agent_runs_notice_idx", NULL},
    /* one probe per account with waiting runs: the skip scan's first step reads the index */
    {"sched_admit", "agent_runs_waiting_idx", "agent_runs_waiting_idx", NULL},
    {"sched_sweep", NULL, "agent_runs_redispatch_idx", NULL},
    {"sched_cleanup", NULL, NULL, NULL},
    {NULL, NULL, NULL, NULL},
};

int main(void)
{
    return kx_th_plans_test("kx-sched-plans", sched_statements, EXPECT);
}
