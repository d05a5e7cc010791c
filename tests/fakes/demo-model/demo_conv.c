/* demo_conv.c — reading a chat request's messages for the demo model (see demo_conv.h). */
#include "demo_conv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

uint64_t demo_fnv1a(uint64_t h, const void *data, size_t len)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 1099511628211ULL;
    }
    return h;
}

size_t demo_utf8_chars(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        if (((unsigned char)*s & 0xC0) != 0x80)
            n++;
    return n;
}

/* The text of a message's content, malloc'd (see demo_conv.h for the forms). NULL on OOM. */
static char *content_text(const json_t *msg)
{
    const json_t *c = json_object_get(msg, "content");
    if (c == NULL || json_is_null(c))
        return strdup("");
    if (json_is_string(c))
        return strndup(json_string_value(c), json_string_length(c));
    if (json_is_array(c)) {
        size_t total = 1, i;
        const json_t *part;
        json_array_foreach(c, i, part)
        {
            const json_t *t = json_object_get(part, "text");
            if (json_is_string(t))
                total += json_string_length(t) + 1;
        }
        char *out = malloc(total);
        if (out == NULL)
            return NULL;
        size_t len = 0;
        json_array_foreach(c, i, part)
        {
            const json_t *t = json_object_get(part, "text");
            if (!json_is_string(t))
                continue;
            if (len > 0)
                out[len++] = '\n';
            memcpy(out + len, json_string_value(t), json_string_length(t));
            len += json_string_length(t);
        }
        out[len] = '\0';
        return out;
    }
    return json_dumps(c, JSON_COMPACT | JSON_ENCODE_ANY);
}

bool demo_is_tool_result(const char *text)
{
    const char *p = text;
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
        p++;
    if (*p != '{') /* cheap check first: most user messages are prose */
        return false;
    json_t *v = json_loads(text, 0, NULL);
    bool yes = json_is_object(v) && json_object_get(v, "tool_execution") != NULL;
    json_decref(v);
    return yes;
}

/* Counts and describes the image parts of a message's content into out; how many it had. */
static size_t read_images(const json_t *msg, demo_conv *out)
{
    const json_t *c = json_object_get(msg, "content");
    size_t found = 0, i;
    const json_t *part;
    json_array_foreach(c, i, part)
    {
        const json_t *type = json_object_get(part, "type");
        if (!json_is_string(type) || strcmp(json_string_value(type), "image_url") != 0)
            continue;
        const json_t *u = json_object_get(json_object_get(part, "image_url"), "url");
        const char *url = json_is_string(u) ? json_string_value(u) : "";
        const char *comma = strchr(url, ',');
        char desc[128];
        if (strncmp(url, "data:", 5) == 0 && comma != NULL && comma - url > 12 &&
            strncmp(comma - 7, ";base64", 7) == 0) {
            size_t b64 = strlen(comma + 1);
            size_t pad =
                b64 >= 1 && comma[b64] == '=' ? (b64 >= 2 && comma[b64 - 1] == '=' ? 2 : 1) : 0;
            int mlen = (int)(comma - 7 - (url + 5));
            snprintf(desc, sizeof desc, "%.*s %zu bytes", mlen > 60 ? 60 : mlen, url + 5,
                     b64 / 4 * 3 - pad);
        } else {
            snprintf(desc, sizeof desc, "url");
        }
        size_t old = out->images ? strlen(out->images) : 0;
        char *grown = realloc(out->images, old + strlen(desc) + 3);
        if (grown == NULL)
            continue;
        snprintf(grown + old, strlen(desc) + 3, "%s%s", old ? ", " : "", desc);
        out->images = grown;
        out->nimages++;
        found++;
    }
    return found;
}

static int fail(demo_conv *out, char *err, size_t errlen, const char *msg, size_t index)
{
    snprintf(err, errlen, msg, index);
    demo_conv_free(out);
    return -1;
}

/* Replaces *slot with text (taking it). */
static void take(char **slot, char *text)
{
    free(*slot);
    *slot = text;
}

int demo_conv_read(const json_t *messages, demo_conv *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    size_t n = json_array_size(messages);
    for (size_t i = 0; i < n; i++) {
        const json_t *m = json_array_get(messages, i);
        if (!json_is_object(m))
            return fail(out, err, errlen, "messages[%zu] is not an object", i);
        const char *role = json_string_value(json_object_get(m, "role"));
        if (role == NULL)
            return fail(out, err, errlen, "messages[%zu] has no \"role\" string", i);
        char *text = content_text(m);
        if (text == NULL)
            return fail(out, err, errlen, "out of memory reading messages[%zu]", i);
        out->prompt_chars += demo_utf8_chars(text);

        if (strcmp(role, "assistant") == 0) {
            if (out->script != NULL)
                out->step_index++;
            free(text);
        } else if (strcmp(role, "tool") == 0) {
            take(&out->last_tool_result, text);
        } else if (strcmp(role, "user") == 0 && read_images(m, out) > 0) {
            free(text); /* an image attachment (see_image), not the script */
        } else if (strcmp(role, "user") == 0) {
            if (out->first_user == NULL) {
                out->first_user = strdup(text);
                if (out->first_user == NULL) {
                    free(text);
                    return fail(out, err, errlen, "out of memory reading messages[%zu]", i);
                }
            }
            if (demo_is_tool_result(text)) {
                take(&out->last_tool_result, text);
            } else {
                take(&out->script, text);
                out->step_index = 0;
            }
        } else {
            free(text); /* system, developer, ...: not part of the script */
        }
    }
    if (out->first_user == NULL) {
        out->first_user = strdup("");
        if (out->first_user == NULL)
            return fail(out, err, errlen, "out of memory after messages[%zu]", n);
    }
    return 0;
}

void demo_conv_free(demo_conv *c)
{
    if (c == NULL)
        return;
    free(c->first_user);
    free(c->script);
    free(c->last_tool_result);
    free(c->images);
    memset(c, 0, sizeof *c);
}

uint64_t demo_conv_key(const demo_conv *c, size_t step_index)
{
    uint64_t h = DEMO_FNV_OFFSET;
    const char *first = c->first_user ? c->first_user : "";
    const char *script = c->script ? c->script : "";
    h = demo_fnv1a(h, first, strlen(first) + 1); /* + 1: the NUL separates the fields */
    h = demo_fnv1a(h, script, strlen(script) + 1);
    uint64_t step = step_index;
    return demo_fnv1a(h, &step, sizeof step);
}
