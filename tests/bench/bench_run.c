/* bench_run.c — end-to-end benchmark of agent runs on the whole stack: the six services,
 * nats-server, PostgreSQL and the demo model, all on 127.0.0.1, started by tests/harness/stack.h
 * with production timings (heartbeat 1 s, lease 10 s, reaper 1 s, sweep 5 s) and KX_LOG_LEVEL=warn.
 *
 * Every figure is printed next to baselines measured in the same run, against the same servers:
 *   baselines   NATS request/reply RTT (libkx, trivial responder), JetStream publish + ack,
 *               Postgres single-row INSERT commit and SELECT 1 round trip (libpq, prepared),
 *               GET of an unrouted path on the gateway (HTTP floor), one streamed demo-model completion
 *               (LLM floor), fork+exec+wait of /bin/sh -c true (process floor), mkdir of a
 *               workspace, and the tool path without the runner (kx.sandbox.exec to the broker,
 *               kx.tool.exec to the executor).
 *   (a) latency     sequential runs, POST /api/agent/initiate -> terminal event on the SSE
 *                   stream, for `say hi` and for one execute_command tool step: p50/p90/p99, the
 *                   ratios to the baselines, the critical path counted from the rows the runs
 *                   wrote with its "ideal" sum, the split by phase from the runs' own timestamps,
 *                   and the CPU each process spent per run.
 *   (b) throughput  N runs submitted at once by a few threads (`say hi`, and with
 *                   --tool-concurrent a view_tasks step: 2 model turns + 1 tool call);
 *                   runs/s and its ratio to the Postgres commit baseline, per-run latency, CPU of
 *                   every process, and where the agent-runner's and scheduler's loop threads
 *                   spent their time (sampled from /proc/<pid>/task/<tid>/syscall every 10 ms).
 *   (c) fan-out     R concurrent SSE readers replaying one finished run, against one reader.
 *   (d) held        H runs parked in their LLM call at once (demo `sleep`): what holding a run
 *                   costs the runner in memory, descriptors and CPU (toward many concurrent runs).
 *   (e) durable     the harness runs Postgres with fsync, synchronous_commit and
 *                   full_page_writes off; this restarts it with them on (the production
 *                   setting) and measures the commit baseline, (a) for `say hi` and (b) again,
 *                   for `say hi` and for the tool step (--durable-tool-concurrent, default
 *                   2000: the "500 complete runs/s with synchronous commit" goal).
 *   (f) passes      --passes N: (e)'s tool batch N times instead of once, on the same stack,
 *                   after one uncounted warm-up pass, each after a VACUUM (ANALYZE) and a
 *                   CHECKPOINT; a line per pass (runs/s, CPU ms/run of the stack and of each
 *                   process, commits/run, load, CPU used outside the stack), then median,
 *                   quartiles, min and max, and the goal's verdict (pass_stats.h).
 *                   --baseline-bin DIR adds N passes of another tree's build (DIR/services,
 *                   migrations of the source tree named in DIR/CMakeCache.txt) on a stack of its
 *                   own started next to this one and put through the same steps (baselines,
 *                   durable restart, warm-up pass), in the order baseline, candidate, candidate,
 *                   baseline, ...; the summary adds the per-pair ratios candidate/baseline with
 *                   a sign test.
 *                   Why one stack per side for all passes and not a fresh one per pass: a fresh
 *                   stack costs ~2.5 s to start plus the durable restart and a warm-up (N = 9
 *                   with a baseline would not fit in 3 minutes), and the state one pass leaves
 *                   (2 000 more runs in the tables, a checkpoint and autovacuum to come) is what
 *                   the VACUUM + CHECKPOINT before every pass levels; what growth remains is a
 *                   trend over the passes, shared by both sides through the alternation. Two
 *                   builds cannot share one stack: their migrations may differ.
 *
 *   build-bench/tests/bench/bench_run [--single N] [--tool N] [--concurrent N] [--threads N]
 *       [--readers N] [--held N] [--held-ms MS] [--durable-single N]
 *       [--durable-concurrent N] [--tool-concurrent N] [--durable-tool-concurrent N]
 *       [--no-durable] [--no-keep-alive] [--limited] [--results FILE]
 *       [--passes N [--baseline-bin DIR]] [--tool-prompt TEXT]
 *
 * The throughput batches' submitters keep their HTTP/1.1 connection to the gateway, as a
 * browser or a proxy in front of the API does; --no-keep-alive opens one connection per POST
 * (the worst case: a script with a new client per call; the default before 2026-12-02, so
 * older figures in docs/performance.md are of that). --keep-alive is accepted (the default).
 *
 * --limited gives every account of the benchmark an account_limits row (quotas far above what
 * it uses), so its runs take the counted path of migrations 016/017: the account's creation
 * lock, the day's run counter and the month's token counters.
 *
 * --tool-prompt TEXT replaces the tool batches' prompt (a demo-model script, see
 * tests/fakes/demo-model/demo_script.h); tests/bench/passes_check.sh gives one whose runs fail,
 * to check that the benchmark then fails and names the check.
 *
 * Bounded: fixed counts (each capped; --passes at most 50), every HTTP call and stream has a
 * deadline, the wait for a throughput batch gives up after 120 s, and the first pass that fails
 * ends the benchmark (exit 1, the failed check named). --results FILE appends "key value unit"
 * lines, which tests/bench/run.sh collects over three runs to print medians
 * (docs/performance.md). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <libpq-fe.h>

#include "kx/buf.h"
#include "kx/bus.h"
#include "kx/http.h"
#include "kx/log.h"
#include "kx/pb.h"
#include "kx/time.h"
#include "kx/uuid.h"
#include "api_client.h"
#include "bench_report.h"
#include "pass_stats.h"
#include "procstat.h"
#include "stack.h"

extern char **environ;

#define SAY_PROMPT "say hi"
#define TOOL_PROMPT "call execute_command {\"command\": \"true\", \"blocking\": true}"
/* The throughput batch's tool step: a tool of the executor that needs no sandbox (one Postgres
 * statement on the executor's database thread), so that the batch measures the run path and
 * not the creation of one sandbox per new project (the baselines' "a new project each time"). */
#define TASKS_PROMPT "call view_tasks {}"
#define FANOUT_WORDS 300 /* the fan-out run answers this many words (3 per chunk) */
#define STREAM_TIMEOUT_MS 30000
#define BATCH_TIMEOUT_MS 120000
/* Every 10 ms: ~700 samples in a 2 000-run batch, enough for shares to a few per cent. At 1 ms
 * the sampler cost the client ~0.1 ms of CPU per run in wake-ups; at 2 ms it was still 40 % of
 * the client's CPU (perf, 2026-12-02: its wake-ups and the kernel printing the syscall file). */
#define SAMPLE_PERIOD_US 10000

/* ==== options ============================================================================== */

typedef struct opts {
    int single, tool, concurrent, threads, readers, held, held_ms, durable_single,
        durable_concurrent, tool_concurrent, durable_tool_concurrent;
    int passes; /* --passes: the durable tool batch this many times per side (0: once) */
    bool durable, keep_alive, limited;
    const char *results;
    const char *tool_prompt;     /* --tool-prompt: the tool batches' prompt (TASKS_PROMPT) */
    const char *baseline_bin;    /* --baseline-bin: another tree's build dir, or NULL */
    char baseline_src[PATH_MAX]; /* that build's source tree (its CMakeCache.txt) */
} opts;

/* ==== state shared by the whole benchmark ================================================ */

/* The stacks: [0] runs this build's services, [1] (--baseline-bin) another build's. g_stack is
 * the one being measured: every part below talks to it. */
enum {
    SIDE_CAND,
    SIDE_BASE,
    SIDE_COUNT
};
static kx_th_stack g_stacks[SIDE_COUNT];
static kx_th_stack *g_stack = &g_stacks[SIDE_CAND];
/* ==== statistics ========================================================================== */

typedef struct stats {
    int n;
    int64_t p50, p90, p99, max;
} stats;

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Sorts v and takes its percentiles (nearest rank). */
static stats stats_of(int64_t *v, int n)
{
    stats s = {.n = n};
    if (n <= 0)
        return s;
    qsort(v, (size_t)n, sizeof *v, cmp_i64);
    s.p50 = v[n / 2];
    s.p90 = v[(n * 9) / 10];
    s.p99 = v[(n * 99) / 100];
    s.max = v[n - 1];
    return s;
}

static int64_t median_of(int64_t *v, int n)
{
    return stats_of(v, n).p50;
}

/* "182 us" under 10 ms, else "12.3 ms". */
static const char *dur(char buf[32], int64_t us)
{
    if (us < 10000 && us > -10000)
        snprintf(buf, 32, "%" PRId64 " us", us);
    else
        snprintf(buf, 32, "%.1f ms", (double)us / 1000.0);
    return buf;
}

static void print_stats(const char *label, const stats *s)
{
    char a[32], b[32], c[32];
    printf("  %-44s n=%-4d p50 %9s  p90 %9s  p99 %9s\n", label, s->n, dur(a, s->p50),
           dur(b, s->p90), dur(c, s->p99));
}

static void result_stats(const char *key, const stats *s)
{
    char k[128];
    snprintf(k, sizeof k, "%s.p50", key);
    kx_bench_result(k, (double)s->p50, "us");
    snprintf(k, sizeof k, "%s.p90", key);
    kx_bench_result(k, (double)s->p90, "us");
    snprintf(k, sizeof k, "%s.p99", key);
    kx_bench_result(k, (double)s->p99, "us");
}

/* ==== CPU accounting from /proc ============================================================ */

/* Per process: CPU time from /proc/<pid>/stat (utime+stime, which include threads that have
 * ended, and cutime+cstime for reaped children; clock ticks), and the time its live threads
 * spent runnable but waiting for a CPU, from /proc/<pid>/task/<tid>/schedstat (ns; threads that
 * ended between two snapshots are missing, so this undercounts). Waiting for a CPU is the
 * direct sign of CPU saturation. */
enum {
    P_DEMO,
    P_GATEWAY,
    P_SCHEDULER,
    P_RUNNER,
    P_TOOLEXEC,
    P_BROKER,
    P_MCP, /* stack procs */
    P_NATS,
    P_PG,
    P_BENCH,
    P_COUNT
};
static const char *const P_NAMES[P_COUNT] = {
    "demo-model",
    "gateway",
    "scheduler",
    "agent-runner",
    "tool-executor",
    "sandbox-broker (+ commands)",
    "mcp-proxy",
    "nats-server",
    "postgres (all backends)",
    "bench client (this process)",
};
static const char *const P_KEYS[P_COUNT] = {
    "demo_model",     "gateway",   "scheduler",   "agent_runner", "tool_executor",
    "sandbox_broker", "mcp_proxy", "nats_server", "postgres",     "bench_client",
};

typedef struct cpu_snap {
    int64_t wall_us;
    int64_t run_ns[P_COUNT], wait_ns[P_COUNT];
    int64_t runner_loop_run, runner_loop_wait, sched_loop_run, sched_loop_wait;
    int64_t machine_busy, machine_total; /* /proc/stat, clock ticks summed over CPUs */
} cpu_snap;

static void schedstat(const char *path, int64_t *run, int64_t *wait)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return;
    long long r = 0, w = 0;
    if (fscanf(f, "%lld %lld", &r, &w) == 2) { /* NOLINT(cert-err34-c): kernel-written */
        *run += r;
        *wait += w;
    }
    fclose(f);
}

/* CPU of pid (with children: plus the children it has reaped), in ns at clock-tick
 * resolution, and the wait for a CPU of its live threads. */
static void proc_cpu(pid_t pid, bool children, int64_t *run, int64_t *wait)
{
    if (pid <= 0)
        return;
    char path[96];
    int64_t ignored = 0;
    kx_th_pstat st;
    if (!kx_th_pstat_of(pid, &st))
        return;
    *run += (st.utime + st.stime + (children ? st.cutime + st.cstime : 0)) * kx_th_tick_ns();
    snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
    DIR *d = opendir(path);
    if (d == NULL)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9')
            continue;
        char p[128];
        snprintf(p, sizeof p, "/proc/%d/task/%.16s/schedstat", (int)pid, e->d_name);
        schedstat(p, &ignored, wait);
    }
    closedir(d);
}

static void thread_cpu(pid_t pid, int64_t *run, int64_t *wait)
{
    char path[96];
    snprintf(path, sizeof path, "/proc/%d/task/%d/schedstat", (int)pid, (int)pid);
    schedstat(path, run, wait);
}

typedef struct pg_sum {
    int64_t *run, *wait;
} pg_sum;

static void add_backend(pid_t pid, void *arg)
{
    pg_sum *sum = arg;
    proc_cpu(pid, false, sum->run, sum->wait);
}

/* The postmaster (with the backends it reaped) plus every live backend (its children). */
static void postgres_cpu(int64_t *run, int64_t *wait)
{
    char dir[400];
    snprintf(dir, sizeof dir, "%s/pg", g_stack->pg.dir);
    pid_t pm = kx_th_postmaster_of(dir);
    if (pm <= 0)
        return;
    proc_cpu(pm, true, run, wait);
    pg_sum sum = {run, wait};
    kx_th_each_child(pm, add_backend, &sum);
}

static void machine_ticks(int64_t *busy, int64_t *total)
{
    *busy = *total = 0;
    FILE *f = fopen("/proc/stat", "r");
    if (f == NULL)
        return;
    long long v[8] = {0};
    /* NOLINTNEXTLINE(cert-err34-c): kernel-written numbers, the field count is checked */
    if (fscanf(f, "cpu %lld %lld %lld %lld %lld %lld %lld %lld", &v[0], &v[1], &v[2], &v[3], &v[4],
               &v[5], &v[6], &v[7]) == 8) {
        for (int i = 0; i < 8; i++)
            *total += v[i];
        *busy = *total - v[3] - v[4]; /* minus idle and iowait */
    }
    fclose(f);
}

static void cpu_take(cpu_snap *s)
{
    memset(s, 0, sizeof *s);
    s->wall_us = kx_mono_us();
    for (int i = 0; i < KX_TH_STACK_NPROCS && i < P_NATS; i++)
        proc_cpu(g_stack->procs[i].pid, true, &s->run_ns[i], &s->wait_ns[i]);
    proc_cpu(g_stack->nats.pid, false, &s->run_ns[P_NATS], &s->wait_ns[P_NATS]);
    postgres_cpu(&s->run_ns[P_PG], &s->wait_ns[P_PG]);
    proc_cpu(getpid(), false, &s->run_ns[P_BENCH], &s->wait_ns[P_BENCH]);
    thread_cpu(g_stack->procs[P_RUNNER].pid, &s->runner_loop_run, &s->runner_loop_wait);
    thread_cpu(g_stack->procs[P_SCHEDULER].pid, &s->sched_loop_run, &s->sched_loop_wait);
    machine_ticks(&s->machine_busy, &s->machine_total);
}

static double clamp0(double v)
{
    return v < 0 ? 0 : v;
}

/* Prints the CPU each process used between a and b.
 * runs > 0: per run (sequential runs: CPU only).
 * runs <= 0: as a share of the wall time (100 % = one core busy) with the time its threads
 *            waited for a CPU; -runs, when > 0, is the number of runs the window served, for
 *            the CPU per run at that load and the ceiling it implies for the machine. */
static void print_cpu(const char *key, const cpu_snap *a, const cpu_snap *b, int runs)
{
    double wall_ns = (double)(b->wall_us - a->wall_us) * 1000.0;
    double stack_run = 0, stack_wait = 0, all_run = 0;
    char k[160];
    if (runs > 0)
        printf("    %-30s %8s   (ms per run)\n", "", "CPU");
    else
        printf("    %-30s %8s %8s   (%% of the wall time; 100 %% = one core)\n", "", "CPU",
               "waiting");
    for (int i = 0; i < P_COUNT; i++) {
        double run = (double)(b->run_ns[i] - a->run_ns[i]);
        double wait = clamp0((double)(b->wait_ns[i] - a->wait_ns[i]));
        all_run += run;
        if (i != P_BENCH) {
            stack_run += run;
            stack_wait += wait;
        }
        snprintf(k, sizeof k, "%s.cpu.%s", key, P_KEYS[i]);
        if (runs > 0) {
            printf("    %-30s %8.3f\n", P_NAMES[i], run / 1e6 / runs);
            kx_bench_result(k, run / 1e6 / runs, "ms/run");
        } else {
            printf("    %-30s %7.1f%% %7.1f%%\n", P_NAMES[i], 100.0 * run / wall_ns,
                   100.0 * wait / wall_ns);
            kx_bench_result(k, 100.0 * run / wall_ns, "%core");
        }
    }
    double lr = (double)(b->runner_loop_run - a->runner_loop_run);
    double lw = clamp0((double)(b->runner_loop_wait - a->runner_loop_wait));
    if (runs > 0) {
        printf("    %-30s %8.3f   (the runner's loop thread: %.3f)\n", "whole stack",
               stack_run / 1e6 / runs, lr / 1e6 / runs);
        snprintf(k, sizeof k, "%s.cpu.stack", key);
        kx_bench_result(k, stack_run / 1e6 / runs, "ms/run");
        return;
    }
    printf("    %-30s %7.1f%% %7.1f%%\n", "whole stack", 100.0 * stack_run / wall_ns,
           100.0 * stack_wait / wall_ns);
    double sr = (double)(b->sched_loop_run - a->sched_loop_run);
    double sw = clamp0((double)(b->sched_loop_wait - a->sched_loop_wait));
    printf("    %-30s %7.1f%% %7.1f%%\n", "  runner loop thread", 100.0 * lr / wall_ns,
           100.0 * lw / wall_ns);
    printf("    %-30s %7.1f%% %7.1f%%\n", "  scheduler loop thread", 100.0 * sr / wall_ns,
           100.0 * sw / wall_ns);
    double busy = (double)(b->machine_busy - a->machine_busy);
    double total = (double)(b->machine_total - a->machine_total);
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    double busy_pct = total > 0 ? 100.0 * busy / total : 0.0;
    double busy_ns = busy_pct / 100.0 * (double)cores * wall_ns; /* core-ns */
    printf("    machine: %.1f %% of its %ld cores busy; not accounted to the processes above "
           "(kernel, other processes): %.1f %% of one core\n",
           busy_pct, cores, 100.0 * clamp0(busy_ns - all_run) / wall_ns);
    snprintf(k, sizeof k, "%s.cpu.stack", key);
    kx_bench_result(k, 100.0 * stack_run / wall_ns, "%core");
    snprintf(k, sizeof k, "%s.cpu.stack_waiting", key);
    kx_bench_result(k, 100.0 * stack_wait / wall_ns, "%core");
    snprintf(k, sizeof k, "%s.cpu.machine_busy", key);
    kx_bench_result(k, busy_pct, "%");
    snprintf(k, sizeof k, "%s.cpu.runner_loop", key);
    kx_bench_result(k, 100.0 * lr / wall_ns, "%core");
    if (runs < 0) {
        int n = -runs;
        double per_run = busy_ns / 1e6 / n, stack_per_run = stack_run / 1e6 / n;
        printf(
            "    CPU per run at this load: %.2f ms for the stack, %.2f ms for the whole machine "
            "(client, kernel included); %ld cores / that = %.0f runs/s if CPU were the only "
            "limit\n",
            stack_per_run, per_run, cores, (double)cores * 1000.0 / per_run);
        snprintf(k, sizeof k, "%s.cpu.stack_per_run", key);
        kx_bench_result(k, stack_per_run, "ms/run");
        snprintf(k, sizeof k, "%s.cpu.machine_per_run", key);
        kx_bench_result(k, per_run, "ms/run");
        snprintf(k, sizeof k, "%s.cpu_ceiling", key);
        kx_bench_result(k, (double)cores * 1000.0 / per_run, "runs/s");
    }
}

/* ==== loop-thread sampler ================================================================= */

/* What a thread was doing when sampled, from /proc/<pid>/task/<tid>/syscall (x86-64 numbers). */
enum {
    S_CPU,
    S_IDLE,
    S_POLL,
    S_FUTEX,
    S_IO,
    S_OTHER,
    S_COUNT
};
static const char *const S_KEYS[S_COUNT] = {"cpu", "idle", "pg_wait", "futex", "io", "other"};
static const char *const S_NAMES[S_COUNT] = {
    "on CPU or runnable",
    "idle in epoll_wait (the loop has nothing to do)",
    "poll(): libpq waiting for Postgres",
    "futex: lock or cnats sync wait (e.g. JetStream ack)",
    "socket/file read or write",
    "other system call",
};

typedef struct sampler {
    pthread_t thread;
    atomic_bool stop;
    int n;
    pid_t pid[2];
    long counts[2][S_COUNT];
    long samples;
    bool ok;
    int64_t start_us, stop_us; /* kx_mono_us */
} sampler;

static int classify_syscall(const char *text)
{
    if (strncmp(text, "running", 7) == 0)
        return S_CPU;
    long nr = strtol(text, NULL, 10);
    switch (nr) {
    case -1: return S_CPU; /* in user space */
    case 232:
    case 281:
    case 441: return S_IDLE; /* epoll_wait, epoll_pwait, epoll_pwait2 */
    case 7:
    case 271: return S_POLL; /* poll, ppoll */
    case 202: return S_FUTEX;
    case 0:
    case 1:
    case 17:
    case 18:
    case 19:
    case 20:
    case 44:
    case 45:
    case 46:
    case 47:
        return S_IO; /* read write pread pwrite readv writev sendto recvfrom sendmsg recvmsg */
    default: return S_OTHER;
    }
}

/* Each sample re-reads the thread's syscall file through a descriptor opened once (pread at
 * offset 0 makes the kernel print it again): an fopen + fclose per sample, 2 000 a second, was
 * a fair share of the bench client's CPU. */
static void *sampler_main(void *arg)
{
    sampler *s = arg;
    int fd[2] = {-1, -1};
    int n = s->n < 2 ? s->n : 2; /* pid[], counts[] and fd[] hold 2 */
    for (int i = 0; i < n; i++) {
        char path[96];
        snprintf(path, sizeof path, "/proc/%d/task/%d/syscall", (int)s->pid[i], (int)s->pid[i]);
        fd[i] = open(path, O_RDONLY | O_CLOEXEC);
    }
    struct timespec next;
    clock_gettime(CLOCK_MONOTONIC, &next);
    while (!atomic_load(&s->stop)) {
        for (int i = 0; i < n; i++) {
            char text[64];
            ssize_t got = fd[i] >= 0 ? pread(fd[i], text, sizeof text - 1, 0) : -1;
            if (got <= 0)
                continue;
            text[got] = '\0';
            s->counts[i][classify_syscall(text)]++;
            s->ok = true;
        }
        s->samples++;
        next.tv_nsec += SAMPLE_PERIOD_US * 1000L;
        if (next.tv_nsec >= 1000000000L) {
            next.tv_sec++;
            next.tv_nsec -= 1000000000L;
        }
        clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL);
    }
    for (int i = 0; i < n; i++)
        if (fd[i] >= 0)
            close(fd[i]);
    return NULL;
}

static bool sampler_start(sampler *s)
{
    memset(s, 0, sizeof *s);
    s->n = 2;
    s->pid[0] = g_stack->procs[P_RUNNER].pid;
    s->pid[1] = g_stack->procs[P_SCHEDULER].pid;
    atomic_init(&s->stop, false);
    s->start_us = kx_mono_us();
    if (pthread_create(&s->thread, NULL, sampler_main, s) != 0) {
        kx_bench_fail("cannot start the loop-thread sampler");
        return false;
    }
    return true;
}

/* Stops the sampler and prints what it saw. Returns the share of samples in which the
 * runner's loop thread was blocked in poll() (libpq), or -1 when there were no samples. */
static double sampler_stop(sampler *s, const char *key)
{
    atomic_store(&s->stop, true);
    pthread_join(s->thread, NULL);
    s->stop_us = kx_mono_us();
    if (!s->ok) {
        printf(
            "    loop-thread samples unavailable (/proc/<pid>/task/<tid>/syscall unreadable)\n");
        return -1;
    }
    double runner_pg = -1;
    static const char *const who[2] = {"agent-runner", "scheduler"};
    for (int i = 0; i < s->n; i++) {
        long total = 0;
        for (int c = 0; c < S_COUNT; c++)
            total += s->counts[i][c];
        if (total == 0)
            continue;
        printf("    %s loop thread, %ld samples (1 per %d ms):\n", who[i], total,
               SAMPLE_PERIOD_US / 1000);
        for (int c = 0; c < S_COUNT; c++) {
            double pct = 100.0 * (double)s->counts[i][c] / (double)total;
            printf("      %5.1f %%  %s\n", pct, S_NAMES[c]);
            if (i == 0 && c == S_POLL)
                runner_pg = pct / 100.0;
            char k[128];
            snprintf(k, sizeof k, "%s.loop.%s.%s", key, i == 0 ? "runner" : "scheduler",
                     S_KEYS[c]);
            kx_bench_result(k, pct, "%");
        }
    }
    return runner_pg;
}

/* ==== baselines ========================================================================== */

typedef struct baselines {
    stats nats, js, pg_commit, pg_select, http, llm, spawn, mkdir, tool, sandbox, sandbox_new;
} baselines;

static kx_bus *g_echo_bus;

static void echo_cb(natsMsg *msg, void *arg)
{
    (void)arg;
    kx_bus_respond(g_echo_bus, msg, natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg));
    natsMsg_Destroy(msg);
}

static bool bus_wait_connected(kx_bus *b)
{
    for (int i = 0; i < 300 && !kx_bus_connected(b); i++)
        usleep(10000);
    return kx_bus_connected(b);
}

/* libkx request/reply to a trivial responder (what the runner -> tool-executor -> broker calls
 * use), and JetStream publish + ack on a file stream (what the gateway's submit and the
 * scheduler's dispatch wait for). */
static bool base_bus(int n, int64_t *rtt, int n_js, int64_t *js)
{
    kx_bus *req = NULL;
    natsSubscription *sub = NULL;
    bool ok = false;
    if (kx_bus_connect(g_stack->nats.url, "bench-echo", &g_echo_bus) != KX_OK ||
        kx_bus_connect(g_stack->nats.url, "bench-req", &req) != KX_OK ||
        !bus_wait_connected(g_echo_bus) || !bus_wait_connected(req)) {
        kx_bench_fail("baseline: cannot connect to nats-server at %s", g_stack->nats.url);
        goto out;
    }
    if (kx_bus_subscribe(g_echo_bus, "bench.echo", NULL, echo_cb, NULL, &sub) != KX_OK ||
        natsConnection_Flush(kx_bus_conn(g_echo_bus)) != NATS_OK) {
        kx_bench_fail("baseline: cannot subscribe bench.echo");
        goto out;
    }
    char payload[64] = {0};
    for (int i = -50; i < n; i++) { /* 50 warm-up requests */
        kx_bus_meta meta;
        kx_bus_meta_init(&meta, kx_deadline_in(1000), "00000000-0000-4000-8000-000000000000");
        natsMsg *reply = NULL;
        int64_t t0 = kx_mono_us();
        if (kx_bus_request(req, "bench.echo", payload, sizeof payload, &meta, &reply) != KX_OK) {
            kx_bench_fail("baseline: NATS request %d failed", i);
            goto out;
        }
        if (i >= 0)
            rtt[i] = kx_mono_us() - t0;
        natsMsg_Destroy(reply);
    }

    jsCtx *js_ctx = kx_bus_js(req);
    jsStreamConfig cfg;
    jsStreamConfig_Init(&cfg);
    const char *subjects[] = {"bench.js"};
    cfg.Name = "BENCH_JS";
    cfg.Subjects = subjects;
    cfg.SubjectsLen = 1;
    cfg.Storage = js_FileStorage;
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    if (js_AddStream(&si, js_ctx, &cfg, NULL, &jerr) != NATS_OK) {
        kx_bench_fail("baseline: cannot create the JetStream stream BENCH_JS (error %d)",
                      (int)jerr);
        goto out;
    }
    jsStreamInfo_Destroy(si);
    char rid[KX_UUID_LEN + 1], tid[KX_UUID_LEN + 1], aid[KX_UUID_LEN + 1];
    kx_uuid_new(rid);
    kx_uuid_new(tid);
    kx_uuid_new(aid);
    Kx__V1__RunSubmit rs = KX__V1__RUN_SUBMIT__INIT; /* what the gateway publishes */
    rs.run_id = rid;
    rs.thread_id = tid;
    rs.account_id = aid;
    for (int i = -20; i < n_js; i++) {
        kx_bus_meta meta;
        kx_bus_meta_init(&meta, kx_deadline_in(2000), aid);
        rs.submitted_at_ms = kx_now_ms();
        int64_t t0 = kx_mono_us();
        if (kx_bus_js_publish_pb(req, "bench.js", &rs.base, &meta) != KX_OK) {
            kx_bench_fail("baseline: JetStream publish %d failed", i);
            goto out;
        }
        if (i >= 0)
            js[i] = kx_mono_us() - t0;
    }
    js_DeleteStream(js_ctx, "BENCH_JS", NULL, &jerr);
    ok = true;
out:
    if (sub != NULL)
        natsSubscription_Destroy(sub);
    kx_bus_close(req, 1000);
    kx_bus_close(g_echo_bus, 1000);
    g_echo_bus = NULL;
    return ok;
}

static void quiet_notice(void *arg, const char *message)
{
    (void)arg;
    (void)message; /* "relation ... already exists, skipping" and the like */
}

static PGconn *pg_connect(void)
{
    PGconn *c = PQconnectdb(g_stack->pg.url);
    if (PQstatus(c) != CONNECTION_OK) {
        kx_bench_fail("cannot connect to %s: %s", g_stack->pg.url, PQerrorMessage(c));
        PQfinish(c);
        return NULL;
    }
    PQsetNoticeProcessor(c, quiet_notice, NULL);
    return c;
}

static bool pg_cmd(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
    if (!ok)
        kx_bench_fail("SQL failed: %s: %s", sql, PQerrorMessage(c));
    PQclear(r);
    return ok;
}

/* The next transaction id Postgres will assign (-1 on failure). Only transactions that write
 * get one, so the difference over a batch counts the stack's write transactions (commits, and
 * the few that roll back) — every service's, not the client's reads. */
static int64_t pg_next_xid(void)
{
    PGconn *c = pg_connect();
    if (c == NULL)
        return -1;
    PGresult *r = PQexec(c, "SELECT txid_snapshot_xmax(txid_current_snapshot())");
    int64_t x = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1
        ? strtoll(PQgetvalue(r, 0, 0), NULL, 10)
        : -1;
    PQclear(r);
    PQfinish(c);
    return x;
}

/* Single-row INSERT commits (autocommit, prepared, a jsonb row shaped like a status message)
 * and SELECT 1 round trips, on a connection of our own. */
static bool base_pg(int n, int64_t *commit, int64_t *select1)
{
    PGconn *c = pg_connect();
    if (c == NULL)
        return false;
    bool ok = pg_cmd(c,
                     "CREATE TABLE IF NOT EXISTS bench_commit (id bigserial PRIMARY KEY, "
                     "run_id uuid NOT NULL, content jsonb NOT NULL, "
                     "created_at timestamptz NOT NULL DEFAULT now())");
    PGresult *r1 = PQprepare(c, "bench_insert",
                             "INSERT INTO bench_commit (run_id, content) "
                             "VALUES ($1::uuid, $2::jsonb)",
                             2, NULL);
    PGresult *r2 = PQprepare(c, "bench_select", "SELECT 1", 0, NULL);
    ok = ok && PQresultStatus(r1) == PGRES_COMMAND_OK && PQresultStatus(r2) == PGRES_COMMAND_OK;
    PQclear(r1);
    PQclear(r2);
    if (!ok) {
        kx_bench_fail("baseline: cannot prepare the Postgres statements: %s", PQerrorMessage(c));
        PQfinish(c);
        return false;
    }
    char run_id[KX_UUID_LEN + 1];
    kx_uuid_new(run_id);
    const char *content = "{\"status_type\": \"thread_run_start\", \"thread_run_id\": "
                          "\"00000000-0000-4000-8000-000000000000\"}";
    const char *params[] = {run_id, content};
    for (int i = -20; i < n && ok; i++) {
        int64_t t0 = kx_mono_us();
        PGresult *r = PQexecPrepared(c, "bench_insert", 2, params, NULL, NULL, 0);
        if (i >= 0)
            commit[i] = kx_mono_us() - t0;
        ok = PQresultStatus(r) == PGRES_COMMAND_OK;
        PQclear(r);
    }
    for (int i = -20; i < n && ok; i++) {
        int64_t t0 = kx_mono_us();
        PGresult *r = PQexecPrepared(c, "bench_select", 0, NULL, NULL, NULL, 0);
        if (i >= 0)
            select1[i] = kx_mono_us() - t0;
        ok = PQresultStatus(r) == PGRES_TUPLES_OK;
        PQclear(r);
    }
    if (!ok)
        kx_bench_fail("baseline: a Postgres statement failed: %s", PQerrorMessage(c));
    PQfinish(c);
    return ok;
}

/* An unrouted GET on the gateway's API port (its 404 JSON: the same server, no dependency;
 * the ops routes answer there only with the ops token) with the client the runs use (one
 * connection per request, as kx_th_http). */
static bool base_http(int n, int64_t *lat)
{
    char url[128];
    snprintf(url, sizeof url, "%s/api/floor", g_stack->base_url);
    for (int i = -20; i < n; i++) {
        kx_http_resp r = {0};
        int64_t t0 = kx_mono_us();
        kx_err err = kx_http_request("GET", url, NULL, NULL, 0, kx_deadline_in(5000), 0, &r);
        if (i >= 0)
            lat[i] = kx_mono_us() - t0;
        long status = r.status;
        kx_http_resp_free(&r);
        if (err != KX_OK || status != 404) {
            kx_bench_fail("baseline: GET %s: %s, status %ld (expected 404)", url, kx_err_str(err),
                          status);
            return false;
        }
    }
    return true;
}

/* One streamed chat completion from the demo model answering `say hi`, straight from the
 * client: the LLM call a run makes, without the stack around it. */
static bool base_llm(int n, int64_t *lat)
{
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%u/v1/chat/completions", g_stack->model_port);
    const char *body = "{\"model\": \"kortix/demo\", \"stream\": true, \"messages\": "
                       "[{\"role\": \"user\", \"content\": \"say hi\"}]}";
    const char *headers[] = {"Content-Type: application/json", NULL};
    for (int i = -20; i < n; i++) {
        kx_http_resp r = {0};
        int64_t t0 = kx_mono_us();
        kx_err err =
            kx_http_request("POST", url, headers, body, strlen(body), kx_deadline_in(5000), 0, &r);
        if (i >= 0)
            lat[i] = kx_mono_us() - t0;
        bool done = r.body != NULL && strstr(r.body, "[DONE]") != NULL;
        long status = r.status;
        kx_http_resp_free(&r);
        if (err != KX_OK || status != 200 || !done) {
            kx_bench_fail("baseline: POST %s: %s, status %ld%s", url, kx_err_str(err), status,
                          done ? "" : ", no [DONE]");
            return false;
        }
    }
    return true;
}

/* fork+exec+wait of /bin/sh -c true: what the sandbox-broker does for execute_command. */
static bool base_spawn(int n, int64_t *lat)
{
    char *const argv[] = {"sh", "-c", "true", NULL};
    for (int i = -10; i < n; i++) {
        pid_t pid;
        int64_t t0 = kx_mono_us();
        int rc = posix_spawn(&pid, "/bin/sh", NULL, NULL, argv, environ);
        int status = 0;
        if (rc == 0) {
            while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
            }
        }
        if (i >= 0)
            lat[i] = kx_mono_us() - t0;
        if (rc != 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            kx_bench_fail("baseline: /bin/sh -c true failed (%s)",
                          rc ? strerror(rc) : "exit status");
            return false;
        }
    }
    return true;
}

/* mkdir of <new>/workspace (two levels, 0700) in the stack's temp dir, which holds the sandbox
 * root: what the broker does before a new project's first command. */
static bool base_mkdir(int n, int64_t *lat)
{
    for (int i = -10; i < n; i++) {
        char id[KX_UUID_LEN + 1], top[600], ws[700];
        kx_uuid_new(id);
        snprintf(top, sizeof top, "%s/bench-mkdir-%s", g_stack->dir, id);
        snprintf(ws, sizeof ws, "%s/workspace", top);
        int64_t t0 = kx_mono_us();
        bool ok = mkdir(top, 0700) == 0 && mkdir(ws, 0700) == 0;
        if (i >= 0)
            lat[i] = kx_mono_us() - t0;
        if (!ok) {
            kx_bench_fail("baseline: mkdir %s: %s", ws, strerror(errno));
            return false;
        }
        rmdir(ws);
        rmdir(top);
    }
    return true;
}

/* The tool path without the runner: ToolCall on kx.tool.exec (tool-executor -> sandbox-broker
 * -> /bin/sh -c true) and SandboxExecRequest on kx.sandbox.exec (the broker alone: n requests
 * in one project, then n in a new project each, as every run of the benchmark has its own
 * project); sequential requests from a client of our own. sandbox gets 2n entries. */
static bool base_tool_path(int n, int64_t *tool, int64_t *sandbox)
{
    kx_bus *bus = NULL;
    if (kx_bus_connect(g_stack->nats.url, "bench-tools", &bus) != KX_OK ||
        !bus_wait_connected(bus)) {
        kx_bench_fail("baseline: cannot connect to nats-server");
        kx_bus_close(bus, 1000);
        return false;
    }
    char account[KX_UUID_LEN + 1], project[KX_UUID_LEN + 1], thread[KX_UUID_LEN + 1];
    char run[KX_UUID_LEN + 1], id[KX_UUID_LEN + 1];
    kx_uuid_new(account);
    kx_uuid_new(project);
    kx_uuid_new(thread);
    kx_uuid_new(run);
    bool ok = true;
    for (int i = -10; ok && i < n; i++) {
        kx_uuid_new(id);
        Kx__V1__ToolCall call = KX__V1__TOOL_CALL__INIT;
        call.call_id = id;
        call.run_id = run;
        call.lease_epoch = 1;
        call.account_id = account;
        call.project_id = project;
        call.thread_id = thread;
        call.tool_name = "execute_command";
        call.arguments_json = "{\"command\": \"true\", \"blocking\": true}";
        kx_bus_meta meta;
        kx_bus_meta_init(&meta, kx_deadline_in(10000), account);
        natsMsg *reply = NULL;
        int64_t t0 = kx_mono_us();
        kx_err err = kx_bus_request_pb(bus, KX_SUBJ_TOOL_EXEC, &call.base, &meta, &reply);
        if (i >= 0)
            tool[i] = kx_mono_us() - t0;
        Kx__V1__ToolResult *res = err == KX_OK
            ? kx_pb_unpack(&kx__v1__tool_result__descriptor, natsMsg_GetData(reply),
                           (size_t)natsMsg_GetDataLength(reply))
            : NULL;
        ok = res != NULL && res->success;
        if (!ok)
            kx_bench_fail("baseline: kx.tool.exec: %s%s", kx_err_str(err),
                          res != NULL ? " (the tool did not succeed)" : "");
        kx_pb_free(res);
        natsMsg_Destroy(reply);
    }
    for (int i = -10; ok && i < 2 * n; i++) { /* same project n times, then a new one each */
        kx_uuid_new(id);
        if (i >= n)
            kx_uuid_new(project);
        Kx__V1__SandboxExecRequest req = KX__V1__SANDBOX_EXEC_REQUEST__INIT;
        req.exec_id = id;
        req.project_id = project;
        req.account_id = account;
        req.command = "true";
        req.blocking = true;
        req.timeout_s = 30;
        kx_bus_meta meta;
        kx_bus_meta_init(&meta, kx_deadline_in(10000), account);
        natsMsg *reply = NULL;
        int64_t t0 = kx_mono_us();
        kx_err err = kx_bus_request_pb(bus, KX_SUBJ_SANDBOX_EXEC, &req.base, &meta, &reply);
        if (i >= 0)
            sandbox[i] = kx_mono_us() - t0;
        Kx__V1__SandboxExecResult *res = err == KX_OK
            ? kx_pb_unpack(&kx__v1__sandbox_exec_result__descriptor, natsMsg_GetData(reply),
                           (size_t)natsMsg_GetDataLength(reply))
            : NULL;
        ok = res != NULL && res->completed && res->exit_code == 0;
        if (!ok)
            kx_bench_fail("baseline: kx.sandbox.exec: %s%s", kx_err_str(err),
                          res != NULL ? " (the command did not complete with 0)" : "");
        kx_pb_free(res);
        natsMsg_Destroy(reply);
    }
    kx_bus_close(bus, 1000);
    return ok;
}

static void print_baselines(const char *key, const baselines *b)
{
    char k[96];
#define ONE(field, label, name)                    \
    do {                                           \
        print_stats(label, &b->field);             \
        snprintf(k, sizeof k, "%s.%s", key, name); \
        result_stats(k, &b->field);                \
    } while (0)
    ONE(nats, "NATS request/reply RTT (libkx)", "nats_rtt");
    ONE(js, "JetStream publish + ack (file stream)", "js_ack");
    ONE(pg_commit, "Postgres INSERT commit (prepared)", "pg_commit");
    ONE(pg_select, "Postgres SELECT 1 round trip", "pg_select");
    ONE(http, "HTTP floor: GET unrouted path on the gateway", "http");
    ONE(llm, "LLM floor: demo model, streamed `say hi`", "llm");
    ONE(spawn, "process floor: /bin/sh -c true", "spawn");
    ONE(mkdir, "filesystem: mkdir <new>/workspace", "mkdir");
    ONE(sandbox, "kx.sandbox.exec `true` (broker alone)", "sandbox_exec");
    ONE(sandbox_new, "  the same, a new project each time", "sandbox_exec_new");
    ONE(tool, "kx.tool.exec `true` (executor + broker)", "tool_exec");
#undef ONE
}

static bool measure_baselines(baselines *b)
{
    enum {
        N_NATS = 2000,
        N_JS = 500,
        N_PG = 500,
        N_HTTP = 300,
        N_LLM = 200,
        N_SPAWN = 200,
        N_TOOL = 100
    };
    int64_t *v =
        calloc(N_NATS + N_JS + 2 * N_PG + N_HTTP + N_LLM + 2 * N_SPAWN + 3 * N_TOOL, sizeof *v);
    if (v == NULL)
        return false;
    int64_t *nats = v, *js = nats + N_NATS, *commit = js + N_JS, *sel = commit + N_PG,
            *http = sel + N_PG, *llm = http + N_HTTP, *spawn = llm + N_LLM, *mk = spawn + N_SPAWN,
            *tool = mk + N_SPAWN, *sandbox = tool + N_TOOL;
    bool ok = base_bus(N_NATS, nats, N_JS, js) && base_pg(N_PG, commit, sel) &&
        base_http(N_HTTP, http) && base_llm(N_LLM, llm) && base_spawn(N_SPAWN, spawn) &&
        base_mkdir(N_SPAWN, mk) && base_tool_path(N_TOOL, tool, sandbox);
    if (ok) {
        b->nats = stats_of(nats, N_NATS);
        b->js = stats_of(js, N_JS);
        b->pg_commit = stats_of(commit, N_PG);
        b->pg_select = stats_of(sel, N_PG);
        b->http = stats_of(http, N_HTTP);
        b->llm = stats_of(llm, N_LLM);
        b->spawn = stats_of(spawn, N_SPAWN);
        b->mkdir = stats_of(mk, N_SPAWN);
        b->tool = stats_of(tool, N_TOOL);
        b->sandbox = stats_of(sandbox, N_TOOL);
        b->sandbox_new = stats_of(sandbox + N_TOOL, N_TOOL);
    }
    free(v);
    return ok;
}

/* ==== runs through the HTTP API ============================================================ */

/* An account of its own per scenario, so its runs can be told apart in Postgres. */
typedef struct account {
    char id[KX_UUID_LEN + 1];
    char *token;
    char auth[700]; /* "Authorization: Bearer <token>" */
} account;

static bool g_limited; /* --limited */

static bool account_new(account *a)
{
    kx_uuid_new(a->id);
    if (g_limited) { /* before its first run: every run of it is counted */
        const char *p[] = {a->id};
        PGresult *res =
            kx_th_sql(g_stack,
                      "INSERT INTO account_limits (account_id, runs_per_day, "
                      "tokens_per_month) VALUES ($1::uuid, 2000000000, 1000000000000000)",
                      1, p);
        if (res == NULL) {
            fprintf(stderr, "bench_run: --limited: the account_limits row was not written\n");
            return false;
        }
        PQclear(res);
    }
    a->token = kx_th_stack_token(g_stack, a->id);
    if (a->token == NULL)
        return false;
    snprintf(a->auth, sizeof a->auth, "Authorization: Bearer %s", a->token);
    return true;
}

static void account_free(account *a)
{
    free(a->token);
    a->token = NULL;
}

/* POST /api/agent/initiate (urlencoded form). Thread-safe: uses kx_http_request directly. */
static bool initiate(const account *a, const char *prompt, char run_id[KX_UUID_LEN + 1])
{
    const char *pairs[] = {"prompt", prompt, NULL};
    size_t len = 0;
    char *body = kx_th_form_urlencoded(pairs, &len);
    if (body == NULL)
        return false;
    char url[128];
    snprintf(url, sizeof url, "%s/api/agent/initiate", g_stack->base_url);
    const char *headers[] = {a->auth, "Content-Type: application/x-www-form-urlencoded", NULL};
    kx_http_resp r = {0};
    kx_err err = kx_http_request("POST", url, headers, body, len, kx_deadline_in(10000), 0, &r);
    free(body);
    bool ok = false;
    if (err == KX_OK && r.status == 200)
        ok = kx_th_initiate_run_id(r.body, r.len, run_id);
    if (!ok)
        kx_bench_fail("POST /api/agent/initiate: %s, status %ld: %s", kx_err_str(err), r.status,
                      r.body ? r.body : "");
    kx_http_resp_free(&r);
    return ok;
}

static bool is_completed(const char *payload)
{
    return payload != NULL && strstr(payload, "\"status\": \"completed\"") != NULL &&
        kx_th_sse_is_terminal(payload);
}

/* Reads a run's stream to its terminal event; *events gets how many came. */
static bool read_stream(const account *a, const char *run_id, size_t *events)
{
    char path[128];
    snprintf(path, sizeof path, "/api/agent-run/%s/stream", run_id);
    kx_th_sse sse;
    kx_err err = kx_th_sse_read(g_stack, path, a->token, STREAM_TIMEOUT_MS, &sse);
    bool ok = err == KX_OK && sse.status == 200 && sse.terminal && !sse.timed_out && sse.n > 0 &&
        is_completed(sse.data[sse.n - 1]);
    if (!ok)
        kx_bench_fail("run %s: stream %s, status %ld, %zu events, last: %s", run_id,
                      kx_err_str(err), sse.status, sse.n, sse.n ? sse.data[sse.n - 1] : "(none)");
    *events = sse.n;
    kx_th_sse_free(&sse);
    return ok;
}

/* What one sequential run took, measured by the client. */
typedef struct run_timing {
    char run_id[KX_UUID_LEN + 1];
    int64_t start_wall_us, end_wall_us; /* CLOCK_REALTIME, comparable with Postgres now() */
    int64_t total_us, post_us;
    size_t events;
} run_timing;

static bool one_run(const account *a, const char *prompt, run_timing *t)
{
    t->start_wall_us = kx_now_us();
    int64_t t0 = kx_mono_us();
    if (!initiate(a, prompt, t->run_id))
        return false;
    t->post_us = kx_mono_us() - t0;
    if (!read_stream(a, t->run_id, &t->events))
        return false;
    t->total_us = kx_mono_us() - t0;
    t->end_wall_us = kx_now_us();
    return true;
}

/* ==== what the runs left in Postgres ====================================================== */

/* One run's row and counts of the messages its runner wrote. */
typedef struct run_row {
    char id[KX_UUID_LEN + 1];
    char status[16];
    int64_t created, dispatched, started, completed; /* unix us */
    int rows, llm_calls, tools;
} run_row;

/* Every run of the account with its timestamps and message counts (malloc'd array). The counts
 * come from one grouped scan of the account's messages: a subquery per run was planned as a
 * sequential scan per run on tables too fresh to have statistics (35 s for 2 000 runs). */
/* An int column of a result row (a count): -1 when it does not read as one. */
static int col_int(const PGresult *r, int row, int col)
{
    long v = 0;
    if (!kx_th_parse_long(PQgetvalue(r, row, col), &v) || v < 0 || v > INT_MAX)
        return -1;
    return (int)v;
}

static run_row *load_runs(const char *account_id, int *n)
{
    *n = 0;
    PGconn *c = pg_connect();
    if (c == NULL)
        return NULL;
    const char *sql =
        "SELECT r.id::text, r.status, "
        "(extract(epoch FROM r.created_at) * 1000000)::bigint, "
        "coalesce((extract(epoch FROM r.dispatched_at) * 1000000)::bigint, 0), "
        "coalesce((extract(epoch FROM r.started_at) * 1000000)::bigint, 0), "
        "coalesce((extract(epoch FROM r.completed_at) * 1000000)::bigint, 0), "
        "coalesce(m.n, 0), coalesce(m.assistant, 0), coalesce(m.tool, 0) "
        "FROM agent_runs r LEFT JOIN (SELECT agent_run_id, count(*) AS n, "
        "count(*) FILTER (WHERE type = 'assistant') AS assistant, "
        "count(*) FILTER (WHERE type = 'tool') AS tool FROM messages "
        "WHERE account_id = $1::uuid GROUP BY agent_run_id) m ON m.agent_run_id = r.id "
        "WHERE r.account_id = $1::uuid";
    const char *params[] = {account_id};
    PGresult *r = PQexecParams(c, sql, 1, NULL, params, NULL, NULL, 0);
    run_row *rows = NULL;
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        kx_bench_fail("loading the runs: %s", PQerrorMessage(c));
    } else {
        int k = PQntuples(r);
        rows = calloc(k > 0 ? (size_t)k : 1, sizeof *rows);
        for (int i = 0; rows != NULL && i < k; i++) {
            snprintf(rows[i].id, sizeof rows[i].id, "%s", PQgetvalue(r, i, 0));
            snprintf(rows[i].status, sizeof rows[i].status, "%s", PQgetvalue(r, i, 1));
            rows[i].created = strtoll(PQgetvalue(r, i, 2), NULL, 10);
            rows[i].dispatched = strtoll(PQgetvalue(r, i, 3), NULL, 10);
            rows[i].started = strtoll(PQgetvalue(r, i, 4), NULL, 10);
            rows[i].completed = strtoll(PQgetvalue(r, i, 5), NULL, 10);
            rows[i].rows = col_int(r, i, 6);
            rows[i].llm_calls = col_int(r, i, 7);
            rows[i].tools = col_int(r, i, 8);
        }
        if (rows != NULL)
            *n = k;
    }
    PQclear(r);
    PQfinish(c);
    return rows;
}

static const run_row *find_row(const run_row *rows, int n, const char *id)
{
    for (int i = 0; i < n; i++)
        if (strcmp(rows[i].id, id) == 0)
            return &rows[i];
    return NULL;
}

/* ==== (a) sequential latency ================================================================ */

/* The critical path of one run, counted from what it wrote (see docs/performance.md):
 *   client -> gateway       1 HTTP request (POST), its SSE answer rides the stream opened
 *                           meanwhile (off the critical path)
 *   gateway                 1 commit (project, thread, message, run in one statement)
 *                           + 1 core publish (kx.run.submit, not stored)
 *   -> scheduler            1 one-way NATS leg; 1 commit (dispatched_at) + 1 JetStream ack
 *   -> agent-runner         1 one-way NATS leg (pull fetch); 1 commit (claim)
 *   per turn                1 SELECT (context), the turn's message inserts (one commit each),
 *                           1 LLM call; per tool call 2 NATS requests (runner -> executor ->
 *                           broker) + 1 process (+ the workspace, the project's first command)
 *   end                     1 SELECT (context: the model answered) + 1 commit (finish)
 *   -> gateway -> client    1 one-way NATS leg (terminal event), then SSE
 */
typedef struct path_model {
    int http, commits, selects, js_acks, legs, llm, bus_requests, spawns, workspaces;
} path_model;

static path_model model_from(const run_row *r)
{
    path_model m = {0};
    m.http = 1;
    m.commits = 1 + 1 + 1 + r->rows + 1; /* gateway, scheduler, claim, inserts, finish */
    m.selects = r->llm_calls + 1;        /* one context load per turn, one to see the end */
    m.js_acks = 2;
    m.legs = 3;
    m.llm = r->llm_calls;
    m.bus_requests = 2 * r->tools;
    m.spawns = r->tools;
    m.workspaces = r->tools > 0; /* every run here has a new project: its first command */
    return m;
}

static int64_t print_model(const path_model *m, const baselines *b)
{
    struct {
        const char *what;
        int count;
        int64_t unit;
    } parts[] = {
        {"HTTP request, client -> gateway", m->http, b->http.p50},
        {"Postgres commits (INSERT/UPDATE)", m->commits, b->pg_commit.p50},
        {"Postgres reads (context loads)", m->selects, b->pg_select.p50},
        {"JetStream publish + ack", m->js_acks, b->js.p50},
        {"one-way NATS legs (1/2 RTT each)", m->legs, b->nats.p50 / 2},
        {"LLM calls (demo model floor)", m->llm, b->llm.p50},
        {"NATS requests (tool path)", m->bus_requests, b->nats.p50},
        {"processes (/bin/sh -c)", m->spawns, b->spawn.p50},
        {"new project's workspace (mkdir)", m->workspaces, b->mkdir.p50},
    };
    int64_t sum = 0;
    char a[32], c[32];
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        if (parts[i].count == 0)
            continue;
        int64_t t = parts[i].count * parts[i].unit;
        sum += t;
        printf("      %-36s %3d x %8s = %9s\n", parts[i].what, parts[i].count,
               dur(a, parts[i].unit), dur(c, t));
    }
    printf("      %-36s                  %9s\n", "ideal sum (same-run baselines, p50)",
           dur(a, sum));
    return sum;
}

/* The runner's part of a run, step by step: the gaps between the starts of its consecutive
 * writes (run_claim and run_finish: the agent_runs UPDATEs; the others: message inserts, named
 * by their status_type or type), from the timestamps Postgres gave them (now()). A gap
 * holds the previous write's round trip plus whatever the runner did before the next one: the
 * LLM call before `assistant`, the tool call before `tool`, a context load before
 * `thread_run_start` and before run_finish. Medians over the runs with the same sequence. */
#define MAX_STEPS 48
typedef struct steps {
    int n;
    bool overflow;
    char label[MAX_STEPS][32];
    int64_t at[MAX_STEPS];
} steps;

static void step_add(steps *st, const char *label, int64_t at)
{
    if (st->n == MAX_STEPS) {
        st->overflow = true;
        return;
    }
    snprintf(st->label[st->n], sizeof st->label[st->n], "%s", label);
    st->at[st->n++] = at;
}

static bool same_labels(const steps *a, const steps *b)
{
    if (a->n != b->n)
        return false;
    for (int i = 0; i < a->n; i++)
        if (strcmp(a->label[i], b->label[i]) != 0)
            return false;
    return true;
}

static void print_runner_steps(const char *key, const char *account_id, const run_row *runs,
                               int nruns, int64_t runner_med)
{
    PGconn *c = pg_connect();
    if (c == NULL)
        return;
    const char *sql = "SELECT m.agent_run_id::text, coalesce(m.content->>'status_type', m.type), "
                      "(extract(epoch FROM m.created_at) * 1000000)::bigint "
                      "FROM messages m JOIN agent_runs r ON r.id = m.agent_run_id "
                      "WHERE r.account_id = $1::uuid ORDER BY m.agent_run_id, m.created_at";
    const char *params[] = {account_id};
    PGresult *r = PQexecParams(c, sql, 1, NULL, params, NULL, NULL, 0);
    int64_t *gaps = calloc((size_t)MAX_STEPS * (size_t)nruns, sizeof *gaps);
    steps *ref = calloc(1, sizeof *ref), *st = calloc(1, sizeof *st);
    if (PQresultStatus(r) != PGRES_TUPLES_OK || gaps == NULL || ref == NULL || st == NULL) {
        kx_bench_fail("loading the runs' messages: %s", PQerrorMessage(c));
        goto out;
    }
    int nt = PQntuples(r), used = 0, skipped = 0;
    for (int i = 0; i < nt;) {
        const char *id = PQgetvalue(r, i, 0);
        const run_row *rr = find_row(runs, nruns, id);
        memset(st, 0, sizeof *st);
        step_add(st, "run_claim", rr != NULL ? rr->started : 0);
        int j = i;
        for (; j < nt && strcmp(PQgetvalue(r, j, 0), id) == 0; j++)
            step_add(st, PQgetvalue(r, j, 1), strtoll(PQgetvalue(r, j, 2), NULL, 10));
        step_add(st, "run_finish", rr != NULL ? rr->completed : 0);
        i = j;
        if (rr == NULL || st->overflow || used == nruns)
            continue;
        if (used == 0) {
            *ref = *st;
        } else if (!same_labels(ref, st)) {
            skipped++;
            continue;
        }
        for (int g = 0; g + 1 < st->n; g++)
            gaps[(size_t)g * (size_t)nruns + (size_t)used] = st->at[g + 1] - st->at[g];
        used++;
    }
    if (used == 0)
        goto out;
    printf(
        "    inside the runner: p50 gap between the starts of consecutive writes (%d runs%s):\n",
        used, skipped ? ", some with another sequence left out" : "");
    int64_t sum = 0;
    for (int g = 0; g + 1 < ref->n; g++) {
        int64_t med = median_of(&gaps[(size_t)g * (size_t)nruns], used);
        sum += med;
        char a[32], k[160];
        printf("      %-24s -> %-24s %9s\n", ref->label[g], ref->label[g + 1], dur(a, med));
        snprintf(k, sizeof k, "%s.step.%02d.%s", key, g, ref->label[g + 1]);
        kx_bench_result(k, (double)med, "us");
    }
    char a[32], b2[32];
    printf("      %-52s %9s (the phase's p50: %s)\n", "sum of the p50 gaps", dur(a, sum),
           dur(b2, runner_med));
out:
    free(gaps);
    free(ref);
    free(st);
    PQclear(r);
    PQfinish(c);
}

/* Runs `prompt` n times one after the other and prints everything about them. */
static bool scenario_sequential(const char *key, const char *title, const char *prompt, int n,
                                const baselines *b)
{
    printf("\n(a) %s: %d sequential runs, POST /api/agent/initiate -> terminal SSE event\n", title,
           n);
    account acc;
    if (!account_new(&acc))
        return false;
    run_timing *t = calloc((size_t)n, sizeof *t);
    int64_t *v = calloc((size_t)n * 7, sizeof *v);
    bool ok = t != NULL && v != NULL;
    for (int i = 0; ok && i < 3; i++) { /* warm-up, with an account of its own */
        account w;
        run_timing wt;
        ok = account_new(&w) && one_run(&w, prompt, &wt);
        account_free(&w);
    }
    cpu_snap c0, c1;
    cpu_take(&c0);
    for (int i = 0; ok && i < n; i++)
        ok = one_run(&acc, prompt, &t[i]);
    cpu_take(&c1);
    int nrows = 0;
    run_row *rows = ok ? load_runs(acc.id, &nrows) : NULL;
    if (ok && (rows == NULL || nrows != n)) {
        kx_bench_fail("%s: %d runs in Postgres, want %d", key, nrows, n);
        ok = false;
    }
    if (ok) {
        int64_t *total = v, *post = v + n, *p_tx = v + 2 * n, *p_disp = v + 3 * n,
                *p_claim = v + 4 * n, *p_run = v + 5 * n, *p_end = v + 6 * n;
        const run_row *r0 = NULL;
        size_t events = 0;
        for (int i = 0; ok && i < n; i++) {
            const run_row *r = find_row(rows, nrows, t[i].run_id);
            if (r == NULL || strcmp(r->status, "completed") != 0 || r->dispatched == 0 ||
                r->started == 0 || r->completed == 0) {
                kx_bench_fail("%s: run %s is not completed with all timestamps in Postgres", key,
                              t[i].run_id);
                ok = false;
                break;
            }
            if (r0 == NULL) {
                r0 = r;
                events = t[i].events;
            } else if (r->rows != r0->rows || r->llm_calls != r0->llm_calls) {
                printf("  note: run %s wrote %d rows / %d LLM calls (first run: %d / %d)\n", r->id,
                       r->rows, r->llm_calls, r0->rows, r0->llm_calls);
            }
            total[i] = t[i].total_us;
            post[i] = t[i].post_us;
            p_tx[i] = r->created - t[i].start_wall_us;
            p_disp[i] = r->dispatched - r->created;
            p_claim[i] = r->started - r->dispatched;
            p_run[i] = r->completed - r->started;
            p_end[i] = t[i].end_wall_us - r->completed;
        }
        if (ok) {
            stats st = stats_of(total, n), sp = stats_of(post, n);
            print_stats("run latency (client: POST -> terminal)", &st);
            print_stats("  of which POST /api/agent/initiate", &sp);
            char k[96];
            snprintf(k, sizeof k, "%s.latency", key);
            result_stats(k, &st);
            snprintf(k, sizeof k, "%s.post", key);
            result_stats(k, &sp);
            double x_nats = (double)st.p50 / (double)b->nats.p50;
            double x_pg = (double)st.p50 / (double)b->pg_commit.p50;
            double x_http = (double)st.p50 / (double)b->http.p50;
            printf("  p50 run ~ %.0f x NATS RTT ~ %.1f x Postgres commit ~ %.1f x HTTP floor\n",
                   x_nats, x_pg, x_http);
            snprintf(k, sizeof k, "%s.x_nats_rtt", key);
            kx_bench_result(k, x_nats, "x");
            snprintf(k, sizeof k, "%s.x_pg_commit", key);
            kx_bench_result(k, x_pg, "x");

            printf("  each run (counted from Postgres): %d messages inserted by the runner, %d "
                   "LLM call(s), %d tool call(s); %zu SSE events\n",
                   r0->rows, r0->llm_calls, r0->tools, events);
            path_model m = model_from(r0);
            printf("    critical path and its ideal sum:\n");
            int64_t ideal = print_model(&m, b);
            char a1[32], a2[32];
            printf("    measured p50 %s = %.2f x the ideal sum %s\n", dur(a1, st.p50),
                   (double)st.p50 / (double)ideal, dur(a2, ideal));
            snprintf(k, sizeof k, "%s.ideal", key);
            kx_bench_result(k, (double)ideal, "us");
            snprintf(k, sizeof k, "%s.x_ideal", key);
            kx_bench_result(k, (double)st.p50 / (double)ideal, "x");

            struct {
                const char *what, *name;
                int64_t *v;
            } phases[] = {
                {"client POST start -> gateway transaction", "post_to_tx", p_tx},
                {"transaction -> scheduler dispatched_at", "tx_to_dispatch", p_disp},
                {"dispatched -> runner claim (started_at)", "dispatch_to_claim", p_claim},
                {"claim -> finish (completed_at): the runner", "runner", p_run},
                {"finish -> client got the terminal event", "finish_to_client", p_end},
            };
            printf("    time by phase (p50; Postgres now() vs client wall clock, same host):\n");
            for (size_t i = 0; i < sizeof phases / sizeof phases[0]; i++) {
                int64_t med = median_of(phases[i].v, n);
                printf("      %-46s %9s  (%4.1f %%)\n", phases[i].what, dur(a1, med),
                       100.0 * (double)med / (double)st.p50);
                snprintf(k, sizeof k, "%s.phase.%s", key, phases[i].name);
                kx_bench_result(k, (double)med, "us");
            }
            int runner_db = 1 + r0->rows + 1; /* claim, inserts, finish */
            int64_t db_us = runner_db * b->pg_commit.p50 + m.selects * b->pg_select.p50;
            int64_t run_med = median_of(p_run, n);
            printf("    the runner's synchronous Postgres work (%d commits + %d reads at baseline "
                   "p50) ~ %s = %.0f %% of its phase %s\n",
                   runner_db, m.selects, dur(a1, db_us), 100.0 * (double)db_us / (double)run_med,
                   dur(a2, run_med));
            snprintf(k, sizeof k, "%s.runner_db_share", key);
            kx_bench_result(k, 100.0 * (double)db_us / (double)run_med, "%");
            print_runner_steps(key, acc.id, rows, nrows, run_med);
            printf("    CPU per run, by process (%d runs, from /proc/<pid>/task/*/schedstat):\n",
                   n);
            print_cpu(key, &c0, &c1, n);
        }
    }
    free(rows);
    free(t);
    free(v);
    account_free(&acc);
    return ok;
}

/* ==== (b) throughput ======================================================================== */

/* A submitter's POSTs: the same request bytes as initiate() (what curl sent: Host, Accept, the
 * token, the form), written with one send on a plain socket and the answer read by
 * Content-Length. libcurl's machinery per POST (its multi loop, poll, header callbacks) was
 * ~30 % of the bench client's CPU, and the client's CPU counts against the machine's per run.
 * Each submitter keeps its connection, as a browser or a proxy in front of the API does
 * (HTTP/1.1 keep-alive), unless --no-keep-alive: then one connection per POST, closed by the
 * client once the answer is in (what the gateway saw from bench passes before keep-alive was
 * the default). Every send and receive has a 10 s deadline. */
static bool g_keep_alive = true;

#define POSTER_TIMEOUT_S 10
#define POSTER_RESP_MAX 16384

typedef struct poster {
    int fd; /* the connection; -1: none open */
    struct sockaddr_in addr;
    char *req; /* head and body */
    size_t req_len;
    char resp[POSTER_RESP_MAX + 1];
    size_t resp_len;
} poster;

static void poster_close(poster *p)
{
    if (p->fd >= 0)
        close(p->fd);
    p->fd = -1;
}

static void poster_free(poster *p)
{
    poster_close(p);
    free(p->req);
    p->req = NULL;
}

static bool poster_init(poster *p, const account *a, const char *prompt)
{
    memset(p, 0, sizeof *p);
    p->fd = -1;
    p->addr.sin_family = AF_INET;
    p->addr.sin_port = htons(g_stack->http_port);
    p->addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    const char *pairs[] = {"prompt", prompt, NULL};
    size_t body_len = 0;
    char *body = kx_th_form_urlencoded(pairs, &body_len);
    if (body == NULL)
        return false;
    char head[1024];
    int n = snprintf(head, sizeof head,
                     "POST /api/agent/initiate HTTP/1.1\r\nHost: 127.0.0.1:%u\r\nAccept: */*\r\n"
                     "%s\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                     "Content-Length: %zu\r\n\r\n",
                     (unsigned)g_stack->http_port, a->auth, body_len);
    if (n > 0 && (size_t)n < sizeof head)
        p->req = malloc((size_t)n + body_len);
    if (p->req != NULL) {
        memcpy(p->req, head, (size_t)n);
        memcpy(p->req + n, body, body_len);
        p->req_len = (size_t)n + body_len;
    }
    free(body);
    return p->req != NULL;
}

static bool poster_connect(poster *p)
{
    p->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (p->fd < 0)
        return false;
    int one = 1;
    struct timeval tv = {.tv_sec = POSTER_TIMEOUT_S};
    if (setsockopt(p->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0 ||
        setsockopt(p->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0 ||
        setsockopt(p->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) != 0 ||
        connect(p->fd, (struct sockaddr *)&p->addr, sizeof p->addr) != 0) {
        poster_close(p);
        return false;
    }
    return true;
}

/* The value of header name (with its ": ") in the head [s, end), or NULL. */
static const char *head_value(const char *s, const char *end, const char *name)
{
    size_t n = strlen(name);
    for (const char *l = strstr(s, "\r\n"); l != NULL && l + 2 < end; l = strstr(l + 2, "\r\n"))
        if (strncasecmp(l + 2, name, n) == 0)
            return l + 2 + n;
    return NULL;
}

/* Sends the request and reads one answer into p->resp. *status: the HTTP status; *body: where
 * the body starts; *keep: whether the server keeps the connection; *closed: the server had
 * closed the connection (reset, or end of stream) — not a timeout. Returns how many bytes came
 * back before an error, or -1 when the answer is complete. */
static ssize_t poster_exchange(poster *p, long *status, const char **body, size_t *body_len,
                               bool *keep, bool *closed)
{
    *closed = false;
    for (size_t sent = 0; sent < p->req_len;) {
        ssize_t w = send(p->fd, p->req + sent, p->req_len - sent, MSG_NOSIGNAL);
        if (w <= 0) {
            *closed = w < 0 && (errno == EPIPE || errno == ECONNRESET);
            return 0;
        }
        sent += (size_t)w;
    }
    p->resp_len = 0;
    const char *head_end = NULL;
    size_t want = 0;
    for (;;) {
        if (p->resp_len == POSTER_RESP_MAX)
            return (ssize_t)p->resp_len; /* larger than any answer of this route */
        ssize_t r = recv(p->fd, p->resp + p->resp_len, POSTER_RESP_MAX - p->resp_len, 0);
        if (r <= 0) {
            *closed = r == 0 || errno == ECONNRESET;
            return (ssize_t)p->resp_len;
        }
        p->resp_len += (size_t)r;
        p->resp[p->resp_len] = '\0';
        if (head_end == NULL) {
            char *e = strstr(p->resp, "\r\n\r\n");
            if (e == NULL)
                continue;
            head_end = e + 4;
            const char *cl = head_value(p->resp, head_end, "Content-Length: ");
            if (cl == NULL || strncmp(p->resp, "HTTP/1.1 ", 9) != 0)
                return (ssize_t)p->resp_len; /* not an answer this client reads */
            *status = strtol(p->resp + 9, NULL, 10);
            want = (size_t)(head_end - p->resp) + strtoul(cl, NULL, 10);
            const char *conn = head_value(p->resp, head_end, "Connection: ");
            *keep = conn == NULL || strncasecmp(conn, "close", 5) != 0;
        }
        if (p->resp_len >= want) {
            *body = head_end;
            *body_len = want - (size_t)(head_end - p->resp);
            return -1;
        }
    }
}

/* One POST /api/agent/initiate; the run's id into run_id. A kept connection that the server
 * had closed meanwhile (closed, and nothing came back) is opened again once; a timeout is not
 * retried (the server may have taken the POST). */
static bool poster_post(poster *p, char run_id[KX_UUID_LEN + 1])
{
    long status = 0;
    const char *body = NULL;
    size_t body_len = 0;
    bool keep = false, closed = false;
    ssize_t got = 0;
    for (int attempt = 0; attempt < 2; attempt++) {
        bool reused = p->fd >= 0;
        if (!reused && !poster_connect(p))
            break;
        got = poster_exchange(p, &status, &body, &body_len, &keep, &closed);
        if (got != 0 || !reused || !closed)
            break;
        poster_close(p);
    }
    bool ok = got < 0 && status == 200 && kx_th_initiate_run_id(body, body_len, run_id);
    if (got < 0 && (!keep || !g_keep_alive))
        poster_close(p);
    if (!ok) {
        kx_bench_fail("POST /api/agent/initiate: %s, status %ld: %.*s",
                      got < 0 ? "answered" : "no complete answer", status, (int)p->resp_len,
                      p->resp);
        poster_close(p);
    }
    return ok;
}

typedef struct submitter {
    pthread_t thread;
    const account *acc;
    const char *prompt;
    int count;
    int64_t *post_us; /* count entries */
    int ok;
} submitter;

static void *submit_main(void *arg)
{
    submitter *s = arg;
    poster p;
    if (!poster_init(&p, s->acc, s->prompt)) {
        kx_bench_fail("cannot set up a submitter's HTTP client");
        return NULL;
    }
    for (int i = 0; i < s->count; i++) {
        char id[KX_UUID_LEN + 1];
        int64_t t0 = kx_mono_us();
        if (!poster_post(&p, id))
            break;
        s->post_us[i] = kx_mono_us() - t0;
        s->ok++;
    }
    poster_free(&p);
    return NULL;
}

/* Submits n runs of prompt from `threads` threads at once and waits for the POSTs (not for the
 * runs). post_us gets each POST's duration (n entries, may be NULL). Returns how many were
 * accepted. */
static int submit_batch(const account *acc, const char *prompt, int n, int threads,
                        int64_t *post_us)
{
    submitter *subs = calloc((size_t)threads, sizeof *subs);
    int64_t *scratch = post_us != NULL ? NULL : calloc((size_t)n, sizeof *scratch);
    int64_t *out = post_us != NULL ? post_us : scratch;
    if (subs == NULL || out == NULL) {
        free(subs);
        free(scratch);
        return 0;
    }
    int given = 0;
    for (int i = 0; i < threads; i++) {
        subs[i].acc = acc;
        subs[i].prompt = prompt;
        subs[i].count = n / threads + (i < n % threads ? 1 : 0);
        subs[i].post_us = out + given;
        given += subs[i].count;
        if (pthread_create(&subs[i].thread, NULL, submit_main, &subs[i]) != 0) {
            kx_bench_fail("cannot start a submitter thread");
            subs[i].count = -1;
        }
    }
    int submitted = 0;
    for (int i = 0; i < threads; i++) {
        if (subs[i].count >= 0)
            pthread_join(subs[i].thread, NULL);
        submitted += subs[i].ok;
    }
    free(subs);
    free(scratch);
    return submitted;
}

/* Counts the account's runs: all of them, and those queued or running. */
static bool count_runs(PGconn *c, const char *account_id, int *all, int *active, int *running)
{
    const char *sql = "SELECT count(*), count(*) FILTER (WHERE status IN ('queued', 'running')), "
                      "count(*) FILTER (WHERE status = 'running') "
                      "FROM agent_runs WHERE account_id = $1::uuid";
    const char *params[] = {account_id};
    PGresult *r = PQexecParams(c, sql, 1, NULL, params, NULL, NULL, 0);
    bool ok = PQresultStatus(r) == PGRES_TUPLES_OK;
    if (ok) {
        /* a count that does not read back is an error, not "0 runs left" */
        *all = col_int(r, 0, 0);
        *active = col_int(r, 0, 1);
        *running = col_int(r, 0, 2);
        ok = *all >= 0 && *active >= 0 && *running >= 0;
    }
    PQclear(r);
    return ok;
}

/* Whether the account has a run queued or running: 1, 0, or -1 on an error. One probe of each
 * of the scheduler's two indexes that hold them (active: running or dispatched; waiting), not
 * a count of the account's runs: the batch's poll below runs every 20 ms, and the count read
 * every run of the account each time (~2.3 ms of Postgres per poll, ~0.4 ms per run of a
 * 2 000-run batch with its planning, counted in the stack's Postgres CPU). Prepared once per
 * connection (ANY_LEFT_SQL below): not parsed and planned again at every poll. */
#define ANY_LEFT_SQL                                                           \
    "SELECT EXISTS (SELECT 1 FROM agent_runs WHERE account_id = $1::uuid "     \
    "AND (status = 'running' OR (status = 'queued' AND dispatched_at IS NOT "  \
    "NULL))) OR EXISTS (SELECT 1 FROM agent_runs WHERE account_id = $1::uuid " \
    "AND status = 'queued' AND dispatched_at IS NULL)"
static int any_left(PGconn *c, const char *account_id)
{
    const char *params[] = {account_id};
    PGresult *r = PQexecPrepared(c, "bench_any_left", 1, params, NULL, NULL, 0);
    int left = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1
        ? strcmp(PQgetvalue(r, 0, 0), "t") == 0
        : -1;
    PQclear(r);
    return left;
}

/* Polls Postgres every 20 ms until the account has `want` runs and none queued or running
 * (runs/s comes from the runs' own timestamps, not from when this poll sees the end; the CPU
 * window closes at most one period after it). */
static bool wait_all_done(const char *account_id, int want, int64_t deadline_mono_ms)
{
    PGconn *c = pg_connect();
    if (c == NULL)
        return false;
    PGresult *prep = PQprepare(c, "bench_any_left", ANY_LEFT_SQL, 1, NULL);
    bool prepared = PQresultStatus(prep) == PGRES_COMMAND_OK;
    PQclear(prep);
    if (!prepared) {
        kx_bench_fail("cannot prepare the batch's poll: %s", PQerrorMessage(c));
        PQfinish(c);
        return false;
    }
    bool done = false;
    while (!done && kx_mono_ms() < deadline_mono_ms) {
        int all = 0, active = 0, running = 0;
        done = any_left(c, account_id) == 0 &&
            count_runs(c, account_id, &all, &active, &running) && all == want && active == 0;
        if (!done)
            usleep(20000);
    }
    PQfinish(c);
    return done;
}

/* The runs of a finished batch: checks they all completed; fills per-run latency and phases
 * (each n entries) and the last completion time. NULL on failure. */
static run_row *batch_rows(const char *key, const char *account_id, int n, int64_t *lat,
                           int64_t *ph, int64_t *last_completed)
{
    int nrows = 0;
    run_row *rows = load_runs(account_id, &nrows);
    if (rows == NULL || nrows != n) {
        kx_bench_fail("%s: %d runs in Postgres, want %d", key, nrows, n);
        free(rows);
        return NULL;
    }
    int completed = 0;
    *last_completed = 0;
    for (int i = 0; i < n; i++) {
        if (strcmp(rows[i].status, "completed") == 0)
            completed++;
        if (rows[i].completed > *last_completed)
            *last_completed = rows[i].completed;
        lat[i] = rows[i].completed - rows[i].created;
        ph[i] = rows[i].dispatched - rows[i].created;
        ph[n + i] = rows[i].started - rows[i].dispatched;
        ph[2 * n + i] = rows[i].completed - rows[i].started;
    }
    if (completed != n) {
        kx_bench_fail("%s: %d of %d runs completed", key, completed, n);
        free(rows);
        return NULL;
    }
    return rows;
}

static void print_phases(const char *key, int64_t *ph, int n)
{
    char k[96];
    stats s1 = stats_of(ph, n), s2 = stats_of(ph + n, n), s3 = stats_of(ph + 2 * n, n);
    print_stats("  phase: created -> dispatched (scheduler)", &s1);
    print_stats("  phase: dispatched -> claimed (runner)", &s2);
    print_stats("  phase: claimed -> completed (runner)", &s3);
    snprintf(k, sizeof k, "%s.phase.tx_to_dispatch", key);
    result_stats(k, &s1);
    snprintf(k, sizeof k, "%s.phase.dispatch_to_claim", key);
    result_stats(k, &s2);
    snprintf(k, sizeof k, "%s.phase.runner", key);
    result_stats(k, &s3);
}

/* The last stream sequence of KX_RUN_EVENTS (every kx.run.ev message takes one, a batch of
 * events too): what the event stream cost NATS in messages. 0 when NATS does not answer. */
static uint64_t events_last_seq(void)
{
    kx_bus *bus = NULL;
    uint64_t seq = 0;
    if (kx_bus_connect(g_stack->nats.url, "bench-evseq", &bus) != KX_OK)
        return 0;
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    if (bus_wait_connected(bus) &&
        js_GetStreamInfo(&si, kx_bus_js(bus), KX_STREAM_EVENTS, NULL, &jerr) == NATS_OK) {
        seq = si->State.LastSeq;
        jsStreamInfo_Destroy(si);
    }
    kx_bus_close(bus, 1000);
    return seq;
}

/* --limited: the account's quota counters (migrations 016/017) hold what its runs did — the
 * runs it made today and the tokens they used — or the benchmark fails. */
static void check_counted(const char *key, const char *account_id)
{
    const char *p[] = {account_id};
    PGresult *res = kx_th_sql(
        g_stack,
        "SELECT (SELECT count(*) FROM agent_runs WHERE account_id = $1::uuid "
        "  AND created_at >= kx_day_start(now())), "
        " (SELECT coalesce(sum(amount), 0) FROM account_usage WHERE account_id = $1::uuid "
        "  AND kind = 'runs_day' AND period_start = kx_day_start(now())), "
        " (SELECT coalesce(sum(tokens_used), 0) FROM agent_runs WHERE account_id = $1::uuid), "
        " (SELECT coalesce(sum(amount), 0) FROM account_usage WHERE account_id = $1::uuid "
        "  AND kind = 'tokens_month')",
        1, p);
    if (res == NULL || PQntuples(res) != 1) {
        kx_bench_fail("%s: the account's quota counters could not be read", key);
        PQclear(res);
        return;
    }
    long long runs = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    long long runs_counted = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
    long long tokens = strtoll(PQgetvalue(res, 0, 2), NULL, 10);
    long long tokens_counted = strtoll(PQgetvalue(res, 0, 3), NULL, 10);
    PQclear(res);
    printf("  counted (account with limits): %lld runs today (%lld in agent_runs), %lld tokens "
           "this month (%lld in agent_runs)\n",
           runs_counted, runs, tokens_counted, tokens);
    if (runs_counted != runs || tokens_counted != tokens || tokens == 0)
        kx_bench_fail("%s: the quota counters do not match the account's runs", key);
}

/* What one throughput batch measured, for --passes: runs/s, CPU per run of the stack (every
 * process but this one) and of each process, write transactions per run, the machine's
 * 1-minute load average when the batch started (the benchmark's own processes count in it), and
 * the CPU used outside the stack and this client while it ran (the kernel's own work and other
 * processes, % of one core: print_cpu's "not accounted"): the sign of a disturbed pass. */
typedef struct pass_fig {
    double rps, stack_ms, commits, load1, others_pct;
    double proc_ms[P_COUNT];
} pass_fig;

static double load_avg1(void)
{
    double l = -1;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f != NULL) {
        if (fscanf(f, "%lf", &l) != 1) /* NOLINT(cert-err34-c): kernel-written */
            l = -1;
        fclose(f);
    }
    return l;
}

/* fig (may be NULL) gets the batch's figures when it succeeded. */
static bool scenario_throughput(const char *key, const char *title, const char *prompt, int n,
                                int threads, const baselines *b, pass_fig *fig)
{
    double load1 = load_avg1();
    printf("\n(b) %s: %d concurrent `%s` runs, submitted by %d threads%s%s\n", title, n,
           strcmp(prompt, SAY_PROMPT) == 0         ? "say hi"
               : strcmp(prompt, TASKS_PROMPT) == 0 ? "view_tasks step (2 model turns, 1 tool call)"
                                                   : prompt,
           threads, g_keep_alive ? " (keep-alive connections)" : " (one connection per POST)",
           g_limited ? " (accounts with limits)" : "");
    /* warm-up batch (its own account): connections, prepared statements, caches */
    account warm;
    int nwarm = n < 50 ? n : 50;
    bool ok = account_new(&warm) && submit_batch(&warm, prompt, nwarm, threads, NULL) == nwarm &&
        wait_all_done(warm.id, nwarm, kx_mono_ms() + BATCH_TIMEOUT_MS);
    account_free(&warm);
    if (!ok) {
        kx_bench_fail("%s: the warm-up batch of %d runs did not complete", key, nwarm);
        return false;
    }
    account acc;
    if (!account_new(&acc))
        return false;
    int64_t *post = calloc((size_t)n, sizeof *post);
    int64_t *lat = calloc((size_t)n, sizeof *lat);
    int64_t *ph = calloc((size_t)n * 3, sizeof *ph);
    ok = post != NULL && lat != NULL && ph != NULL;
    sampler smp;
    cpu_snap c0, c1;
    int64_t start_wall = kx_now_us(), t0 = kx_mono_us(), submitted_us = 0, sampled_us = 0;
    double runner_pg = -1;
    int64_t xid0 = pg_next_xid(), xid1 = -1;
    uint64_t evseq0 = events_last_seq(), evseq1 = 0;
    if (ok) {
        cpu_take(&c0);
        ok = sampler_start(&smp);
    }
    if (ok) {
        int submitted = submit_batch(&acc, prompt, n, threads, post);
        submitted_us = kx_mono_us() - t0;
        if (submitted != n) {
            kx_bench_fail("%s: only %d of %d runs were submitted", key, submitted, n);
            ok = false;
        }
        if (ok && !wait_all_done(acc.id, n, kx_mono_ms() + BATCH_TIMEOUT_MS)) {
            kx_bench_fail("%s: the runs did not all end within %d s", key,
                          BATCH_TIMEOUT_MS / 1000);
            ok = false;
        }
        cpu_take(&c1);
        xid1 = pg_next_xid();
        usleep(500 * 1000); /* the last terminal events: published after the finish commits */
        evseq1 = events_last_seq();
        printf("  loop threads while the batch ran:\n");
        runner_pg = sampler_stop(&smp, key);
        sampled_us = smp.stop_us - smp.start_us;
    }
    int64_t last = 0;
    run_row *rows = ok ? batch_rows(key, acc.id, n, lat, ph, &last) : NULL;
    if (rows != NULL && g_limited)
        check_counted(key, acc.id);
    if (rows != NULL) {
        int64_t wall = last - start_wall;
        double rps = (double)n / ((double)wall / 1e6);
        char a[32], k[96];
        printf("  all %d completed; first POST -> last completion %s => %.1f runs/s\n", n,
               dur(a, wall), rps);
        printf("  submitting took %s (%.0f POST/s)\n", dur(a, submitted_us),
               (double)n / ((double)submitted_us / 1e6));
        snprintf(k, sizeof k, "%s.runs_per_s", key);
        kx_bench_result(k, rps, "runs/s");
        snprintf(k, sizeof k, "%s.wall", key);
        kx_bench_result(k, (double)wall, "us");
        snprintf(k, sizeof k, "%s.post_per_s", key);
        kx_bench_result(k, (double)n / ((double)submitted_us / 1e6), "POST/s");
        stats sl = stats_of(lat, n), sp = stats_of(post, n);
        print_stats("per-run latency (DB: created -> completed)", &sl);
        print_stats("POST /api/agent/initiate under load", &sp);
        snprintf(k, sizeof k, "%s.latency", key);
        result_stats(k, &sl);
        snprintf(k, sizeof k, "%s.post", key);
        result_stats(k, &sp);
        print_phases(key, ph, n);
        if (xid0 > 0 && xid1 >= xid0) {
            printf("  write transactions (commits) of the whole stack: %lld, %.1f per run\n",
                   (long long)(xid1 - xid0), (double)(xid1 - xid0) / n);
            snprintf(k, sizeof k, "%s.commits_per_run", key);
            kx_bench_result(k, (double)(xid1 - xid0) / n, "commits");
        }
        if (evseq0 > 0 && evseq1 >= evseq0) {
            printf("  kx.run.ev messages (KX_RUN_EVENTS sequences) of the batch: %llu, %.1f per "
                   "run\n",
                   (unsigned long long)(evseq1 - evseq0), (double)(evseq1 - evseq0) / n);
            snprintf(k, sizeof k, "%s.ev_msgs_per_run", key);
            kx_bench_result(k, (double)(evseq1 - evseq0) / n, "messages");
        }
        /* against the baseline: one connection committing one row at a time */
        printf("  vs the Postgres INSERT commit baseline (p50 %lld us, one connection: %.0f "
               "commits/s): %.2f x; each run wrote %d rows\n",
               (long long)b->pg_commit.p50, 1e6 / (double)b->pg_commit.p50,
               rps / (1e6 / (double)b->pg_commit.p50), rows[0].rows);
        snprintf(k, sizeof k, "%s.x_commit_rate", key);
        kx_bench_result(k, rps / (1e6 / (double)b->pg_commit.p50), "x");
        /* what the statements of a run would cost one at a time on one connection (the old
         * runner did exactly that on its loop thread) */
        const run_row *r0 = &rows[0];
        int per_run = 1 + r0->rows + 1;
        int64_t floor_us =
            (int64_t)n * (per_run * b->pg_commit.p50 + (r0->llm_calls + 1) * b->pg_select.p50);
        printf("  a run makes %d writes + %d reads; one at a time on one connection, %d runs "
               "x that at baseline p50 = %s (%.0f %% of the batch's wall time), a ceiling of "
               "%.0f runs/s (the runner now batches them on %s connections of its own)\n",
               per_run, r0->llm_calls + 1, n, dur(a, floor_us),
               100.0 * (double)floor_us / (double)wall, (double)n / ((double)floor_us / 1e6),
               getenv("KX_RUNNER_DB_CONNS") ? getenv("KX_RUNNER_DB_CONNS") : "4");
        snprintf(k, sizeof k, "%s.runner_db_ceiling", key);
        kx_bench_result(k, (double)n / ((double)floor_us / 1e6), "runs/s");
        snprintf(k, sizeof k, "%s.runner_db_share", key);
        kx_bench_result(k, 100.0 * (double)floor_us / (double)wall, "%");
        if (runner_pg >= 0) {
            char c2[32];
            int trips = n * (per_run + r0->llm_calls + 1);
            double blocked_us = runner_pg * (double)sampled_us;
            printf("  measured: the runner's loop sat in poll() for libpq %.0f %% of %s = %s, "
                   "%.0f us per round trip (%d of them) = %.1f x the idle baseline\n",
                   100.0 * runner_pg, dur(a, sampled_us), dur(c2, (int64_t)blocked_us),
                   blocked_us / trips, trips,
                   blocked_us / trips /
                       ((double)(b->pg_commit.p50 * per_run +
                                 b->pg_select.p50 * (r0->llm_calls + 1)) /
                        (per_run + r0->llm_calls + 1)));
            snprintf(k, sizeof k, "%s.runner_pg_trip_under_load", key);
            kx_bench_result(k, blocked_us / trips, "us");
        }
        printf("  CPU while the batch ran (submit -> all done, %s):\n",
               dur(a, c1.wall_us - c0.wall_us));
        print_cpu(key, &c0, &c1, -n);
        if (fig != NULL) {
            memset(fig, 0, sizeof *fig);
            fig->rps = rps;
            fig->load1 = load1;
            fig->commits = xid0 > 0 && xid1 >= xid0 ? (double)(xid1 - xid0) / n : -1;
            double all_ms = 0;
            for (int i = 0; i < P_COUNT; i++) {
                fig->proc_ms[i] = (double)(c1.run_ns[i] - c0.run_ns[i]) / 1e6 / n;
                all_ms += fig->proc_ms[i];
                if (i != P_BENCH)
                    fig->stack_ms += fig->proc_ms[i];
            }
            double total = (double)(c1.machine_total - c0.machine_total);
            double wall_ms = (double)(c1.wall_us - c0.wall_us) / 1000.0;
            double busy_ms = total > 0 ? (double)(c1.machine_busy - c0.machine_busy) / total *
                    (double)sysconf(_SC_NPROCESSORS_ONLN) * wall_ms
                                       : 0.0;
            fig->others_pct = wall_ms > 0 ? 100.0 * clamp0(busy_ms - all_ms * n) / wall_ms : 0;
        }
    } else {
        ok = false;
    }
    free(rows);
    free(post);
    free(lat);
    free(ph);
    account_free(&acc);
    return ok;
}

/* ==== (c) SSE fan-out ======================================================================== */

typedef struct reader {
    pthread_t thread;
    pthread_barrier_t *go;
    const account *acc;
    const char *path;
    int64_t start_us, end_us;
    size_t events;
    bool ok;
} reader;

static void *reader_main(void *arg)
{
    reader *r = arg;
    pthread_barrier_wait(r->go);
    kx_th_sse sse;
    r->start_us = kx_mono_us();
    kx_err err = kx_th_sse_read(g_stack, r->path, r->acc->token, STREAM_TIMEOUT_MS, &sse);
    r->end_us = kx_mono_us();
    r->events = sse.n;
    r->ok = err == KX_OK && sse.status == 200 && sse.terminal && sse.n > 0 &&
        is_completed(sse.data[sse.n - 1]);
    kx_th_sse_free(&sse);
    return NULL;
}

static bool scenario_fanout(int nreaders)
{
    printf("\n(c) SSE fan-out: %d concurrent readers replay one finished run\n", nreaders);
    account acc;
    if (!account_new(&acc))
        return false;
    /* a run with a long answer: FANOUT_WORDS words, 3 per chunk event */
    size_t cap = 8 + FANOUT_WORDS * 8;
    char *prompt = malloc(cap);
    bool ok = prompt != NULL;
    size_t len = 0;
    if (ok) {
        len = (size_t)snprintf(prompt, cap, "say");
        for (int i = 0; i < FANOUT_WORDS && len + 8 < cap; i++)
            len += (size_t)snprintf(prompt + len, cap - len, " w%04d", i);
    }
    run_timing t;
    ok = ok && one_run(&acc, prompt, &t);
    free(prompt);
    char path[128];
    snprintf(path, sizeof path, "/api/agent-run/%s/stream", t.run_id);
    /* baseline: one reader alone, 20 times */
    int64_t single[20];
    size_t events = 0;
    for (int i = 0; ok && i < 20; i++) {
        int64_t t0 = kx_mono_us();
        ok = read_stream(&acc, t.run_id, &events);
        single[i] = kx_mono_us() - t0;
    }
    reader *rs = calloc((size_t)nreaders, sizeof *rs);
    pthread_barrier_t go;
    int started = 0;
    if (ok && rs != NULL && pthread_barrier_init(&go, NULL, (unsigned)nreaders + 1) == 0) {
        for (int i = 0; i < nreaders; i++) {
            rs[i].go = &go;
            rs[i].acc = &acc;
            rs[i].path = path;
            if (pthread_create(&rs[i].thread, NULL, reader_main, &rs[i]) != 0)
                break;
            started++;
        }
        if (started < nreaders) {
            /* cannot release a barrier that counts threads we could not start */
            fprintf(stderr, "bench_run: only %d reader threads started; aborting\n", started);
            abort();
        }
        cpu_snap c0, c1;
        cpu_take(&c0);
        int64_t t0 = kx_mono_us();
        pthread_barrier_wait(&go);
        int64_t last = t0, *lat = calloc((size_t)nreaders, sizeof *lat);
        int good = 0;
        size_t delivered = 0;
        for (int i = 0; i < nreaders; i++) {
            pthread_join(rs[i].thread, NULL);
            if (rs[i].end_us > last)
                last = rs[i].end_us;
            good += rs[i].ok && rs[i].events == events;
            delivered += rs[i].events;
            if (lat != NULL)
                lat[i] = rs[i].end_us - rs[i].start_us;
        }
        cpu_take(&c1);
        pthread_barrier_destroy(&go);
        int64_t wall = last - t0;
        if (good != nreaders) {
            kx_bench_fail("fan-out: %d of %d readers got the whole stream (%zu events)", good,
                          nreaders, events);
            ok = false;
        }
        stats s1 = stats_of(single, 20), sr = stats_of(lat, lat ? nreaders : 0);
        char a[32];
        printf("  the run has %zu events on its stream\n", events);
        print_stats("baseline: one reader alone (replay)", &s1);
        print_stats("each of the concurrent readers", &sr);
        printf("  all %d readers done in %s: %zu events delivered, %.0f events/s; "
               "%.1f x one reader's p50, %.2f x the time of %d readers one after another\n",
               nreaders, dur(a, wall), delivered, (double)delivered / ((double)wall / 1e6),
               (double)wall / (double)s1.p50, (double)wall / ((double)nreaders * (double)s1.p50),
               nreaders);
        printf("  CPU while the readers ran:\n");
        print_cpu("fanout", &c0, &c1, 0);
        result_stats("fanout.single", &s1);
        result_stats("fanout.reader", &sr);
        kx_bench_result("fanout.wall", (double)wall, "us");
        kx_bench_result("fanout.events_per_s", (double)delivered / ((double)wall / 1e6),
                        "events/s");
        kx_bench_result("fanout.x_single", (double)wall / (double)s1.p50, "x");
        kx_bench_result("fanout.x_serial", (double)wall / ((double)nreaders * (double)s1.p50),
                        "x");
        free(lat);
    } else if (ok) {
        kx_bench_fail("fan-out: cannot set up the readers");
        ok = false;
    }
    free(rs);
    account_free(&acc);
    return ok;
}

/* ==== (d) runs held at once ================================================================= */

/* VmRSS of pid in KiB (0 if unreadable). */
static long rss_kib(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    long kib = 0;
    while (f != NULL && fgets(line, sizeof line, f) != NULL)
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1) /* NOLINT(cert-err34-c): kernel-written */
            break;
    if (f != NULL)
        fclose(f);
    return kib;
}

/* Open file descriptors of pid, and how many of them are sockets (-1 if unreadable). */
static int fd_count(pid_t pid, int *sockets)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/fd", (int)pid);
    *sockets = 0;
    DIR *d = opendir(path);
    if (d == NULL)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        n++;
        char link[128], target[64];
        snprintf(link, sizeof link, "/proc/%d/fd/%.32s", (int)pid, e->d_name);
        ssize_t len = readlink(link, target, sizeof target - 1);
        if (len > 0) {
            target[len] = '\0';
            *sockets += strncmp(target, "socket:", 7) == 0;
        }
    }
    closedir(d);
    return n;
}

/* n runs whose LLM answer waits hold_ms: all of them in flight in the one runner at once, as
 * long-running agent runs are. What holding a run costs the runner: memory, descriptors, CPU. */
static bool scenario_held(int n, int threads, int hold_ms)
{
    printf("\n(d) %d runs held at once in one agent-runner: each LLM answer waits %d ms "
           "(demo-model `sleep`)\n",
           n, hold_ms);
    if (n <= 0) {
        kx_bench_fail("held: the number of runs must be positive, not %d", n);
        return false;
    }
    account acc;
    if (!account_new(&acc))
        return false;
    char prompt[64];
    snprintf(prompt, sizeof prompt, "sleep %d\nsay hi", hold_ms);
    pid_t runner = g_stack->procs[P_RUNNER].pid;
    long rss0 = rss_kib(runner), rss_demo0 = rss_kib(g_stack->procs[P_DEMO].pid);
    int socks0 = 0, socks1 = 0;
    int fds0 = fd_count(runner, &socks0);
    PGconn *c = pg_connect();
    int64_t t0 = kx_mono_us(), start_wall = kx_now_us();
    bool ok = c != NULL && submit_batch(&acc, prompt, n, threads, NULL) == n;
    int64_t submitted_us = kx_mono_us() - t0;
    /* wait until all are running (claimed, in their LLM call) */
    int all = 0, active = 0, running = 0, max_running = 0;
    int64_t all_running_us = -1;
    while (ok && kx_mono_us() - t0 < (int64_t)hold_ms * 1000) {
        if (!count_runs(c, acc.id, &all, &active, &running)) {
            ok = false;
            break;
        }
        if (running > max_running)
            max_running = running;
        if (running == n) {
            all_running_us = kx_mono_us() - t0;
            break;
        }
        usleep(5000);
    }
    char a[32], b[32];
    if (ok && all_running_us < 0) {
        kx_bench_fail("held: only %d of %d runs were running at once within %d ms", max_running, n,
                      hold_ms);
        ok = false;
    }
    cpu_snap h0, h1;
    long rss1 = 0, rss_demo1 = 0;
    int fds1 = 0, still = 0;
    int64_t window_ms = 0;
    if (ok) {
        /* a window in which every run is held: what holding costs */
        window_ms = (hold_ms * 1000 - (kx_mono_us() - t0)) / 1000 / 2;
        if (window_ms > 1000)
            window_ms = 1000;
        cpu_take(&h0);
        usleep((useconds_t)(window_ms > 0 ? window_ms : 1) * 1000);
        cpu_take(&h1);
        rss1 = rss_kib(runner);
        rss_demo1 = rss_kib(g_stack->procs[P_DEMO].pid);
        fds1 = fd_count(runner, &socks1);
        ok = count_runs(c, acc.id, &all, &active, &still);
    }
    if (c != NULL)
        PQfinish(c);
    if (ok && !wait_all_done(acc.id, n, kx_mono_ms() + BATCH_TIMEOUT_MS + hold_ms)) {
        kx_bench_fail("held: the runs did not all end");
        ok = false;
    }
    int64_t *lat = calloc((size_t)n, sizeof *lat), *ph = calloc((size_t)n * 3, sizeof *ph);
    int64_t last = 0;
    run_row *rows = ok && lat && ph ? batch_rows("held", acc.id, n, lat, ph, &last) : NULL;
    if (rows != NULL) {
        printf("  submitted in %s; all %d running at once %s after the first POST\n",
               dur(a, submitted_us), n, dur(b, all_running_us));
        printf("  while all were held (%lld ms window, %d still running at its end):\n",
               (long long)window_ms, still);
        printf("    agent-runner RSS %ld -> %ld KiB: %.1f KiB per held run (memory freed by "
               "earlier parts of this run is reused)\n",
               rss0, rss1, (double)(rss1 - rss0) / n);
        printf("    agent-runner descriptors %d -> %d, sockets %d -> %d: %.2f sockets per held "
               "run at most (one LLM connection each; idle ones from before are reused)\n",
               fds0, fds1, socks0, socks1, (double)socks1 / n);
        printf("    demo-model RSS %ld -> %ld KiB (event-driven: a few KiB per held connection)\n",
               rss_demo0, rss_demo1);
        print_cpu("held", &h0, &h1, 0);
        stats sl = stats_of(lat, n);
        print_stats("per-run latency (DB: created -> completed)", &sl);
        char c3[32];
        printf("  overhead over the %d ms wait: p50 %s, p99 %s; all done %s after the first "
               "POST\n",
               hold_ms, dur(a, sl.p50 - (int64_t)hold_ms * 1000),
               dur(b, sl.p99 - (int64_t)hold_ms * 1000), dur(c3, last - start_wall));
        kx_bench_result("held.all_done_after", (double)(last - start_wall), "us");
        print_phases("held", ph, n);
        kx_bench_result("held.all_running_after", (double)all_running_us, "us");
        kx_bench_result("held.runner_rss_per_run", (double)(rss1 - rss0) / n, "KiB");
        kx_bench_result("held.runner_sockets_per_run", (double)socks1 / n, "sockets");
        result_stats("held.latency", &sl);
        kx_bench_result("held.overhead.p50", (double)(sl.p50 - (int64_t)hold_ms * 1000), "us");
    } else {
        ok = false;
    }
    free(rows);
    free(lat);
    free(ph);
    account_free(&acc);
    return ok;
}

/* ==== (e) Postgres with durable commits ===================================================== */

static bool pg_show_on(PGconn *c, const char *name)
{
    char sql[64];
    snprintf(sql, sizeof sql, "SHOW %s", name);
    PGresult *r = PQexec(c, sql);
    bool on = PQresultStatus(r) == PGRES_TUPLES_OK && strcmp(PQgetvalue(r, 0, 0), "on") == 0;
    PQclear(r);
    return on;
}

/* Stops the stack's Postgres and starts it again on the same port with the durability
 * settings at their defaults (on); the services reconnect by themselves. The harness starts it
 * (kx_th_pg_up): `postgres` as this thread's child with a parent-death signal, so no
 * postmaster outlives the bench even when it is killed mid-way (pg_ctl start daemonized one). */
static bool pg_restart_durable(void)
{
    if (kx_th_pg_down(&g_stack->pg) != KX_OK) {
        kx_bench_fail("cannot stop Postgres");
        return false;
    }
    g_stack->pg.durable = true; /* KX_TH_PG_OPTS (e.g. pg_stat_statements) applies again */
    if (kx_th_pg_up(&g_stack->pg) != KX_OK) {
        kx_bench_fail("cannot start Postgres again with fsync on, see %s/pg.log", g_stack->pg.dir);
        return false;
    }
    PGconn *c = pg_connect();
    if (c == NULL)
        return false;
    bool ok = pg_show_on(c, "fsync") && pg_show_on(c, "synchronous_commit") &&
        pg_show_on(c, "full_page_writes");
    PQfinish(c);
    if (!ok) {
        kx_bench_fail(
            "Postgres restarted but fsync/synchronous_commit/full_page_writes are not all on");
        return false;
    }
    /* the services notice the restart on their next statement; /api/health asks them all */
    for (int i = 0; i < 100; i++) {
        long status = 0;
        json_t *v = kx_th_json(g_stack, "GET", "/api/health", NULL, NULL, &status);
        json_decref(v);
        if (status == 200)
            return true;
        usleep(100000);
    }
    kx_bench_fail("the stack is not healthy 10 s after the Postgres restart");
    return false;
}

/* Restarts g_stack's Postgres durable and measures its commit and SELECT 1 baselines into b
 * (the rest of b is fast's); key prefixes the result lines ("durable"). */
static bool durable_baselines(const char *key, const baselines *fast, baselines *b)
{
    if (!pg_restart_durable())
        return false;
    int64_t *commit = calloc(300, sizeof *commit), *sel = calloc(300, sizeof *sel);
    bool ok = commit != NULL && sel != NULL && base_pg(300, commit, sel);
    *b = *fast;
    if (ok) {
        char k[96];
        b->pg_commit = stats_of(commit, 300);
        b->pg_select = stats_of(sel, 300);
        print_stats("Postgres INSERT commit, durable", &b->pg_commit);
        print_stats("Postgres SELECT 1 round trip", &b->pg_select);
        snprintf(k, sizeof k, "%s.pg_commit", key);
        result_stats(k, &b->pg_commit);
        printf("  a durable commit costs %.1f x the non-durable one of the baselines\n",
               (double)b->pg_commit.p50 / (double)fast->pg_commit.p50);
    }
    free(commit);
    free(sel);
    return ok;
}

/* ==== (f) --passes: the durable tool batch again and again, against a baseline build ======== */

static const char *const SIDE_NAMES[SIDE_COUNT] = {"candidate", "baseline"};
/* result keys of each side's batches; the candidate's are those of the single batch */
static const char *const SIDE_KEYS[SIDE_COUNT] = {"durable.tool_batch",
                                                  "baseline.durable.tool_batch"};
#define PASSES_MAX 50
#define GOAL_RUNS_PER_S 500.0 /* issue 12: 500 complete runs/s with synchronous commit */
/* `others` (CPU outside the stack and the client while a pass ran, % of one core) above which
 * the host is called busy: 2-21 % on the quiet mornings the goal was met, 50-96 % on the days
 * the same binaries read 245-350 runs/s (docs/performance.md, "The goal measured on a quiet
 * host"). */
#define OTHERS_BUSY_PCT 25.0

/* Before every pass, on the stack it measures: VACUUM (ANALYZE) and CHECKPOINT, so that no
 * pass pays for the autovacuum or the checkpoint an earlier pass caused (with full_page_writes
 * on, the first change of every page after a checkpoint writes the whole page to the WAL: each
 * pass starts from the same point of that cycle). */
static bool pg_settle(void)
{
    int64_t t0 = kx_mono_us();
    PGconn *c = pg_connect();
    bool ok = c != NULL && pg_cmd(c, "VACUUM (ANALYZE)") && pg_cmd(c, "CHECKPOINT");
    if (c != NULL)
        PQfinish(c);
    if (ok)
        printf("  (VACUUM (ANALYZE) + CHECKPOINT before the pass: %.0f ms)\n",
               (double)(kx_mono_us() - t0) / 1000.0);
    return ok;
}

/* The short process names of the pass lines, in P_* order. */
static const char *const P_SHORT[P_COUNT] = {
    "model", "gateway", "sched", "runner", "toolx", "broker", "mcp", "nats", "pg", "client",
};

static void print_pass_line(const char *prefix, const char *side, int pass, int passes,
                            const pass_fig *f)
{
    printf("%s%-9s %2d/%-2d %7.1f runs/s  stack %5.2f ms/run  %4.2f commits/run  load %5.2f  "
           "others %3.0f%% |",
           prefix, side, pass + 1, passes, f->rps, f->stack_ms, f->commits, f->load1,
           f->others_pct);
    for (int i = 0; i < P_COUNT; i++)
        printf(" %s %.2f", P_SHORT[i], f->proc_ms[i]);
    printf("\n");
}

static void result_summary(const char *key, const char *figure, const char *unit,
                           const kx_ps_summary *s)
{
    static const char *const q[] = {"median", "p25", "p75", "min", "max"};
    const double v[] = {s->median, s->p25, s->p75, s->min, s->max};
    for (size_t i = 0; i < sizeof q / sizeof q[0]; i++) {
        char k[160];
        snprintf(k, sizeof k, "%s.passes.%s.%s", key, figure, q[i]);
        kx_bench_result(k, v[i], unit);
    }
}

/* One side's summary: quartiles of runs/s and stack ms/run, the median ms/run per process. */
static kx_ps_summary print_side_summary(int side, const pass_fig *f, int n)
{
    double v[PASSES_MAX] = {0};
    for (int i = 0; i < n; i++)
        v[i] = f[i].rps;
    kx_ps_summary rps = kx_ps_summarize(v, n);
    for (int i = 0; i < n; i++)
        v[i] = f[i].stack_ms;
    kx_ps_summary ms = kx_ps_summarize(v, n);
    printf("  %s, %d passes:\n", SIDE_NAMES[side], n);
    printf("    runs/s        median %7.1f  p25 %7.1f  p75 %7.1f  min %7.1f  max %7.1f\n",
           rps.median, rps.p25, rps.p75, rps.min, rps.max);
    printf("    stack ms/run  median %7.2f  p25 %7.2f  p75 %7.2f  min %7.2f  max %7.2f\n",
           ms.median, ms.p25, ms.p75, ms.min, ms.max);
    result_summary(SIDE_KEYS[side], "runs_per_s", "runs/s", &rps);
    result_summary(SIDE_KEYS[side], "stack_ms", "ms/run", &ms);
    printf("    median ms/run per process:");
    for (int p = 0; p < P_COUNT; p++) {
        for (int i = 0; i < n; i++)
            v[i] = f[i].proc_ms[p];
        double med = kx_ps_quantile(v, n, 0.5);
        printf("%s %s %.2f", p == 0 ? "" : ",", P_NAMES[p], med);
        char k[160];
        snprintf(k, sizeof k, "%s.passes.cpu.%s.median", SIDE_KEYS[side], P_KEYS[p]);
        kx_bench_result(k, med, "ms/run");
    }
    printf("\n");
    for (int i = 0; i < n; i++)
        v[i] = f[i].commits;
    printf("    commits/run median %.2f\n", kx_ps_quantile(v, n, 0.5));
    for (int i = 0; i < n; i++)
        v[i] = f[i].others_pct;
    double others = kx_ps_quantile(v, n, 0.5);
    printf("    others median %.0f%% of a core%s\n", others,
           others > OTHERS_BUSY_PCT
               ? ": a busy host, runs/s reads low (judge the goal on a quiet one)"
               : "");
    char k[160];
    snprintf(k, sizeof k, "%s.passes.others_pct.median", SIDE_KEYS[side]);
    kx_bench_result(k, others, "%");
    return rps;
}

/* The summary of every pass: the pass table, each side's spread, the goal and (with a
 * baseline) the per-pair ratios candidate/baseline. */
static void print_passes_summary(const opts *o, pass_fig f[SIDE_COUNT][PASSES_MAX], int done,
                                 bool with_base)
{
    printf("\n(f) summary of %d pass%s of %d durable tool runs%s (load: 1-minute average at "
           "each pass's start; CPU in ms per run)\n",
           done, done == 1 ? "" : "es", o->durable_tool_concurrent,
           with_base ? " per side, alternated baseline/candidate/candidate/baseline" : "");
    for (int p = 0; p < done; p++) {
        for (int k = 0; k < (with_base ? 2 : 1); k++) {
            int side = !with_base ? SIDE_CAND : (p % 2 == 0) == (k == 0) ? SIDE_BASE : SIDE_CAND;
            print_pass_line("  ", SIDE_NAMES[side], p, o->passes, &f[side][p]);
        }
    }
    char line[512];
    kx_ps_summary cand = print_side_summary(SIDE_CAND, f[SIDE_CAND], done);
    if (with_base) {
        kx_ps_summary base = print_side_summary(SIDE_BASE, f[SIDE_BASE], done);
        double rr[PASSES_MAX] = {0}, rm[PASSES_MAX] = {0};
        for (int p = 0; p < done; p++) {
            rr[p] = f[SIDE_CAND][p].rps / f[SIDE_BASE][p].rps;
            rm[p] = f[SIDE_CAND][p].stack_ms / f[SIDE_BASE][p].stack_ms;
        }
        printf("  baseline vs candidate, per pair (the two passes next to each other in time):\n");
        kx_ps_ratio_verdict(line, sizeof line, "runs/s", true, rr, done);
        printf("    %s\n", line);
        kx_ps_ratio_verdict(line, sizeof line, "stack CPU ms/run", false, rm, done);
        printf("    %s\n", line);
        kx_ps_summary srr = kx_ps_summarize(rr, done), srm = kx_ps_summarize(rm, done);
        result_summary("ab", "runs_per_s_ratio", "x", &srr);
        result_summary("ab", "stack_ms_ratio", "x", &srm);
        kx_ps_goal_verdict(line, sizeof line, GOAL_RUNS_PER_S, "runs/s", &base);
        printf("  baseline:  %s\n", line);
    }
    kx_ps_goal_verdict(line, sizeof line, GOAL_RUNS_PER_S, "runs/s", &cand);
    printf("  candidate: %s\n", line);
}

/* Reads the source tree of the build in dir from its CMakeCache.txt (CMAKE_HOME_DIRECTORY):
 * the services of that build take their migrations from <source>/deploy/migrations. */
static bool baseline_source(const char *dir, char *src, size_t len)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/CMakeCache.txt", dir);
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        fprintf(stderr, "bench_run: --baseline-bin %s: cannot read %s: %s (want a build dir)\n",
                dir, path, strerror(errno));
        return false;
    }
    char line[PATH_MAX + 64];
    const char *key = "CMAKE_HOME_DIRECTORY:INTERNAL=";
    bool found = false;
    while (!found && fgets(line, sizeof line, f) != NULL) {
        if (strncmp(line, key, strlen(key)) != 0)
            continue;
        line[strcspn(line, "\n")] = '\0';
        const char *value = line + strlen(key);
        if (strlen(value) >= len)
            break;
        memcpy(src, value, strlen(value) + 1);
        found = true;
    }
    fclose(f);
    if (!found) {
        fprintf(stderr,
                "bench_run: --baseline-bin %s: no CMAKE_HOME_DIRECTORY (or too long) in %s\n", dir,
                path);
        return false;
    }
    char mig[PATH_MAX + 32], gw[PATH_MAX];
    struct stat st;
    snprintf(mig, sizeof mig, "%s/deploy/migrations", src);
    if (stat(mig, &st) != 0 || !S_ISDIR(st.st_mode)) {
        fprintf(stderr, "bench_run: --baseline-bin %s: its migrations %s are not a directory\n",
                dir, mig);
        return false;
    }
    snprintf(gw, sizeof gw, "%s/services/gateway/gateway", dir);
    if (access(gw, X_OK) != 0) {
        fprintf(stderr, "bench_run: --baseline-bin %s: %s is not built\n", dir, gw);
        return false;
    }
    return true;
}

static bool g_base_started; /* g_stacks[SIDE_BASE] is up: stop it at the end */

/* Starts the baseline build's stack (same environment as the candidate's), measures its
 * baselines and makes its Postgres durable; bb gets its durable baselines. g_stack is the candidate's again after. */
static bool start_baseline(const opts *o, const kx_th_stack_opts *cand_opts, baselines *bb)
{
    kx_th_stack_opts so = *cand_opts;
    so.build_dir = o->baseline_bin;
    so.source_dir = o->baseline_src;
    printf("\n(f) the baseline build: services of %s, migrations of %s/deploy/migrations, a "
           "stack of its own\n",
           o->baseline_bin, o->baseline_src);
    int64_t t0 = kx_mono_ms();
    kx_log_set_level(KX_LOG_ERROR); /* the harness's polls while the stack starts are noise */
    kx_err err = kx_th_stack_start(&so, &g_stacks[SIDE_BASE]);
    kx_log_set_level(KX_LOG_WARN);
    if (err != KX_OK) {
        kx_bench_fail("the baseline's stack (%s) did not start", o->baseline_bin);
        return false;
    }
    g_base_started = true;
    printf("  stack up in %lld ms\n", (long long)(kx_mono_ms() - t0));
    /* the same steps as the candidate's stack went through before its passes (its own
     * baselines, then the durable restart), so that the two Postgres start from the same state */
    g_stack = &g_stacks[SIDE_BASE];
    baselines bf;
    printf("  its baselines (same steps as the candidate's stack):\n");
    bool ok = measure_baselines(&bf);
    if (ok) {
        print_baselines("baseline.base", &bf);
        ok = durable_baselines("baseline.durable", &bf, bb);
    }
    g_stack = &g_stacks[SIDE_CAND];
    return ok;
}

/* --passes N: N durable tool batches per side on the same stacks (the candidate's, already
 * durable, and with --baseline-bin the baseline's), pairs in the order B C, C B, B C, ...;
 * a line per pass, then the summary. Stops at the first pass that fails. */
static bool run_passes(const opts *o, const kx_th_stack_opts *so, const baselines *cand)
{
    static pass_fig f[SIDE_COUNT][PASSES_MAX];
    baselines bb;
    bool with_base = o->baseline_bin != NULL;
    if (with_base && !start_baseline(o, so, &bb))
        return false;
    const baselines *b[SIDE_COUNT] = {cand, &bb};
    int64_t t0 = kx_mono_ms();
    bool ok = true;
    /* One full-size batch per side first, not counted: the first batch after the durable
     * restart ran 1.3-3x slower than the passes after it, on both sides of every A/A run
     * (2026-12-02: Postgres's caches and the services' statements start cold). Its checks
     * still apply. */
    for (int k = with_base ? SIDE_BASE : SIDE_CAND; ok && k >= SIDE_CAND; k--) {
        char title[96], key[96];
        snprintf(title, sizeof title, "warm-up pass of the %s (not counted), durable Postgres",
                 SIDE_NAMES[k]);
        snprintf(key, sizeof key, "%s.warmup", SIDE_KEYS[k]);
        g_stack = &g_stacks[k];
        printf("\n(f) %s\n", title);
        ok = pg_settle() &&
            scenario_throughput(key, title, o->tool_prompt, o->durable_tool_concurrent, o->threads,
                                b[k], NULL);
        if (!ok)
            kx_bench_fail("the warm-up pass of the %s failed (see above)", SIDE_NAMES[k]);
    }
    int done = 0;
    for (int p = 0; ok && p < o->passes; p++) {
        for (int k = 0; ok && k < (with_base ? 2 : 1); k++) {
            int side = !with_base ? SIDE_CAND : (p % 2 == 0) == (k == 0) ? SIDE_BASE : SIDE_CAND;
            char title[96];
            snprintf(title, sizeof title, "pass %d/%d of the %s, durable Postgres", p + 1,
                     o->passes, SIDE_NAMES[side]);
            g_stack = &g_stacks[side];
            printf("\n(f) %s\n", title);
            ok = pg_settle() &&
                scenario_throughput(SIDE_KEYS[side], title, o->tool_prompt,
                                    o->durable_tool_concurrent, o->threads, b[side], &f[side][p]);
            if (ok)
                print_pass_line("==> ", SIDE_NAMES[side], p, o->passes, &f[side][p]);
            else
                kx_bench_fail("pass %d/%d of the %s failed (see above)", p + 1, o->passes,
                              SIDE_NAMES[side]);
        }
        if (ok)
            done = p + 1;
    }
    g_stack = &g_stacks[SIDE_CAND];
    if (done > 0)
        print_passes_summary(o, f, done, with_base);
    printf("  %d pass%s in %.1f s\n", done * (with_base ? 2 : 1),
           done * (with_base ? 2 : 1) == 1 ? "" : "es", (double)(kx_mono_ms() - t0) / 1000.0);
    return ok;
}

static bool scenario_durable(const opts *o, const kx_th_stack_opts *so, baselines *fast)
{
    printf("\n(e) Postgres restarted with fsync, synchronous_commit and full_page_writes on "
           "(the harness runs it with them off)\n");
    baselines b;
    bool ok = durable_baselines("durable", fast, &b);
    if (ok && o->durable_single > 0)
        ok = scenario_sequential("durable.say", "say hi, durable Postgres", SAY_PROMPT,
                                 o->durable_single, &b);
    if (ok && o->durable_concurrent > 0)
        ok = scenario_throughput("durable.batch", "throughput, durable Postgres", SAY_PROMPT,
                                 o->durable_concurrent, o->threads, &b, NULL);
    if (ok && o->durable_tool_concurrent > 0 && o->passes > 0)
        ok = run_passes(o, so, &b);
    else if (ok && o->durable_tool_concurrent > 0)
        ok = scenario_throughput("durable.tool_batch", "throughput, durable Postgres",
                                 o->tool_prompt, o->durable_tool_concurrent, o->threads, &b, NULL);
    return ok;
}

/* ==== main ================================================================================= */

static void usage(void)
{
    fprintf(stderr,
            "usage: bench_run [--single N] [--tool N] [--concurrent N] [--threads N] "
            "[--readers N]\n"
            "                 [--held N] [--held-ms MS] [--durable-single N] "
            "[--durable-concurrent N]\n"
            "                 [--tool-concurrent N] [--durable-tool-concurrent N]\n"
            "                 [--no-durable] [--no-keep-alive] [--limited] [--results FILE]\n"
            "                 [--passes N [--baseline-bin DIR]] [--tool-prompt TEXT]\n"
            "  defaults: --single 100 --tool 50 --concurrent 200 --threads 4 --readers 100\n"
            "            --held 500 --held-ms 3000 --durable-single 50 "
            "--durable-concurrent 200\n"
            "            --tool-concurrent 0 --durable-tool-concurrent 2000\n"
            "  a count of 0 skips that part; --no-keep-alive: the throughput batches'\n"
            "  submitters open a new connection per POST (default: each keeps its connection);\n"
            "  --limited: every account gets an account_limits row (counted runs)\n"
            "  --passes N: the durable tool batch N times on the same stack (a line per pass,\n"
            "  then median, quartiles and the 500 runs/s goal); --baseline-bin DIR: also N\n"
            "  passes of another tree's build dir (its services, its migrations) on a stack of\n"
            "  its own, alternated with this build's, and the per-pair ratios;\n"
            "  --tool-prompt TEXT: the tool batches' demo-model script (default\n"
            "  `call view_tasks {}`; the self-check gives one whose runs fail)\n");
}

static bool parse_opts(int argc, char **argv, opts *o)
{
    *o = (opts){.single = 100,
                .tool = 50,
                .concurrent = 200,
                .threads = 4,
                .readers = 100,
                .held = 500,
                .held_ms = 3000,
                .durable_single = 50,
                .durable_concurrent = 200,
                .durable_tool_concurrent = 2000,
                .durable = true,
                .keep_alive = true,
                .tool_prompt = TASKS_PROMPT};
    struct {
        const char *name;
        int *v;
        int lo, hi;
    } ints[] = {
        {"--single", &o->single, 0, 2000},
        {"--tool", &o->tool, 0, 1000},
        {"--concurrent", &o->concurrent, 0, 900},
        {"--threads", &o->threads, 1, 32},
        {"--readers", &o->readers, 0, 500},
        {"--held", &o->held, 0, 20000},
        {"--held-ms", &o->held_ms, 1000, 300000},
        {"--durable-single", &o->durable_single, 0, 1000},
        {"--durable-concurrent", &o->durable_concurrent, 0, 900},
        {"--tool-concurrent", &o->tool_concurrent, 0, 5000},
        {"--durable-tool-concurrent", &o->durable_tool_concurrent, 0, 5000},
        {"--passes", &o->passes, 1, PASSES_MAX},
    };
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--no-durable") == 0) {
            o->durable = false;
            continue;
        }
        if (strcmp(argv[i], "--keep-alive") == 0 || strcmp(argv[i], "--no-keep-alive") == 0) {
            o->keep_alive = strcmp(argv[i], "--keep-alive") == 0;
            continue;
        }
        if (strcmp(argv[i], "--limited") == 0) {
            o->limited = true;
            continue;
        }
        if (strcmp(argv[i], "--results") == 0 && i + 1 < argc) {
            o->results = argv[++i];
            continue;
        }
        if (strcmp(argv[i], "--tool-prompt") == 0 && i + 1 < argc) {
            o->tool_prompt = argv[++i];
            continue;
        }
        if (strcmp(argv[i], "--baseline-bin") == 0 && i + 1 < argc) {
            o->baseline_bin = argv[++i];
            continue;
        }
        bool known = false;
        for (size_t k = 0; k < sizeof ints / sizeof ints[0]; k++) {
            if (strcmp(argv[i], ints[k].name) != 0)
                continue;
            known = true;
            char *end = NULL;
            long v = i + 1 < argc ? strtol(argv[i + 1], &end, 10) : -1;
            if (end == NULL || *end != '\0' || v < ints[k].lo || v > ints[k].hi) {
                fprintf(stderr, "bench_run: %s needs a number in %d..%d\n", ints[k].name,
                        ints[k].lo, ints[k].hi);
                return false;
            }
            *ints[k].v = (int)v;
            i++;
        }
        if (!known) {
            usage();
            return false;
        }
    }
    if (o->passes > 0 && (!o->durable || o->durable_tool_concurrent == 0)) {
        fprintf(stderr,
                "bench_run: --passes repeats the durable tool batch: it needs "
                "--durable-tool-concurrent > 0 and no --no-durable\n");
        return false;
    }
    if (o->baseline_bin != NULL && o->passes == 0) {
        fprintf(stderr, "bench_run: --baseline-bin needs --passes N\n");
        return false;
    }
    if (o->baseline_bin != NULL &&
        !baseline_source(o->baseline_bin, o->baseline_src, sizeof o->baseline_src))
        return false;
    return true;
}

int main(int argc, char **argv)
{
    opts o;
    if (!parse_opts(argc, argv, &o))
        return 2;
    g_keep_alive = o.keep_alive;
    g_limited = o.limited;
    if (!kx_bench_open_results("bench_run", o.results))
        return 2;
    setvbuf(stdout, NULL, _IOLBF, 0);
    kx_log_init("bench", "bench");
    kx_log_set_level(KX_LOG_ERROR); /* the harness's polls while the stack starts are noise */
    /* More than ~900 held runs (toward 10 000 in one runner): a runner capacity and a
     * per-account limit that fit them (all the runs of a scenario share one account), and an
     * LLM time-to-first-byte longer than the demo model's `sleep`. */
    char cap_env[64], par_env[64], ttfb_env[64];
    /* every run of a scenario has a project (and a sandbox) of its own in one account: no
     * per-account sandbox limit */
    const char *env[12] = {
        "KX_LOG_LEVEL=warn",          "KX_HEARTBEAT_MS=1000",      "KX_LEASE_TTL_MS=10000",
        "KX_REAPER_INTERVAL_MS=1000", "KX_SWEEP_INTERVAL_MS=5000", "KX_SANDBOX_MAX_PER_ACCOUNT=0",
    };
    int nenv = 6;
    int most = o.held > o.tool_concurrent ? o.held : o.tool_concurrent;
    if (o.durable && o.durable_tool_concurrent > most)
        most = o.durable_tool_concurrent;
    /* --passes: the goal's batch at any size runs with no per-account limit (the default of 3
     * active runs per account would make a small batch wait for the scheduler's sweeps) */
    if (most > 900 || o.passes > 0) {
        snprintf(cap_env, sizeof cap_env, "KX_RUNNER_CAPACITY=%d", most + 1000);
        snprintf(par_env, sizeof par_env, "KX_MAX_PARALLEL_RUNS=%d", most + 1000);
        env[nenv++] = cap_env;
        env[nenv++] = par_env;
    }
    if (o.held_ms + 30000 > 120000) {
        snprintf(ttfb_env, sizeof ttfb_env, "KX_LLM_TTFB_MS=%d", o.held_ms + 60000);
        env[nenv++] = ttfb_env;
    }
    env[nenv] = NULL;
    kx_th_stack_opts so = {.env = env};
    int64_t t_start = kx_mono_ms();
    if (kx_th_stack_start(&so, g_stack) != KX_OK) {
        fprintf(stderr, "bench_run: the stack did not start\n");
        return 1;
    }
    kx_log_set_level(KX_LOG_WARN);
    printf("bench_run: stack up in %lld ms (KX_LOG_LEVEL=warn, heartbeat 1 s, lease 10 s); "
           "%ld cores\n",
           (long long)(kx_mono_ms() - t_start), sysconf(_SC_NPROCESSORS_ONLN));
    printf("Postgres runs as the harness starts it: fsync=off synchronous_commit=off "
           "full_page_writes=off (section (e) turns them on)\n");

    baselines b;
    printf("\nbaselines, same run, same servers, sequential, 127.0.0.1:\n");
    bool ok = measure_baselines(&b);
    if (ok)
        print_baselines("base", &b);
    if (ok && o.single > 0)
        ok = scenario_sequential("say", "say hi", SAY_PROMPT, o.single, &b);
    if (ok && o.tool > 0)
        ok = scenario_sequential("tool", "one execute_command step", TOOL_PROMPT, o.tool, &b);
    if (ok && o.concurrent > 0)
        ok = scenario_throughput("batch", "throughput", SAY_PROMPT, o.concurrent, o.threads, &b,
                                 NULL);
    if (ok && o.tool_concurrent > 0)
        ok = scenario_throughput("tool_batch", "throughput", o.tool_prompt, o.tool_concurrent,
                                 o.threads, &b, NULL);
    if (ok && o.readers > 0)
        ok = scenario_fanout(o.readers);
    if (ok && o.held > 0)
        ok = scenario_held(o.held, o.threads, o.held_ms);
    if (ok && o.durable)
        ok = scenario_durable(&o, &so, &b);

    printf("\nbench_run: %s in %.1f s\n", ok && !kx_bench_failed() ? "done" : "FAILED",
           (double)(kx_mono_ms() - t_start) / 1000.0);
    g_stack = &g_stacks[SIDE_CAND];
    int bad = kx_th_stack_stop(g_stack, !ok || kx_bench_failed());
    if (g_base_started)
        bad += kx_th_stack_stop(&g_stacks[SIDE_BASE], !ok || kx_bench_failed());
    kx_bench_close();
    return ok && !kx_bench_failed() && bad == 0 ? 0 : 1;
}
