/* test_sandbox_escape.c — the escape suite: the whole stack (real NATS, Postgres, every
 * service) with real bubblewrap, and one case per way out a command might try, through the
 * sandbox-broker's public bus API (kx.sandbox.exec / kx.sandbox.kill):
 *   - read the JWT secret file in $KX_DATA_DIR (relative and absolute), search for it;
 *   - read /proc/1/environ, /proc/$PPID/environ, every /proc/<pid>/environ;
 *   - see inherited descriptors, the host's processes, the host uid (never 0, never the
 *     services' uid);
 *   - read another project's workspace;
 *   - connect to the suite's Postgres and NATS ports (network none), and with
 *     KX_SANDBOX_NETWORK=host: those two refused while another host port answers;
 *   - a symlink folder, ../ and absolute folders (the error names the folder);
 *   - the file API (kx.sandbox.files) reading the JWT secret or another project's file by "..",
 *     absolute paths, /proc/self/root and planted links (refused, the path named);
 *   - setsid and double-fork survivors after kx.sandbox.kill and after the deadline;
 *   - a fork bomb (ends, the sandbox and the machine stay usable);
 *   - a 10 GB file (RLIMIT_FSIZE), a workspace over its disk limit;
 *   - a 100 MB output (bounded broker memory, head+tail+note, answered at once) and the 1.1 MB
 *     output that used to be reported as a 60 s timeout;
 *   - a background server reachable from the next command;
 *   - the broker refuses to start without working bwrap, and with KX_SANDBOX_UNSAFE=1 says
 *     so in its health answers. */
#include <jansson.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"
#include "sandbox_client.h"
#include "kx/bus.h"
#include "kx/http.h"
#include "kx/pb.h"
#include "kx/time.h"
#include "kx/uuid.h"
#include "stack.h"

static kx_th_stack g_stack;
static kx_bus *g_bus;
static char g_project[KX_UUID_LEN + 1];
static char g_other[KX_UUID_LEN + 1];

static const char *const STACK_ENV[] = {
    "KX_SANDBOX_MAX_PROCS=64",   /* the fork bomb stops here */
    "KX_SANDBOX_MAX_FILE_MB=64", /* the 10 GB file stops here */
    "KX_SANDBOX_DISK_MB=200",
    NULL,
};

/* ---- requests --------------------------------------------------------------------------- */

typedef struct exec_result {
    kx_err err;
    Kx__V1__SandboxExecResult *res;
    int64_t elapsed_ms;
} exec_result;

static exec_result exec_in_as(kx_bus *bus, const char *project, const char *exec_id,
                              const char *command, const char *folder, bool blocking,
                              int timeout_s, int64_t deadline_ms)
{
    exec_result out = {0};
    char id[KX_UUID_LEN + 1];
    if (exec_id == NULL) {
        kx_uuid_new(id);
        exec_id = id;
    }
    Kx__V1__SandboxExecRequest rq = KX__V1__SANDBOX_EXEC_REQUEST__INIT;
    rq.exec_id = (char *)exec_id;
    rq.project_id = (char *)project;
    rq.command = (char *)command;
    rq.folder = (char *)(folder ? folder : "");
    rq.blocking = blocking;
    rq.timeout_s = timeout_s;
    int64_t t0 = kx_mono_ms();
    out.res = kx_th_bus_ask(bus, KX_SUBJ_SANDBOX_EXEC, &rq.base, project, deadline_ms,
                            &kx__v1__sandbox_exec_result__descriptor, NULL, &out.err);
    out.elapsed_ms = kx_mono_ms() - t0;
    /* a reply that is not a SandboxExecResult fails the test */
    assert_int_not_equal(out.err, KX_ERR_PROTOCOL);
    return out;
}

/* Runs command (blocking) and asserts the broker answered. */
static exec_result run_in(const char *project, const char *command)
{
    exec_result r = exec_in_as(g_bus, project, NULL, command, NULL, true, 0, 20000);
    assert_int_equal(r.err, KX_OK);
    return r;
}

static exec_result run(const char *command)
{
    return run_in(g_project, command);
}

static void result_free(exec_result *r)
{
    kx_pb_free(r->res);
    memset(r, 0, sizeof *r);
}

/* Runs command, asserts it ran, returns its stdout+stderr (malloc'd). */
static char *output_of(const char *command)
{
    exec_result r = run(command);
    assert_int_equal(r.err, KX_OK);
    assert_non_null(r.res);
    if (r.res->error != NULL)
        fail_msg("command '%s' refused: %s", command, r.res->error->message);
    size_t n = strlen(r.res->stdout) + strlen(r.res->stderr) + 2;
    char *out = malloc(n);
    snprintf(out, n, "%s\n%s", r.res->stdout, r.res->stderr);
    result_free(&r);
    return out;
}

/* Fails, showing the whole text, unless needle is in it. */
static void expect_in(const char *text, const char *needle)
{
    if (strstr(text, needle) == NULL)
        fail_msg("expected \"%s\" in:\n%s", needle, text);
}

static bool kill_exec(const char *exec_id, const char *project)
{
    Kx__V1__SandboxKillRequest kr = KX__V1__SANDBOX_KILL_REQUEST__INIT;
    kr.exec_id = (char *)exec_id;
    kr.project_id = (char *)project;
    Kx__V1__SandboxKillReply *rep =
        kx_th_bus_ask(g_bus, KX_SUBJ_SANDBOX_KILL, &kr.base, project, 2000,
                      &kx__v1__sandbox_kill_reply__descriptor, NULL, NULL);
    bool killed = rep != NULL && rep->killed;
    kx_pb_free(rep);
    return killed;
}

static bool wait_procs(const char *arg, int want, int64_t timeout_ms)
{
    int64_t end = kx_mono_ms() + timeout_ms;
    do {
        if (kx_th_procs_with_arg(arg, NULL) == want)
            return true;
        usleep(20 * 1000);
    } while (kx_mono_ms() < end);
    return false;
}

static long broker_hwm_kb(void)
{
    kx_th_proc *p = kx_th_stack_proc(&g_stack, "sandbox-broker");
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)p->pid);
    FILE *f = fopen(path, "r");
    long kb = -1;
    while (f != NULL && fgets(line, sizeof line, f) != NULL) {
        if (sscanf(line, "VmHWM: %ld kB", &kb) == 1) /* NOLINT(cert-err34-c): kernel-written */
            break;
    }
    if (f != NULL)
        fclose(f);
    return kb;
}

/* ---- setup ------------------------------------------------------------------------------ */

static int group_setup(void **state)
{
    if (nats_Open(-1) != NATS_OK)
        return -1;
    kx_th_stack_opts opts = {.env = STACK_ENV};
    if (kx_th_stack_start(&opts, &g_stack) != KX_OK)
        return -1;
    /* What up.sh keeps beside the data: the JWT secret file. */
    char path[700];
    snprintf(path, sizeof path, "%s/jwt-secret", g_stack.dir);
    FILE *f = fopen(path, "w");
    if (f == NULL)
        return -1;
    fprintf(f, "%s\n", g_stack.secret);
    fclose(f);
    kx_uuid_new(g_project);
    kx_uuid_new(g_other);
    return kx_th_bus_connect(g_stack.nats.url, "it-escape", &g_bus) == KX_OK ? 0 : -1;
}

static int group_teardown(void **state)
{
    kx_bus_close(g_bus, 1000);
    return kx_th_stack_stop(&g_stack, false) == 0 ? 0 : -1;
}

/* ---- secrets ---------------------------------------------------------------------------- */

static void test_jwt_secret_file(void **state)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "cat ../../../jwt-secret ../../jwt-secret ../jwt-secret %s/jwt-secret; "
             "ls %s; find / -xdev -name jwt-secret 2>/dev/null; "
             "grep -rs --exclude-dir=proc --exclude-dir=dev --exclude-dir=usr %.16s / | head -3; "
             "echo end",
             g_stack.dir, g_stack.dir, g_stack.secret);
    char *out = output_of(cmd);
    assert_null(strstr(out, g_stack.secret));
    assert_non_null(strstr(out, "No such file"));
    expect_in(out, "end");
    free(out);
}

static void test_proc_environ(void **state)
{
    char *out = output_of("cat /proc/1/environ; echo; cat /proc/$PPID/environ; echo; "
                          "cat /proc/[0-9]*/environ 2>&1; echo; cat /proc/1/cmdline");
    assert_null(strstr(out, g_stack.secret));
    assert_null(strstr(out, "KX_JWT_SECRET"));
    assert_null(strstr(out, "KX_DATABASE_URL"));
    assert_null(strstr(out, "KX_NATS_URL"));
    assert_null(strstr(out, "postgresql://"));
    assert_non_null(strstr(out, "/.kx/init")); /* PID 1 is the sandbox's own init */
    free(out);
    /* The environment the command sees is the clean one. */
    out = output_of("env");
    assert_null(strstr(out, "KX_NATS_URL"));
    assert_non_null(strstr(out, "HOME=/workspace"));
    free(out);
}

static void test_fds_and_processes(void **state)
{
    /* Only 0, 1, 2 (and ls's own directory descriptor). */
    char *out = output_of("ls /proc/self/fd | tr '\\n' ' '; ls -l /proc/self/fd/");
    expect_in(out, "0 1 2 3 total"); /* 3 is ls's own /proc/<pid>/fd */
    assert_null(strstr(out, "socket:"));
    free(out);
    /* The host's processes are invisible: a handful in the sandbox's /proc. */
    out = output_of("ls /proc | grep -c '^[0-9]'");
    long nprocs = 0;
    assert_true(kx_th_parse_long(out, &nprocs));
    assert_true(nprocs > 0 && nprocs < 10);
    free(out);
    /* No view of the service files or the data dir. */
    out = output_of("ls / | tr '\\n' ' '; ls /work /root /home 2>&1 | head -3");
    assert_null(strstr(out, "sandboxes"));
    free(out);
}

static void test_host_uid(void **state)
{
    exec_result r =
        exec_in_as(g_bus, g_project, "uid-probe", "exec sleep 55.501", NULL, false, 0, 5000);
    assert_int_equal(r.err, KX_OK);
    assert_null(r.res->error);
    result_free(&r);
    assert_true(wait_procs("55.501", 1, 3000));
    uid_t uid = 0;
    assert_int_equal(kx_th_procs_with_arg("55.501", &uid), 1);
    assert_true(uid != 0);
    assert_true(uid != getuid()); /* the services run as this uid */
    assert_true(kill_exec("uid-probe", g_project));
    assert_true(wait_procs("55.501", 0, 3000));
    /* Inside, the same uid, and no capability at all. */
    char *out = output_of("id -u; grep CapEff /proc/self/status");
    char want[64];
    snprintf(want, sizeof want, "%u\nCapEff:\t0000000000000000\n", (unsigned)uid);
    assert_non_null(strstr(out, want));
    free(out);
}

static void test_other_project(void **state)
{
    exec_result r = run_in(g_other, "echo other-project-data-7731 > private.txt");
    assert_int_equal(r.err, KX_OK);
    assert_int_equal(r.res->exit_code, 0);
    result_free(&r);
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "cat ../%s/workspace/private.txt %s/%s/workspace/private.txt 2>&1; "
             "grep -rs --exclude-dir=proc --exclude-dir=dev --exclude-dir=usr "
             "other-project-data-7731 / | "
             "grep -v ^/workspace/private; echo end",
             g_other, g_stack.sandbox_root, g_other);
    char *out = output_of(cmd);
    assert_null(strstr(out, "other-project-data-7731\n")); /* only in the command text */
    expect_in(out, "end");
    free(out);
}

/* ---- network ---------------------------------------------------------------------------- */

static void probe_ports(kx_bus *bus, const char *project, uint16_t open_port, bool host_net)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "for p in %u %u %u; do "
             "if timeout 3 bash -c \"echo > /dev/tcp/127.0.0.1/$p\" 2>/dev/null; "
             "then echo \"port $p open\"; else echo \"port $p closed\"; fi; done",
             g_stack.pg.port, g_stack.nats.port, open_port);
    exec_result r = exec_in_as(bus, project, NULL, cmd, NULL, true, 0, 20000);
    /* A fresh client connection's very first request can see "no responders" from cnats
     * before the broker's subscription is visible to it: retry that (bounded). */
    for (int i = 0; i < 20 && r.err == KX_ERR_UNAVAILABLE; i++) {
        usleep(200 * 1000);
        r = exec_in_as(bus, project, NULL, cmd, NULL, true, 0, 20000);
    }
    if (r.err != KX_OK)
        fail_msg("port probe request failed: %s", kx_err_str(r.err));
    assert_null(r.res->error);
    char want[64];
    snprintf(want, sizeof want, "port %u closed", g_stack.pg.port);
    assert_non_null(strstr(r.res->stdout, want));
    snprintf(want, sizeof want, "port %u closed", g_stack.nats.port);
    assert_non_null(strstr(r.res->stdout, want));
    snprintf(want, sizeof want, "port %u %s", open_port, host_net ? "open" : "closed");
    if (strstr(r.res->stdout, want) == NULL)
        fail_msg("expected '%s' in: %s", want, r.res->stdout);
    result_free(&r);
}

static void test_network_none(void **state)
{
    probe_ports(g_bus, g_project, g_stack.http_port, false);
    char *out = output_of("cat /proc/net/dev | grep -c ':'");
    long nifs = 0;
    assert_true(kx_th_parse_long(out, &nifs));
    assert_int_equal(nifs, 1); /* lo only */
    free(out);
}

/* ---- paths ------------------------------------------------------------------------------ */

static void expect_folder_refused(const char *folder, const char *needle)
{
    exec_result r = exec_in_as(g_bus, g_project, NULL, "pwd", folder, true, 0, 10000);
    assert_int_equal(r.err, KX_OK);
    assert_non_null(r.res->error);
    assert_string_equal(r.res->error->code, "invalid_argument");
    char want[300];
    snprintf(want, sizeof want, "folder '%s'", folder);
    if (strstr(r.res->error->message, want) == NULL ||
        strstr(r.res->error->message, needle) == NULL)
        fail_msg("folder %s: unexpected error: %s", folder, r.res->error->message);
    result_free(&r);
}

static void test_paths(void **state)
{
    char *out = output_of("ln -sfn / esc && ln -sfn /proc/self/root rootlink && mkdir -p real "
                          "&& ln -sfn real alias && echo ok");
    free(out);
    expect_folder_refused("esc/etc", "symbolic link");
    expect_folder_refused("esc", "symbolic link");
    expect_folder_refused("alias", "symbolic link"); /* even one that stays inside */
    expect_folder_refused("rootlink/etc", "symbolic link");
    expect_folder_refused("../other", "'..'");
    expect_folder_refused("real/../../x", "'..'");
    expect_folder_refused("/etc", "relative");
    expect_folder_refused("/proc/self/root/etc", "relative");
    expect_folder_refused("nope", "does not exist");
    exec_result r = exec_in_as(g_bus, g_project, NULL, "pwd", "real", true, 0, 10000);
    assert_int_equal(r.err, KX_OK);
    assert_null(r.res->error);
    assert_string_equal(r.res->stdout, "/workspace/real\n");
    result_free(&r);
}

/* The file API (kx.sandbox.files) asked for the JWT secret and another project's file: by
 * "..", an absolute path, /proc/self/root, and links planted by a command. Each refused with
 * the path named; nothing of the secret comes back. */
static Kx__V1__SandboxFilesReply *file_read(const char *project, const char *path)
{
    Kx__V1__SandboxFilesRequest rq = KX__V1__SANDBOX_FILES_REQUEST__INIT;
    rq.project_id = (char *)project;
    rq.op = KX__V1__SANDBOX_FILE_OP__SANDBOX_FILE_READ;
    rq.path = (char *)path;
    kx_err err = KX_OK;
    Kx__V1__SandboxFilesReply *rep =
        kx_th_bus_ask(g_bus, KX_SUBJ_SANDBOX_FILES, &rq.base, project, 5000,
                      &kx__v1__sandbox_files_reply__descriptor, NULL, &err);
    assert_int_equal(err, KX_OK);
    assert_non_null(rep);
    return rep;
}

static void test_file_api_paths(void **state)
{
    exec_result r = run_in(g_other, "echo other-project-file-9127 > theirs.txt");
    assert_int_equal(r.res->exit_code, 0);
    result_free(&r);
    char secret_path[700], other_path[900], cmd[2400];
    snprintf(secret_path, sizeof secret_path, "%s/jwt-secret", g_stack.dir);
    snprintf(other_path, sizeof other_path, "%s/%s/workspace/theirs.txt", g_stack.sandbox_root,
             g_other);
    snprintf(cmd, sizeof cmd,
             "ln -sfn %s fsecret && ln -sfn %s fother && ln -sfn ../../%s/workspace/theirs.txt "
             "frel && ln -sfn /proc/1/root/workspace fproc && echo ok",
             secret_path, other_path, g_other);
    free(output_of(cmd));
    char rel[128];
    snprintf(rel, sizeof rel, "../../%s/workspace/theirs.txt", g_other);
    const char *paths[] = {"../../../jwt-secret",
                           "../../jwt-secret",
                           secret_path,
                           other_path,
                           "/proc/self/root/etc/passwd",
                           rel,
                           "fsecret",
                           "fother",
                           "frel",
                           "fproc/fsecret"};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        Kx__V1__SandboxFilesReply *rep = file_read(g_project, paths[i]);
        if (rep->error == NULL)
            fail_msg("file API read of '%s' was not refused", paths[i]);
        assert_string_equal(rep->error->code, "invalid_argument");
        const char *name = paths[i][0] == '/' || paths[i][0] == '.' ? paths[i] : "/workspace/";
        if (strstr(rep->error->message, name) == NULL)
            fail_msg("the error for '%s' does not name it: %s", paths[i], rep->error->message);
        assert_int_equal(rep->data.len, 0);
        assert_null(strstr(rep->error->message, g_stack.secret));
        kx_pb_free(rep);
    }
}

/* ---- process lifetime ------------------------------------------------------------------- */

static const char ESCAPER[] =
    "setsid sleep 91.001 & (sleep 91.002 &) ; sh -c 'setsid sh -c \"sleep 91.003 &\" &'; "
    "nohup sleep 91.004 >/dev/null 2>&1 & echo started; sleep 91.005";

static void test_survivors_after_terminate(void **state)
{
    exec_result r = exec_in_as(g_bus, g_project, "escaper-bg", ESCAPER, NULL, false, 0, 5000);
    assert_int_equal(r.err, KX_OK);
    assert_null(r.res->error);
    result_free(&r);
    assert_true(wait_procs("91.005", 1, 3000));
    assert_true(wait_procs("91.003", 1, 3000));
    assert_int_equal(kx_th_procs_with_arg("91.001", NULL), 1);
    assert_int_equal(kx_th_procs_with_arg("91.002", NULL), 1);
    assert_true(kill_exec("escaper-bg", g_project));
    const char *args[] = {"91.001", "91.002", "91.003", "91.004", "91.005"};
    for (size_t i = 0; i < 5; i++) {
        if (!wait_procs(args[i], 0, 3000))
            fail_msg("sleep %s survived the terminate", args[i]);
    }
}

static void test_survivors_after_deadline(void **state)
{
    exec_result r = exec_in_as(g_bus, g_project, NULL, ESCAPER, NULL, true, 1, 10000);
    assert_int_equal(r.err, KX_OK);
    assert_true(r.res->timed_out);
    assert_string_equal(r.res->stdout, "started\n");
    assert_in_range(r.elapsed_ms, 900, 3000);
    result_free(&r);
    const char *args[] = {"91.001", "91.002", "91.003", "91.004", "91.005"};
    for (size_t i = 0; i < 5; i++) {
        if (!wait_procs(args[i], 0, 3000))
            fail_msg("sleep %s survived the deadline", args[i]);
    }
}

static void test_blocking_leftovers_end_with_the_command(void **state)
{
    /* Like Kortix's blocking mode (its tmux session is killed at the end). */
    exec_result r = run("setsid sleep 92.001 & echo done");
    assert_int_equal(r.res->exit_code, 0);
    assert_true(r.elapsed_ms < 3000);
    result_free(&r);
    assert_true(wait_procs("92.001", 0, 3000));
}

static void test_fork_bomb(void **state)
{
    int64_t t0 = kx_mono_ms();
    exec_result r =
        exec_in_as(g_bus, g_project, NULL,
                   "bomb() { bomb | bomb & }; bomb; sleep 2; echo survived", NULL, true, 4, 20000);
    assert_int_equal(r.err, KX_OK);
    assert_non_null(r.res);
    assert_null(r.res->error);
    /* It ends by its deadline at the latest, having hit the process limit. */
    assert_true(kx_mono_ms() - t0 < 8000);
    result_free(&r);
    /* The sandbox (and the machine) is usable at once. */
    t0 = kx_mono_ms();
    char *out = output_of("echo alive");
    assert_string_equal(out, "alive\n\n");
    assert_true(kx_mono_ms() - t0 < 3000);
    free(out);
}

/* ---- limits ----------------------------------------------------------------------------- */

static void test_big_file(void **state)
{
    exec_result r = run("dd if=/dev/zero of=big bs=1M count=10240 2>&1; echo rc=$?");
    assert_int_equal(r.err, KX_OK);
    assert_non_null(strstr(r.res->stdout, "File too large"));
    assert_non_null(strstr(r.res->stdout, "rc=1"));
    result_free(&r);
    char path[900];
    snprintf(path, sizeof path, "%s/%s/workspace/big", g_stack.sandbox_root, g_project);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_true(st.st_size <= 64 * 1024 * 1024);
    r = run("rm -f big");
    result_free(&r);
}

static void test_disk_limit(void **state)
{
    exec_result r = run("for i in 1 2 3 4; do head -c 60000000 /dev/zero > fill$i; done; "
                        "echo written");
    assert_string_equal(r.res->stdout, "written\n");
    result_free(&r);
    usleep(1100 * 1000); /* the usage is re-measured each second */
    r = run("echo more > more.txt; echo rc=$?");
    assert_null(r.res->error);
    assert_non_null(strstr(r.res->stderr, "over its limit of 200 MiB"));
    expect_in(r.res->stdout, "rc=1"); /* the write failed (EFBIG) */
    result_free(&r);
    r = run("rm -f fill1 fill2 fill3 fill4; echo freed"); /* rm still works */
    assert_string_equal(r.res->stdout, "freed\n");
    result_free(&r);
    r = run("echo more > more.txt; echo rc=$?");
    assert_string_equal(r.res->stdout, "rc=0\n");
    assert_string_equal(r.res->stderr, "");
    result_free(&r);
}

/* ---- output ----------------------------------------------------------------------------- */

static void test_output_over_max_payload(void **state)
{
    /* Regression: 1.1 MB used to be a failed publish and a 60 s "timeout". */
    exec_result r = run("head -c 1100000 /dev/zero | tr '\\0' c");
    assert_int_equal(r.err, KX_OK);
    assert_null(r.res->error);
    assert_true(r.elapsed_ms < 5000);
    assert_true(r.res->truncated);
    assert_non_null(strstr(r.res->stdout, "bytes of stdout cut (1100000 in all"));
    assert_true(protobuf_c_message_get_packed_size(&r.res->base) < 1024 * 1024);
    result_free(&r);
}

static void test_output_100mb(void **state)
{
    long before = broker_hwm_kb();
    exec_result r = run("head -c 100000000 /dev/zero | tr '\\0' b; echo tail-marker");
    assert_int_equal(r.err, KX_OK);
    assert_null(r.res->error);
    assert_true(r.elapsed_ms < 15000);
    assert_true(r.res->truncated);
    assert_true(strlen(r.res->stdout) < 1024 * 1024);
    assert_int_equal(r.res->stdout[0], 'b');
    assert_non_null(strstr(r.res->stdout, "bytes of stdout cut (100000012 in all"));
    assert_non_null(strstr(r.res->stdout, "/workspace/.kx-output/"));
    assert_non_null(strstr(r.res->stdout, "tail-marker\n"));
    result_free(&r);
    long after = broker_hwm_kb();
    assert_true(before > 0 && after > 0);
    if (after - before > 32 * 1024)
        fail_msg("the broker's peak memory grew by %ld kB for a 100 MB output", after - before);
    r = run("rm -rf .kx-output");
    result_free(&r);
}

/* ---- a server across commands ----------------------------------------------------------- */

static void test_background_server(void **state)
{
    exec_result r = exec_in_as(g_bus, g_project, "web-server",
                               "echo hello-from-the-sandbox > index.html; "
                               "exec node -e \"require('http').createServer((q, s) => "
                               "s.end(require('fs').readFileSync('index.html'))).listen(8123)\"",
                               NULL, false, 0, 5000);
    assert_int_equal(r.err, KX_OK);
    assert_null(r.res->error);
    result_free(&r);
    char *out = NULL;
    for (int i = 0; i < 50; i++) {
        free(out);
        out = output_of("curl -s http://127.0.0.1:8123/ || echo not-yet");
        if (strstr(out, "hello-from-the-sandbox") != NULL)
            break;
        usleep(100 * 1000);
    }
    expect_in(out, "hello-from-the-sandbox");
    free(out);
    /* Another project's sandbox has its own network: not there. */
    exec_result o = run_in(g_other, "curl -s -m 2 http://127.0.0.1:8123/ || echo unreachable");
    assert_non_null(strstr(o.res->stdout, "unreachable"));
    result_free(&o);
    assert_true(kill_exec("web-server", g_project));
}

/* ---- sessions: check_command_output, list_commands, terminate_command ------------------- */

/* m on subject for g_project (5 s deadline); asserts an answer that unpacks as desc. */
static void *ask(const char *subject, const ProtobufCMessage *m,
                 const ProtobufCMessageDescriptor *desc)
{
    kx_err err = KX_OK;
    void *rep = kx_th_bus_ask(g_bus, subject, m, g_project, 5000, desc, NULL, &err);
    assert_int_equal(err, KX_OK);
    assert_non_null(rep);
    return rep;
}

static Kx__V1__SandboxOutputReply *read_output(const char *session, int64_t offset, bool kill)
{
    Kx__V1__SandboxOutputRequest rq = KX__V1__SANDBOX_OUTPUT_REQUEST__INIT;
    rq.project_id = g_project;
    rq.session_name = (char *)session;
    rq.offset = offset;
    rq.kill = kill;
    return ask(KX_SUBJ_SANDBOX_OUTPUT, &rq.base, &kx__v1__sandbox_output_reply__descriptor);
}

static void test_sessions(void **state)
{
    exec_result r = exec_in_as(g_bus, g_project, "dev-1",
                               "for i in 1 2 3; do echo line$i; done; exec sleep 93.001", NULL,
                               false, 0, 5000);
    assert_int_equal(r.err, KX_OK);
    assert_null(r.res->error);
    /* The session the start reply names is the one list_commands shows for dev-1. */
    char started[80];
    assert_true(!kx_pb_str_empty(r.res->session_name));
    snprintf(started, sizeof started, "%s", r.res->session_name);
    result_free(&r);
    r = exec_in_as(g_bus, g_project, "dev-2", "sleep 93.002", NULL, false, 0, 5000);
    result_free(&r);
    assert_true(wait_procs("93.001", 1, 3000));

    /* list_commands: both, with their sessions. */
    Kx__V1__SandboxListRequest lq = KX__V1__SANDBOX_LIST_REQUEST__INIT;
    lq.project_id = g_project;
    Kx__V1__SandboxListReply *list =
        ask(KX_SUBJ_SANDBOX_LIST, &lq.base, &kx__v1__sandbox_list_reply__descriptor);
    assert_null(list->error);
    int seen = 0;
    char session1[80] = "";
    for (size_t i = 0; i < list->n_commands; i++) {
        if (strcmp(list->commands[i]->exec_id, "dev-1") == 0) {
            seen++;
            snprintf(session1, sizeof session1, "%s", list->commands[i]->session_name);
            assert_non_null(strstr(list->commands[i]->command, "sleep 93.001"));
            assert_false(list->commands[i]->blocking);
        }
        if (strcmp(list->commands[i]->exec_id, "dev-2") == 0)
            seen++;
    }
    assert_int_equal(seen, 2);
    assert_string_equal(session1, started);
    kx_pb_free(list);

    /* check_command_output: incrementally. */
    Kx__V1__SandboxOutputReply *out = NULL;
    for (int i = 0; i < 100; i++) {
        kx_pb_free(out);
        out = read_output(session1, 0, false);
        if (out->output != NULL && strstr(out->output, "line3") != NULL)
            break;
        usleep(20 * 1000);
    }
    assert_null(out->error);
    assert_string_equal(out->output, "line1\nline2\nline3\n");
    assert_int_equal(out->next_offset, 18);
    assert_true(out->running);
    kx_pb_free(out);
    out = read_output(session1, 6, false);
    assert_string_equal(out->output, "line2\nline3\n");
    kx_pb_free(out);
    out = read_output(session1, 18, false);
    assert_string_equal(out->output, "");
    kx_pb_free(out);

    /* kill_session via check_command_output, terminate_command for the other. */
    out = read_output(session1, 18, true);
    assert_int_equal(out->killed, 1);
    assert_false(out->running);
    kx_pb_free(out);
    assert_true(wait_procs("93.001", 0, 3000));
    Kx__V1__SandboxTerminateRequest tq = KX__V1__SANDBOX_TERMINATE_REQUEST__INIT;
    tq.project_id = g_project;
    lq.project_id = g_project;
    for (int pass = 0; pass < 2; pass++) {
        /* dev-2's session is a generated name: find it through the list first. */
        list = ask(KX_SUBJ_SANDBOX_LIST, &lq.base, &kx__v1__sandbox_list_reply__descriptor);
        char session2[80] = "";
        for (size_t i = 0; i < list->n_commands; i++) {
            if (strcmp(list->commands[i]->exec_id, "dev-2") == 0)
                snprintf(session2, sizeof session2, "%s", list->commands[i]->session_name);
        }
        kx_pb_free(list);
        if (pass == 1) {
            assert_string_equal(session2, ""); /* gone from the list */
            break;
        }
        tq.session_name = session2;
        Kx__V1__SandboxTerminateReply *tr =
            ask(KX_SUBJ_SANDBOX_TERMINATE, &tq.base, &kx__v1__sandbox_terminate_reply__descriptor);
        assert_int_equal(tr->killed, 1);
        kx_pb_free(tr);
        assert_true(wait_procs("93.002", 0, 3000));
        usleep(200 * 1000);
    }

    /* Errors name what was wrong. */
    out = read_output("no-such-session", 0, false);
    assert_non_null(out->error);
    assert_string_equal(out->error->code, "not_found");
    assert_non_null(strstr(out->error->message, "no-such-session"));
    kx_pb_free(out);
    out = read_output("../../etc/passwd", 0, false);
    assert_non_null(out->error);
    assert_string_equal(out->error->code, "invalid_argument");
    kx_pb_free(out);
}

/* ---- host network, refusal, unsafe -------------------------------------------------------- */

/* A broker of our own on a private NATS, with extra environment; returns its pid (0: exited
 * or never ready) and its exit status when it exited during start. */
static pid_t start_own_broker(const char *nats_url, const char *const *extra, int *exit_status)
{
    char bin[512], log[700], nats[200], port[64], root[700], url[128];
    uint16_t hp = kx_th_free_port();
    snprintf(bin, sizeof bin, "%s/services/sandbox-broker/sandbox-broker", KX_BUILD_DIR);
    snprintf(log, sizeof log, "%s/own-broker-%u.log", g_stack.dir, hp);
    snprintf(nats, sizeof nats, "KX_NATS_URL=%s", nats_url);
    snprintf(port, sizeof port, "KX_HEALTH_PORT=%u", hp);
    snprintf(root, sizeof root, "KX_SANDBOX_ROOT=%s/own-sandboxes", g_stack.dir);
    const char *env[16] = {nats, port, root, "KX_LOG_LEVEL=debug"};
    size_t n = 4;
    for (size_t i = 0; extra[i] != NULL && n < 15; i++)
        env[n++] = extra[i];
    env[n] = NULL;
    const char *argv[] = {bin, NULL};
    pid_t pid = 0;
    assert_int_equal(kx_th_spawn(argv, env, log, &pid), KX_OK);
    snprintf(url, sizeof url, "http://127.0.0.1:%u/readyz", hp);
    int64_t end = kx_mono_ms() + 15000;
    while (kx_mono_ms() < end) {
        int st = 0;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            *exit_status = st;
            return 0;
        }
        if (kx_th_wait_http(url, 200) == KX_OK)
            return pid;
    }
    kx_th_kill(pid);
    return 0;
}

static void test_host_network_denies_suite_ports(void **state)
{
    kx_th_nats own;
    assert_int_equal(kx_th_nats_start(g_stack.dir, &own), KX_OK);
    char deny[64];
    snprintf(deny, sizeof deny, "KX_SANDBOX_DENY_PORTS=%u,%u", g_stack.pg.port, g_stack.nats.port);
    const char *extra[] = {"KX_SANDBOX_NETWORK=host", deny, NULL};
    int st = -1;
    pid_t pid = start_own_broker(own.url, extra, &st);
    assert_true(pid > 0);
    kx_bus *bus = NULL;
    assert_int_equal(kx_th_bus_connect(own.url, "it-escape-host", &bus), KX_OK);
    /* The gateway's port answers (host network), Postgres and NATS do not. */
    int wst = 0;
    if (waitpid(pid, &wst, WNOHANG) == pid)
        fail_msg("the host-network broker exited: status 0x%x", (unsigned)wst);
    probe_ports(bus, g_project, g_stack.http_port, true);
    if (waitpid(pid, &wst, WNOHANG) == pid)
        fail_msg("the host-network broker exited: status 0x%x", (unsigned)wst);
    kx_bus_close(bus, 1000);
    assert_int_equal(kx_th_kill(pid), 0);
    kx_th_nats_stop(&own);
}

static void test_refuses_without_bwrap_unless_unsafe(void **state)
{
    kx_th_nats own;
    assert_int_equal(kx_th_nats_start(g_stack.dir, &own), KX_OK);
    const char *extra[] = {"KX_SANDBOX_BWRAP=/nonexistent/bwrap", NULL};
    int st = -1;
    pid_t pid = start_own_broker(own.url, extra, &st);
    assert_int_equal(pid, 0);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 1);

    const char *unsafe[] = {"KX_SANDBOX_BWRAP=/nonexistent/bwrap", "KX_SANDBOX_UNSAFE=1", NULL};
    pid = start_own_broker(own.url, unsafe, &st);
    assert_true(pid > 0);
    kx_bus *bus = NULL;
    assert_int_equal(kx_th_bus_connect(own.url, "it-escape-unsafe", &bus), KX_OK);
    for (int i = 0; i < 2; i++) { /* every answer says so */
        Kx__V1__HealthRequest hq = KX__V1__HEALTH_REQUEST__INIT;
        kx_err err = KX_OK;
        Kx__V1__HealthReply *hr =
            kx_th_bus_ask(bus, "kx.svc.health.sandbox-broker", &hq.base, NULL, 2000,
                          &kx__v1__health_reply__descriptor, NULL, &err);
        assert_int_equal(err, KX_OK);
        assert_non_null(hr);
        assert_non_null(strstr(hr->notes, "UNSAFE"));
        kx_pb_free(hr);
    }
    /* Still not root, still a clean environment, even unsafe. */
    exec_result r =
        exec_in_as(bus, g_project, NULL, "id -u; env | grep -c KX_NATS_URL", NULL, true, 0, 10000);
    assert_int_equal(r.err, KX_OK);
    assert_null(r.res->error);
    long uid = 0; /* "id -u" then the count of KX_NATS_URL lines, 0 */
    char *nl = strchr(r.res->stdout, '\n');
    assert_non_null(nl);
    *nl = '\0';
    assert_true(kx_th_parse_long(r.res->stdout, &uid));
    assert_true(uid != 0);
    *nl = '\n';
    assert_non_null(strstr(r.res->stdout, "\n0\n"));
    result_free(&r);
    kx_bus_close(bus, 1000);
    assert_int_equal(kx_th_kill(pid), 0);
    kx_th_nats_stop(&own);
}

static void test_gateway_health_reports_isolation(void **state)
{
    char url[128];
    snprintf(url, sizeof url, "%s/api/health", g_stack.base_url);
    kx_http_resp resp;
    memset(&resp, 0, sizeof resp);
    assert_int_equal(kx_http_request("GET", url, NULL, NULL, 0, kx_deadline_in(5000), 0, &resp),
                     KX_OK);
    assert_int_equal(resp.status, 200);
    assert_non_null(strstr(resp.body, "bubblewrap namespaces"));
    assert_non_null(strstr(resp.body, "cgroup"));
    kx_http_resp_free(&resp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_jwt_secret_file),
        cmocka_unit_test(test_proc_environ),
        cmocka_unit_test(test_fds_and_processes),
        cmocka_unit_test(test_host_uid),
        cmocka_unit_test(test_other_project),
        cmocka_unit_test(test_network_none),
        cmocka_unit_test(test_paths),
        cmocka_unit_test(test_file_api_paths),
        cmocka_unit_test(test_survivors_after_terminate),
        cmocka_unit_test(test_survivors_after_deadline),
        cmocka_unit_test(test_blocking_leftovers_end_with_the_command),
        cmocka_unit_test(test_fork_bomb),
        cmocka_unit_test(test_big_file),
        cmocka_unit_test(test_disk_limit),
        cmocka_unit_test(test_output_over_max_payload),
        cmocka_unit_test(test_output_100mb),
        cmocka_unit_test(test_background_server),
        cmocka_unit_test(test_sessions),
        cmocka_unit_test(test_host_network_denies_suite_ports),
        cmocka_unit_test(test_refuses_without_bwrap_unless_unsafe),
        cmocka_unit_test(test_gateway_health_reports_isolation),
    };
    if (getenv("KX_TEST_FILTER") != NULL) /* e.g. KX_TEST_FILTER='*network*' */
        cmocka_set_test_filter(getenv("KX_TEST_FILTER"));
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
