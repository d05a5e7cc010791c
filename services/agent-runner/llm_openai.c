/* llm_openai.c — the OpenAI-compatible Chat Completions provider (llm_provider.h): POST
 * {base}/chat/completions with "stream": true, "Authorization: Bearer <key>" when a key is set;
 * the answer's chunks are folded by llm_stream.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kx/buf.h"
#include "kx/json.h"
#include "llm_provider.h"

bool llm_header_add(struct curl_slist **list, const char *line)
{
    struct curl_slist *n = curl_slist_append(*list, line);
    if (n == NULL)
        return false;
    *list = n;
    return true;
}

/* {"model", "messages": [system, ...messages], "stream": true, "temperature": 0, "tools",
 * "tool_choice": "auto" (both only when there are tools), "max_tokens" (only when asked)} plus,
 * for a real provider (not the demo model), stream_options.include_usage: OpenAI sends usage
 * only when asked. Compact, keys in this order. The head is printed from a tree; the tools
 * (the largest part, the same every turn) are spliced in from tools_text when the caller has
 * it printed already, and the short tail is written as jansson would print it. */
static char *openai_body(const runner_config *cfg, const llm_route *rt, const char *system,
                         const json_t *tools, const char *tools_text, const json_t *messages,
                         int64_t max_tokens)
{
    (void)cfg;
    json_t *root = json_object();
    json_t *msgs = json_array();
    json_t *sys = json_pack("{s:s, s:s}", "role", "system", "content", system);
    char *head = NULL;
    char *printed = NULL;
    kx_buf b = KX_BUF_INIT;
    bool ok = false;
    if (root == NULL || msgs == NULL || sys == NULL)
        goto done;
    if (json_array_append(msgs, sys) != 0 || json_array_extend(msgs, (json_t *)messages) != 0)
        goto done;
    if (json_object_set_new(root, "model", json_string(rt->model)) != 0 ||
        json_object_set(root, "messages", msgs) != 0 ||
        json_object_set_new(root, "stream", json_true()) != 0 ||
        json_object_set_new(root, "temperature", json_integer(0)) != 0)
        goto done;
    head = kx_json_dumps_compact(root);
    if (head == NULL)
        goto done;
    kx_buf_add(&b, head, strlen(head) - 1); /* without its closing brace */
    if (json_array_size(tools) > 0) {
        if (tools_text == NULL)
            tools_text = printed = kx_json_dumps_compact(tools);
        if (tools_text == NULL)
            goto done;
        kx_buf_str(&b, ",\"tools\":");
        kx_buf_str(&b, tools_text);
        kx_buf_str(&b, ",\"tool_choice\":\"auto\"");
    }
    if (max_tokens > 0)
        kx_buf_printf(&b, ",\"max_tokens\":%" JSON_INTEGER_FORMAT, (json_int_t)max_tokens);
    if (strcmp(rt->provider, "demo") != 0)
        kx_buf_str(&b, ",\"stream_options\":{\"include_usage\":true}");
    kx_buf_add(&b, "}", 1);
    ok = !b.oom;
done:
    free(head);
    free(printed);
    json_decref(root);
    json_decref(msgs);
    json_decref(sys);
    if (!ok) {
        kx_buf_free(&b);
        return NULL;
    }
    return kx_buf_take(&b);
}

static struct curl_slist *openai_headers(const runner_config *cfg, const llm_route *rt)
{
    (void)cfg;
    struct curl_slist *h = NULL;
    if (!llm_header_add(&h, "Content-Type: application/json") ||
        !llm_header_add(&h, "Accept: text/event-stream") || !llm_header_add(&h, "Expect:"))
        goto oom;
    if (rt->api_key[0] != '\0') {
        char auth[600];
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", rt->api_key);
        if (!llm_header_add(&h, auth))
            goto oom;
    }
    return h;
oom:
    curl_slist_free_all(h);
    return NULL;
}

static llm_feed_result openai_feed(llm_stream *s, const char *event, const char *data, size_t len,
                                   size_t *content_from)
{
    (void)event;
    return llm_stream_feed(s, data, len, content_from);
}

const llm_provider llm_openai_provider = {
    .wire_name = "openai",
    .body = openai_body,
    .headers = openai_headers,
    .feed = openai_feed,
};
