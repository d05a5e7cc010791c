/* test_gateway_plans.c — the generic plan of every gateway statement (services/gateway/
 * store.c and the tables it includes) on an empty database and on one whose runs have all
 * ended (tests/harness/pgplans.h): none walks a whole partial index, and the statements fixed
 * for that take the index meant for them. Each of the fixed ones took a partial index whose
 * predicate it repeated (status IN ('queued', 'running'), deleted_at IS NULL) before the fix:
 * gw_run_stop, for one, walked every queued and running run of the system to stop one. */
#include "pgplans.h"
#include "store.h"

static const kx_th_plan_expect EXPECT[] = {
    {"gw_run_stop", "agent_runs_pkey", NULL, NULL},
    {"gw_thread_active", "agent_runs_thread_id_idx", NULL, NULL},
    {"gw_thread_interrupt", "agent_runs_thread_id_idx", NULL, NULL},
    {"gw_thread_stop_runs", "agent_runs_thread_id_idx", NULL, NULL},
    /* Deleting a project: both read agent_runs / messages whole in a generic plan made while
     * the tables were never analyzed (a hash join with the project's threads), a known open
     * issue of a rare route */
    {"gw_project_stop_runs", NULL, NULL, "a generic plan made on a never-analyzed agent_runs"},
    {"gw_thread_detail", "projects_pkey", NULL, NULL},
    {"gw_threads_list", "projects_pkey", NULL, NULL},
    {"gw_project_forget", "threads_project_id_idx", NULL,
     "a generic plan made on a never-analyzed messages"},
    /* KX_OVER_LIMIT=reject's count of an account's active runs: agent_runs_thread_active_idx
     * had the same predicate, and a generic plan made while no run was active walked it whole
     * (every active run); migration 011 adds "thread_id IS NOT NULL" to that index's
     * predicate, which this statement does not imply. */
    {"gw_account_active", "agent_runs_account_active_idx", NULL, NULL},
    {NULL, NULL, NULL, NULL},
};

int main(void)
{
    return kx_th_plans_test("kx-gateway-plans", gw_store_statements, EXPECT);
}
