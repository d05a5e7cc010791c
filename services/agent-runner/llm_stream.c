/* llm_stream.c — folds OpenAI chat.completion.chunk objects into one answer (see
 * llm_stream.h). Only jansson and kx_buf are used; everything else is plain C so that it can
 * be unit-tested with canned chunks. */
#include "llm_stream.h"

#include "llm_stream_scan.h"

#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kx/utf8.h"

void llm_stream_init(llm_stream *s)
{
    memset(s, 0, sizeof *s);
}

void llm_stream_free(llm_stream *s)
{
    kx_buf_free(&s->content);
    for (size_t i = 0; i < s->ncalls; i++) {
        kx_buf_free(&s->calls[i].id);
        kx_buf_free(&s->calls[i].name);
        kx_buf_free(&s->calls[i].arguments);
    }
    free(s->calls);
    memset(s, 0, sizeof *s);
}

llm_tool_call *llm_stream_find_call(llm_stream *s, int index)
{
    for (size_t i = 0; i < s->ncalls; i++)
        if (s->calls[i].index == index)
            return &s->calls[i];
    return NULL;
}

llm_feed_result llm_stream_call_at(llm_stream *s, long long index, llm_tool_call **out)
{
    *out = NULL;
    if (index < 0 || index > INT_MAX) {
        snprintf(s->error, sizeof s->error, "the LLM answer has a tool call with index %lld",
                 index);
        return LLM_FEED_MALFORMED;
    }
    llm_tool_call *c = llm_stream_find_call(s, (int)index);
    if (c != NULL) {
        *out = c;
        return LLM_FEED_OK;
    }
    if (s->ncalls >= LLM_MAX_CALLS) {
        snprintf(s->error, sizeof s->error, "the LLM answer has more than %d tool calls",
                 LLM_MAX_CALLS);
        return LLM_FEED_MALFORMED;
    }
    /* appended, never inserted: a call's position does not change once it began */
    if (s->ncalls == s->capcalls) {
        size_t cap = s->capcalls ? s->capcalls * 2 : 4;
        llm_tool_call *n = realloc(s->calls, cap * sizeof *n);
        if (n == NULL)
            return LLM_FEED_NOMEM;
        s->calls = n;
        s->capcalls = cap;
    }
    c = &s->calls[s->ncalls++];
    memset(c, 0, sizeof *c);
    c->index = (int)index;
    *out = c;
    return LLM_FEED_OK;
}

const char *llm_json_str(const json_t *obj, const char *key, size_t *len)
{
    const json_t *v = json_object_get(obj, key);
    if (!json_is_string(v))
        return NULL;
    *len = json_string_length(v);
    return json_string_value(v);
}

void llm_field_set(char *dst, size_t cap, const char *s, size_t n)
{
    const char *nul = memchr(s, '\0', n);
    if (nul != NULL)
        n = (size_t)(nul - s);
    if (n >= cap)
        n = kx_utf8_floor(s, n, cap - 1);
    memcpy(dst, s, n);
    dst[n] = '\0';
}

kx_err llm_text_add(kx_buf *b, const char *s, size_t n)
{
    if (n == 0)
        return KX_OK;
    if (memchr(s, '\0', n) == NULL) /* the usual delta: as it is */
        return kx_buf_add(b, s, n) == KX_OK ? KX_OK : KX_ERR_NOMEM;
    /* jansson's strings are UTF-8: only the NULs become U+FFFD */
    size_t len = 0;
    char *clean = kx_utf8_sanitize(s, n, &len);
    kx_err err = clean != NULL && kx_buf_add(b, clean, len) == KX_OK ? KX_OK : KX_ERR_NOMEM;
    free(clean);
    return err;
}

static llm_feed_result fold_tool_calls(llm_stream *s, const json_t *arr)
{
    size_t i;
    const json_t *tc;
    json_array_foreach(arr, i, tc)
    {
        if (!json_is_object(tc))
            continue;
        const json_t *jidx = json_object_get(tc, "index");
        llm_tool_call *c;
        llm_feed_result res = llm_stream_call_at(
            s, json_is_integer(jidx) ? (long long)json_integer_value(jidx) : (long long)i, &c);
        if (res != LLM_FEED_OK)
            return res;
        s->received_output = true;
        size_t n;
        const char *id = llm_json_str(tc, "id", &n);
        if (id != NULL && n > 0 && c->id.len == 0 && llm_text_add(&c->id, id, n) != KX_OK)
            return LLM_FEED_NOMEM;
        const json_t *fn = json_object_get(tc, "function");
        if (!json_is_object(fn))
            continue;
        const char *name = llm_json_str(fn, "name", &n);
        /* The name normally comes whole in the first fragment; some servers repeat it in
         * every fragment (ignored), a few split it (appended). */
        if (name != NULL && n > 0 && !(c->name.len == n && memcmp(c->name.s, name, n) == 0)) {
            if (llm_text_add(&c->name, name, n) != KX_OK)
                return LLM_FEED_NOMEM;
        }
        const char *args = llm_json_str(fn, "arguments", &n);
        if (args != NULL && n > 0) {
            if (llm_text_add(&c->arguments, args, n) != KX_OK)
                return LLM_FEED_NOMEM;
        } else if (json_is_object(json_object_get(fn, "arguments"))) {
            /* a few servers send the arguments as an object, not as JSON text */
            char *text = json_dumps(json_object_get(fn, "arguments"), JSON_COMPACT);
            bool ok = text != NULL && kx_buf_add(&c->arguments, text, strlen(text)) == KX_OK;
            free(text);
            if (!ok)
                return LLM_FEED_NOMEM;
        }
    }
    return LLM_FEED_OK;
}

/* Folds choices[0].delta (or .message) into s. */
static llm_feed_result fold_choice(llm_stream *s, const json_t *choice)
{
    const json_t *d = json_object_get(choice, "delta");
    if (!json_is_object(d))
        d = json_object_get(choice, "message");
    if (json_is_object(d)) {
        size_t n;
        const char *text = llm_json_str(d, "content", &n);
        if (text != NULL && n > 0) {
            if (llm_text_add(&s->content, text, n) != KX_OK)
                return LLM_FEED_NOMEM;
            s->received_output = true;
        }
        const json_t *tcs = json_object_get(d, "tool_calls");
        llm_feed_result res = json_is_array(tcs) ? fold_tool_calls(s, tcs) : LLM_FEED_OK;
        if (res != LLM_FEED_OK)
            return res;
    }
    const json_t *fr = json_object_get(choice, "finish_reason");
    if (json_is_string(fr) && json_string_length(fr) > 0)
        llm_field_set(s->finish_reason, sizeof s->finish_reason, json_string_value(fr),
                      json_string_length(fr));
    return LLM_FEED_OK;
}

static void error_text(const json_t *err, char *out, size_t outlen)
{
    if (json_is_string(err)) {
        snprintf(out, outlen, "%s", json_string_value(err));
        return;
    }
    const json_t *msg = json_object_get(err, "message");
    const json_t *type = json_object_get(err, "type");
    const json_t *code = json_object_get(err, "code");
    const char *m = json_is_string(msg) ? json_string_value(msg) : "unknown error";
    const char *t = json_is_string(type) ? json_string_value(type)
        : json_is_string(code)           ? json_string_value(code)
                                         : NULL;
    if (t != NULL && t[0] != '\0')
        snprintf(out, outlen, "%s (%s)", m, t);
    else
        snprintf(out, outlen, "%s", m);
}

/* The payload without the white space a server may put around it; true when it is "[DONE]"
 * (then s->done is set). */
static bool trim_done(llm_stream *s, const char **data, size_t *len)
{
    while (*len > 0 && (**data == ' ' || **data == '\n' || **data == '\r' || **data == '\t')) {
        (*data)++;
        (*len)--;
    }
    while (*len > 0 &&
           ((*data)[*len - 1] == ' ' || (*data)[*len - 1] == '\n' || (*data)[*len - 1] == '\r'))
        (*len)--;
    if (*len == 6 && memcmp(*data, "[DONE]", 6) == 0) {
        s->done = true;
        return true;
    }
    return false;
}

static llm_feed_result feed_tree(llm_stream *s, const char *data, size_t len);

llm_feed_result llm_stream_feed(llm_stream *s, const char *data, size_t len, size_t *content_from)
{
    if (content_from != NULL)
        *content_from = s->content.len;
    if (trim_done(s, &data, &len))
        return LLM_FEED_DONE;
    /* the common chunks without a tree (llm_stream_scan.h); the rest through one */
    int fast = llm_stream_scan_feed(s, data, len);
    return fast >= 0 ? (llm_feed_result)fast : feed_tree(s, data, len);
}

llm_feed_result llm_stream_feed_tree(llm_stream *s, const char *data, size_t len,
                                     size_t *content_from)
{
    if (content_from != NULL)
        *content_from = s->content.len;
    if (trim_done(s, &data, &len))
        return LLM_FEED_DONE;
    return feed_tree(s, data, len);
}

/* Folds the chunk through a jansson tree: every shape, and the words for what is wrong. */
static llm_feed_result feed_tree(llm_stream *s, const char *data, size_t len)
{
    json_error_t jerr;
    json_t *root = json_loadb(data, len, LLM_JSON_FLAGS, &jerr);
    if (!json_is_object(root)) {
        snprintf(s->error, sizeof s->error,
                 "the LLM stream sent data that is not a JSON object "
                 "(%s): %.*s",
                 root ? "wrong type" : jerr.text, (int)(len > 200 ? 200 : len), data);
        json_decref(root);
        return LLM_FEED_MALFORMED;
    }
    llm_feed_result res = LLM_FEED_OK;
    const json_t *err = json_object_get(root, "error");
    if (err != NULL && !json_is_null(err)) {
        error_text(err, s->error, sizeof s->error);
        json_decref(root);
        return LLM_FEED_ERROR;
    }
    s->nchunks++;
    const json_t *model = json_object_get(root, "model");
    if (json_is_string(model) && s->model[0] == '\0')
        llm_field_set(s->model, sizeof s->model, json_string_value(model),
                      json_string_length(model));
    const json_t *choices = json_object_get(root, "choices");
    if (choices != NULL && !json_is_array(choices)) {
        snprintf(s->error, sizeof s->error,
                 "the LLM stream sent a chunk whose \"choices\" is "
                 "not an array");
        json_decref(root);
        return LLM_FEED_MALFORMED;
    }
    if (json_array_size(choices) > 0 && json_is_object(json_array_get(choices, 0)))
        res = fold_choice(s, json_array_get(choices, 0));
    const json_t *usage = json_object_get(root, "usage");
    if (json_is_object(usage)) {
        const json_t *total = json_object_get(usage, "total_tokens");
        llm_usage_set(s, json_integer_value(json_object_get(usage, "prompt_tokens")),
                      json_integer_value(json_object_get(usage, "completion_tokens")),
                      json_is_integer(total), json_integer_value(total));
    }
    json_decref(root);
    return res;
}

bool llm_call_id_valid(const char *id, size_t len, size_t max)
{
    if (len == 0 || len > max)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = id[i];
        if (!(c == '_' || c == '-' || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
              (c >= 'A' && c <= 'Z')))
            return false;
    }
    return true;
}

void llm_usage_set(llm_stream *s, long long prompt, long long completion, bool has_total,
                   long long total)
{
    s->have_usage = true;
    s->prompt_tokens = prompt > 0 ? prompt : 0;
    s->completion_tokens = completion > 0 ? completion : 0;
    long long sum;
    if (__builtin_add_overflow(s->prompt_tokens, s->completion_tokens, &sum))
        sum = LLONG_MAX; /* both are >= 0 */
    s->total_tokens = !has_total ? sum : total > 0 ? total : 0;
}

void llm_error_message(const char *body, size_t len, char *out, size_t outlen)
{
    if (outlen == 0)
        return;
    out[0] = '\0';
    if (body == NULL || len == 0) {
        snprintf(out, outlen, "(empty body)");
        return;
    }
    json_t *root = json_loadb(body, len, 0, NULL);
    const json_t *e = NULL;
    if (json_is_object(root)) {
        e = json_object_get(root, "error");
        if (e == NULL || json_is_null(e))
            e = json_object_get(root, "message");
        if (e == NULL || json_is_null(e))
            e = json_object_get(root, "detail");
    }
    if (e != NULL && (json_is_string(e) || json_is_object(e))) {
        error_text(e, out, outlen);
    } else {
        size_t n = len < outlen - 1 ? len : outlen - 1;
        if (n > 300)
            n = 300;
        memcpy(out, body, n);
        out[n] = '\0';
        for (size_t i = 0; i < n; i++)
            if (out[i] == '\n' || out[i] == '\r')
                out[i] = ' ';
    }
    json_decref(root);
}
