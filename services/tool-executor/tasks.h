/* tasks.h — Kortix's task list (TaskListTool), as pure operations on its state:
 *   {"sections": [{"id", "title"}], "tasks": [{"id", "content", "status", "section_id"}]}
 * status is "pending" | "completed" | "cancelled". The tools (tools_tasks.c) keep the state
 * in the thread's one `task_list` message (is_llm_message false), as Kortix does.
 *   view_tasks()
 *   create_tasks(sections: [{"title", "tasks": [content]}] | section_title, section_id,
 *                task_contents: [content])  — new sections by title (an existing title is
 *                reused), tasks added to a section (default "General")
 *   update_tasks(task_ids*: id | [ids], content, status, section_id)
 *   delete_tasks(task_ids, section_ids, confirm) — deleting sections (and their tasks)
 *                needs confirm: true
 *   clear_all(confirm*) — confirm must be true
 * Unknown ids are refused, naming them; nothing is changed then.
 *
 * Bounds: the model chooses every argument, and the whole list is read, parsed and rewritten
 * by every task call on the executor's one database connection (which every run's database
 * tools share). So a change that would leave more than TE_TASKS_MAX_TASKS tasks,
 * TE_TASKS_MAX_SECTIONS sections or TE_TASKS_MAX_BYTES of JSON is refused (a list stored larger
 * before these bounds can still shrink), and so are more ids, tasks or sections in one call
 * than the list may hold (each id is looked up in the list).
 *
 * Pure (ids come from kx_uuid_new); unit tested in tests/unit/test_tool_executor_tasks.c. */
#ifndef TE_TASKS_H
#define TE_TASKS_H

#include <jansson.h>
#include <stddef.h>

#include "kx/err.h"

#define TE_TASKS_MAX_TASKS 1000
#define TE_TASKS_MAX_SECTIONS 100
#define TE_TASKS_MAX_BYTES (512 * 1024)

/* A new empty state. */
json_t *te_tasks_empty(void);
/* Applies tool (one of the five) with its validated args to *state (replaced on success).
 * KX_OK with *output (new reference: the state after the change, Kortix's view) or
 * KX_ERR_INVALID with why; *state unchanged on error. */
kx_err te_tasks_apply(const char *tool, const json_t *args, json_t **state, json_t **output,
                      char *why, size_t whylen);
/* Whether tool changes the state (all but view_tasks). */
int te_tasks_writes(const char *tool);

#endif
