/* bench_msgfree.c — what freeing a received message costs: kx_bus_msg_free (the library's own
 * free, at once, on the receiving thread) against natsMsg_Destroy (the baseline: the message
 * goes to cnats' garbage-collector thread, woken with a futex when it sleeps), in the same run.
 *
 * One connection publishes `n` core messages with our headers (Kx-Deadline, traceparent,
 * Kx-Account: what every request carries), one every `every_us` microseconds (paced, as a
 * service's messages arrive, so that the collector is asleep between them), to a core
 * subscription of a second connection whose callback reads the headers and frees the message
 * in the mode under test. The modes alternate `rounds` times on one nats-server. Per message:
 * this process's CPU (both clients, cnats' threads, the collector) and its context switches
 * (getrusage: voluntary + involuntary), each mode's mean and the ratio free / destroy.
 * Usage: bench_msgfree [n] [every_us] [rounds] (default 5000 200 3). */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "kx/bus.h"
#include "kx/log.h"
#include "kx/time.h"

typedef struct sink {
    atomic_int got;
    bool direct; /* kx_bus_msg_free, else natsMsg_Destroy */
} sink;

static void on_msg(natsMsg *msg, void *arg)
{
    sink *s = arg;
    kx_bus_meta meta;
    kx_bus_meta_read(msg, &meta);
    if (s->direct)
        kx_bus_msg_free(msg);
    else
        natsMsg_Destroy(msg);
    atomic_fetch_add(&s->got, 1);
}

typedef struct usage {
    double cpu_us;
    long switches;
} usage;

static usage now_usage(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    usage u = {(double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e6 +
                   (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec),
               ru.ru_nvcsw + ru.ru_nivcsw};
    return u;
}

static void pause_us(long us)
{
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    nanosleep(&ts, NULL);
}

/* One round: n messages in mode s->direct; per-message CPU and switches into *out. */
static int round_of(kx_bus *pub, sink *s, int n, long every_us, usage *out)
{
    atomic_store(&s->got, 0);
    kx_bus_meta meta;
    kx_bus_meta_init(&meta, kx_deadline_in(60000), "00000000-0000-4000-8000-000000000001");
    pause_us(100000); /* the collector goes back to sleep */
    usage a = now_usage();
    for (int i = 0; i < n; i++) {
        if (kx_bus_publish(pub, "kx.bench.msgfree", "0123456789abcdef", 16, &meta) != KX_OK)
            return -1;
        pause_us(every_us);
    }
    for (int i = 0; i < 1000 && atomic_load(&s->got) < n; i++)
        pause_us(5000);
    pause_us(50000); /* the collector's share of the last ones */
    usage b = now_usage();
    if (atomic_load(&s->got) < n)
        return -1;
    out->cpu_us = (b.cpu_us - a.cpu_us) / n;
    out->switches = b.switches - a.switches;
    return 0;
}

/* argv[i] as a whole decimal number, or def when absent; -1 when it is not one. */
static long arg_or(int argc, char **argv, int i, long def)
{
    if (argc <= i)
        return def;
    char *end = NULL;
    long v = strtol(argv[i], &end, 10);
    return end != argv[i] && *end == '\0' && v >= 0 && v <= 100000000 ? v : -1;
}

int main(int argc, char **argv)
{
    int n = (int)arg_or(argc, argv, 1, 5000);
    long every_us = arg_or(argc, argv, 2, 200);
    int rounds = (int)arg_or(argc, argv, 3, 3);
    if (n <= 0 || every_us < 0 || rounds <= 0) {
        fprintf(stderr, "usage: bench_msgfree [n > 0] [every_us >= 0] [rounds > 0]\n");
        return 2;
    }
    kx_log_init("bench-msgfree", "bench");
    kx_log_set_level(KX_LOG_WARN);
    char *tmp = kx_th_tmpdir("kx-bench-msgfree");
    kx_th_nats nats;
    if (tmp == NULL || kx_th_nats_start(tmp, &nats) != KX_OK) {
        fprintf(stderr, "bench_msgfree: could not start nats-server\n");
        return 1;
    }
    kx_bus *pub = NULL, *sub = NULL;
    sink s = {0};
    natsSubscription *ns = NULL;
    int rc = 1;
    if (kx_bus_connect(nats.url, "bench-msgfree-pub", &pub) != KX_OK ||
        kx_bus_connect(nats.url, "bench-msgfree-sub", &sub) != KX_OK)
        goto out;
    for (int i = 0; i < 200 && !(kx_bus_connected(pub) && kx_bus_connected(sub)); i++)
        pause_us(10000);
    if (kx_bus_subscribe(sub, "kx.bench.msgfree", NULL, on_msg, &s, &ns) != KX_OK ||
        natsConnection_Flush(kx_bus_conn(sub)) != NATS_OK)
        goto out;
    printf("bench_msgfree: %d core messages with headers per round, one every %ld us, %d "
           "rounds per mode, alternated\n",
           n, every_us, rounds);
    printf("  %-28s %14s %22s\n", "mode", "CPU us/msg", "context switches/msg");
    double cpu[2] = {0, 0}, sw[2] = {0, 0};
    for (int r = 0; r < rounds; r++)
        for (int mode = 0; mode < 2; mode++) {
            s.direct = mode == 1;
            usage u;
            if (round_of(pub, &s, n, every_us, &u) != 0) {
                fprintf(stderr, "bench_msgfree: a round lost messages\n");
                goto out;
            }
            cpu[mode] += u.cpu_us / rounds;
            sw[mode] += (double)u.switches / n / rounds;
            printf("  %-28s %14.2f %22.2f\n",
                   mode ? "kx_bus_msg_free (direct)" : "natsMsg_Destroy (collector)", u.cpu_us,
                   (double)u.switches / n);
        }
    printf("  mean: collector %.2f us, %.2f switches; direct %.2f us, %.2f switches per message"
           " (ratio direct / collector: CPU %.2fx, switches %.2fx)\n",
           cpu[0], sw[0], cpu[1], sw[1], cpu[0] > 0 ? cpu[1] / cpu[0] : 0,
           sw[0] > 0 ? sw[1] / sw[0] : 0);
    rc = 0;
out:
    natsSubscription_Destroy(ns);
    kx_bus_close(pub, 1000);
    kx_bus_close(sub, 1000);
    kx_th_nats_stop(&nats);
    kx_th_rmrf(tmp);
    free(tmp);
    return rc;
}
