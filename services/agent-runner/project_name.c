/* project_name.c — a new project's name from the model (see project_name.h). */
#include "project_name.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "context.h"
#include "kx/json.h"
#include "kx/log.h"
#include "kx/metrics.h"
#include "kx/utf8.h"
#include "llm.h"
#include "rdb.h"
#include "store.h"

#define NAMING_MAX_TOKENS 20
#define REQUEST_CHARS 2000 /* of the first message, in the naming request */

static const char NAMING_SYSTEM[] =
    "You are a helpful assistant that generates extremely concise titles (2-4 words maximum) "
    "for chat threads based on the user's message. Respond with only the title, no other text "
    "or punctuation.";

typedef struct namer {
    struct namer *next;
    runner *owner;
    llm_call *call;
    char run_id[40];
    char project_id[40];
    char *old_name;
} namer;

static namer *g_namers; /* in flight (loop thread only) */

static void namer_free(namer *n)
{
    for (namer **p = &g_namers; *p != NULL; p = &(*p)->next)
        if (*p == n) {
            *p = n->next;
            break;
        }
    llm_call_free(n->call);
    free(n->old_name);
    free(n);
}

void project_name_cancel_all(void)
{
    while (g_namers != NULL)
        namer_free(g_namers);
}

bool project_name_clean(const char *answer, char *out, size_t outlen)
{
    out[0] = '\0';
    if (answer == NULL || outlen == 0)
        return false;
    const char *s = answer;
    while (*s != '\0' && (isspace((unsigned char)*s) || strchr("\"'`*#", *s) != NULL))
        s++;
    size_t n = strcspn(s, "\r\n"); /* the first line */
    while (n > 0 && (isspace((unsigned char)s[n - 1]) || strchr("\"'`*.", s[n - 1]) != NULL))
        n--;
    size_t cap = outlen - 1 < PROJECT_NAME_MAX ? outlen - 1 : PROJECT_NAME_MAX;
    n = kx_utf8_floor(s, n, cap); /* n itself when it fits */
    memcpy(out, s, n);
    out[n] = '\0';
    return n > 0;
}

static void count(const char *result)
{
    char labels[48];
    snprintf(labels, sizeof labels, "result=\"%s\"", result);
    kx_counter_add(kx_metrics_counter("kx_runner_project_names_total", labels,
                                      "Project auto-naming attempts, by outcome"),
                   1);
}

static bool on_content(void *arg, const char *delta, size_t len)
{
    (void)arg;
    (void)delta;
    (void)len;
    return true;
}

/* The rename, on a database thread (rdb.h); the job owns copies of what it writes. */
typedef struct rename_job {
    rdb_job base;
    char run_id[40], project_id[40];
    char title[PROJECT_NAME_MAX + 1];
    char *old_name;
    kx_err err;
    bool renamed;
} rename_job;

static void rename_run(kx_db *db, rdb_job *j)
{
    rename_job *x = (rename_job *)j;
    x->err = store_project_rename(db, x->project_id, x->title, x->old_name, &x->renamed);
}

static void rename_done(rdb_job *j, bool live)
{
    rename_job *x = (rename_job *)j;
    if (live) {
        if (x->err != KX_OK)
            kx_log(KX_LOG_WARN, x->run_id, NULL, "naming: could not save the name: %s",
                   kx_err_str(x->err));
        else
            kx_log(KX_LOG_INFO, x->run_id, NULL, "naming: project %s %s \"%s\"", x->project_id,
                   x->renamed ? "named" : "was renamed meanwhile; not", x->title);
        count(x->err != KX_OK ? "db_failed" : x->renamed ? "named" : "skipped");
    }
    free(x->old_name);
    free(x);
}

static void save_name(namer *n, const char *title)
{
    rename_job *x = calloc(1, sizeof *x);
    if (x == NULL) {
        count("db_failed");
        return;
    }
    snprintf(x->run_id, sizeof x->run_id, "%s", n->run_id);
    snprintf(x->project_id, sizeof x->project_id, "%s", n->project_id);
    snprintf(x->title, sizeof x->title, "%s", title);
    x->old_name = n->old_name;
    n->old_name = NULL;
    if (rdb_submit(n->owner, n->project_id, &x->base, rename_run, rename_done) != KX_OK) {
        kx_log(KX_LOG_WARN, n->run_id, NULL, "naming: could not queue the new name");
        count("db_failed");
        free(x->old_name);
        free(x);
    }
}

static void on_done(void *arg, llm_call *call, kx_err err, const char *message)
{
    namer *n = arg;
    char title[PROJECT_NAME_MAX + 1];
    if (err != KX_OK) {
        kx_log(KX_LOG_WARN, n->run_id, NULL, "naming: the model failed; the name stays: %s",
               message);
        count("llm_failed");
    } else {
        const llm_stream *s = llm_call_result(call);
        char *text = strndup(s->content.s ? s->content.s : "", s->content.len);
        if (text != NULL && project_name_clean(text, title, sizeof title)) {
            save_name(n, title);
        } else {
            kx_log(KX_LOG_WARN, n->run_id, NULL, "naming: the model gave no usable title");
            count("empty");
        }
        free(text);
    }
    n->call = NULL; /* freed below, after the callback returns: llm.c allows it here */
    llm_call_free(call);
    namer_free(n);
}

/* What naming needs from Postgres, read on a database thread: the run's project, its name,
 * whether this run is its first, and then the first user message. */
typedef struct read_job {
    rdb_job base;
    char run_id[40];
    char model[128];
    char project_id[40];
    char *name;
    char *content;
    bool first;
    kx_err err;
} read_job;

static void read_run(kx_db *db, rdb_job *j)
{
    read_job *x = (read_job *)j;
    x->err = store_project_first_run(db, x->run_id, x->project_id, sizeof x->project_id, &x->name,
                                     &x->first);
    if (x->err == KX_OK && x->first && x->name != NULL)
        x->err = store_first_user_message(db, x->run_id, &x->content);
}

static void start_naming(runner *o, read_job *x);

static void read_done(rdb_job *j, bool live)
{
    read_job *x = (read_job *)j;
    if (live)
        start_naming(j->owner, x);
    free(x->name);
    free(x->content);
    free(x);
}

void project_name_after_run(runner *o, const char *run_id, const char *run_model)
{
    if (!o->cfg->project_naming)
        return;
    read_job *x = calloc(1, sizeof *x);
    if (x == NULL)
        return;
    snprintf(x->run_id, sizeof x->run_id, "%s", run_id);
    snprintf(x->model, sizeof x->model, "%s", run_model);
    if (rdb_submit(o, run_id, &x->base, read_run, read_done) != KX_OK)
        free(x);
}

/* The project and its first message are read: ask the model (loop). */
static void start_naming(runner *o, read_job *x)
{
    const char *run_id = x->run_id;
    if (x->err != KX_OK || !x->first || x->name == NULL) {
        if (x->err != KX_OK)
            kx_log(KX_LOG_WARN, run_id, NULL, "naming: could not read the project: %s",
                   kx_err_str(x->err));
        return;
    }
    json_t *msg = x->content ? context_message_from_row("user", x->content) : NULL;
    const char *text = kx_json_str(msg, "content", NULL);
    if (text == NULL || text[0] == '\0') {
        json_decref(msg);
        return;
    }
    char prompt[REQUEST_CHARS + 200];
    snprintf(prompt, sizeof prompt,
             "Generate an extremely brief title (2-4 words only) for a chat "
             "thread that starts with this message: \"%.*s\"",
             REQUEST_CHARS, text);
    json_decref(msg);
    namer *n = calloc(1, sizeof *n);
    json_t *msgs = json_pack("[{s:s, s:s}]", "role", "user", "content", prompt);
    json_t *no_tools = json_array();
    if (n == NULL || msgs == NULL || no_tools == NULL) {
        free(n);
        json_decref(msgs);
        json_decref(no_tools);
        return;
    }
    n->owner = o;
    n->old_name = x->name;
    x->name = NULL;
    snprintf(n->run_id, sizeof n->run_id, "%s", run_id);
    snprintf(n->project_id, sizeof n->project_id, "%s", x->project_id);
    n->next = g_namers;
    g_namers = n;
    llm_opts opts = {.system = NAMING_SYSTEM, .tools = no_tools, .max_tokens = NAMING_MAX_TOKENS};
    const char *model = o->cfg->naming_model[0] ? o->cfg->naming_model : x->model;
    n->call = llm_call_start_opts(o->llm, model, msgs, &opts, kx_deadline_in(60000), run_id,
                                  on_content, on_done, n);
    json_decref(msgs);
    json_decref(no_tools);
    if (n->call == NULL)
        namer_free(n);
}
