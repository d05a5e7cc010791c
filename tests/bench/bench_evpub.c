/* bench_evpub.c — what a run event publish costs the agent-runner and nats-server, with the
 * publisher on a connection of its own without SendAsap (publisher.h, the default) against
 * the runner's SendAsap connection (the baseline, KX_EVENTS_BUFFERED=0), in the same run.
 *
 * A loop timer publishes `burst` events of ~1 100 bytes (each of another run, as a batch
 * completion does) every `every_ms` ms for `secs` seconds through the real publisher; the two
 * modes alternate `rounds` times, each on a fresh nats-server. Figures per event: this
 * process's CPU (publisher, cnats' threads, acks) and nats-server's (from /proc), plus
 * nats-server's read system calls (/proc/<pid>/io): a read is a wake-up.
 *
 * Then the same for kx.run.submit (issue 12): a submit stored as before (a core publish into
 * the work queue KX_RUN_SUBMIT, delivered by the durable push consumer "scheduler" to a queue
 * subscriber that acks it) against a core one (a queue subscription, now), one submit every
 * `every_ms` / `burst` ms, each mode on a fresh nats-server: per submit, nats-server's CPU,
 * this process's (both clients) and nats-server's reads.
 * Usage: bench_evpub [burst] [every_ms] [secs] [rounds] (default 4 2 3 2). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdatomic.h>
#include <sys/resource.h>
#include <unistd.h>

#include "events.h"
#include "harness.h"
#include "kx/log.h"
#include "kx/loop.h"
#include "kx/time.h"
#include "procstat.h"
#include "publisher.h"

typedef struct pace {
    publisher *pub;
    int burst;
    int64_t every_ms, until_ms;
    uint64_t seq;
    long sent;
    char payload[1200];
} pace;

static void tick(kx_loop *loop, void *arg)
{
    pace *p = arg;
    if (kx_mono_ms() >= p->until_ms) {
        if (publisher_inflight(p->pub) == 0 && publisher_queued(p->pub) == 0) {
            kx_loop_stop(loop);
            return;
        }
        kx_loop_timer(loop, 5, tick, p);
        return;
    }
    p->seq++;
    for (int i = 0; i < p->burst; i++) {
        char run_id[40];
        snprintf(run_id, sizeof run_id, "00000000-0000-4000-8000-%012d", i);
        if (events_publish(p->pub, run_id, 1, p->seq,
                           KX__V1__RUN_EVENT_KIND__RUN_EVENT_KIND_MESSAGE, false, p->payload,
                           NULL) == KX_OK)
            p->sent++;
    }
    kx_loop_timer(loop, p->every_ms, tick, p);
}

static double self_cpu_ms(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 +
        (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3;
}

static double proc_cpu_ms(pid_t pid)
{
    kx_th_pstat st;
    if (!kx_th_pstat_of(pid, &st))
        return 0;
    return (double)((st.utime + st.stime) * kx_th_tick_ns()) / 1e6;
}

static long proc_syscr(pid_t pid)
{
    char path[64], line[128];
    snprintf(path, sizeof path, "/proc/%d/io", (int)pid);
    FILE *f = fopen(path, "r");
    long v = 0;
    while (f != NULL && fgets(line, sizeof line, f) != NULL)
        if (strncmp(line, "syscr: ", 7) == 0) {
            v = strtol(line + 7, NULL, 10);
            break;
        }
    if (f != NULL)
        fclose(f);
    return v;
}

typedef struct result {
    double self_us, nats_us, reads;
    long events;
} result;

static bool one(bool own, int burst, int64_t every_ms, int secs, result *out)
{
    char *dir = kx_th_tmpdir("kx-bench-evpub");
    kx_th_nats nats;
    kx_bus *bus = NULL;
    kx_loop *loop = kx_loop_new();
    publisher *pub = NULL;
    bool ok = kx_th_nats_start(dir, &nats) == KX_OK;
    ok = ok && kx_bus_connect(nats.url, "bench-evpub", &bus) == KX_OK;
    for (int i = 0; ok && i < 250 && !kx_bus_connected(bus); i++)
        usleep(20000);
    ok = ok && kx_bus_ensure_streams(bus) == KX_OK;
    ok = ok && publisher_new(bus, loop, 4096, 10000, own, &pub) == KX_OK;
    for (int i = 0; ok && i < 250; i++) {
        if (natsConnection_Status(publisher_conn(pub)) == NATS_CONN_STATUS_CONNECTED)
            break;
        usleep(20000);
    }
    if (ok) {
        pace p = {.pub = pub, .burst = burst, .every_ms = every_ms};
        memset(p.payload, 'x', sizeof p.payload - 1);
        memcpy(p.payload, "{\"t\": \"", 7);
        memcpy(p.payload + sizeof p.payload - 3, "\"}", 3);
        double s0 = self_cpu_ms(), n0 = proc_cpu_ms(nats.pid);
        long r0 = proc_syscr(nats.pid);
        p.until_ms = kx_mono_ms() + (int64_t)secs * 1000;
        kx_loop_timer(loop, 0, tick, &p);
        kx_loop_run(loop);
        out->events = p.sent;
        out->self_us = (self_cpu_ms() - s0) * 1e3 / (double)p.sent;
        out->nats_us = (proc_cpu_ms(nats.pid) - n0) * 1e3 / (double)p.sent;
        out->reads = (double)(proc_syscr(nats.pid) - r0) / (double)p.sent;
    }
    publisher_free(pub, 2000);
    kx_loop_free(loop);
    kx_bus_close(bus, 1000);
    kx_th_nats_stop(&nats);
    kx_th_rmrf(dir);
    free(dir);
    return ok;
}

/* ---- kx.run.submit: stored (before issue 12) against core ---- */

static void on_submit(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *arg)
{
    (void)nc;
    (void)sub;
    atomic_long *got = arg;
    if (natsMsg_GetReply(msg) != NULL && strncmp(natsMsg_GetReply(msg), "$JS.ACK.", 8) == 0)
        natsMsg_Ack(msg, NULL); /* the scheduler's ack of a stored submit */
    natsMsg_Destroy(msg);
    atomic_fetch_add(got, 1);
}

/* The stream and durable consumer the scheduler had before issue 12, and its subscription. */
static bool stored_submits(kx_bus *bus, atomic_long *got, natsSubscription **sub)
{
    if (kx_th_old_submit_stream(bus) != KX_OK)
        return false;
    jsConsumerConfig cc;
    jsConsumerConfig_Init(&cc);
    cc.Durable = KX_CONSUMER_SCHEDULER;
    cc.DeliverSubject = "kx.sched.submit.deliver";
    cc.DeliverGroup = KX_CONSUMER_SCHEDULER;
    cc.AckPolicy = js_AckExplicit;
    cc.AckWait = (int64_t)30 * 1000000000;
    cc.FilterSubject = KX_SUBJ_RUN_SUBMIT;
    cc.MaxAckPending = 1000;
    if (kx_bus_ensure_consumer(bus, KX_STREAM_SUBMIT, &cc) != KX_OK)
        return false;
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = KX_STREAM_SUBMIT;
    so.Consumer = KX_CONSUMER_SCHEDULER;
    so.Queue = KX_CONSUMER_SCHEDULER;
    so.ManualAck = true;
    return js_Subscribe(sub, kx_bus_js(bus), KX_SUBJ_RUN_SUBMIT, on_submit, got, NULL, &so,
                        NULL) == NATS_OK;
}

static bool one_submit(bool stored, int every_us, int secs, result *out)
{
    char *dir = kx_th_tmpdir("kx-bench-submit");
    kx_th_nats nats;
    kx_bus *gw = NULL, *sched = NULL;
    natsSubscription *sub = NULL;
    atomic_long got = 0;
    bool ok = kx_th_nats_start(dir, &nats) == KX_OK;
    ok = ok && kx_bus_connect(nats.url, "bench-gateway", &gw) == KX_OK &&
        kx_bus_connect(nats.url, "bench-scheduler", &sched) == KX_OK;
    for (int i = 0; ok && i < 250 && !(kx_bus_connected(gw) && kx_bus_connected(sched)); i++)
        usleep(20000);
    if (ok && stored)
        ok = stored_submits(sched, &got, &sub);
    else if (ok)
        ok = natsConnection_QueueSubscribe(&sub, kx_bus_conn(sched), KX_SUBJ_RUN_SUBMIT,
                                           KX_CONSUMER_SCHEDULER, on_submit, &got) == NATS_OK;
    ok = ok && natsConnection_Flush(kx_bus_conn(sched)) == NATS_OK;
    if (ok) {
        char body[120]; /* a RunSubmit is ~120 bytes with its ids */
        memset(body, 'r', sizeof body);
        kx_bus_meta meta;
        kx_bus_meta_init(&meta, kx_deadline_in(60000), "00000000-0000-4000-8000-000000000001");
        double s0 = self_cpu_ms(), n0 = proc_cpu_ms(nats.pid);
        long r0 = proc_syscr(nats.pid), sent = 0;
        int64_t until = kx_mono_ms() + (int64_t)secs * 1000;
        while (kx_mono_ms() < until) {
            if (kx_bus_publish(gw, KX_SUBJ_RUN_SUBMIT, body, sizeof body, &meta) == KX_OK)
                sent++;
            usleep((useconds_t)every_us);
        }
        for (int i = 0; i < 300 && atomic_load(&got) < sent; i++)
            usleep(10000);
        out->events = atomic_load(&got);
        ok = out->events == sent;
        out->self_us = (self_cpu_ms() - s0) * 1e3 / (double)sent;
        out->nats_us = (proc_cpu_ms(nats.pid) - n0) * 1e3 / (double)sent;
        out->reads = (double)(proc_syscr(nats.pid) - r0) / (double)sent;
    }
    natsSubscription_Destroy(sub);
    kx_bus_close(gw, 1000);
    kx_bus_close(sched, 1000);
    kx_th_nats_stop(&nats);
    kx_th_rmrf(dir);
    free(dir);
    return ok;
}

/* Runs mode 0 (the baseline) and mode 1 alternately `rounds` times and prints each and the
 * means; `unit` names what a figure is per. 1 if a round could not run. */
typedef bool (*mode_fn)(int mode, const void *ctx, result *out);
static int compare(int rounds, mode_fn run, const void *ctx, const char *const label[2],
                   const char *unit, const char *ratio)
{
    double sum[2][3] = {{0}};
    for (int r = 0; r < rounds; r++) {
        for (int m = 0; m < 2; m++) {
            result x = {0};
            if (!run(m, ctx, &x)) {
                fprintf(stderr, "bench_evpub: %s: setup failed or messages lost\n", unit);
                return 1;
            }
            printf("  %-36s %7ld %ss  self %6.1f us  nats-server %6.1f us  %.2f reads\n", label[m],
                   x.events, unit, x.self_us, x.nats_us, x.reads);
            sum[m][0] += x.self_us;
            sum[m][1] += x.nats_us;
            sum[m][2] += x.reads;
        }
    }
    printf("  means: %s: self %.1f / %.1f us (%.2fx), nats-server %.1f / %.1f us (%.2fx), reads "
           "%.2f / %.2f per %s\n",
           ratio, sum[1][0] / rounds, sum[0][0] / rounds, sum[1][0] / sum[0][0],
           sum[1][1] / rounds, sum[0][1] / rounds, sum[1][1] / sum[0][1], sum[1][2] / rounds,
           sum[0][2] / rounds, unit);
    return 0;
}

typedef struct pacing {
    int burst, every_ms, every_us, secs;
} pacing;

static bool events_mode(int mode, const void *ctx, result *out)
{
    const pacing *p = ctx;
    return one(mode == 1, p->burst, p->every_ms, p->secs, out);
}

static bool submits_mode(int mode, const void *ctx, result *out)
{
    const pacing *p = ctx;
    return one_submit(mode == 0, p->every_us, p->secs, out);
}

static int arg_int(int argc, char **argv, int i, int def)
{
    return argc > i ? (int)strtol(argv[i], NULL, 10) : def;
}

int main(int argc, char **argv)
{
    kx_log_init("bench-evpub", "bench");
    kx_log_set_level(KX_LOG_ERROR);
    int burst = arg_int(argc, argv, 1, 4);
    int every = arg_int(argc, argv, 2, 2);
    int secs = arg_int(argc, argv, 3, 3);
    int rounds = arg_int(argc, argv, 4, 2);
    if (burst < 1 || every < 1 || secs < 1 || rounds < 1) {
        fprintf(stderr, "usage: bench_evpub [burst >= 1] [every_ms >= 1] [secs] [rounds]\n");
        return 2;
    }
    pacing p = {burst, every, every * 1000 / burst, secs};
    printf("run events: %d every %d ms (%.0f/s) for %d s, ~1.1 KB each, per event:\n", burst,
           every, burst * 1000.0 / every, secs);
    const char *const ev_label[2] = {"runner's connection, SendAsap (base)",
                                     "own connection, buffered"};
    if (compare(rounds, events_mode, &p, ev_label, "event", "buffered / SendAsap") != 0)
        return 1;
    printf("kx.run.submit: one every %d us (%.0f/s) for %d s, per submit:\n", p.every_us,
           1e6 / p.every_us, secs);
    const char *const sub_label[2] = {"stored: work queue + ack (base)",
                                      "core: queue subscription"};
    return compare(rounds, submits_mode, &p, sub_label, "submit", "core / stored");
}
