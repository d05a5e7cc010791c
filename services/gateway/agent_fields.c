/* agent_fields.c — the checks of an agent's or a version's fields (see agent_fields.h). */
#include "agent_fields.h"

#include <ctype.h>
#include <microhttpd.h>
#include <string.h>

#include "body.h"
#include "reply.h"
#include "text.h"

#define NAME_CHARS 255
#define DESCRIPTION_CHARS 10000
#define CHANGE_CHARS 1000
#define MODEL_BYTES 200
#define MAX_TOOLS 100
#define TOOL_NAME_BYTES 64
#define MAX_MCPS 50
#define MCP_TOOL_BYTES 255
#define AVATAR_CHARS 10
#define MAX_TAGS 20
#define TAG_CHARS 50
#define VERSION_NAME_CHARS 50

/* obj[key], NULL when absent or null. */
static const json_t *field(const json_t *obj, const char *key)
{
    const json_t *v = json_object_get(obj, key);
    return v == NULL || json_is_null(v) ? NULL : v;
}

/* A string of min..max characters (bytes when bytes is set), without NUL. */
static bool text_ok(const json_t *v, const char *name, size_t min, size_t max, bool bytes,
                    gw_reply *reply)
{
    if (!json_is_string(v)) {
        gw_reply_error(reply, MHD_HTTP_BAD_REQUEST, "%s must be a string", name);
        return false;
    }
    const char *s = json_string_value(v);
    if (strlen(s) != json_string_length(v)) {
        gw_reply_error(reply, MHD_HTTP_BAD_REQUEST, "%s must not contain NUL characters", name);
        return false;
    }
    size_t n = bytes ? strlen(s) : gw_utf8_chars(s);
    if (n < min || n > max) {
        gw_reply_error(reply, MHD_HTTP_BAD_REQUEST, "%s must have %zu to %zu %s (it has %zu)",
                       name, min, max, bytes ? "bytes" : "characters", n);
        return false;
    }
    return true;
}

/* Every string in a JSON value free of NUL (Postgres jsonb cannot hold \u0000). */
static bool no_nul(const json_t *v)
{
    size_t i;
    const char *k;
    const json_t *e;
    switch (json_typeof(v)) {
    case JSON_STRING: return strlen(json_string_value(v)) == json_string_length(v);
    case JSON_ARRAY: json_array_foreach(v, i, e) if (!no_nul(e)) return false; return true;
    case JSON_OBJECT:
        json_object_foreach((json_t *)v, k, e) if (!no_nul(e)) return false;
        return true;
    default: return true;
    }
}

static bool tool_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > TOOL_NAME_BYTES)
        return false;
    for (; *s; s++)
        if (!islower((unsigned char)*s) && !isdigit((unsigned char)*s) && *s != '_')
            return false;
    return true;
}

static bool agentpress_ok(const json_t *v, gw_reply *reply)
{
    if (!json_is_object(v)) {
        gw_reply_error(reply, MHD_HTTP_BAD_REQUEST,
                       "agentpress_tools must be an object of tool names to booleans");
        return false;
    }
    if (json_object_size(v) > MAX_TOOLS) {
        gw_reply_error(reply, MHD_HTTP_BAD_REQUEST, "agentpress_tools has %zu tools; at most %d",
                       json_object_size(v), MAX_TOOLS);
        return false;
    }
    const char *k;
    const json_t *e;
    json_object_foreach((json_t *)v, k, e)
    {
        if (!tool_name_ok(k)) {
            gw_reply_error(reply, MHD_HTTP_BAD_REQUEST,
                           "agentpress_tools: \"%.64s\" is not a tool name (1..%d of a-z, 0-9, _)",
                           k, TOOL_NAME_BYTES);
            return false;
        }
        const json_t *en = json_is_object(e) ? json_object_get(e, "enabled") : NULL;
        if (!json_is_boolean(e) &&
            !(json_is_object(e) && (en == NULL || json_is_boolean(en)) && no_nul(e))) {
            gw_reply_error(reply, MHD_HTTP_BAD_REQUEST,
                           "agentpress_tools.%s must be a boolean or {\"enabled\": boolean}", k);
            return false;
        }
    }
    return true;
}

static bool mcps_ok(const json_t *v, const char *list, bool custom, gw_reply *reply)
{
    static const char *const TYPES[] = {"sse", "http", "json", "pipedream"};
    char name[96];
    if (!json_is_array(v)) {
        gw_reply_error(reply, MHD_HTTP_BAD_REQUEST, "%s must be an array of MCP servers", list);
        return false;
    }
    if (json_array_size(v) > MAX_MCPS) {
        gw_reply_error(reply, MHD_HTTP_BAD_REQUEST, "%s has %zu servers; at most %d", list,
                       json_array_size(v), MAX_MCPS);
        return false;
    }
    size_t i;
    const json_t *e;
    json_array_foreach(v, i, e)
    {
        if (!json_is_object(e)) {
            gw_reply_error(reply, MHD_HTTP_BAD_REQUEST, "%s[%zu] must be an object", list, i);
            return false;
        }
        snprintf(name, sizeof name, "%s[%zu].name", list, i);
        if (!text_ok(json_object_get(e, "name"), name, 1, NAME_CHARS, false, reply))
            return false;
        const json_t *q = json_object_get(e, "qualifiedName");
        snprintf(name, sizeof name, "%s[%zu].qualifiedName", list, i);
        if (q != NULL && !json_is_null(q) && !text_ok(q, name, 0, NAME_CHARS, false, reply))
            return false;
        const json_t *cfg = json_object_get(e, "config");
        if (cfg != NULL && !json_is_object(cfg)) {
            gw_reply_error(reply, MHD_HTTP_BAD_REQUEST, "%s[%zu].config must be an object", list,
                           i);
            return false;
        }
        const json_t *tools = json_object_get(e, "enabledTools");
        if (tools != NULL && !json_is_array(tools)) {
            gw_reply_error(reply, MHD_HTTP_BAD_REQUEST,
                           "%s[%zu].enabledTools must be an array of tool names", list, i);
            return false;
        }
        size_t j;
        const json_t *t;
        json_array_foreach(tools, j, t)
        {
            snprintf(name, sizeof name, "%s[%zu].enabledTools[%zu]", list, i, j);
            if (!text_ok(t, name, 1, MCP_TOOL_BYTES, true, reply))
                return false;
        }
        if (custom) {
            const char *keys[] = {"type", "customType"};
            for (size_t k = 0; k < 2; k++) {
                const json_t *ty = field(e, keys[k]);
                if (ty == NULL)
                    continue;
                const char *s = json_string_value(ty);
                bool known = false;
                for (size_t m = 0; s != NULL && m < sizeof TYPES / sizeof TYPES[0]; m++)
                    known = known || strcmp(s, TYPES[m]) == 0;
                if (!known) {
                    gw_reply_error(reply, MHD_HTTP_BAD_REQUEST,
                                   "%s[%zu].%s must be one of sse, http, json, pipedream", list, i,
                                   keys[k]);
                    return false;
                }
            }
        }
        if (!no_nul(e)) {
            gw_reply_error(reply, MHD_HTTP_BAD_REQUEST, "%s[%zu] must not contain NUL characters",
                           list, i);
            return false;
        }
    }
    return true;
}

static bool color_ok(const json_t *v, gw_reply *reply)
{
    const char *s = json_string_value(v);
    bool ok = s != NULL && strlen(s) == 7 && s[0] == '#';
    for (size_t i = 1; ok && i < 7; i++)
        ok = isxdigit((unsigned char)s[i]) != 0;
    if (!ok)
        gw_reply_error(reply, MHD_HTTP_BAD_REQUEST,
                       "avatar_color must be a color \"#rrggbb\" (6 hexadecimal digits)");
    return ok;
}

static bool tags_ok(const json_t *v, gw_reply *reply)
{
    if (!json_is_array(v) || json_array_size(v) > MAX_TAGS) {
        gw_reply_error(reply, MHD_HTTP_BAD_REQUEST, "tags must be an array of at most %d strings",
                       MAX_TAGS);
        return false;
    }
    size_t i;
    const json_t *t;
    char name[32];
    json_array_foreach(v, i, t)
    {
        snprintf(name, sizeof name, "tags[%zu]", i);
        if (!text_ok(t, name, 1, TAG_CHARS, false, reply))
            return false;
    }
    return true;
}

static bool version_name_ok(const json_t *v, gw_reply *reply)
{
    if (!text_ok(v, "version_name", 1, VERSION_NAME_CHARS, false, reply))
        return false;
    const char *s = json_string_value(v);
    size_t digits = strspn(s + 1, "0123456789");
    if (s[0] == 'v' && digits > 0 && s[1 + digits] == '\0') {
        gw_reply_error(reply, MHD_HTTP_BAD_REQUEST,
                       "version_name: names v<number> are kept for automatic names");
        return false;
    }
    return true;
}

/* One field: checked, then copied into out. */
static bool take(const json_t *in, json_t *out, const char *key, gw_agent_fields_kind kind,
                 size_t max_prompt, gw_reply *reply)
{
    const json_t *v = field(in, key);
    if (v == NULL)
        return true;
    bool ok;
    if (strcmp(key, "name") == 0)
        ok = text_ok(v, key, 1, NAME_CHARS, false, reply);
    else if (strcmp(key, "description") == 0)
        ok = text_ok(v, key, 0, kind == GW_FIELDS_VERSION ? CHANGE_CHARS : DESCRIPTION_CHARS,
                     false, reply);
    else if (strcmp(key, "system_prompt") == 0)
        ok = text_ok(v, key, 0, (size_t)-1, true, reply) &&
            gw_text_fits(key, json_string_value(v), max_prompt, reply);
    else if (strcmp(key, "model") == 0)
        ok = text_ok(v, key, 1, MODEL_BYTES, true, reply);
    else if (strcmp(key, "agentpress_tools") == 0)
        ok = agentpress_ok(v, reply);
    else if (strcmp(key, "configured_mcps") == 0)
        ok = mcps_ok(v, key, false, reply);
    else if (strcmp(key, "custom_mcps") == 0)
        ok = mcps_ok(v, key, true, reply);
    else if (strcmp(key, "is_default") == 0) {
        ok = json_is_boolean(v);
        if (!ok)
            gw_reply_error(reply, MHD_HTTP_BAD_REQUEST, "is_default must be a boolean");
    } else if (strcmp(key, "avatar") == 0)
        ok = text_ok(v, key, 0, AVATAR_CHARS, false, reply);
    else if (strcmp(key, "avatar_color") == 0)
        ok = color_ok(v, reply);
    else if (strcmp(key, "tags") == 0)
        ok = tags_ok(v, reply);
    else if (strcmp(key, "metadata") == 0) {
        ok = json_is_object(v) && no_nul(v);
        if (!ok)
            gw_reply_error(reply, MHD_HTTP_BAD_REQUEST, "metadata must be an object");
    } else if (strcmp(key, "change_description") == 0)
        ok = text_ok(v, key, 0, CHANGE_CHARS, false, reply);
    else if (strcmp(key, "version_name") == 0)
        ok = version_name_ok(v, reply);
    else
        ok = false;
    if (ok)
        json_object_set_new(out, key, json_deep_copy(v));
    return ok;
}

json_t *gw_agent_fields(const json_t *in, gw_agent_fields_kind kind, size_t max_prompt_bytes,
                        gw_reply *reply)
{
    static const char *const AGENT[] = {"name",
                                        "description",
                                        "system_prompt",
                                        "model",
                                        "agentpress_tools",
                                        "configured_mcps",
                                        "custom_mcps",
                                        "is_default",
                                        "avatar",
                                        "avatar_color",
                                        "tags",
                                        NULL};
    static const char *const IMPORT[] = {"name",        "description",      "system_prompt",
                                         "model",       "agentpress_tools", "configured_mcps",
                                         "custom_mcps", "avatar",           "avatar_color",
                                         "tags",        "metadata",         NULL};
    static const char *const VERSION[] = {"system_prompt",   "model",       "agentpress_tools",
                                          "configured_mcps", "custom_mcps", "version_name",
                                          "description",     NULL};
    static const char *const DETAILS[] = {"version_name", "change_description", NULL};
    const char *const *keys = kind == GW_FIELDS_DETAILS ? DETAILS
        : kind == GW_FIELDS_VERSION                     ? VERSION
        : kind == GW_FIELDS_IMPORT                      ? IMPORT
                                                        : AGENT;
    json_t *out = json_object();
    if (out == NULL) {
        gw_reply_error(reply, MHD_HTTP_INTERNAL_SERVER_ERROR, "Out of memory");
        return NULL;
    }
    for (size_t i = 0; keys[i] != NULL; i++) {
        if (!take(in, out, keys[i], kind, max_prompt_bytes, reply)) {
            json_decref(out);
            return NULL;
        }
    }
    const char *missing = NULL;
    if ((kind == GW_FIELDS_CREATE || kind == GW_FIELDS_IMPORT) && !json_object_get(out, "name"))
        missing = "name";
    else if (kind != GW_FIELDS_UPDATE && kind != GW_FIELDS_DETAILS &&
             !json_object_get(out, "system_prompt"))
        missing = "system_prompt";
    if (missing != NULL) {
        gw_reply_error(reply, MHD_HTTP_BAD_REQUEST, "%s is required", missing);
        json_decref(out);
        return NULL;
    }
    if (kind == GW_FIELDS_DETAILS && json_object_size(out) == 0) {
        gw_reply_error(reply, MHD_HTTP_BAD_REQUEST,
                       "nothing to change: give version_name or change_description");
        json_decref(out);
        return NULL;
    }
    if (kind == GW_FIELDS_UPDATE && json_object_size(out) == 0) {
        gw_reply_error(reply, MHD_HTTP_BAD_REQUEST,
                       "nothing to change: give at least one of name, description, "
                       "system_prompt, model, agentpress_tools, configured_mcps, custom_mcps, "
                       "is_default, avatar, avatar_color, tags");
        json_decref(out);
        return NULL;
    }
    return out;
}

json_t *gw_agent_body_fields(const gw_app *app, const gw_request *req, gw_agent_fields_kind kind,
                             gw_reply *reply)
{
    json_t *body = gw_body_json_object(req, false, reply);
    if (body == NULL)
        return NULL;
    json_t *fields = gw_agent_fields(body, kind, app->cfg.max_prompt_bytes, reply);
    json_decref(body);
    return fields;
}
