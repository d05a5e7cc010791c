/* mcp_config.c — parsing and validating MCP server configurations (see mcp_config.h). */
#include "mcp_config.h"

#include <ctype.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NAME_MAX_LEN 64
#define URL_MAX_LEN 2048

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

/* An HTTP header name: a token (RFC 9110). */
static bool header_name_valid(const char *s)
{
    if (*s == '\0')
        return false;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && !strchr("!#$%&'*+-.^_`|~", *s))
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

static char **copy_strv(char *const *v)
{
    if (v == NULL)
        return NULL;
    size_t n = 0;
    while (v[n])
        n++;
    char **out = calloc(n + 1, sizeof *out);
    for (size_t i = 0; out && i < n; i++)
        if ((out[i] = strdup(v[i])) == NULL) {
            free_strv(out);
            return NULL;
        }
    return out;
}

const char *mcp_transport_name(mcp_transport_kind kind)
{
    return kind == MCP_T_HTTP ? "http" : kind == MCP_T_SSE ? "sse" : "stdio";
}

void mcp_server_free(mcp_server_config *s)
{
    if (s == NULL)
        return;
    free(s->name);
    free_strv(s->argv);
    free_strv(s->env);
    free(s->url);
    free_strv(s->headers);
    memset(s, 0, sizeof *s);
}

int mcp_server_copy(const mcp_server_config *src, mcp_server_config *dst)
{
    memset(dst, 0, sizeof *dst);
    dst->kind = src->kind;
    dst->user = src->user;
    memcpy(dst->hash, src->hash, sizeof dst->hash);
    dst->name = strdup(src->name);
    dst->argv = copy_strv(src->argv);
    dst->env = copy_strv(src->env);
    dst->headers = copy_strv(src->headers);
    dst->url = src->url ? strdup(src->url) : NULL;
    if (dst->name == NULL || (src->argv && !dst->argv) || (src->env && !dst->env) ||
        (src->headers && !dst->headers) || (src->url && !dst->url)) {
        mcp_server_free(dst);
        return -1;
    }
    return 0;
}

/* The config is digested as a list of fields, each a presence byte, its length (8 bytes) and
 * its bytes, and each string list its count first: no two configs give the same input. */
static void feed(EVP_MD_CTX *ctx, const char *s)
{
    uint64_t n = s != NULL ? strlen(s) : 0;
    unsigned char head[9] = {s != NULL};
    for (int i = 0; i < 8; i++)
        head[i + 1] = (unsigned char)(n >> (8 * i));
    EVP_DigestUpdate(ctx, head, sizeof head);
    if (n > 0)
        EVP_DigestUpdate(ctx, s, n);
}

static void feed_strv(EVP_MD_CTX *ctx, char *const *v)
{
    char count[24];
    size_t n = 0;
    while (v != NULL && v[n] != NULL)
        n++;
    snprintf(count, sizeof count, "%zu", n);
    feed(ctx, v != NULL ? count : NULL);
    for (size_t i = 0; i < n; i++)
        feed(ctx, v[i]);
}

/* SHA-256, not a 64-bit hash: the key of the tool-list cache that every account shares, so a
 * config crafted to hash like another account's must not be found (with FNV-1a-64 two configs
 * sharing a key took minutes to find, and one's tool list was served for the other). */
int mcp_server_hash(mcp_server_config *s)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = ctx != NULL && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1;
    if (ok) {
        feed(ctx, mcp_transport_name(s->kind));
        feed(ctx, s->user ? "user" : "operator");
        feed_strv(ctx, s->argv);
        feed_strv(ctx, s->env);
        feed(ctx, s->url);
        feed_strv(ctx, s->headers);
        ok = EVP_DigestFinal_ex(ctx, md, &mdlen) == 1 && mdlen * 2 + 1 <= sizeof s->hash;
    }
    EVP_MD_CTX_free(ctx);
    s->hash[0] = '\0';
    if (!ok)
        return -1;
    for (unsigned int i = 0; i < mdlen; i++)
        snprintf(s->hash + 2 * i, 3, "%02x", md[i]);
    return 0;
}

int mcp_server_set_stdio(mcp_server_config *s, const json_t *command, const json_t *args,
                         const json_t *env, const char *where, char *why, size_t whylen)
{
    s->kind = MCP_T_STDIO;
    if (!json_is_string(command) || json_string_length(command) == 0) {
        snprintf(why, whylen, "%s needs \"command\", a non-empty string", where);
        return -1;
    }
    if (args != NULL && !json_is_array(args)) {
        snprintf(why, whylen, "%s: \"args\" must be an array of strings", where);
        return -1;
    }
    if (env != NULL && !json_is_object(env)) {
        snprintf(why, whylen, "%s: \"env\" must be an object of string values", where);
        return -1;
    }
    size_t nargs = json_array_size(args), nenv = json_object_size(env);
    s->argv = calloc(nargs + 2, sizeof *s->argv);
    s->env = calloc(nenv + 1, sizeof *s->env);
    if (s->argv == NULL || s->env == NULL)
        goto oom;
    if ((s->argv[0] = strdup(json_string_value(command))) == NULL)
        goto oom;
    for (size_t i = 0; i < nargs; i++) {
        const json_t *a = json_array_get(args, i);
        if (!json_is_string(a)) {
            snprintf(why, whylen, "%s: args[%zu] is not a string", where, i);
            return -1;
        }
        if ((s->argv[i + 1] = strdup(json_string_value(a))) == NULL)
            goto oom;
    }
    size_t i = 0;
    const char *key;
    const json_t *val;
    json_object_foreach((json_t *)env, key, val)
    {
        if (!env_name_valid(key)) {
            snprintf(why, whylen, "%s: \"%.80s\" is not a valid environment variable name", where,
                     key);
            return -1;
        }
        if (!json_is_string(val)) {
            snprintf(why, whylen, "%s: env \"%s\" must be a string", where, key);
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
    snprintf(why, whylen, "%s: out of memory", where);
    return -1;
}

int mcp_server_set_url(mcp_server_config *s, mcp_transport_kind kind, const json_t *url,
                       const json_t *headers, const char *where, char *why, size_t whylen)
{
    s->kind = kind;
    const char *u = json_string_value(url);
    if (u == NULL || (strncmp(u, "http://", 7) != 0 && strncmp(u, "https://", 8) != 0) ||
        strlen(u) > URL_MAX_LEN) {
        snprintf(why, whylen,
                 "%s needs \"url\", an http:// or https:// URL of at most %d "
                 "characters",
                 where, URL_MAX_LEN);
        return -1;
    }
    for (const char *c = u; *c; c++)
        if ((unsigned char)*c <= ' ' || *c == 0x7f) {
            snprintf(why, whylen, "%s: \"url\" contains a space or control character", where);
            return -1;
        }
    if (headers != NULL && json_is_null(headers))
        headers = NULL;
    if (headers != NULL && !json_is_object(headers)) {
        snprintf(why, whylen, "%s: \"headers\" must be an object of string values", where);
        return -1;
    }
    if ((s->url = strdup(u)) == NULL ||
        (s->headers = calloc(json_object_size(headers) + 1, sizeof *s->headers)) == NULL)
        goto oom;
    size_t i = 0;
    const char *key;
    const json_t *val;
    json_object_foreach((json_t *)headers, key, val)
    {
        const char *v = json_string_value(val);
        if (!header_name_valid(key) || v == NULL || strpbrk(v, "\r\n") != NULL) {
            snprintf(why, whylen,
                     "%s: header \"%.80s\" needs a token name and a string value "
                     "without line breaks",
                     where, key);
            return -1;
        }
        size_t n = strlen(key) + 2 + strlen(v) + 1;
        if ((s->headers[i] = malloc(n)) == NULL)
            goto oom;
        snprintf(s->headers[i++], n, "%s: %s", key, v);
    }
    return 0;
oom:
    snprintf(why, whylen, "%s: out of memory", where);
    return -1;
}

/* Fills s from the JSON object v; -1 with why on a bad shape. */
static int parse_server(const char *name, const json_t *v, mcp_server_config *s, char *why,
                        size_t whylen)
{
    if (!name_valid(name)) {
        snprintf(why, whylen,
                 "KX_MCP_SERVERS: the server name \"%.80s\" is not valid: use 1 to "
                 "%d letters, digits, '_', '.' or '-'",
                 name, NAME_MAX_LEN);
        return -1;
    }
    if (!json_is_object(v)) {
        snprintf(why, whylen,
                 "KX_MCP_SERVERS: server '%s' must be an object "
                 "{\"command\": ..., \"args\": [...], \"env\": {...}} or {\"type\": \"http\", "
                 "\"url\": ...}",
                 name);
        return -1;
    }
    char where[128];
    snprintf(where, sizeof where, "KX_MCP_SERVERS: server '%s'", name);
    const json_t *type = json_object_get(v, "type");
    const char *t = type ? json_string_value(type) : "stdio";
    if (t == NULL ||
        (strcmp(t, "stdio") != 0 && strcmp(t, "http") != 0 && strcmp(t, "sse") != 0)) {
        snprintf(why, whylen,
                 "%s: \"type\" must be \"stdio\", \"http\" (Streamable HTTP) or "
                 "\"sse\" (legacy HTTP+SSE)",
                 where);
        return -1;
    }
    bool stdio = strcmp(t, "stdio") == 0;
    const char *key;
    const json_t *val;
    json_object_foreach((json_t *)v, key, val)
    {
        bool ok = strcmp(key, "type") == 0 ||
            (stdio ? (!strcmp(key, "command") || !strcmp(key, "args") || !strcmp(key, "env"))
                   : (!strcmp(key, "url") || !strcmp(key, "headers")));
        if (!ok) {
            snprintf(why, whylen, "%s has an unknown key \"%.80s\" (known for type %s: %s)", where,
                     key, t, stdio ? "command, args, env, type" : "url, headers, type");
            return -1;
        }
    }
    if ((s->name = strdup(name)) == NULL) {
        snprintf(why, whylen, "KX_MCP_SERVERS: out of memory");
        return -1;
    }
    int rc = stdio
        ? mcp_server_set_stdio(s, json_object_get(v, "command"), json_object_get(v, "args"),
                               json_object_get(v, "env"), where, why, whylen)
        : mcp_server_set_url(s, strcmp(t, "http") == 0 ? MCP_T_HTTP : MCP_T_SSE,
                             json_object_get(v, "url"), json_object_get(v, "headers"), where, why,
                             whylen);
    if (rc == 0 && mcp_server_hash(s) != 0) {
        snprintf(why, whylen, "%s: out of memory", where);
        rc = -1;
    }
    return rc;
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
        snprintf(why, whylen,
                 "KX_MCP_SERVERS must be a JSON object: name -> {\"command\": "
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
    json_object_foreach(root, name, v)
    {
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
        mcp_server_free(&c->servers[i]);
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
