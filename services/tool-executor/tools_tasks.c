/* tools_tasks.c — Kortix's TaskListTool (always on): view_tasks, create_tasks, update_tasks,
 * delete_tasks, clear_all, and ExpandMessageTool's expand_message (always on). The task list
 * is the thread's one `task_list` message (is_llm_message false), read and written on the
 * database thread (db_call.c): a change locks the thread row (which also proves the thread is
 * the call's account's), reads the list, applies the operation (tasks.c) and writes it back
 * in one transaction, so concurrent calls on a thread never lose each other's changes.
 * expand_message returns a message of the run's own thread only:
 * {"status": "Message expanded successfully.", "message": <its content's content>}. */
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "db_call.h"
#include "kx/json.h"
#include "registry.h"
#include "tasks.h"

static void db_failed(te_dbjob *j, kx_db *db, kx_err err, const char *what)
{
    j->err = err == KX_ERR_TIMEOUT ? KX_ERR_TIMEOUT : KX_ERR_UNAVAILABLE;
    snprintf(j->why, sizeof j->why, "the database failed %s: %s", what, kx_db_last_error(db));
}

/* view_tasks: one statement (the thread's ownership and its list). */
static void view_run(kx_db *db, te_dbjob *j)
{
    kx_err err = KX_OK;
    const char *owner[] = {j->thread_id, j->account_id};
    PGresult *r = kx_db_exec(db, "task_list_view", 2, owner, &err);
    if (r == NULL) {
        db_failed(j, db, err, "reading the task list");
        return;
    }
    if (PQntuples(r) != 1) {
        PQclear(r);
        j->err = KX_ERR_NOT_FOUND;
        snprintf(j->why, sizeof j->why, "thread %s is not the run's account's (or was deleted)",
                 j->thread_id);
        return;
    }
    json_t *state =
        PQgetisnull(r, 0, 1) ? NULL : json_loads(PQgetvalue(r, 0, 1), JSON_DECODE_ANY, NULL);
    PQclear(r);
    if (json_is_string(state)) {
        json_t *inner = json_loads(json_string_value(state), 0, NULL);
        json_decref(state);
        state = inner;
    }
    if (state == NULL)
        state = te_tasks_empty();
    j->err = te_tasks_apply(j->tool, j->args, &state, &j->output, j->why, sizeof j->why);
    json_decref(state);
}

static void tasks_run(kx_db *db, te_dbjob *j)
{
    bool writes = te_tasks_writes(j->tool);
    if (!writes) {
        view_run(db, j);
        return;
    }
    kx_err err = KX_OK;
    if (writes && kx_db_begin(db) != KX_OK) {
        db_failed(j, db, KX_ERR_UNAVAILABLE, "to begin");
        return;
    }
    const char *owner[] = {j->thread_id, j->account_id};
    PGresult *r = kx_db_exec(db, writes ? "thread_lock" : "thread_check", 2, owner, &err);
    if (r == NULL || PQntuples(r) != 1) {
        if (r == NULL)
            db_failed(j, db, err, "reading the thread");
        else {
            j->err = KX_ERR_NOT_FOUND;
            snprintf(j->why, sizeof j->why,
                     "thread %s is not the run's account's (or was deleted)", j->thread_id);
        }
        PQclear(r);
        if (writes)
            kx_db_rollback(db);
        return;
    }
    PQclear(r);
    const char *tid[] = {j->thread_id};
    r = kx_db_exec(db, "task_list_get", 1, tid, &err);
    if (r == NULL) {
        db_failed(j, db, err, "reading the task list");
        if (writes)
            kx_db_rollback(db);
        return;
    }
    char message_id[KX_UUID_LEN + 1] = "";
    json_t *state = NULL;
    if (PQntuples(r) == 1) {
        snprintf(message_id, sizeof message_id, "%s", PQgetvalue(r, 0, 0));
        state = json_loads(PQgetvalue(r, 0, 1), JSON_DECODE_ANY, NULL);
        if (json_is_string(state)) { /* content may be a JSON string holding JSON */
            json_t *inner = json_loads(json_string_value(state), 0, NULL);
            json_decref(state);
            state = inner;
        }
    }
    PQclear(r);
    if (state == NULL)
        state = te_tasks_empty();
    json_t *out = NULL;
    kx_err aerr = te_tasks_apply(j->tool, j->args, &state, &out, j->why, sizeof j->why);
    if (aerr != KX_OK) {
        j->err = aerr;
        json_decref(state);
        if (writes)
            kx_db_rollback(db);
        return;
    }
    if (writes) {
        char *text = kx_json_dumps_compact(state);
        if (text == NULL) {
            j->err = KX_ERR_NOMEM;
            snprintf(j->why, sizeof j->why, "out of memory");
            kx_db_rollback(db);
        } else {
            kx_err werr = KX_OK;
            if (message_id[0] != '\0') {
                const char *p[] = {message_id, text};
                werr = kx_db_exec_cmd(db, "task_list_update", 2, p, NULL);
            } else {
                const char *p[] = {j->thread_id, j->account_id, text};
                werr = kx_db_exec_cmd(db, "task_list_insert", 3, p, NULL);
            }
            free(text);
            if (werr != KX_OK || kx_db_commit(db) != KX_OK) {
                db_failed(j, db, werr != KX_OK ? werr : KX_ERR_UNAVAILABLE,
                          "writing the task list");
                kx_db_rollback(db);
                json_decref(out);
                out = NULL;
            }
        }
    }
    json_decref(state);
    j->output = out;
}

static void tasks_start(te_call *c)
{
    te_db_call(c, tasks_run);
}

static void expand_run(kx_db *db, te_dbjob *j)
{
    kx_err err = KX_OK;
    const char *owner[] = {j->thread_id, j->account_id};
    PGresult *r = kx_db_exec(db, "thread_check", 2, owner, &err);
    bool ok = r != NULL && PQntuples(r) == 1;
    PQclear(r);
    if (!ok) {
        if (r == NULL && err != KX_OK)
            db_failed(j, db, err, "reading the thread");
        else {
            j->err = KX_ERR_NOT_FOUND;
            snprintf(j->why, sizeof j->why,
                     "thread %s is not the run's account's (or was deleted)", j->thread_id);
        }
        return;
    }
    const char *mid = kx_json_str(j->args, "message_id", "");
    const char *p[] = {mid, j->thread_id};
    r = kx_db_exec(db, "message_get", 2, p, &err);
    if (r == NULL) {
        db_failed(j, db, err, "reading the message");
        return;
    }
    if (PQntuples(r) != 1) {
        PQclear(r);
        j->err = KX_ERR_NOT_FOUND;
        snprintf(j->why, sizeof j->why, "message '%.40s' is not in this thread", mid);
        return;
    }
    json_t *content = json_loads(PQgetvalue(r, 0, 0), JSON_DECODE_ANY, NULL);
    PQclear(r);
    if (json_is_string(content)) {
        json_t *inner = json_loads(json_string_value(content), 0, NULL);
        if (inner != NULL) {
            json_decref(content);
            content = inner;
        }
    }
    json_t *msg = json_is_object(content) && json_object_get(content, "content") != NULL
        ? json_incref(json_object_get(content, "content"))
        : json_incref(content);
    json_decref(content);
    j->output = json_pack("{s:s, s:o}", "status", "Message expanded successfully.", "message",
                          msg != NULL ? msg : json_null());
}

static void expand_start(te_call *c)
{
    te_db_call(c, expand_run);
}

#define IDS_PROP(name, what)                                                                \
    "\"" name "\": {\"type\": [\"string\", \"array\"], \"items\": {\"type\": \"string\"}, " \
    "\"description\": \"" what "\"}"

const te_tool te_task_tools[] = {
    {"view_tasks", NULL, TE_TOOL_BUILTIN,
     "{\"type\": \"function\", \"function\": {\"name\": \"view_tasks\", \"description\": "
     "\"Show the thread's task list: its sections and tasks with their ids and status.\", "
     "\"parameters\": {\"type\": \"object\", \"properties\": {}}}}",
     tasks_start, te_db_abort},
    {"create_tasks", NULL, TE_TOOL_BUILTIN,
     "{\"type\": \"function\", \"function\": {\"name\": \"create_tasks\", \"description\": "
     "\"Add tasks: either sections with their tasks, or task_contents for one section (by "
     "section_id, or by section_title, created if new; default 'General').\", \"parameters\": "
     "{\"type\": \"object\", \"properties\": {\"sections\": {\"type\": \"array\", \"items\": "
     "{\"type\": \"object\", \"properties\": {\"title\": {\"type\": \"string\", \"minLength\": "
     "1}, \"tasks\": {\"type\": \"array\", \"items\": {\"type\": \"string\", \"minLength\": "
     "1}}}, \"required\": [\"title\"]}}, \"section_title\": {\"type\": \"string\", "
     "\"minLength\": 1}, \"section_id\": {\"type\": \"string\"}, \"task_contents\": {\"type\": "
     "\"array\", \"items\": {\"type\": \"string\", \"minLength\": 1}}}}}}",
     tasks_start, te_db_abort},
    {"update_tasks", NULL, TE_TOOL_BUILTIN,
     "{\"type\": \"function\", \"function\": {\"name\": \"update_tasks\", \"description\": "
     "\"Change tasks' content, status or section.\", \"parameters\": {\"type\": \"object\", "
     "\"properties\": {" IDS_PROP(
         "task_ids",
         "A task id or a list of them.") ", \"content\": "
                                         "{\"type\": \"string\", \"minLength\": 1}, \"status\": {\"type\": \"string\", \"enum\": "
                                         "[\"pending\", \"completed\", \"cancelled\"]}, \"section_id\": {\"type\": \"string\"}}, "
                                         "\"required\": [\"task_ids\"]}}}",
     tasks_start, te_db_abort},
    {"delete_tasks", NULL, TE_TOOL_BUILTIN,
     "{\"type\": \"function\", \"function\": {\"name\": \"delete_tasks\", \"description\": "
     "\"Delete tasks, or whole sections with their tasks (confirm: true).\", \"parameters\": "
     "{\"type\": \"object\", \"properties\": {" IDS_PROP("task_ids", "Task ids.") ", " IDS_PROP(
         "section_ids", "Section ids.") ", \"confirm\": {\"type\": \"boolean\", "
                                        "\"default\": false}}}}}",
     tasks_start, te_db_abort},
    {"clear_all", NULL, TE_TOOL_BUILTIN,
     "{\"type\": \"function\", \"function\": {\"name\": \"clear_all\", \"description\": "
     "\"Delete every section and task (confirm: true).\", \"parameters\": {\"type\": "
     "\"object\", \"properties\": {\"confirm\": {\"type\": \"boolean\"}}, \"required\": "
     "[\"confirm\"]}}}",
     tasks_start, te_db_abort},
    {"expand_message", NULL, TE_TOOL_BUILTIN,
     "{\"type\": \"function\", \"function\": {\"name\": \"expand_message\", \"description\": "
     "\"Show the whole content of a message of this thread that was shortened in the "
     "context.\", \"parameters\": {\"type\": \"object\", \"properties\": {\"message_id\": "
     "{\"type\": \"string\", \"minLength\": 36, \"maxLength\": 36, \"description\": \"The "
     "message_id given with the shortened text.\"}}, \"required\": [\"message_id\"]}}}",
     expand_start, te_db_abort},
};
const size_t te_task_tools_n = sizeof te_task_tools / sizeof te_task_tools[0];
