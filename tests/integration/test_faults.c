/* tests/integration/test_faults.c — "no run can stay stuck", proved with real processes: the
 * whole stack (tests/harness/stack.h) with single services killed, stopped and restarted under
 * running work, and tools and models that hang. Every case asserts real outcomes: the final
 * status in agent_runs, its error text, the terminal SSE event, timing bounds, and that runs
 * not affected by the fault complete.
 *
 *   1. runner SIGKILLed while a run waits on a hanging model: reaped within the lease TTL,
 *      `failed` "reaped: runner … stopped heartbeating at …" (this stack runs with
 *      KX_RUN_MAX_ATTEMPTS=1: no retry; retries are it_runcore's), terminal SSE event; a
 *      restarted runner takes new runs;
 *   1b. runner SIGKILLed during a tool call: reaped as in 1, and the reaper's STOP makes the
 *      tool-executor kill the orphaned command long before its own deadline;
 *   2. a hanging blocking command with timeout 2: killed with its process group at ~2 s, the
 *      model gets a "timed out" tool result, the run completes;
 *   3. one hung run does not block another; stopping the hung run ends it within 1 s and kills
 *      its sandbox command (process group) within 1 s;
 *   4. scheduler down while runs are submitted: they wait `queued` and all complete once it is
 *      back;
 *   5. sandbox-broker down: the tool fails fast, the run completes; after a restart tools work;
 *   6. stop is a compare-and-set: a completed run stays completed; a stopped queued run is never
 *      executed;
 *   7. a hanging model with KX_LLM_TTFB_MS=KX_LLM_IDLE_MS=2000, KX_LLM_RETRIES=1 (a second stack): `failed`
 *      naming the timeout after both attempts, while another run on the same stack completes;
 *   8. Postgres down for longer than the lease TTL while a healthy runner holds a run: the
 *      scheduler could not apply heartbeats meanwhile, so it must not take the expired lease
 *      for a dead runner when Postgres is back — the run completes.
 *
 * Timings of the stack (stack.h): heartbeat 200 ms, lease TTL 2000 ms, reaper 200 ms, sweep
 * 500 ms. Every bound below says where it comes from; they allow for a loaded 2-core machine.
 * Each case uses accounts of its own, so cases never see each other's runs.
*/
#include <errno.h>
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
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "kx/time.h"
#include "kx/uuid.h"
#include "api_client.h"
#include "procstat.h"
#include "stack.h"

#define STREAM_TIMEOUT_MS 30000 /* longest wait for any stream here: far above every bound */
#define COMPLETED \
    "{\"type\": \"status\", \"status\": \"completed\", \"message\": \"Agent run completed successfully\"}"
#define STOPPED \
    "{\"type\": \"status\", \"status\": \"stopped\", \"message\": \"Agent run stopped by user\"}"

static kx_th_stack g_stack;     /* cases 1-6 */
static kx_th_stack g_llm_stack; /* case 7: KX_LLM_TTFB_MS=2000, KX_LLM_RETRIES=1 */

/* ---- small helpers ---------------------------------------------------------------------- */

static void sleep_ms(int64_t ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static const char *jstr(const json_t *obj, const char *key)
{
    return json_string_value(json_object_get(obj, key));
}

/* A fresh account and a token for it on stack s (the token is the caller's to free). */
static char *new_account(const kx_th_stack *s)
{
    char *token = kx_th_new_account(s, NULL);
    assert_non_null(token);
    return token;
}

/* A run started through the API. */
typedef struct run {
    char thread_id[KX_UUID_LEN + 1];
    char id[KX_UUID_LEN + 1];
    int64_t started_ms; /* kx_mono_ms just before the initiate request */
} run;

/* POST /api/agent/initiate (multipart) with prompt on stack s. */
static void initiate(const kx_th_stack *s, const char *token, const char *prompt, run *r)
{
    const char *pairs[] = {"prompt", prompt, NULL};
    char *answer = NULL;
    r->started_ms = kx_mono_ms();
    long st = kx_th_initiate_form(s, token, pairs, true, r->id, r->thread_id, &answer);
    if (st != 200 || r->id[0] == '\0' || r->thread_id[0] == '\0')
        fail_msg("initiate: status %ld: %s", st, answer ? answer : "");
    free(answer);
}

/* One column of the run's row as a malloc'd string ("" for SQL NULL). column is a literal of
 * this file, never input. */
static char *run_col(const kx_th_stack *s, const run *r, const char *column)
{
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT coalesce((%s)::text, '') FROM agent_runs WHERE id = $1",
             column);
    const char *p[] = {r->id};
    char *v = kx_th_sql_value(s, sql, 1, p);
    if (v == NULL)
        fail_msg("no %s for run %s", column, r->id);
    return v;
}

static void assert_run_col(const kx_th_stack *s, const run *r, const char *column,
                           const char *want)
{
    char *got = run_col(s, r, column);
    if (strcmp(got, want) != 0)
        fail_msg("run %s: %s is \"%s\", want \"%s\"", r->id, column, got, want);
    free(got);
}

/* Polls the run's status every 20 ms until it is (want_is = true) or is no longer (false)
 * `status`. Returns kx_mono_ms when that was seen; fails the test after timeout_ms. */
static int64_t wait_status(const kx_th_stack *s, const run *r, const char *status, bool want_is,
                           int64_t timeout_ms)
{
    int64_t give_up = kx_mono_ms() + timeout_ms;
    for (;;) {
        char *got = run_col(s, r, "status");
        int64_t now = kx_mono_ms();
        bool match = (strcmp(got, status) == 0) == want_is;
        if (match) {
            free(got);
            return now;
        }
        if (now > give_up)
            fail_msg("run %s: status still \"%s\" after %lld ms (waiting for %s\"%s\")", r->id,
                     got, (long long)timeout_ms, want_is ? "" : "not ", status);
        free(got);
        sleep_ms(20);
    }
}

static void stream_path(const run *r, char *out, size_t outlen)
{
    snprintf(out, outlen, "/api/agent-run/%s/stream", r->id);
}

/* Reads the run's stream to its terminal event; asserts it ended with one. */
static void read_stream(const kx_th_stack *s, const run *r, const char *token, kx_th_sse *out)
{
    char path[128];
    stream_path(r, path, sizeof path);
    assert_int_equal(kx_th_sse_read(s, path, token, STREAM_TIMEOUT_MS, out), KX_OK);
    assert_int_equal(out->status, 200);
    assert_false(out->timed_out);
    assert_true(out->terminal);
    assert_true(out->n >= 1);
}

static void join_stream(kx_th_sse_reader *reader, kx_th_sse *out)
{
    assert_int_equal(kx_th_sse_join(reader, out), KX_OK);
    assert_int_equal(out->status, 200);
    assert_false(out->timed_out);
    assert_true(out->terminal);
    assert_true(out->n >= 1);
}

static const char *last_event(const kx_th_sse *e)
{
    return e->data[e->n - 1];
}

/* a and b are equal strings; NULL counts as "". */
static bool same(const char *a, const char *b)
{
    return strcmp(a ? a : "", b ? b : "") == 0;
}

/* The parsed content of the first DB-row shaped event of this type (and, when status_type is
 * given, with that status_type), or NULL. New reference. */
static json_t *find_row(const kx_th_sse *e, const char *type, const char *status_type)
{
    for (size_t i = 0; i < e->n; i++) {
        json_t *row = json_loads(e->data[i], 0, NULL);
        json_t *content = NULL;
        if (jstr(row, "content") != NULL && same(jstr(row, "type"), type))
            content = json_loads(jstr(row, "content"), 0, NULL);
        json_decref(row);
        if (content != NULL &&
            (status_type == NULL || same(jstr(content, "status_type"), status_type)))
            return content;
        json_decref(content);
    }
    return NULL;
}

/* The result {"success", "output", "error"} of the run's first tool call, from its stream.
 * New reference. */
static json_t *tool_result(const kx_th_sse *e)
{
    json_t *content = find_row(e, "tool", NULL);
    if (content == NULL)
        fail_msg("no tool event in the stream (%zu events)", e->n);
    json_t *result = json_object_get(json_object_get(content, "tool_execution"), "result");
    assert_true(json_is_object(result));
    json_incref(result);
    json_decref(content);
    return result;
}

/* True when the JSON text of v contains needle. */
static bool json_mentions(const json_t *v, const char *needle)
{
    if (json_is_string(v))
        return strstr(json_string_value(v), needle) != NULL;
    char *text = json_dumps(v, JSON_ENCODE_ANY);
    bool found = text != NULL && strstr(text, needle) != NULL;
    free(text);
    return found;
}

/* ---- processes -------------------------------------------------------------------------- */

/* The first live process whose command line (arguments joined by spaces) contains needle, or
 * 0. A zombie has an empty command line, so it does not count: its process is gone. Each case
 * uses a sleep of a unique duration ("sleep 613") as its needle. */
typedef struct find_ctx {
    const char *needle;
    pid_t found; /* the first one, in /proc's order */
} find_ctx;

static bool match_process(pid_t pid, void *arg)
{
    find_ctx *c = arg;
    char buf[4096];
    if (c->found != 0 || pid == getpid())
        return false;
    kx_th_cmdline_of(pid, buf, sizeof buf, true);
    if (strstr(buf, c->needle) == NULL)
        return false;
    c->found = pid;
    return true;
}

static pid_t find_process(const char *needle)
{
    find_ctx c = {needle, 0};
    assert_true(kx_th_each_proc(match_process, &c) >= 0);
    return c.found;
}

/* Waits up to timeout_ms for a process matching needle to appear; returns its pid. */
static pid_t wait_process(const char *needle, int64_t timeout_ms)
{
    int64_t give_up = kx_mono_ms() + timeout_ms;
    for (;;) {
        pid_t pid = find_process(needle);
        if (pid != 0)
            return pid;
        if (kx_mono_ms() > give_up)
            fail_msg("no process \"%s\" appeared within %lld ms", needle, (long long)timeout_ms);
        sleep_ms(20);
    }
}

/* Waits up to timeout_ms for every process matching needle to be gone; returns kx_mono_ms
 * when none was left. */
static int64_t wait_no_process(const char *needle, int64_t timeout_ms)
{
    int64_t give_up = kx_mono_ms() + timeout_ms;
    for (;;) {
        int64_t now = kx_mono_ms();
        pid_t pid = find_process(needle);
        if (pid == 0)
            return now;
        if (now > give_up)
            fail_msg("process %d \"%s\" still alive after %lld ms", (int)pid, needle,
                     (long long)timeout_ms);
        sleep_ms(20);
    }
}

/* pid is a sandbox command, not something else on the machine that happens to match: it runs
 * in a sandbox's mount namespace with its cwd in /workspace, as a sandbox uid (not ours). */
static void assert_in_sandbox(pid_t pid)
{
    char link[64], cwd[1024];
    snprintf(link, sizeof link, "/proc/%d/cwd", (int)pid);
    ssize_t n = readlink(link, cwd, sizeof cwd - 1);
    assert_true(n > 0);
    cwd[n] = '\0';
    if (strcmp(cwd, "/workspace") != 0 && strncmp(cwd, "/workspace/", 11) != 0)
        fail_msg("process %d runs in %s, not in a sandbox's /workspace", (int)pid, cwd);
    struct stat st;
    snprintf(link, sizeof link, "/proc/%d", (int)pid);
    assert_int_equal(stat(link, &st), 0);
    if (st.st_uid == getuid())
        fail_msg("process %d runs as the services' uid %u", (int)pid, (unsigned)st.st_uid);
}

static kx_th_proc *proc(const char *name)
{
    kx_th_proc *p = kx_th_stack_proc(&g_stack, name);
    assert_non_null(p);
    return p;
}

/* Stops a service with SIGTERM (it must drain and exit 0) and restarts it. */
static void stop_service(const char *name)
{
    kx_th_proc *p = proc(name);
    int status = kx_th_stack_proc_stop(&g_stack, p);
    if (status != 0)
        fail_msg("%s exited with status %d on SIGTERM (want 0)", name, status);
}

static void start_service(const char *name)
{
    assert_int_equal(kx_th_stack_proc_start(&g_stack, proc(name), 15000), KX_OK);
}

/* A run that only answers: completes, and its stream ends with the exact completion event. */
static void assert_plain_run_completes(const kx_th_stack *s, const char *token, const char *text)
{
    char prompt[256];
    snprintf(prompt, sizeof prompt, "say %s", text);
    run r;
    initiate(s, token, prompt, &r);
    kx_th_sse e;
    read_stream(s, &r, token, &e);
    assert_string_equal(last_event(&e), COMPLETED);
    assert_run_col(s, &r, "status", "completed");
    kx_th_sse_free(&e);
}

/* ---- 1. a runner killed mid-run --------------------------------------------------------- */

static void test_runner_sigkill_is_reaped(void **state)
{
    char *token = new_account(&g_stack);
    run r;
    initiate(&g_stack, token, "hang", &r);
    char path[128];
    stream_path(&r, path, sizeof path);
    kx_th_sse_reader *reader = kx_th_sse_start(&g_stack, path, token, STREAM_TIMEOUT_MS);
    assert_non_null(reader);

    /* A runner holds it (running, with a lease) and is waiting for the model, which never
     * answers: without the reaper this run would stay running for KX_LLM_TTFB_MS (120 s). */
    wait_status(&g_stack, &r, "running", true, 10000);
    sleep_ms(300);
    char *owner = run_col(&g_stack, &r, "lease_owner");
    assert_true(owner[0] != '\0');
    assert_run_col(&g_stack, &r, "status", "running");

    kx_th_proc *runner = proc("agent-runner");
    pid_t pid = runner->pid;
    int64_t t_kill = kx_mono_ms();
    assert_int_equal(kill(pid, SIGKILL), 0);
    int wstatus = 0;
    assert_int_equal(waitpid(pid, &wstatus, 0), pid);
    assert_true(WIFSIGNALED(wstatus) && WTERMSIG(wstatus) == SIGKILL);
    runner->pid = 0; /* the harness must not wait for it at the end */
    runner->exit_status = 128 + SIGKILL;

    /* The lease was last extended by a heartbeat at most 200 ms before the kill, to 2000 ms
     * after it; the reaper looks every 200 ms. So the run leaves running 1.8-2.2 s after the
     * kill: bounds 1.5 s (it really was the lease running out, not something else failing the
     * run at once) and 3.5 s (TTL + reaper + 1.3 s of slack for a loaded machine). */
    int64_t t_left = wait_status(&g_stack, &r, "running", false, 10000);
    int64_t took = t_left - t_kill;
    print_message("[ timing   ] reaped %lld ms after the kill\n", (long long)took);
    if (took < 1500 || took > 3500)
        fail_msg("the run left running %lld ms after the kill (want 1500..3500)", (long long)took);
    assert_run_col(&g_stack, &r, "status", "failed");
    char *error = run_col(&g_stack, &r, "error");
    char want_error[300];
    snprintf(want_error, sizeof want_error, "reaped: runner %s stopped heartbeating at 20", owner);
    if (strncmp(error, want_error, strlen(want_error)) != 0)
        fail_msg("error \"%s\" does not start with \"%s\"", error, want_error);
    assert_run_col(&g_stack, &r, "completed_at IS NOT NULL", "true");
    assert_run_col(&g_stack, &r, "lease_expires_at", "");

    /* The stream ends with the reaper's terminal event, which names the reason. */
    kx_th_sse e;
    join_stream(reader, &e);
    char want_event[512];
    snprintf(want_event, sizeof want_event,
             "{\"type\": \"status\", \"status\": \"failed\", \"message\": \"Agent run failed: "
             "%s\"}",
             error);
    assert_string_equal(last_event(&e), want_event);
    if (e.at_ms[e.n - 1] - t_kill > 4000)
        fail_msg("the failed event came %lld ms after the kill",
                 (long long)(e.at_ms[e.n - 1] - t_kill));
    kx_th_sse_free(&e);

    /* A restarted runner takes new runs; the reaped run stays failed. */
    start_service("agent-runner");
    assert_plain_run_completes(&g_stack, token, "back after the kill");
    assert_run_col(&g_stack, &r, "status", "failed");
    free(error);
    free(owner);
    free(token);
}

/* ---- 1b. runner killed in the middle of a tool call ------------------------------------- */

/* Kortix's original failure: a worker dies while its tool runs. The run is reaped as in case 1,
 * and the reaper's STOP reaches the tool-executor, which kills the orphaned command's process
 * group — long before the command's own deadline (30 s here). */
static void test_runner_killed_mid_tool_kills_its_command(void **state)
{
    char *token = new_account(&g_stack);
    run r;
    initiate(&g_stack, token,
             "call execute_command {\"command\": \"sleep 617\", \"blocking\": true, "
             "\"timeout\": 30}",
             &r);
    pid_t sleeper = wait_process("sleep 617", 10000);
    assert_true(sleeper > 0);
    assert_in_sandbox(sleeper);

    kx_th_proc *runner = proc("agent-runner");
    pid_t pid = runner->pid;
    int64_t t_kill = kx_mono_ms();
    assert_int_equal(kill(pid, SIGKILL), 0);
    int wstatus = 0;
    assert_int_equal(waitpid(pid, &wstatus, 0), pid);
    runner->pid = 0;
    runner->exit_status = 128 + SIGKILL;

    /* Reaped as in case 1 (TTL 2 s + reaper 0.2 s; 3.5 s with slack), then the STOP kills the
     * command: gone within 4.5 s of the kill, where its own deadline is 30 s. */
    int64_t t_left = wait_status(&g_stack, &r, "running", false, 10000);
    print_message("[ timing   ] reaped %lld ms after the kill\n", (long long)(t_left - t_kill));
    if (t_left - t_kill > 3500)
        fail_msg("the run left running %lld ms after the kill (want <= 3500)",
                 (long long)(t_left - t_kill));
    assert_run_col(&g_stack, &r, "status", "failed");
    int64_t t_gone = wait_no_process("sleep 617", 10000);
    print_message("[ timing   ] orphaned command gone %lld ms after the kill\n",
                  (long long)(t_gone - t_kill));
    if (t_gone - t_kill > 4500)
        fail_msg("the orphaned command was killed %lld ms after its runner (want <= 4500)",
                 (long long)(t_gone - t_kill));

    start_service("agent-runner");
    assert_plain_run_completes(&g_stack, token, "back after the mid-tool kill");
    free(token);
}

/* ---- 2. a tool that hangs --------------------------------------------------------------- */

static void test_hanging_tool_is_killed(void **state)
{
    char *token = new_account(&g_stack);
    run r;
    initiate(&g_stack, token,
             "call execute_command {\"command\": \"sleep 613\", \"blocking\": true, "
             "\"timeout\": 2}",
             &r);
    char path[128];
    stream_path(&r, path, sizeof path);
    kx_th_sse_reader *reader = kx_th_sse_start(&g_stack, path, token, STREAM_TIMEOUT_MS);
    assert_non_null(reader);

    /* The command really runs, in the sandbox (this also proves find_process sees it). */
    pid_t sleeper = wait_process("sleep 613", 5000);
    assert_in_sandbox(sleeper);

    kx_th_sse e;
    join_stream(reader, &e);
    int64_t took = e.at_ms[e.n - 1] - r.started_ms;
    assert_string_equal(last_event(&e), COMPLETED);
    assert_run_col(&g_stack, &r, "status", "completed");

    /* Killed at its 2 s deadline: the run cannot be faster than that, and the rest (two model
     * turns, about 15 saved rows) takes well under a second; 6 s allows for a loaded machine
     * and is still 100 times less than the 613 s the command wanted. */
    print_message("[ timing   ] hanging tool run took %lld ms\n", (long long)took);
    if (took < 1900 || took > 6000)
        fail_msg("the run took %lld ms (want 1900..6000)", (long long)took);

    /* The model got a failed, timed-out tool result. */
    json_t *failed = find_row(&e, "status", "tool_failed");
    assert_non_null(failed);
    assert_string_equal(jstr(failed, "function_name"), "execute_command");
    json_decref(failed);
    assert_null(find_row(&e, "status", "tool_completed"));
    json_t *result = tool_result(&e);
    assert_true(json_is_false(json_object_get(result, "success")));
    json_t *output = json_object_get(result, "output");
    assert_true(json_is_true(json_object_get(output, "timed_out")));
    assert_true(json_is_false(json_object_get(output, "completed")));
    const char *err = jstr(result, "error");
    assert_non_null(err);
    if (strstr(err, "timed out after 2 s") == NULL)
        fail_msg("tool error \"%s\" does not say \"timed out after 2 s\"", err);
    json_decref(result);

    /* The whole process group is gone: the sleep did not outlive its deadline. */
    wait_no_process("sleep 613", 1000);
    kx_th_sse_free(&e);
    free(token);
}

/* ---- 3. one hung run never blocks another ----------------------------------------------- */

/* A's tool deadline. It only has to outlast B; it is short because (see below) the stop does
 * not kill A's command, which then lives until this deadline. */
#define HUNG_TOOL_TIMEOUT_S 6

static void test_hung_run_does_not_block_others(void **state)
{
    char *token = new_account(&g_stack);
    run a;
    char prompt[256];
    snprintf(prompt, sizeof prompt,
             "call execute_command {\"command\": \"sleep 615\", \"blocking\": true, "
             "\"timeout\": %d}",
             HUNG_TOOL_TIMEOUT_S);
    initiate(&g_stack, token, prompt, &a);
    char path[128];
    stream_path(&a, path, sizeof path);
    kx_th_sse_reader *reader = kx_th_sse_start(&g_stack, path, token, STREAM_TIMEOUT_MS);
    assert_non_null(reader);
    pid_t sleeper = wait_process("sleep 615", 5000);
    int64_t t_tool = kx_mono_ms(); /* A's command started at most this late */
    assert_in_sandbox(sleeper);

    /* B, on the same runner, executor and broker, runs a command of its own and completes
     * while A hangs. It needs two model turns and a command: 4 s is generous and far less than
     * A's remaining tool time. */
    run b;
    initiate(&g_stack, token,
             "call execute_command {\"command\": \"echo b-was-not-blocked\", \"blocking\": true}",
             &b);
    kx_th_sse eb;
    read_stream(&g_stack, &b, token, &eb);
    int64_t b_took = eb.at_ms[eb.n - 1] - b.started_ms;
    assert_string_equal(last_event(&eb), COMPLETED);
    print_message("[ timing   ] run B took %lld ms while A hung\n", (long long)b_took);
    if (b_took > 4000)
        fail_msg("run B took %lld ms while A hung (want <= 4000)", (long long)b_took);
    json_t *result = tool_result(&eb);
    assert_true(json_is_true(json_object_get(result, "success")));
    assert_true(json_mentions(json_object_get(result, "output"), "b-was-not-blocked"));
    json_decref(result);
    kx_th_sse_free(&eb);
    assert_run_col(&g_stack, &a, "status", "running");
    assert_int_equal(find_process("sleep 615"), sleeper);

    /* Stop A: the compare-and-set answers at once and the stopped event ends A's stream
     * within 1 s (the skeleton's bound for STOP). */
    snprintf(path, sizeof path, "/api/agent-run/%s/stop", a.id);
    int64_t t_stop = kx_mono_ms();
    long status = 0;
    json_t *v = kx_th_json(&g_stack, "POST", path, token, NULL, &status);
    assert_int_equal(status, 200);
    assert_string_equal(jstr(v, "status"), "stopped");
    json_decref(v);
    kx_th_sse ea;
    join_stream(reader, &ea);
    assert_string_equal(last_event(&ea), STOPPED);
    if (ea.at_ms[ea.n - 1] - t_stop > 1000)
        fail_msg("the stopped event came %lld ms after the stop",
                 (long long)(ea.at_ms[ea.n - 1] - t_stop));
    kx_th_sse_free(&ea);
    assert_run_col(&g_stack, &a, "status", "stopped");

    /* A's command dies with the stop: the STOP on kx.run.ctl.<id> also reaches the
     * tool-executor, which aborts A's call and has the broker kill its process group. 1 s
     * covers the stop round trip plus the kill; A's own tool deadline (6 s) is far later. */
    int64_t t_gone = wait_no_process("sleep 615", HUNG_TOOL_TIMEOUT_S * 1000 + 3000);
    print_message("[ timing   ] stopped run's command was gone %lld ms after the stop\n",
                  (long long)(t_gone - t_stop));
    if (t_gone - t_stop > 1000)
        fail_msg("A's command was killed %lld ms after the stop (want <= 1000; its own "
                 "deadline was %d s after it started)",
                 (long long)(t_gone - t_stop), HUNG_TOOL_TIMEOUT_S);
    (void)t_tool;
    sleep_ms(300); /* the executor's late answer to the cancelled request has been sent */
    assert_run_col(&g_stack, &a, "status", "stopped");
    const char *p[] = {a.thread_id};
    char *tool_rows = kx_th_sql_value(&g_stack,
                                      "SELECT count(*) FROM messages "
                                      "WHERE thread_id = $1 AND type = 'tool'",
                                      1, p);
    assert_non_null(tool_rows);
    assert_string_equal(tool_rows, "0");
    free(tool_rows);
    free(token);
}

/* ---- 4. scheduler down while runs are submitted ----------------------------------------- */

static void test_scheduler_down_loses_nothing(void **state)
{
    char *token = new_account(&g_stack);
    stop_service("scheduler");
    run r[3];
    for (int i = 0; i < 3; i++) {
        char prompt[64];
        snprintf(prompt, sizeof prompt, "say queued run %d", i);
        initiate(&g_stack, token, prompt, &r[i]);
    }
    /* With the scheduler up a run is running within ~100 ms; 1 s later these are still
     * queued and were never dispatched: nothing else moves them. */
    sleep_ms(1000);
    for (int i = 0; i < 3; i++) {
        assert_run_col(&g_stack, &r[i], "status", "queued");
        assert_run_col(&g_stack, &r[i], "dispatched_at", "");
    }

    start_service("scheduler");
    int64_t t_up = kx_mono_ms();
    for (int i = 0; i < 3; i++) {
        kx_th_sse e;
        read_stream(&g_stack, &r[i], token, &e);
        assert_string_equal(last_event(&e), COMPLETED);
        /* The submits made while it was down reached nobody (kx.run.submit is core); the
         * scheduler's first reaper tick admits the queued runs (1 s). 5 s allows for a loaded
         * machine. */
        if (e.at_ms[e.n - 1] - t_up > 5000)
            fail_msg("run %d completed %lld ms after the scheduler came back", i,
                     (long long)(e.at_ms[e.n - 1] - t_up));
        kx_th_sse_free(&e);
        assert_run_col(&g_stack, &r[i], "status", "completed");
        assert_run_col(&g_stack, &r[i], "attempt", "1");
    }
    free(token);
}

/* ---- 5. sandbox-broker down ------------------------------------------------------------- */

static void test_broker_down_fails_tool_fast(void **state)
{
    char *token = new_account(&g_stack);
    stop_service("sandbox-broker");
    run r;
    /* timeout 60: were the missing broker noticed only at the deadline, the run would take a
     * minute. */
    initiate(&g_stack, token,
             "call execute_command {\"command\": \"echo no-broker\", \"blocking\": true, "
             "\"timeout\": 60}",
             &r);
    kx_th_sse e;
    read_stream(&g_stack, &r, token, &e);
    int64_t took = e.at_ms[e.n - 1] - r.started_ms;
    assert_string_equal(last_event(&e), COMPLETED);
    assert_run_col(&g_stack, &r, "status", "completed");
    /* NATS answers "no responders" at once: two model turns and a failed call, ~0.3 s;
     * 3 s for a loaded machine. */
    print_message("[ timing   ] broker down run took %lld ms\n", (long long)took);
    if (took > 3000)
        fail_msg("the run took %lld ms with the broker down (want <= 3000)", (long long)took);
    json_t *failed = find_row(&e, "status", "tool_failed");
    assert_non_null(failed);
    json_decref(failed);
    json_t *result = tool_result(&e);
    assert_true(json_is_false(json_object_get(result, "success")));
    const char *err = jstr(result, "error");
    assert_non_null(err);
    if (strstr(err, "sandbox is not available") == NULL)
        fail_msg("tool error \"%s\" does not say the sandbox is not available", err);
    json_decref(result);
    kx_th_sse_free(&e);

    start_service("sandbox-broker");
    run again;
    initiate(&g_stack, token,
             "call execute_command {\"command\": \"echo broker-is-back\", \"blocking\": true}",
             &again);
    read_stream(&g_stack, &again, token, &e);
    assert_string_equal(last_event(&e), COMPLETED);
    result = tool_result(&e);
    assert_true(json_is_true(json_object_get(result, "success")));
    assert_true(json_mentions(json_object_get(result, "output"), "broker-is-back"));
    json_decref(result);
    kx_th_sse_free(&e);
    free(token);
}

/* ---- 6. stop is a compare-and-set ------------------------------------------------------- */

/* The row's columns a stop could change, as one text. */
static char *run_row(const kx_th_stack *s, const run *r)
{
    return run_col(s, r,
                   "concat_ws('|', status, error, lease_epoch, lease_owner, attempt, "
                   "started_at, completed_at, updated_at)");
}

static void test_stop_is_compare_and_set(void **state)
{
    char *token = new_account(&g_stack);

    /* A completed run: the stop reports how it ended and changes nothing. */
    run done;
    initiate(&g_stack, token, "say finished before the stop", &done);
    kx_th_sse e;
    read_stream(&g_stack, &done, token, &e);
    assert_string_equal(last_event(&e), COMPLETED);
    kx_th_sse_free(&e);
    char *before = run_row(&g_stack, &done);
    char path[128];
    snprintf(path, sizeof path, "/api/agent-run/%s/stop", done.id);
    long status = 0;
    json_t *v = kx_th_json(&g_stack, "POST", path, token, NULL, &status);
    assert_int_equal(status, 200);
    assert_string_equal(jstr(v, "status"), "completed");
    json_decref(v);
    char *after = run_row(&g_stack, &done);
    assert_string_equal(after, before);
    free(before);
    free(after);

    /* A queued run (the scheduler is down) is stopped before anyone dispatched it. */
    stop_service("scheduler");
    run queued;
    initiate(&g_stack, token, "say this run must never execute", &queued);
    assert_run_col(&g_stack, &queued, "status", "queued");
    snprintf(path, sizeof path, "/api/agent-run/%s/stop", queued.id);
    v = kx_th_json(&g_stack, "POST", path, token, NULL, &status);
    assert_int_equal(status, 200);
    assert_string_equal(jstr(v, "status"), "stopped");
    json_decref(v);
    before = run_row(&g_stack, &queued);

    /* A sentinel submitted after it: once the sentinel completed, the scheduler has admitted
     * what was queued (its first reaper tick), and the stopped run was not among it. Then
     * 1.5 s (three sweeps) more for anything late. */
    run sentinel;
    initiate(&g_stack, token, "say sentinel", &sentinel);
    start_service("scheduler");
    read_stream(&g_stack, &sentinel, token, &e);
    assert_string_equal(last_event(&e), COMPLETED);
    kx_th_sse_free(&e);
    sleep_ms(1500);

    /* Never claimed, never run: the row is as the stop left it (status stopped, attempt 0,
     * no lease, no started_at), the thread holds only the user's message, and the stream is
     * the single stopped event. */
    after = run_row(&g_stack, &queued);
    assert_string_equal(after, before);
    assert_run_col(&g_stack, &queued, "status", "stopped");
    assert_run_col(&g_stack, &queued, "attempt", "0");
    assert_run_col(&g_stack, &queued, "lease_owner", "");
    assert_run_col(&g_stack, &queued, "started_at", "");
    const char *p[] = {queued.thread_id};
    char *kinds = kx_th_sql_value(&g_stack,
                                  "SELECT string_agg(type, ',' ORDER BY created_at) "
                                  "FROM messages WHERE thread_id = $1",
                                  1, p);
    assert_non_null(kinds);
    assert_string_equal(kinds, "user");
    free(kinds);
    read_stream(&g_stack, &queued, token, &e);
    assert_int_equal(e.n, 1);
    assert_string_equal(last_event(&e), STOPPED);
    kx_th_sse_free(&e);
    free(before);
    free(after);
    free(token);
}

/* ---- 7. the LLM hangs (second stack) ---------------------------------------------------- */

static void test_hanging_model_fails_the_run(void **state)
{
    char *token = new_account(&g_llm_stack);
    run r;
    initiate(&g_llm_stack, token, "hang", &r);
    char path[128];
    stream_path(&r, path, sizeof path);
    kx_th_sse_reader *reader = kx_th_sse_start(&g_llm_stack, path, token, STREAM_TIMEOUT_MS);
    assert_non_null(reader);

    /* Meanwhile another run on the same runner answers. */
    wait_status(&g_llm_stack, &r, "running", true, 10000);
    assert_plain_run_completes(&g_llm_stack, token, "not held up by a hanging model");
    assert_run_col(&g_llm_stack, &r, "status", "running");

    kx_th_sse e;
    join_stream(reader, &e);
    int64_t took = e.at_ms[e.n - 1] - r.started_ms;
    /* Two attempts of 2 s (the first byte's or the idle gap's deadline) and a jittered backoff
     * of 250..500 ms: 4.25..4.5 s. At least 4 s (both attempts ran to their timeout); at most
     * 7 s for a loaded machine. */
    print_message("[ timing   ] llm hang run took %lld ms\n", (long long)took);
    if (took < 4000 || took > 7000)
        fail_msg("the run failed after %lld ms (want 4000..7000)", (long long)took);
    assert_run_col(&g_llm_stack, &r, "status", "failed");
    char *error = run_col(&g_llm_stack, &r, "error");
    if (strncmp(error, "LLM request failed: ", 20) != 0 ||
        (strstr(error, "within 2000 ms") == NULL && strstr(error, "silent for 2000 ms") == NULL))
        fail_msg("error \"%s\" does not name the LLM timeout", error);
    char want_event[1024];
    snprintf(want_event, sizeof want_event,
             "{\"type\": \"status\", \"status\": \"failed\", \"message\": \"%s\"}", error);
    assert_string_equal(last_event(&e), want_event);
    /* The failure is also saved in the thread, as Kortix's error status. */
    json_t *saved = find_row(&e, "status", "error");
    assert_non_null(saved);
    assert_string_equal(jstr(saved, "message"), error);
    json_decref(saved);
    kx_th_sse_free(&e);
    free(error);
    free(token);
}

/* ---- 8. Postgres outage longer than the lease TTL ---------------------------------------- */

static void test_db_outage_does_not_reap_live_runs(void **state)
{
    char *token = new_account(&g_stack);
    run r;
    initiate(&g_stack, token,
             "call execute_command {\"command\": \"sleep 4.619\", \"blocking\": true, "
             "\"timeout\": 20}",
             &r);
    /* The run is in its tool call once the command runs in the sandbox. */
    assert_true(wait_process("sleep 4.619", 10000) > 0);
    assert_int_equal(kx_th_pg_down(&g_stack.pg), KX_OK);
    /* 2.6 s > the 2 s lease TTL: every lease the runner holds has expired in the table by the
     * time Postgres is back, and no heartbeat could be applied meanwhile. */
    sleep_ms(2600);
    assert_int_equal(kx_th_pg_up(&g_stack.pg), KX_OK);
    kx_th_sse e;
    read_stream(&g_stack, &r, token, &e);
    assert_string_equal(last_event(&e), COMPLETED);
    kx_th_sse_free(&e);
    assert_run_col(&g_stack, &r, "status", "completed");
    assert_run_col(&g_stack, &r, "error", "");
    free(token);
}

/* ---- main ------------------------------------------------------------------------------- */

static int start_stack(void **state)
{
    const char *env[] = {"KX_RUN_MAX_ATTEMPTS=1", NULL};
    kx_th_stack_opts opts = {.env = env};
    return kx_th_stack_start(&opts, &g_stack) == KX_OK ? 0 : -1;
}

/* Before each case: every process of the stack runs (a case that failed half-way may have
 * left a service stopped; the next case must not inherit that). */
static int all_running(void **state)
{
    for (int i = 0; i < KX_TH_STACK_NPROCS; i++) {
        kx_th_proc *p = &g_stack.procs[i];
        if (p->pid <= 0 && kx_th_stack_proc_start(&g_stack, p, 15000) != KX_OK)
            return -1;
    }
    return 0;
}

static int start_llm_stack(void **state)
{
    const char *env[] = {"KX_LLM_TTFB_MS=2000", "KX_LLM_IDLE_MS=2000", "KX_LLM_RETRIES=1", NULL};
    kx_th_stack_opts opts = {.env = env};
    return kx_th_stack_start(&opts, &g_llm_stack) == KX_OK ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest faults[] = {
        cmocka_unit_test_setup(test_runner_sigkill_is_reaped, all_running),
        cmocka_unit_test_setup(test_runner_killed_mid_tool_kills_its_command, all_running),
        cmocka_unit_test_setup(test_hanging_tool_is_killed, all_running),
        cmocka_unit_test_setup(test_hung_run_does_not_block_others, all_running),
        cmocka_unit_test_setup(test_scheduler_down_loses_nothing, all_running),
        cmocka_unit_test_setup(test_broker_down_fails_tool_fast, all_running),
        cmocka_unit_test_setup(test_stop_is_compare_and_set, all_running),
        cmocka_unit_test_setup(test_db_outage_does_not_reap_live_runs, all_running),
    };
    const struct CMUnitTest llm[] = {
        cmocka_unit_test(test_hanging_model_fails_the_run),
    };
    int failed = cmocka_run_group_tests_name("faults", faults, start_stack, NULL);
    if (kx_th_stack_stop(&g_stack, failed != 0) != 0)
        failed++;
    int llm_failed = cmocka_run_group_tests_name("llm_timeout", llm, start_llm_stack, NULL);
    if (kx_th_stack_stop(&g_llm_stack, llm_failed != 0) != 0)
        llm_failed++;
    return failed + llm_failed != 0;
}
