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
     * the tables were never analyzed (a hash join with the project's threads); now the runs
     * by their project, the messages probed thread by thread */
    {"gw_project_stop_runs", "agent_runs_project_created_idx", NULL, NULL},
    {"gw_thread_detail", "projects_pkey", NULL, NULL},
    {"gw_threads_list", "projects_pkey", NULL, NULL},
    /* the purger's batch: the deleted thread's messages on their index */
    {"gw_purge_batch", "messages_thread_created_idx", NULL, NULL},
    /* KX_OVER_LIMIT=reject's count of an account's active runs: agent_runs_thread_active_idx
     * had the same predicate as agent_runs_account_active_idx, and a generic plan made while
     * no run was active walked it whole (every active run). Migration 014 dropped both; the
     * count reads the scheduler's two indexes, active and waiting, by account. */
    {"gw_account_active", "agent_runs_waiting_idx", NULL, NULL},
    {NULL, NULL, NULL, NULL},
};

int main(void)
{
    return kx_th_plans_test("kx-gateway-plans", gw_store_statements, EXPECT);
}
