/* test_scheduler_plans.c — the generic plan of every statement of the scheduler
 * (services/scheduler/store.c) on an empty database and on one whose runs have all ended
 * (tests/harness/pgplans.h): a statement that finds a run by its id uses the primary key (it
 * walked every queued run on each dispatch before), admission reads its own indexes (not every
 * queued run), and only the sweeps walk the index they sweep. */
#include "pgplans.h"
#include "sched.h"

static const kx_th_plan_expect EXPECT[] = {
    {"sched_mark_dispatched", "agent_runs_pkey", NULL, NULL},
    {"sched_unmark_dispatched", "agent_runs_pkey", NULL, NULL},
    {"sched_set_dispatch_seq", "agent_runs_pkey", NULL, NULL},
    /* "= ANY($1)": on a never-analyzed table the generic plan is a sequential scan (no
     * partial index walked); the first ANALYZE of agent_runs replans it with the key */
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
