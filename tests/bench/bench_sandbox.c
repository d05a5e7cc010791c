/* bench_sandbox.c — what a sandbox costs, through the sandbox-broker's bus API, beside
 * same-run baselines:
 *   - baseline: a bare fork+exec of /bin/true (posix_spawn + waitpid) on this machine;
 *   - baseline: a NATS request/reply round trip to an echo responder (the bus's share);
 *   - create -> first exec: kx.sandbox.exec of `true` for a project never seen before (the
 *     broker makes its uid, workspace, bubblewrap jail and init, then runs the command);
 *   - exec in a running sandbox: kx.sandbox.exec of `true` in a sandbox already up, and of
 *     `exec true` (no session save: the shell is replaced before its EXIT trap);
 *   - kx.sandbox.create alone for new projects (the jail up, no command).
 * Prints p50/p90/p99 and the ratios; with --results FILE appends "key value unit" lines for
 * tests/bench/run.sh. Starts its own nats-server and broker (as root: real uid drop). */
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "sandbox_client.h"
#include "kx/bus.h"
#include "kx/pb.h"
#include "kx/time.h"
#include "kx/uuid.h"

#define N_CREATE 40
#define N_WARM 400
#define N_BASE 400

extern char **environ;

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

typedef struct stats {
    int64_t p50, p90, p99;
} stats;

static stats pct(int64_t *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_i64);
    stats s = {v[n / 2], v[(n * 9) / 10], v[(n * 99) / 100 < n ? (n * 99) / 100 : n - 1]};
    return s;
}

static FILE *g_results;

static void report(const char *key, const char *label, stats s)
{
    printf("%-44s p50 %7lld us  p90 %7lld us  p99 %7lld us\n", label, (long long)s.p50,
           (long long)s.p90, (long long)s.p99);
    if (g_results != NULL) {
        fprintf(g_results, "%s_p50 %lld us\n%s_p99 %lld us\n", key, (long long)s.p50, key,
                (long long)s.p99);
    }
}

static int64_t fork_exec_true(void)
{
    char *argv[] = {"/bin/true", NULL};
    int64_t t0 = kx_mono_us();
    pid_t pid;
    if (posix_spawn(&pid, "/bin/true", NULL, NULL, argv, environ) != 0)
        return -1;
    int st;
    waitpid(pid, &st, 0);
    return kx_mono_us() - t0;
}

static kx_bus *g_bus;

static int64_t exec_cmd(const char *project, const char *command)
{
    kx_th_exec x = {.project = project, .command = command, .blocking = true};
    int64_t us = 0;
    Kx__V1__SandboxExecResult *res = kx_th_exec_request(g_bus, &x, &us, NULL);
    bool ok = res != NULL && res->error == NULL && res->exit_code == 0;
    if (!ok)
        fprintf(stderr, "exec failed: %s\n", res && res->error ? res->error->message : "?");
    kx_pb_free(res);
    return ok ? us : -1;
}

static int64_t exec_true(const char *project)
{
    return exec_cmd(project, "true");
}

/* kx.sandbox.create of a new project (the jail up, no command), in us; -1 on failure. */
static int64_t create_only(const char *project)
{
    int64_t us = 0;
    Kx__V1__SandboxLifecycleReply *res =
        kx_th_life_request(g_bus, NULL, "create", project, 30000, &us, NULL);
    bool ok = res != NULL && res->error == NULL;
    kx_pb_free(res);
    return ok ? us : -1;
}

static void on_echo(natsMsg *msg, void *arg)
{
    kx_bus_respond(g_bus, msg, "x", 1);
    natsMsg_Destroy(msg);
}

int main(int argc, char **argv)
{
    for (int i = 1; i + 1 < argc; i++) {
        if (strcmp(argv[i], "--results") == 0)
            g_results = fopen(argv[++i], "a");
    }
    if (nats_Open(-1) != NATS_OK)
        return 1;
    char *tmp = kx_th_tmpdir("kx-bench-sandbox");
    if (tmp == NULL)
        return 1;
    chmod(tmp, 0711);
    kx_th_nats nats;
    if (kx_th_nats_start(tmp, &nats) != KX_OK)
        return 1;
    uint16_t hp = kx_th_free_port();
    char bin[512], log[600], nenv[128], penv[64], renv[600], url[128];
    snprintf(bin, sizeof bin, "%s/services/sandbox-broker/sandbox-broker", KX_BUILD_DIR);
    snprintf(log, sizeof log, "%s/sandbox-broker.log", tmp);
    snprintf(nenv, sizeof nenv, "KX_NATS_URL=%s", nats.url);
    snprintf(penv, sizeof penv, "KX_HEALTH_PORT=%u", hp);
    snprintf(renv, sizeof renv, "KX_SANDBOX_ROOT=%s/sandboxes", tmp);
    const char *env[] = {nenv, penv, renv, "KX_LOG_LEVEL=warn", NULL};
    const char *bargv[] = {bin, NULL};
    pid_t broker = 0;
    snprintf(url, sizeof url, "http://127.0.0.1:%u/readyz", hp);
    if (kx_th_spawn(bargv, env, log, &broker) != KX_OK || kx_th_wait_http(url, 15000) != KX_OK) {
        fprintf(stderr, "the broker did not start (log: %s)\n", log);
        return 1;
    }
    if (kx_th_bus_connect(nats.url, "bench-sandbox", &g_bus) != KX_OK)
        return 1;
    natsSubscription *echo = NULL;
    kx_bus_subscribe(g_bus, "bench.echo", NULL, on_echo, NULL, &echo);
    natsConnection_Flush(kx_bus_conn(g_bus));

    static int64_t base[N_BASE], rtt[N_BASE], create[N_CREATE], warm[N_WARM], nosave[N_WARM],
        create_op[N_CREATE];
    int rc = 0;
    for (int i = 0; i < N_BASE; i++)
        base[i] = fork_exec_true();
    for (int i = 0; i < N_BASE; i++) {
        kx_bus_meta meta;
        kx_bus_meta_init(&meta, kx_deadline_in(5000), NULL);
        natsMsg *r = NULL;
        int64_t t0 = kx_mono_us();
        kx_bus_request(g_bus, "bench.echo", "x", 1, &meta, &r);
        rtt[i] = kx_mono_us() - t0;
        natsMsg_Destroy(r);
    }
    char warm_project[KX_UUID_LEN + 1];
    for (int i = 0; i < N_CREATE; i++) {
        char project[KX_UUID_LEN + 1];
        kx_uuid_new(project);
        if ((create[i] = exec_true(project)) < 0)
            rc = 1;
        if (i == 0)
            snprintf(warm_project, sizeof warm_project, "%s", project);
    }
    for (int i = 0; i < N_WARM; i++) {
        if ((warm[i] = exec_true(warm_project)) < 0)
            rc = 1;
    }
    /* The same command with `exec`: the shell is replaced, so its EXIT trap (the session's
     * save: two renames by /bin/mv) never runs — the difference is what saving costs. */
    for (int i = 0; i < N_WARM; i++) {
        if ((nosave[i] = exec_cmd(warm_project, "exec true")) < 0)
            rc = 1;
    }
    /* kx.sandbox.create alone (no command). */
    for (int i = 0; i < N_CREATE; i++) {
        char project[KX_UUID_LEN + 1];
        kx_uuid_new(project);
        if ((create_op[i] = create_only(project)) < 0)
            rc = 1;
    }
    stats sb = pct(base, N_BASE), sr = pct(rtt, N_BASE), sc = pct(create, N_CREATE),
          sw = pct(warm, N_WARM), sn = pct(nosave, N_WARM), so = pct(create_op, N_CREATE);
    report("sandbox_baseline_fork_exec", "baseline: fork+exec /bin/true", sb);
    report("sandbox_baseline_nats_rtt", "baseline: NATS request/reply", sr);
    report("sandbox_create_first_exec", "sandbox: create -> first exec of true", sc);
    report("sandbox_warm_exec", "sandbox: exec of true, running sandbox", sw);
    report("sandbox_warm_exec_nosave", "sandbox: exec true (no session save)", sn);
    report("sandbox_create_op", "sandbox: kx.sandbox.create alone", so);
    printf("session save costs p50 %lld us per exec\n", (long long)(sw.p50 - sn.p50));
    printf("ratio create/fork+exec p50 %.1f; warm exec/fork+exec p50 %.1f; "
           "warm exec - NATS rtt p50 %lld us\n",
           (double)sc.p50 / (double)sb.p50, (double)sw.p50 / (double)sb.p50,
           (long long)(sw.p50 - sr.p50));
    printf("goals: create -> first exec p50 <= 20000 us: %s; warm exec p50 <= 2000 us: %s\n",
           sc.p50 <= 20000 ? "met" : "NOT met", sw.p50 <= 2000 ? "met" : "NOT met");

    kx_bus_close(g_bus, 1000);
    kx_th_kill(broker);
    kx_th_nats_stop(&nats);
    kx_th_rmrf(tmp);
    free(tmp);
    if (g_results != NULL)
        fclose(g_results);
    return rc;
}
