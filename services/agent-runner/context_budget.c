/* context_budget.c — the thread cut to the model's context budget (see context_budget.h). */
#include "context_budget.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "context.h"
#include "kx/json.h"
#include "kx/utf8.h"

#define FIRST_THRESHOLD 4096 /* tokens, as Kortix */
#define THRESHOLD_PASSES 6
#define MIN_KEEP_BYTES 64 /* a cut message keeps at least this much of its text */

int64_t context_text_tokens(size_t bytes)
{
    return (int64_t)((bytes * 10 + CONTEXT_BYTES_PER_10_TOKENS - 1) / CONTEXT_BYTES_PER_10_TOKENS);
}

/* The text of a content value: a string, or the text parts of an array. */
static size_t content_bytes(const json_t *content)
{
    if (json_is_string(content))
        return json_string_length(content);
    size_t n = 0, i;
    const json_t *part;
    json_array_foreach(content, i, part)
    {
        const json_t *t = json_object_get(part, "text");
        n += json_is_string(t) ? json_string_length(t) : 64; /* an image reference, roughly */
    }
    return n;
}

int64_t context_message_tokens(const json_t *msg)
{
    size_t bytes = content_bytes(json_object_get(msg, "content"));
    size_t i;
    const json_t *c;
    json_array_foreach(json_object_get(msg, "tool_calls"), i, c)
    {
        const json_t *f = json_object_get(c, "function");
        bytes += strlen(kx_json_str(f, "name", "")) + strlen(kx_json_str(f, "arguments", "")) + 32;
    }
    return context_text_tokens(bytes) + CONTEXT_MSG_OVERHEAD;
}

int64_t context_messages_tokens(const json_t *messages)
{
    int64_t t = 0;
    size_t i;
    const json_t *m;
    json_array_foreach(messages, i, m)
    {
        t += context_message_tokens(m);
    }
    return t;
}

/* The item of KX_CONTEXT_BUDGETS at p ("substring=tokens", up to the next ',' or the end):
 * *len its length, *next the next item (NULL after the last). True with its key (1..127
 * bytes, NUL-terminated) and tokens (1..1000000000) when it is well formed. */
static bool budget_item(const char *p, size_t *len, const char **next, char key[128],
                        long long *tokens)
{
    const char *end = strchr(p, ',');
    *len = end ? (size_t)(end - p) : strlen(p);
    *next = end ? end + 1 : NULL;
    const char *eq = memchr(p, '=', *len);
    if (eq == NULL || eq == p || eq - p >= 128)
        return false;
    char num[24];
    size_t nl = *len - (size_t)(eq + 1 - p);
    if (nl == 0 || nl >= sizeof num)
        return false;
    memcpy(num, eq + 1, nl);
    num[nl] = '\0';
    char *stop = NULL;
    long long v = strtoll(num, &stop, 10);
    if (*stop != '\0' || v < 1 || v > 1000000000)
        return false;
    memcpy(key, p, (size_t)(eq - p));
    key[eq - p] = '\0';
    *tokens = v;
    return true;
}

int64_t context_budget_for(const char *overrides, const char *model)
{
    if (model == NULL)
        model = "";
    size_t len;
    char key[128];
    long long tokens;
    for (const char *p = overrides, *next; p != NULL && *p != '\0'; p = next) {
        if (budget_item(p, &len, &next, key, &tokens) && strstr(model, key) != NULL)
            return tokens;
    }
    static const struct {
        const char *key;
        int64_t tokens;
    } table[] = {
        {"sonnet", 200000 - 64000 - 28000},
        {"gpt", 100000},
        {"gemini", 700000},
        {"deepseek", 100000},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (strstr(model, table[i].key) != NULL)
            return table[i].tokens;
    return CONTEXT_DEFAULT_BUDGET;
}

bool context_budgets_valid(const char *overrides, char *why, size_t whylen)
{
    size_t len;
    char key[128];
    long long tokens;
    for (const char *p = overrides, *next; p != NULL && *p != '\0'; p = next) {
        if (!budget_item(p, &len, &next, key, &tokens)) {
            snprintf(why, whylen,
                     "\"%.*s\" is not substring=tokens (a model-name part of 1 to 127 bytes, "
                     "tokens from 1 to 1000000000)",
                     (int)(len > 100 ? 100 : len), p);
            return false;
        }
    }
    return true;
}

/* The content of msg as one string (text parts joined), malloc'd. */
static char *content_text(const json_t *msg)
{
    const json_t *content = json_object_get(msg, "content");
    if (json_is_string(content))
        return strdup(json_string_value(content));
    size_t n = content_bytes(content) + 1, o = 0, i;
    char *out = calloc(n, 1);
    if (out == NULL)
        return NULL;
    const json_t *part;
    json_array_foreach(content, i, part)
    {
        const char *t = kx_json_str(part, "text", NULL);
        if (t == NULL)
            continue;
        size_t l = strlen(t);
        if (o + l >= n)
            break;
        memcpy(out + o, t, l);
        o += l;
    }
    out[o] = '\0';
    return out;
}

/* The bytes that hold about this many tokens. */
static size_t bytes_for(int64_t tokens)
{
    return tokens > 0 ? (size_t)tokens * CONTEXT_BYTES_PER_10_TOKENS / 10 : 0;
}

/* Cuts msg's content to keep_bytes of text (head only, or head and tail when middle) plus a
 * pointer to expand_message. true when it was cut. -1 on OOM through *oom. */
static bool cut_message(json_t *msg, size_t keep_bytes, bool middle, bool *oom)
{
    char *text = content_text(msg);
    if (text == NULL) {
        *oom = true;
        return false;
    }
    size_t len = strlen(text);
    if (keep_bytes < MIN_KEEP_BYTES)
        keep_bytes = MIN_KEEP_BYTES;
    if (len <= keep_bytes + 200) { /* cutting would save next to nothing */
        free(text);
        return false;
    }
    /* where the text is cut, on character boundaries: [0, head) and, for a middle cut,
     * [tail_from, len) */
    size_t head, tail_from = len;
    if (!middle) {
        head = kx_utf8_floor(text, len, keep_bytes);
    } else {
        head = kx_utf8_floor(text, len, keep_bytes / 2);
        tail_from = kx_utf8_ceil(text, len, len - (keep_bytes - keep_bytes / 2));
    }
    size_t shown = head + (len - tail_from);
    const char *id = kx_json_str(msg, CONTEXT_ID_KEY, "");
    char note[256];
    if (id[0] != '\0')
        snprintf(note, sizeof note,
                 "\n\n... (truncated: %zu of %zu bytes shown)\n\nmessage_id \"%s\"\nUse the "
                 "expand_message tool to see contents",
                 shown, len, id);
    else
        snprintf(note, sizeof note, "\n\n... (truncated: %zu of %zu bytes shown)", shown, len);
    size_t nl = strlen(note);
    char *out = malloc(shown + nl + 2); /* + the newline of a middle cut, + NUL */
    if (out == NULL) {
        free(text);
        *oom = true;
        return false;
    }
    memcpy(out, text, head);
    size_t o = head;
    memcpy(out + o, note, nl);
    o += nl;
    if (middle) {
        out[o++] = '\n';
        memcpy(out + o, text + tail_from, len - tail_from);
        o += len - tail_from;
    }
    out[o] = '\0';
    json_object_set_new(msg, "content", json_string(out));
    free(out);
    free(text);
    return true;
}

static int64_t total(const json_t *messages, int64_t fixed)
{
    return fixed + context_messages_tokens(messages);
}

json_t *context_left_out_note(size_t count)
{
    char text[160];
    snprintf(text, sizeof text,
             "[%zu message%s of this conversation %s left out here: %s not fit in the model's "
             "context.]",
             count, count == 1 ? "" : "s", count == 1 ? "is" : "are",
             count == 1 ? "it does" : "they do");
    return json_pack("{s:s, s:s, s:I}", "role", "user", "content", text, CONTEXT_LEFT_OUT_KEY,
                     (json_int_t)count);
}

static size_t left_out(const json_t *m)
{
    const json_t *v = json_object_get(m, CONTEXT_LEFT_OUT_KEY);
    return json_is_integer(v) && json_integer_value(v) > 0 ? (size_t)json_integer_value(v) : 0;
}

/* removed messages were dropped from place i of messages: the note there counts them (a
 * neighbour note, or a new one). false on OOM. */
static bool note_left_out(json_t *messages, size_t i, size_t removed)
{
    for (size_t k = i > 0 ? i - 1 : 0; k <= i && k < json_array_size(messages); k++) {
        json_t *m = json_array_get(messages, k);
        size_t had = left_out(m);
        if (had > 0) {
            json_t *note = context_left_out_note(had + removed);
            return note != NULL && json_array_set_new(messages, k, note) == 0;
        }
    }
    json_t *note = context_left_out_note(removed);
    return note != NULL && json_array_insert_new(messages, i, note) == 0;
}

/* Drops one message (and, for an assistant with tool calls, its tool results; for a tool
 * result, its whole group) from the middle of messages, a note in its place; never the first,
 * the newest or a note. false when nothing can be dropped. */
static bool drop_middle(json_t *messages, size_t *dropped, bool *oom)
{
    size_t n = json_array_size(messages);
    if (n <= 2)
        return false;
    size_t i = n / 2;
    if (i == 0)
        i = 1;
    if (i >= n - 1)
        i = n - 2;
    if (left_out(json_array_get(messages, i)) > 0) { /* a neighbour, or nothing left to drop */
        if (i + 1 < n - 1 && left_out(json_array_get(messages, i + 1)) == 0)
            i++;
        else if (i > 1 && left_out(json_array_get(messages, i - 1)) == 0)
            i--;
        else
            return false;
    }
    /* walk back from a tool result to the assistant message that asked for it (not past a
     * note: the results after one answer a call that is already left out) */
    while (i > 1 && strcmp(kx_json_str(json_array_get(messages, i), "role", ""), "tool") == 0 &&
           left_out(json_array_get(messages, i - 1)) == 0)
        i--;
    size_t j = i + 1;
    if (json_object_get(json_array_get(messages, i), "tool_calls") != NULL)
        while (j < n - 1 &&
               strcmp(kx_json_str(json_array_get(messages, j), "role", ""), "tool") == 0)
            j++;
    for (size_t k = i; k < j; k++) {
        json_array_remove(messages, i);
        (*dropped)++;
    }
    if (!note_left_out(messages, i, j - i))
        *oom = true;
    return true;
}

int context_fit(json_t *messages, int64_t budget, int64_t fixed_tokens, context_fit_report *report)
{
    context_fit_report rep = {0};
    bool oom = false;
    rep.tokens_before = context_messages_tokens(messages);
    if (budget < 1000)
        budget = 1000;
    int64_t threshold = FIRST_THRESHOLD;
    for (int pass = 0; pass < THRESHOLD_PASSES && total(messages, fixed_tokens) > budget; pass++) {
        size_t n = json_array_size(messages);
        for (size_t i = 0; i + 1 < n && !oom; i++) { /* every message but the newest */
            json_t *m = json_array_get(messages, i);
            if (context_message_tokens(m) > threshold &&
                cut_message(m, bytes_for(threshold), false, &oom))
                rep.truncated++;
        }
        threshold /= 2;
    }
    int64_t over = total(messages, fixed_tokens) - budget;
    size_t n = json_array_size(messages);
    if (over > 0 && n > 0 && !oom) { /* the newest: cut in the middle to what is left */
        json_t *last = json_array_get(messages, n - 1);
        int64_t t = context_message_tokens(last);
        int64_t keep = t - over - CONTEXT_MSG_OVERHEAD - 100;
        if (keep < 0)
            keep = 0;
        if (cut_message(last, bytes_for(keep), true, &oom))
            rep.truncated++;
    }
    bool dropped_any = false;
    while (!oom && total(messages, fixed_tokens) > budget &&
           drop_middle(messages, &rep.dropped, &oom))
        dropped_any = true;
    if (dropped_any)
        context_repair(messages);
    /* the first and the newest alone are still over: cut both to half of what is left */
    for (int round = 0; round < 8 && !oom && total(messages, fixed_tokens) > budget; round++) {
        n = json_array_size(messages);
        int64_t room = budget - fixed_tokens - (int64_t)n * (CONTEXT_MSG_OVERHEAD + 100);
        size_t each = room > 0 ? (size_t)(room / (int64_t)(n ? n : 1)) : 0;
        for (size_t i = 0; i < n && !oom; i++)
            if (cut_message(json_array_get(messages, i), bytes_for((int64_t)each), true, &oom))
                rep.truncated++;
    }
    rep.tokens_after = context_messages_tokens(messages);
    if (report != NULL)
        *report = rep;
    return oom ? -1 : 0;
}

void context_strip_ids(json_t *messages)
{
    size_t i;
    json_t *m;
    json_array_foreach(messages, i, m)
    {
        json_object_del(m, CONTEXT_ID_KEY);
        json_object_del(m, CONTEXT_LEFT_OUT_KEY);
    }
}
