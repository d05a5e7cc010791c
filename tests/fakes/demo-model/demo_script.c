/* demo_script.c — the parser of the demo model's script (see demo_script.h for the language).
 *
 * One pass over the lines: a directive line either appends a step (call, xml, say) or sets a
 * modifier on the "pending" modifiers, which the next step takes over. A malformed directive
 * line appends a say-step that explains the problem (and takes the pending modifiers like any
 * step). Pure: no I/O, no globals. */
#include "demo_script.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOOL_NAME_MAX 64  /* OpenAI's limit for function names */
#define LINE_QUOTE_MAX 80 /* how much of a bad line an error message repeats */

/* ---- small string helpers ---- */

static const char *skip_blanks(const char *s, const char *end)
{
    while (s < end && (*s == ' ' || *s == '\t'))
        s++;
    return s;
}

static const char *skip_word(const char *s, const char *end)
{
    while (s < end && *s != ' ' && *s != '\t')
        s++;
    return s;
}

static bool word_is(const char *w, size_t len, const char *name)
{
    return strlen(name) == len && memcmp(w, name, len) == 0;
}

/* Parses [s, end) as a decimal integer in [min, max]; no sign, no spaces. */
static bool parse_int(const char *s, const char *end, int64_t min, int64_t max, int64_t *out)
{
    if (s == end || end - s > 18)
        return false;
    int64_t v = 0;
    for (const char *p = s; p < end; p++) {
        if (!isdigit((unsigned char)*p))
            return false;
        v = v * 10 + (*p - '0');
    }
    if (v < min || v > max)
        return false;
    *out = v;
    return true;
}

/* A valid tool name: 1..64 of [A-Za-z0-9_-], as OpenAI requires of function names. */
static bool tool_name_valid(const char *s, size_t len)
{
    if (len == 0 || len > TOOL_NAME_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!isalnum(c) && c != '_' && c != '-')
            return false;
    }
    return true;
}

/* ---- building the script ---- */

typedef struct parser {
    demo_script *out;
    size_t cap;
    demo_mods pending; /* modifiers waiting for the next step */
    bool oom;
} parser;

static demo_step *append_step(parser *p, demo_step_kind kind, int line)
{
    demo_script *s = p->out;
    if (s->nsteps == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 8;
        demo_step *grown = realloc(s->steps, cap * sizeof *grown);
        if (grown == NULL) {
            p->oom = true;
            return NULL;
        }
        s->steps = grown;
        p->cap = cap;
    }
    demo_step *st = &s->steps[s->nsteps++];
    memset(st, 0, sizeof *st);
    st->kind = kind;
    st->line = line;
    st->mods = p->pending;
    memset(&p->pending, 0, sizeof p->pending);
    return st;
}

/* Appends the say-step that explains why line `lineno` (text [ls, le)) was not understood. */
static void add_error(parser *p, int lineno, const char *ls, const char *le, const char *why)
{
    size_t len = (size_t)(le - ls);
    const char *ellipsis = "";
    if (len > LINE_QUOTE_MAX) {
        len = LINE_QUOTE_MAX;
        /* never cut a UTF-8 character in half: the text goes into JSON */
        while (len > 0 && ((unsigned char)ls[len] & 0xC0) == 0x80)
            len--;
        ellipsis = "...";
    }
    int n = snprintf(NULL, 0, "Demo model: cannot read line %d (%.*s%s): %s", lineno, (int)len, ls,
                     ellipsis, why);
    char *text = malloc((size_t)n + 1);
    if (text == NULL) {
        p->oom = true;
        return;
    }
    snprintf(text, (size_t)n + 1, "Demo model: cannot read line %d (%.*s%s): %s", lineno, (int)len,
             ls, ellipsis, why);
    demo_step *st = append_step(p, DEMO_STEP_SAY, lineno);
    if (st == NULL) {
        free(text);
        return;
    }
    st->text = text;
    st->is_error = true;
    p->out->nerrors++;
}

/* call|xml <tool> <json-object>: rest is what follows the directive word. */
static void parse_tool_line(parser *p, demo_step_kind kind, const char *directive, int lineno,
                            const char *ls, const char *rest, const char *le)
{
    char why[256];
    const char *name = skip_blanks(rest, le);
    const char *name_end = skip_word(name, le);
    if (name == name_end) {
        snprintf(why, sizeof why,
                 "`%s` needs a tool name and a JSON object of arguments, "
                 "e.g. `%s execute_command {\"command\": \"ls\"}`",
                 directive, directive);
        add_error(p, lineno, ls, le, why);
        return;
    }
    if (!tool_name_valid(name, (size_t)(name_end - name))) {
        snprintf(why, sizeof why,
                 "`%s`: the tool name must be 1 to %d letters, digits, '_' or "
                 "'-'",
                 directive, TOOL_NAME_MAX);
        add_error(p, lineno, ls, le, why);
        return;
    }
    const char *js = skip_blanks(name_end, le);
    if (js == le) {
        snprintf(why, sizeof why,
                 "`%s %.*s` needs a JSON object of arguments after the tool "
                 "name (use {} for none)",
                 directive, (int)(name_end - name), name);
        add_error(p, lineno, ls, le, why);
        return;
    }
    json_error_t jerr;
    json_t *args = json_loadb(js, (size_t)(le - js), JSON_REJECT_DUPLICATES, &jerr);
    if (args == NULL) {
        snprintf(why, sizeof why,
                 "`%s`: the arguments are not valid JSON: %s (at character %d "
                 "of the arguments)",
                 directive, jerr.text, jerr.position);
        add_error(p, lineno, ls, le, why);
        return;
    }
    if (!json_is_object(args)) {
        snprintf(why, sizeof why, "`%s`: the arguments must be a JSON object, not %s", directive,
                 json_is_array(args) ? "an array" : "a scalar");
        json_decref(args);
        add_error(p, lineno, ls, le, why);
        return;
    }
    char *tool = strndup(name, (size_t)(name_end - name));
    if (tool == NULL) {
        json_decref(args);
        p->oom = true;
        return;
    }
    demo_step *st = append_step(p, kind, lineno);
    if (st == NULL) {
        free(tool);
        json_decref(args);
        return;
    }
    st->tool = tool;
    st->args = args;
}

static void parse_say_line(parser *p, int lineno, const char *ls, const char *rest, const char *le)
{
    const char *t = skip_blanks(rest, le);
    if (t == le) {
        add_error(p, lineno, ls, le, "`say` needs the text to answer, e.g. `say Hello`");
        return;
    }
    char *text = strndup(t, (size_t)(le - t));
    if (text == NULL) {
        p->oom = true;
        return;
    }
    demo_step *st = append_step(p, DEMO_STEP_SAY, lineno);
    if (st == NULL) {
        free(text);
        return;
    }
    st->text = text;
}

/* Splits rest into at most two blank-separated words; false if there are more. */
static bool split_args(const char *rest, const char *le, const char *w[2], const char *we[2],
                       int *count)
{
    *count = 0;
    const char *s = skip_blanks(rest, le);
    while (s < le) {
        if (*count == 2)
            return false;
        w[*count] = s;
        we[*count] = skip_word(s, le);
        s = skip_blanks(we[*count], le);
        (*count)++;
    }
    return true;
}

static void parse_modifier(parser *p, const char *directive, int lineno, const char *ls,
                           const char *rest, const char *le)
{
    const char *w[2], *we[2];
    int n = 0;
    bool ok = split_args(rest, le, w, we, &n);
    char why[256];
    int64_t a = 0, b = 0;

    if (strcmp(directive, "sleep") == 0) {
        if (!ok || n != 1 || !parse_int(w[0], we[0], 0, DEMO_MAX_SLEEP_MS, &a)) {
            snprintf(why, sizeof why,
                     "`sleep` needs one whole number of milliseconds from 0 to "
                     "%d, e.g. `sleep 500`",
                     DEMO_MAX_SLEEP_MS);
            add_error(p, lineno, ls, le, why);
            return;
        }
        p->pending.sleep_ms = a;
    } else if (strcmp(directive, "fail") == 0) {
        if (!ok || n != 2 || !parse_int(w[0], we[0], 400, 599, &a) ||
            !parse_int(w[1], we[1], 1, DEMO_MAX_COUNT, &b)) {
            snprintf(why, sizeof why,
                     "`fail` needs an HTTP status from 400 to 599 and a number "
                     "of attempts from 1 to %d, e.g. `fail 503 2`",
                     DEMO_MAX_COUNT);
            add_error(p, lineno, ls, le, why);
            return;
        }
        p->pending.fail_status = (int)a;
        p->pending.fail_count = (int)b;
    } else { /* hang */
        if (!ok || n > 1 || (n == 1 && !parse_int(w[0], we[0], 1, DEMO_MAX_COUNT, &a))) {
            snprintf(why, sizeof why,
                     "`hang` takes nothing (every attempt hangs) or a number of "
                     "attempts from 1 to %d, e.g. `hang 1`",
                     DEMO_MAX_COUNT);
            add_error(p, lineno, ls, le, why);
            return;
        }
        p->pending.hang = true;
        p->pending.hang_count = (int)a;
    }
}

/* One line [ls, le) without its line end. */
static void parse_line(parser *p, int lineno, const char *ls, const char *le)
{
    const char *w = skip_blanks(ls, le);
    const char *we = skip_word(w, le);
    size_t wl = (size_t)(we - w);
    if (word_is(w, wl, "call"))
        parse_tool_line(p, DEMO_STEP_CALL, "call", lineno, w, we, le);
    else if (word_is(w, wl, "xml"))
        parse_tool_line(p, DEMO_STEP_XML, "xml", lineno, w, we, le);
    else if (word_is(w, wl, "say"))
        parse_say_line(p, lineno, w, we, le);
    else if (word_is(w, wl, "sleep"))
        parse_modifier(p, "sleep", lineno, w, we, le);
    else if (word_is(w, wl, "fail"))
        parse_modifier(p, "fail", lineno, w, we, le);
    else if (word_is(w, wl, "hang"))
        parse_modifier(p, "hang", lineno, w, we, le);
    /* anything else is prose: ignored */
}

int demo_script_parse(const char *text, demo_script *out)
{
    memset(out, 0, sizeof *out);
    parser p = {.out = out};
    if (text == NULL)
        return 0;
    const char *s = text;
    int lineno = 1;
    while (!p.oom) {
        const char *nl = strchr(s, '\n');
        const char *le = nl ? nl : s + strlen(s);
        const char *content_end = le;
        if (content_end > s && content_end[-1] == '\r')
            content_end--;
        parse_line(&p, lineno, s, content_end);
        if (nl == NULL)
            break;
        s = nl + 1;
        lineno++;
    }
    if (p.oom) {
        demo_script_free(out);
        return -1;
    }
    out->final_mods = p.pending;
    return 0;
}

void demo_script_free(demo_script *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i < s->nsteps; i++) {
        free(s->steps[i].tool);
        free(s->steps[i].text);
        json_decref(s->steps[i].args);
    }
    free(s->steps);
    memset(s, 0, sizeof *s);
}

const demo_step *demo_script_step(const demo_script *s, size_t index)
{
    return index < s->nsteps ? &s->steps[index] : NULL;
}

const demo_mods *demo_script_mods(const demo_script *s, size_t index)
{
    return index < s->nsteps ? &s->steps[index].mods : &s->final_mods;
}
