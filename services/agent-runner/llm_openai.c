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
 * only when asked. Compact, keys in this order: byte for byte what printing that object with
 * kx_json_dumps_compact gives (test_runner_llm_body.c keeps the tree print as its reference),
 * but written straight into one buffer: no tree around the messages, no second copy of the
 * head. The tools (the largest part, the same every turn) are spliced in from tools_text when
 * the caller has it printed already. */
static char *openai_body(const runner_config *cfg, const llm_route *rt, const char *system,
                         const json_t *tools, const char *tools_text, const json_t *messages,
                         int64_t max_tokens)
{
    (void)cfg;
    bool with_tools = json_array_size(tools) > 0;
    char *printed = NULL;
    if (with_tools && tools_text == NULL &&
        (tools_text = printed = kx_json_dumps_compact(tools)) == NULL)
        return NULL;
    size_t sys_len = strlen(system);
    kx_buf b = KX_BUF_INIT;
    /* room for the fixed parts at once; the messages grow it as they come */
    kx_buf_reserve(&b, sys_len + (with_tools ? strlen(tools_text) : 0) + 1024);
    bool ok = kx_buf_str(&b, "{\"model\":") == KX_OK &&
        kx_json_put_compact_str(&b, rt->model, strlen(rt->model)) &&
        kx_buf_str(&b, ",\"messages\":[{\"role\":\"system\",\"content\":") == KX_OK &&
        kx_json_put_compact_str(&b, system, sys_len) && kx_buf_add(&b, "}", 1) == KX_OK;
    for (size_t i = 0; ok && i < json_array_size(messages); i++)
        ok = kx_buf_add(&b, ",", 1) == KX_OK &&
            kx_json_put_compact(&b, json_array_get(messages, i));
    if (ok) {
        kx_buf_str(&b, "],\"stream\":true,\"temperature\":0");
        if (with_tools) {
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
    }
    free(printed);
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
