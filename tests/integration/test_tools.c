/* test_tools.c — the tool-executor's guarantees, end to end on kx.tool.exec with a real
 * nats-server and sandbox-broker:
 *   - a STOP that arrives before its call: the call is answered "cancelled" at once and runs
 *     nothing; a STOP during a call aborts it and kills its command;
 *   - a call from a stale lease epoch (a newer epoch of the run has called) is refused;
 *   - an output that JSON escaping makes larger than the bus still arrives, head and tail kept
 *     with a note, success kept — not lost and reported as a timeout;
 *   - ToolResult.status: ok / error / timeout / cancelled.
 * One stack for the whole binary. */
#include <jansson.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
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
#include "kx/bus.h"
#include "kx/pb.h"
#include "kx/time.h"
#include "kx/uuid.h"

static char *g_tmp;
static kx_th_nats g_nats;
static pid_t g_broker, g_executor;
static char g_root[512];
static char g_project[KX_UUID_LEN + 1];
static kx_bus *g_bus;

static pid_t start_service(const char *name, const char *const *extra)
{
    uint16_t port = kx_th_free_port();
    char port_env[64], nats_env[128], log_path[600], url[128], bin[512];
    snprintf(port_env, sizeof port_env, "KX_HEALTH_PORT=%u", port);
    snprintf(nats_env, sizeof nats_env, "KX_NATS_URL=%s", g_nats.url);
    snprintf(log_path, sizeof log_path, "%s/%s.log", g_tmp, name);
    snprintf(bin, sizeof bin, "%s/services/%s/%s", KX_BUILD_DIR, name, name);
    const char *env[24] = {port_env, nats_env, "KX_LOG_LEVEL=debug"};
    size_t n = 3;
    for (size_t i = 0; extra != NULL && extra[i] != NULL && n < 23; i++)
        env[n++] = extra[i];
    env[n] = NULL;
    const char *argv[] = {bin, NULL};
    pid_t pid = 0;
    if (kx_th_spawn(argv, env, log_path, &pid) != KX_OK)
        return 0;
    snprintf(url, sizeof url, "http://127.0.0.1:%u/readyz", port);
    if (kx_th_wait_http(url, 10000) != KX_OK) {
        kx_th_kill(pid);
        return 0;
    }
    return pid;
}

static int group_setup(void **state)
{
    (void)state;
    if (nats_Open(-1) != NATS_OK)
        return -1;
    g_tmp = kx_th_tmpdir("kx-it-tools");
    if (g_tmp == NULL || kx_th_nats_start(g_tmp, &g_nats) != KX_OK)
        return -1;
    chmod(g_tmp, 0711);
    snprintf(g_root, sizeof g_root, "%s/sandboxes", g_tmp);
    kx_uuid_new(g_project);
    char root_env[600];
    snprintf(root_env, sizeof root_env, "KX_SANDBOX_ROOT=%s", g_root);
    const char *broker_env[] = {root_env, "KX_SANDBOX_MAX_OUTPUT=2000000", NULL};
    const char *exec_env[] = {"KX_DRAIN_TIMEOUT_MS=2000", NULL};
    g_broker = start_service("sandbox-broker", broker_env);
    g_executor = start_service("tool-executor", exec_env);
    if (g_broker == 0 || g_executor == 0)
        return -1;
    if (kx_bus_connect(g_nats.url, "it-tools", &g_bus) != KX_OK)
        return -1;
    for (int i = 0; i < 500 && !kx_bus_connected(g_bus); i++)
        usleep(10 * 1000);
    return kx_bus_connected(g_bus) ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    kx_bus_close(g_bus, 1000);
    if (g_executor > 0)
        kx_th_kill(g_executor);
    if (g_broker > 0)
        kx_th_kill(g_broker);
    kx_th_nats_stop(&g_nats);
    kx_th_rmrf(g_tmp);
    free(g_tmp);
    return 0;
}

/* ---- calling tools -------------------------------------------------------------------- */

typedef struct call_result {
    kx_err err;
    Kx__V1__ToolResult *res;
    json_t *output;
    int64_t elapsed_ms;
} call_result;

static void call_result_free(call_result *r)
{
    kx_pb_free(r->res);
    json_decref(r->output);
    memset(r, 0, sizeof *r);
}

typedef struct call_spec {
    const char *run_id; /* NULL: a new one */
    int64_t epoch;
    const char *tool;
    const char *args;
    int64_t deadline_ms;
} call_spec;

static call_result call(const call_spec *s)
{
    call_result out = {0};
    char id[KX_UUID_LEN + 1], run[KX_UUID_LEN + 1];
    kx_uuid_new(id);
    kx_uuid_new(run);
    Kx__V1__ToolCall tc = KX__V1__TOOL_CALL__INIT;
    tc.call_id = id;
    tc.run_id = (char *)(s->run_id != NULL ? s->run_id : run);
    tc.lease_epoch = s->epoch;
    tc.project_id = g_project;
    tc.account_id = g_project;
    tc.tool_name = (char *)s->tool;
    tc.arguments_json = (char *)s->args;
    kx_bus_meta meta;
    kx_bus_meta_init(&meta, kx_deadline_in(s->deadline_ms), g_project);
    natsMsg *reply = NULL;
    int64_t t0 = kx_mono_ms();
    out.err = kx_bus_request_pb(g_bus, KX_SUBJ_TOOL_EXEC, &tc.base, &meta, &reply);
    out.elapsed_ms = kx_mono_ms() - t0;
    if (out.err == KX_OK) {
        out.res = kx_pb_unpack(&kx__v1__tool_result__descriptor, natsMsg_GetData(reply),
                               (size_t)natsMsg_GetDataLength(reply));
        natsMsg_Destroy(reply);
        assert_non_null(out.res);
        if (!kx_pb_str_empty(out.res->output_json))
            out.output = json_loads(out.res->output_json, JSON_DECODE_ANY, NULL);
    }
    return out;
}

static void stop_run(const char *run_id, int64_t epoch, const char *reason)
{
    Kx__V1__RunControl ctl = KX__V1__RUN_CONTROL__INIT;
    ctl.run_id = (char *)run_id;
    ctl.signal = KX__V1__RUN_SIGNAL__RUN_SIGNAL_STOP;
    ctl.reason = (char *)reason;
    ctl.lease_epoch = epoch;
    char subject[128];
    snprintf(subject, sizeof subject, KX_SUBJ_RUN_CTL_PREFIX "%s", run_id);
    kx_bus_meta meta;
    kx_bus_meta_init(&meta, kx_deadline_in(5000), g_project);
    assert_int_equal(kx_bus_publish_pb(g_bus, subject, &ctl.base, &meta), KX_OK);
    natsConnection_FlushTimeout(kx_bus_conn(g_bus), 2000);
}

static bool process_gone(const char *arg)
{
    return kx_th_procs_with_arg_under(arg, g_broker, NULL) == 0;
}

/* ---- STOP and epochs -------------------------------------------------------------------- */

static void test_stop_before_call(void **state)
{
    (void)state;
    char run[KX_UUID_LEN + 1];
    kx_uuid_new(run);
    stop_run(run, 0, "stopped by user");
    usleep(100 * 1000); /* the STOP is processed first (the bus does not order subjects) */
    call_spec s = {run, 1, "execute_command",
                   "{\"command\": \"touch stopped-ran; sleep 7.0411\", \"blocking\": true}", 20000};
    call_result r = call(&s);
    assert_int_equal(r.err, KX_OK);
    assert_false(r.res->success);
    assert_non_null(r.res->error);
    assert_string_equal(r.res->error->code, "cancelled");
    assert_string_equal(r.res->error->message, "the run was stopped: stopped by user");
    assert_string_equal(r.res->status, "cancelled");
    assert_true(r.elapsed_ms < 1000); /* not at the command's end, nor at the deadline */
    call_result_free(&r);
    char path[700];
    snprintf(path, sizeof path, "%s/%s/workspace/stopped-ran", g_root, g_project);
    struct stat st;
    assert_int_not_equal(stat(path, &st), 0); /* nothing ran */
    assert_true(process_gone("7.0411"));
}

typedef struct bg_call {
    call_spec spec;
    call_result r;
} bg_call;

static void *bg_call_thread(void *arg)
{
    bg_call *b = arg;
    b->r = call(&b->spec);
    return NULL;
}

static void test_stop_during_call(void **state)
{
    (void)state;
    char run[KX_UUID_LEN + 1];
    kx_uuid_new(run);
    bg_call b = {.spec = {run, 3, "execute_command",
                          "{\"command\": \"sleep 30.0412\", \"blocking\": true, "
                          "\"timeout\": 60}",
                          20000}};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, bg_call_thread, &b), 0);
    for (int i = 0; i < 300 && process_gone("30.0412"); i++)
        usleep(20 * 1000);
    assert_false(process_gone("30.0412"));
    int64_t t0 = kx_mono_ms();
    stop_run(run, 3, "lease expired"); /* fences epochs <= 3: this call's */
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_int_equal(b.r.err, KX_OK);
    assert_string_equal(b.r.res->status, "cancelled");
    assert_string_equal(b.r.res->error->message, "the run was stopped: lease expired");
    assert_true(kx_mono_ms() - t0 < 2000);
    call_result_free(&b.r);
    for (int i = 0; i < 100 && !process_gone("30.0412"); i++)
        usleep(20 * 1000);
    assert_true(process_gone("30.0412"));

    /* the retry's new lease (epoch 4) is not fenced by that STOP */
    call_spec s = {run, 4, "execute_command", "{\"command\": \"echo again\", \"blocking\": true}",
                   10000};
    call_result r = call(&s);
    assert_int_equal(r.err, KX_OK);
    assert_true(r.res->success);
    assert_string_equal(r.res->status, "ok");
    call_result_free(&r);
}

static void test_stale_epoch_refused(void **state)
{
    (void)state;
    char run[KX_UUID_LEN + 1];
    kx_uuid_new(run);
    call_spec s = {run, 2, "execute_command",
                   "{\"command\": \"echo epoch2\", \"blocking\": true}", 10000};
    call_result r = call(&s);
    assert_int_equal(r.err, KX_OK);
    assert_true(r.res->success);
    call_result_free(&r);

    s.epoch = 1;
    s.args = "{\"command\": \"touch stale-ran\", \"blocking\": true}";
    r = call(&s);
    assert_int_equal(r.err, KX_OK);
    assert_false(r.res->success);
    assert_string_equal(r.res->error->code, "conflict");
    assert_non_null(strstr(r.res->error->message, "lease epoch 1"));
    assert_non_null(strstr(r.res->error->message, "stale"));
    assert_string_equal(r.res->status, "error");
    call_result_free(&r);
    char path[700];
    snprintf(path, sizeof path, "%s/%s/workspace/stale-ran", g_root, g_project);
    struct stat st;
    assert_int_not_equal(stat(path, &st), 0);
}

/* ---- results fit the bus ---------------------------------------------------------------- */

static void test_escaped_output_fits_the_bus(void **state)
{
    (void)state;
    /* 700 000 control bytes: under the broker's cap as bytes (it keeps head and tail of what
     * fits max_payload), six times that once JSON-escaped (\u0001) */
    call_spec s = {NULL, 0, "execute_command",
                   "{\"command\": \"printf START; head -c 700000 /dev/zero | tr '\\\\0' "
                   "'\\\\001'; printf END\", \"blocking\": true, \"timeout\": 30}",
                   30000};
    call_result r = call(&s);
    assert_int_equal(r.err, KX_OK); /* before: the reply was refused by NATS -> a timeout */
    assert_true(r.res->success);
    assert_false(r.res->timed_out);
    assert_string_equal(r.res->status, "ok");
    assert_true(strlen(r.res->output_json) < 1024 * 1024);
    if (!json_is_string(r.output))
        fail_msg("output: %.300s", r.res->output_json);
    assert_true(json_is_string(r.output));
    const char *text = json_string_value(r.output);
    assert_non_null(strstr(text, "START"));
    assert_non_null(strstr(text, "END"));
    assert_non_null(strstr(text, "output cut to fit the bus"));
    assert_true(r.elapsed_ms < 20000);
    call_result_free(&r);
}

static void test_status_values(void **state)
{
    (void)state;
    call_spec s = {NULL, 0, "execute_command", "{\"command\": \"exit 4\", \"blocking\": true}",
                   10000};
    call_result r = call(&s);
    assert_int_equal(r.err, KX_OK);
    assert_false(r.res->success);
    assert_string_equal(r.res->status, "error");
    call_result_free(&r);

    s.args = "{\"command\": \"sleep 9.0413\", \"blocking\": true, \"timeout\": 1}";
    r = call(&s);
    assert_int_equal(r.err, KX_OK);
    assert_true(r.res->timed_out);
    assert_string_equal(r.res->status, "timeout");
    assert_true(r.res->duration_ms >= 900);
    call_result_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stop_before_call),
        cmocka_unit_test(test_stop_during_call),
        cmocka_unit_test(test_stale_epoch_refused),
        cmocka_unit_test(test_escaped_output_fits_the_bus),
        cmocka_unit_test(test_status_values),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
