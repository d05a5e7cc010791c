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

/* The usage estimate: characters / 4, rounded up. */
static void usage_tokens(const demo_turn *t, const demo_reply_meta *meta, json_int_t *prompt,
                         json_int_t *completion)
{
    size_t out_chars = 0;
    if (t->content)
        out_chars += demo_utf8_chars(t->content);
    if (t->tool)
        out_chars += demo_utf8_chars(t->tool) + demo_utf8_chars(t->arguments);
    *prompt = (json_int_t)((meta->prompt_chars + 3) / 4);
    *completion = (json_int_t)((out_chars + 3) / 4);
}

static json_t *usage_json(const demo_turn *t, const demo_reply_meta *meta)
{
    json_int_t prompt, completion;
    usage_tokens(t, meta, &prompt, &completion);
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

/* The chunks are printed straight into text, not built as jansson trees and dumped: a streamed
 * completion is ~10-20 chunks, and one tree + dump per chunk was most of the demo model's CPU.
 * The text is byte for byte what json_dumps(JSON_COMPACT) printed for the same objects (keys in
 * insertion order, '"' '\\' and control characters escaped, \u00XX in upper case, UTF-8 as is);
 * tests/unit/test_demo_script.c compares the two. */

/* s[0..n) as a JSON string literal, escaped as jansson's compact dump escapes it (s is UTF-8). */
static void put_str(kx_buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    kx_buf_add(b, "\"", 1);
    size_t run = 0; /* start of the bytes not copied yet */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        kx_buf_add(b, s + run, i - run);
        run = i + 1;
        char esc[7] = {'\\', 0};
        size_t len = 2;
        switch (c) {
        case '"': esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case '\b': esc[1] = 'b'; break;
        case '\f': esc[1] = 'f'; break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        default:
            esc[1] = 'u';
            esc[2] = '0';
            esc[3] = '0';
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            len = 6;
        }
        kx_buf_add(b, esc, len);
    }
    kx_buf_add(b, s + run, n - run);
    kx_buf_add(b, "\"", 1);
}

static void put_cstr(kx_buf *b, const char *s)
{
    put_str(b, s, strlen(s));
}

typedef struct chunk_list {
    char **items;
    size_t n, cap;
    bool oom;
    kx_buf head; /* `data: {"id":..,"object":"chat.completion.chunk","created":..,"model":..,` */
} chunk_list;

/* Appends the line in b (taken) to the list. */
static void push_buf(chunk_list *l, kx_buf *b)
{
    char *line = kx_buf_take(b);
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

/* A new line that starts with the chunk head, for the caller to finish and push. */
static kx_buf chunk_start(const chunk_list *l)
{
    kx_buf b = KX_BUF_INIT;
    kx_buf_reserve(&b, l->head.len + 128);
    kx_buf_add(&b, l->head.s, l->head.len);
    return b;
}

/* Ends a choice chunk whose delta is in b: finish_reason (NULL = null), then pushes it. */
static void chunk_end(chunk_list *l, kx_buf *b, const char *finish_reason)
{
    kx_buf_str(b, ",\"finish_reason\":");
    if (finish_reason != NULL)
        put_cstr(b, finish_reason);
    else
        kx_buf_str(b, "null");
    kx_buf_str(b, "}]}\n\n");
    push_buf(l, b);
}

/* Splits text into pieces of DEMO_WORDS_PER_CHUNK words; each piece keeps the blanks that follow
 * its last word, so the pieces add up to the text exactly. */
static void push_text(chunk_list *l, const char *text)
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
        kx_buf b = chunk_start(l);
        kx_buf_str(&b,
                   first ? "\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\","
                           "\"content\":"
                         : "\"choices\":[{\"index\":0,\"delta\":{\"content\":");
        put_str(&b, start, (size_t)(p - start));
        kx_buf_str(&b, "}");
        chunk_end(l, &b, NULL);
        first = false;
    } while (*p);
}

/* Streams a tool call: the first delta names it with empty arguments, then the arguments follow
 * in at least two fragments (never splitting a UTF-8 sequence). */
static void push_tool_call(chunk_list *l, const demo_turn *t)
{
    kx_buf b = chunk_start(l);
    kx_buf_str(&b,
               "\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":null,"
               "\"tool_calls\":[{\"index\":0,\"id\":");
    put_cstr(&b, t->call_id);
    kx_buf_str(&b, ",\"type\":\"function\",\"function\":{\"name\":");
    put_cstr(&b, t->tool);
    kx_buf_str(&b, ",\"arguments\":\"\"}}]}");
    chunk_end(l, &b, NULL);

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
        b = chunk_start(l);
        kx_buf_str(&b,
                   "\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,"
                   "\"function\":{\"arguments\":");
        put_str(&b, args + pos, end - pos);
        kx_buf_str(&b, "}}]}");
        chunk_end(l, &b, NULL);
        pos = end;
    }
}

int demo_render_stream(const demo_turn *t, const demo_reply_meta *meta, char ***chunks, size_t *n)
{
    chunk_list l = {.head = KX_BUF_INIT};
    kx_buf_str(&l.head, "data: {\"id\":");
    put_cstr(&l.head, meta->id);
    kx_buf_printf(&l.head, ",\"object\":\"chat.completion.chunk\",\"created\":%lld,\"model\":",
                  (long long)meta->created);
    put_cstr(&l.head, meta->model);
    kx_buf_str(&l.head, ",");
    l.oom = l.head.oom;
    if (t->tool_call)
        push_tool_call(&l, t);
    else
        push_text(&l, t->content);
    kx_buf b = chunk_start(&l);
    kx_buf_str(&b, "\"choices\":[{\"index\":0,\"delta\":{}");
    chunk_end(&l, &b, t->finish_reason);

    json_int_t prompt, completion;
    usage_tokens(t, meta, &prompt, &completion);
    b = chunk_start(&l);
    kx_buf_printf(&b,
                  "\"choices\":[],\"usage\":{\"prompt_tokens\":%lld,\"completion_tokens\":%lld,"
                  "\"total_tokens\":%lld}}\n\n",
                  (long long)prompt, (long long)completion, (long long)(prompt + completion));
    push_buf(&l, &b);
    b = (kx_buf)KX_BUF_INIT;
    kx_buf_str(&b, "data: [DONE]\n\n");
    push_buf(&l, &b);
    kx_buf_free(&l.head);
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
