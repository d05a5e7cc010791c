/* pgplans.c — the generic plans of prepared statements, checked for full walks of partial
 * indexes (see pgplans.h). */
#include "pgplans.h"

#include "harness.h"
#include "pgdb.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool ok(PGconn *c, PGresult *r, char *why, size_t cap, const char *what)
{
    ExecStatusType st = PQresultStatus(r);
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
        return true;
    snprintf(why, cap, "%s: %s", what, PQerrorMessage(c));
    return false;
}

/* EXPLAIN [(FORMAT JSON)] EXECUTE of sql prepared as kx_plan_probe, every parameter NULL,
 * under force_generic_plan: the result's rows joined by newlines, malloc'd. */
static char *explain(PGconn *c, const char *sql, bool as_json, char *why, size_t cap)
{
    char *out = NULL;
    PGresult *r = PQexec(c, "SET plan_cache_mode = force_generic_plan");
    bool good = ok(c, r, why, cap, "SET plan_cache_mode");
    PQclear(r);
    if (!good)
        return NULL;
    r = PQprepare(c, "kx_plan_probe", sql, 0, NULL);
    good = ok(c, r, why, cap, "prepare");
    PQclear(r);
    if (good) {
        r = PQdescribePrepared(c, "kx_plan_probe");
        int n = ok(c, r, why, cap, "describe") ? PQnparams(r) : -1;
        PQclear(r);
        size_t len = 64 + (size_t)(n > 0 ? n : 0) * 6;
        char *q = n >= 0 ? malloc(len) : NULL;
        if (q != NULL) {
            size_t at = (size_t)snprintf(q, len, "EXPLAIN %sEXECUTE kx_plan_probe",
                                         as_json ? "(FORMAT JSON) " : "");
            for (int i = 0; i < n; i++)
                at += (size_t)snprintf(q + at, len - at, "%sNULL", i == 0 ? "(" : ", ");
            if (n > 0)
                snprintf(q + at, len - at, ")");
            r = PQexec(c, q);
            free(q);
            if (ok(c, r, why, cap, "EXPLAIN EXECUTE")) {
                size_t total = 1;
                for (int i = 0; i < PQntuples(r); i++)
                    total += strlen(PQgetvalue(r, i, 0)) + 1;
                out = calloc(1, total);
                for (size_t i = 0, at = 0; out != NULL && i < (size_t)PQntuples(r); i++) {
                    size_t len = strlen(PQgetvalue(r, (int)i, 0));
                    memcpy(out + at, PQgetvalue(r, (int)i, 0), len);
                    out[at + len] = '\n';
                    at += len + 1;
                }
            }
            PQclear(r);
        }
        PQclear(PQexec(c, "DEALLOCATE kx_plan_probe"));
    }
    PQclear(PQexec(c, "RESET plan_cache_mode"));
    return out;
}

char *kx_th_generic_plan(PGconn *c, const char *sql, char *why, size_t cap)
{
    return explain(c, sql, false, why, cap);
}

/* Whether name is one of names (a NULL-terminated list). */
static bool in_names(const char *const *names, const char *name)
{
    for (size_t i = 0; names[i] != NULL; i++)
        if (strcmp(names[i], name) == 0)
            return true;
    return false;
}

/* Whether name is one of the comma-separated names of list (NULL: none). */
static bool in_list(const char *list, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = list; p != NULL && *p != '\0';
         p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL) {
        const char *end = strchr(p, ',');
        size_t len = end != NULL ? (size_t)(end - p) : strlen(p);
        if (len == n && strncmp(p, name, n) == 0)
            return true;
    }
    return false;
}

/* The tables that hold a row per run or per message: a generic plan must never read them
 * whole (a plan made while they were small or never analyzed is kept when they are large). */
static const char *const BIG_TABLES[] = {"agent_runs", "messages", NULL};

/* Walks a JSON plan node: *uses_required set when it or a child uses `requires`; the first
 * partial index scanned without an Index Cond, or the first of BIG_TABLES read by a sequential
 * scan (other than those in `sweeps`), into *walked. */
static void walk(const json_t *node, const char *const *partial, const char *requires,
                 const char *sweeps, bool *uses_required, const char **walked)
{
    const char *type = json_string_value(json_object_get(node, "Node Type"));
    const char *rel = json_string_value(json_object_get(node, "Relation Name"));
    if (*walked == NULL && type != NULL && rel != NULL && strcmp(type, "Seq Scan") == 0 &&
        in_names(BIG_TABLES, rel) && !in_list(sweeps, rel))
        *walked = rel;
    const char *index = json_string_value(json_object_get(node, "Index Name"));
    if (index != NULL) {
        if (requires != NULL && strcmp(index, requires) == 0)
            *uses_required = true;
        if (*walked == NULL && in_names(partial, index) &&
            json_object_get(node, "Index Cond") == NULL && !in_list(sweeps, index))
            *walked = index;
    }
    const json_t *plans = json_object_get(node, "Plans");
    for (size_t i = 0; i < json_array_size(plans); i++)
        walk(json_array_get(plans, i), partial, requires, sweeps, uses_required, walked);
}

/* The names of the database's partial indexes, NULL-terminated, malloc'd (one block). */
static char **partial_indexes(PGconn *c)
{
    PGresult *r = PQexec(c,
                         "SELECT c.relname FROM pg_index i JOIN pg_class c "
                         "ON c.oid = i.indexrelid WHERE i.indpred IS NOT NULL");
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        PQclear(r);
        return NULL;
    }
    int n = PQntuples(r);
    size_t bytes = (size_t)(n + 1) * sizeof(char *);
    for (int i = 0; i < n; i++)
        bytes += strlen(PQgetvalue(r, i, 0)) + 1;
    char **names = calloc(1, bytes);
    char *text = names != NULL ? (char *)(names + n + 1) : NULL;
    for (int i = 0; names != NULL && i < n; i++) {
        size_t len = strlen(PQgetvalue(r, i, 0)) + 1;
        names[i] = memcpy(text, PQgetvalue(r, i, 0), len);
        text += len;
    }
    PQclear(r);
    return names;
}

static const kx_th_plan_expect *expectation(const kx_th_plan_expect *expect, const char *name)
{
    for (size_t i = 0; expect != NULL && expect[i].stmt != NULL; i++)
        if (strcmp(expect[i].stmt, name) == 0)
            return &expect[i];
    return NULL;
}

const char *kx_th_stmt_sql(const kx_db_stmt *stmts, const char *name)
{
    for (const kx_db_stmt *s = stmts; s->name != NULL; s++)
        if (strcmp(s->name, name) == 0)
            return s->sql;
    return NULL;
}

long kx_th_plan_buffers(PGconn *c, const char *sql)
{
    size_t len = strlen(sql) + 64;
    char *q = malloc(len);
    if (q == NULL)
        return -1;
    snprintf(q, len, "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) %s", sql);
    PGresult *r = PQexec(c, q);
    free(q);
    json_t *doc = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1
        ? json_loads(PQgetvalue(r, 0, 0), 0, NULL)
        : NULL;
    const json_t *plan = json_object_get(json_array_get(doc, 0), "Plan");
    long n = -1;
    if (plan != NULL)
        n = (long)(json_integer_value(json_object_get(plan, "Shared Hit Blocks")) +
                   json_integer_value(json_object_get(plan, "Shared Read Blocks")));
    else
        fprintf(stderr, "pgplans: EXPLAIN ANALYZE %s: %s", sql, PQerrorMessage(c));
    json_decref(doc);
    PQclear(r);
    return n;
}

int kx_th_plans_check(PGconn *c, const kx_db_stmt *stmts, const kx_th_plan_expect *expect)
{
    char **partial = partial_indexes(c);
    if (partial == NULL) {
        fprintf(stderr, "pgplans: cannot list the partial indexes: %s", PQerrorMessage(c));
        return 1;
    }
    int failures = 0;
    for (size_t i = 0; expect != NULL && expect[i].stmt != NULL; i++) {
        bool known = false;
        for (const kx_db_stmt *s = stmts; s->name != NULL && !known; s++)
            known = strcmp(s->name, expect[i].stmt) == 0;
        if (!known) {
            fprintf(stderr, "pgplans: an expectation names no statement: %s\n", expect[i].stmt);
            failures++;
        }
    }
    for (const kx_db_stmt *s = stmts; s->name != NULL; s++) {
        char why[512] = "";
        char *plan = explain(c, s->sql, true, why, sizeof why);
        json_t *doc = plan != NULL ? json_loads(plan, 0, NULL) : NULL;
        const json_t *root = json_object_get(json_array_get(doc, 0), "Plan");
        const kx_th_plan_expect *e = expectation(expect, s->name);
        const char *requires = e != NULL ? e->requires : NULL;
        bool uses_required = requires == NULL;
        const char *walked = NULL;
        if (root == NULL) {
            fprintf(stderr, "pgplans: %s: no plan: %s\n", s->name, why[0] ? why : "bad JSON");
            failures++;
        } else {
            walk(root, (const char *const *)partial, requires, e != NULL ? e->sweeps : NULL,
                 &uses_required, &walked);
            if (walked != NULL && uses_required && e != NULL && e->open != NULL) {
                char *text = kx_th_generic_plan(c, s->sql, why, sizeof why);
                printf("pgplans: KNOWN, NOT FIXED: %s reads the whole of %s (%s):\n%s", s->name,
                       walked, e->open, text != NULL ? text : why);
                free(text);
            } else if (walked != NULL || !uses_required) {
                char *text = kx_th_generic_plan(c, s->sql, why, sizeof why);
                if (walked != NULL)
                    fprintf(stderr, "pgplans: %s reads the whole of %s:\n%s", s->name, walked,
                            text != NULL ? text : why);
                else
                    fprintf(stderr, "pgplans: %s does not use %s:\n%s", s->name, requires,
                            text != NULL ? text : why);
                free(text);
                failures++;
            }
        }
        json_decref(doc);
        free(plan);
    }
    free(partial);
    return failures;
}

/* The second state checked: a database that has run for a while (50 accounts, 2 500 threads,
 * 2 runs and 4 messages each), every run ended, analyzed.
 * Its statistics say that no run is queued or running, so a partial index on the active runs
 * looks empty, and walking it whole looks cheaper than a primary-key probe; the generic (and
 * custom) plans made then are the ones in use when the runs become active again. Vacuumed
 * too (as autovacuum leaves it), so that the plans do not depend on whether it ran yet. */
#define ENDED_RUNS_N 5000
#define STR_(x) #x
#define STR(x) STR_(x)
#define ENDED_RUNS                                                                                                 \
    "INSERT INTO projects (project_id, name, account_id) SELECT gen_random_uuid(), 'p', "                          \
    "  ('00000000-0000-0000-0000-' || lpad((i % 50)::text, 12, '0'))::uuid "                                       \
    "  FROM generate_series(1, " STR(                                                                              \
        ENDED_RUNS_N) " / 2) i; "                                                                                  \
                      "INSERT INTO threads (account_id, project_id) SELECT account_id, project_id FROM projects; " \
                      "INSERT INTO agent_runs (thread_id, account_id, project_id, status, completed_at) "          \
                      "  SELECT thread_id, account_id, project_id, 'completed', now() "                            \
                      "  FROM threads, generate_series(1, 2); "                                                    \
                      "INSERT INTO messages (thread_id, account_id, type, is_llm_message, content, metadata) "     \
                      "  SELECT thread_id, account_id, 'user', true, '{}', '{}' "                                  \
                      "  FROM threads, generate_series(1, 4)"

int kx_th_plans_test(const char *name, const kx_db_stmt *stmts, const kx_th_plan_expect *expect)
{
    kx_th_pgdb d;
    int failures = 1;
    if (kx_th_pgdb_start(name, &d) == KX_OK) {
        PGconn *c = d.sql;
        printf("pgplans: %s on an empty database\n", name);
        failures = kx_th_plans_check(c, stmts, expect);
        PGresult *r = PQexec(c, ENDED_RUNS);
        if (PQresultStatus(r) == PGRES_COMMAND_OK) { /* as autovacuum would leave it */
            PQclear(r);
            r = PQexec(c, "VACUUM ANALYZE");
        }
        if (PQresultStatus(r) != PGRES_COMMAND_OK) {
            fprintf(stderr, "pgplans: seeding ended runs: %s", PQerrorMessage(c));
            failures++;
        } else {
            printf("pgplans: %s with %d ended runs, analyzed\n", name, ENDED_RUNS_N);
            failures += kx_th_plans_check(c, stmts, expect);
        }
        PQclear(r);
    } else {
        fprintf(stderr, "pgplans: no migrated database\n");
    }
    kx_th_pgdb_stop(&d);
    if (failures == 0)
        printf("pgplans: every generic plan of %s is good in both states\n", name);
    return failures == 0 ? 0 : 1;
}
