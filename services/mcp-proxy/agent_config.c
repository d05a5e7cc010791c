/* agent_config.c — Kortix's custom_mcps / configured_mcps entries and model-visible tool names
 * (see agent_config.h). */
#include "agent_config.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void mcp_agent_server_free(mcp_agent_server *s)
{
    if (s == NULL)
        return;
    mcp_server_free(&s->cfg);
    free(s->display);
    for (char **e = s->enabled; e && *e; e++)
        free(*e);
    free(s->enabled);
    free(s->entry_json);
    memset(s, 0, sizeof *s);
}

/* "My Srv" -> "my_srv" (Kortix: lowercased, spaces to '_'). */
static void slug(const char *in, char *out, size_t len)
{
    size_t j = 0;
    for (; *in && j + 1 < len; in++)
        out[j++] = *in == ' ' ? '_' : (char)tolower((unsigned char)*in);
    out[j] = '\0';
}

int mcp_agent_server_parse(const json_t *entry, bool custom, mcp_agent_server *out, char *why,
                           size_t whylen)
{
    memset(out, 0, sizeof *out);
    const char *list = custom ? "custom_mcps" : "configured_mcps";
    if (!json_is_object(entry)) {
        snprintf(why, whylen, "a %s entry must be an object", list);
        return -1;
    }
    const char *name = json_string_value(json_object_get(entry, "name"));
    if (name == NULL || name[0] == '\0' || strlen(name) > 128) {
        snprintf(why, whylen, "a %s entry needs \"name\", a string of 1 to 128 characters", list);
        return -1;
    }
    char where[256];
    snprintf(where, sizeof where, "%s entry '%.128s'", list, name);
    const json_t *config = json_object_get(entry, "config");
    if (!json_is_object(config)) {
        snprintf(why, whylen, "%s needs \"config\", an object", where);
        return -1;
    }
    const json_t *enabled = json_object_get(entry, "enabledTools");
    if (enabled != NULL && !json_is_null(enabled) && !json_is_array(enabled)) {
        snprintf(why, whylen, "%s: \"enabledTools\" must be an array of tool names", where);
        return -1;
    }
    out->custom = custom;
    out->cfg.user = true;
    char qualified[256], s[160];
    int rc;
    if (custom) {
        const char *type = json_string_value(json_object_get(entry, "type"));
        if (type == NULL)
            type = json_string_value(json_object_get(entry, "customType"));
        if (type == NULL) {
            snprintf(why, whylen,
                     "%s needs \"type\" (or \"customType\"): \"json\" (stdio), "
                     "\"http\" or \"sse\"",
                     where);
            return -1;
        }
        slug(name, s, sizeof s);
        snprintf(qualified, sizeof qualified, "custom_%s_%s", type, s);
        if (strcmp(type, "json") == 0)
            rc = mcp_server_set_stdio(&out->cfg, json_object_get(config, "command"),
                                      json_object_get(config, "args"),
                                      json_object_get(config, "env"), where, why, whylen);
        else if (strcmp(type, "http") == 0 || strcmp(type, "sse") == 0)
            rc = mcp_server_set_url(&out->cfg, type[0] == 'h' ? MCP_T_HTTP : MCP_T_SSE,
                                    json_object_get(config, "url"),
                                    json_object_get(config, "headers"), where, why, whylen);
        else if (strcmp(type, "pipedream") == 0) {
            snprintf(why, whylen,
                     "%s: type \"pipedream\" is not supported (it needs Pipedream "
                     "credentials the suite does not hold)",
                     where);
            rc = -1;
        } else {
            snprintf(why, whylen,
                     "%s: unknown type \"%.40s\" (want \"json\", \"http\" or "
                     "\"sse\")",
                     where, type);
            rc = -1;
        }
    } else {
        const char *q = json_string_value(json_object_get(entry, "qualifiedName"));
        snprintf(qualified, sizeof qualified, "%s", q && q[0] ? q : name);
        rc = mcp_server_set_url(&out->cfg, MCP_T_HTTP, json_object_get(config, "url"),
                                json_object_get(config, "headers"), where, why, whylen);
    }
    if (rc != 0) {
        mcp_agent_server_free(out);
        return -1;
    }
    size_t n = json_array_size(enabled);
    out->cfg.name = strdup(qualified);
    out->display = strdup(name);
    out->enabled = calloc(n + 1, sizeof *out->enabled);
    out->entry_json = json_dumps(entry, JSON_COMPACT | JSON_SORT_KEYS);
    if (!out->cfg.name || !out->display || !out->enabled || !out->entry_json)
        goto oom;
    for (size_t i = 0; i < n; i++) {
        const char *t = json_string_value(json_array_get(enabled, i));
        if (t == NULL) {
            snprintf(why, whylen, "%s: enabledTools[%zu] is not a string", where, i);
            mcp_agent_server_free(out);
            return -1;
        }
        if ((out->enabled[i] = strdup(t)) == NULL)
            goto oom;
    }
    if (mcp_server_hash(&out->cfg) != 0)
        goto oom;
    return 0;
oom:
    snprintf(why, whylen, "%s: out of memory", where);
    mcp_agent_server_free(out);
    return -1;
}

bool mcp_agent_tool_enabled(const mcp_agent_server *s, const char *tool)
{
    if (s->enabled == NULL || s->enabled[0] == NULL)
        return s->custom; /* Kortix: empty = all for custom servers, none for standard */
    for (char **e = s->enabled; *e; e++)
        if (strcmp(*e, tool) == 0)
            return true;
    return false;
}

void mcp_model_name(const char *server, const char *tool, bool custom, char *out, size_t len)
{
    char srv[160], key[512];
    slug(server, srv, sizeof srv);
    snprintf(key, sizeof key, "%s_%s_%s", custom ? "custom" : "mcp", srv, tool);
    /* Kortix: drop the first two '_'-separated parts of the key. */
    const char *p = key;
    for (int i = 0; i < 2 && p; i++) {
        p = strchr(p, '_');
        if (p)
            p++;
    }
    if (p == NULL || *p == '\0')
        p = tool;
    size_t j = 0, max = len - 1 < MCP_MODEL_NAME_MAX ? len - 1 : MCP_MODEL_NAME_MAX;
    for (; *p && j < max; p++) {
        unsigned char c = (unsigned char)*p;
        out[j++] = (isalnum(c) || c == '_') ? (char)c : '_'; /* '-' -> '_' as Kortix */
    }
    if (j == 0)
        out[j++] = '_';
    out[j] = '\0';
}

/* The suffix to try first for name is remembered as the value of name's own key (an integer;
 * the set only asks whether a key is there): every suffix below it was taken when it was set,
 * and nothing is ever removed. Without it, n tools of one name (a server may list thousands)
 * cost n^2 / 2 lookups — seconds on the loop, which every other call waits for. */
int mcp_names_claim(json_t *taken, const char *name, char *out, size_t len)
{
    snprintf(out, len, "%s", name);
    const json_t *first = json_object_get(taken, name);
    if (first == NULL)
        return json_object_set_new(taken, out, json_true()) == 0 ? 0 : -1;
    json_int_t i =
        json_is_integer(first) && json_integer_value(first) > 2 ? json_integer_value(first) : 2;
    size_t max = (len - 1 < MCP_MODEL_NAME_MAX ? len - 1 : MCP_MODEL_NAME_MAX);
    for (;; i++) {
        char suffix[32];
        int sl = snprintf(suffix, sizeof suffix, "_%lld", (long long)i);
        size_t keep = strlen(name);
        if (keep + (size_t)sl > max)
            keep = max - (size_t)sl;
        snprintf(out, len, "%.*s%s", (int)keep, name, suffix);
        if (json_object_get(taken, out) == NULL)
            break;
    }
    if (json_object_set_new(taken, out, json_true()) != 0 ||
        json_object_set_new(taken, name, json_integer(i + 1)) != 0)
        return -1;
    return 0;
}
