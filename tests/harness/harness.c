/* tests/harness/harness.c — starts the real dependencies tests need (nats-server, PostgreSQL,
 * any program) in a temp dir on free ports, and stops exactly what it started, by PID.
 *
 * Why one file: every integration and unit test that needs a server uses the same few
 * primitives (temp dir, free port, spawn into a log file, kill a process group, wait for a
 * port or an HTTP 200), and the two servers are built from them.
 *
 * Conventions: errors are printed to stderr with "harness:" and what failed (tests show their
 * stderr on failure); KX_TEST_KEEP=1 keeps every temp dir so logs can be read after a run.
 * PostgreSQL refuses to run as root, so when the test runs as root, initdb, pg_ctl and the
 * server run as the "postgres" system user (fork, setgid, setuid, exec).
 *
 * Every process started here but for the short PostgreSQL commands gets a parent-death signal:
 * when the test process dies, even by SIGKILL (ctest's timeout), the kernel sends the
 * postmaster SIGQUIT (it shuts down with its backends; it is the test's own child, not
 * daemonized by pg_ctl) and every other server SIGTERM. */
#include "harness.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <libpq-fe.h>
#include <limits.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kx/http.h"
#include "kx/time.h"
#include "procstat.h"

extern char **environ;

/* ---- small helpers ---------------------------------------------------------------------- */

static void th_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void th_log(const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    fprintf(stderr, "harness: %s\n", buf);
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int64_t ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static bool keep_dirs(void)
{
    const char *v = getenv("KX_TEST_KEEP");
    return v != NULL && strcmp(v, "1") == 0;
}

/* The uid/gid a PostgreSQL command must run as: the postgres user when we are root, else
 * ourselves (uid -1 = "do not switch"). */
static kx_err pg_identity(uid_t *uid, gid_t *gid)
{
    *uid = (uid_t)-1;
    *gid = (gid_t)-1;
    if (geteuid() != 0)
        return KX_OK;
    struct passwd *pw = getpwnam("postgres");
    if (pw == NULL) {
        th_log("running as root but there is no 'postgres' user to run PostgreSQL as");
        return KX_ERR_UNAVAILABLE;
    }
    *uid = pw->pw_uid;
    *gid = pw->pw_gid;
    return KX_OK;
}

/* ---- temp dirs and ports ---------------------------------------------------------------- */

char *kx_th_tmpdir(const char *prefix)
{
    char *path = NULL;
    if (asprintf(&path, "/tmp/%s-XXXXXX", prefix != NULL ? prefix : "kx") < 0)
        return NULL;
    if (mkdtemp(path) == NULL) {
        th_log("mkdtemp(%s): %s", path, strerror(errno));
        free(path);
        return NULL;
    }
    if (chmod(path, 0755) != 0) {
        th_log("chmod(%s, 0755): %s", path, strerror(errno));
        rmdir(path);
        free(path);
        return NULL;
    }
    return path;
}

static int rmrf_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    if (remove(path) != 0 && errno != ENOENT)
        th_log("remove(%s): %s", path, strerror(errno));
    return 0;
}

void kx_th_rmrf(const char *dir)
{
    if (dir == NULL || dir[0] == '\0')
        return;
    if (keep_dirs()) {
        th_log("KX_TEST_KEEP=1: keeping %s", dir);
        return;
    }
    nftw(dir, rmrf_one, 16, FTW_DEPTH | FTW_PHYS);
}

uint16_t kx_th_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        th_log("socket: %s", strerror(errno));
        return 0;
    }
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof sa;
    uint16_t port = 0;
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0)
        th_log("bind 127.0.0.1:0: %s", strerror(errno));
    else if (getsockname(fd, (struct sockaddr *)&sa, &len) != 0)
        th_log("getsockname: %s", strerror(errno));
    else
        port = ntohs(sa.sin_port);
    close(fd);
    return port;
}

bool kx_th_port_accepts(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return false;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bool ok = connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
    close(fd);
    return ok;
}

/* ---- spawning and killing ------------------------------------------------------------- */

/* environ plus extras ("K=V"; an extra replaces an inherited variable of the same name).
 * The array is malloc'd; its strings are borrowed. */
static char **merged_env(const char *const *extra)
{
    size_t n = 0, m = 0;
    while (environ[n] != NULL)
        n++;
    while (extra != NULL && extra[m] != NULL)
        m++;
    char **env = calloc(n + m + 1, sizeof *env);
    if (env == NULL)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const char *eq = strchr(environ[i], '=');
        size_t keylen = eq != NULL ? (size_t)(eq - environ[i]) : strlen(environ[i]);
        bool overridden = false;
        for (size_t j = 0; j < m; j++) {
            if (strncmp(extra[j], environ[i], keylen) == 0 && extra[j][keylen] == '=')
                overridden = true;
        }
        if (!overridden)
            env[k++] = environ[i];
    }
    for (size_t j = 0; j < m; j++)
        env[k++] = (char *)extra[j];
    env[k] = NULL;
    return env;
}

/* How a spawned process is started: optionally as another identity, in another directory,
 * and bound to its parent's life. */
typedef struct spawn_opts {
    uid_t uid; /* (uid_t)-1: ours */
    gid_t gid; /* (gid_t)-1: ours */
    const char *cwd;
    int pdeathsig; /* sent to the child when the thread that spawned it exits (0: none) */
} spawn_opts;

/* kx_th_spawn's: our identity, our directory, SIGTERM when the spawning thread exits (so a
 * service, nats-server or fake does not outlive a test that ctest killed at its timeout). */
static const spawn_opts SPAWN_PLAIN = {(uid_t)-1, (gid_t)-1, NULL, SIGTERM};

/* What a forked child does before exec: its own session, output to log_path, optionally
 * another identity and directory and a parent-death signal. Only async-signal-safe calls. On
 * failure, writes errno to errfd and exits 127. */
static void child_setup_and_exec(const char *const *argv, char **envp, const char *log_path,
                                 const spawn_opts *o, pid_t parent, int errfd)
{
    uid_t uid = o->uid;
    gid_t gid = o->gid;
    const char *cwd = o->cwd;
    int e = 0;
    if (setsid() < 0)
        goto fail;
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull < 0 || dup2(devnull, 0) < 0)
        goto fail;
    /* Switch identity before opening the log, so the log belongs to whoever writes it. */
    if (gid != (gid_t)-1 && (setgroups(0, NULL) != 0 || setgid(gid) != 0))
        goto fail;
    if (uid != (uid_t)-1 && setuid(uid) != 0)
        goto fail;
    /* After setuid: a change of identity clears the parent-death signal. If the parent is
     * already gone (died before the prctl), nobody would send it: do not start at all. */
    if (o->pdeathsig != 0 &&
        (prctl(PR_SET_PDEATHSIG, (unsigned long)o->pdeathsig) != 0 || getppid() != parent))
        goto fail;
    if (log_path != NULL) {
        int fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
            goto fail;
    }
    if (cwd != NULL && chdir(cwd) != 0)
        goto fail;
    /* The test's own fds (listening sockets, pipes) must not leak into the server. */
    close_range(3, ~0U, CLOSE_RANGE_CLOEXEC);
    execvpe(argv[0], (char *const *)argv, envp);
fail:
    e = errno;
    if (write(errfd, &e, sizeof e) < 0) {
        /* nothing left to report to */
    }
    _exit(127);
}

/* fork + exec with an error pipe so that a failed exec is an error here, naming the program. */
static kx_err spawn_as(const char *const *argv, const char *const *env_extra, const char *log_path,
                       const spawn_opts *o, pid_t *pid)
{
    pid_t parent = getpid();
    char **envp = merged_env(env_extra);
    if (envp == NULL)
        return KX_ERR_NOMEM;
    int ep[2];
    if (pipe2(ep, O_CLOEXEC) != 0) {
        th_log("pipe2: %s", strerror(errno));
        free(envp);
        return KX_ERR_IO;
    }
    pid_t child = fork();
    if (child < 0) {
        th_log("fork for %s: %s", argv[0], strerror(errno));
        close(ep[0]);
        close(ep[1]);
        free(envp);
        return KX_ERR_IO;
    }
    if (child == 0) {
        close(ep[0]);
        child_setup_and_exec(argv, envp, log_path, o, parent, ep[1]);
    }
    close(ep[1]);
    free(envp);
    int child_errno = 0;
    ssize_t r;
    do {
        r = read(ep[0], &child_errno, sizeof child_errno);
    } while (r < 0 && errno == EINTR);
    close(ep[0]);
    if (r > 0) {
        th_log("could not start %s: %s", argv[0], strerror(child_errno));
        waitpid(child, NULL, 0);
        return KX_ERR_IO;
    }
    *pid = child;
    return KX_OK;
}

kx_err kx_th_spawn(const char *const *argv, const char *const *env_extra, const char *log_path,
                   pid_t *pid)
{
    if (argv == NULL || argv[0] == NULL || pid == NULL)
        return KX_ERR_INVALID;
    return spawn_as(argv, env_extra, log_path, &SPAWN_PLAIN, pid);
}

/* Exit status in shell convention: the exit code, or 128 + signal number. */
static int shell_status(int wstatus)
{
    if (WIFEXITED(wstatus))
        return WEXITSTATUS(wstatus);
    if (WIFSIGNALED(wstatus))
        return 128 + WTERMSIG(wstatus);
    return -1;
}

/* Returns the exit status in shell convention (exit code, or 128 + signal), -1 on error.
 * The leader is waited for without reaping first (WNOWAIT) so that its pid — the group id —
 * cannot be reused while stragglers of the group get their SIGKILL. */
int kx_th_kill(pid_t pid)
{
    if (pid <= 0)
        return -1;
    if (kill(-pid, SIGTERM) != 0 && errno != ESRCH)
        th_log("kill(-%d, SIGTERM): %s", (int)pid, strerror(errno));
    int64_t give_up = mono_ms() + 5000;
    bool exited = false;
    while (!exited) {
        siginfo_t si = {0};
        if (waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) != 0) {
            th_log("waitid(%d): %s", (int)pid, strerror(errno));
            return -1;
        }
        if (si.si_pid == pid) {
            exited = true;
            break;
        }
        if (mono_ms() >= give_up)
            break;
        sleep_ms(10);
    }
    if (!exited)
        th_log("pid %d still running 5 s after SIGTERM: SIGKILL", (int)pid);
    /* Whatever is left of the group (the leader if it ignored SIGTERM, or its children). */
    kill(-pid, SIGKILL);
    int wstatus = 0;
    pid_t r;
    do {
        r = waitpid(pid, &wstatus, 0);
    } while (r < 0 && errno == EINTR);
    if (r != pid) {
        th_log("waitpid(%d): %s", (int)pid, strerror(errno));
        return -1;
    }
    /* SIGKILL is delivered asynchronously: let the rest of the group actually go (and the
     * orphans' zombies be reaped by init) so that callers find ports and files released. */
    give_up = mono_ms() + 2000;
    while (kill(-pid, 0) == 0 && mono_ms() < give_up)
        sleep_ms(5);
    return shell_status(wstatus);
}

/* ---- waiting for servers -------------------------------------------------------------- */

static size_t discard_body(char *ptr, size_t size, size_t nmemb, void *arg)
{
    return size * nmemb;
}

/* A visit of kx_th_procs_using: pid has a descriptor open on a path under dir (and is not
 * this process); each one found is printed. */
static bool uses_dir(pid_t pid, void *arg)
{
    const char *dir = arg;
    size_t dlen = strlen(dir);
    if (pid == getpid())
        return false;
    char fddir[64];
    snprintf(fddir, sizeof fddir, "/proc/%d/fd", (int)pid);
    DIR *fds = opendir(fddir);
    if (fds == NULL)
        return false;
    struct dirent *fe;
    bool uses = false;
    while (!uses && (fe = readdir(fds)) != NULL) {
        char link[600], target[PATH_MAX];
        snprintf(link, sizeof link, "%s/%s", fddir, fe->d_name);
        ssize_t n = readlink(link, target, sizeof target - 1);
        if (n <= 0)
            continue;
        target[n] = '\0';
        uses = strncmp(target, dir, dlen) == 0 && (target[dlen] == '/' || target[dlen] == '\0');
    }
    closedir(fds);
    if (!uses)
        return false;
    char cmd[256];
    kx_th_cmdline_of(pid, cmd, sizeof cmd, true);
    th_log("pid %d still uses %s: %s", (int)pid, dir, cmd);
    return true;
}

int kx_th_procs_using(const char *dir)
{
    int found = kx_th_each_proc(uses_dir, (void *)dir);
    return found < 0 ? 0 : found;
}

bool kx_th_wait_port(uint16_t port, int64_t timeout_ms)
{
    int64_t end = kx_mono_ms() + timeout_ms;
    for (;;) {
        if (kx_th_port_accepts(port))
            return true;
        if (kx_mono_ms() >= end)
            return false;
        sleep_ms(50);
    }
}

kx_err kx_th_wait_http(const char *url, int64_t timeout_ms)
{
    CURL *c = curl_easy_init();
    if (c == NULL)
        return KX_ERR_NOMEM;
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard_body);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 1000L);
    int64_t give_up = mono_ms() + timeout_ms;
    long status = 0;
    CURLcode res = CURLE_OK;
    for (;;) {
        res = curl_easy_perform(c);
        if (res == CURLE_OK) {
            curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
            if (status == 200)
                break;
        }
        if (mono_ms() >= give_up)
            break;
        sleep_ms(50);
    }
    curl_easy_cleanup(c);
    if (status == 200)
        return KX_OK;
    th_log("GET %s: no 200 within %lld ms (last: %s, status %ld)", url, (long long)timeout_ms,
           curl_easy_strerror(res), status);
    return KX_ERR_TIMEOUT;
}

pid_t kx_th_node_fake(const char *dir, const char *script, const char *arg, const char *log_name,
                      uint16_t *port_out)
{
    uint16_t port = kx_th_free_port();
    char port_text[16], log[600], url[64];
    snprintf(port_text, sizeof port_text, "%u", port);
    snprintf(log, sizeof log, "%s/%s", dir, log_name);
    const char *argv[] = {"node", script, port_text, arg, NULL};
    pid_t pid = 0;
    if (kx_th_spawn(argv, NULL, log, &pid) != KX_OK)
        return 0;
    snprintf(url, sizeof url, "http://127.0.0.1:%u/_log", port);
    if (kx_th_wait_http(url, 20000) != KX_OK) {
        fprintf(stderr, "harness: %s did not answer on %s (log %s)\n", script, url, log);
        kx_th_kill(pid);
        return 0;
    }
    *port_out = port;
    return pid;
}

pid_t kx_th_service_start(const char *tmpdir, const char *nats_url, const char *name,
                          const char *const *env_extra, uint16_t *port_out)
{
    uint16_t port = kx_th_free_port();
    char port_env[64], nats_env[128], log_path[600], url[128], bin[512];
    snprintf(port_env, sizeof port_env, "KX_HEALTH_PORT=%u", port);
    snprintf(nats_env, sizeof nats_env, "KX_NATS_URL=%s", nats_url);
    snprintf(log_path, sizeof log_path, "%s/%s.log", tmpdir, name);
    snprintf(bin, sizeof bin, "%s/services/%s/%s", KX_BUILD_DIR, name, name);
    const char *env[24] = {port_env, nats_env, "KX_LOG_LEVEL=debug"};
    size_t n = 3;
    for (size_t i = 0; env_extra != NULL && env_extra[i] != NULL && n < 23; i++)
        env[n++] = env_extra[i];
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
    if (port_out != NULL)
        *port_out = port;
    return pid;
}

/* Waits until 127.0.0.1:port accepts connections; fails early if pid exits. */
static kx_err wait_port(pid_t pid, uint16_t port, int64_t timeout_ms, const char *what,
                        const char *log_path)
{
    int64_t give_up = mono_ms() + timeout_ms;
    for (;;) {
        if (kx_th_port_accepts(port))
            return KX_OK;
        siginfo_t si = {0};
        if (waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0 && si.si_pid == pid) {
            th_log("%s exited before listening on port %u (see %s)", what, port, log_path);
            return KX_ERR_UNAVAILABLE;
        }
        if (mono_ms() >= give_up) {
            th_log("%s not listening on port %u after %lld ms (see %s)", what, port,
                   (long long)timeout_ms, log_path);
            return KX_ERR_TIMEOUT;
        }
        sleep_ms(10);
    }
}

/* ---- deploy files of name/value lines ------------------------------------------------ */

/* Reads the lines of path (# starts a comment; blank lines skipped) with the sscanf format fmt,
 * which takes a name (up to 63 bytes) and a value (up to 95), into out[i] (each len bytes) as
 * "name=value". form names a line's form for the error. Returns how many, or -1 (logged) when
 * the file cannot be read, has a line of another form or more than max. Used for
 * deploy/nats/nats.env and deploy/postgres/kortix.conf. */
static int read_deploy_pairs(const char *path, const char *fmt, const char *form, char *out,
                             size_t len, int max)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        th_log("%s: %s", path, strerror(errno));
        return -1;
    }
    char line[256];
    int n = 0;
    while (fgets(line, sizeof line, f) != NULL) {
        line[strcspn(line, "#\n")] = '\0';
        char name[64], value[96];
        if (sscanf(line, fmt, name, value) != 2) { /* NOLINT(cert-err34-c) */
            if (strspn(line, " \t") != strlen(line)) {
                th_log("%s: not a `%s` line: %s", path, form, line);
                n = -1;
                break;
            }
            continue;
        }
        if (n == max) {
            th_log("%s: more than %d lines", path, max);
            n = -1;
            break;
        }
        snprintf(out + (size_t)n++ * len, len, "%s=%s", name, value);
    }
    fclose(f);
    return n;
}

/* ---- nats-server ---------------------------------------------------------------------- */

#define NATS_DEPLOY_ENV KX_SOURCE_DIR "/deploy/nats/nats.env"

int kx_th_nats_deploy_env(char out[][KX_TH_NATS_ENV_LEN], int max)
{
    return read_deploy_pairs(NATS_DEPLOY_ENV, " %63[A-Z0-9_]=%95s", "NAME=value", out[0],
                             KX_TH_NATS_ENV_LEN, max);
}

kx_err kx_th_nats_start(const char *tmpdir, kx_th_nats *out)
{
    memset(out, 0, sizeof *out);
    if (snprintf(out->dir, sizeof out->dir, "%s/nats", tmpdir) >= (int)sizeof out->dir) {
        th_log("tmpdir path too long: %s", tmpdir);
        return KX_ERR_INVALID;
    }
    if (mkdir(out->dir, 0755) != 0 && errno != EEXIST) {
        th_log("mkdir(%s): %s", out->dir, strerror(errno));
        return KX_ERR_IO;
    }
    char log_path[300];
    snprintf(log_path, sizeof log_path, "%s/nats.log", out->dir);
    /* the environment nats-server is deployed with (deploy/nats/nats.env) */
    char env_vars[KX_TH_NATS_ENV_MAX][KX_TH_NATS_ENV_LEN];
    int nenv = kx_th_nats_deploy_env(env_vars, KX_TH_NATS_ENV_MAX);
    if (nenv < 0)
        return KX_ERR_INVALID;
    const char *env[KX_TH_NATS_ENV_MAX + 1];
    for (int i = 0; i < nenv; i++)
        env[i] = env_vars[i];
    env[nenv] = NULL;
    /* A free port can be taken by someone else before nats-server binds it: try a few. */
    kx_err err = KX_ERR_UNAVAILABLE;
    for (int attempt = 0; attempt < 3; attempt++) {
        uint16_t port = kx_th_free_port();
        if (port == 0)
            return KX_ERR_IO;
        char port_s[8];
        snprintf(port_s, sizeof port_s, "%u", port);
        const char *argv[] = {"nats-server", "-js", "-a",     "127.0.0.1", "-p",
                              port_s,        "-sd", out->dir, NULL};
        int64_t t0 = mono_ms();
        pid_t pid;
        err = kx_th_spawn(argv, env, log_path, &pid);
        if (err != KX_OK)
            return err;
        err = wait_port(pid, port, 10000, "nats-server", log_path);
        if (err == KX_OK) {
            out->pid = pid;
            out->port = port;
            snprintf(out->url, sizeof out->url, "nats://127.0.0.1:%u", port);
            th_log("nats-server pid %d on %s ready in %lld ms", (int)pid, out->url,
                   (long long)(mono_ms() - t0));
            return KX_OK;
        }
        kx_th_kill(pid);
    }
    return err;
}

void kx_th_nats_stop(kx_th_nats *n)
{
    if (n == NULL || n->pid <= 0)
        return;
    kx_th_kill(n->pid);
    n->pid = 0;
    kx_th_rmrf(n->dir);
}

kx_err kx_th_old_submit_stream(kx_bus *bus)
{
    jsStreamConfig cfg;
    jsStreamConfig_Init(&cfg);
    const char *subjects[1] = {KX_SUBJ_RUN_SUBMIT};
    cfg.Name = KX_STREAM_SUBMIT;
    cfg.Subjects = subjects;
    cfg.SubjectsLen = 1;
    cfg.Retention = js_WorkQueuePolicy;
    cfg.Storage = js_FileStorage;
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    natsStatus st = js_AddStream(&si, kx_bus_js(bus), &cfg, NULL, &jerr);
    jsStreamInfo_Destroy(si);
    if (st == NATS_OK || jerr == JSStreamNameExistErr)
        return KX_OK;
    th_log("cannot create %s: %s (JetStream error %d)", KX_STREAM_SUBMIT, natsStatus_GetText(st),
           (int)jerr);
    return KX_ERR_UNAVAILABLE;
}

/* ---- PostgreSQL ----------------------------------------------------------------------- */

/* The directory of the PostgreSQL binaries, from `pg_config --bindir` (they are not on PATH
 * on every machine). Written into buf; KX_OK or KX_ERR_UNAVAILABLE. */
static kx_err pg_bindir(char *buf, size_t len)
{
    FILE *f = popen("pg_config --bindir 2>/dev/null", "r");
    if (f == NULL) {
        th_log("popen(pg_config --bindir): %s", strerror(errno));
        return KX_ERR_UNAVAILABLE;
    }
    bool got = fgets(buf, (int)len, f) != NULL;
    int st = pclose(f);
    if (!got || st != 0) {
        th_log("pg_config --bindir failed (is libpq-dev/postgresql installed?)");
        return KX_ERR_UNAVAILABLE;
    }
    buf[strcspn(buf, "\n")] = '\0';
    return KX_OK;
}

#define PG_MAX_ARGS 64

/* Starts <bindir>/<prog> args... as the PostgreSQL user in p->dir, output appended to
 * <dir>/pg.log, with parent-death signal pdeathsig (0: none). Does not wait. */
static kx_err pg_spawn(const kx_th_pg *p, const char *prog, const char *const *args, int pdeathsig,
                       pid_t *pid)
{
    char bindir[256], exe[512], log_path[300];
    kx_err err = pg_bindir(bindir, sizeof bindir);
    if (err != KX_OK)
        return err;
    snprintf(exe, sizeof exe, "%s/%s", bindir, prog);
    snprintf(log_path, sizeof log_path, "%s/pg.log", p->dir);
    const char *argv[PG_MAX_ARGS + 1];
    size_t n = 0;
    argv[n++] = exe;
    for (size_t i = 0; args[i] != NULL; i++) {
        if (n == PG_MAX_ARGS) {
            th_log("%s: more than %d arguments", prog, PG_MAX_ARGS);
            return KX_ERR_INVALID;
        }
        argv[n++] = args[i];
    }
    argv[n] = NULL;
    spawn_opts o = {.cwd = p->dir, .pdeathsig = pdeathsig};
    err = pg_identity(&o.uid, &o.gid);
    if (err != KX_OK)
        return err;
    return spawn_as(argv, NULL, log_path, &o, pid);
}

/* Runs <bindir>/<prog> args... as pg_spawn does, and waits. KX_OK on exit 0. */
static kx_err pg_run(const kx_th_pg *p, const char *prog, const char *const *args)
{
    pid_t pid;
    kx_err err = pg_spawn(p, prog, args, 0, &pid);
    if (err != KX_OK)
        return err;
    int wstatus = 0;
    pid_t r;
    do {
        r = waitpid(pid, &wstatus, 0);
    } while (r < 0 && errno == EINTR);
    if (r != pid || shell_status(wstatus) != 0) {
        th_log("%s failed (status %d), see %s/pg.log", prog, shell_status(wstatus), p->dir);
        return KX_ERR_UNAVAILABLE;
    }
    return KX_OK;
}

static void pg_data_dir(const kx_th_pg *p, char *buf, size_t len)
{
    snprintf(buf, len, "%s/pg", p->dir);
}

/* True when <data>/postmaster.pid names pid and says "ready" (what pg_ctl -w waits for: the
 * first line is the postmaster's pid, the eighth its status). */
static bool pg_ready(const kx_th_pg *p, pid_t pid)
{
    char path[320], line[64];
    snprintf(path, sizeof path, "%s/pg/postmaster.pid", p->dir);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return false;
    bool ready = false;
    for (int i = 1; i <= 8 && fgets(line, sizeof line, f) != NULL; i++) {
        long v = 0;
        if (i == 1 && (!kx_th_parse_long(line, &v) || v != (long)pid))
            break;
        if (i == 8)
            ready = strncmp(line, "ready", 5) == 0;
    }
    fclose(f);
    return ready;
}

/* Waits up to timeout_ms for our child pid to exit (reaped); true if it did (or is not ours
 * to wait for any more). */
static bool reap_within(pid_t pid, int64_t timeout_ms)
{
    int64_t give_up = mono_ms() + timeout_ms;
    for (;;) {
        pid_t r = waitpid(pid, NULL, WNOHANG);
        if (r == pid || (r < 0 && errno == ECHILD))
            return true;
        if (mono_ms() >= give_up)
            return false;
        sleep_ms(10);
    }
}

/* Stops our postmaster p->pid (if any) by signal and reaps it: sig, then SIGKILL after 30 s. */
static void pg_signal_and_reap(kx_th_pg *p, int sig)
{
    if (p->pid <= 0)
        return;
    kill(p->pid, sig);
    if (!reap_within(p->pid, 30000)) {
        th_log("postmaster %d still running 30 s after signal %d: SIGKILL", (int)p->pid, sig);
        kill(p->pid, SIGKILL);
        reap_within(p->pid, 5000);
    }
    p->pid = 0;
}

#define PG_DEPLOY_CONF KX_SOURCE_DIR "/deploy/postgres/kortix.conf"

int kx_th_pg_deploy_settings(char out[][KX_TH_PG_SETTING_LEN], int max)
{
    return read_deploy_pairs(PG_DEPLOY_CONF, " %63[a-z_] = %95s", "name = value", out[0],
                             KX_TH_PG_SETTING_LEN, max);
}

/* Starts the server (`postgres`, not pg_ctl: it stays our child and gets SIGQUIT when the
 * thread that started it exits) with our options, and waits up to 30 s until it is ready. */
static kx_err pg_server_start(kx_th_pg *p)
{
    char data[300], port[8], opts[600], deploy[KX_TH_PG_SETTINGS_MAX][KX_TH_PG_SETTING_LEN];
    pg_data_dir(p, data, sizeof data);
    snprintf(port, sizeof port, "%u", p->port);
    const char *args[PG_MAX_ARGS + 1] = {"-D", data,
                                         "-p", port,
                                         "-k", p->dir,
                                         "-c", "listen_addresses=127.0.0.1",
                                         "-c", "fsync=off",
                                         "-c", "synchronous_commit=off",
                                         "-c", "full_page_writes=off"};
    size_t n = p->durable ? 8 : 14; /* durable: the three "off" settings left out */
    if (p->durable) {
        int nd = kx_th_pg_deploy_settings(deploy, KX_TH_PG_SETTINGS_MAX);
        if (nd < 0)
            return KX_ERR_INVALID;
        for (int i = 0; i < nd; i++) {
            args[n++] = "-c";
            args[n++] = deploy[i];
        }
    }
    /* KX_TH_PG_OPTS: extra server options for a profiling session, split at white space, e.g.
     * "-c shared_preload_libraries=pg_stat_statements" (docs/performance.md) */
    const char *extra = getenv("KX_TH_PG_OPTS");
    snprintf(opts, sizeof opts, "%s", extra != NULL ? extra : "");
    char *save = NULL;
    for (char *w = strtok_r(opts, " \t\n", &save); w != NULL; w = strtok_r(NULL, " \t\n", &save)) {
        if (n == PG_MAX_ARGS - 1) {
            th_log("KX_TH_PG_OPTS: too many options");
            return KX_ERR_INVALID;
        }
        args[n++] = w;
    }
    args[n] = NULL;
    pid_t pid;
    kx_err err = pg_spawn(p, "postgres", args, SIGQUIT, &pid);
    if (err != KX_OK)
        return err;
    p->pid = pid;
    int64_t give_up = mono_ms() + 30000;
    while (!pg_ready(p, pid)) {
        siginfo_t si = {0};
        if (waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG) == 0 && si.si_pid == pid) {
            th_log("postgres exited (status %d) before it was ready on port %u, see %s/pg.log",
                   si.si_status, p->port, p->dir);
            p->pid = 0;
            return KX_ERR_UNAVAILABLE;
        }
        if (mono_ms() >= give_up) {
            th_log("postgres not ready on port %u after 30 s, see %s/pg.log", p->port, p->dir);
            pg_signal_and_reap(p, SIGQUIT);
            return KX_ERR_TIMEOUT;
        }
        sleep_ms(10);
    }
    return KX_OK;
}

/* pg_ctl stop -m fast (whoever started the server on this data dir), then our postmaster, if
 * it was one, reaped. */
static kx_err pg_ctl_stop(kx_th_pg *p)
{
    char data[300];
    pg_data_dir(p, data, sizeof data);
    const char *args[] = {"-D", data, "-m", "fast", "-w", "-t", "30", "stop", NULL};
    kx_err err = pg_run(p, "pg_ctl", args);
    if (err == KX_OK)
        pg_signal_and_reap(p, SIGINT); /* it has exited: SIGINT reaches a zombie, if anything */
    return err;
}

static kx_err pg_create_db(const kx_th_pg *p)
{
    char conninfo[300];
    snprintf(conninfo, sizeof conninfo,
             "host=127.0.0.1 port=%u user=postgres dbname=postgres connect_timeout=10", p->port);
    PGconn *c = PQconnectdb(conninfo);
    if (PQstatus(c) != CONNECTION_OK) {
        th_log("connect to new cluster on port %u: %s", p->port, PQerrorMessage(c));
        PQfinish(c);
        return KX_ERR_UNAVAILABLE;
    }
    PGresult *r = PQexec(c, "CREATE DATABASE kortix");
    kx_err err = KX_OK;
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        th_log("CREATE DATABASE kortix: %s", PQerrorMessage(c));
        err = KX_ERR_UNAVAILABLE;
    }
    PQclear(r);
    PQfinish(c);
    return err;
}

kx_err kx_th_pg_start(const char *tmpdir, kx_th_pg *out)
{
    memset(out, 0, sizeof *out);
    int64_t t0 = mono_ms();
    if (snprintf(out->dir, sizeof out->dir, "%s/postgres", tmpdir) >= (int)sizeof out->dir) {
        th_log("tmpdir path too long: %s", tmpdir);
        return KX_ERR_INVALID;
    }
    /* The socket dir path must fit in sun_path (108) with "/.s.PGSQL.NNNNN". */
    if (strlen(out->dir) > 80) {
        th_log("tmpdir path too long for a Unix socket: %s", out->dir);
        return KX_ERR_INVALID;
    }
    if (mkdir(out->dir, 0755) != 0 && errno != EEXIST) {
        th_log("mkdir(%s): %s", out->dir, strerror(errno));
        return KX_ERR_IO;
    }
    uid_t uid;
    gid_t gid;
    kx_err err = pg_identity(&uid, &gid);
    if (err != KX_OK)
        return err;
    if (uid != (uid_t)-1 && chown(out->dir, uid, gid) != 0) {
        th_log("chown(%s, postgres): %s", out->dir, strerror(errno));
        return KX_ERR_IO;
    }

    char data[300];
    pg_data_dir(out, data, sizeof data);
    const char *initdb_args[] = {"-D", data,   "-U",          "postgres",  "-A", "trust",
                                 "-E", "UTF8", "--no-locale", "--no-sync", NULL};
    err = pg_run(out, "initdb", initdb_args);
    if (err != KX_OK)
        return err;
    int64_t t_initdb = mono_ms();

    /* As with nats: the free port may be taken before the postmaster binds it. */
    for (int attempt = 0; attempt < 3; attempt++) {
        out->port = kx_th_free_port();
        if (out->port == 0)
            return KX_ERR_IO;
        err = pg_server_start(out);
        if (err == KX_OK)
            break;
    }
    if (err != KX_OK)
        return err;
    int64_t t_start = mono_ms();

    err = pg_create_db(out);
    if (err != KX_OK) {
        pg_ctl_stop(out);
        return err;
    }
    snprintf(out->url, sizeof out->url, "postgresql://postgres@127.0.0.1:%u/kortix", out->port);
    int64_t t_end = mono_ms();
    th_log("postgres on %s ready in %lld ms (initdb %lld, start %lld, createdb %lld)", out->url,
           (long long)(t_end - t0), (long long)(t_initdb - t0), (long long)(t_start - t_initdb),
           (long long)(t_end - t_start));
    return KX_OK;
}

kx_err kx_th_pg_down(kx_th_pg *p)
{
    return pg_ctl_stop(p);
}

kx_err kx_th_pg_up(kx_th_pg *p)
{
    return pg_server_start(p);
}

kx_err kx_th_pg_restart(kx_th_pg *p)
{
    kx_err err = pg_ctl_stop(p);
    if (err != KX_OK)
        return err;
    return pg_server_start(p);
}

void kx_th_pg_stop(kx_th_pg *p)
{
    if (p == NULL || p->port == 0)
        return;
    if (pg_ctl_stop(p) == KX_OK) {
        /* stopped and reaped */
    } else if (p->pid > 0) {
        th_log("pg_ctl stop failed: SIGQUIT to postmaster %d", (int)p->pid);
        pg_signal_and_reap(p, SIGQUIT);
    } else {
        /* pg_ctl could not stop a postmaster not ours (started by other means on this data
         * dir, e.g. bench_run's durable restart): it is named in postmaster.pid. */
        char pidfile[300];
        snprintf(pidfile, sizeof pidfile, "%s/pg/postmaster.pid", p->dir);
        FILE *f = fopen(pidfile, "r");
        char line[32] = "";
        long pid = 0;
        if (f != NULL) {
            if (fgets(line, sizeof line, f) == NULL || !kx_th_parse_long(line, &pid))
                pid = 0;
            fclose(f);
        }
        if (pid > 0 && pid <= INT_MAX) {
            th_log("pg_ctl stop failed: SIGQUIT to postmaster %ld", pid);
            kill((pid_t)pid, SIGQUIT);
            sleep_ms(500);
        }
    }
    p->port = 0;
    kx_th_rmrf(p->dir);
}

/* Every thread of pid is stopped ('T', or 't' when traced); false when one runs or pid is
 * gone. */
static bool all_threads_stopped(pid_t pid)
{
    int stopped, all;
    return kx_th_thread_states(pid, &stopped, &all) && all > 0 && stopped == all;
}

bool kx_th_freeze(pid_t pid)
{
    if (pid <= 0 || kill(pid, SIGSTOP) != 0)
        return false;
    int64_t until = kx_mono_ms() + 5000;
    while (!all_threads_stopped(pid)) {
        if (kx_mono_ms() > until)
            return false;
        usleep(1000);
    }
    return true;
}

bool kx_th_parse_long(const char *text, long *out)
{
    if (text == NULL)
        return false;
    char *end = NULL;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (end == text || errno != 0)
        return false;
    while (isspace((unsigned char)*end))
        end++;
    if (*end != '\0')
        return false;
    *out = v;
    return true;
}

/* True when ancestor is pid's parent, grandparent, ... (at most 64 levels up). */
static bool descends_from(pid_t pid, pid_t ancestor)
{
    for (int i = 0; i < 64 && pid > 1; i++) {
        kx_th_pstat st;
        pid = kx_th_pstat_of(pid, &st) && st.ppid > 0 ? st.ppid : 0;
        if (pid == ancestor)
            return true;
    }
    return false;
}

int kx_th_procs_with_arg(const char *arg, uid_t *uid_out)
{
    return kx_th_procs_with_arg_under(arg, 0, uid_out);
}

/* A visit of kx_th_procs_with_arg_under. */
typedef struct with_arg {
    const char *arg;
    pid_t ancestor;
    uid_t *uid_out;
} with_arg;

static bool has_arg(pid_t pid, void *arg)
{
    const with_arg *w = arg;
    char buf[4096];
    size_t len = kx_th_cmdline_of(pid, buf, sizeof buf, false);
    size_t alen = strlen(w->arg);
    bool found = false;
    for (size_t off = 0; off < len && !found; off += strlen(buf + off) + 1)
        found = strlen(buf + off) == alen && memcmp(buf + off, w->arg, alen) == 0;
    if (!found || !kx_th_alive(pid) || (w->ancestor > 0 && !descends_from(pid, w->ancestor)))
        return false;
    if (w->uid_out != NULL) {
        char path[64];
        struct stat st;
        snprintf(path, sizeof path, "/proc/%d", (int)pid);
        if (stat(path, &st) == 0)
            *w->uid_out = st.st_uid;
    }
    return true;
}

int kx_th_procs_with_arg_under(const char *arg, pid_t ancestor, uid_t *uid_out)
{
    return kx_th_each_proc(has_arg, &(with_arg){arg, ancestor, uid_out});
}

long long kx_th_metric(uint16_t port, const char *name)
{
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%u/metrics", (unsigned)port);
    kx_http_resp resp = {0};
    if (kx_http_request("GET", url, NULL, NULL, 0, kx_deadline_in(5000), 1 << 20, &resp) !=
        KX_OK) {
        kx_http_resp_free(&resp);
        return -1;
    }
    long long v = -1;
    size_t nlen = strlen(name);
    for (const char *line = resp.body; line != NULL && *line;) {
        if (strncmp(line, name, nlen) == 0 && (line[nlen] == ' ' || line[nlen] == '{')) {
            const char *sp = strchr(line, ' ');
            if (sp != NULL)
                v = strtoll(sp + 1, NULL, 10);
            break;
        }
        const char *nl = strchr(line, '\n');
        line = nl ? nl + 1 : NULL;
    }
    kx_http_resp_free(&resp);
    return v;
}
