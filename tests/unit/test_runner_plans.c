/* test_runner_plans.c — the generic plan of every agent-runner statement (services/
 * agent-runner/store.c) on an empty database and on one whose runs have all ended
 * (tests/harness/pgplans.h): none walks a whole partial index, and each statement finds the
 * run row by its primary key. Before the fix of issue 12 (status IS NOT DISTINCT FROM '...')
 * the claim walked agent_runs_queued_idx and the fenced insert, finish and hand-back walked
 * agent_runs_lease_expiry_idx on the empty database. No statement reads agent_runs or messages
 * whole either. */
#include "pgplans.h"
#include "store.h"

static const kx_th_plan_expect EXPECT[] = {
    {"runner_claim", "agent_runs_pkey", NULL, NULL},
    {"runner_insert_messages", "agent_runs_pkey", NULL, NULL},
    {"runner_insert_messages_usage", "agent_runs_pkey", NULL, NULL},
    {"runner_finish", "agent_runs_pkey", NULL, NULL},
    {"runner_finish_answered", "agent_runs_pkey", NULL, NULL},
    {"runner_handback", "agent_runs_pkey", NULL, NULL},
    {"runner_agent", "agent_runs_pkey", NULL, NULL},
    /* its NOT EXISTS reads the project's other runs by agent_runs_project_created_idx
     * (migration 012); before it, no index led with project_id and both states read every run */
    {"runner_project_first_run", "agent_runs_pkey", NULL, NULL},
    {"runner_first_user_message", "agent_runs_pkey", NULL, NULL},
    {NULL, NULL, NULL, NULL},
};

int main(void)
{
    return kx_th_plans_test("kx-runner-plans", store_statements(), EXPECT);
}
