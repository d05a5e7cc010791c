/* tasks.c — the task list's operations (see tasks.h). */
#include "tasks.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "kx/uuid.h"

json_t *te_tasks_empty(void)
{
    return json_pack("{s:[], s:[]}", "sections", "tasks");
}

int te_tasks_writes(const char *tool)
{
    return strcmp(tool, "view_tasks") != 0;
}

static json_t *find_by(json_t *arr, const char *key, const char *value, size_t *index)
{
    size_t i;
    json_t *e;
    json_array_foreach(arr, i, e)
    {
        const char *v = json_string_value(json_object_get(e, key));
        if (v != NULL && strcmp(v, value) == 0) {
            if (index != NULL)
                *index = i;
            return e;
        }
    }
    return NULL;
}

/* The section with that title, created when missing; its id (borrowed). */
static const char *section_for(json_t *st, const char *title)
{
    json_t *sections = json_object_get(st, "sections");
    json_t *s = find_by(sections, "title", title, NULL);
    if (s == NULL) {
        char id[KX_UUID_LEN + 1];
        kx_uuid_new(id);
        s = json_pack("{s:s, s:s}", "id", id, "title", title);
        if (s == NULL || json_array_append_new(sections, s) != 0)
            return NULL;
    }
    return json_string_value(json_object_get(s, "id"));
}

static kx_err add_task(json_t *st, const char *section_id, const char *content)
{
    char id[KX_UUID_LEN + 1];
    kx_uuid_new(id);
    json_t *t = json_pack("{s:s, s:s, s:s, s:s}", "id", id, "content", content, "status",
                          "pending", "section_id", section_id);
    return t != NULL && json_array_append_new(json_object_get(st, "tasks"), t) == 0 ? KX_OK
                                                                                    : KX_ERR_NOMEM;
}

static kx_err create(json_t *st, const json_t *args, char *why, size_t whylen)
{
    const json_t *sections = json_object_get(args, "sections");
    size_t i, k;
    const json_t *sec, *content;
    json_array_foreach(sections, i, sec)
    {
        const char *sid = section_for(st, json_string_value(json_object_get(sec, "title")));
        if (sid == NULL)
            return KX_ERR_NOMEM;
        json_array_foreach(json_object_get(sec, "tasks"), k, content)
        {
            if (add_task(st, sid, json_string_value(content)) != KX_OK)
                return KX_ERR_NOMEM;
        }
    }
    const json_t *contents = json_object_get(args, "task_contents");
    if (contents == NULL) {
        if (sections == NULL) {
            snprintf(why, whylen, "give 'sections' or 'task_contents'");
            return KX_ERR_INVALID;
        }
        return KX_OK;
    }
    const char *sid = json_string_value(json_object_get(args, "section_id"));
    if (sid != NULL) {
        if (find_by(json_object_get(st, "sections"), "id", sid, NULL) == NULL) {
            snprintf(why, whylen, "no section with id '%.64s'", sid);
            return KX_ERR_INVALID;
        }
    } else {
        const char *title = json_string_value(json_object_get(args, "section_title"));
        sid = section_for(st, title != NULL ? title : "General");
        if (sid == NULL)
            return KX_ERR_NOMEM;
    }
    json_array_foreach(contents, k, content)
    {
        if (add_task(st, sid, json_string_value(content)) != KX_OK)
            return KX_ERR_NOMEM;
    }
    return KX_OK;
}

/* task_ids as a list (a single id becomes a list of one); new reference. */
static json_t *id_list(const json_t *v)
{
    if (json_is_string(v))
        return json_pack("[O]", v);
    return json_is_array(v) ? json_incref((json_t *)v) : json_array();
}

static kx_err update(json_t *st, const json_t *args, char *why, size_t whylen)
{
    json_t *ids = id_list(json_object_get(args, "task_ids"));
    json_t *tasks = json_object_get(st, "tasks");
    const char *sid = json_string_value(json_object_get(args, "section_id"));
    if (sid != NULL && find_by(json_object_get(st, "sections"), "id", sid, NULL) == NULL) {
        snprintf(why, whylen, "no section with id '%.64s'", sid);
        json_decref(ids);
        return KX_ERR_INVALID;
    }
    size_t i;
    json_t *id;
    json_array_foreach(ids, i, id)
    { /* all known first: nothing changes on an error */
        if (find_by(tasks, "id", json_string_value(id), NULL) == NULL) {
            snprintf(why, whylen, "no task with id '%.64s'", json_string_value(id));
            json_decref(ids);
            return KX_ERR_INVALID;
        }
    }
    json_array_foreach(ids, i, id)
    {
        json_t *t = find_by(tasks, "id", json_string_value(id), NULL);
        const char *keys[] = {"content", "status", "section_id"};
        for (size_t k = 0; k < 3; k++) {
            json_t *v = json_object_get(args, keys[k]);
            if (v != NULL)
                json_object_set(t, keys[k], v);
        }
    }
    json_decref(ids);
    return KX_OK;
}

static kx_err delete_tasks(json_t *st, const json_t *args, char *why, size_t whylen)
{
    json_t *ids = id_list(json_object_get(args, "task_ids"));
    json_t *sids = id_list(json_object_get(args, "section_ids"));
    json_t *tasks = json_object_get(st, "tasks"), *sections = json_object_get(st, "sections");
    kx_err err = KX_OK;
    if (json_array_size(ids) == 0 && json_array_size(sids) == 0) {
        snprintf(why, whylen, "give 'task_ids' or 'section_ids'");
        err = KX_ERR_INVALID;
    } else if (json_array_size(sids) > 0 && !json_is_true(json_object_get(args, "confirm"))) {
        snprintf(why, whylen, "deleting sections (and their tasks) needs 'confirm': true");
        err = KX_ERR_INVALID;
    }
    size_t i, at;
    json_t *id;
    json_array_foreach(ids, i, id)
    {
        if (err == KX_OK && find_by(tasks, "id", json_string_value(id), NULL) == NULL) {
            snprintf(why, whylen, "no task with id '%.64s'", json_string_value(id));
            err = KX_ERR_INVALID;
        }
    }
    json_array_foreach(sids, i, id)
    {
        if (err == KX_OK && find_by(sections, "id", json_string_value(id), NULL) == NULL) {
            snprintf(why, whylen, "no section with id '%.64s'", json_string_value(id));
            err = KX_ERR_INVALID;
        }
    }
    if (err == KX_OK) {
        json_array_foreach(ids, i, id)
        {
            if (find_by(tasks, "id", json_string_value(id), &at) != NULL)
                json_array_remove(tasks, at);
        }
        if (json_array_size(sids) > 0) { /* one pass: a section may hold many tasks */
            json_t *kept = json_array();
            json_t *t;
            if (kept == NULL)
                err = KX_ERR_NOMEM;
            json_array_foreach(tasks, i, t)
            {
                const char *tsid = json_string_value(json_object_get(t, "section_id"));
                bool gone = false;
                size_t k;
                json_array_foreach(sids, k, id)
                {
                    if (tsid != NULL && strcmp(tsid, json_string_value(id)) == 0)
                        gone = true;
                }
                if (kept != NULL && !gone && json_array_append(kept, t) != 0)
                    err = KX_ERR_NOMEM;
            }
            if (err == KX_OK)
                json_object_set(st, "tasks", kept);
            json_decref(kept);
        }
        json_array_foreach(sids, i, id)
        {
            if (err == KX_OK && find_by(sections, "id", json_string_value(id), &at) != NULL)
                json_array_remove(sections, at);
        }
    }
    json_decref(ids);
    json_decref(sids);
    return err;
}

static int count_bytes(const char *buffer, size_t size, void *data)
{
    (void)buffer;
    *(size_t *)data += size;
    return 0;
}

/* Bytes of st as stored (compact JSON). */
static size_t json_bytes(const json_t *st)
{
    size_t n = 0;
    json_dump_callback(st, count_bytes, &n, JSON_COMPACT);
    return n;
}

static size_t list_size(const json_t *v)
{
    return json_is_array(v) ? json_array_size(v) : json_is_string(v) ? 1 : 0;
}

/* Refuses (before any work) a call with more items than the list may hold: each id is looked
 * up in the list, each title among the sections. */
static kx_err check_args(const char *tool, const json_t *args, char *why, size_t whylen)
{
    size_t tasks = list_size(json_object_get(args, "task_ids")) +
        list_size(json_object_get(args, "task_contents"));
    const json_t *sections = json_object_get(args, "sections");
    size_t nsections = list_size(sections) + list_size(json_object_get(args, "section_ids"));
    size_t i;
    const json_t *sec;
    json_array_foreach(sections, i, sec)
    {
        tasks += list_size(json_object_get(sec, "tasks"));
    }
    if (tasks > TE_TASKS_MAX_TASKS || nsections > TE_TASKS_MAX_SECTIONS) {
        snprintf(why, whylen,
                 "%s names %zu tasks and %zu sections; the task list holds at most %d tasks "
                 "and %d sections",
                 tool, tasks, nsections, TE_TASKS_MAX_TASKS, TE_TASKS_MAX_SECTIONS);
        return KX_ERR_INVALID;
    }
    return KX_OK;
}

/* Refuses a change that leaves the list (after) past a bound it was not past before. */
static kx_err check_bounds(const json_t *before, const json_t *after, char *why, size_t whylen)
{
    size_t t0 = json_array_size(json_object_get(before, "tasks"));
    size_t t1 = json_array_size(json_object_get(after, "tasks"));
    size_t s0 = json_array_size(json_object_get(before, "sections"));
    size_t s1 = json_array_size(json_object_get(after, "sections"));
    if (t1 > TE_TASKS_MAX_TASKS && t1 > t0) {
        snprintf(why, whylen, "the task list holds at most %d tasks (this would make %zu)",
                 TE_TASKS_MAX_TASKS, t1);
        return KX_ERR_INVALID;
    }
    if (s1 > TE_TASKS_MAX_SECTIONS && s1 > s0) {
        snprintf(why, whylen, "the task list holds at most %d sections (this would make %zu)",
                 TE_TASKS_MAX_SECTIONS, s1);
        return KX_ERR_INVALID;
    }
    size_t b1 = json_bytes(after);
    if (b1 > TE_TASKS_MAX_BYTES && b1 > json_bytes(before)) {
        snprintf(why, whylen, "the task list holds at most %d bytes (this would make %zu bytes)",
                 TE_TASKS_MAX_BYTES, b1);
        return KX_ERR_INVALID;
    }
    return KX_OK;
}

kx_err te_tasks_apply(const char *tool, const json_t *args, json_t **state, json_t **output,
                      char *why, size_t whylen)
{
    *output = NULL;
    json_t *st = json_deep_copy(*state);
    if (st == NULL || !json_is_array(json_object_get(st, "sections")) ||
        !json_is_array(json_object_get(st, "tasks"))) {
        json_decref(st); /* a stored list of another shape starts over */
        st = te_tasks_empty();
        if (st == NULL)
            return KX_ERR_NOMEM;
    }
    kx_err err = check_args(tool, args, why, whylen);
    if (err != KX_OK) {
        /* refused before any work */
    } else if (strcmp(tool, "view_tasks") == 0) {
        /* nothing to change */
    } else if (strcmp(tool, "create_tasks") == 0) {
        err = create(st, args, why, whylen);
    } else if (strcmp(tool, "update_tasks") == 0) {
        err = update(st, args, why, whylen);
    } else if (strcmp(tool, "delete_tasks") == 0) {
        err = delete_tasks(st, args, why, whylen);
    } else if (strcmp(tool, "clear_all") == 0) {
        if (!json_is_true(json_object_get(args, "confirm"))) {
            snprintf(why, whylen, "clear_all needs 'confirm': true");
            err = KX_ERR_INVALID;
        } else {
            json_decref(st);
            st = te_tasks_empty();
            err = st != NULL ? KX_OK : KX_ERR_NOMEM;
        }
    } else {
        snprintf(why, whylen, "unknown task list tool '%.40s'", tool);
        err = KX_ERR_INVALID;
    }
    if (err == KX_OK && (strcmp(tool, "create_tasks") == 0 || strcmp(tool, "update_tasks") == 0))
        err = check_bounds(*state, st, why, whylen);
    if (err != KX_OK) {
        json_decref(st);
        return err;
    }
    json_decref(*state);
    *state = st;
    *output = json_incref(st);
    return KX_OK;
}
