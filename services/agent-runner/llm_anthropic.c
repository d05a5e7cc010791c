/* llm_anthropic.c — the Anthropic Messages provider (llm_provider.h): POST {base}/v1/messages
 * with "stream": true and the headers x-api-key and anthropic-version; the answer's events are
 * folded by llm_anthropic_stream.c.
 *
 * The thread (OpenAI chat shape, context.h) becomes Anthropic's shape:
 *   system prompt              -> the top-level "system"
 *   {"role": "user", content}  -> a user turn with text blocks, and image blocks for its
 *                                 image_url parts (see_image's data URLs: base64 sources)
 *   assistant + tool_calls     -> an assistant turn: a text block (if any text), then one
 *                                 tool_use block {id, name, input} per call (input is the
 *                                 parsed arguments; arguments that are not a JSON object
 *                                 become {"_raw": "<text>"} so the request stays valid)
 *   {"role": "tool", ...}      -> a tool_result block {tool_use_id, content} in a user turn
 * Consecutive messages of one role are merged into one turn (all tool_results answering an
 * assistant turn must be in the next user turn), empty text blocks are left out (the API
 * refuses them), and a turn left with no block is dropped.
 *   tools [{type: function, function: {name, description, parameters}}]
 *                              -> [{name, description, input_schema}]
 * "max_tokens" (required by the API) is KX_LLM_MAX_TOKENS. */
#include <stdio.h>
#include <string.h>

#include "kx/json.h"
#include "llm_anthropic_stream.h"
#include "llm_provider.h"

/* The text of an OpenAI content: a string, or the text parts of an array of parts. New
 * reference to a string, NULL on OOM. */
static json_t *text_of(const json_t *content)
{
    if (json_is_string(content))
        return json_incref((json_t *)content);
    kx_buf b = {0};
    size_t i;
    const json_t *part;
    json_array_foreach(content, i, part)
    {
        const json_t *t = json_object_get(part, "text");
        if (json_is_string(t) &&
            kx_buf_add(&b, json_string_value(t), json_string_length(t)) != KX_OK) {
            kx_buf_free(&b);
            return NULL;
        }
    }
    json_t *s = json_stringn(b.s ? b.s : "", b.len);
    kx_buf_free(&b);
    return s;
}

static bool add_text_block(json_t *blocks, const json_t *content)
{
    json_t *t = text_of(content);
    if (t == NULL)
        return false;
    if (json_string_length(t) == 0) {
        json_decref(t);
        return true;
    }
    return json_array_append_new(blocks, json_pack("{s:s, s:o}", "type", "text", "text", t)) == 0;
}

/* The image parts of an OpenAI content ({"type": "image_url", "image_url": {"url":
 * "data:<mime>;base64,<data>"}}: see_image, context.h) as image blocks {"type": "image",
 * "source": {"type": "base64", "media_type", "data"}}; a part that is not a base64 data URL
 * becomes {"type": "image", "source": {"type": "url", "url"}}. */
static bool add_image_blocks(json_t *blocks, const json_t *content)
{
    size_t i;
    const json_t *part;
    json_array_foreach(content, i, part)
    {
        if (strcmp(kx_json_str(part, "type", ""), "image_url") != 0)
            continue;
        const char *url = kx_json_str(json_object_get(part, "image_url"), "url", "");
        const char *comma = strchr(url, ',');
        json_t *b;
        if (strncmp(url, "data:", 5) == 0 && comma != NULL && comma - url > 12 &&
            strncmp(comma - 7, ";base64", 7) == 0) {
            json_t *mime = json_stringn(url + 5, (size_t)(comma - 7 - (url + 5)));
            b = json_pack("{s:s, s:{s:s, s:o, s:s}}", "type", "image", "source", "type", "base64",
                          "media_type", mime, "data", comma + 1);
        } else {
            b = json_pack("{s:s, s:{s:s, s:s}}", "type", "image", "source", "type", "url", "url",
                          url);
        }
        if (b == NULL || json_array_append_new(blocks, b) != 0)
            return false;
    }
    return true;
}

/* A tool id as Anthropic takes it: the stored one when it is 1..64 bytes of [A-Za-z0-9_-],
 * else "kx_" and 16 hex digits of its FNV-1a hash — the same for the tool_use and the
 * tool_result that name one id, so a thread stored with ids another provider made (or with
 * none) is not refused with a 400 on every later turn. */
static void anthropic_id(const json_t *id, char out[72])
{
    const char *s = json_is_string(id) ? json_string_value(id) : "";
    size_t n = strlen(s);
    if (llm_call_id_valid(s, n, 64)) {
        memcpy(out, s, n + 1);
        return;
    }
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
    snprintf(out, 72, "kx_%016llx", (unsigned long long)h);
}

static bool add_tool_uses(json_t *blocks, const json_t *calls)
{
    size_t i;
    const json_t *tc;
    json_array_foreach(calls, i, tc)
    {
        const json_t *fn = json_object_get(tc, "function");
        const json_t *id = json_object_get(tc, "id");
        const json_t *name = json_object_get(fn, "name");
        const json_t *args = json_object_get(fn, "arguments");
        json_t *input = NULL;
        if (json_is_string(args))
            input = json_loads(json_string_value(args), 0, NULL);
        else if (json_is_object(args))
            input = json_incref((json_t *)args);
        if (!json_is_object(input)) {
            json_decref(input);
            input = json_is_string(args) && json_string_length(args) > 0
                ? json_pack("{s:O}", "_raw", args)
                : json_object();
        }
        char aid[72];
        anthropic_id(id, aid);
        json_t *b = json_pack("{s:s, s:s, s:s, s:o}", "type", "tool_use", "id", aid, "name",
                              json_is_string(name) ? json_string_value(name) : "", "input", input);
        if (b == NULL || json_array_append_new(blocks, b) != 0)
            return false;
    }
    return true;
}

static bool add_tool_result(json_t *blocks, const json_t *msg)
{
    const json_t *id = json_object_get(msg, "tool_call_id");
    json_t *text = text_of(json_object_get(msg, "content"));
    if (text == NULL)
        return false;
    char aid[72];
    anthropic_id(id, aid);
    json_t *b =
        json_pack("{s:s, s:s, s:o}", "type", "tool_result", "tool_use_id", aid, "content", text);
    return b != NULL && json_array_append_new(blocks, b) == 0;
}

/* Appends blocks as a turn of role, merged into the last turn when it has the same role. */
static bool push_turn(json_t *turns, const char *role, json_t *blocks)
{
    if (json_array_size(blocks) == 0) {
        json_decref(blocks);
        return true;
    }
    json_t *last = json_array_get(turns, json_array_size(turns) - 1);
    const json_t *lrole = json_object_get(last, "role");
    if (json_is_string(lrole) && strcmp(json_string_value(lrole), role) == 0) {
        /* a tool_result must come first in its turn: results go before the text they follow */
        int rc = json_array_extend(json_object_get(last, "content"), blocks);
        json_decref(blocks);
        return rc == 0;
    }
    return json_array_append_new(turns,
                                 json_pack("{s:s, s:o}", "role", role, "content", blocks)) == 0;
}

static json_t *convert_messages(const json_t *messages)
{
    json_t *turns = json_array();
    if (turns == NULL)
        return NULL;
    size_t i;
    const json_t *m;
    json_array_foreach(messages, i, m)
    {
        const json_t *jrole = json_object_get(m, "role");
        const char *role = json_is_string(jrole) ? json_string_value(jrole) : "user";
        json_t *blocks = json_array();
        bool ok = blocks != NULL;
        const char *to = "user";
        if (ok && strcmp(role, "tool") == 0) {
            ok = add_tool_result(blocks, m);
        } else if (ok && strcmp(role, "assistant") == 0) {
            to = "assistant";
            ok = add_text_block(blocks, json_object_get(m, "content")) &&
                add_tool_uses(blocks, json_object_get(m, "tool_calls"));
        } else if (ok) { /* user, and a stray system message: as user text */
            ok = add_text_block(blocks, json_object_get(m, "content")) &&
                add_image_blocks(blocks, json_object_get(m, "content"));
        }
        if (!ok || !push_turn(turns, to, blocks)) {
            if (!ok)
                json_decref(blocks);
            json_decref(turns);
            return NULL;
        }
    }
    return turns;
}

static json_t *convert_tools(const json_t *tools)
{
    json_t *out = json_array();
    size_t i;
    const json_t *t;
    json_array_foreach(tools, i, t)
    {
        const json_t *fn = json_object_get(t, "function");
        const json_t *name = json_object_get(fn, "name");
        if (!json_is_string(name))
            continue;
        const json_t *desc = json_object_get(fn, "description");
        const json_t *params = json_object_get(fn, "parameters");
        json_t *schema = json_is_object(params) ? json_incref((json_t *)params)
                                                : json_pack("{s:s}", "type", "object");
        json_t *a = json_pack("{s:O, s:o}", "name", name, "input_schema", schema);
        if (a != NULL && json_is_string(desc))
            json_object_set(a, "description", (json_t *)desc);
        if (a == NULL || json_array_append_new(out, a) != 0) {
            json_decref(out);
            return NULL;
        }
    }
    return out;
}

char *llm_anthropic_body(const char *model, int64_t max_tokens, const char *system,
                         const json_t *tools, const json_t *messages)
{
    json_t *turns = convert_messages(messages);
    json_t *atools = convert_tools(tools);
    json_t *root = json_object();
    char *out = NULL;
    if (turns == NULL || atools == NULL || root == NULL)
        goto done;
    if (json_object_set_new(root, "model", json_string(model)) != 0 ||
        json_object_set_new(root, "max_tokens", json_integer(max_tokens)) != 0 ||
        json_object_set_new(root, "system", json_string(system)) != 0 ||
        json_object_set(root, "messages", turns) != 0 ||
        json_object_set_new(root, "stream", json_true()) != 0 ||
        json_object_set_new(root, "temperature", json_integer(0)) != 0)
        goto done;
    if (json_array_size(atools) > 0 &&
        (json_object_set(root, "tools", atools) != 0 ||
         json_object_set_new(root, "tool_choice", json_pack("{s:s}", "type", "auto")) != 0))
        goto done;
    out = kx_json_dumps_compact(root);
done:
    json_decref(turns);
    json_decref(atools);
    json_decref(root);
    return out;
}

static char *anthropic_body(const runner_config *cfg, const llm_route *rt, const char *system,
                            const json_t *tools, const char *tools_text, const json_t *messages,
                            int64_t max_tokens)
{
    (void)tools_text; /* Anthropic's tools have another shape: converted from the tree */
    return llm_anthropic_body(rt->model, max_tokens > 0 ? max_tokens : cfg->llm_max_tokens, system,
                              tools, messages);
}

static struct curl_slist *anthropic_headers(const runner_config *cfg, const llm_route *rt)
{
    struct curl_slist *h = NULL;
    char line[600];
    if (!llm_header_add(&h, "Content-Type: application/json") ||
        !llm_header_add(&h, "Accept: text/event-stream") || !llm_header_add(&h, "Expect:"))
        goto oom;
    snprintf(line, sizeof line, "anthropic-version: %s", cfg->anthropic_version);
    if (!llm_header_add(&h, line))
        goto oom;
    if (rt->api_key[0] != '\0') {
        snprintf(line, sizeof line, "x-api-key: %s", rt->api_key);
        if (!llm_header_add(&h, line))
            goto oom;
    }
    return h;
oom:
    curl_slist_free_all(h);
    return NULL;
}

const llm_provider llm_anthropic_provider = {
    .wire_name = "anthropic",
    .body = anthropic_body,
    .headers = anthropic_headers,
    .feed = llm_anthropic_feed,
};
