/* test_tool_executor_plans.c — the generic plan of every statement of the tool-executor's
 * database connection (services/tool-executor/db_call.c) on an empty database and on one
 * whose runs have all ended: none walks a whole partial index, and the thread is found by its
 * primary key (tests/harness/pgplans.h). */
#include "db_call.h"
#include "pgplans.h"

static const kx_th_plan_expect EXPECT[] = {
    {"thread_lock", "threads_pkey", NULL, NULL},
    {"thread_check", "threads_pkey", NULL, NULL},
    {"task_list_view", "threads_pkey", NULL, NULL},
    {"message_get", "messages_pkey", NULL, NULL},
    {"task_list_update", "messages_pkey", NULL, NULL},
    {NULL, NULL, NULL, NULL},
};

int main(void)
{
    return kx_th_plans_test("kx-te-plans", te_db_stmts, EXPECT);
}
