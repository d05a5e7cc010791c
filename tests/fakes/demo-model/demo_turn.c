/* demo_turn.c — building a demo model turn and printing it in OpenAI's wire format
 * (see demo_turn.h).
 *
 * The XML form of a call is Kortix's:
 *   <function_calls>
 *   <invoke name="TOOL">
 *   <parameter name="K">V</parameter>      one per argument, in written order; string values
 *   </invoke>                              raw, all others as compact JSON
 *   </function_calls>
 */
#include "demo_turn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kx/buf.h"

#define ARG_FRAGMENT_BYTES 24 /* tool-call arguments are streamed in pieces of about this */

/* Byte length of the first max_chars UTF-8 code points of s. */
static size_t utf8_prefix(const char *s, size_t max_chars)
{
    size_t chars = 0, i = 0;
    for (; s[i]; i++) {
        if (((unsigned char)s[i] & 0xC0) != 0x80) {
            if (chars == max_chars)
                break;
            chars++;
        }
    }
    return i;
}

/* ---- building ---- */

char *demo_xml_call(const char *tool, const json_t *args)
{
    kx_buf b = KX_BUF_INIT; /* its out-of-memory state is checked once, by kx_buf_take */
    kx_buf_str(&b, "<function_calls>\n<invoke name=\"");
    kx_buf_str(&b, tool);
    kx_buf_str(&b, "\">\n");
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)args, key, v)
    {
        kx_buf_str(&b, "<parameter name=\"");
        kx_buf_str(&b, key);
        kx_buf_str(&b, "\">");
        if (json_is_string(v)) {
            kx_buf_add(&b, json_string_value(v), json_string_length(v));
        } else {
            char *js = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
            if (js == NULL) {
                kx_buf_free(&b);
                return NULL;
            }
            kx_buf_str(&b, js);
            free(js);
        }
        kx_buf_str(&b, "</parameter>\n");
    }
    kx_buf_str(&b, "</invoke>\n</function_calls>");
    return kx_buf_take(&b);
}

static char *final_answer(const demo_conv *conv)
{
    kx_buf b = KX_BUF_INIT;
    if (conv->last_tool_result == NULL) {
        kx_buf_str(&b, "Done. There was no tool result.");
    } else {
        kx_buf_str(&b, "Done. The last tool result was: ");
        kx_buf_add(&b, conv->last_tool_result,
                   utf8_prefix(conv->last_tool_result, DEMO_RESULT_QUOTE_CHARS));
    }
    if (conv->nimages > 0) /* what a test of see_image looks for */
        kx_buf_printf(&b, " [images received: %zu: %s]", conv->nimages, conv->images);
    return kx_buf_take(&b);
}

int demo_turn_build(const demo_step *step, size_t step_index, const demo_conv *conv,
                    demo_turn *out)
{
    memset(out, 0, sizeof *out);
    out->finish_reason = "stop";
    if (step == NULL) {
        out->content = final_answer(conv);
    } else if (step->kind == DEMO_STEP_SAY) {
        out->content = strdup(step->text);
    } else if (step->kind == DEMO_STEP_XML) {
        out->content = demo_xml_call(step->tool, step->args);
    } else {
        out->tool_call = true;
        out->finish_reason = "tool_calls";
        out->tool = strdup(step->tool);
        out->arguments = json_dumps(step->args, JSON_COMPACT);
        if (out->tool == NULL || out->arguments == NULL) {
            demo_turn_free(out);
            return -1;
        }
        uint64_t h = demo_conv_key(conv, step_index);
        h = demo_fnv1a(h, out->tool, strlen(out->tool));
        h = demo_fnv1a(h, out->arguments, strlen(out->arguments));
        char id[64];
        snprintf(id, sizeof id, "call_%zu_%08x", step_index, (unsigned)(h ^ (h >> 32)));
        out->call_id = strdup(id);
        if (out->call_id == NULL) {
            demo_turn_free(out);
            return -1;
        }
        return 0;
    }
    if (out->content == NULL) {
        demo_turn_free(out);
        return -1;
    }
    return 0;
}

void demo_turn_free(demo_turn *t)
{
    if (t == NULL)
        return;
    free(t->content);
    free(t->tool);
    free(t->arguments);
    free(t->call_id);
    memset(t, 0, sizeof *t);
}

/* ---- rendering ---- */

static json_t *usage_json(const demo_turn *t, const demo_reply_meta *meta)
{
    size_t out_chars = 0;
    if (t->content)
        out_chars += demo_utf8_chars(t->content);
    if (t->tool)
        out_chars += demo_utf8_chars(t->tool) + demo_utf8_chars(t->arguments);
    json_int_t prompt = (json_int_t)((meta->prompt_chars + 3) / 4);
    json_int_t completion = (json_int_t)((out_chars + 3) / 4);
    return json_pack("{s:I, s:I, s:I}", "prompt_tokens", prompt, "completion_tokens", completion,
                     "total_tokens", prompt + completion);
}

static json_t *tool_call_json(const demo_turn *t)
{
    return json_pack("{s:s, s:s, s:{s:s, s:s}}", "id", t->call_id, "type", "function", "function",
                     "name", t->tool, "arguments", t->arguments);
}

static char *dump_and_free(json_t *v)
{
    if (v == NULL)
        return NULL;
    char *s = json_dumps(v, JSON_COMPACT);
    json_decref(v);
    return s;
}

char *demo_render_completion(const demo_turn *t, const demo_reply_meta *meta)
{
    json_t *message = json_pack("{s:s}", "role", "assistant");
    if (message == NULL)
        return NULL;
    if (t->tool_call) {
        json_object_set_new(message, "content", json_null());
        json_object_set_new(message, "tool_calls", json_pack("[o]", tool_call_json(t)));
    } else {
        json_object_set_new(message, "content", json_string(t->content));
    }
    json_t *v = json_pack("{s:s, s:s, s:I, s:s, s:[{s:i, s:o, s:s}], s:o}", "id", meta->id,
                          "object", "chat.completion", "created", (json_int_t)meta->created,
                          "model", meta->model, "choices", "index", 0, "message", message,
                          "finish_reason", t->finish_reason, "usage", usage_json(t, meta));
    return dump_and_free(v);
}

/* ---- streaming ---- */

typedef struct chunk_list {
    char **items;
    size_t n, cap;
    bool oom;
} chunk_list;

static void push_line(chunk_list *l, char *json_text)
{
    if (json_text == NULL) {
        l->oom = true;
        return;
    }
    kx_buf b = KX_BUF_INIT;
    kx_buf_str(&b, "data: ");
    kx_buf_str(&b, json_text);
    kx_buf_str(&b, "\n\n");
    free(json_text);
    char *line = kx_buf_take(&b);
    if (line == NULL || l->oom) {
        free(line);
        l->oom = true;
        return;
    }
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        char **g = realloc(l->items, cap * sizeof *g);
        if (g == NULL) {
            free(line);
            l->oom = true;
            return;
        }
        l->items = g;
        l->cap = cap;
    }
    l->items[l->n++] = line;
}

/* One chat.completion.chunk with this delta (taken) and finish_reason (NULL = null). */
static void push_chunk(chunk_list *l, const demo_reply_meta *meta, json_t *delta,
                       const char *finish_reason)
{
    json_t *fr = finish_reason ? json_string(finish_reason) : json_null();
    json_t *v = json_pack("{s:s, s:s, s:I, s:s, s:[{s:i, s:o, s:o}]}", "id", meta->id, "object",
                          "chat.completion.chunk", "created", (json_int_t)meta->created, "model",
                          meta->model, "choices", "index", 0, "delta", delta, "finish_reason", fr);
    push_line(l, dump_and_free(v));
}

/* Splits text into pieces of DEMO_WORDS_PER_CHUNK words; each piece keeps the blanks that follow
 * its last word, so the pieces add up to the text exactly. */
static void push_text(chunk_list *l, const demo_reply_meta *meta, const char *text)
{
    const char *p = text;
    bool first = true;
    do {
        const char *start = p;
        int words = 0;
        while (*p) {
            bool space = (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r');
            if (!space &&
                (p == start || p[-1] == ' ' || p[-1] == '\n' || p[-1] == '\t' || p[-1] == '\r')) {
                if (words == DEMO_WORDS_PER_CHUNK)
                    break;
                words++;
            }
            p++;
        }
        json_t *piece = json_stringn(start, (size_t)(p - start));
        json_t *delta = first ? json_pack("{s:s, s:o}", "role", "assistant", "content", piece)
                              : json_pack("{s:o}", "content", piece);
        push_chunk(l, meta, delta, NULL);
        first = false;
    } while (*p);
}

/* Streams a tool call: the first delta names it with empty arguments, then the arguments follow
 * in at least two fragments (never splitting a UTF-8 sequence). */
static void push_tool_call(chunk_list *l, const demo_turn *t, const demo_reply_meta *meta)
{
    json_t *delta = json_pack("{s:s, s:n, s:[{s:i, s:s, s:s, s:{s:s, s:s}}]}", "role", "assistant",
                              "content", "tool_calls", "index", 0, "id", t->call_id, "type",
                              "function", "function", "name", t->tool, "arguments", "");
    push_chunk(l, meta, delta, NULL);

    const char *args = t->arguments;
    size_t len = strlen(args);
    size_t pieces = (len + ARG_FRAGMENT_BYTES - 1) / ARG_FRAGMENT_BYTES;
    if (pieces < 2)
        pieces = 2;
    size_t step = (len + pieces - 1) / pieces;
    size_t pos = 0;
    while (pos < len) {
        size_t end = pos + step < len ? pos + step : len;
        while (end < len && ((unsigned char)args[end] & 0xC0) == 0x80)
            end++;
        json_t *d = json_pack("{s:[{s:i, s:{s:s%}}]}", "tool_calls", "index", 0, "function",
                              "arguments", args + pos, end - pos);
        push_chunk(l, meta, d, NULL);
        pos = end;
    }
}

int demo_render_stream(const demo_turn *t, const demo_reply_meta *meta, char ***chunks, size_t *n)
{
    chunk_list l = {0};
    if (t->tool_call)
        push_tool_call(&l, t, meta);
    else
        push_text(&l, meta, t->content);
    push_chunk(&l, meta, json_object(), t->finish_reason);

    json_t *u = json_pack("{s:s, s:s, s:I, s:s, s:[], s:o}", "id", meta->id, "object",
                          "chat.completion.chunk", "created", (json_int_t)meta->created, "model",
                          meta->model, "choices", "usage", usage_json(t, meta));
    push_line(&l, dump_and_free(u));
    char *done = strdup("[DONE]");
    push_line(&l, done);
    if (l.oom) {
        demo_chunks_free(l.items, l.n);
        return -1;
    }
    *chunks = l.items;
    *n = l.n;
    return 0;
}

void demo_chunks_free(char **chunks, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(chunks[i]);
    free(chunks);
}

char *demo_render_error(int status, const char *message, const char *code)
{
    const char *type = "server_error";
    if (status == 401 || status == 403)
        type = "authentication_error";
    else if (status == 404)
        type = "not_found_error";
    else if (status == 429)
        type = "rate_limit_error";
    else if (status >= 400 && status < 500)
        type = "invalid_request_error";
    return dump_and_free(
        json_pack("{s:{s:s, s:s, s:s}}", "error", "message", message, "type", type, "code", code));
}
