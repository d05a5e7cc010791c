/* test_sandbox_fleet.c — two sandbox-brokers over one KX_SANDBOX_ROOT (services/sandbox-broker/
 * fleet.h), with real NATS, Postgres and bubblewrap:
 *   - requests on the shared subjects reach the broker that runs the sandbox, whichever broker
 *     the queue group hands them to (a marker in the sandbox's private /tmp is seen by every
 *     command; preview tokens minted by the owner are checked by it); a request sent on the
 *     other broker's own subject is refused naming the owner, never served by a second jail;
 *   - a second broker starting does not touch the first one's running sandboxes;
 *   - KX_SANDBOX_MAX_PER_ACCOUNT counts an account's sandboxes on both brokers together;
 *   - kill -9 of the owner (by PID): the other broker takes the sandbox over within the
 *     documented bound (KX_SANDBOX_LEASE_MS * 1.25 + a start) and its files are intact;
 *   - a frozen owner (SIGSTOP) loses the sandbox when its lease expires, and once thawed ends
 *     its stale jail rather than serve it beside the new one;
 *   - a broker killed and restarted with the same KX_SANDBOX_BROKER_ID re-adopts its
 *     sandboxes at start (the other broker is frozen meanwhile, so only the start can do it);
 *   - the broker's health notes say what became of cgroup v2 limits; a KX_SANDBOX_CGROUP the
 *     broker cannot use makes it refuse to start, saying why. */
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

#define LEASE_MS 2000
/* The documented bound (fleet.h) plus a generous margin for a loaded 2-core machine. */
#define TAKEOVER_BOUND_MS (LEASE_MS * 5 / 4 + 10000)

static kx_th_stack g_stack;
static kx_bus *g_bus;
static pid_t g_b_pid;     /* the second broker, "fleet-b" */
static uint16_t g_b_port; /* its KX_HEALTH_PORT */
static char g_b_log[600];
static char g_a_id[64]; /* the stack's broker's id, learnt from a reply */

static const char *const STACK_ENV[] = {
    "KX_SANDBOX_LEASE_MS=2000",
    "KX_SANDBOX_MAX_PER_ACCOUNT=2", /* both brokers (b_start takes the stack's environment) */
    NULL,
};

/* ---- the second broker ------------------------------------------------------------------ */

static kx_err b_start(void)
{
    size_t n = 0;
    while (g_stack.env[n] != NULL)
        n++;
    const char **env = calloc(n + 3, sizeof *env);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) { /* like the stack's broker: no secret it does not need */
        if (strncmp(g_stack.env[i], "KX_JWT_SECRET=", 14) == 0 ||
            strncmp(g_stack.env[i], "KX_DATABASE_URL=", 16) == 0)
            continue;
        env[k++] = g_stack.env[i];
    }
    char port[48];
    g_b_port = kx_th_free_port(); /* a fresh one each time: the last may be taken meanwhile */
    snprintf(port, sizeof port, "KX_HEALTH_PORT=%u", (unsigned)g_b_port);
    env[k++] = port;
    env[k++] = "KX_SANDBOX_BROKER_ID=fleet-b";
    snprintf(g_b_log, sizeof g_b_log, "%s/sandbox-broker-b.log", g_stack.dir);
    kx_th_proc *a = kx_th_stack_proc(&g_stack, "sandbox-broker");
    const char *argv[] = {a->path, NULL};
    kx_err err = kx_th_spawn(argv, env, g_b_log, &g_b_pid);
    free(env);
    if (err != KX_OK)
        return err;
    char url[96];
    snprintf(url, sizeof url, "http://127.0.0.1:%u/readyz", (unsigned)g_b_port);
    /* Ready means this process serves: it must still be running once /readyz says 200. */
    err = kx_th_wait_http(url, 30000);
    int st;
    if (waitpid(g_b_pid, &st, WNOHANG) != 0) {
        fprintf(stderr, "the second broker (pid %d) exited; log: %s\n", (int)g_b_pid, g_b_log);
        g_b_pid = 0;
        return KX_ERR_UNAVAILABLE;
    }
    return err;
}

static void b_kill9(void)
{
    assert_int_equal(kill(g_b_pid, SIGKILL), 0);
    int st;
    while (waitpid(g_b_pid, &st, 0) < 0 && errno == EINTR) {
    }
    g_b_pid = 0;
}

/* ---- bus helpers ------------------------------------------------------------------------ */

typedef Kx__V1__SandboxLifecycleReply life_t;

/* A lifecycle op on subject prefix ("kx.sandbox." or "kx.sandbox.<broker>."). */
static life_t *life_on(const char *prefix, const char *op, const char *project)
{
    kx_err err = KX_OK;
    life_t *rep = kx_th_life_request(g_bus, prefix, op, project, 30000, NULL, &err);
    if (rep == NULL)
        fail_msg("%s%s failed: %s", prefix, op, kx_err_str(err));
    return rep;
}

/* The op must succeed; copies the state and the broker running it. */
static void life_ok(const char *prefix, const char *op, const char *project, char state[32],
                    char broker[64])
{
    life_t *r = life_on(prefix, op, project);
    if (r->error != NULL)
        fail_msg("%s%s: %s: %s", prefix, op, r->error->code, r->error->message);
    if (state != NULL)
        snprintf(state, 32, "%s", r->sandbox->state);
    if (broker != NULL)
        snprintf(broker, 64, "%s", r->sandbox->broker ? r->sandbox->broker : "");
    kx_pb_free(r);
}

static Kx__V1__SandboxExecResult *exec_on(const char *subject, const char *project,
                                          const char *command)
{
    kx_th_exec x = {.subject = subject, .project = project, .command = command, .blocking = true};
    kx_err err = KX_OK;
    Kx__V1__SandboxExecResult *res = kx_th_exec_request(g_bus, &x, NULL, &err);
    if (res == NULL)
        fail_msg("%s failed: %s", subject, kx_err_str(err));
    return res;
}

/* A blocking command on the shared subject; its stdout (malloc'd), asserting exit 0. */
static char *sh(const char *project, const char *command)
{
    Kx__V1__SandboxExecResult *res = exec_on(KX_SUBJ_SANDBOX_EXEC, project, command);
    if (res->error != NULL)
        fail_msg("'%s' refused: %s: %s", command, res->error->code, res->error->message);
    if (res->exit_code != 0)
        fail_msg("'%s' exited %d: %s%s", command, res->exit_code, res->stdout, res->stderr);
    char *out = strdup(res->stdout);
    kx_pb_free(res);
    return out;
}

static Kx__V1__SandboxPreviewReply *preview(const char *project, int port, const char *token)
{
    kx_err err = KX_OK;
    Kx__V1__SandboxPreviewReply *rep =
        kx_th_preview_request(g_bus, project, port, token, 10000, &err);
    if (rep == NULL)
        fail_msg("kx.sandbox.preview failed: %s", kx_err_str(err));
    return rep;
}

/* kx_sandbox_forwarded_total{outcome="forwarded"} of the broker on port. */
static long forwarded(uint16_t port)
{
    char url[96];
    snprintf(url, sizeof url, "http://127.0.0.1:%u/metrics", (unsigned)port);
    kx_http_resp resp;
    memset(&resp, 0, sizeof resp);
    if (kx_http_request("GET", url, NULL, NULL, 0, kx_deadline_in(5000), 0, &resp) != KX_OK)
        return -1;
    long n = 0;
    const char *p =
        strstr(resp.body ? resp.body : "", "kx_sandbox_forwarded_total{outcome=\"forwarded\"} ");
    if (p != NULL)
        n = strtol(p + strlen("kx_sandbox_forwarded_total{outcome=\"forwarded\"} "), NULL, 10);
    kx_http_resp_free(&resp);
    return n;
}

/* Waits until `get` (on subject prefix) says running on a broker other than `not` (NULL: any); its broker. */
static int64_t wait_running(const char *prefix, const char *project, const char * not,
                            char broker[64], int64_t timeout_ms)
{
    int64_t t0 = kx_mono_ms();
    while (kx_mono_ms() - t0 < timeout_ms) {
        /* Short requests, a lost one retried: a request NATS handed to a broker as it died is
         * lost with it (the caller's deadline is its answer). */
        kx_err err = KX_OK;
        life_t *r = kx_th_life_request(g_bus, prefix, "get", project, 2000, NULL, &err);
        if (r == NULL && err != KX_ERR_PROTOCOL) {
            usleep(100 * 1000);
            continue;
        }
        assert_non_null(r);
        bool ok = r->sandbox != NULL && strcmp(r->sandbox->state, "running") == 0 &&
            r->sandbox->broker != NULL && r->sandbox->broker[0] != '\0' &&
            (not == NULL || strcmp(r->sandbox->broker, not ) != 0);
        if (ok)
            snprintf(broker, 64, "%s", r->sandbox->broker);
        kx_pb_free(r);
        if (ok)
            return kx_mono_ms() - t0;
        usleep(100 * 1000);
    }
    return -1;
}

/* ---- cases ------------------------------------------------------------------------------ */

static void test_requests_reach_the_owner(void **state)
{
    enum {
        NPROJ = 4,
        NREQ = 8
    };
    char p[NPROJ][KX_UUID_LEN + 1];
    char owner[NPROJ][64];
    long before =
        forwarded(kx_th_stack_proc(&g_stack, "sandbox-broker")->port) + forwarded(g_b_port);
    for (int i = 0; i < NPROJ; i++) {
        kx_uuid_new(p[i]);
        /* Half made on each broker, through its own subject. */
        char prefix[96];
        snprintf(prefix, sizeof prefix, "kx.sandbox.%s.", i % 2 == 0 ? "fleet-b" : g_a_id);
        char st[32];
        life_ok(prefix, "create", p[i], st, owner[i]);
        assert_string_equal(st, "running");
        assert_string_equal(owner[i], i % 2 == 0 ? "fleet-b" : g_a_id);
        free(sh(p[i], "echo here > /tmp/marker; echo kept > kept.txt"));
    }
    for (int i = 0; i < NPROJ; i++) {
        for (int k = 0; k < NREQ; k++) { /* the queue group spreads these over both brokers */
            char *out = sh(p[i], "cat /tmp/marker");
            assert_string_equal(out, "here\n");
            free(out);
            char st[32], br[64];
            life_ok("kx.sandbox.", "get", p[i], st, br);
            assert_string_equal(st, "running");
            assert_string_equal(br, owner[i]);
        }
        /* A preview token lives on the owner only: every check must reach it. */
        Kx__V1__SandboxPreviewReply *m = preview(p[i], 8080, NULL);
        assert_null(m->error);
        char tok[64];
        snprintf(tok, sizeof tok, "%s", m->token);
        kx_pb_free(m);
        for (int k = 0; k < NREQ; k++) {
            Kx__V1__SandboxPreviewReply *c = preview(p[i], 8080, tok);
            if (c->error != NULL)
                fail_msg("preview check %d of project %d: %s: %s", k, i, c->error->code,
                         c->error->message);
            kx_pb_free(c);
        }
        /* The other broker's own subject is not routed: refused, naming the owner. */
        char subj[128];
        snprintf(subj, sizeof subj, "kx.sandbox.%s.exec",
                 strcmp(owner[i], "fleet-b") == 0 ? g_a_id : "fleet-b");
        Kx__V1__SandboxExecResult *res = exec_on(subj, p[i], "cat /tmp/marker");
        assert_non_null(res->error);
        assert_string_equal(res->error->code, "unavailable");
        assert_non_null(strstr(res->error->message, owner[i]));
        kx_pb_free(res);
    }
    long after =
        forwarded(kx_th_stack_proc(&g_stack, "sandbox-broker")->port) + forwarded(g_b_port);
    /* 4 x (8 exec + 8 get + 9 preview) requests over two brokers: some were forwarded (the
     * chance that the queue group gave every one to its owner is 2^-100). */
    assert_true(after - before > 0);
    for (int i = 0; i < NPROJ; i++)
        life_ok("kx.sandbox.", "delete", p[i], NULL, NULL);
}

/* A lifecycle op for account (its Kx-Account header) on subject prefix: the reply. */
static life_t *life_as(const char *prefix, const char *op, const char *project,
                       const char *account)
{
    Kx__V1__SandboxLifecycleRequest rq = KX__V1__SANDBOX_LIFECYCLE_REQUEST__INIT;
    rq.project_id = (char *)project;
    char subj[160];
    snprintf(subj, sizeof subj, "%s%s", prefix, op);
    kx_err err = KX_OK;
    life_t *r = kx_th_bus_ask(g_bus, subj, &rq.base, account, 30000,
                              &kx__v1__sandbox_lifecycle_reply__descriptor, NULL, &err);
    if (r == NULL)
        fail_msg("%s: %s", subj, kx_err_str(err));
    return r;
}

/* KX_SANDBOX_MAX_PER_ACCOUNT (2 here) counts an account's sandboxes on every broker sharing
 * the root: with one running on each broker, a third is refused by both (before, each broker
 * counted its own: the fleet ran 2 per broker, N brokers N times the limit); a stop on one
 * makes room on the other. Nothing is made for a refused one. */
static void test_account_limit_over_the_fleet(void **state)
{
    (void)state;
    char account[KX_UUID_LEN + 1], p[3][KX_UUID_LEN + 1];
    kx_uuid_new(account);
    for (int i = 0; i < 3; i++)
        kx_uuid_new(p[i]);
    char a_prefix[96];
    snprintf(a_prefix, sizeof a_prefix, "kx.sandbox.%s.", g_a_id);
    const char *prefixes[2] = {a_prefix, "kx.sandbox.fleet-b."};
    for (int i = 0; i < 2; i++) {
        life_t *r = life_as(prefixes[i], "create", p[i], account);
        if (r->error != NULL)
            fail_msg("sandbox %d of the account: %s: %s", i + 1, r->error->code,
                     r->error->message);
        assert_string_equal(r->sandbox->state, "running");
        kx_pb_free(r);
    }
    for (int i = 0; i < 2; i++) {
        life_t *r = life_as(prefixes[i], "create", p[2], account);
        if (r->error == NULL)
            fail_msg("a third sandbox for one account, on broker %s: %s", prefixes[i],
                     r->sandbox ? r->sandbox->state : "?");
        assert_string_equal(r->error->code, "quota_exceeded");
        assert_non_null(strstr(r->error->message, "KX_SANDBOX_MAX_PER_ACCOUNT"));
        assert_non_null(strstr(r->error->message, "2 sandboxes running"));
        kx_pb_free(r);
    }
    char dir[1200];
    snprintf(dir, sizeof dir, "%s/%s", g_stack.sandbox_root, p[2]);
    struct stat st;
    assert_int_not_equal(lstat(dir, &st), 0); /* nothing made for it */

    life_t *r = life_as(a_prefix, "stop", p[0], account);
    assert_null(r->error);
    kx_pb_free(r);
    r = life_as("kx.sandbox.fleet-b.", "create", p[2], account);
    if (r->error != NULL)
        fail_msg("after a stop on the other broker: %s: %s", r->error->code, r->error->message);
    kx_pb_free(r);
    for (int i = 0; i < 3; i++)
        life_ok("kx.sandbox.", "delete", p[i], NULL, NULL);
}

static void test_owner_killed_is_taken_over(void **state)
{
    char p[KX_UUID_LEN + 1], id1[64], st[32];
    kx_uuid_new(p);
    life_ok("kx.sandbox.fleet-b.", "create", p, st, id1);
    assert_string_equal(id1, "fleet-b");
    free(sh(p, "mkdir -p d && echo intact > d/file.txt && echo here > /tmp/marker"));
    pid_t old = g_b_pid;
    b_kill9();
    fprintf(stderr, "broker fleet-b (pid %d) killed with SIGKILL\n", (int)old);
    char now_on[64];
    int64_t took = wait_running("kx.sandbox.", p, "fleet-b", now_on, TAKEOVER_BOUND_MS);
    if (took < 0)
        fail_msg("no broker took the sandbox over within %d ms", TAKEOVER_BOUND_MS);
    fprintf(stderr, "takeover after %lld ms (lease %d ms)\n", (long long)took, LEASE_MS);
    assert_string_equal(now_on, g_a_id);
    char *out = sh(p, "cat d/file.txt; test -e /tmp/marker && echo old-jail || echo new-jail");
    assert_string_equal(out, "intact\nnew-jail\n");
    free(out);
    life_ok("kx.sandbox.", "delete", p, NULL, NULL);
    assert_int_equal(b_start(), KX_OK);
}

/* kx_sandboxes_running of the broker on port, or -1. */
static long running_here(uint16_t port)
{
    char url[96];
    snprintf(url, sizeof url, "http://127.0.0.1:%u/metrics", (unsigned)port);
    kx_http_resp resp;
    memset(&resp, 0, sizeof resp);
    if (kx_http_request("GET", url, NULL, NULL, 0, kx_deadline_in(5000), 0, &resp) != KX_OK)
        return -1;
    const char *p = strstr(resp.body ? resp.body : "", "\nkx_sandboxes_running ");
    long n = p != NULL ? strtol(p + strlen("\nkx_sandboxes_running "), NULL, 10) : -1;
    kx_http_resp_free(&resp);
    return n;
}

/* A frozen owner (SIGSTOP: its pid lives, its lease only ages) loses its sandbox when the
 * lease expires; thawed, it ends its stale jail instead of serving it beside the new one. */
static void test_frozen_owner_lease_expires(void **state)
{
    char p[KX_UUID_LEN + 1], st[32], br[64];
    kx_uuid_new(p);
    life_ok("kx.sandbox.fleet-b.", "create", p, st, br);
    assert_string_equal(br, "fleet-b");
    free(sh(p, "echo kept > kept.txt; echo old > /tmp/marker"));
    assert_int_equal(running_here(g_b_port), 1);
    assert_true(kx_th_freeze(g_b_pid));
    char a_prefix[96];
    snprintf(a_prefix, sizeof a_prefix, "kx.sandbox.%s.", g_a_id);
    int64_t took = wait_running(a_prefix, p, "fleet-b", br, TAKEOVER_BOUND_MS);
    assert_int_equal(kill(g_b_pid, SIGCONT), 0);
    if (took < 0)
        fail_msg("no broker took the sandbox over within %d ms", TAKEOVER_BOUND_MS);
    fprintf(stderr, "takeover of a frozen owner after %lld ms (lease %d ms)\n", (long long)took,
            LEASE_MS);
    assert_true(took >= LEASE_MS / 2); /* not before the lease could expire */
    assert_string_equal(br, g_a_id);
    /* fleet-b, thawed, sees its lease lapsed and ends the jail it no longer owns. */
    long n = -1;
    for (int i = 0; i < 100 && (n = running_here(g_b_port)) != 0; i++)
        usleep(100 * 1000);
    assert_int_equal(n, 0);
    for (int k = 0; k < 6; k++) { /* whichever broker gets it: the new jail answers */
        char *out = sh(p, "cat kept.txt; cat /tmp/marker 2>/dev/null || echo new");
        assert_string_equal(out, "kept\nnew\n");
        free(out);
    }
    life_ok("kx.sandbox.", "get", p, st, br);
    assert_string_equal(st, "running");
    assert_string_equal(br, g_a_id);
    life_ok("kx.sandbox.", "delete", p, NULL, NULL);
}

static void test_restart_readopts(void **state)
{
    char p[KX_UUID_LEN + 1], st[32], br[64];
    kx_uuid_new(p);
    life_ok("kx.sandbox.fleet-b.", "create", p, st, br);
    assert_string_equal(br, "fleet-b");
    free(sh(p, "echo kept > kept.txt"));
    /* Only fleet-b may bring it back: the stack's broker is frozen (its lease lapses too), so
     * requests go to fleet-b's own subjects meanwhile (the queue group could pick the frozen
     * one). */
    pid_t a = kx_th_stack_proc(&g_stack, "sandbox-broker")->pid;
    assert_true(kx_th_freeze(a));
    b_kill9();
    kx_err err = b_start();
    int64_t took = err == KX_OK ? wait_running("kx.sandbox.fleet-b.", p, NULL, br, 15000) : -1;
    assert_int_equal(kill(a, SIGCONT), 0);
    assert_int_equal(err, KX_OK);
    assert_true(took >= 0);
    assert_string_equal(br, "fleet-b");
    char *out = sh(p, "cat kept.txt");
    assert_string_equal(out, "kept\n");
    free(out);
    life_ok("kx.sandbox.", "delete", p, NULL, NULL);
}

/* The broker's cgroup v2 report: per-sandbox limits where the host delegates a cgroup, or the
 * reason there are none and that rlimits are the limits (this kind of machine: a v2 hierarchy
 * holding only hugetlb). The limits written are checked by unit_cgroup. */
static void test_health_reports_cgroup(void **state)
{
    (void)state;
    char url[128];
    snprintf(url, sizeof url, "%s/api/health", g_stack.base_url);
    kx_http_resp resp;
    memset(&resp, 0, sizeof resp);
    assert_int_equal(kx_http_request("GET", url, NULL, NULL, 0, kx_deadline_in(5000), 0, &resp),
                     KX_OK);
    assert_int_equal(resp.status, 200);
    if (strstr(resp.body, "a cgroup per sandbox with") == NULL &&
        strstr(resp.body, "sandbox limits from rlimits only") == NULL)
        fail_msg("/api/health does not say what became of cgroup v2: %s", resp.body);
    kx_http_resp_free(&resp);
}

/* KX_SANDBOX_CGROUP naming a cgroup the broker cannot use (here: one holding another
 * process, so no controller can be enabled below it): the broker refuses to start and says
 * why, rather than run sandboxes without the limits the operator asked for. */
static void test_cgroup_path_refused(void **state)
{
    (void)state;
    char cg[600], file[700], log[700], env_cg[700], env_root[700], env_port[48], env_nats[160];
    snprintf(cg, sizeof cg, "%s/fake-cgroup", g_stack.dir);
    assert_int_equal(mkdir(cg, 0755), 0);
    static const char *const files[][2] = {{"cgroup.controllers", "memory pids\n"},
                                           {"cgroup.subtree_control", ""}};
    for (size_t i = 0; i < 2; i++) {
        snprintf(file, sizeof file, "%s/%s", cg, files[i][0]);
        FILE *f = fopen(file, "w");
        assert_non_null(f);
        fputs(files[i][1], f);
        fclose(f);
    }
    snprintf(file, sizeof file, "%s/cgroup.procs", cg);
    FILE *f = fopen(file, "w");
    assert_non_null(f);
    fprintf(f, "%ld\n", (long)getpid()); /* the test: not the broker */
    fclose(f);

    snprintf(env_cg, sizeof env_cg, "KX_SANDBOX_CGROUP=%s", cg);
    snprintf(env_root, sizeof env_root, "KX_SANDBOX_ROOT=%s/sandboxes-refused", g_stack.dir);
    snprintf(env_port, sizeof env_port, "KX_HEALTH_PORT=%u", (unsigned)kx_th_free_port());
    snprintf(env_nats, sizeof env_nats, "KX_NATS_URL=%s", g_stack.nats.url);
    snprintf(log, sizeof log, "%s/sandbox-broker-cgroup.log", g_stack.dir);
    const char *env[] = {env_cg, env_root, env_port, env_nats, "KX_SANDBOX_BROKER_ID=fleet-cg",
                         NULL};
    kx_th_proc *a = kx_th_stack_proc(&g_stack, "sandbox-broker");
    const char *argv[] = {a->path, NULL};
    pid_t pid = 0;
    assert_int_equal(kx_th_spawn(argv, env, log, &pid), KX_OK);
    int st = 0;
    pid_t got = 0;
    for (int i = 0; i < 1000 && (got = waitpid(pid, &st, WNOHANG)) == 0; i++)
        usleep(10 * 1000);
    if (got != pid) {
        kx_th_kill(pid);
        fail_msg("the broker did not refuse KX_SANDBOX_CGROUP=%s within 10 s (log %s)", cg, log);
    }
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) != 0);
    char *text = NULL;
    size_t len = 0;
    f = fopen(log, "r");
    assert_non_null(f);
    text = calloc(1, 1 << 20);
    len = fread(text, 1, (1 << 20) - 1, f);
    fclose(f);
    (void)len;
    if (strstr(text, "refusing to start: KX_SANDBOX_CGROUP=") == NULL ||
        strstr(text, "1 other process") == NULL)
        fail_msg("the broker's refusal does not say why: %s", text);
    free(text);
}

/* ---- setup ------------------------------------------------------------------------------ */

static int group_setup(void **state)
{
    if (nats_Open(-1) != NATS_OK)
        return -1;
    kx_th_stack_opts opts = {.env = STACK_ENV};
    if (kx_th_stack_start(&opts, &g_stack) != KX_OK)
        return -1;
    if (kx_th_bus_connect(g_stack.nats.url, "it-fleet", &g_bus) != KX_OK)
        return -1;
    /* The stack's broker's id: the broker of a sandbox it made (the only broker so far). */
    char p[KX_UUID_LEN + 1], st[32];
    kx_uuid_new(p);
    life_ok("kx.sandbox.", "create", p, st, g_a_id);
    if (g_a_id[0] == '\0')
        return -1;
    /* A second broker starting leaves the first one's running sandbox alone. */
    if (b_start() != KX_OK)
        return -1;
    char br[64];
    life_ok("kx.sandbox.", "get", p, st, br);
    if (strcmp(st, "running") != 0 || strcmp(br, g_a_id) != 0) {
        fprintf(stderr, "the second broker changed the first one's sandbox: %s on %s\n", st, br);
        return -1;
    }
    char *out = sh(p, "echo ok");
    free(out);
    life_ok("kx.sandbox.", "delete", p, NULL, NULL);
    return 0;
}

static int group_teardown(void **state)
{
    kx_bus_close(g_bus, 2000);
    if (g_b_pid > 0 && kx_th_kill(g_b_pid) != 0) {
        fprintf(stderr, "the second broker did not exit cleanly; log: %s\n", g_b_log);
        return -1;
    }
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_requests_reach_the_owner),
        cmocka_unit_test(test_account_limit_over_the_fleet),
        cmocka_unit_test(test_owner_killed_is_taken_over),
        cmocka_unit_test(test_frozen_owner_lease_expires),
        cmocka_unit_test(test_restart_readopts),
        cmocka_unit_test(test_health_reports_cgroup),
        cmocka_unit_test(test_cgroup_path_refused),
    };
    if (getenv("KX_TEST_FILTER") != NULL)
        cmocka_set_test_filter(getenv("KX_TEST_FILTER"));
    int failed = cmocka_run_group_tests(tests, group_setup, group_teardown);
    if (failed != 0 && g_b_log[0] != '\0')
        fprintf(stderr, "second broker's log: %s\n", g_b_log);
    if (kx_th_stack_stop(&g_stack, failed != 0) != 0)
        failed++;
    return failed;
}
