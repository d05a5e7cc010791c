/* result_map.c — tools/call results into text, content and structured JSON under a budget
 * (see result_map.h). */
#include "result_map.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kx/buf.h"
#include "kx/utf8.h"

void mcp_mapped_free(mcp_mapped *m)
{
    if (m == NULL)
        return;
    free(m->text);
    free(m->content_json);
    free(m->structured_json);
    memset(m, 0, sizeof *m);
}

static const char *str(const json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "";
}

static void describe_item(kx_buf *b, const json_t *item)
{
    const char *type = str(item, "type");
    if (strcmp(type, "text") == 0) {
        kx_buf_str(b, str(item, "text"));
    } else if (strcmp(type, "image") == 0 || strcmp(type, "audio") == 0) {
        kx_buf_printf(b, "[%s: %s, %zu bytes base64]", type, str(item, "mimeType"),
                      strlen(str(item, "data")));
    } else if (strcmp(type, "resource") == 0) {
        const json_t *r = json_object_get(item, "resource");
        if (json_is_string(json_object_get(r, "text")))
            kx_buf_printf(b, "[resource %s]\n%s", str(r, "uri"), str(r, "text"));
        else
            kx_buf_printf(b, "[resource %s (%s): %zu bytes base64]", str(r, "uri"),
                          str(r, "mimeType"), strlen(str(r, "blob")));
    } else if (strcmp(type, "resource_link") == 0) {
        kx_buf_printf(b, "[resource link: %s %s]", str(item, "uri"), str(item, "name"));
    } else {
        kx_buf_printf(b, "[%.40s content]", type[0] ? type : "untyped");
    }
}

/* Bytes c takes in a JSON string as json_dumps writes it: '"', '\\' and \b \f \n \r \t as two,
 * other control characters as six (\u00XX), everything else as itself. */
static size_t escaped_size(unsigned char c)
{
    if (c == '"' || c == '\\' || c == '\b' || c == '\f' || c == '\n' || c == '\r' || c == '\t')
        return 2;
    return c < 0x20 ? 6 : 1;
}

/* Bytes s[0..n) takes as a JSON string (without its quotes). */
static size_t escaped_len(const char *s, size_t n)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += escaped_size((unsigned char)s[i]);
    return total;
}

/* Cuts b so that, written as a JSON string, it takes at most max bytes (a UTF-8 boundary), plus
 * a note. The budget counts the escaped form because the text travels as output_json, a JSON
 * string: 500 KB of quotes is 1 MB there, of control characters 3 MB. */
static void cut_text(kx_buf *b, size_t max)
{
    size_t total = b->len;
    char note[96];
    int nl =
        snprintf(note, sizeof note, "\n[truncated by mcp-proxy: %%zu of %zu bytes shown]", total);
    size_t room = max > (size_t)nl + 24 ? max - (size_t)nl - 24 : 0;
    size_t keep = 0;
    for (size_t used = 0; keep < total; keep++) {
        used += escaped_size((unsigned char)b->s[keep]);
        if (used > room)
            break;
    }
    keep = kx_utf8_floor(b->s, total, keep);
    b->len = keep;
    b->s[keep] = '\0';
    kx_buf_printf(b, "\n[truncated by mcp-proxy: %zu of %zu bytes shown]", keep, total);
}

/* A copy of content with base64 payloads replaced by a note. */
static json_t *elide(const json_t *content)
{
    json_t *copy = json_deep_copy(content);
    size_t i;
    json_t *item;
    json_array_foreach(copy, i, item)
    {
        const char *keys[] = {"data", NULL};
        for (const char **k = keys; *k; k++) {
            const char *d = json_string_value(json_object_get(item, *k));
            if (d != NULL && strlen(d) > 256) {
                char note[64];
                snprintf(note, sizeof note, "[omitted: %zu bytes]", strlen(d));
                json_object_set_new(item, *k, json_string(note));
            }
        }
        json_t *r = json_object_get(item, "resource");
        const char *names[] = {"blob", "text", NULL};
        for (const char **k = names; r && *k; k++) {
            const char *d = json_string_value(json_object_get(r, *k));
            if (d != NULL && strlen(d) > 256) {
                char note[64];
                snprintf(note, sizeof note, "[omitted: %zu bytes]", strlen(d));
                json_object_set_new(r, *k, json_string(note));
            }
        }
        const char *t = json_string_value(json_object_get(item, "text"));
        if (t != NULL && strlen(t) > 256) {
            char note[64];
            snprintf(note, sizeof note, "[omitted: %zu bytes, see text]", strlen(t));
            json_object_set_new(item, "text", json_string(note));
        }
    }
    return copy;
}

int mcp_result_map(const json_t *result, size_t max_bytes, mcp_mapped *out)
{
    memset(out, 0, sizeof *out);
    if (!json_is_object(result)) {
        out->text = strdup("the MCP server's tools/call result is not an object");
        out->content_json = strdup("[]");
        out->is_error = true;
        return -1;
    }
    out->is_error = json_is_true(json_object_get(result, "isError"));
    const json_t *content = json_object_get(result, "content");
    const json_t *structured = json_object_get(result, "structuredContent");
    kx_buf text = KX_BUF_INIT;
    size_t i;
    const json_t *item;
    json_array_foreach(content, i, item)
    {
        if (i > 0)
            kx_buf_str(&text, "\n");
        describe_item(&text, item);
    }
    if (json_array_size(content) == 0 && structured != NULL) {
        char *s = json_dumps(structured, JSON_COMPACT | JSON_ENCODE_ANY);
        kx_buf_str(&text, s ? s : "");
        free(s);
    }
    kx_buf_str(&text, ""); /* non-NULL even when empty */
    if (!text.oom && escaped_len(text.s, text.len) > max_bytes / 2) {
        cut_text(&text, max_bytes / 2);
        out->truncated = true;
    }
    out->text = kx_buf_take(&text);

    size_t quarter = max_bytes / 4;
    if (json_is_array(content)) {
        out->content_json = json_dumps(content, JSON_COMPACT);
        if (out->content_json && strlen(out->content_json) > quarter) {
            free(out->content_json);
            json_t *small = elide(content);
            out->content_json = small ? json_dumps(small, JSON_COMPACT) : NULL;
            json_decref(small);
            out->truncated = true;
            if (out->content_json && strlen(out->content_json) > quarter) {
                free(out->content_json);
                out->content_json = strdup("[]");
            }
        }
    } else {
        out->content_json = strdup("[]");
    }
    if (structured != NULL) {
        out->structured_json = json_dumps(structured, JSON_COMPACT | JSON_ENCODE_ANY);
        if (out->structured_json && strlen(out->structured_json) > quarter) {
            free(out->structured_json);
            out->structured_json = NULL;
            out->truncated = true;
        }
    }
    if (out->text == NULL || out->content_json == NULL) {
        mcp_mapped_free(out);
        return -1;
    }
    return 0;
}
