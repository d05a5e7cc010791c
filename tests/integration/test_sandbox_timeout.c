/* test_sandbox_timeout.c — tool-executor + sandbox-broker + a real nats-server, end to end on
 * kx.tool.exec (and kx.sandbox.* directly):
 *   - execute_command "echo hello" answers "hello\n", exit code 0;
 *   - a blocking command with timeout 1 that sleeps 30 s is killed at ~1 s with its whole
 *     process group, including a backgrounded grandchild; the partial output comes back;
 *   - two concurrent calls: one hangs, the other answers at once;
 *   - argument errors, unknown tools, a missing Kx-Deadline, a folder with "..";
 *   - the command's environment holds nothing of the broker's;
 *   - output beyond KX_SANDBOX_MAX_OUTPUT is cut and marked truncated;
 *   - non-blocking commands write to the session log; kx.sandbox.kill kills them;
 *   - SIGTERM drains the executor: a call still in flight is answered "shutting down" and
 *     its command killed;
 *   - SIGTERM drains the broker: the waiting caller hears "broker shutting down", the command
 *     is killed;
 *   - with a broker that never answers, the executor still answers before the caller's
 *     deadline (timed out) and sends kx.sandbox.kill for the exec. */
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"
#include "sandbox_client.h"
#include "suite.h"
#include "kx/bus.h"
#include "kx/pb.h"
#include "kx/time.h"
#include "kx/uuid.h"

#define MAX_OUTPUT 4096

static char *g_tmp;
static kx_th_nats g_nats;
static pid_t g_broker, g_executor;
static char g_root[512]; /* KX_SANDBOX_ROOT */
static char g_project[KX_UUID_LEN + 1];
static kx_bus *g_bus;

/* ---- starting the services ------------------------------------------------------------ */

static pid_t start_broker(void)
{
    char root_env[600];
    snprintf(root_env, sizeof root_env, "KX_SANDBOX_ROOT=%s", g_root);
    const char *extra[] = {root_env,
                           "KX_SANDBOX_MAX_OUTPUT=4096",
                           "KX_SANDBOX_AUTO_STOP_MS=1500",
                           "KX_TEST_SECRET=hunter2-must-not-leak",
                           "KX_DRAIN_TIMEOUT_MS=5000",
                           NULL};
    return kx_th_service_start(g_tmp, g_nats.url, "sandbox-broker", extra, NULL);
}

static pid_t start_executor(void)
{
    const char *extra[] = {"KX_DRAIN_TIMEOUT_MS=2000", NULL};
    return kx_th_service_start(g_tmp, g_nats.url, "tool-executor", extra, NULL);
}

static int group_setup(void **state)
{
    if (kx_th_suite_open("kx-it-sandbox", &g_tmp, &g_nats) != KX_OK)
        return -1;
    chmod(g_tmp, 0711); /* sandboxes run as their own uid: bwrap traverses to them */
    snprintf(g_root, sizeof g_root, "%s/sandboxes", g_tmp);
    kx_uuid_new(g_project);
    g_broker = start_broker();
    g_executor = start_executor();
    if (g_broker == 0 || g_executor == 0)
        return -1;
    return kx_th_bus_connect(g_nats.url, "it-sandbox", &g_bus) == KX_OK ? 0 : -1;
}

static int group_teardown(void **state)
{
    const pid_t pids[] = {g_executor, g_broker};
    return kx_th_suite_close(g_bus, pids, 2, &g_nats, NULL, g_tmp) == 0 ? 0 : -1;
}

/* ---- calling tools -------------------------------------------------------------------- */

/* Calls tool with args through kx.tool.exec, deadline in deadline_ms; call_id may be NULL. */
static kx_th_tool_reply call_tool(const char *call_id, const char *tool, const char *args,
                                  int64_t deadline_ms)
{
    char id[KX_UUID_LEN + 1];
    if (call_id == NULL) {
        kx_uuid_new(id);
        call_id = id;
    }
    Kx__V1__ToolCall tc = KX__V1__TOOL_CALL__INIT;
    tc.call_id = (char *)call_id;
    tc.run_id = (char *)call_id;
    tc.project_id = g_project;
    tc.account_id = g_project;
    tc.tool_name = (char *)tool;
    tc.arguments_json = (char *)args;
    kx_th_tool_reply out = kx_th_tool_exec(g_bus, &tc, g_project, deadline_ms);
    assert_int_not_equal(out.err, KX_ERR_PROTOCOL); /* a reply that is not a ToolResult */
    return out;
}

static const char *out_str(const kx_th_tool_reply *r, const char *key)
{
    json_t *v = r->output ? json_object_get(r->output, key) : NULL;
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static void workspace_file(const char *name, char *out, size_t outlen)
{
    snprintf(out, outlen, "%s/%s/workspace/%s", g_root, g_project, name);
}

/* True when no process on the host runs with that (unique) argument: commands run in a PID
 * namespace, so their own $$ means nothing here; each test's sleeps have a unique duration. */
static bool process_gone(const char *arg)
{
    return kx_th_procs_with_arg(arg, NULL) == 0;
}

static bool wait_file(const char *path, int64_t timeout_ms)
{
    int64_t end = kx_mono_ms() + timeout_ms;
    struct stat st;
    while (kx_mono_ms() < end) {
        if (stat(path, &st) == 0 && st.st_size > 0)
            return true;
        usleep(10 * 1000);
    }
    return false;
}

/* ---- tests ---------------------------------------------------------------------------- */

static void test_echo_hello(void **state)
{
    kx_th_tool_reply r = call_tool(NULL, "execute_command",
                                   "{\"command\": \"echo hello\", \"blocking\": true}", 10000);
    assert_int_equal(r.err, KX_OK);
    assert_non_null(r.res);
    assert_true(r.res->success);
    assert_false(r.res->timed_out);
    assert_null(r.res->error);
    assert_non_null(r.output);
    assert_string_equal(out_str(&r, "output"), "hello\n");
    assert_string_equal(out_str(&r, "stderr"), "");
    assert_int_equal(json_integer_value(json_object_get(r.output, "exit_code")), 0);
    assert_string_equal(out_str(&r, "cwd"), "/workspace");
    assert_true(json_is_true(json_object_get(r.output, "completed")));
    assert_non_null(strstr(out_str(&r, "session_name"), "session_"));
    /* Printed like Python's json.dumps. */
    assert_non_null(strstr(r.res->output_json, "{\"output\": \"hello\\n\", \"stderr\": \"\""));
    assert_true(r.elapsed_ms < 2000);
    kx_th_tool_reply_free(&r);
}

static void test_failing_command_and_folder(void **state)
{
    kx_th_tool_reply r = call_tool(NULL, "execute_command",
                                   "{\"command\": \"mkdir -p sub/dir && echo oops >&2; exit 3\", "
                                   "\"blocking\": \"true\"}",
                                   10000);
    assert_int_equal(r.err, KX_OK);
    assert_false(r.res->success);
    assert_null(r.res->error);
    assert_int_equal(json_integer_value(json_object_get(r.output, "exit_code")), 3);
    assert_string_equal(out_str(&r, "stderr"), "oops\n");
    kx_th_tool_reply_free(&r);

    r = call_tool(NULL, "execute_command",
                  "{\"command\": \"pwd\", \"blocking\": true, \"folder\": \"sub/dir\"}", 10000);
    assert_int_equal(r.err, KX_OK);
    assert_true(r.res->success);
    assert_string_equal(out_str(&r, "cwd"), "/workspace/sub/dir");
    assert_string_equal(out_str(&r, "output"), "/workspace/sub/dir\n"); /* jailed view */
    kx_th_tool_reply_free(&r);

    r = call_tool(NULL, "execute_command",
                  "{\"command\": \"pwd\", \"blocking\": true, \"folder\": \"../other\"}", 10000);
    assert_int_equal(r.err, KX_OK);
    assert_false(r.res->success);
    assert_non_null(r.res->error);
    assert_string_equal(r.res->error->code, "invalid_argument");
    assert_non_null(strstr(r.res->error->message, "folder '../other'"));
    kx_th_tool_reply_free(&r);
}

static void test_timeout_kills_process_group(void **state)
{
    /* The shell backgrounds a subshell that itself backgrounds a grandchild; the main shell
     * then sleeps 30 s. All of it must die at the 1 s timeout. */
    const char *args = "{\"command\": \"echo started; "
                       "sh -c 'sleep 100.0311 & sleep 100.0312' & sleep 30.0313\", "
                       "\"blocking\": true, \"timeout\": 1}";
    kx_th_tool_reply r = call_tool(NULL, "execute_command", args, 20000);
    assert_int_equal(r.err, KX_OK);
    assert_non_null(r.res);
    assert_false(r.res->success);
    assert_true(r.res->timed_out);
    assert_non_null(r.res->error);
    assert_string_equal(r.res->error->code, "deadline_exceeded");
    assert_string_equal(r.res->error->message,
                        "execute_command timed out after 1 s (process group killed)");
    assert_string_equal(out_str(&r, "output"), "started\n");
    assert_true(json_is_false(json_object_get(r.output, "completed")));
    assert_true(json_is_true(json_object_get(r.output, "timed_out")));
    assert_in_range(r.elapsed_ms, 900, 1800);
    kx_th_tool_reply_free(&r);

    usleep(200 * 1000);
    assert_true(process_gone("30.0313"));
    assert_true(process_gone("100.0311"));
    assert_true(process_gone("100.0312"));
}

typedef struct thread_call {
    const char *args;
    int64_t deadline_ms;
    kx_th_tool_reply r;
    int64_t done_mono;
} thread_call;

static void *call_thread(void *arg)
{
    thread_call *t = arg;
    t->r = call_tool(NULL, "execute_command", t->args, t->deadline_ms);
    t->done_mono = kx_mono_ms();
    return NULL;
}

static void test_hung_call_does_not_block_another(void **state)
{
    /* The hanging call: no timeout of its own beyond the caller's 3 s deadline. */
    thread_call hung = {.args = "{\"command\": \"sleep 30\", \"blocking\": true, "
                                "\"timeout\": 600}",
                        .deadline_ms = 3000};
    thread_call quick = {.args = "{\"command\": \"echo quick\", \"blocking\": true}",
                         .deadline_ms = 10000};
    pthread_t th_hung, th_quick;
    int64_t t0 = kx_mono_ms();
    assert_int_equal(pthread_create(&th_hung, NULL, call_thread, &hung), 0);
    usleep(300 * 1000);
    int64_t t1 = kx_mono_ms();
    assert_int_equal(pthread_create(&th_quick, NULL, call_thread, &quick), 0);
    assert_int_equal(pthread_join(th_quick, NULL), 0);

    assert_int_equal(quick.r.err, KX_OK);
    assert_true(quick.r.res->success);
    assert_string_equal(out_str(&quick.r, "output"), "quick\n");
    assert_true(quick.done_mono - t1 < 500); /* answered at once ... */

    assert_int_equal(pthread_join(th_hung, NULL), 0);
    assert_true(hung.done_mono > quick.done_mono); /* ... while the other still hung */
    /* The hung one is answered before its caller's deadline (3 s), as timed out: the broker
     * killed it at D - 250 ms. */
    assert_int_equal(hung.r.err, KX_OK);
    assert_true(hung.r.res->timed_out);
    assert_false(hung.r.res->success);
    assert_string_equal(hung.r.res->error->code, "deadline_exceeded");
    assert_in_range(hung.done_mono - t0, 2500, 2990);
    kx_th_tool_reply_free(&quick.r);
    kx_th_tool_reply_free(&hung.r);
}

static void test_validation_errors(void **state)
{
    kx_th_tool_reply r = call_tool(NULL, "execute_command", "{\"blocking\": true}", 5000);
    assert_int_equal(r.err, KX_OK);
    assert_false(r.res->success);
    assert_string_equal(r.res->error->code, "invalid_argument");
    assert_string_equal(r.res->error->message, "execute_command: 'command' is required");
    kx_th_tool_reply_free(&r);

    r = call_tool(NULL, "execute_command", "{\"command\": \"ls\", \"timeout\": 0}", 5000);
    assert_string_equal(r.res->error->code, "invalid_argument");
    assert_non_null(strstr(r.res->error->message, "'timeout'"));
    kx_th_tool_reply_free(&r);

    r = call_tool(NULL, "no_such_tool", "{}", 5000);
    assert_int_equal(r.err, KX_OK);
    assert_false(r.res->success);
    assert_string_equal(r.res->error->code, "not_found");
    assert_string_equal(r.res->error->message, "Tool function 'no_such_tool' not found");
    kx_th_tool_reply_free(&r);

    /* No Kx-Deadline at all: a raw request without headers. */
    Kx__V1__ToolCall tc = KX__V1__TOOL_CALL__INIT;
    tc.call_id = "no-deadline";
    tc.tool_name = "execute_command";
    tc.arguments_json = "{\"command\": \"echo x\"}";
    uint8_t buf[256];
    size_t len = kx__v1__tool_call__pack(&tc, buf);
    natsMsg *reply = NULL;
    assert_int_equal(natsConnection_Request(&reply, kx_bus_conn(g_bus), KX_SUBJ_TOOL_EXEC, buf,
                                            (int)len, 5000),
                     NATS_OK);
    Kx__V1__ToolResult *res =
        kx_pb_unpack(&kx__v1__tool_result__descriptor, natsMsg_GetData(reply),
                     (size_t)natsMsg_GetDataLength(reply));
    assert_non_null(res);
    assert_string_equal(res->error->code, "invalid_argument");
    assert_non_null(strstr(res->error->message, "Kx-Deadline"));
    kx_pb_free(res);
    natsMsg_Destroy(reply);

    /* The same straight to the broker: still a SandboxExecResult, with the error. */
    Kx__V1__SandboxExecRequest sr = KX__V1__SANDBOX_EXEC_REQUEST__INIT;
    sr.exec_id = "no-deadline";
    sr.project_id = g_project;
    sr.command = "echo x";
    len = kx__v1__sandbox_exec_request__pack(&sr, buf);
    assert_int_equal(natsConnection_Request(&reply, kx_bus_conn(g_bus), KX_SUBJ_SANDBOX_EXEC, buf,
                                            (int)len, 5000),
                     NATS_OK);
    Kx__V1__SandboxExecResult *sres =
        kx_pb_unpack(&kx__v1__sandbox_exec_result__descriptor, natsMsg_GetData(reply),
                     (size_t)natsMsg_GetDataLength(reply));
    assert_non_null(sres);
    assert_non_null(sres->error);
    assert_string_equal(sres->error->code, "invalid_argument");
    assert_false(sres->started);
    kx_pb_free(sres);
    natsMsg_Destroy(reply);
}

static void test_clean_environment_and_output_cap(void **state)
{
    kx_th_tool_reply r =
        call_tool(NULL, "execute_command", "{\"command\": \"env\", \"blocking\": 1}", 5000);
    /* blocking: 1 is not a boolean */
    assert_int_equal(r.err, KX_OK);
    assert_non_null(r.res->error);
    assert_string_equal(r.res->error->code, "invalid_argument");
    assert_non_null(strstr(r.res->error->message, "'blocking'"));
    kx_th_tool_reply_free(&r);

    r = call_tool(NULL, "execute_command", "{\"command\": \"env\", \"blocking\": true}", 5000);
    assert_true(r.res->success);
    const char *env = out_str(&r, "output");
    assert_null(strstr(env, "hunter2"));
    assert_null(strstr(env, "KX_NATS_URL"));
    char want[128];
    snprintf(want, sizeof want, "KX_PROJECT_ID=%s\n", g_project);
    assert_non_null(strstr(env, want));
    assert_non_null(strstr(env, "PATH=/usr/local/bin:/usr/bin:/bin\n"));
    assert_non_null(strstr(env, "TERM=dumb\n"));
    kx_th_tool_reply_free(&r);

    r = call_tool(NULL, "execute_command",
                  "{\"command\": \"head -c 100000 /dev/zero | tr '\\\\0' a; echo done >&2\", "
                  "\"blocking\": true}",
                  5000);
    assert_true(r.res->success);
    /* Head and tail kept (MAX_OUTPUT in all), a note in between says what was cut and
     * where the whole output is. */
    const char *out = out_str(&r, "output");
    assert_true(strlen(out) > MAX_OUTPUT && strlen(out) < MAX_OUTPUT + 400);
    assert_int_equal(strspn(out, "a"), MAX_OUTPUT / 2);
    assert_non_null(strstr(out, "95904 bytes of stdout cut (100000 in all"));
    const char *where = strstr(out, "the full output is in /workspace/.kx-output/");
    assert_non_null(where);
    char spill[800], rel[200];
    assert_int_equal(sscanf(where, "the full output is in /workspace/%199[^]]", rel), 1);
    workspace_file(rel, spill, sizeof spill);
    struct stat st;
    assert_int_equal(stat(spill, &st), 0);
    assert_int_equal(st.st_size, 100000);
    assert_string_equal(out_str(&r, "stderr"), "done\n");
    assert_true(json_is_true(json_object_get(r.output, "truncated")));
    kx_th_tool_reply_free(&r);
}

static void test_background_session_and_kill(void **state)
{
    kx_th_tool_reply r = call_tool(NULL, "execute_command",
                                   "{\"command\": \"echo in-background; echo bg > bg.txt\", "
                                   "\"session_name\": \"build\"}",
                                   5000);
    assert_int_equal(r.err, KX_OK);
    assert_true(r.res->success);
    assert_true(json_is_false(json_object_get(r.output, "completed")));
    assert_string_equal(out_str(&r, "session_name"), "build");
    assert_string_equal(out_str(&r, "message"),
                        "Command sent to session 'build'. Its output is written to the "
                        "session log.");
    assert_true(r.elapsed_ms < 1000);
    kx_th_tool_reply_free(&r);
    char path[700];
    workspace_file("bg.txt", path, sizeof path);
    assert_true(wait_file(path, 3000));
    snprintf(path, sizeof path, "%s/%s/.kx/sessions/build.log", g_root, g_project);
    assert_true(wait_file(path, 3000));
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char line[64] = "";
    assert_non_null(fgets(line, sizeof line, f));
    fclose(f);
    assert_string_equal(line, "in-background\n");

    /* A long background command, killed through kx.sandbox.kill. */
    r = call_tool("bg-sleeper", "execute_command",
                  "{\"command\": \"echo up > sleeper.pid; exec sleep 100.0421\", "
                  "\"blocking\": false}",
                  5000);
    assert_true(r.res->success);
    kx_th_tool_reply_free(&r);
    workspace_file("sleeper.pid", path, sizeof path);
    assert_true(wait_file(path, 3000));
    for (int i = 0; i < 300 && process_gone("100.0421"); i++) /* echo, then exec sleep */
        usleep(10 * 1000);
    assert_false(process_gone("100.0421"));

    bool killed[2];
    for (int i = 0; i < 2; i++) {
        Kx__V1__SandboxKillRequest kr = KX__V1__SANDBOX_KILL_REQUEST__INIT;
        kr.exec_id = "bg-sleeper";
        kr.project_id = g_project;
        Kx__V1__SandboxKillReply *kres =
            kx_th_bus_ask(g_bus, KX_SUBJ_SANDBOX_KILL, &kr.base, g_project, 2000,
                          &kx__v1__sandbox_kill_reply__descriptor, NULL, NULL);
        assert_non_null(kres);
        killed[i] = kres->killed;
        kx_pb_free(kres);
        usleep(300 * 1000);
    }
    assert_true(killed[0]);
    assert_false(killed[1]); /* already gone */
    assert_true(process_gone("100.0421"));
}

static void test_idle_sandbox_stops_and_comes_back(void **state)
{
    /* KX_SANDBOX_AUTO_STOP_MS=1500: with no command running, the jail ends; files stay; the
     * next command starts it again. Only this broker's jails count: another suite's sandboxes
     * on the same machine once failed this check. */
    kx_th_tool_reply r =
        call_tool(NULL, "execute_command",
                  "{\"command\": \"echo kept > idle.txt\", \"blocking\": true}", 5000);
    assert_int_equal(r.err, KX_OK);
    assert_true(r.res->success);
    kx_th_tool_reply_free(&r);
    assert_true(kx_th_procs_with_arg_under("/.kx/init", g_broker, NULL) >= 1);
    int64_t end = kx_mono_ms() + 6000;
    while (kx_th_procs_with_arg_under("/.kx/init", g_broker, NULL) != 0 && kx_mono_ms() < end)
        usleep(50 * 1000);
    assert_int_equal(kx_th_procs_with_arg_under("/.kx/init", g_broker, NULL), 0);
    r = call_tool(NULL, "execute_command", "{\"command\": \"cat idle.txt\", \"blocking\": true}",
                  5000);
    assert_true(r.res->success);
    assert_string_equal(out_str(&r, "output"), "kept\n");
    kx_th_tool_reply_free(&r);
}

static void test_executor_drain_answers_calls_in_flight(void **state)
{
    /* SIGTERM with a call in flight: it is answered "shutting down" just before the drain
     * timeout (2 s here), its command is killed, and the executor exits cleanly. */
    thread_call t = {.args = "{\"command\": \"echo up > inflight.pid; sleep 30.0511\", "
                             "\"blocking\": true, \"timeout\": 60}",
                     .deadline_ms = 20000};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, call_thread, &t), 0);
    char path[700];
    workspace_file("inflight.pid", path, sizeof path);
    assert_true(wait_file(path, 3000));
    int64_t t0 = kx_mono_ms();
    assert_int_equal(kx_th_kill(g_executor), 0);
    g_executor = 0;
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_int_equal(t.r.err, KX_OK);
    assert_false(t.r.res->success);
    assert_string_equal(t.r.res->error->code, "unavailable");
    assert_string_equal(t.r.res->error->message, "tool-executor shutting down");
    assert_in_range(t.done_mono - t0, 1000, 2500);
    kx_th_tool_reply_free(&t.r);
    for (int i = 0; i < 100 && !process_gone("30.0511"); i++) /* via kx.sandbox.kill */
        usleep(10 * 1000);
    assert_true(process_gone("30.0511"));

    g_executor = start_executor();
    assert_true(g_executor > 0);
    kx_th_tool_reply r = call_tool(NULL, "execute_command",
                                   "{\"command\": \"echo back\", \"blocking\": true}", 5000);
    assert_int_equal(r.err, KX_OK);
    assert_true(r.res->success);
    kx_th_tool_reply_free(&r);
}

static void test_broker_drain(void **state)
{
    thread_call t = {.args = "{\"command\": \"echo up > drained.pid; sleep 30.0611\", "
                             "\"blocking\": true, \"timeout\": 60}",
                     .deadline_ms = 10000};
    pthread_t th;
    int64_t t0 = kx_mono_ms();
    assert_int_equal(pthread_create(&th, NULL, call_thread, &t), 0);
    char path[700];
    workspace_file("drained.pid", path, sizeof path);
    assert_true(wait_file(path, 3000));
    assert_int_equal(kx_th_kill(g_broker), 0); /* SIGTERM; a clean drain exits 0 */
    g_broker = 0;
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_int_equal(t.r.err, KX_OK);
    assert_false(t.r.res->success);
    assert_non_null(t.r.res->error);
    assert_string_equal(t.r.res->error->code, "unavailable");
    assert_string_equal(t.r.res->error->message, "broker shutting down");
    assert_true(t.done_mono - t0 < 3000);
    assert_true(process_gone("30.0611"));
    kx_th_tool_reply_free(&t.r);
}

/* A stand-in broker that takes requests and never answers; counts kill requests. */
typedef struct mute_broker {
    atomic_int execs;
    atomic_int kills;
    char killed_id[64];
} mute_broker;

static void on_mute_exec(natsMsg *msg, void *arg)
{
    mute_broker *m = arg;
    atomic_fetch_add(&m->execs, 1);
    natsMsg_Destroy(msg);
}

static void on_mute_kill(natsMsg *msg, void *arg)
{
    mute_broker *m = arg;
    Kx__V1__SandboxKillRequest *kr =
        kx_pb_unpack(&kx__v1__sandbox_kill_request__descriptor, natsMsg_GetData(msg),
                     (size_t)natsMsg_GetDataLength(msg));
    if (kr != NULL)
        snprintf(m->killed_id, sizeof m->killed_id, "%s", kr->exec_id);
    kx_pb_free(kr);
    atomic_fetch_add(&m->kills, 1);
    natsMsg_Destroy(msg);
}

static void test_mute_broker_executor_still_answers(void **state)
{
    assert_int_equal(g_broker, 0); /* stopped by test_broker_drain */
    static mute_broker m;
    natsSubscription *s1 = NULL, *s2 = NULL;
    assert_int_equal(kx_bus_subscribe(g_bus, KX_SUBJ_SANDBOX_EXEC, "sandbox-broker", on_mute_exec,
                                      &m, &s1),
                     KX_OK);
    assert_int_equal(kx_bus_subscribe(g_bus, KX_SUBJ_SANDBOX_KILL, NULL, on_mute_kill, &m, &s2),
                     KX_OK);
    natsConnection_Flush(kx_bus_conn(g_bus));

    kx_th_tool_reply r = call_tool("mute-call", "execute_command",
                                   "{\"command\": \"sleep 100\", \"blocking\": true}", 2000);
    assert_int_equal(r.err, KX_OK); /* answered, not left to time out */
    assert_true(r.elapsed_ms < 2000);
    assert_true(r.elapsed_ms >= 1800); /* waited for the broker until T + 200 */
    assert_true(r.res->timed_out);
    assert_false(r.res->success);
    assert_string_equal(r.res->error->code, "deadline_exceeded");
    assert_string_equal(r.res->error->message, "execute_command timed out after 2 s");
    kx_th_tool_reply_free(&r);
    assert_int_equal(atomic_load(&m.execs), 1);
    for (int i = 0; i < 100 && atomic_load(&m.kills) == 0; i++)
        usleep(10 * 1000);
    assert_int_equal(atomic_load(&m.kills), 1);
    assert_string_equal(m.killed_id, "mute-call");
    natsSubscription_Unsubscribe(s1);
    natsSubscription_Unsubscribe(s2);
    natsSubscription_Destroy(s1);
    natsSubscription_Destroy(s2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_echo_hello),
        cmocka_unit_test(test_failing_command_and_folder),
        cmocka_unit_test(test_timeout_kills_process_group),
        cmocka_unit_test(test_hung_call_does_not_block_another),
        cmocka_unit_test(test_validation_errors),
        cmocka_unit_test(test_clean_environment_and_output_cap),
        cmocka_unit_test(test_background_session_and_kill),
        cmocka_unit_test(test_idle_sandbox_stops_and_comes_back),
        cmocka_unit_test(test_executor_drain_answers_calls_in_flight),
        cmocka_unit_test(test_broker_drain), /* stops the broker */
        cmocka_unit_test(test_mute_broker_executor_still_answers),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
