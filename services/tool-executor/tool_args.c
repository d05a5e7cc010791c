/* tool_args.c — argument validation for execute_command (rules in tool_args.h). */
#include "tool_args.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define TOOL "execute_command"

/* A string argument: absent or null -> def; a string -> copy; anything else -> error. */
static kx_err get_string(json_t *obj, const char *key, const char *def, char **out, char *why,
                         size_t whylen)
{
    json_t *v = json_object_get(obj, key);
    const char *s = def;
    if (v != NULL && !json_is_null(v)) {
        if (!json_is_string(v)) {
            snprintf(why, whylen, TOOL ": '%s' must be a string", key);
            return KX_ERR_INVALID;
        }
        s = json_string_value(v);
    }
    *out = strdup(s);
    return *out != NULL ? KX_OK : KX_ERR_NOMEM;
}

static kx_err get_bool(json_t *obj, const char *key, bool def, bool *out, char *why, size_t whylen)
{
    json_t *v = json_object_get(obj, key);
    *out = def;
    if (v == NULL || json_is_null(v))
        return KX_OK;
    if (json_is_boolean(v)) {
        *out = json_is_true(v);
        return KX_OK;
    }
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        if (strcasecmp(s, "true") == 0) {
            *out = true;
            return KX_OK;
        }
        if (strcasecmp(s, "false") == 0) {
            *out = false;
            return KX_OK;
        }
    }
    snprintf(why, whylen, TOOL ": '%s' must be a boolean (true or false)", key);
    return KX_ERR_INVALID;
}

/* Parses a whole string (surrounding spaces allowed) as a decimal integer. */
static bool parse_int_string(const char *s, long long *out)
{
    while (isspace((unsigned char)*s))
        s++;
    if (*s == '\0')
        return false;
    char *end = NULL;
    errno = 0;
    long long n = strtoll(s, &end, 10);
    if (errno != 0 || end == s)
        return false;
    while (isspace((unsigned char)*end))
        end++;
    if (*end != '\0')
        return false;
    *out = n;
    return true;
}

static kx_err get_int_range(json_t *obj, const char *key, int def, int min, int max, int *out,
                            char *why, size_t whylen)
{
    json_t *v = json_object_get(obj, key);
    *out = def;
    if (v == NULL || json_is_null(v))
        return KX_OK;
    long long n = 0;
    bool ok = false;
    if (json_is_integer(v)) {
        n = json_integer_value(v);
        ok = true;
    } else if (json_is_real(v)) { /* 30.0 is an integer; 30.5 is not */
        double d = json_real_value(v);
        ok = d > -1e15 && d < 1e15 && d == (double)(long long)d; /* false for NaN */
        n = ok ? (long long)d : 0;
    } else if (json_is_string(v)) {
        ok = parse_int_string(json_string_value(v), &n);
    }
    if (!ok || n < min || n > max) {
        snprintf(why, whylen, TOOL ": '%s' must be an integer between %d and %d", key, min, max);
        return KX_ERR_INVALID;
    }
    *out = (int)n;
    return KX_OK;
}

kx_err te_exec_args_parse(const char *arguments_json, te_exec_args *out, char *why, size_t whylen)
{
    memset(out, 0, sizeof *out);
    json_error_t jerr;
    json_t *obj = arguments_json != NULL ? json_loads(arguments_json, 0, &jerr) : NULL;
    if (obj == NULL || !json_is_object(obj)) {
        snprintf(why, whylen, TOOL ": arguments must be a JSON object");
        json_decref(obj);
        return KX_ERR_INVALID;
    }

    kx_err err = KX_OK;
    json_t *cmd = json_object_get(obj, "command");
    if (cmd == NULL || !json_is_string(cmd) || json_string_length(cmd) == 0) {
        snprintf(why, whylen, TOOL ": 'command' is required and must be a non-empty string");
        err = KX_ERR_INVALID;
    }
    if (err == KX_OK) {
        out->command = strdup(json_string_value(cmd));
        if (out->command == NULL)
            err = KX_ERR_NOMEM;
    }
    if (err == KX_OK)
        err = get_string(obj, "folder", "", &out->folder, why, whylen);
    if (err == KX_OK)
        err = get_string(obj, "session_name", "", &out->session_name, why, whylen);
    if (err == KX_OK)
        err = get_bool(obj, "blocking", false, &out->blocking, why, whylen);
    if (err == KX_OK)
        err = get_int_range(obj, "timeout", TE_EXEC_DEFAULT_TIMEOUT_S, 1, TE_EXEC_MAX_TIMEOUT_S,
                            &out->timeout_s, why, whylen);
    json_decref(obj);
    if (err != KX_OK) {
        if (err == KX_ERR_NOMEM)
            snprintf(why, whylen, TOOL ": out of memory reading the arguments");
        te_exec_args_free(out);
    }
    return err;
}

void te_exec_args_free(te_exec_args *a)
{
    free(a->command);
    free(a->folder);
    free(a->session_name);
    memset(a, 0, sizeof *a);
}
