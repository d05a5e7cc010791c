/* test_sandbox_daytona.c — the sandbox-broker with KX_SANDBOX_PROVIDER=daytona against
 * tests/fakes/daytona/fake-daytona.js (Daytona's REST wire format), over the broker's NATS
 * subjects:
 *   - lifecycle end to end: get of nothing, create (snapshot, labels, env, resources and the
 *     auto-stop/archive intervals sent, the bearer key in the header), get, stop, start (the
 *     broker polls until "started"), archive, ensure_active, delete, delete again;
 *   - a blocking command (exit code, output, folder), files (write, read, list, stat, delete),
 *     a preview link (Daytona's url and token);
 *   - background commands in Daytona process sessions: output from an offset, a second
 *     command's log after the first's, list, terminate, output with kill;
 *   - what the provider does not implement answers so, naming it: write modes other than
 *     overwrite, preview token checks;
 *   - the fake hanging on each call (list, get, create, start, exec, files, preview, a start
 *     that never settles): the caller gets deadline_exceeded by the configured deadline, and by
 *     its own when that is shorter; slow answers within the deadline still succeed;
 *   - HTTP 500 and 401 answer unavailable (the key never in the broker's log); the API gone
 *     (connection refused) answers unavailable;
 *   - SIGTERM while a call hangs: the waiting caller hears "broker shutting down" at once and
 *     the broker exits 0. */
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "fake_log.h"
#include "harness.h"
#include "sandbox_client.h"
#include "suite.h"
#include "kx/bus.h"
#include "kx/http.h"
#include "kx/pb.h"
#include "kx/time.h"
#include "kx/uuid.h"

#define FAKE_JS KX_SOURCE_DIR "/tests/fakes/daytona/fake-daytona.js"
#define KEY "dtn-secret-key-4242"
/* The broker's per-call deadlines in this test (KX_DAYTONA_*_MS). */
#define GET_MS 700
#define START_MS 1500
#define CREATE_MS 2000
#define SLACK_MS 1500 /* scheduling slack on a shared machine */

static char *g_tmp;
static kx_th_nats g_nats;
static pid_t g_broker, g_fake;
static uint16_t g_fake_port, g_broker_port;
static kx_bus *g_bus;

static int group_setup(void **state)
{
    (void)state;
    if (kx_th_suite_open("kx-it-daytona", &g_tmp, &g_nats) != KX_OK ||
        kx_http_global_init() != KX_OK)
        return -1;
    g_fake_port = kx_th_free_port();
    char port[16], log_path[600], url[128];
    snprintf(port, sizeof port, "%u", g_fake_port);
    snprintf(log_path, sizeof log_path, "%s/fake-daytona.log", g_tmp);
    static const char fake_js[] = FAKE_JS;
    const char *fargv[] = {"node", fake_js, port, KEY, NULL};
    if (kx_th_spawn(fargv, NULL, log_path, &g_fake) != KX_OK)
        return -1;
    snprintf(url, sizeof url, "http://127.0.0.1:%u/_log", g_fake_port);
    if (kx_th_wait_http(url, 10000) != KX_OK)
        return -1;
    static char env_url[128], env_root[600], env_key[128];
    snprintf(env_key, sizeof env_key, "DAYTONA_API_KEY=%s", KEY);
    snprintf(env_url, sizeof env_url, "DAYTONA_SERVER_URL=http://127.0.0.1:%u/", g_fake_port);
    snprintf(env_root, sizeof env_root, "KX_SANDBOX_ROOT=%s/sandboxes", g_tmp);
    const char *env[] = {
        "KX_SANDBOX_PROVIDER=daytona",
        env_key,
        env_url,
        "DAYTONA_TARGET=eu",
        "KX_DAYTONA_SNAPSHOT=kortix/test:1",
        "KX_DAYTONA_ENV=A=1,B=two",
        "KX_SANDBOX_AUTO_STOP_MIN=0", /* never: a value the local provider refuses */
        "KX_SANDBOX_AUTO_ARCHIVE_MIN=120",
        "KX_DAYTONA_GET_MS=700",
        "KX_DAYTONA_START_MS=1500",
        "KX_DAYTONA_CREATE_MS=2000",
        "KX_DAYTONA_PREVIEW_MS=700",
        "KX_DAYTONA_FILES_MS=700",
        "KX_DAYTONA_POLL_MS=50",
        "KX_DAYTONA_BREAKER_FAILURES=1000",
        "KX_SANDBOX_MAX_PER_ACCOUNT=2",
        env_root,
        NULL};
    g_broker = kx_th_service_start(g_tmp, g_nats.url, "sandbox-broker", env, &g_broker_port);
    if (g_broker == 0)
        return -1;
    return kx_th_bus_connect(g_nats.url, "it-daytona", &g_bus) == KX_OK ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    const pid_t pids[] = {g_broker, g_fake};
    return kx_th_suite_close(g_bus, pids, 2, &g_nats, NULL, g_tmp) == 0 ? 0 : -1;
}

/* ---- the fake --------------------------------------------------------------------------- */

static void fake_mode(const char *route, const char *mode)
{
    char url[128], body[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%u/_mode", g_fake_port);
    snprintf(body, sizeof body, "{\"route\":\"%s\",\"mode\":\"%s\"}", route, mode);
    const char *hdrs[] = {"Content-Type: application/json", NULL};
    kx_http_resp r = {0};
    assert_int_equal(kx_http_request("POST", url, hdrs, body, strlen(body), kx_deadline_in(5000),
                                     0, &r),
                     KX_OK);
    assert_int_equal(r.status, 200);
    kx_http_resp_free(&r);
}

/* The fake's log entries whose method is method and whose path starts with prefix. */
static json_t *fake_log(const char *method, const char *prefix)
{
    char m[32], p[160];
    snprintf(m, sizeof m, "method=%s", method);
    snprintf(p, sizeof p, "path^=%s", prefix);
    return kx_th_fake_log(g_fake_port, m, p);
}

/* ---- bus helpers ------------------------------------------------------------------------ */

typedef Kx__V1__SandboxLifecycleReply life_t;

static const char *code_of(const Kx__V1__Error *e)
{
    return e != NULL && e->code != NULL ? e->code : "(none)";
}

/* A request, its answer unpacked as desc (asserted); elapsed (ms) if not NULL. */
static void *ask(const char *subj, const ProtobufCMessage *m, const char *project,
                 int64_t deadline_ms, int64_t *elapsed, const ProtobufCMessageDescriptor *desc)
{
    int64_t us = 0;
    kx_err err = KX_OK;
    void *rep = kx_th_bus_ask(g_bus, subj, m, project, deadline_ms, desc, &us, &err);
    if (elapsed != NULL)
        *elapsed = us / 1000;
    if (rep == NULL)
        fail_msg("%s: no answer before the caller's deadline: %s", subj, kx_err_str(err));
    return rep;
}

static life_t *life_d(const char *op, const char *project, int64_t deadline_ms, int64_t *elapsed)
{
    int64_t us = 0;
    kx_err err = KX_OK;
    life_t *rep = kx_th_life_request(g_bus, NULL, op, project, deadline_ms, &us, &err);
    if (elapsed != NULL)
        *elapsed = us / 1000;
    if (rep == NULL)
        fail_msg("%s: no answer before the caller's deadline: %s", op, kx_err_str(err));
    return rep;
}

/* op must succeed; returns the state (static) and fills id if not NULL. */
static const char *life_ok(const char *op, const char *project, char id[KX_UUID_LEN + 1])
{
    static char state[32];
    life_t *r = life_d(op, project, 30000, NULL);
    if (r->error != NULL)
        fail_msg("%s: %s: %s", op, r->error->code, r->error->message);
    assert_non_null(r->sandbox);
    assert_string_equal(r->sandbox->provider, "daytona");
    assert_string_equal(r->sandbox->project_id, project);
    snprintf(state, sizeof state, "%s", r->sandbox->state);
    if (id != NULL)
        snprintf(id, KX_UUID_LEN + 1, "%s", r->sandbox->id);
    kx_pb_free(r);
    return state;
}

/* op must fail with code (and, if not NULL, a message containing needle) within max_ms. */
static void life_err(const char *op, const char *project, const char *code, const char *needle,
                     int64_t deadline_ms, int64_t max_ms)
{
    int64_t elapsed = 0;
    life_t *r = life_d(op, project, deadline_ms, &elapsed);
    if (r->error == NULL)
        fail_msg("%s: expected %s, got state %s", op, code, r->sandbox ? r->sandbox->state : "");
    if (strcmp(code_of(r->error), code) != 0 ||
        (needle != NULL && strstr(r->error->message, needle) == NULL))
        fail_msg("%s: expected %s (%s), got %s: %s", op, code, needle ? needle : "",
                 code_of(r->error), r->error->message);
    if (elapsed > max_ms)
        fail_msg("%s: answered after %lld ms, expected at most %lld", op, (long long)elapsed,
                 (long long)max_ms);
    if (strcmp(code, "deadline_exceeded") == 0) /* the figures docs quote */
        print_message("  %s: %s after %lld ms (caller deadline %lld ms)\n", op, code,
                      (long long)elapsed, (long long)deadline_ms);
    kx_pb_free(r);
}

static Kx__V1__SandboxExecResult *exec_d(const char *project, const char *command,
                                         const char *folder, bool blocking, int timeout_s,
                                         int64_t *elapsed)
{
    kx_th_exec x = {.project = project,
                    .command = command,
                    .folder = folder,
                    .blocking = blocking,
                    .timeout_s = timeout_s};
    int64_t us = 0;
    kx_err err = KX_OK;
    Kx__V1__SandboxExecResult *res = kx_th_exec_request(g_bus, &x, &us, &err);
    if (elapsed != NULL)
        *elapsed = us / 1000;
    if (res == NULL)
        fail_msg("exec '%s': no answer before the caller's deadline: %s", command,
                 kx_err_str(err));
    return res;
}

static Kx__V1__SandboxFilesReply *files(const char *project, Kx__V1__SandboxFileOp op,
                                        const char *path, const char *data,
                                        Kx__V1__SandboxWriteMode mode, int64_t *elapsed)
{
    Kx__V1__SandboxFilesRequest rq = KX__V1__SANDBOX_FILES_REQUEST__INIT;
    rq.project_id = (char *)project;
    rq.op = op;
    rq.path = (char *)path;
    rq.mode = mode;
    rq.recursive = true;
    if (data != NULL) {
        rq.data.data = (uint8_t *)data;
        rq.data.len = strlen(data);
    }
    Kx__V1__SandboxFilesReply *rep = ask(KX_SUBJ_SANDBOX_FILES, &rq.base, project, 30000, elapsed,
                                         &kx__v1__sandbox_files_reply__descriptor);
    return rep;
}

static Kx__V1__SandboxPreviewReply *preview(const char *project, int port, const char *token,
                                            int64_t *elapsed)
{
    Kx__V1__SandboxPreviewRequest rq = KX__V1__SANDBOX_PREVIEW_REQUEST__INIT;
    rq.project_id = (char *)project;
    rq.port = port;
    rq.token = (char *)token;
    Kx__V1__SandboxPreviewReply *rep = ask(KX_SUBJ_SANDBOX_PREVIEW, &rq.base, project, 30000,
                                           elapsed, &kx__v1__sandbox_preview_reply__descriptor);
    return rep;
}

static void expect_err(const Kx__V1__Error *e, const char *code, const char *needle,
                       const char *what)
{
    if (e == NULL)
        fail_msg("%s: expected %s, got success", what, code);
    if (strcmp(code_of(e), code) != 0 || (needle != NULL && strstr(e->message, needle) == NULL))
        fail_msg("%s: expected %s (%s), got %s: %s", what, code, needle ? needle : "", code_of(e),
                 e->message);
}

/* ---- tests ------------------------------------------------------------------------------ */

static void test_lifecycle(void **state)
{
    (void)state;
    char project[KX_UUID_LEN + 1], id[KX_UUID_LEN + 1], id2[KX_UUID_LEN + 1];
    kx_uuid_new(project);
    life_err("get", project, "not_found", "has no sandbox", 30000, 30000);
    life_err("start", project, "not_found", "create it first", 30000, 30000);

    assert_string_equal(life_ok("create", project, id), "running");
    /* what was sent: snapshot, target, labels, env, resources, intervals, the key */
    json_t *creates = fake_log("POST", "/sandbox");
    json_t *c = NULL;
    size_t i;
    json_t *e;
    json_array_foreach(creates, i, e)
    {
        if (strcmp(json_string_value(json_object_get(e, "path")), "/sandbox") == 0)
            c = e;
    }
    assert_non_null(c);
    assert_string_equal(json_string_value(json_object_get(c, "auth")), "Bearer " KEY);
    json_t *body = json_loads(json_string_value(json_object_get(c, "body")), 0, NULL);
    assert_non_null(body);
    assert_string_equal(json_string_value(json_object_get(body, "snapshot")), "kortix/test:1");
    assert_string_equal(json_string_value(json_object_get(body, "target")), "eu");
    assert_string_equal(json_string_value(json_object_get(json_object_get(body, "labels"), "id")),
                        project);
    json_t *env = json_object_get(body, "env");
    assert_string_equal(json_string_value(json_object_get(env, "KX_PROJECT_ID")), project);
    assert_string_equal(json_string_value(json_object_get(env, "A")), "1");
    assert_string_equal(json_string_value(json_object_get(env, "B")), "two");
    assert_int_equal(json_integer_value(json_object_get(body, "cpu")), 2);
    assert_int_equal(json_integer_value(json_object_get(body, "memory")), 4);
    assert_int_equal(json_integer_value(json_object_get(body, "disk")), 5);
    assert_int_equal(json_integer_value(json_object_get(body, "autoStopInterval")), 0);
    assert_int_equal(json_integer_value(json_object_get(body, "autoArchiveInterval")), 120);
    json_decref(body);
    json_decref(creates);

    assert_string_equal(life_ok("get", project, id2), "running");
    assert_string_equal(id, id2);
    assert_string_equal(life_ok("create", project, id2), "running"); /* idempotent */
    assert_string_equal(id, id2);
    assert_string_equal(life_ok("stop", project, NULL), "stopped");
    assert_string_equal(life_ok("get", project, NULL), "stopped");
    assert_string_equal(life_ok("start", project, id2), "running");
    assert_string_equal(id, id2);
    assert_string_equal(life_ok("archive", project, NULL), "archived");
    assert_string_equal(life_ok("ensure_active", project, id2), "running");
    assert_string_equal(id, id2);
    assert_string_equal(life_ok("delete", project, NULL), "deleted");
    life_err("get", project, "not_found", NULL, 30000, 30000);
    assert_string_equal(life_ok("delete", project, NULL), "deleted");
}

/* The exec request's checks are the local provider's (sb_exec_request_check): an exec_id over
 * 128 bytes, no command, a bad project id or folder is refused before any API call. */
static void test_exec_bad_requests(void **state)
{
    (void)state;
    char project[KX_UUID_LEN + 1], long_id[300];
    kx_uuid_new(project);
    memset(long_id, 'x', 200);
    long_id[200] = '\0';
    struct {
        const char *exec_id, *project, *command, *folder, *needle;
    } cases[] = {
        {long_id, project, "echo hi", "", "exec_id is required (1..128 bytes)"},
        {"", project, "echo hi", "", "exec_id is required"},
        {"e1", "not-a-uuid", "echo hi", "", "project_id 'not-a-uuid' is not a valid UUID"},
        {"e2", project, "", "", "command is required"},
        {"e3", project, "echo hi", "../up", "must not contain '..'"},
    };
    json_t *before = fake_log("POST", "/toolbox");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        Kx__V1__SandboxExecRequest rq = KX__V1__SANDBOX_EXEC_REQUEST__INIT;
        rq.exec_id = (char *)cases[i].exec_id;
        rq.project_id = (char *)cases[i].project;
        rq.command = (char *)cases[i].command;
        rq.folder = (char *)cases[i].folder;
        rq.blocking = true;
        Kx__V1__SandboxExecResult *r = ask(KX_SUBJ_SANDBOX_EXEC, &rq.base, project, 30000, NULL,
                                           &kx__v1__sandbox_exec_result__descriptor);
        expect_err(r->error, "invalid_argument", cases[i].needle, cases[i].needle);
        kx_pb_free(r);
    }
    json_t *after = fake_log("POST", "/toolbox"); /* none reached the API */
    assert_int_equal(json_array_size(after), json_array_size(before));
    json_decref(before);
    json_decref(after);
}

static void test_exec_files_preview(void **state)
{
    (void)state;
    char project[KX_UUID_LEN + 1], id[KX_UUID_LEN + 1];
    kx_uuid_new(project);
    /* the first command creates the sandbox, as with the local provider */
    Kx__V1__SandboxExecResult *r =
        exec_d(project, "echo hello; echo oops >&2; exit 3", "", true, 0, NULL);
    if (r->error != NULL)
        fail_msg("exec: %s: %s", r->error->code, r->error->message);
    assert_true(r->completed);
    assert_int_equal(r->exit_code, 3);
    assert_non_null(strstr(r->stdout, "hello\n"));
    assert_non_null(strstr(r->stdout, "oops\n"));
    kx_pb_free(r);
    assert_string_equal(life_ok("get", project, id), "running");
    r = exec_d(project, "pwd", "sub/dir", true, 0, NULL);
    assert_null(r->error);
    assert_int_equal(r->exit_code, 0);
    assert_non_null(strstr(r->stdout, "/sub/dir\n"));
    assert_string_equal(r->cwd, "/workspace/sub/dir");
    kx_pb_free(r);

    /* files */
    Kx__V1__SandboxFilesReply *f =
        files(project, KX__V1__SANDBOX_FILE_OP__SANDBOX_FILE_WRITE, "a/b.txt", "content\n",
              KX__V1__SANDBOX_WRITE_MODE__SANDBOX_WRITE_OVERWRITE, NULL);
    assert_null(f->error);
    assert_int_equal(f->written, 8);
    kx_pb_free(f);
    f = files(project, KX__V1__SANDBOX_FILE_OP__SANDBOX_FILE_READ, "/workspace/a/b.txt", NULL, 0,
              NULL);
    assert_null(f->error);
    assert_int_equal(f->data.len, 8);
    assert_memory_equal(f->data.data, "content\n", 8);
    assert_true(f->eof);
    kx_pb_free(f);
    r = exec_d(project, "cat a/b.txt", "", true, 0, NULL); /* the command sees the file */
    assert_string_equal(r->stdout, "content\n");
    kx_pb_free(r);
    f = files(project, KX__V1__SANDBOX_FILE_OP__SANDBOX_FILE_LIST, "a", NULL, 0, NULL);
    assert_null(f->error);
    assert_int_equal(f->n_entries, 1);
    assert_string_equal(f->entries[0]->name, "b.txt");
    assert_string_equal(f->entries[0]->path, "/workspace/a/b.txt");
    assert_int_equal(f->entries[0]->size, 8);
    assert_false(f->entries[0]->is_dir);
    kx_pb_free(f);
    f = files(project, KX__V1__SANDBOX_FILE_OP__SANDBOX_FILE_STAT, "a", NULL, 0, NULL);
    assert_null(f->error);
    assert_true(f->info->is_dir);
    kx_pb_free(f);
    f = files(project, KX__V1__SANDBOX_FILE_OP__SANDBOX_FILE_DELETE, "a", NULL, 0, NULL);
    assert_null(f->error);
    kx_pb_free(f);
    f = files(project, KX__V1__SANDBOX_FILE_OP__SANDBOX_FILE_READ, "a/b.txt", NULL, 0, NULL);
    expect_err(f->error, "not_found", "/workspace/a/b.txt", "read after delete");
    kx_pb_free(f);
    /* a path whose escaped form is longer than 2600 bytes (regression: the URL was cut) */
    char deep[1100];
    size_t dl = 0;
    for (int c = 0; c < 5; c++) { /* "a<196 spaces>b/" five times */
        deep[dl++] = 'a';
        memset(deep + dl, ' ', 196);
        dl += 196;
        deep[dl++] = 'b';
        deep[dl++] = '/';
    }
    snprintf(deep + dl, sizeof deep - dl, "f.txt");
    f = files(project, KX__V1__SANDBOX_FILE_OP__SANDBOX_FILE_WRITE, deep, "deep\n",
              KX__V1__SANDBOX_WRITE_MODE__SANDBOX_WRITE_OVERWRITE, NULL);
    if (f->error != NULL)
        fail_msg("deep write: %s: %s", f->error->code, f->error->message);
    kx_pb_free(f);
    f = files(project, KX__V1__SANDBOX_FILE_OP__SANDBOX_FILE_READ, deep, NULL, 0, NULL);
    assert_null(f->error);
    assert_int_equal(f->data.len, 5);
    assert_memory_equal(f->data.data, "deep\n", 5);
    kx_pb_free(f);
    f = files(project, KX__V1__SANDBOX_FILE_OP__SANDBOX_FILE_READ, "../etc/passwd", NULL, 0, NULL);
    expect_err(f->error, "invalid_argument", NULL, "read outside the workspace");
    kx_pb_free(f);

    /* preview: Daytona's own url and token */
    Kx__V1__SandboxPreviewReply *p = preview(project, 8080, "", NULL);
    if (p->error != NULL)
        fail_msg("preview: %s: %s", p->error->code, p->error->message);
    char want[128];
    snprintf(want, sizeof want, "https://8080-%s.", id);
    assert_non_null(strstr(p->url, want));
    assert_int_equal(strlen(p->token), 32);
    assert_string_equal(p->sandbox_id, id);
    kx_pb_free(p);

    /* not implemented: said so, naming the provider */
    f = files(project, KX__V1__SANDBOX_FILE_OP__SANDBOX_FILE_WRITE, "x.txt", "more",
              KX__V1__SANDBOX_WRITE_MODE__SANDBOX_WRITE_APPEND, NULL);
    expect_err(f->error, "invalid_argument", "daytona provider", "append");
    kx_pb_free(f);
    p = preview(project, 8080, "0123456789abcdef0123456789abcdef", NULL);
    expect_err(p->error, "invalid_argument", "daytona provider", "preview token check");
    kx_pb_free(p);
    assert_string_equal(life_ok("delete", project, NULL), "deleted");
}

static Kx__V1__SandboxExecResult *bg_start(const char *project, const char *session,
                                           const char *command, const char *folder)
{
    kx_th_exec x = {.project = project, .command = command, .folder = folder, .session = session};
    Kx__V1__SandboxExecResult *res = kx_th_exec_request(g_bus, &x, NULL, NULL);
    assert_non_null(res);
    return res;
}

static Kx__V1__SandboxOutputReply *output(const char *project, const char *session, int64_t offset,
                                          bool kill)
{
    Kx__V1__SandboxOutputRequest rq = KX__V1__SANDBOX_OUTPUT_REQUEST__INIT;
    rq.project_id = (char *)project;
    rq.session_name = (char *)session;
    rq.offset = offset;
    rq.kill = kill;
    Kx__V1__SandboxOutputReply *o = ask(KX_SUBJ_SANDBOX_OUTPUT, &rq.base, project, 10000, NULL,
                                        &kx__v1__sandbox_output_reply__descriptor);
    return o;
}

static Kx__V1__SandboxListReply *list_cmds(const char *project)
{
    Kx__V1__SandboxListRequest rq = KX__V1__SANDBOX_LIST_REQUEST__INIT;
    rq.project_id = (char *)project;
    Kx__V1__SandboxListReply *l = ask(KX_SUBJ_SANDBOX_LIST, &rq.base, project, 10000, NULL,
                                      &kx__v1__sandbox_list_reply__descriptor);
    assert_null(l->error);
    return l;
}

static Kx__V1__SandboxTerminateReply *terminate(const char *project, const char *session)
{
    Kx__V1__SandboxTerminateRequest rq = KX__V1__SANDBOX_TERMINATE_REQUEST__INIT;
    rq.project_id = (char *)project;
    rq.session_name = (char *)session;
    Kx__V1__SandboxTerminateReply *t = ask(KX_SUBJ_SANDBOX_TERMINATE, &rq.base, project, 10000,
                                           NULL, &kx__v1__sandbox_terminate_reply__descriptor);
    return t;
}

/* Background commands in Daytona sessions: output, list, terminate, kill. */
static void test_sessions(void **state)
{
    (void)state;
    char project[KX_UUID_LEN + 1];
    kx_uuid_new(project);
    Kx__V1__SandboxListReply *l = list_cmds(project); /* no sandbox: nothing runs */
    assert_int_equal(l->n_commands, 0);
    kx_pb_free(l);
    Kx__V1__SandboxOutputReply *o = output(project, "nosuch", 0, false);
    expect_err(o->error, "not_found", "nosuch", "output without a sandbox");
    kx_pb_free(o);

    Kx__V1__SandboxExecResult *r =
        bg_start(project, "bg1", "echo start; pwd; sleep 0.3; echo done", "w/d");
    if (r->error != NULL)
        fail_msg("background exec: %s: %s", r->error->code, r->error->message);
    assert_true(r->started);
    assert_false(r->completed);
    assert_string_equal(r->session_name, "bg1");
    assert_string_equal(r->cwd, "/workspace/w/d");
    kx_pb_free(r);
    bool running = true;
    for (int i = 0; i < 100 && running; i++) { /* up to 10 s */
        o = output(project, "bg1", 0, false);
        assert_null(o->error);
        running = o->running;
        if (running) {
            kx_pb_free(o);
            usleep(100 * 1000);
        }
    }
    assert_false(running);
    assert_non_null(strstr(o->output, "start\n"));
    assert_non_null(strstr(o->output, "/w/d\n"));
    assert_non_null(strstr(o->output, "done\n"));
    assert_int_equal(o->next_offset, o->size);
    int64_t size = o->size;
    kx_pb_free(o);
    o = output(project, "bg1", size, false); /* nothing new */
    assert_null(o->error);
    assert_string_equal(o->output, "");
    kx_pb_free(o);
    /* a second command in the same session: its log follows the first one's */
    r = bg_start(project, "bg1", "echo again", "");
    assert_null(r->error);
    kx_pb_free(r);
    for (int i = 0; i < 100; i++) {
        o = output(project, "bg1", size, false);
        if (strstr(o->output, "again\n") != NULL && !o->running)
            break;
        kx_pb_free(o);
        o = NULL;
        usleep(100 * 1000);
    }
    assert_non_null(o);
    assert_string_equal(o->output, "again\n");
    kx_pb_free(o);

    r = bg_start(project, "bg2", "sleep 30", "");
    assert_null(r->error);
    kx_pb_free(r);
    l = list_cmds(project);
    assert_int_equal(l->n_commands, 1);
    assert_string_equal(l->commands[0]->session_name, "bg2");
    assert_non_null(strstr(l->commands[0]->command, "sleep 30"));
    kx_pb_free(l);
    Kx__V1__SandboxTerminateReply *t = terminate(project, "bg2");
    assert_null(t->error);
    assert_int_equal(t->killed, 1);
    kx_pb_free(t);
    l = list_cmds(project);
    assert_int_equal(l->n_commands, 0);
    kx_pb_free(l);
    t = terminate(project, "bg2"); /* gone: nothing to kill */
    assert_null(t->error);
    assert_int_equal(t->killed, 0);
    kx_pb_free(t);

    r = bg_start(project, "bg3", "echo first; sleep 30", "");
    assert_null(r->error);
    kx_pb_free(r);
    usleep(300 * 1000);
    o = output(project, "bg3", 0, true); /* read, then kill */
    assert_null(o->error);
    assert_int_equal(o->killed, 1);
    assert_false(o->running);
    kx_pb_free(o);
    r = bg_start(project, "bad name!", "true", "");
    expect_err(r->error, "invalid_argument", "session_name", "bad session name");
    kx_pb_free(r);
    assert_string_equal(life_ok("delete", project, NULL), "deleted");
}

/* Every call, hanging, fails at its own deadline; slow ones within it succeed. */
static void test_deadlines(void **state)
{
    (void)state;
    char project[KX_UUID_LEN + 1], fresh[KX_UUID_LEN + 1];
    kx_uuid_new(project);
    assert_string_equal(life_ok("create", project, NULL), "running");
    int64_t elapsed = 0;

    fake_mode("get", "slow-300");
    assert_string_equal(life_ok("get", project, NULL), "running");
    fake_mode("get", "hang");
    life_err("get", project, "deadline_exceeded", "GET /sandbox/", 30000, GET_MS + SLACK_MS);
    /* the caller's own deadline, shorter than the setting, wins: an answer, not silence */
    life_err("get", project, "deadline_exceeded", NULL, 500, 500);
    fake_mode("get", "ok");

    kx_uuid_new(fresh); /* unknown to the broker: it asks GET /sandbox?labels= */
    fake_mode("list", "hang");
    life_err("get", fresh, "deadline_exceeded", "GET /sandbox", 30000, GET_MS + SLACK_MS);
    fake_mode("list", "ok");

    fake_mode("create", "hang");
    life_err("create", fresh, "deadline_exceeded", "POST /sandbox", 30000, CREATE_MS + SLACK_MS);
    fake_mode("create", "ok");

    assert_string_equal(life_ok("stop", project, NULL), "stopped");
    fake_mode("start", "hang");
    life_err("start", project, "deadline_exceeded", "/start", 30000, START_MS + SLACK_MS);
    fake_mode("start", "stuck"); /* answered, but never "started" */
    life_err("start", project, "deadline_exceeded", "did not start in time", 30000,
             START_MS + SLACK_MS);
    /* every poll slower than the phase has left: the last poll's GET runs out with the phase,
     * and that is still "did not start in time", not the GET's own timeout */
    fake_mode("get", "slow-300");
    life_err("start", project, "deadline_exceeded", "did not start in time", 30000,
             START_MS + SLACK_MS);
    fake_mode("get", "ok");
    fake_mode("start", "ok");
    assert_string_equal(life_ok("start", project, NULL), "running");

    fake_mode("exec", "hang");
    Kx__V1__SandboxExecResult *r = exec_d(project, "echo x", "", true, 1, &elapsed);
    expect_err(r->error, "deadline_exceeded", "process/execute", "exec hanging");
    assert_true(r->timed_out);
    assert_true(elapsed < 1000 + SLACK_MS);
    kx_pb_free(r);
    fake_mode("exec", "ok");

    fake_mode("files", "hang");
    Kx__V1__SandboxFilesReply *f =
        files(project, KX__V1__SANDBOX_FILE_OP__SANDBOX_FILE_LIST, "", NULL, 0, &elapsed);
    expect_err(f->error, "deadline_exceeded", "toolbox/files", "files hanging");
    assert_true(elapsed < GET_MS + SLACK_MS);
    kx_pb_free(f);
    fake_mode("files", "ok");

    fake_mode("preview", "hang");
    Kx__V1__SandboxPreviewReply *p = preview(project, 3000, "", &elapsed);
    expect_err(p->error, "deadline_exceeded", "preview-url", "preview hanging");
    assert_true(elapsed < GET_MS + SLACK_MS);
    kx_pb_free(p);
    fake_mode("preview", "ok");

    /* and all is well again */
    r = exec_d(project, "echo back", "", true, 0, NULL);
    assert_null(r->error);
    assert_string_equal(r->stdout, "back\n");
    kx_pb_free(r);
    assert_string_equal(life_ok("delete", project, NULL), "deleted");
}

static void test_failures(void **state)
{
    (void)state;
    char project[KX_UUID_LEN + 1];
    kx_uuid_new(project);
    fake_mode("list", "500");
    life_err("get", project, "unavailable", "HTTP 500", 30000, 30000);
    fake_mode("list", "401");
    life_err("get", project, "unavailable", "API key was refused", 30000, 30000);
    fake_mode("*", "ok");
    fake_mode("list", "ok");
    life_err("get", project, "not_found", NULL, 30000, 30000);

    /* the key never reaches the log */
    char path[600];
    snprintf(path, sizeof path, "%s/sandbox-broker.log", g_tmp);
    FILE *fp = fopen(path, "r");
    assert_non_null(fp);
    char line[4096];
    bool seen_daytona = false;
    while (fgets(line, sizeof line, fp) != NULL) {
        if (strstr(line, KEY) != NULL)
            fail_msg("the API key is in the broker's log: %s", line);
        seen_daytona = seen_daytona || strstr(line, "daytona") != NULL;
    }
    fclose(fp);
    assert_true(seen_daytona);

    /* the calls counted by outcome (test_deadlines made some time out) */
    char murl[128];
    snprintf(murl, sizeof murl, "http://127.0.0.1:%u/metrics", g_broker_port);
    kx_http_resp mr = {0};
    assert_int_equal(kx_http_request("GET", murl, NULL, NULL, 0, kx_deadline_in(5000), 0, &mr),
                     KX_OK);
    assert_non_null(strstr(mr.body, "kx_sandbox_daytona_calls_total{outcome=\"ok\"}"));
    assert_non_null(
        strstr(mr.body, "kx_sandbox_daytona_calls_total{outcome=\"deadline_exceeded\"}"));
    assert_non_null(strstr(mr.body, "kx_sandbox_daytona_calls_total{outcome=\"unavailable\"}"));
    kx_http_resp_free(&mr);

    /* the API gone: connection refused */
    kx_th_kill(g_fake);
    g_fake = 0;
    life_err("get", project, "unavailable", NULL, 30000, GET_MS + SLACK_MS);
}

/* A request on another thread (no cmocka assertions there). */
typedef struct bg_req {
    char project[KX_UUID_LEN + 1];
    Kx__V1__SandboxExecResult *res; /* NULL when no answer came */
    int64_t elapsed_ms;
} bg_req;

static void *bg_exec(void *arg)
{
    bg_req *r = arg;
    kx_th_exec x = {.project = r->project,
                    .command = "echo never",
                    .blocking = true,
                    .deadline_ms = 20000};
    int64_t us = 0;
    r->res = kx_th_exec_request(g_bus, &x, &us, NULL);
    r->elapsed_ms = us / 1000;
    return NULL;
}

/* A lifecycle op for project in the name of account (the harness's own requests name the
 * project as their account). */
static life_t *life_as(const char *account, const char *op, const char *project)
{
    Kx__V1__SandboxLifecycleRequest rq = KX__V1__SANDBOX_LIFECYCLE_REQUEST__INIT;
    rq.project_id = (char *)project;
    char subj[64];
    snprintf(subj, sizeof subj, "kx.sandbox.%s", op);
    kx_err err = KX_OK;
    life_t *r = kx_th_bus_ask(g_bus, subj, &rq.base, account, 30000,
                              &kx__v1__sandbox_lifecycle_reply__descriptor, NULL, &err);
    if (r == NULL)
        fail_msg("%s: no answer: %s", op, kx_err_str(err));
    return r;
}

static void life_as_ok(const char *account, const char *op, const char *project)
{
    life_t *r = life_as(account, op, project);
    if (r->error != NULL)
        fail_msg("%s %s: %s: %s", op, project, r->error->code, r->error->message);
    kx_pb_free(r);
}

/* One account cannot have more than KX_SANDBOX_MAX_PER_ACCOUNT (2 here) Daytona sandboxes
 * running: Daytona's quotas are the organisation's, shared by every account, so one account
 * could take them all. New sandboxes are labelled with their account and counted by that
 * label before a create or a start. */
static void test_sandboxes_per_account(void **state)
{
    (void)state;
    char acct[KX_UUID_LEN + 1], other[KX_UUID_LEN + 1], p[4][KX_UUID_LEN + 1];
    kx_uuid_new(acct);
    kx_uuid_new(other);
    for (int i = 0; i < 4; i++)
        kx_uuid_new(p[i]);
    life_as_ok(acct, "ensure_active", p[0]);
    life_as_ok(acct, "ensure_active", p[1]);
    life_as_ok(acct, "ensure_active", p[1]); /* running already: not a new one */
    life_t *r = life_as(acct, "ensure_active", p[2]);
    if (r->error == NULL || strcmp(code_of(r->error), "quota_exceeded") != 0 ||
        strstr(r->error->message, "KX_SANDBOX_MAX_PER_ACCOUNT") == NULL ||
        strstr(r->error->message, "2 sandboxes running") == NULL)
        fail_msg("a third sandbox for one account: %s: %s", code_of(r->error),
                 r->error ? r->error->message : "(none)");
    kx_pb_free(r);
    json_t *made = fake_log("POST", "/sandbox");
    size_t creates = 0, i;
    json_t *e;
    json_array_foreach(made, i, e)
    {
        const char *path = json_string_value(json_object_get(e, "path"));
        const char *body = json_string_value(json_object_get(e, "body"));
        creates += path != NULL && body != NULL && strcmp(path, "/sandbox") == 0 &&
            strstr(body, p[2]) != NULL;
    }
    json_decref(made);
    assert_int_equal(creates, 0); /* nothing was made for it */

    life_as_ok(other, "ensure_active", p[3]); /* another account */
    life_as_ok(acct, "stop", p[0]);
    life_as_ok(acct, "ensure_active", p[2]); /* room again */
    r = life_as(acct, "start", p[0]);        /* a start is counted too */
    assert_string_equal(code_of(r->error), "quota_exceeded");
    kx_pb_free(r);
    for (int k = 0; k < 4; k++)
        life_as_ok(k == 3 ? other : acct, "delete", p[k]);
}

static void test_drain(void **state)
{
    (void)state;
    /* the fake again (test_failures stopped it), every call hanging */
    char port[16], log_path[600], url[128];
    snprintf(port, sizeof port, "%u", g_fake_port);
    snprintf(log_path, sizeof log_path, "%s/fake-daytona-2.log", g_tmp);
    static const char fake_js[] = FAKE_JS;
    const char *fargv[] = {"node", fake_js, port, KEY, NULL};
    assert_int_equal(kx_th_spawn(fargv, NULL, log_path, &g_fake), KX_OK);
    snprintf(url, sizeof url, "http://127.0.0.1:%u/_log", g_fake_port);
    assert_int_equal(kx_th_wait_http(url, 10000), KX_OK);
    fake_mode("*", "hang");

    bg_req r;
    memset(&r, 0, sizeof r);
    kx_uuid_new(r.project);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, bg_exec, &r), 0);
    usleep(500 * 1000); /* the broker is now waiting on the hung API */
    int64_t t0 = kx_mono_ms();
    assert_int_equal(kill(g_broker, SIGTERM), 0);
    pthread_join(t, NULL);
    int64_t after_term = kx_mono_ms() - t0;
    assert_non_null(r.res);
    expect_err(r.res->error, "unavailable", "broker shutting down", "exec during SIGTERM");
    assert_true(after_term < 3000);
    kx_pb_free(r.res);
    int status = 0;
    pid_t got = 0;
    for (int i = 0; i < 500 && (got = waitpid(g_broker, &status, WNOHANG)) == 0; i++)
        usleep(10 * 1000);
    assert_int_equal(got, g_broker); /* it exited by itself, within 5 s */
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    g_broker = 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lifecycle),          cmocka_unit_test(test_exec_bad_requests),
        cmocka_unit_test(test_exec_files_preview), cmocka_unit_test(test_sessions),
        cmocka_unit_test(test_deadlines),          cmocka_unit_test(test_sandboxes_per_account),
        cmocka_unit_test(test_failures),           cmocka_unit_test(test_drain),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
