/* llm_anthropic_stream.c — Anthropic's streamed Messages events into an llm_stream (see
 * llm_anthropic_stream.h for the mapping). */
#include "llm_anthropic_stream.h"

#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A provider's count: integers >= 0 only, anything else is 0. */
static long long count_of(const json_t *obj, const char *key, long long keep)
{
    const json_t *v = json_object_get(obj, key);
    if (v == NULL || json_is_null(v))
        return keep;
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return 0;
    return (long long)json_integer_value(v);
}

static long long sat_add(long long a, long long b)
{
    long long r;
    return __builtin_add_overflow(a, b, &r) ? LLONG_MAX : r;
}

static void fold_usage(llm_stream *s, const json_t *usage)
{
    if (!json_is_object(usage))
        return;
    s->have_usage = true;
    s->input_tokens = count_of(usage, "input_tokens", s->input_tokens);
    s->cache_creation_tokens =
        count_of(usage, "cache_creation_input_tokens", s->cache_creation_tokens);
    s->cache_read_tokens = count_of(usage, "cache_read_input_tokens", s->cache_read_tokens);
    s->completion_tokens = count_of(usage, "output_tokens", s->completion_tokens);
    s->prompt_tokens =
        sat_add(sat_add(s->input_tokens, s->cache_creation_tokens), s->cache_read_tokens);
    s->total_tokens = sat_add(s->prompt_tokens, s->completion_tokens);
}

static void set_stop_reason(llm_stream *s, const json_t *reason)
{
    if (!json_is_string(reason))
        return;
    const char *r = json_string_value(reason);
    const char *fr = r;
    if (strcmp(r, "end_turn") == 0 || strcmp(r, "stop_sequence") == 0 ||
        strcmp(r, "pause_turn") == 0)
        fr = "stop";
    else if (strcmp(r, "max_tokens") == 0)
        fr = "length";
    else if (strcmp(r, "tool_use") == 0)
        fr = "tool_calls";
    else if (strcmp(r, "refusal") == 0)
        fr = "content_filter";
    if (fr[0] != '\0')
        llm_field_set(s->finish_reason, sizeof s->finish_reason, fr, strlen(fr));
}

static llm_feed_result malformed(llm_stream *s, const char *what)
{
    snprintf(s->error, sizeof s->error, "the Anthropic stream sent %s", what);
    return LLM_FEED_MALFORMED;
}

/* The block index of an event: a non-negative integer that fits an int. */
static bool index_of(const json_t *root, int *out)
{
    const json_t *v = json_object_get(root, "index");
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > INT_MAX)
        return false;
    *out = (int)json_integer_value(v);
    return true;
}

static llm_feed_result add_text(llm_stream *s, const char *text, size_t n)
{
    if (text == NULL || n == 0)
        return LLM_FEED_OK;
    if (llm_text_add(&s->content, text, n) != KX_OK)
        return LLM_FEED_NOMEM;
    s->received_output = true;
    return LLM_FEED_OK;
}

/* A tool_use block (streamed start, or a whole one in a non-streamed message). */
static llm_feed_result start_tool(llm_stream *s, int index, const json_t *block)
{
    llm_tool_call *c;
    llm_feed_result res = llm_stream_call_at(s, index, &c);
    if (res != LLM_FEED_OK)
        return res;
    s->received_output = true;
    size_t n;
    const char *id = llm_json_str(block, "id", &n);
    if (id != NULL && n > 0 && c->id.len == 0 && llm_text_add(&c->id, id, n) != KX_OK)
        return LLM_FEED_NOMEM;
    const char *name = llm_json_str(block, "name", &n);
    if (name != NULL && n > 0 && c->name.len == 0 && llm_text_add(&c->name, name, n) != KX_OK)
        return LLM_FEED_NOMEM;
    const json_t *input = json_object_get(block, "input");
    if (json_is_object(input) && json_object_size(input) > 0 && c->arguments.len == 0) {
        char *text = json_dumps(input, JSON_COMPACT);
        bool ok = text != NULL && kx_buf_add(&c->arguments, text, strlen(text)) == KX_OK;
        free(text);
        if (!ok)
            return LLM_FEED_NOMEM;
        c->args_whole = true;
    }
    return LLM_FEED_OK;
}

static llm_feed_result block_start(llm_stream *s, const json_t *root)
{
    int index;
    const json_t *block = json_object_get(root, "content_block");
    if (!index_of(root, &index) || !json_is_object(block))
        return malformed(s, "a content_block_start without an index or a content_block");
    const json_t *type = json_object_get(block, "type");
    if (!json_is_string(type))
        return malformed(s, "a content block without a type");
    const char *t = json_string_value(type);
    size_t n = 0;
    if (strcmp(t, "text") == 0) {
        const char *text = llm_json_str(block, "text", &n);
        return add_text(s, text, n);
    }
    if (strcmp(t, "tool_use") == 0) {
        if (llm_stream_find_call(s, index) != NULL)
            return malformed(s, "a second content_block_start for the same index");
        return start_tool(s, index, block);
    }
    return LLM_FEED_OK; /* thinking, redacted_thinking, server tools: not ours */
}

static llm_feed_result block_delta(llm_stream *s, const json_t *root)
{
    int index;
    const json_t *d = json_object_get(root, "delta");
    if (!index_of(root, &index) || !json_is_object(d))
        return malformed(s, "a content_block_delta without an index or a delta");
    const json_t *type = json_object_get(d, "type");
    if (!json_is_string(type))
        return malformed(s, "a content_block_delta whose delta has no type");
    const char *t = json_string_value(type);
    size_t n = 0;
    if (strcmp(t, "text_delta") == 0) {
        const char *text = llm_json_str(d, "text", &n);
        if (text == NULL)
            return malformed(s, "a text_delta without text");
        return add_text(s, text, n);
    }
    if (strcmp(t, "input_json_delta") == 0) {
        const char *part = llm_json_str(d, "partial_json", &n);
        if (part == NULL)
            return malformed(s, "an input_json_delta without partial_json");
        llm_tool_call *c = llm_stream_find_call(s, index);
        if (c == NULL)
            return malformed(s, "an input_json_delta for a block that is not a tool_use");
        if (c->args_whole) { /* the deltas are the arguments, not an addition to them */
            c->arguments.len = 0;
            c->args_whole = false;
        }
        if (n > 0 && llm_text_add(&c->arguments, part, n) != KX_OK)
            return LLM_FEED_NOMEM;
        s->received_output = true;
        return LLM_FEED_OK;
    }
    return LLM_FEED_OK;
}

/* A whole (non-streamed) Message: its content blocks in order. */
static llm_feed_result whole_message(llm_stream *s, const json_t *msg)
{
    const json_t *content = json_object_get(msg, "content");
    size_t i;
    const json_t *b;
    json_array_foreach(content, i, b)
    {
        const json_t *type = json_object_get(b, "type");
        if (!json_is_string(type))
            continue;
        llm_feed_result r = LLM_FEED_OK;
        size_t n = 0;
        if (strcmp(json_string_value(type), "text") == 0) {
            const char *text = llm_json_str(b, "text", &n);
            r = add_text(s, text, n);
        } else if (strcmp(json_string_value(type), "tool_use") == 0) {
            r = start_tool(s, (int)(i > INT_MAX ? INT_MAX : i), b);
        }
        if (r != LLM_FEED_OK)
            return r;
    }
    set_stop_reason(s, json_object_get(msg, "stop_reason"));
    return LLM_FEED_OK;
}

llm_feed_result llm_anthropic_feed(llm_stream *s, const char *event, const char *data, size_t len,
                                   size_t *content_from)
{
    if (content_from != NULL)
        *content_from = s->content.len;
    json_error_t jerr;
    json_t *root = json_loadb(data, len, LLM_JSON_FLAGS, &jerr);
    if (!json_is_object(root)) {
        snprintf(s->error, sizeof s->error,
                 "the Anthropic stream sent data that is not a JSON object (%s): %.*s",
                 root ? "wrong type" : jerr.text, (int)(len > 200 ? 200 : len), data);
        json_decref(root);
        return LLM_FEED_MALFORMED;
    }
    const json_t *jtype = json_object_get(root, "type");
    const char *type = json_is_string(jtype) ? json_string_value(jtype) : event;
    llm_feed_result r = LLM_FEED_OK;
    if (type == NULL) {
        r = malformed(s, "an event with no type");
    } else if (strcmp(type, "error") == 0) {
        llm_error_message(data, len, s->error, sizeof s->error);
        r = LLM_FEED_ERROR;
    } else if (strcmp(type, "ping") == 0) {
        r = LLM_FEED_OK;
    } else if (strcmp(type, "message_start") == 0) {
        const json_t *msg = json_object_get(root, "message");
        if (!json_is_object(msg)) {
            r = malformed(s, "a message_start without a message");
        } else {
            s->nchunks++;
            const json_t *model = json_object_get(msg, "model");
            if (json_is_string(model) && s->model[0] == '\0')
                llm_field_set(s->model, sizeof s->model, json_string_value(model),
                              json_string_length(model));
            fold_usage(s, json_object_get(msg, "usage"));
            r = whole_message(s, msg); /* normally empty content, no stop_reason */
        }
    } else if (strcmp(type, "content_block_start") == 0) {
        s->nchunks++;
        r = block_start(s, root);
    } else if (strcmp(type, "content_block_delta") == 0) {
        s->nchunks++;
        r = block_delta(s, root);
    } else if (strcmp(type, "message_delta") == 0) {
        s->nchunks++;
        const json_t *d = json_object_get(root, "delta");
        if (json_is_object(d))
            set_stop_reason(s, json_object_get(d, "stop_reason"));
        fold_usage(s, json_object_get(root, "usage"));
    } else if (strcmp(type, "message_stop") == 0) {
        s->done = true;
        r = LLM_FEED_DONE;
    } else if (strcmp(type, "message") == 0) { /* a whole answer: the server did not stream */
        s->nchunks++;
        const json_t *model = json_object_get(root, "model");
        if (json_is_string(model) && s->model[0] == '\0')
            llm_field_set(s->model, sizeof s->model, json_string_value(model),
                          json_string_length(model));
        fold_usage(s, json_object_get(root, "usage"));
        r = whole_message(s, root);
        if (r == LLM_FEED_OK) {
            s->done = true;
            r = LLM_FEED_DONE;
        }
    }
    json_decref(root);
    return r;
}
