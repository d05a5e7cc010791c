/* context.c — builds the chat messages of a thread from its stored LLM rows (see context.h). */
#include "context.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "context_budget.h"
#include "kx/json.h"
#include "kx/log.h"
#include "store.h"

/* The chat role of a row whose content does not say it. */
static const char *role_for_type(const char *type)
{
    if (strcmp(type, "assistant") == 0)
        return "assistant";
    return "user"; /* user rows, and XML tool results (Kortix stores them as role user) */
}

/* Keeps only what the chat API knows; content that is neither text nor a list of parts is
 * printed as JSON text. Steals nothing: returns a new object. */
static json_t *clean_message(const char *type, json_t *obj)
{
    json_t *out = json_object();
    if (out == NULL)
        return NULL;
    const char *role = kx_json_str(obj, "role", NULL);
    if (role == NULL || role[0] == '\0')
        role = role_for_type(type);
    json_object_set_new(out, "role", json_string(role));
    json_t *content = json_object_get(obj, "content");
    json_t *tool_calls = json_object_get(obj, "tool_calls");
    bool has_calls = strcmp(role, "assistant") == 0 && json_is_array(tool_calls) &&
        json_array_size(tool_calls) > 0;
    if (json_is_string(content) || json_is_array(content)) {
        json_object_set(out, "content", content);
    } else if (content == NULL || json_is_null(content)) {
        json_object_set_new(out, "content", has_calls ? json_null() : json_string(""));
    } else {
        char *text = kx_json_dumps_py(content);
        json_object_set_new(out, "content", json_string(text ? text : ""));
        free(text);
    }
    if (has_calls)
        json_object_set(out, "tool_calls", tool_calls);
    if (strcmp(role, "tool") == 0) {
        const char *id = kx_json_str(obj, "tool_call_id", "");
        json_object_set_new(out, "tool_call_id", json_string(id));
        const char *name = kx_json_str(obj, "name", NULL);
        if (name != NULL)
            json_object_set_new(out, "name", json_string(name));
    }
    return out;
}

json_t *context_message_from_row(const char *type, const char *content_text)
{
    json_t *v = json_loads(content_text, JSON_DECODE_ANY, NULL);
    if (json_is_string(v)) { /* a jsonb string: it may hold JSON itself */
        json_t *inner = json_loads(json_string_value(v), JSON_DECODE_ANY, NULL);
        if (json_is_object(inner)) {
            json_decref(v);
            v = inner;
        } else {
            json_decref(inner);
            json_t *msg = json_object();
            if (msg != NULL) {
                json_object_set_new(msg, "role", json_string(role_for_type(type)));
                json_object_set(msg, "content", v);
            }
            json_decref(v);
            return msg;
        }
    }
    if (!json_is_object(v)) { /* a number, an array, or not JSON at all: show it as text */
        json_t *msg = json_object();
        if (msg != NULL) {
            json_object_set_new(msg, "role", json_string(role_for_type(type)));
            json_object_set_new(msg, "content", json_string(content_text));
        }
        json_decref(v);
        return msg;
    }
    json_t *msg = clean_message(type, v);
    json_decref(v);
    return msg;
}

/* Is id among the ids of the assistant message's tool_calls? */
static bool calls_have_id(const json_t *calls, const char *id)
{
    size_t i;
    const json_t *c;
    json_array_foreach(calls, i, c)
    {
        if (strcmp(kx_json_str(c, "id", ""), id) == 0)
            return true;
    }
    return false;
}

/* A tool message answering nobody becomes a user message carrying its text. */
static void demote_tool_message(json_t *msg)
{
    const char *text = kx_json_str(msg, "content", "");
    char *copy = strdup(text);
    json_object_clear(msg);
    json_object_set_new(msg, "role", json_string("user"));
    size_t n = (copy ? strlen(copy) : 0) + 32;
    char *wrapped = malloc(n);
    if (wrapped != NULL)
        snprintf(wrapped, n, "Tool result: %s", copy ? copy : "");
    json_object_set_new(msg, "content", json_string(wrapped ? wrapped : ""));
    free(wrapped);
    free(copy);
}

void context_repair(json_t *messages)
{
    size_t i = 0;
    while (i < json_array_size(messages)) {
        json_t *m = json_array_get(messages, i);
        const char *role = kx_json_str(m, "role", "");
        if (strcmp(role, "tool") == 0) { /* not right after an assistant's calls */
            demote_tool_message(m);
            i++;
            continue;
        }
        const json_t *calls = json_object_get(m, "tool_calls");
        if (strcmp(role, "assistant") != 0 || !json_is_array(calls)) {
            i++;
            continue;
        }
        /* the tool messages that follow this assistant message */
        size_t j = i + 1;
        json_t *answered = json_object();
        while (j < json_array_size(messages)) {
            json_t *t = json_array_get(messages, j);
            if (strcmp(kx_json_str(t, "role", ""), "tool") != 0)
                break;
            const char *id = kx_json_str(t, "tool_call_id", "");
            if (!calls_have_id(calls, id) || json_object_get(answered, id) != NULL)
                break; /* answers another call: ends the block (demoted by the outer loop) */
            json_object_set_new(answered, id, json_true());
            j++;
        }
        /* calls without an answer get one, right after the answered ones */
        size_t k;
        const json_t *c;
        json_array_foreach(calls, k, c)
        {
            const char *id = kx_json_str(c, "id", "");
            if (json_object_get(answered, id) != NULL)
                continue;
            json_t *t = json_object();
            json_object_set_new(t, "role", json_string("tool"));
            json_object_set_new(t, "tool_call_id", json_string(id));
            const char *name = kx_json_str(json_object_get(c, "function"), "name", "");
            json_object_set_new(t, "name", json_string(name));
            json_object_set_new(t, "content", json_string(CONTEXT_MISSING_RESULT));
            json_array_insert_new(messages, j++, t);
            json_object_set_new(answered, id, json_true());
        }
        json_decref(answered);
        i = j;
    }
}

kx_err context_from_rows(const store_msg *rows, size_t n, json_t **messages, char *last_type,
                         size_t last_type_len)
{
    *messages = NULL;
    snprintf(last_type, last_type_len, "%s", "");
    json_t *out = json_array();
    if (out == NULL)
        return KX_ERR_NOMEM;
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && rows[i - 1].nth > 0 && rows[i].nth > rows[i - 1].nth + 1) { /* a gap */
            json_t *note = context_left_out_note((size_t)(rows[i].nth - rows[i - 1].nth - 1));
            if (note == NULL || json_array_append_new(out, note) != 0) {
                json_decref(out);
                return KX_ERR_NOMEM;
            }
        }
        json_t *m = context_message_from_row(rows[i].type, rows[i].content);
        if (m != NULL && rows[i].message_id[0] != '\0')
            json_object_set_new(m, CONTEXT_ID_KEY, json_string(rows[i].message_id));
        if (m == NULL || json_array_append_new(out, m) != 0) {
            json_decref(out);
            return KX_ERR_NOMEM;
        }
    }
    if (n > 0)
        snprintf(last_type, last_type_len, "%s", rows[n - 1].type);
    context_repair(out);
    *messages = out;
    return KX_OK;
}

/* ---- see_image ---------------------------------------------------------------------------- */

static bool image_ref_of(const json_t *content, context_image_ref *out)
{
    json_t *v = json_is_string(content) ? json_loads(json_string_value(content), 0, NULL)
                                        : json_incref((json_t *)content);
    const json_t *img = json_object_get(v, "image");
    const char *path = kx_json_str(img, "file_path", "");
    const char *mime = kx_json_str(img, "mime_type", "");
    bool ok = path[0] != '\0' && strncmp(mime, "image/", 6) == 0 &&
        strlen(path) < sizeof out->file_path && strlen(mime) < sizeof out->mime_type;
    if (ok) {
        snprintf(out->file_path, sizeof out->file_path, "%s", path);
        snprintf(out->mime_type, sizeof out->mime_type, "%s", mime);
        out->size = kx_json_int(img, "size", 0);
    }
    json_decref(v);
    return ok;
}

/* Kortix's XML mode: the result is a user message {"tool_execution": {"function_name":
 * "see_image", "result": {"success": true, "output": {..., "image": {...}}}}} (as text). */
static bool xml_image_ref(const json_t *content, context_image_ref *out)
{
    if (!json_is_string(content) || strstr(json_string_value(content), "see_image") == NULL)
        return false;
    json_t *v = json_loads(json_string_value(content), 0, NULL);
    const json_t *te = json_object_get(v, "tool_execution");
    const json_t *result = json_object_get(te, "result");
    bool ok = strcmp(kx_json_str(te, "function_name", ""), "see_image") == 0 &&
        json_is_true(json_object_get(result, "success")) &&
        image_ref_of(json_object_get(result, "output"), out);
    json_decref(v);
    return ok;
}

bool context_pending_image(const json_t *messages, context_image_ref *out)
{
    for (size_t i = json_array_size(messages); i-- > 0;) {
        const json_t *m = json_array_get(messages, i);
        const char *role = kx_json_str(m, "role", "");
        if (strcmp(role, "assistant") == 0)
            return false;
        if (strcmp(role, "tool") == 0 && strcmp(kx_json_str(m, "name", ""), "see_image") == 0 &&
            image_ref_of(json_object_get(m, "content"), out))
            return true;
        if (strcmp(role, "user") == 0 && xml_image_ref(json_object_get(m, "content"), out))
            return true;
    }
    return false;
}

json_t *context_image_message(const context_image_ref *ref, const unsigned char *data, size_t len)
{
    const char *prefix = "data:";
    size_t plen = strlen(prefix) + strlen(ref->mime_type) + strlen(";base64,");
    size_t blen = 4 * ((len + 2) / 3);
    char *url = malloc(plen + blen + 1);
    if (url == NULL || len > (size_t)INT32_MAX)
        goto fail;
    snprintf(url, plen + 1, "%s%s;base64,", prefix, ref->mime_type);
    EVP_EncodeBlock((unsigned char *)url + plen, data, (int)len);
    char text[800];
    snprintf(text, sizeof text,
             "The image %s (%s, %zu bytes) that you asked to see:", ref->file_path, ref->mime_type,
             len);
    json_t *msg =
        json_pack("{s:s, s:[{s:s, s:s}, {s:s, s:{s:s}}]}", "role", "user", "content", "type",
                  "text", "text", text, "type", "image_url", "image_url", "url", url);
    free(url);
    return msg;
fail:
    free(url);
    return NULL;
}

json_t *context_image_failed_message(const context_image_ref *ref, const char *why)
{
    char text[1200];
    snprintf(text, sizeof text, "The image %s could not be loaded: %s", ref->file_path, why);
    return json_pack("{s:s, s:s}", "role", "user", "content", text);
}
