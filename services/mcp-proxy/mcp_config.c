/* mcp_config.c — parsing and validating KX_MCP_SERVERS (see mcp_config.h). */
#include "mcp_config.h"

#include <ctype.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NAME_MAX_LEN 64

static bool name_valid(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > NAME_MAX_LEN)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!isalnum(c) && c != '_' && c != '.' && c != '-')
            return false;
    }
    return true;
}

/* A valid environment variable name: [A-Za-z_][A-Za-z0-9_]*. */
static bool env_name_valid(const char *s)
{
    if (!isalpha((unsigned char)s[0]) && s[0] != '_')
        return false;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '_')
            return false;
    return true;
}

static void free_strv(char **v)
{
    if (v == NULL)
        return;
    for (char **p = v; *p; p++)
        free(*p);
    free(v);
}

static void free_server(mcp_server_config *s)
{
    free(s->name);
    free_strv(s->argv);
    free_strv(s->env);
}

/* Fills s from the JSON object v; -1 with why on a bad shape. */
static int parse_server(const char *name, const json_t *v, mcp_server_config *s, char *why,
                        size_t whylen)
{
    if (!name_valid(name)) {
        snprintf(why, whylen, "KX_MCP_SERVERS: the server name \"%.80s\" is not valid: use 1 to "
                 "%d letters, digits, '_', '.' or '-'", name, NAME_MAX_LEN);
        return -1;
    }
    if (!json_is_object(v)) {
        snprintf(why, whylen, "KX_MCP_SERVERS: server '%s' must be an object "
                 "{\"command\": ..., \"args\": [...], \"env\": {...}}", name);
        return -1;
    }
    const char *key;
    const json_t *val;
    json_object_foreach((json_t *)v, key, val) {
        if (strcmp(key, "command") != 0 && strcmp(key, "args") != 0 &&
            strcmp(key, "env") != 0 && strcmp(key, "type") != 0) {
            snprintf(why, whylen, "KX_MCP_SERVERS: server '%s' has an unknown key \"%.80s\" "
                     "(known: command, args, env, type)", name, key);
            return -1;
        }
    }
    const json_t *type = json_object_get(v, "type");
    if (type != NULL && (!json_is_string(type) || strcmp(json_string_value(type), "stdio"))) {
        snprintf(why, whylen, "KX_MCP_SERVERS: server '%s': \"type\" must be \"stdio\" (the "
                 "only transport supported today)", name);
        return -1;
    }
    const json_t *command = json_object_get(v, "command");
    if (!json_is_string(command) || json_string_length(command) == 0) {
        snprintf(why, whylen, "KX_MCP_SERVERS: server '%s' needs \"command\", a non-empty "
                 "string", name);
        return -1;
    }
    const json_t *args = json_object_get(v, "args");
    if (args != NULL && !json_is_array(args)) {
        snprintf(why, whylen, "KX_MCP_SERVERS: server '%s': \"args\" must be an array of "
                 "strings", name);
        return -1;
    }
    const json_t *env = json_object_get(v, "env");
    if (env != NULL && !json_is_object(env)) {
        snprintf(why, whylen, "KX_MCP_SERVERS: server '%s': \"env\" must be an object of "
                 "string values", name);
        return -1;
    }

    size_t nargs = json_array_size(args), nenv = json_object_size(env);
    s->name = strdup(name);
    s->argv = calloc(nargs + 2, sizeof *s->argv);
    s->env = calloc(nenv + 1, sizeof *s->env);
    if (s->name == NULL || s->argv == NULL || s->env == NULL)
        goto oom;
    s->argv[0] = strdup(json_string_value(command));
    if (s->argv[0] == NULL)
        goto oom;
    for (size_t i = 0; i < nargs; i++) {
        const json_t *a = json_array_get(args, i);
        if (!json_is_string(a)) {
            snprintf(why, whylen, "KX_MCP_SERVERS: server '%s': args[%zu] is not a string",
                     name, i);
            return -1;
        }
        if ((s->argv[i + 1] = strdup(json_string_value(a))) == NULL)
            goto oom;
    }
    size_t i = 0;
    json_object_foreach((json_t *)env, key, val) {
        if (!env_name_valid(key)) {
            snprintf(why, whylen, "KX_MCP_SERVERS: server '%s': \"%.80s\" is not a valid "
                     "environment variable name", name, key);
            return -1;
        }
        if (!json_is_string(val)) {
            snprintf(why, whylen, "KX_MCP_SERVERS: server '%s': env \"%s\" must be a string",
                     name, key);
            return -1;
        }
        size_t n = strlen(key) + 1 + json_string_length(val) + 1;
        if ((s->env[i] = malloc(n)) == NULL)
            goto oom;
        snprintf(s->env[i], n, "%s=%s", key, json_string_value(val));
        i++;
    }
    return 0;
oom:
    snprintf(why, whylen, "KX_MCP_SERVERS: out of memory");
    return -1;
}

int mcp_config_parse(const char *text, mcp_config *out, char *why, size_t whylen)
{
    memset(out, 0, sizeof *out);
    if (text == NULL || text[0] == '\0')
        text = "{}";
    json_error_t jerr;
    json_t *root = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        snprintf(why, whylen, "KX_MCP_SERVERS is not valid JSON: %s (line %d, column %d)",
                 jerr.text, jerr.line, jerr.column);
        return -1;
    }
    if (!json_is_object(root)) {
        snprintf(why, whylen, "KX_MCP_SERVERS must be a JSON object: name -> {\"command\": "
                 "..., \"args\": [...], \"env\": {...}}");
        json_decref(root);
        return -1;
    }
    out->servers = calloc(json_object_size(root) + 1, sizeof *out->servers);
    if (out->servers == NULL) {
        snprintf(why, whylen, "KX_MCP_SERVERS: out of memory");
        json_decref(root);
        return -1;
    }
    const char *name;
    const json_t *v;
    json_object_foreach(root, name, v) {
        mcp_server_config *s = &out->servers[out->n++];
        if (parse_server(name, v, s, why, whylen) != 0) {
            json_decref(root);
            mcp_config_free(out);
            return -1;
        }
    }
    json_decref(root);
    return 0;
}

void mcp_config_free(mcp_config *c)
{
    if (c == NULL)
        return;
    for (size_t i = 0; i < c->n; i++)
        free_server(&c->servers[i]);
    free(c->servers);
    memset(c, 0, sizeof *c);
}

const mcp_server_config *mcp_config_find(const mcp_config *c, const char *name)
{
    for (size_t i = 0; i < c->n; i++)
        if (strcmp(c->servers[i].name, name) == 0)
            return &c->servers[i];
    return NULL;
}

void mcp_config_names(const mcp_config *c, char *buf, size_t len)
{
    if (len == 0)
        return;
    buf[0] = '\0';
    if (c->n == 0) {
        snprintf(buf, len, "none");
        return;
    }
    size_t used = 0;
    for (size_t i = 0; i < c->n && used < len; i++) {
        int w = snprintf(buf + used, len - used, "%s%s", i ? ", " : "", c->servers[i].name);
        if (w < 0)
            break;
        used += (size_t)w;
    }
}
