/* registry.c — the catalogue as tables, one per family file, and the schemas (see
 * registry.h). Adding a tool = one row in its family's table with its schema. */
#include "registry.h"

#include <stdlib.h>
#include <string.h>

#include "kx/json.h"
#include "kx/jsonschema.h"
#include "kx/log.h"

static const te_tool exec_tool = {"execute_command",        "sb_shell_tool",
                                  TE_TOOL_SANDBOX,          te_execute_command_schema,
                                  te_execute_command_start, te_execute_command_abort};

typedef struct family {
    const te_tool *tools;
    const size_t *n;
} family;

static const size_t one = 1;

static const family families[] = {
    {&exec_tool, &one},
    {te_shell_tools, &te_shell_tools_n},
    {te_files_tools, &te_files_tools_n},
    {te_message_tools, &te_message_tools_n},
    {te_task_tools, &te_task_tools_n},
    {te_web_tools, &te_web_tools_n},
    {te_expose_tools, &te_expose_tools_n},
    {te_vision_tools, &te_vision_tools_n},
};
#define NFAMILIES (sizeof families / sizeof families[0])

/* The parsed schemas, in family order; set once at start, read-only afterwards. */
static json_t *g_schemas; /* array of the schema objects */
static json_t *g_index;   /* name -> index into g_schemas */

static void each_tool(void (*fn)(const te_tool *t, void *arg), void *arg)
{
    for (size_t f = 0; f < NFAMILIES; f++) {
        for (size_t i = 0; i < *families[f].n; i++)
            fn(&families[f].tools[i], arg);
    }
}

typedef struct init_state {
    kx_err err;
} init_state;

static void init_one(const te_tool *t, void *arg)
{
    init_state *st = arg;
    if (st->err != KX_OK)
        return;
    json_error_t jerr;
    json_t *s = json_loads(t->schema, 0, &jerr);
    json_t *fn = json_object_get(s, "function");
    const char *name = json_string_value(json_object_get(fn, "name"));
    json_t *params = json_object_get(fn, "parameters");
    char why[256] = "";
    if (s == NULL || name == NULL || strcmp(name, t->name) != 0 || params == NULL ||
        kx_jsonschema_check(params, why, sizeof why) != KX_OK ||
        json_object_get(g_index, t->name) != NULL) {
        kx_error("tool-executor: the schema of tool %s is broken: %s", t->name,
                 s == NULL    ? jerr.text
                     : why[0] ? why
                              : "name, parameters or duplicate");
        json_decref(s);
        st->err = KX_ERR_INVALID;
        return;
    }
    json_object_set_new(g_index, t->name, json_integer((json_int_t)json_array_size(g_schemas)));
    json_array_append_new(g_schemas, s);
}

kx_err te_registry_init(void)
{
    te_registry_free();
    g_schemas = json_array();
    g_index = json_object();
    if (g_schemas == NULL || g_index == NULL)
        return KX_ERR_NOMEM;
    init_state st = {KX_OK};
    each_tool(init_one, &st);
    if (st.err != KX_OK)
        te_registry_free();
    return st.err;
}

void te_registry_free(void)
{
    json_decref(g_schemas);
    json_decref(g_index);
    g_schemas = g_index = NULL;
}

typedef struct find_state {
    const char *name;
    const te_tool *found;
} find_state;

static void find_one(const te_tool *t, void *arg)
{
    find_state *st = arg;
    if (st->found == NULL && strcmp(t->name, st->name) == 0)
        st->found = t;
}

const te_tool *te_registry_find(const char *name)
{
    if (name == NULL)
        return NULL;
    find_state st = {name, NULL};
    each_tool(find_one, &st);
    return st.found;
}

static json_t *schema_of(const te_tool *t)
{
    json_t *i = json_object_get(g_index, t->name);
    return i != NULL ? json_array_get(g_schemas, (size_t)json_integer_value(i)) : NULL;
}

const json_t *te_registry_parameters(const te_tool *t)
{
    return json_object_get(json_object_get(schema_of(t), "function"), "parameters");
}

/* Whether agentpress_tools enables group: true, or {"enabled": true, ...}. */
static bool group_enabled(const json_t *cfg, const char *group)
{
    const json_t *v = json_object_get(cfg, group);
    if (json_is_boolean(v))
        return json_is_true(v);
    return json_is_object(v) && json_is_true(json_object_get(v, "enabled"));
}

typedef struct schemas_state {
    const json_t *cfg;
    bool all;
    json_t *out;
} schemas_state;

static bool agent_has(const te_tool *t, const json_t *cfg, bool all)
{
    if (!te_tool_offered(t))
        return false;
    return all || t->group == NULL || group_enabled(cfg, t->group);
}

bool te_registry_agent_has(const te_tool *t, const json_t *agentpress_tools)
{
    return agent_has(t, agentpress_tools,
                     !json_is_object(agentpress_tools) || json_object_size(agentpress_tools) == 0);
}

static void add_schema(const te_tool *t, void *arg)
{
    schemas_state *st = arg;
    if (agent_has(t, st->cfg, st->all)) {
        json_t *s = schema_of(t);
        if (s != NULL)
            json_array_append(st->out, s);
    }
}

json_t *te_registry_schemas(const json_t *agentpress_tools)
{
    schemas_state st = {agentpress_tools,
                        !json_is_object(agentpress_tools) ||
                            json_object_size(agentpress_tools) == 0,
                        json_array()};
    if (st.out != NULL)
        each_tool(add_schema, &st);
    return st.out;
}

void te_tool_abort_request(te_call *c, te_outcome *o)
{
    if (c->req_active) {
        kx_bus_async_cancel(c->ex->async, c->req_id);
        c->req_active = false;
    }
    te_call_finish(c, o);
}
