/* tests/harness/stack.c — the whole stack for integration tests (see stack.h): nats-server,
 * PostgreSQL, the demo model and the six services in one temp dir; JWTs, HTTP calls, SSE
 * streams and SQL for the tests that drive it.
 *
 * Why a layer of its own: every end-to-end test needs the same nine processes wired the same
 * way (ports, secret, short lease timings), the same way to wait for them, and the same way to
 * show what went wrong when an assertion fails — the logs. The primitives (temp dir, ports,
 * spawn, kill, nats, postgres) come from harness.c. Messages go to stderr prefixed "stack:". */
#include "stack.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kx/buf.h"
#include "kx/jwt.h"
#include "kx/sse.h"
#include "kx/time.h"

static const char *const PROC_NAMES[KX_TH_STACK_NPROCS] = {
    "demo-model",    "gateway",        "scheduler", "agent-runner",
    "tool-executor", "sandbox-broker", "mcp-proxy",
};

/* ---- small helpers ---------------------------------------------------------------------- */

static void st_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void st_log(const char *fmt, ...)
{
    char buf[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    fprintf(stderr, "stack: %s\n", buf);
}

static void sleep_ms(int64_t ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* malloc'd "K=V". */
static char *env_pair(const char *key, const char *value)
{
    char *s = NULL;
    if (asprintf(&s, "%s=%s", key, value) < 0)
        return NULL;
    return s;
}

/* Sets key=value in the NULL-terminated array *env (replacing an entry with the same key), so
 * that a later setting wins. pair is "K=V" and is copied. */
static kx_err env_set(char ***env, const char *pair)
{
    const char *eq = strchr(pair, '=');
    if (eq == NULL || eq == pair) {
        st_log("environment entry \"%s\" is not K=V", pair);
        return KX_ERR_INVALID;
    }
    size_t keylen = (size_t)(eq - pair) + 1; /* with the '=' */
    char *copy = strdup(pair);
    if (copy == NULL)
        return KX_ERR_NOMEM;
    size_t n = 0;
    for (; *env != NULL && (*env)[n] != NULL; n++) {
        if (strncmp((*env)[n], pair, keylen) == 0) {
            free((*env)[n]);
            (*env)[n] = copy;
            return KX_OK;
        }
    }
    char **grown = realloc(*env, (n + 2) * sizeof *grown);
    if (grown == NULL) {
        free(copy);
        return KX_ERR_NOMEM;
    }
    grown[n] = copy;
    grown[n + 1] = NULL;
    *env = grown;
    return KX_OK;
}

static kx_err env_setf(char ***env, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static kx_err env_setf(char ***env, const char *key, const char *fmt, ...)
{
    char value[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(value, sizeof value, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof value) {
        st_log("value of %s too long", key);
        return KX_ERR_INVALID;
    }
    char *pair = env_pair(key, value);
    if (pair == NULL)
        return KX_ERR_NOMEM;
    kx_err err = env_set(env, pair);
    free(pair);
    return err;
}

static void env_free(char **env)
{
    for (size_t i = 0; env != NULL && env[i] != NULL; i++)
        free(env[i]);
    free(env);
}

/* True (and *status set) when pid has exited; the zombie is left for kx_th_kill to reap. */
static bool proc_exited(pid_t pid, int *status)
{
    siginfo_t si = {0};
    if (waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) != 0 || si.si_pid != pid)
        return false;
    *status = si.si_code == CLD_EXITED ? si.si_status : 128 + si.si_status;
    return true;
}

/* GET url answered 200 within a 1 s transfer. */
static bool http_ok(const char *url)
{
    kx_http_resp r = {0};
    bool ok = kx_http_request("GET", url, NULL, NULL, 0, kx_deadline_in(1000), 0, &r) == KX_OK &&
        r.status == 200;
    kx_http_resp_free(&r);
    return ok;
}

/* ---- logs ------------------------------------------------------------------------------- */

/* Prints the last `lines` lines of path to stderr. */
static void tail_file(const char *path, int lines)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        fprintf(stderr, "---- %s: %s\n", path, strerror(errno));
        return;
    }
    /* Read the last 64 KiB at most, then print from the right newline. */
    long start = 0;
    if (fseek(f, 0, SEEK_END) == 0) {
        long size = ftell(f);
        start = size > 65536 ? size - 65536 : 0;
    }
    fseek(f, start, SEEK_SET);
    static char buf[65537];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    size_t pos = n;
    int seen = 0;
    if (pos > 0 && buf[pos - 1] == '\n')
        pos--;
    while (pos > 0) {
        if (buf[pos - 1] == '\n' && ++seen == lines)
            break;
        pos--;
    }
    fprintf(stderr, "---- last %d lines of %s\n%s", lines, path, buf + pos);
    if (n > 0 && buf[n - 1] != '\n')
        fputc('\n', stderr);
}

void kx_th_stack_dump_logs(const kx_th_stack *s, int lines)
{
    char path[600];
    if (s->nats.dir[0] != '\0') {
        snprintf(path, sizeof path, "%s/nats.log", s->nats.dir);
        tail_file(path, lines);
    }
    if (s->pg.dir[0] != '\0') {
        snprintf(path, sizeof path, "%s/pg.log", s->pg.dir);
        tail_file(path, lines);
    }
    for (int i = 0; i < KX_TH_STACK_NPROCS; i++) {
        if (s->procs[i].log[0] != '\0')
            tail_file(s->procs[i].log, lines);
    }
}

/* ---- processes -------------------------------------------------------------------------- */

kx_th_proc *kx_th_stack_proc(kx_th_stack *s, const char *name)
{
    for (int i = 0; i < KX_TH_STACK_NPROCS; i++) {
        if (s->procs[i].name != NULL && strcmp(s->procs[i].name, name) == 0)
            return &s->procs[i];
    }
    return NULL;
}

static bool is_model(const kx_th_proc *p)
{
    return strcmp(p->name, "demo-model") == 0;
}

/* Spawns p with the stack's environment plus its own port variable. */
static kx_err proc_spawn(kx_th_stack *s, kx_th_proc *p)
{
    size_t n = 0;
    while (s->env[n] != NULL)
        n++;
    const char **env = calloc(n + 2, sizeof *env);
    if (env == NULL)
        return KX_ERR_NOMEM;
    /* Like up.sh: the sandbox-broker gets no secret it does not need (no JWT secret, no
     * database URL). */
    bool broker = strcmp(p->name, "sandbox-broker") == 0;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (broker &&
            (strncmp(s->env[i], "KX_JWT_SECRET=", 14) == 0 ||
             strncmp(s->env[i], "KX_DATABASE_URL=", 16) == 0))
            continue;
        env[k++] = s->env[i];
    }
    n = k;
    char own[64];
    snprintf(own, sizeof own, "%s=%u", is_model(p) ? "KX_MODEL_PORT" : "KX_HEALTH_PORT", p->port);
    env[n] = own;
    const char *argv[] = {p->path, NULL};
    kx_err err = kx_th_spawn(argv, env, p->log, &p->pid);
    free(env);
    if (err != KX_OK) {
        st_log("could not start %s (%s)", p->name, p->path);
        p->pid = 0;
        return err;
    }
    p->exit_status = -1;
    return KX_OK;
}

/* Waits until p answers GET /healthz on its port, failing early if it exits. */
static kx_err proc_wait_healthy(const kx_th_proc *p, int64_t deadline_mono)
{
    char url[128];
    /* The sandbox-broker checks bubblewrap before it subscribes: wait until it serves
     * (/readyz), so that a restarted broker is really back. */
    snprintf(url, sizeof url, "http://127.0.0.1:%u/%s", p->port,
             strcmp(p->name, "sandbox-broker") == 0 ? "readyz" : "healthz");
    for (;;) {
        int status;
        if (proc_exited(p->pid, &status)) {
            st_log("%s (pid %d) exited with status %d before it was healthy; log: %s", p->name,
                   (int)p->pid, status, p->log);
            return KX_ERR_UNAVAILABLE;
        }
        if (http_ok(url))
            return KX_OK;
        if (kx_mono_ms() >= deadline_mono) {
            st_log("%s (pid %d): GET %s gave no 200 in time; log: %s", p->name, (int)p->pid, url,
                   p->log);
            return KX_ERR_TIMEOUT;
        }
        sleep_ms(50);
    }
}

int kx_th_stack_proc_stop(kx_th_stack *s, kx_th_proc *p)
{
    if (p->pid <= 0)
        return p->exit_status;
    p->exit_status = kx_th_kill(p->pid);
    p->pid = 0;
    return p->exit_status;
}

kx_err kx_th_stack_proc_start(kx_th_stack *s, kx_th_proc *p, int64_t timeout_ms)
{
    if (p->pid > 0) {
        st_log("%s is already running (pid %d)", p->name, (int)p->pid);
        return KX_ERR_INVALID;
    }
    kx_err err = proc_spawn(s, p);
    if (err != KX_OK)
        return err;
    return proc_wait_healthy(p, kx_mono_ms() + timeout_ms);
}

/* ---- start and stop --------------------------------------------------------------------- */

static kx_err random_hex(char *out, size_t nbytes)
{
    unsigned char raw[64];
    if (nbytes > sizeof raw)
        return KX_ERR_INVALID;
    if (getrandom(raw, nbytes, 0) != (ssize_t)nbytes) {
        st_log("getrandom: %s", strerror(errno));
        return KX_ERR_IO;
    }
    for (size_t i = 0; i < nbytes; i++)
        sprintf(out + 2 * i, "%02x", raw[i]);
    return KX_OK;
}

/* The environment every process gets; see stack.h. */
static kx_err build_env(kx_th_stack *s, const kx_th_stack_opts *opts)
{
    kx_err err = KX_OK;
#define SETF(k, ...)                                 \
    do {                                             \
        if (err == KX_OK)                            \
            err = env_setf(&s->env, k, __VA_ARGS__); \
    } while (0)
    SETF("KX_NATS_URL", "%s", s->nats.url);
    SETF("KX_DATABASE_URL", "%s", s->pg.url);
    SETF("KX_HTTP_PORT", "%u", s->http_port);
    SETF("KX_JWT_SECRET", "%s", s->secret);
    SETF("KX_MODEL_PORT", "%u", s->model_port);
    SETF("KX_MODEL_URL", "http://127.0.0.1:%u/v1", s->model_port);
    SETF("KX_SANDBOX_ROOT", "%s", s->sandbox_root);
    SETF("KX_SANDBOX_DENY_PORTS", "%u", s->pg.port); /* with KX_SANDBOX_NETWORK=host */
    SETF("KX_DATA_DIR", "%s", s->dir);
    SETF("KX_MIGRATIONS_DIR", "%s/deploy/migrations",
         opts != NULL && opts->source_dir != NULL ? opts->source_dir : KX_SOURCE_DIR);
    SETF("KX_BIND_ADDR", "127.0.0.1");
    SETF("KX_LOG_LEVEL", "debug");
    SETF("KX_HEARTBEAT_MS", "200");
    SETF("KX_LEASE_TTL_MS", "2000");
    SETF("KX_REAPER_INTERVAL_MS", "200");
    SETF("KX_SWEEP_INTERVAL_MS", "500");
    SETF("KX_DRAIN_TIMEOUT_MS", "3000");
    SETF("OPENAI_API_KEY", "%s", "");
    SETF("ANTHROPIC_API_KEY", "%s", "");
    /* project naming sends one more LLM request after a project's first run: off unless a
     * test asks for it, so request counts and benchmarks see only the runs' own requests */
    SETF("KX_PROJECT_NAMING", "0");
#undef SETF
    for (size_t i = 0; err == KX_OK && opts != NULL && opts->env != NULL && opts->env[i] != NULL;
         i++)
        err = env_set(&s->env, opts->env[i]);
    return err;
}

/* Picks distinct free ports for the gateway, the model and each service's health port. */
static kx_err pick_ports(kx_th_stack *s)
{
    uint16_t used[KX_TH_STACK_NPROCS + 1] = {0};
    size_t nused = 0;
    for (size_t k = 0; k < KX_TH_STACK_NPROCS + 1; k++) {
        uint16_t port = 0;
        for (int tries = 0; tries < 20 && port == 0; tries++) {
            port = kx_th_free_port();
            for (size_t j = 0; j < nused && port != 0; j++) {
                if (used[j] == port)
                    port = 0;
            }
        }
        if (port == 0) {
            st_log("could not find free ports");
            return KX_ERR_IO;
        }
        used[nused++] = port;
    }
    s->http_port = used[0];
    s->model_port = used[1];
    for (int i = 0; i < KX_TH_STACK_NPROCS; i++)
        s->procs[i].port = i == 0 ? s->model_port : used[i + 1];
    snprintf(s->base_url, sizeof s->base_url, "http://127.0.0.1:%u", s->http_port);
    return KX_OK;
}

static kx_err start_procs(kx_th_stack *s, int64_t deadline_mono)
{
    for (int i = 0; i < KX_TH_STACK_NPROCS; i++) {
        kx_th_proc *p = &s->procs[i];
        kx_err err = proc_spawn(s, p);
        if (err != KX_OK)
            return err;
        /* The model first: the runner may call it as soon as it is up. */
        if (i == 0 && (err = proc_wait_healthy(p, deadline_mono)) != KX_OK)
            return err;
    }
    for (int i = 1; i < KX_TH_STACK_NPROCS; i++) {
        kx_err err = proc_wait_healthy(&s->procs[i], deadline_mono);
        if (err != KX_OK)
            return err;
    }
    char url[128];
    snprintf(url, sizeof url, "%s/api/health", s->base_url);
    for (;;) {
        kx_http_resp r = {0};
        kx_err err = kx_http_request("GET", url, NULL, NULL, 0, kx_deadline_in(2000), 0, &r);
        if (err == KX_OK && r.status == 200) {
            kx_http_resp_free(&r);
            return KX_OK;
        }
        if (kx_mono_ms() >= deadline_mono) {
            st_log("GET %s did not answer 200 in time (last: %s, status %ld, body %s)", url,
                   kx_err_str(err), r.status, r.body != NULL ? r.body : "");
            kx_http_resp_free(&r);
            return KX_ERR_TIMEOUT;
        }
        kx_http_resp_free(&r);
        sleep_ms(100);
    }
}

kx_err kx_th_stack_start(const kx_th_stack_opts *opts, kx_th_stack *s)
{
    memset(s, 0, sizeof *s);
    int64_t t0 = kx_mono_ms();
    int64_t timeout = opts != NULL && opts->start_timeout_ms > 0 ? opts->start_timeout_ms : 60000;
    int64_t deadline = t0 + timeout;
    kx_err err = kx_http_global_init();
    if (err != KX_OK) {
        st_log("kx_http_global_init: %s", kx_err_str(err));
        return err;
    }
    const char *build = opts != NULL && opts->build_dir != NULL ? opts->build_dir : KX_BUILD_DIR;
    for (int i = 0; i < KX_TH_STACK_NPROCS; i++) {
        kx_th_proc *p = &s->procs[i];
        p->name = PROC_NAMES[i];
        p->exit_status = -1;
        if (i == 0)
            snprintf(p->path, sizeof p->path, "%s/tests/fakes/demo-model/kx-demo-model", build);
        else
            snprintf(p->path, sizeof p->path, "%s/services/%s/%s", build, p->name, p->name);
        if (access(p->path, X_OK) != 0) {
            st_log("%s is not built: %s: %s", p->name, p->path, strerror(errno));
            return KX_ERR_NOT_FOUND;
        }
    }
    s->dir = kx_th_tmpdir("kx-stack");
    if (s->dir == NULL)
        return KX_ERR_IO;
    st_log("starting the stack in %s", s->dir);
    /* Sandboxes run as their own uid; bwrap must traverse to their workspaces (not list). */
    (void)chmod(s->dir, 0711);
    for (int i = 0; i < KX_TH_STACK_NPROCS; i++)
        snprintf(s->procs[i].log, sizeof s->procs[i].log, "%s/%s.log", s->dir, s->procs[i].name);
    snprintf(s->sandbox_root, sizeof s->sandbox_root, "%s/sandboxes", s->dir);
    if (mkdir(s->sandbox_root, 0755) != 0) {
        st_log("mkdir %s: %s", s->sandbox_root, strerror(errno));
        err = KX_ERR_IO;
        goto fail;
    }
    if ((err = kx_th_nats_start(s->dir, &s->nats)) != KX_OK)
        goto fail;
    if ((err = kx_th_pg_start(s->dir, &s->pg)) != KX_OK)
        goto fail;
    if ((err = random_hex(s->secret, 32)) != KX_OK)
        goto fail;
    if ((err = pick_ports(s)) != KX_OK)
        goto fail;
    if ((err = build_env(s, opts)) != KX_OK)
        goto fail;
    if ((err = start_procs(s, deadline)) != KX_OK)
        goto fail;
    st_log("stack up in %lld ms: %s (logs in %s)", (long long)(kx_mono_ms() - t0), s->base_url,
           s->dir);
    return KX_OK;
fail:
    st_log("the stack did not start: %s", kx_err_str(err));
    kx_th_stack_stop(s, true);
    return err;
}

int kx_th_stack_stop(kx_th_stack *s, bool failed)
{
    if (s == NULL)
        return 0;
    if (failed) {
        kx_th_stack_dump_logs(s, 40);
        if (s->dir != NULL) {
            /* harness.c removes temp dirs unless KX_TEST_KEEP=1: keep this one for reading. */
            if (setenv("KX_TEST_KEEP", "1", 1) == 0)
                st_log("keeping %s for its logs", s->dir);
            else
                st_log("cannot keep %s for its logs: setenv: %s", s->dir, strerror(errno));
        }
    }
    /* One by one (a second SIGTERM could cut a drain short): the gateway first so that it
     * stops taking requests, the demo model last because a draining runner may still be
     * talking to it. kx_th_kill SIGKILLs what has not exited 5 s after its SIGTERM. */
    int unclean = 0;
    for (int i = 1; i <= KX_TH_STACK_NPROCS; i++) {
        kx_th_proc *p = &s->procs[i % KX_TH_STACK_NPROCS];
        if (p->pid <= 0)
            continue;
        pid_t pid = p->pid;
        int status = kx_th_stack_proc_stop(s, p);
        if (status != 0) {
            st_log("%s (pid %d) exited with status %d on SIGTERM (want 0); log: %s", p->name,
                   (int)pid, status, p->log);
            unclean++;
        }
    }
    kx_th_nats_stop(&s->nats);
    kx_th_pg_stop(&s->pg);
    if (s->dir != NULL) {
        /* nothing the suite started may outlive it (each one found is printed) */
        int left = kx_th_procs_using(s->dir);
        if (left > 0) {
            st_log("%d process(es) still use %s after the stack stopped", left, s->dir);
            unclean += left;
        }
        kx_th_rmrf(s->dir);
        free(s->dir);
        s->dir = NULL;
    }
    env_free(s->env);
    s->env = NULL;
    return unclean;
}

/* ---- JWT -------------------------------------------------------------------------------- */

char *kx_th_jwt(const char *secret, const char *account, int64_t ttl_s)
{
    int64_t now = kx_now_ms() / 1000;
    return kx_jwt_sign(account, now, now + ttl_s, secret, strlen(secret));
}

char *kx_th_stack_token(const kx_th_stack *s, const char *account)
{
    return kx_th_jwt(s->secret, account, 3600);
}

/* ---- HTTP ------------------------------------------------------------------------------- */

kx_err kx_th_http(const kx_th_stack *s, const char *method, const char *path, const char *token,
                  const char *content_type, const char *body, size_t body_len, kx_http_resp *out)
{
    char url[1024];
    if (snprintf(url, sizeof url, "%s%s", s->base_url, path) >= (int)sizeof url)
        return KX_ERR_INVALID;
    char *auth = NULL, *ctype = NULL;
    const char *headers[3] = {NULL, NULL, NULL};
    size_t nh = 0;
    if (token != NULL) {
        if (asprintf(&auth, "Authorization: Bearer %s", token) < 0)
            return KX_ERR_NOMEM;
        headers[nh++] = auth;
    }
    if (content_type != NULL) {
        if (asprintf(&ctype, "Content-Type: %s", content_type) < 0) {
            free(auth);
            return KX_ERR_NOMEM;
        }
        headers[nh++] = ctype;
    }
    memset(out, 0, sizeof *out);
    kx_err err =
        kx_http_request(method, url, headers, body, body_len, kx_deadline_in(10000), 0, out);
    if (err != KX_OK)
        st_log("%s %s: %s", method, url, kx_err_str(err));
    free(auth);
    free(ctype);
    return err;
}

json_t *kx_th_json(const kx_th_stack *s, const char *method, const char *path, const char *token,
                   const char *json_body, long *status)
{
    kx_http_resp r = {0};
    *status = 0;
    if (kx_th_http(s, method, path, token, json_body != NULL ? "application/json" : NULL,
                   json_body, json_body != NULL ? strlen(json_body) : 0, &r) != KX_OK)
        return NULL;
    *status = r.status;
    json_error_t jerr;
    json_t *v = r.body != NULL ? json_loads(r.body, JSON_DECODE_ANY, &jerr) : NULL;
    if (v == NULL)
        st_log("%s %s: answer %ld is not JSON: %s", method, path, r.status,
               r.body != NULL ? r.body : "(no body)");
    kx_http_resp_free(&r);
    return v;
}

/* Bodies are built in a kx_buf: the text (caller frees) and its length, or NULL when it ran out
 * of memory. */
static char *buf_done(kx_buf *b, size_t *len)
{
    if (!b->oom)
        *len = b->len;
    return kx_buf_take(b);
}

char *kx_th_form_multipart(const char *const *pairs, char **content_type, size_t *len)
{
    char boundary[48];
    snprintf(boundary, sizeof boundary, "----kxtest");
    if (random_hex(boundary + strlen(boundary), 12) != KX_OK)
        return NULL;
    kx_buf b = KX_BUF_INIT;
    for (size_t i = 0; pairs[i] != NULL && pairs[i + 1] != NULL; i += 2) {
        kx_buf_str(&b, "--");
        kx_buf_str(&b, boundary);
        kx_buf_str(&b, "\r\nContent-Disposition: form-data; name=\"");
        kx_buf_str(&b, pairs[i]);
        kx_buf_str(&b, "\"\r\n\r\n");
        kx_buf_str(&b, pairs[i + 1]);
        kx_buf_str(&b, "\r\n");
    }
    kx_buf_str(&b, "--");
    kx_buf_str(&b, boundary);
    kx_buf_str(&b, "--\r\n");
    char *body = buf_done(&b, len);
    if (body == NULL)
        return NULL;
    if (asprintf(content_type, "multipart/form-data; boundary=%s", boundary) < 0) {
        free(body);
        return NULL;
    }
    return body;
}

char *kx_th_form_urlencoded(const char *const *pairs, size_t *len)
{
    static const char HEX[] = "0123456789ABCDEF";
    kx_buf b = KX_BUF_INIT;
    for (size_t i = 0; pairs[i] != NULL && pairs[i + 1] != NULL; i += 2) {
        if (i > 0)
            kx_buf_str(&b, "&");
        for (int k = 0; k < 2; k++) {
            if (k == 1)
                kx_buf_str(&b, "=");
            for (const unsigned char *c = (const unsigned char *)pairs[i + k]; *c; c++) {
                if ((*c >= 'A' && *c <= 'Z') || (*c >= 'a' && *c <= 'z') ||
                    (*c >= '0' && *c <= '9') || *c == '-' || *c == '_' || *c == '.' || *c == '~') {
                    kx_buf_add(&b, (const char *)c, 1);
                } else if (*c == ' ') {
                    kx_buf_str(&b, "+");
                } else {
                    char esc[3] = {'%', HEX[*c >> 4], HEX[*c & 15]};
                    kx_buf_add(&b, esc, 3);
                }
            }
        }
    }
    return buf_done(&b, len);
}

/* ---- SSE -------------------------------------------------------------------------------- */

bool kx_th_sse_is_terminal(const char *payload)
{
    json_t *v = json_loads(payload, 0, NULL);
    bool terminal = false;
    if (json_is_object(v) && json_object_get(v, "message_id") == NULL) {
        const char *type = json_string_value(json_object_get(v, "type"));
        const char *status = json_string_value(json_object_get(v, "status"));
        terminal = type != NULL && status != NULL && strcmp(type, "status") == 0 &&
            (strcmp(status, "completed") == 0 || strcmp(status, "failed") == 0 ||
             strcmp(status, "stopped") == 0 || strcmp(status, "error") == 0);
    }
    json_decref(v);
    return terminal;
}

/* State of one SSE transfer, shared by curl's callbacks and the parser's. */
typedef struct sse_ctx {
    kx_sse_parser parser;
    kx_th_sse *out;
    kx_buf error_body;
    bool oom;
} sse_ctx;

static void sse_on_event(const char *event, const char *data, size_t data_len, const char *id,
                         void *arg)
{
    sse_ctx *c = arg;
    kx_th_sse *o = c->out;
    char **d = realloc(o->data, (o->n + 1) * sizeof *d);
    int64_t *at = d != NULL ? realloc(o->at_ms, (o->n + 1) * sizeof *at) : NULL;
    if (d != NULL)
        o->data = d;
    if (at != NULL)
        o->at_ms = at;
    char *copy = d != NULL && at != NULL ? strndup(data, data_len) : NULL;
    if (copy == NULL) {
        c->oom = true;
        return;
    }
    o->data[o->n] = copy;
    o->at_ms[o->n] = kx_mono_ms();
    o->n++;
    o->terminal = kx_th_sse_is_terminal(copy);
}

static size_t sse_on_bytes(char *ptr, size_t size, size_t nmemb, void *arg)
{
    sse_ctx *c = arg;
    size_t n = size * nmemb;
    if (c->out->status != 200) {
        kx_buf_add(&c->error_body, ptr, n);
        return n;
    }
    if (kx_sse_feed(&c->parser, ptr, n) != KX_OK || c->oom)
        return 0;
    /* Stop reading after the terminal event: the run's stream is complete. */
    return c->out->terminal ? 0 : n;
}

/* Records the status as soon as the headers are in, so the body callback knows it. */
static size_t sse_on_header(char *ptr, size_t size, size_t nmemb, void *arg)
{
    sse_ctx *c = arg;
    size_t n = size * nmemb;
    if (n >= 5 && strncmp(ptr, "HTTP/", 5) == 0) {
        const char *sp = memchr(ptr, ' ', n);
        c->out->status = sp != NULL ? strtol(sp + 1, NULL, 10) : 0;
    } else if (n > 13 && strncasecmp(ptr, "content-type:", 13) == 0) {
        const char *v = ptr + 13;
        size_t vl = n - 13;
        while (vl > 0 && (*v == ' ' || *v == '\t')) {
            v++;
            vl--;
        }
        while (vl > 0 && (v[vl - 1] == '\r' || v[vl - 1] == '\n'))
            vl--;
        free(c->out->content_type);
        c->out->content_type = strndup(v, vl);
    }
    return n;
}

kx_err kx_th_sse_read(const kx_th_stack *s, const char *path, const char *token,
                      int64_t timeout_ms, kx_th_sse *out)
{
    memset(out, 0, sizeof *out);
    char url[1024];
    if (snprintf(url, sizeof url, "%s%s", s->base_url, path) >= (int)sizeof url)
        return KX_ERR_INVALID;
    CURL *h = curl_easy_init();
    if (h == NULL)
        return KX_ERR_NOMEM;
    struct curl_slist *headers = curl_slist_append(NULL, "Accept: text/event-stream");
    char *auth = NULL;
    if (token != NULL) {
        if (asprintf(&auth, "Authorization: Bearer %s", token) < 0) {
            curl_slist_free_all(headers);
            curl_easy_cleanup(h);
            return KX_ERR_NOMEM;
        }
        headers = curl_slist_append(headers, auth);
    }
    sse_ctx ctx = {.out = out};
    kx_sse_init(&ctx.parser, sse_on_event, &ctx);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, sse_on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, &ctx);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, sse_on_bytes);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &ctx);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
    CURLcode rc = curl_easy_perform(h);
    kx_err err = KX_OK;
    if (rc == CURLE_OPERATION_TIMEDOUT) {
        out->timed_out = true;
    } else if (rc == CURLE_WRITE_ERROR && out->terminal) {
        /* We stopped reading ourselves, after the terminal event. */
    } else if (rc != CURLE_OK) {
        st_log("GET %s: %s (after %zu events)", url, curl_easy_strerror(rc), out->n);
        err = ctx.oom ? KX_ERR_NOMEM : rc == CURLE_WRITE_ERROR ? KX_ERR_PROTOCOL : KX_ERR_IO;
    }
    size_t blen = 0;
    if (ctx.error_body.s != NULL || ctx.error_body.oom)
        out->body = buf_done(&ctx.error_body, &blen);
    kx_sse_free(&ctx.parser);
    curl_slist_free_all(headers);
    free(auth);
    curl_easy_cleanup(h);
    return err;
}

void kx_th_sse_free(kx_th_sse *e)
{
    if (e == NULL)
        return;
    for (size_t i = 0; i < e->n; i++)
        free(e->data[i]);
    free(e->data);
    free(e->at_ms);
    free(e->content_type);
    free(e->body);
    memset(e, 0, sizeof *e);
}

static void *sse_thread(void *arg)
{
    kx_th_sse_reader *r = arg;
    r->err = kx_th_sse_read(r->stack, r->path, r->token, r->timeout_ms, &r->result);
    return NULL;
}

kx_th_sse_reader *kx_th_sse_start(const kx_th_stack *s, const char *path, const char *token,
                                  int64_t timeout_ms)
{
    kx_th_sse_reader *r = calloc(1, sizeof *r);
    if (r == NULL)
        return NULL;
    r->stack = s;
    r->timeout_ms = timeout_ms;
    r->path = strdup(path);
    r->token = token != NULL ? strdup(token) : NULL;
    if (r->path == NULL || (token != NULL && r->token == NULL) ||
        pthread_create(&r->thread, NULL, sse_thread, r) != 0) {
        st_log("could not start an SSE reader for %s", path);
        free(r->path);
        free(r->token);
        free(r);
        return NULL;
    }
    return r;
}

kx_err kx_th_sse_join(kx_th_sse_reader *r, kx_th_sse *out)
{
    pthread_join(r->thread, NULL);
    kx_err err = r->err;
    *out = r->result;
    free(r->path);
    free(r->token);
    free(r);
    return err;
}

/* ---- SQL -------------------------------------------------------------------------------- */

PGresult *kx_th_sql(const kx_th_stack *s, const char *sql, int nparams, const char *const *params)
{
    PGconn *c = PQconnectdb(s->pg.url);
    if (PQstatus(c) != CONNECTION_OK) {
        st_log("connect to %s: %s", s->pg.url, PQerrorMessage(c));
        PQfinish(c);
        return NULL;
    }
    PGresult *r = PQexecParams(c, sql, nparams, NULL, params, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
        st_log("SQL failed: %s -- %s", PQerrorMessage(c), sql);
        PQclear(r);
        r = NULL;
    }
    PQfinish(c);
    return r;
}

char *kx_th_sql_value(const kx_th_stack *s, const char *sql, int nparams,
                      const char *const *params)
{
    PGresult *r = kx_th_sql(s, sql, nparams, params);
    char *v = NULL;
    if (r != NULL && PQntuples(r) > 0 && PQnfields(r) > 0 && !PQgetisnull(r, 0, 0))
        v = strdup(PQgetvalue(r, 0, 0));
    PQclear(r);
    return v;
}
