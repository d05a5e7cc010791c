/* tests/integration/test_limits_triggers.c — account limits and scheduled runs (issue 11), on
 * the whole stack (tests/harness/stack.h) with KX_TRIGGER_POLL_MS=100:
 *   1. runs per day: an account without an account_limits row is unlimited; with
 *      runs_per_day = 2 its third run (initiate, and start on a thread) is refused with 429 and
 *      the quota body, nothing is created; an operator's UPDATE (psql) takes effect on the next
 *      request, without a restart; deleting the row lifts the limit;
 *   2. tokens per month: a run's token usage is recorded per run (agent_runs.tokens_used, equal
 *      to the sum of its turns' usage); once the month's usage reaches tokens_per_month the next
 *      run is refused with 429; raising the quota lets runs start again;
 *   3. model allow-list: a model outside it is refused with 403 and Kortix's body
 *      ({"message", "allowed_models"}), on initiate and on start; a listed model and a run that
 *      names none are accepted; adding a model to the list takes effect at once;
 *   4. the trigger API: validation (cron syntax, time zone, a cron that never fires, the
 *      agent), create, list, get, pause/resume, edit, delete, and another account's trigger is
 *      404 everywhere;
 *   5. two scheduler replicas fire a trigger exactly once per due time, over several fires set
 *      in the past by the test; each fire is an ordinary run on a thread of its own that
 *      completes; a trigger that missed three hours of fires fires once; a paused trigger does
 *      not fire; a fire the account's quota refuses makes no run and says why;
 *   6. the scheduler's cleanup trims quota counters of days and months over 92 days old.
 * Each case has accounts of its own. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <jansson.h>

#include "kx/http.h"
#include "kx/time.h"
#include "kx/uuid.h"
#include "api_client.h"
#include "stack.h"

static kx_th_stack g_stack;

static void sleep_ms(int64_t ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

typedef struct account {
    char id[KX_UUID_LEN + 1];
    char *token;
} account;

static void new_account(account *a)
{
    kx_uuid_new(a->id);
    a->token = kx_th_stack_token(&g_stack, a->id);
    assert_non_null(a->token);
}

/* SQL that must succeed; its first value (or "" for none / NULL) is returned, malloc'd. */
static char *sql(const char *q, int n, const char *const *p)
{
    PGresult *res = kx_th_sql(&g_stack, q, n, p);
    if (res == NULL)
        fail_msg("SQL failed: %s", q);
    char *v = strdup(PQntuples(res) > 0 && PQnfields(res) > 0 && !PQgetisnull(res, 0, 0)
                         ? PQgetvalue(res, 0, 0)
                         : "");
    PQclear(res);
    assert_non_null(v);
    return v;
}

static void sql_do(const char *q, int n, const char *const *p)
{
    free(sql(q, n, p));
}

static long long sql_int(const char *q, int n, const char *const *p)
{
    char *v = sql(q, n, p);
    long long x = strtoll(v, NULL, 10);
    free(v);
    return x;
}

/* POST /api/agent/initiate with prompt and model (NULL: none). Returns the status; on 200 the
 * thread and run ids, otherwise the parsed body in *body (caller json_decref's) if asked. */
static long initiate(const account *a, const char *prompt, const char *model, char *thread,
                     char *run, json_t **body)
{
    const char *pairs[] = {"prompt", prompt, model ? "model_name" : NULL, model, NULL};
    char run_id[KX_UUID_LEN + 1], thread_id[KX_UUID_LEN + 1];
    char *answer = NULL;
    long st = kx_th_initiate_form(&g_stack, a->token, pairs, true, run_id, thread_id, &answer);
    assert_int_not_equal(st, 0);
    if (st == 200) {
        assert_true(run_id[0] != '\0' && thread_id[0] != '\0');
        if (thread != NULL)
            snprintf(thread, KX_UUID_LEN + 1, "%s", thread_id);
        if (run != NULL)
            snprintf(run, KX_UUID_LEN + 1, "%s", run_id);
    }
    if (body != NULL)
        *body = json_loads(answer ? answer : "", 0, NULL);
    free(answer);
    return st;
}

/* POST /api/thread/{thread}/agent/start with a prompt and an optional model. */
static long start(const account *a, const char *thread, const char *model, json_t **body)
{
    char path[128], req[256];
    snprintf(path, sizeof path, "/api/thread/%s/agent/start", thread);
    if (model != NULL)
        snprintf(req, sizeof req, "{\"prompt\": \"say more\", \"model_name\": \"%s\"}", model);
    else
        snprintf(req, sizeof req, "{\"prompt\": \"say more\"}");
    long st = 0;
    json_t *v = kx_th_json(&g_stack, "POST", path, a->token, req, &st);
    if (body != NULL)
        *body = v;
    else
        json_decref(v);
    return st;
}

static long long runs_of(const account *a)
{
    const char *p[] = {a->id};
    return sql_int("SELECT count(*) FROM agent_runs WHERE account_id = $1::uuid", 1, p);
}

/* Waits until every run of the account has ended (completed, failed or stopped). */
static void wait_idle(const account *a, int64_t timeout_ms)
{
    const char *p[] = {a->id};
    int64_t give_up = kx_mono_ms() + timeout_ms;
    while (sql_int("SELECT count(*) FROM agent_runs WHERE account_id = $1::uuid "
                   "AND status IN ('queued', 'running')",
                   1, p) > 0) {
        if (kx_mono_ms() > give_up)
            fail_msg("account %s still has active runs after %lld ms", a->id,
                     (long long)timeout_ms);
        sleep_ms(50);
    }
}

static const char *detail_str(const json_t *body, const char *key)
{
    const char *s = json_string_value(json_object_get(json_object_get(body, "detail"), key));
    return s ? s : "";
}

static long long detail_int(const json_t *body, const char *key)
{
    return json_integer_value(json_object_get(json_object_get(body, "detail"), key));
}

/* ---- 1. runs per day ---- */

static void test_runs_per_day(void **state)
{
    account free_acct, a;
    new_account(&free_acct);
    new_account(&a);
    /* no row: unlimited */
    for (int i = 0; i < 4; i++)
        assert_int_equal(initiate(&free_acct, "say free", NULL, NULL, NULL, NULL), 200);

    const char *p[] = {a.id};
    sql_do("INSERT INTO account_limits (account_id, runs_per_day) VALUES ($1::uuid, 2)", 1, p);
    char thread[KX_UUID_LEN + 1];
    assert_int_equal(initiate(&a, "say one", NULL, thread, NULL, NULL), 200);
    assert_int_equal(initiate(&a, "say two", NULL, NULL, NULL, NULL), 200);
    json_t *body = NULL;
    assert_int_equal(initiate(&a, "say three", NULL, NULL, NULL, &body), 429);
    assert_string_equal(detail_str(body, "quota"), "runs_per_day");
    assert_int_equal(detail_int(body, "limit"), 2);
    assert_int_equal(detail_int(body, "used"), 2);
    assert_non_null(strstr(detail_str(body, "message"), "Daily run quota reached: 2 of 2 runs"));
    assert_non_null(strstr(detail_str(body, "resets_at"), "T00:00:00Z"));
    json_decref(body);
    assert_int_equal(runs_of(&a), 2);
    /* nothing of the refused initiate stays (project, thread, message) */
    assert_int_equal(sql_int("SELECT count(*) FROM threads WHERE account_id = $1::uuid", 1, p), 2);
    assert_int_equal(start(&a, thread, NULL, &body), 429);
    assert_string_equal(detail_str(body, "quota"), "runs_per_day");
    json_decref(body);
    assert_int_equal(runs_of(&a), 2);

    /* the operator raises the quota: the next start is accepted, no restart */
    sql_do("UPDATE account_limits SET runs_per_day = 3 WHERE account_id = $1::uuid", 1, p);
    assert_int_equal(start(&a, thread, NULL, NULL), 200);
    assert_int_equal(initiate(&a, "say four", NULL, NULL, NULL, NULL), 429);
    /* and deletes the row: unlimited again */
    sql_do("DELETE FROM account_limits WHERE account_id = $1::uuid", 1, p);
    assert_int_equal(initiate(&a, "say five", NULL, NULL, NULL, NULL), 200);
    assert_int_equal(runs_of(&a), 4);
    wait_idle(&a, 40000);
    wait_idle(&free_acct, 40000);
    free(a.token);
    free(free_acct.token);
}

/* ---- 2. tokens per month ---- */

static void test_tokens_per_month(void **state)
{
    account a;
    new_account(&a);
    const char *p[] = {a.id};
    sql_do("INSERT INTO account_limits (account_id, tokens_per_month) VALUES ($1::uuid, 1)", 1, p);
    char run[KX_UUID_LEN + 1];
    assert_int_equal(initiate(&a, "say counted", NULL, NULL, run, NULL), 200); /* 0 used < 1 */
    wait_idle(&a, 40000);
    const char *rp[] = {run};
    char *status = sql("SELECT status FROM agent_runs WHERE id = $1::uuid", 1, rp);
    assert_string_equal(status, "completed");
    free(status);
    long long used = sql_int("SELECT tokens_used FROM agent_runs WHERE id = $1::uuid", 1, rp);
    long long turns = sql_int("SELECT coalesce(sum((content->'usage'->>'total_tokens')::bigint), "
                              "-1) FROM messages WHERE agent_run_id = $1::uuid AND type = "
                              "'assistant_response_end'",
                              1, rp);
    assert_true(used > 0);
    assert_int_equal(used, turns); /* each turn counted once */

    json_t *body = NULL;
    assert_int_equal(initiate(&a, "say over", NULL, NULL, NULL, &body), 429);
    assert_string_equal(detail_str(body, "quota"), "tokens_per_month");
    assert_int_equal(detail_int(body, "used"), used);
    assert_int_equal(detail_int(body, "limit"), 1);
    assert_non_null(strstr(detail_str(body, "message"), "Monthly token quota reached"));
    json_decref(body);
    assert_int_equal(runs_of(&a), 1);

    sql_do("UPDATE account_limits SET tokens_per_month = 100000000 WHERE account_id = $1::uuid", 1,
           p);
    assert_int_equal(initiate(&a, "say again", NULL, NULL, NULL, NULL), 200);
    wait_idle(&a, 40000);
    free(a.token);
}

/* ---- 3. model allow-list ---- */

static void test_model_allow_list(void **state)
{
    account a;
    new_account(&a);
    const char *p[] = {a.id};
    sql_do("INSERT INTO account_limits (account_id, allowed_models) "
           "VALUES ($1::uuid, ARRAY['kortix/demo'])",
           1, p);
    json_t *body = NULL;
    assert_int_equal(initiate(&a, "say expensive", "gpt-4o", NULL, NULL, &body), 403);
    json_t *allowed = json_object_get(json_object_get(body, "detail"), "allowed_models");
    assert_int_equal(json_array_size(allowed), 1);
    assert_string_equal(json_string_value(json_array_get(allowed, 0)), "kortix/demo");
    assert_non_null(strstr(detail_str(body, "message"), "may not use the model gpt-4o"));
    json_decref(body);
    assert_int_equal(runs_of(&a), 0);

    char thread[KX_UUID_LEN + 1];
    assert_int_equal(initiate(&a, "say listed", "kortix/demo", thread, NULL, NULL), 200);
    assert_int_equal(initiate(&a, "say default", NULL, NULL, NULL, NULL), 200);
    assert_int_equal(start(&a, thread, "other-model", &body), 403);
    assert_non_null(strstr(detail_str(body, "message"), "other-model"));
    json_decref(body);
    assert_int_equal(runs_of(&a), 2);
    /* the operator adds the model */
    sql_do(
        "UPDATE account_limits SET allowed_models = array_append(allowed_models, 'other-model') "
        "WHERE account_id = $1::uuid",
        1, p);
    assert_int_equal(start(&a, thread, "other-model", NULL), 200);
    assert_int_equal(runs_of(&a), 3);
    wait_idle(&a, 40000);
    free(a.token);
}

/* ---- 4. the trigger API ---- */

static char *new_agent(const account *a)
{
    const char *p[] = {a->id};
    return sql("INSERT INTO agents (account_id, name) VALUES ($1::uuid, 'scheduled') "
               "RETURNING agent_id::text",
               1, p);
}

static json_t *api(const account *a, const char *method, const char *path, const char *body,
                   long want)
{
    long st = 0;
    json_t *v = kx_th_json(&g_stack, method, path, a->token, body, &st);
    if (st != want) {
        char *text = v ? json_dumps(v, 0) : NULL;
        fail_msg("%s %s: status %ld, want %ld: %s", method, path, st, want, text ? text : "");
    }
    return v;
}

static void expect_400(const account *a, const char *body, const char *needle)
{
    json_t *v = api(a, "POST", "/api/triggers", body, 400);
    const char *d = json_string_value(json_object_get(v, "detail"));
    if (d == NULL || strstr(d, needle) == NULL)
        fail_msg("POST %s: detail \"%s\", want it to mention \"%s\"", body, d ? d : "", needle);
    json_decref(v);
}

static void test_trigger_api(void **state)
{
    account a, b;
    new_account(&a);
    new_account(&b);
    char *agent = new_agent(&a);
    char *other_agent = new_agent(&b);
    char body[512];

    snprintf(body, sizeof body,
             "{\"agent_id\": \"%s\", \"cron_expression\": \"61 * * * *\", \"prompt\": \"x\"}",
             agent);
    expect_400(&a, body, "cron_expression: minute: 61 is out of range 0-59");
    snprintf(body, sizeof body,
             "{\"agent_id\": \"%s\", \"cron_expression\": \"0 0 30 2 *\", \"prompt\": \"x\"}",
             agent);
    expect_400(&a, body, "never fires");
    snprintf(body, sizeof body,
             "{\"agent_id\": \"%s\", \"cron_expression\": \"* * * * *\", \"prompt\": \"x\", "
             "\"timezone\": \"Mars/Olympus_Mons\"}",
             agent);
    expect_400(&a, body, "timezone: unknown time zone 'Mars/Olympus_Mons'");
    snprintf(body, sizeof body,
             "{\"agent_id\": \"%s\", \"cron_expression\": \"* * * * *\", \"prompt\": \"x\", "
             "\"timezone\": \"../../../../etc/passwd\"}",
             agent);
    expect_400(&a, body, "is not a time zone name");
    snprintf(body, sizeof body,
             "{\"agent_id\": \"%s\", \"cron_expression\": \"* * * * *\", \"prompt\": \"x\", "
             "\"timezone\": 5}",
             agent);
    expect_400(&a, body, "timezone");
    snprintf(body, sizeof body, "{\"agent_id\": \"%s\", \"cron_expression\": \"* * * * *\"}",
             agent);
    expect_400(&a, body, "prompt is required");
    expect_400(&a, "{\"cron_expression\": \"* * * * *\", \"prompt\": \"x\"}",
               "agent_id is required");
    /* another account's agent */
    snprintf(body, sizeof body,
             "{\"agent_id\": \"%s\", \"cron_expression\": \"* * * * *\", \"prompt\": \"x\"}",
             other_agent);
    json_decref(api(&a, "POST", "/api/triggers", body, 404));

    snprintf(body, sizeof body,
             "{\"agent_id\": \"%s\", \"cron_expression\": \"*/5 9-17 * * MON-FRI\", "
             "\"prompt\": \"say scheduled\", \"timezone\": \"UTC\", \"name\": \"Standup\"}",
             agent);
    json_t *t = api(&a, "POST", "/api/triggers", body, 200);
    char id[KX_UUID_LEN + 1];
    snprintf(id, sizeof id, "%s", json_string_value(json_object_get(t, "trigger_id")));
    assert_true(kx_uuid_valid(id));
    assert_string_equal(json_string_value(json_object_get(t, "name")), "Standup");
    assert_string_equal(json_string_value(json_object_get(t, "cron_expression")),
                        "*/5 9-17 * * MON-FRI");
    assert_string_equal(json_string_value(json_object_get(t, "timezone")), "UTC");
    assert_string_equal(json_string_value(json_object_get(t, "agent_id")), agent);
    assert_true(json_is_true(json_object_get(t, "is_active")));
    assert_non_null(json_string_value(json_object_get(t, "next_fire_at")));
    json_decref(t);
    /* the next fire time is the expression's next match after now */
    const char *ip[] = {id};
    assert_int_equal(sql_int("SELECT (next_fire_at > now() AND extract(minute FROM next_fire_at) "
                             "::int % 5 = 0 AND extract(hour FROM next_fire_at) BETWEEN 9 AND 17 "
                             "AND extract(isodow FROM next_fire_at) <= 5)::int "
                             "FROM run_triggers WHERE trigger_id = $1::uuid",
                             1, ip),
                     1);

    char path[128];
    snprintf(path, sizeof path, "/api/triggers/%s", id);
    json_t *l = api(&a, "GET", "/api/triggers", NULL, 200);
    assert_int_equal(json_array_size(json_object_get(l, "triggers")), 1);
    json_decref(l);
    l = api(&b, "GET", "/api/triggers", NULL, 200);
    assert_int_equal(json_array_size(json_object_get(l, "triggers")), 0);
    json_decref(l);
    json_decref(api(&a, "GET", path, NULL, 200));
    /* another account: 404 everywhere, and nothing changes */
    json_decref(api(&b, "GET", path, NULL, 404));
    json_decref(api(&b, "PATCH", path, "{\"is_active\": false}", 404));
    json_decref(api(&b, "DELETE", path, NULL, 404));
    json_decref(api(&a, "GET", "/api/triggers/not-a-uuid", NULL, 404));

    /* pause: no next fire; resume: a next fire again */
    t = api(&a, "PATCH", path, "{\"is_active\": false}", 200);
    assert_true(json_is_false(json_object_get(t, "is_active")));
    assert_true(json_is_null(json_object_get(t, "next_fire_at")));
    json_decref(t);
    t = api(&a, "PATCH", path, "{\"is_active\": true}", 200);
    assert_true(json_is_true(json_object_get(t, "is_active")));
    assert_non_null(json_string_value(json_object_get(t, "next_fire_at")));
    json_decref(t);
    /* edits */
    t = api(&a, "PATCH", path, "{\"cron_expression\": \"@hourly\", \"prompt\": \"say later\"}",
            200);
    assert_string_equal(json_string_value(json_object_get(t, "cron_expression")), "@hourly");
    assert_string_equal(json_string_value(json_object_get(t, "prompt")), "say later");
    json_decref(t);
    assert_int_equal(sql_int("SELECT extract(minute FROM next_fire_at)::int FROM run_triggers "
                             "WHERE trigger_id = $1::uuid",
                             1, ip),
                     0);
    json_decref(api(&a, "PATCH", path, "{\"colour\": \"red\"}", 400));
    json_decref(api(&a, "PATCH", path, "{\"cron_expression\": \"* *\"}", 400));
    json_decref(api(&a, "PATCH", path, "{}", 400));
    json_decref(api(&a, "PATCH", path, "{\"is_active\": \"yes\"}", 400));

    /* a model the account may not use is refused at creation */
    const char *ap[] = {a.id};
    sql_do("INSERT INTO account_limits (account_id, allowed_models) VALUES ($1::uuid, '{}')", 1,
           ap);
    snprintf(body, sizeof body,
             "{\"agent_id\": \"%s\", \"cron_expression\": \"@daily\", \"prompt\": \"x\", "
             "\"model_name\": \"gpt-4o\"}",
             agent);
    t = api(&a, "POST", "/api/triggers", body, 403);
    assert_non_null(json_object_get(json_object_get(t, "detail"), "allowed_models"));
    json_decref(t);
    sql_do("DELETE FROM account_limits WHERE account_id = $1::uuid", 1, ap);

    t = api(&a, "DELETE", path, NULL, 200);
    assert_string_equal(json_string_value(json_object_get(t, "message")),
                        "Trigger deleted successfully");
    json_decref(t);
    json_decref(api(&a, "GET", path, NULL, 404));
    json_decref(api(&a, "DELETE", path, NULL, 404));
    free(agent);
    free(other_agent);
    free(a.token);
    free(b.token);
}

/* The hour and minute of the trigger's next fire on zone's wall clock (Postgres reads it). */
static long long next_local(const char *id, const char *zone)
{
    const char *p[] = {id, zone};
    return sql_int("SELECT extract(hour FROM next_fire_at AT TIME ZONE $2)::int * 100 + "
                   "extract(minute FROM next_fire_at AT TIME ZONE $2)::int FROM run_triggers "
                   "WHERE trigger_id = $1::uuid AND next_fire_at > now()",
                   2, p);
}

static void make_due(const char *id, const char *ago);

/* A trigger's cron expression is read on its time zone's wall clock: "0 9 * * *" in
 * Europe/Berlin is 09:00 in Berlin (07:00 or 08:00 UTC by the season), when it is created,
 * moved to another zone and fired by the scheduler (before: every zone but UTC was refused,
 * "timezone: only UTC is supported"). */
static void test_trigger_time_zones(void **state)
{
    (void)state;
    account a;
    new_account(&a);
    char *agent = new_agent(&a);
    char body[512];
    snprintf(body, sizeof body,
             "{\"agent_id\": \"%s\", \"cron_expression\": \"0 9 * * *\", "
             "\"prompt\": \"say morning\", \"timezone\": \"Europe/Berlin\"}",
             agent);
    json_t *t = api(&a, "POST", "/api/triggers", body, 200);
    assert_string_equal(json_string_value(json_object_get(t, "timezone")), "Europe/Berlin");
    char id[KX_UUID_LEN + 1];
    snprintf(id, sizeof id, "%s", json_string_value(json_object_get(t, "trigger_id")));
    json_decref(t);
    assert_int_equal(next_local(id, "Europe/Berlin"), 900);

    snprintf(body, sizeof body,
             "{\"agent_id\": \"%s\", \"cron_expression\": \"30 9 * * *\", "
             "\"prompt\": \"say namaste\", \"timezone\": \"Asia/Kolkata\"}",
             agent);
    t = api(&a, "POST", "/api/triggers", body, 200);
    char id2[KX_UUID_LEN + 1];
    snprintf(id2, sizeof id2, "%s", json_string_value(json_object_get(t, "trigger_id")));
    json_decref(t);
    assert_int_equal(next_local(id2, "Asia/Kolkata"), 930);
    assert_int_equal(next_local(id2, "UTC"), 400);

    /* moved to another zone: the same wall-clock time there */
    char path[128];
    snprintf(path, sizeof path, "/api/triggers/%s", id);
    t = api(&a, "PATCH", path, "{\"timezone\": \"America/New_York\"}", 200);
    assert_string_equal(json_string_value(json_object_get(t, "timezone")), "America/New_York");
    json_decref(t);
    assert_int_equal(next_local(id, "America/New_York"), 900);
    json_decref(api(&a, "PATCH", path, "{\"timezone\": \"\"}", 400));
    json_decref(api(&a, "PATCH", path, "{\"timezone\": \"Nowhere/Zone\"}", 400));
    json_decref(api(&a, "PATCH", path, "{\"timezone\": \"right/UTC\"}", 400));
    assert_int_equal(next_local(id, "America/New_York"), 900); /* unchanged */

    /* a new expression alone is read in the stored zone; with a zone, in that one */
    json_decref(api(&a, "PATCH", path, "{\"cron_expression\": \"15 10 * * *\"}", 200));
    assert_int_equal(next_local(id, "America/New_York"), 1015);
    json_decref(api(&a, "PATCH", path,
                    "{\"cron_expression\": \"45 7 * * *\", \"timezone\": \"Asia/Kolkata\"}", 200));
    assert_int_equal(next_local(id, "Asia/Kolkata"), 745);
    json_decref(api(&a, "PATCH", path,
                    "{\"cron_expression\": \"61 7 * * *\", \"timezone\": \"Europe/Berlin\"}",
                    400));
    json_decref(api(&a, "PATCH", path,
                    "{\"cron_expression\": \"0 9 * * *\", \"timezone\": \"Nowhere/Zone\"}", 400));
    assert_int_equal(next_local(id, "Asia/Kolkata"), 745); /* unchanged */
    json_decref(api(&a, "PATCH", path,
                    "{\"cron_expression\": \"0 9 * * *\", \"timezone\": \"America/New_York\"}",
                    200));
    assert_int_equal(next_local(id, "America/New_York"), 900);

    /* fired by the scheduler: the next fire is 09:00 in New York again */
    const char *ip[] = {id};
    long long runs = sql_int("SELECT count(*) FROM agent_runs WHERE trigger_id = $1::uuid", 1, ip);
    make_due(id, "2 minutes");
    assert_int_equal(next_local(id, "America/New_York"), 900);
    assert_int_equal(sql_int("SELECT count(*) FROM agent_runs WHERE trigger_id = $1::uuid", 1, ip),
                     runs + 1);
    wait_idle(&a, 60000);
    free(agent);
    free(a.token);
}

/* ---- 5. two scheduler replicas fire each due time once ---- */

/* Starts a second scheduler on the stack; returns its pid. */
static pid_t second_scheduler(void)
{
    size_t n = 0;
    while (g_stack.env[n] != NULL)
        n++;
    const char **env = calloc(n + 2, sizeof *env);
    assert_non_null(env);
    for (size_t i = 0; i < n; i++)
        env[i] = g_stack.env[i];
    char own[64], log_path[600], url[128];
    uint16_t port = kx_th_free_port();
    snprintf(own, sizeof own, "KX_HEALTH_PORT=%u", port);
    env[n] = own;
    snprintf(log_path, sizeof log_path, "%s/scheduler-2.log", g_stack.dir);
    kx_th_proc *first = kx_th_stack_proc(&g_stack, "scheduler");
    assert_non_null(first);
    const char *argv[] = {first->path, NULL};
    pid_t pid = 0;
    assert_int_equal(kx_th_spawn(argv, env, log_path, &pid), KX_OK);
    free(env);
    snprintf(url, sizeof url, "http://127.0.0.1:%u/readyz", port);
    assert_int_equal(kx_th_wait_http(url, 20000), KX_OK);
    return pid;
}

static long long fires_of(const char *id)
{
    const char *p[] = {id};
    return sql_int("SELECT fire_count FROM run_triggers WHERE trigger_id = $1::uuid", 1, p);
}

static long long trigger_runs(const char *id)
{
    const char *p[] = {id};
    return sql_int("SELECT count(*) FROM agent_runs WHERE trigger_id = $1::uuid", 1, p);
}

/* Sets the trigger due `ago` (an SQL interval) before the current minute, and waits until it
 * has been handled (next_fire_at in the future again). */
static void make_due(const char *id, const char *ago)
{
    const char *p[] = {id, ago};
    sql_do("UPDATE run_triggers SET next_fire_at = date_trunc('minute', now()) - $2::interval "
           "WHERE trigger_id = $1::uuid",
           2, p);
    int64_t give_up = kx_mono_ms() + 10000;
    while (sql_int("SELECT (next_fire_at <= now())::int FROM run_triggers "
                   "WHERE trigger_id = $1::uuid",
                   1, p) == 1) {
        if (kx_mono_ms() > give_up)
            fail_msg("trigger %s was not fired within 10 s", id);
        sleep_ms(20);
    }
}

static void test_two_schedulers_fire_once(void **state)
{
    pid_t second = second_scheduler();
    account a;
    new_account(&a);
    char *agent = new_agent(&a);
    /* Hourly at a minute half an hour away: its own next fire never falls inside the test
     * (with "* * * * *" a minute boundary during a 400 ms window fired it a second time). */
    long long minute = sql_int("SELECT ((extract(minute FROM now() AT TIME ZONE 'UTC')::int "
                               "+ 30) % 60)",
                               0, NULL);
    char body[512];
    snprintf(body, sizeof body,
             "{\"agent_id\": \"%s\", \"cron_expression\": \"%lld * * * *\", "
             "\"prompt\": \"say fired\"}",
             agent, minute);
    json_t *t = api(&a, "POST", "/api/triggers", body, 200);
    char id[KX_UUID_LEN + 1];
    snprintf(id, sizeof id, "%s", json_string_value(json_object_get(t, "trigger_id")));
    json_decref(t);
    const char *ip[] = {id};

    /* several fires, each due at its own past minute; both replicas poll every 100 ms */
    static const char *const agos[] = {"10 minutes", "9 minutes", "8 minutes", "7 minutes"};
    for (size_t k = 0; k < sizeof agos / sizeof agos[0]; k++) {
        long long before = fires_of(id);
        make_due(id, agos[k]);
        sleep_ms(400); /* four more polls of each replica: a second fire would show now */
        assert_int_equal(fires_of(id), before + 1);
        assert_int_equal(trigger_runs(id), (long long)k + 1);
    }
    /* one run per due time, each on a thread of its own, each an ordinary run that completes */
    assert_int_equal(sql_int("SELECT count(DISTINCT trigger_fire_at) FROM agent_runs "
                             "WHERE trigger_id = $1::uuid",
                             1, ip),
                     4);
    assert_int_equal(sql_int("SELECT count(DISTINCT thread_id) FROM agent_runs "
                             "WHERE trigger_id = $1::uuid",
                             1, ip),
                     4);
    wait_idle(&a, 60000);
    assert_int_equal(sql_int("SELECT count(*) FROM agent_runs WHERE trigger_id = $1::uuid "
                             "AND status = 'completed' AND agent_id IS NOT NULL",
                             1, ip),
                     4);
    char *last =
        sql("SELECT last_run_id::text FROM run_triggers WHERE trigger_id = $1::uuid", 1, ip);
    assert_true(kx_uuid_valid(last));
    free(last);

    /* three hours of missed fires: one run, and the next fire is the next match after now
     * (about half an hour away), not after the missed due time (hours ago) */
    make_due(id, "3 hours");
    sleep_ms(400);
    assert_int_equal(trigger_runs(id), 5);
    assert_int_equal(
        sql_int("SELECT (next_fire_at > now() + interval '20 minutes' AND "
                "next_fire_at <= now() + interval '60 minutes')::int FROM run_triggers "
                "WHERE trigger_id = $1::uuid",
                1, ip),
        1);

    /* paused: even when due by the clock, it does not fire */
    char path[128];
    snprintf(path, sizeof path, "/api/triggers/%s", id);
    json_decref(api(&a, "PATCH", path, "{\"is_active\": false}", 200));
    sql_do("UPDATE run_triggers SET next_fire_at = now() - interval '1 minute' "
           "WHERE trigger_id = $1::uuid",
           1, ip);
    sleep_ms(600);
    assert_int_equal(trigger_runs(id), 5);
    json_decref(api(&a, "PATCH", path, "{\"is_active\": true}", 200));

    /* the account's quota refuses the fire: no run, the trigger says why, next time moves on */
    const char *ap[] = {a.id};
    sql_do("INSERT INTO account_limits (account_id, runs_per_day) "
           "SELECT $1::uuid, count(*) FROM agent_runs WHERE account_id = $1::uuid",
           1, ap);
    long long before = fires_of(id);
    make_due(id, "2 minutes");
    sleep_ms(400);
    assert_int_equal(fires_of(id), before + 1);
    assert_int_equal(trigger_runs(id), 5);
    char *err = sql("SELECT last_error FROM run_triggers WHERE trigger_id = $1::uuid", 1, ip);
    assert_non_null(strstr(err, "Daily run quota reached"));
    free(err);
    sql_do("DELETE FROM account_limits WHERE account_id = $1::uuid", 1, ap);

    wait_idle(&a, 60000);
    assert_int_equal(kx_th_kill(second), 0); /* SIGTERM: drains and exits 0 */
    free(agent);
    free(a.token);
}

/* ---- 6. old quota counters are trimmed ---- */

/* The scheduler's cleanup deletes account_usage rows of days and months that began over 92
 * days ago and keeps the rest (a fresh scheduler cleans up on its first reaper tick). */
static void test_usage_rows_trimmed(void **state)
{
    (void)state;
    account a;
    new_account(&a);
    const char *ap[] = {a.id};
    sql_do("INSERT INTO account_usage (account_id, kind, period_start, shard, amount) VALUES "
           "($1::uuid, 'runs_day', kx_day_start(now() - interval '100 days'), 0, 3), "
           "($1::uuid, 'tokens_month', kx_month_start(now() - interval '4 months'), 5, 70), "
           "($1::uuid, 'runs_day', kx_day_start(now() - interval '91 days'), 0, 2), "
           "($1::uuid, 'runs_day', kx_day_start(now()), 0, 1), "
           "($1::uuid, 'tokens_month', kx_month_start(now()), 5, 40)",
           1, ap);
    const char *old = "SELECT count(*) FROM account_usage WHERE account_id = $1::uuid AND "
                      "period_start < now() - interval '92 days'";
    assert_int_equal(sql_int(old, 1, ap), 2);
    pid_t second = second_scheduler();
    int64_t until = kx_mono_ms() + 20000;
    while (sql_int(old, 1, ap) > 0 && kx_mono_ms() < until)
        sleep_ms(100);
    assert_int_equal(sql_int(old, 1, ap), 0);
    assert_int_equal(sql_int("SELECT count(*) FROM account_usage WHERE account_id = $1::uuid", 1,
                             ap),
                     3);
    assert_int_equal(kx_th_kill(second), 0);
    free(a.token);
}

static int start_stack(void **state)
{
    const char *env[] = {"KX_TRIGGER_POLL_MS=100", NULL};
    kx_th_stack_opts opts = {.env = env};
    return kx_th_stack_start(&opts, &g_stack) == KX_OK ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_runs_per_day),       cmocka_unit_test(test_tokens_per_month),
        cmocka_unit_test(test_model_allow_list),   cmocka_unit_test(test_trigger_api),
        cmocka_unit_test(test_trigger_time_zones), cmocka_unit_test(test_two_schedulers_fire_once),
        cmocka_unit_test(test_usage_rows_trimmed),
    };
    int failed = cmocka_run_group_tests_name("limits_triggers", tests, start_stack, NULL);
    if (kx_th_stack_stop(&g_stack, failed != 0) != 0)
        failed++;
    return failed != 0;
}
