/* tests/integration/test_runcore.c — the run core under faults (issue 11), on the whole stack
 * (tests/harness/stack.h: heartbeat 200 ms, lease TTL 2000 ms, reaper 200 ms, sweep 500 ms),
 * with the default KX_RUN_MAX_ATTEMPTS (2):
 *   1. a runner SIGKILLed while its run waits on the model: the run is reaped and queued again
 *      (epoch bumped, attempt 2), the stream shows a non-terminal "retried" status, and the
 *      run completes on the restarted runner (another instance); a late event of the dead
 *      attempt (old epoch) published after the retry never reaches the stream; the killed
 *      runner's late writes are refused by the fence (simulated with its epoch);
 *   2. a runner whose lease is taken away behind its back (no STOP message: only the
 *      database changes) drops the run within a heartbeat or two — while the model is still
 *      streaming to it — instead of at its next write;
 *   3. Postgres stopped and started again 3 s later (longer than the 2 s TTL) while a run
 *      waits on its model: the run completes, nobody reaped it;
 *   4. Postgres slow, not down, for 3.5 s: first only the runner's message inserts wait for a
 *      lock (its loop is held in libpq, its heartbeat thread is not), then every write to
 *      agent_runs, runner_leases and messages does: the runs complete, nobody reaped them;
 *   5. SIGTERM to a runner whose run cannot finish within KX_DRAIN_TIMEOUT_MS: the run goes
 *      back to queued (not failed), the runner exits 0, and the next runner completes it;
 *   6. per-account limit (KX_MAX_PARALLEL_RUNS = 3) and fairness with three accounts: one
 *      account's six runs never run more than 3 at once, and the other two accounts' runs
 *      start before its last three;
 *   7. double-texting on one thread: reject (409, nothing created), enqueue (the default: the
 *      second run waits queued and starts after the first ended), interrupt (the running run
 *      is stopped, the new one completes);
 *   9. two scheduler replicas: a killed runner's run is reaped and announced once (epoch and
 *      attempt bumped once, one "retried" event) and completes;
 *   8. KX_OVER_LIMIT=reject on a second stack (KX_MAX_PARALLEL_RUNS=2): the third active run
 *      of an account is refused with 429 and Kortix's body, on initiate (with files[]: before
 *      any sandbox is asked for) and on thread start,
 *      nothing is created, and runs are accepted again once the first ones ended.
 * Each case has accounts of its own. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "kx/bus.h"
#include "kx/http.h"
#include "kx/pb.h"
#include "kx/time.h"
#include "kx/uuid.h"
#include "api_client.h"
#include "stack.h"

#define STREAM_TIMEOUT_MS 40000
#define COMPLETED \
    "{\"type\": \"status\", \"status\": \"completed\", \"message\": \"Agent run completed successfully\"}"

static kx_th_stack g_stack;

static void sleep_ms(int64_t ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

typedef struct run {
    char thread_id[KX_UUID_LEN + 1];
    char id[KX_UUID_LEN + 1];
} run;

static char *new_account(void)
{
    char account[KX_UUID_LEN + 1];
    kx_uuid_new(account);
    char *token = kx_th_stack_token(&g_stack, account);
    assert_non_null(token);
    return token;
}

static void initiate(const char *token, const char *prompt, run *r)
{
    const char *pairs[] = {"prompt", prompt, NULL};
    char *answer = NULL;
    long st = kx_th_initiate_form(&g_stack, token, pairs, true, r->id, r->thread_id, &answer);
    if (st != 200 || r->id[0] == '\0' || r->thread_id[0] == '\0')
        fail_msg("initiate: status %ld: %s", st, answer ? answer : "");
    free(answer);
}

/* One expression over the run's row, as text ("" for NULL). expr is a literal of this file. */
static char *run_col(const run *r, const char *expr)
{
    char sql[400];
    snprintf(sql, sizeof sql, "SELECT coalesce((%s)::text, '') FROM agent_runs WHERE id = $1",
             expr);
    const char *p[] = {r->id};
    char *v = kx_th_sql_value(&g_stack, sql, 1, p);
    if (v == NULL)
        fail_msg("no %s for run %s", expr, r->id);
    return v;
}

static void assert_run_col(const run *r, const char *expr, const char *want)
{
    char *got = run_col(r, expr);
    if (strcmp(got, want) != 0)
        fail_msg("run %s: %s is \"%s\", want \"%s\"", r->id, expr, got, want);
    free(got);
}

static int64_t wait_col(const run *r, const char *expr, const char *want, int64_t timeout_ms)
{
    int64_t give_up = kx_mono_ms() + timeout_ms;
    for (;;) {
        char *got = run_col(r, expr);
        bool match = strcmp(got, want) == 0;
        int64_t now = kx_mono_ms();
        if (match) {
            free(got);
            return now;
        }
        if (now > give_up)
            fail_msg("run %s: %s still \"%s\" after %lld ms (want \"%s\")", r->id, expr, got,
                     (long long)timeout_ms, want);
        free(got);
        sleep_ms(20);
    }
}

static kx_th_proc *proc(const char *name)
{
    kx_th_proc *p = kx_th_stack_proc(&g_stack, name);
    assert_non_null(p);
    return p;
}

static void sigkill(kx_th_proc *p)
{
    pid_t pid = p->pid;
    assert_int_equal(kill(pid, SIGKILL), 0);
    int ws = 0;
    assert_int_equal(waitpid(pid, &ws, 0), pid);
    p->pid = 0;
    p->exit_status = 128 + SIGKILL;
}

/* A gauge or counter of a service's /metrics (the first sample named exactly `name`). */
static long long metric(kx_th_proc *p, const char *name)
{
    return kx_th_metric(p->port, name);
}

static void read_stream(const run *r, const char *token, kx_th_sse *out)
{
    char path[128];
    snprintf(path, sizeof path, "/api/agent-run/%s/stream", r->id);
    assert_int_equal(kx_th_sse_read(&g_stack, path, token, STREAM_TIMEOUT_MS, out), KX_OK);
    assert_int_equal(out->status, 200);
    assert_false(out->timed_out);
    assert_true(out->terminal);
}

static bool stream_has(const kx_th_sse *e, const char *needle)
{
    for (size_t i = 0; i < e->n; i++)
        if (strstr(e->data[i], needle) != NULL)
            return true;
    return false;
}

/* ---- 1. killed runner: reaped, retried, completed elsewhere; stale writes refused ---- */

static void test_killed_runner_run_is_retried(void **state)
{
    char *token = new_account();
    run r = {0};
    /* The first attempt at the model hangs; the second (the retry) answers. */
    initiate(token, "hang 1\nsay answered on the retry", &r);
    wait_col(&r, "status", "running", 15000);
    sleep_ms(300);
    char *owner = run_col(&r, "lease_owner");
    assert_run_col(&r, "lease_epoch", "1");
    assert_run_col(&r, "attempt", "1");

    kx_th_proc *runner = proc("agent-runner");
    int64_t t_kill = kx_mono_ms();
    sigkill(runner);
    /* Reaped and queued again within TTL (2 s) + reaper (0.2 s) + 1 s. */
    int64_t t_queued = wait_col(&r, "status", "queued", 10000);
    print_message("[ timing   ] queued again %lld ms after the kill\n",
                  (long long)(t_queued - t_kill));
    if (t_queued - t_kill > 3200)
        fail_msg("the run left running %lld ms after the kill (want <= 3200)",
                 (long long)(t_queued - t_kill));
    assert_run_col(&r, "lease_epoch", "2");

    /* The dead attempt's late write (its epoch, 1) is refused by the fence. */
    const char *p[] = {r.id};
    char *late = kx_th_sql_value(
        &g_stack,
        "WITH ins AS (INSERT INTO messages (thread_id, account_id, type, is_llm_message, "
        "content, agent_run_id) SELECT r.thread_id, r.account_id, 'status', false, '{}', r.id "
        "FROM agent_runs r WHERE r.id = $1::uuid AND r.lease_epoch = 1 AND "
        "r.status = 'running' FOR SHARE OF r RETURNING 1) SELECT count(*)::text FROM ins",
        1, p);
    assert_non_null(late);
    assert_string_equal(late, "0");
    free(late);

    /* A late event of the dead attempt, published after the retry's status: dropped by the
     * gateway (stale epoch). */
    kx_bus *bus = NULL;
    assert_int_equal(kx_bus_connect(g_stack.nats.url, "it-runcore", &bus), KX_OK);
    for (int i = 0; i < 500 && !kx_bus_connected(bus); i++)
        sleep_ms(10);
    char subject[128];
    snprintf(subject, sizeof subject, "%s%s", KX_SUBJ_RUN_EV_PREFIX, r.id);
    /* wait for the retried status event to be in the stream first */
    sleep_ms(500);
    Kx__V1__RunEvent ev = KX__V1__RUN_EVENT__INIT;
    ev.run_id = r.id;
    ev.lease_epoch = 1;
    ev.seq = 99;
    ev.kind = KX__V1__RUN_EVENT_KIND__RUN_EVENT_KIND_MESSAGE;
    ev.payload_json = "{\"zombie\": \"event of the dead attempt\"}";
    assert_int_equal(kx_bus_js_publish_pb(bus, subject, &ev.base, NULL), KX_OK);
    kx_bus_close(bus, 1000);

    /* A new runner instance takes the retry and completes it. */
    assert_int_equal(kx_th_stack_proc_start(&g_stack, runner, 15000), KX_OK);
    wait_col(&r, "status", "completed", 20000);
    assert_run_col(&r, "attempt", "2");
    assert_run_col(&r, "error", "");
    char *owner2 = run_col(&r, "lease_owner");
    assert_string_not_equal(owner, owner2);

    kx_th_sse e;
    read_stream(&r, token, &e);
    assert_string_equal(e.data[e.n - 1], COMPLETED);
    assert_true(stream_has(&e, "Agent run retried (attempt 2 of 2): reaped: runner "));
    assert_false(stream_has(&e, "zombie"));
    assert_true(stream_has(&e, "answered on the retry"));
    kx_th_sse_free(&e);
    free(owner);
    free(owner2);
    free(token);
}

/* ---- 2. lease taken away behind the runner's back ---- */

static void test_revoked_lease_is_dropped_within_a_heartbeat(void **state)
{
    char *token = new_account();
    run r = {0};
    initiate(token, "sleep 8000\nsay too late", &r);
    wait_col(&r, "status", "running", 15000);
    kx_th_proc *runner = proc("agent-runner");
    for (int i = 0; i < 100 && metric(runner, "kx_runner_runs_held") != 1; i++)
        sleep_ms(20);
    assert_int_equal(metric(runner, "kx_runner_runs_held"), 1);
    /* Only the database changes: no STOP is published. */
    const char *p[] = {r.id};
    PGresult *res = kx_th_sql(&g_stack,
                              "UPDATE agent_runs SET status = 'stopped', "
                              "completed_at = now(), lease_epoch = lease_epoch + 1 "
                              "WHERE id = $1::uuid AND status = 'running'",
                              1, p);
    assert_non_null(res);
    PQclear(res);
    /* What the runner had written when the revocation committed. (Not "created_at >
     * completed_at": completed_at is the UPDATE's now(), taken before it waited for the row
     * lock of a fenced insert that was already under way, and that insert's clock_timestamp()
     * can be later while it was rightly written before the revocation.) */
    const char *count_sql =
        "(SELECT count(*) FROM messages m WHERE m.agent_run_id = agent_runs.id)";
    char *before = run_col(&r, count_sql);
    int64_t t0 = kx_mono_ms();
    while (metric(runner, "kx_runner_runs_held") != 0 && kx_mono_ms() - t0 < 5000)
        sleep_ms(20);
    int64_t took = kx_mono_ms() - t0;
    print_message("[ timing   ] dropped %lld ms after the lease was revoked\n", (long long)took);
    /* heartbeats every 200 ms: within two of them plus slack, long before the model's 8 s */
    if (took > 1000)
        fail_msg("the runner still held the run %lld ms after its lease was revoked",
                 (long long)took);
    assert_run_col(&r, "status", "stopped");
    /* Nothing more was written by the runner for this run after the revocation. */
    sleep_ms(500);
    char *after = run_col(&r, count_sql);
    assert_string_equal(after, before);
    free(after);
    free(before);
    free(token);
}

/* ---- 3. Postgres restarted while a run waits on its model ---- */

static void test_postgres_restart_reaps_nothing(void **state)
{
    char *token = new_account();
    run r = {0};
    initiate(token, "sleep 7000\nsay survived the restart", &r);
    wait_col(&r, "status", "running", 15000);
    sleep_ms(300);
    assert_int_equal(kx_th_pg_down(&g_stack.pg), KX_OK);
    sleep_ms(3000); /* > the 2 s lease TTL */
    assert_int_equal(kx_th_pg_up(&g_stack.pg), KX_OK);
    kx_th_sse e;
    read_stream(&r, token, &e);
    assert_string_equal(e.data[e.n - 1], COMPLETED);
    kx_th_sse_free(&e);
    assert_run_col(&r, "status", "completed");
    assert_run_col(&r, "attempt", "1"); /* not reaped and retried either */
    assert_run_col(&r, "error", "");
    free(token);
}

/* ---- 4. Postgres slow (locked), not down ---- */

typedef struct locker {
    pthread_t thread;
    const char *tables;
    int64_t hold_ms;
    bool ok;
} locker;

static void *hold_locks(void *arg)
{
    locker *l = arg;
    PGconn *c = PQconnectdb(g_stack.pg.url);
    if (PQstatus(c) != CONNECTION_OK) {
        PQfinish(c);
        return NULL;
    }
    char sql[256];
    snprintf(sql, sizeof sql, "BEGIN; LOCK TABLE %s IN EXCLUSIVE MODE", l->tables);
    PGresult *r = PQexec(c, sql);
    l->ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    sleep_ms(l->hold_ms);
    r = PQexec(c, "ROLLBACK");
    PQclear(r);
    PQfinish(c);
    return NULL;
}

/* Holds a write lock on tables for hold_ms while a run goes on; the run must complete on its
 * first attempt. */
static void slow_postgres_case(const char *tables, const char *prompt)
{
    char *token = new_account();
    run r = {0};
    initiate(token, prompt, &r);
    wait_col(&r, "status", "running", 15000);
    sleep_ms(200);
    locker l = {.tables = tables, .hold_ms = 3500}; /* > the 2 s TTL, < the 5 s timeout */
    assert_int_equal(pthread_create(&l.thread, NULL, hold_locks, &l), 0);
    pthread_join(l.thread, NULL);
    assert_true(l.ok);
    kx_th_sse e;
    read_stream(&r, token, &e);
    assert_string_equal(e.data[e.n - 1], COMPLETED);
    kx_th_sse_free(&e);
    assert_run_col(&r, "status", "completed");
    assert_run_col(&r, "attempt", "1");
    free(token);
}

static void test_slow_postgres_reaps_nothing(void **state)
{
    /* The runner's own writes hang (its loop is held in libpq for 3.5 s, longer than the
     * TTL): its heartbeats, from their own thread, must keep its lease. */
    slow_postgres_case("messages", "sleep 800\nsay survived a hung insert");
    /* The scheduler's writes hang too (heartbeats and the reaper wait): a heartbeat written
     * late is the scheduler's deafness, not the runner's death. */
    slow_postgres_case("agent_runs, runner_leases, messages",
                       "sleep 5000\nsay survived the slow database");
}

/* ---- 5. drain hands runs back ---- */

static void test_drain_hands_runs_back(void **state)
{
    char *token = new_account();
    run r = {0};
    initiate(token, "sleep 6000\nsay finished after the deploy", &r);
    wait_col(&r, "status", "running", 15000);
    sleep_ms(300);
    char *owner = run_col(&r, "lease_owner");
    /* SIGTERM: the run cannot finish within KX_DRAIN_TIMEOUT_MS (3 s here): handed back,
     * and the runner still exits 0. */
    kx_th_proc *runner = proc("agent-runner");
    int64_t t0 = kx_mono_ms();
    assert_int_equal(kx_th_stack_proc_stop(&g_stack, runner), 0);
    int64_t took = kx_mono_ms() - t0;
    print_message("[ timing   ] the runner exited %lld ms after SIGTERM\n", (long long)took);
    assert_true(took < 3500);
    assert_run_col(&r, "status", "queued");
    assert_run_col(&r, "lease_epoch", "2");
    assert_run_col(&r, "attempt", "0"); /* a hand-back is not a failed attempt */
    /* The next runner continues it. */
    assert_int_equal(kx_th_stack_proc_start(&g_stack, runner, 15000), KX_OK);
    kx_th_sse e;
    read_stream(&r, token, &e);
    assert_string_equal(e.data[e.n - 1], COMPLETED);
    assert_true(stream_has(&e, "handed back: the agent-runner shut down"));
    kx_th_sse_free(&e);
    assert_run_col(&r, "status", "completed");
    assert_run_col(&r, "attempt", "1");
    char *owner2 = run_col(&r, "lease_owner");
    assert_string_not_equal(owner, owner2);
    free(owner);
    free(owner2);
    free(token);
}

/* ---- 6. per-account limit and fairness ---- */

typedef struct account_runs {
    char *token;
    run runs[6];
    int n;
} account_runs;

/* The most runs of the account that were running at once, from their claim (started_at) and
 * finish (completed_at) times: exact whatever the machine's load, where a sampler polling the
 * status can miss a 2 s run when one poll takes longer than that (it did at load 20). The
 * maximum overlap of intervals is reached at the start of one of them. */
static int most_at_once(const account_runs *a)
{
    char *acc = run_col(&a->runs[0], "account_id");
    const char *p[] = {acc};
    char *n = kx_th_sql_value(&g_stack,
                              "SELECT max((SELECT count(*) FROM agent_runs y WHERE y.account_id = "
                              "$1::uuid AND y.started_at <= x.started_at AND y.completed_at > "
                              "x.started_at)) FROM agent_runs x WHERE x.account_id = $1::uuid",
                              1, p);
    int k = n != NULL ? (int)strtol(n, NULL, 10) : 0;
    free(n);
    free(acc);
    return k;
}

static bool all_done(const account_runs *a)
{
    for (int i = 0; i < a->n; i++) {
        char *st = run_col(&a->runs[i], "status");
        bool done = strcmp(st, "completed") == 0;
        free(st);
        if (!done)
            return false;
    }
    return true;
}

static void test_limits_and_fairness(void **state)
{
    /* Account A submits six runs (each on its own thread, each ~2 s at the model), then B and
     * C two each. KX_MAX_PARALLEL_RUNS is 3 (the default): A never has more than 3 running,
     * and B's and C's runs start while A's 4th-6th still wait — A cannot starve them. */
    account_runs a = {.token = new_account(), .n = 6}, b = {.token = new_account(), .n = 2},
                 c = {.token = new_account(), .n = 2};
    for (int i = 0; i < a.n; i++)
        initiate(a.token, "sleep 2000\nsay a", &a.runs[i]);
    for (int i = 0; i < 2; i++) {
        initiate(b.token, "sleep 2000\nsay b", &b.runs[i]);
        initiate(c.token, "sleep 2000\nsay c", &c.runs[i]);
    }
    int64_t give_up = kx_mono_ms() + 40000;
    while (!(all_done(&a) && all_done(&b) && all_done(&c))) {
        if (kx_mono_ms() > give_up)
            fail_msg("runs not all completed within 40 s");
        sleep_ms(50);
    }
    int max_a = most_at_once(&a), max_b = most_at_once(&b), max_c = most_at_once(&c);
    print_message("[ limits   ] most running at once: A %d, B %d, C %d\n", max_a, max_b, max_c);
    assert_true(max_a <= 3);
    assert_int_equal(max_a, 3);
    assert_true(max_b >= 1 && max_c >= 1);
    /* Fairness: every run of B and C started before A's last three did. */
    char sql[400];
    snprintf(sql, sizeof sql,
             "SELECT (SELECT max(started_at) FROM agent_runs WHERE account_id "
             "IN ($2::uuid, $3::uuid)) < (SELECT min(started_at) FROM (SELECT started_at FROM "
             "agent_runs WHERE account_id = $1::uuid ORDER BY started_at DESC LIMIT 3) x)");
    char ids[3][KX_UUID_LEN + 1];
    const account_runs *all[] = {&a, &b, &c};
    for (int i = 0; i < 3; i++) {
        char *acc = run_col(&all[i]->runs[0], "account_id");
        /* run_col fails the test on NULL, which an -O3 build cannot tell */
        snprintf(ids[i], sizeof ids[i], "%s", acc != NULL ? acc : "");
        free(acc);
    }
    const char *p[] = {ids[0], ids[1], ids[2]};
    char *fair = kx_th_sql_value(&g_stack, sql, 3, p);
    assert_non_null(fair);
    assert_string_equal(fair, "t");
    free(fair);
    free(a.token);
    free(b.token);
    free(c.token);
}

/* ---- 7. double-texting: multitask_strategy ---- */

/* POST /api/thread/<thread>/agent/start with a prompt and a strategy (NULL: none given). */
static json_t *start_on_thread(const char *token, const char *thread, const char *prompt,
                               const char *strategy, long *status)
{
    char path[128], body[512];
    snprintf(path, sizeof path, "/api/thread/%s/agent/start", thread);
    if (strategy != NULL)
        snprintf(body, sizeof body, "{\"prompt\": \"%s\", \"multitask_strategy\": \"%s\"}", prompt,
                 strategy);
    else
        snprintf(body, sizeof body, "{\"prompt\": \"%s\"}", prompt);
    return kx_th_json(&g_stack, "POST", path, token, body, status);
}

static void test_double_texting(void **state)
{
    char *token = new_account();
    run first = {0};
    initiate(token, "sleep 3000\nsay first", &first);
    wait_col(&first, "status", "running", 15000);

    /* reject: 409 while the thread has an active run; nothing created */
    long st = 0;
    json_t *v = start_on_thread(token, first.thread_id, "say second", "reject", &st);
    assert_int_equal(st, 409);
    assert_non_null(strstr(json_string_value(json_object_get(v, "detail")), first.id));
    json_decref(v);
    char *n = run_col(&first,
                      "(SELECT count(*) FROM agent_runs a WHERE a.thread_id = "
                      "agent_runs.thread_id)");
    assert_string_equal(n, "1");
    free(n);
    /* an unknown strategy is a 400 naming the field */
    v = start_on_thread(token, first.thread_id, "x", "rollback", &st);
    assert_int_equal(st, 400);
    assert_non_null(strstr(json_string_value(json_object_get(v, "detail")), "multitask_strategy"));
    json_decref(v);

    /* enqueue (the default): the second run waits queued until the first one ended */
    v = start_on_thread(token, first.thread_id, "say second", NULL, &st);
    assert_int_equal(st, 200);
    run second = first;
    snprintf(second.id, sizeof second.id, "%s",
             json_string_value(json_object_get(v, "agent_run_id")));
    json_decref(v);
    sleep_ms(1000);
    assert_run_col(&second, "status", "queued");
    assert_run_col(&first, "status", "running");
    wait_col(&second, "status", "completed", 20000);
    assert_run_col(&first, "status", "completed");
    char sql[300];
    snprintf(sql, sizeof sql,
             "SELECT (SELECT started_at FROM agent_runs WHERE id = $2::uuid) >= "
             "(SELECT completed_at FROM agent_runs WHERE id = $1::uuid)");
    const char *p[] = {first.id, second.id};
    char *order = kx_th_sql_value(&g_stack, sql, 2, p);
    assert_non_null(order);
    assert_string_equal(order, "t"); /* never both running */
    free(order);

    /* interrupt: the running run is stopped, then the new one runs */
    run third = {0};
    initiate(token, "sleep 8000\nsay interrupted", &third);
    wait_col(&third, "status", "running", 15000);
    v = start_on_thread(token, third.thread_id, "say took over", "interrupt", &st);
    assert_int_equal(st, 200);
    run fourth = third;
    snprintf(fourth.id, sizeof fourth.id, "%s",
             json_string_value(json_object_get(v, "agent_run_id")));
    json_decref(v);
    assert_run_col(&third, "status", "stopped");
    wait_col(&fourth, "status", "completed", 20000);
    assert_run_col(&third, "status", "stopped");
    free(token);
}

/* ---- 9. two scheduler replicas: a dead runner's run is reaped once ---- */

static void test_two_schedulers_reap_once(void **state)
{
    /* A second scheduler on the same stack, with its own ops port. */
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
    kx_th_proc *first = proc("scheduler");
    const char *argv[] = {first->path, NULL};
    pid_t second = 0;
    assert_int_equal(kx_th_spawn(argv, env, log_path, &second), KX_OK);
    free(env);
    snprintf(url, sizeof url, "http://127.0.0.1:%u/readyz", port);
    assert_int_equal(kx_th_wait_http(url, 20000), KX_OK);

    char *token = new_account();
    run r = {0};
    initiate(token, "hang 1\nsay answered once", &r);
    wait_col(&r, "status", "running", 15000);
    sleep_ms(300);
    kx_th_proc *runner = proc("agent-runner");
    sigkill(runner);
    wait_col(&r, "status", "queued", 10000);
    /* Both replicas reap and publish every tick: give them several ticks to do it twice. */
    sleep_ms(1500);
    assert_run_col(&r, "lease_epoch", "2");
    assert_run_col(&r, "attempt", "1");
    assert_int_equal(kx_th_stack_proc_start(&g_stack, runner, 15000), KX_OK);
    wait_col(&r, "status", "completed", 20000);
    assert_run_col(&r, "attempt", "2");
    assert_run_col(&r, "lease_epoch", "3");
    kx_th_sse e;
    read_stream(&r, token, &e);
    assert_string_equal(e.data[e.n - 1], COMPLETED);
    size_t retried = 0;
    for (size_t i = 0; i < e.n; i++)
        retried += strstr(e.data[i], "Agent run retried") != NULL;
    assert_int_equal(retried, 1);
    kx_th_sse_free(&e);
    assert_int_equal(kx_th_kill(second), 0); /* SIGTERM: drains and exits 0 */
    free(token);
}

/* ---- 8. KX_OVER_LIMIT=reject (a second stack, KX_MAX_PARALLEL_RUNS=2) ---- */

static kx_th_stack g_reject_stack;

static void test_over_limit_rejects_with_429(void **state)
{
    char account[KX_UUID_LEN + 1];
    kx_uuid_new(account);
    char *token = kx_th_stack_token(&g_reject_stack, account);
    const char *pairs[] = {"prompt", "sleep 3000\nsay busy", NULL};
    char *ctype = NULL;
    size_t len = 0;
    char *body = kx_th_form_multipart(pairs, &ctype, &len);
    char thread[KX_UUID_LEN + 1] = "";
    for (int i = 0; i < 2; i++) {
        kx_http_resp resp = {0};
        assert_int_equal(kx_th_http(&g_reject_stack, "POST", "/api/agent/initiate", token, ctype,
                                    body, len, &resp),
                         KX_OK);
        assert_int_equal(resp.status, 200);
        json_t *v = json_loads(resp.body, 0, NULL);
        snprintf(thread, sizeof thread, "%s", json_string_value(json_object_get(v, "thread_id")));
        json_decref(v);
        kx_http_resp_free(&resp);
    }
    /* the third, while two are active: 429 with Kortix's body; nothing created */
    kx_http_resp resp = {0};
    assert_int_equal(kx_th_http(&g_reject_stack, "POST", "/api/agent/initiate", token, ctype, body,
                                len, &resp),
                     KX_OK);
    assert_int_equal(resp.status, 429);
    json_t *v = json_loads(resp.body, 0, NULL);
    json_t *d = json_object_get(v, "detail");
    assert_non_null(d);
    assert_int_equal(json_integer_value(json_object_get(d, "limit")), 2);
    assert_int_equal(json_integer_value(json_object_get(d, "running_count")), 2);
    assert_int_equal(json_array_size(json_object_get(d, "running_thread_ids")), 2);
    assert_non_null(strstr(json_string_value(json_object_get(d, "message")),
                           "Maximum of 2 parallel agent runs allowed"));
    json_decref(v);
    kx_http_resp_free(&resp);
    const char *p[] = {account};
    char *n = kx_th_sql_value(&g_reject_stack,
                              "SELECT count(*) FROM agent_runs WHERE "
                              "account_id = $1::uuid",
                              1, p);
    assert_string_equal(n, "2");
    free(n);
    /* with files[] it is refused before any sandbox is made: no ensure_active is sent */
    kx_bus *bus = NULL;
    assert_int_equal(kx_bus_connect(g_reject_stack.nats.url, "test-runcore-files", &bus), KX_OK);
    for (int i = 0; i < 100 && !kx_bus_connected(bus); i++)
        sleep_ms(20);
    natsSubscription *ensure = NULL;
    assert_int_equal(natsConnection_SubscribeSync(&ensure, kx_bus_conn(bus),
                                                  KX_SUBJ_SANDBOX_LIFECYCLE_PREFIX
                                                  "ensure_active"),
                     NATS_OK);
    assert_int_equal(natsConnection_Flush(kx_bus_conn(bus)), NATS_OK);
    static const char files_body[] =
        "--kxrc\r\nContent-Disposition: form-data; name=\"prompt\"\r\n\r\nsay files\r\n"
        "--kxrc\r\nContent-Disposition: form-data; name=\"files\"; filename=\"f.txt\"\r\n"
        "Content-Type: text/plain\r\n\r\nx\r\n--kxrc--\r\n";
    assert_int_equal(kx_th_http(&g_reject_stack, "POST", "/api/agent/initiate", token,
                                "multipart/form-data; boundary=kxrc", files_body,
                                sizeof files_body - 1, &resp),
                     KX_OK);
    assert_int_equal(resp.status, 429);
    assert_non_null(strstr(resp.body, "parallel agent runs"));
    kx_http_resp_free(&resp);
    assert_int_equal(natsConnection_Flush(kx_bus_conn(bus)), NATS_OK);
    natsMsg *m = NULL;
    assert_int_equal(natsSubscription_NextMsg(&m, ensure, 300), NATS_TIMEOUT);
    natsSubscription_Destroy(ensure);
    kx_bus_close(bus, 2000);
    /* a start on an existing thread is refused the same way */
    char path[128];
    snprintf(path, sizeof path, "/api/thread/%s/agent/start", thread);
    long st = 0;
    v = kx_th_json(&g_reject_stack, "POST", path, token, "{\"prompt\": \"say more\"}", &st);
    assert_int_equal(st, 429);
    json_decref(v);
    /* once they ended, runs are accepted again */
    int64_t give_up = kx_mono_ms() + 30000;
    for (;;) {
        n = kx_th_sql_value(&g_reject_stack,
                            "SELECT count(*) FROM agent_runs WHERE account_id = "
                            "$1::uuid AND status IN ('queued', 'running')",
                            1, p);
        bool idle = n != NULL && strcmp(n, "0") == 0;
        free(n);
        if (idle)
            break;
        if (kx_mono_ms() > give_up)
            fail_msg("the two runs did not end within 30 s");
        sleep_ms(100);
    }
    assert_int_equal(kx_th_http(&g_reject_stack, "POST", "/api/agent/initiate", token, ctype, body,
                                len, &resp),
                     KX_OK);
    assert_int_equal(resp.status, 200);
    kx_http_resp_free(&resp);
    free(body);
    free(ctype);
    free(token);
}

static int start_reject_stack(void **state)
{
    const char *env[] = {"KX_OVER_LIMIT=reject", "KX_MAX_PARALLEL_RUNS=2", NULL};
    kx_th_stack_opts opts = {.env = env};
    return kx_th_stack_start(&opts, &g_reject_stack) == KX_OK ? 0 : -1;
}

/* ---- main ---- */

static int start_stack(void **state)
{
    kx_th_stack_opts opts = {0};
    return kx_th_stack_start(&opts, &g_stack) == KX_OK ? 0 : -1;
}

static int all_running(void **state)
{
    for (int i = 0; i < KX_TH_STACK_NPROCS; i++) {
        kx_th_proc *p = &g_stack.procs[i];
        if (p->pid <= 0 && kx_th_stack_proc_start(&g_stack, p, 15000) != KX_OK)
            return -1;
    }
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_killed_runner_run_is_retried, all_running),
        cmocka_unit_test_setup(test_revoked_lease_is_dropped_within_a_heartbeat, all_running),
        cmocka_unit_test_setup(test_postgres_restart_reaps_nothing, all_running),
        cmocka_unit_test_setup(test_slow_postgres_reaps_nothing, all_running),
        cmocka_unit_test_setup(test_drain_hands_runs_back, all_running),
        cmocka_unit_test_setup(test_limits_and_fairness, all_running),
        cmocka_unit_test_setup(test_double_texting, all_running),
        cmocka_unit_test_setup(test_two_schedulers_reap_once, all_running),
    };
    const struct CMUnitTest reject[] = {
        cmocka_unit_test(test_over_limit_rejects_with_429),
    };
    if (getenv("KX_TEST_FILTER") != NULL) /* e.g. one case while working on it */
        cmocka_set_test_filter(getenv("KX_TEST_FILTER"));
    int failed = cmocka_run_group_tests_name("runcore", tests, start_stack, NULL);
    if (kx_th_stack_stop(&g_stack, failed != 0) != 0)
        failed++;
    int rfailed =
        cmocka_run_group_tests_name("over_limit_reject", reject, start_reject_stack, NULL);
    if (kx_th_stack_stop(&g_reject_stack, rfailed != 0) != 0)
        rfailed++;
    return failed + rfailed != 0;
}
