/* agent_config.c — the run's agent, its version, its prompt and its tools (see agent_config.h). */
#include "agent_config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kx/json.h"
#include "store.h"

void agent_config_default(agent_config *out)
{
    memset(out, 0, sizeof *out);
}

void agent_config_clear(agent_config *c)
{
    free(c->system_prompt);
    json_decref(c->agentpress);
    json_decref(c->configured_mcps);
    json_decref(c->custom_mcps);
    memset(c, 0, sizeof *c);
}

/* The first of the keys present in obj (a borrowed reference), or NULL. */
static json_t *first_of(json_t *obj, const char *a, json_t *sub, const char *b)
{
    json_t *v = json_object_get(obj, a);
    if (v != NULL && !json_is_null(v))
        return v;
    v = json_object_get(sub, b);
    return v != NULL && !json_is_null(v) ? v : NULL;
}

static kx_err bad(char *why, size_t whylen, const char *what)
{
    snprintf(why, whylen, "the agent's configuration is unreadable: %s", what);
    return KX_ERR_INVALID;
}

/* The enabled families of an agentpress_tools object: {"k": true} or {"k": {"enabled": true}}. */
static json_t *enabled_families(const json_t *tools)
{
    json_t *out = json_object();
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)tools, k, v)
    {
        bool on =
            json_is_true(v) || (json_is_object(v) && json_is_true(json_object_get(v, "enabled")));
        if (on)
            json_object_set_new(out, k, json_true());
    }
    return out;
}

static void take_strategy(agent_config *out, const json_t *v)
{
    const char *s = json_string_value(v);
    if (s == NULL)
        return;
    if (strcmp(s, "sequential") == 0) {
        out->strategy = AGENT_STRATEGY_SEQUENTIAL;
        out->strategy_set = true;
    } else if (strcmp(s, "parallel") == 0) {
        out->strategy = AGENT_STRATEGY_PARALLEL;
        out->strategy_set = true;
    }
}

kx_err agent_config_parse(const char *agent_id, const char *version_id, const char *config_json,
                          const char *agent_metadata_json, agent_config *out, char *why,
                          size_t whylen)
{
    agent_config_default(out);
    snprintf(out->agent_id, sizeof out->agent_id, "%s", agent_id ? agent_id : "");
    snprintf(out->version_id, sizeof out->version_id, "%s", version_id ? version_id : "");
    json_t *cfg = json_loads(config_json ? config_json : "", 0, NULL);
    json_t *meta = agent_metadata_json ? json_loads(agent_metadata_json, 0, NULL) : NULL;
    kx_err err = KX_OK;
    if (!json_is_object(cfg)) {
        err = bad(why, whylen, "the version's config is not a JSON object");
        goto done;
    }
    json_t *sub = json_object_get(cfg, "tools");
    if (sub != NULL && !json_is_object(sub))
        sub = NULL;
    const json_t *prompt = json_object_get(cfg, "system_prompt");
    if (prompt != NULL && !json_is_null(prompt) && !json_is_string(prompt)) {
        err = bad(why, whylen, "system_prompt is not a string");
        goto done;
    }
    if (json_string_length(prompt) > 0 &&
        (out->system_prompt = strdup(json_string_value(prompt))) == NULL) {
        err = KX_ERR_NOMEM;
        goto done;
    }
    json_t *tools = first_of(cfg, "agentpress_tools", sub, "agentpress");
    if (tools != NULL && !json_is_object(tools)) {
        err = bad(why, whylen, "agentpress_tools is not an object");
        goto done;
    }
    bool suna_default = json_is_true(json_object_get(meta, "is_suna_default"));
    out->agentpress = enabled_families(tools);
    if (out->agentpress == NULL) {
        err = KX_ERR_NOMEM;
        goto done;
    }
    if (suna_default && json_object_size(out->agentpress) == 0) { /* register_all_tools */
        json_decref(out->agentpress);
        out->agentpress = NULL;
    }
    static const char *const lists[2][3] = {{"configured_mcps", "mcp", "configured_mcps"},
                                            {"custom_mcps", "custom_mcp", "custom_mcps"}};
    for (int i = 0; i < 2; i++) {
        json_t *v = first_of(cfg, lists[i][0], sub, lists[i][1]);
        if (v != NULL && !json_is_array(v)) {
            char w[80];
            snprintf(w, sizeof w, "%s is not an array", lists[i][2]);
            err = bad(why, whylen, w);
            goto done;
        }
        json_t *a = v ? json_incref(v) : json_array();
        if (i == 0)
            out->configured_mcps = a;
        else
            out->custom_mcps = a;
    }
    const json_t *model = json_object_get(cfg, "model");
    if (!json_is_string(model))
        model = json_object_get(meta, "model");
    if (json_is_string(model))
        snprintf(out->model, sizeof out->model, "%s", json_string_value(model));
    take_strategy(out, json_object_get(meta, "tool_execution_strategy"));
    take_strategy(out, json_object_get(cfg, "tool_execution_strategy"));
    const json_t *mx = json_object_get(cfg, "max_xml_tool_calls");
    if (json_is_integer(mx) && json_integer_value(mx) > 0 && json_integer_value(mx) <= 100)
        out->max_xml_tool_calls = (int)json_integer_value(mx);
    out->found = true;
done:
    json_decref(cfg);
    json_decref(meta);
    return err;
}

kx_err agent_config_from_row(store_agent *row, agent_config *out, char *why, size_t whylen)
{
    agent_config_default(out);
    kx_err err = KX_OK;
    if (row->config != NULL) /* else no agent, or no version: the default */
        err = agent_config_parse(row->agent_id, row->version_id, row->config, row->metadata, out,
                                 why, whylen);
    store_agent_clear(row);
    return err;
}

kx_err agent_config_load(kx_db *db, const char *run_id, agent_config *out, char *why,
                         size_t whylen)
{
    agent_config_default(out);
    store_agent row;
    kx_err err = store_load_agent(db, run_id, &row);
    if (err != KX_OK) {
        snprintf(why, whylen, "could not read the run's agent: %s", kx_err_str(err));
        return err;
    }
    return agent_config_from_row(&row, out, why, whylen);
}

/* ---- the prompt ---------------------------------------------------------------------------- */

char *agent_config_render(const char *tmpl, time_t now)
{
    struct tm tm;
    gmtime_r(&now, &tm);
    char date[16], tim[16], dt[48], year[8], month[4], day[4], wday[16];
    strftime(date, sizeof date, "%Y-%m-%d", &tm);
    strftime(tim, sizeof tim, "%H:%M:%S", &tm);
    strftime(dt, sizeof dt, "%Y-%m-%d %H:%M:%S UTC", &tm);
    strftime(year, sizeof year, "%Y", &tm);
    strftime(month, sizeof month, "%m", &tm);
    strftime(day, sizeof day, "%d", &tm);
    strftime(wday, sizeof wday, "%A", &tm);
    const struct {
        const char *name;
        const char *value;
    } vars[] = {
        {"{{current_date}}", date},    {"{{current_time}}", tim},    {"{{current_datetime}}", dt},
        {"{{current_year}}", year},    {"{{current_month}}", month}, {"{{current_day}}", day},
        {"{{current_weekday}}", wday}, {"{{timezone}}", "UTC"},
    };
    size_t n = strlen(tmpl), cap = n + 1;
    for (const char *p = strstr(tmpl, "{{"); p != NULL; p = strstr(p + 2, "{{"))
        cap += sizeof dt; /* at most this much longer per variable */
    char *out = malloc(cap);
    if (out == NULL)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        bool done = false;
        if (tmpl[i] == '{' && tmpl[i + 1] == '{') {
            for (size_t v = 0; v < sizeof vars / sizeof vars[0]; v++) {
                size_t l = strlen(vars[v].name);
                if (strncmp(tmpl + i, vars[v].name, l) == 0) {
                    size_t vl = strlen(vars[v].value);
                    memcpy(out + o, vars[v].value, vl);
                    o += vl;
                    i += l;
                    done = true;
                    break;
                }
            }
        }
        if (!done)
            out[o++] = tmpl[i++];
    }
    out[o] = '\0';
    return out;
}

/* ---- tools --------------------------------------------------------------------------------- */

static const struct {
    const char *name;
    const char *family;
} FUNCTIONS[] = {
    {"ask", "always"},
    {"complete", "always"},
    {"web_browser_takeover", "always"},
    {"expand_message", "always"},
    {"view_tasks", "always"},
    {"create_tasks", "always"},
    {"update_tasks", "always"},
    {"delete_tasks", "always"},
    {"clear_all", "always"},
    {"execute_command", "sb_shell_tool"},
    {"check_command_output", "sb_shell_tool"},
    {"terminate_command", "sb_shell_tool"},
    {"list_commands", "sb_shell_tool"},
    {"create_file", "sb_files_tool"},
    {"str_replace", "sb_files_tool"},
    {"full_file_rewrite", "sb_files_tool"},
    {"delete_file", "sb_files_tool"},
    {"edit_file", "sb_files_tool"},
    {"deploy", "sb_deploy_tool"},
    {"expose_port", "sb_expose_tool"},
    {"web_search", "web_search_tool"},
    {"scrape_webpage", "web_search_tool"},
    {"see_image", "sb_vision_tool"},
    {"image_edit_or_generate", "sb_image_edit_tool"},
    {"get_data_provider_endpoints", "data_providers_tool"},
    {"execute_data_provider_call", "data_providers_tool"},
};

const char *agent_config_family(const char *function_name)
{
    if (strncmp(function_name, "browser_", 8) == 0)
        return "sb_browser_tool";
    for (size_t i = 0; i < sizeof FUNCTIONS / sizeof FUNCTIONS[0]; i++)
        if (strcmp(FUNCTIONS[i].name, function_name) == 0)
            return FUNCTIONS[i].family;
    return NULL;
}

bool agent_config_tool_enabled(const agent_config *c, const char *function_name)
{
    if (c->agentpress == NULL)
        return true;
    const char *family = agent_config_family(function_name);
    if (family == NULL || strcmp(family, "always") == 0)
        return true;
    return json_is_true(json_object_get(c->agentpress, family));
}

json_t *agent_config_filter_tools(const agent_config *c, const json_t *schemas)
{
    json_t *out = json_array();
    if (out == NULL)
        return NULL;
    size_t i;
    json_t *s;
    json_array_foreach((json_t *)schemas, i, s)
    {
        const char *name = kx_json_str(json_object_get(s, "function"), "name", "");
        if (agent_config_tool_enabled(c, name) && json_array_append(out, s) != 0) {
            json_decref(out);
            return NULL;
        }
    }
    return out;
}

bool agent_config_is_terminating(const char *function_name)
{
    return strcmp(function_name, "ask") == 0 || strcmp(function_name, "complete") == 0;
}
