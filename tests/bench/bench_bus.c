/* bench_bus.c — request/reply latency on the bus: libkx's kx_bus_request (SendAsap, deadline
 * headers, protobuf) against a baseline of plain cnats with default options, measured in the
 * same run against the same nats-server. It prints p50/p90/p99 and the ratio to the baseline.
 *
 *   build/tests/bench/bench_bus [requests]      (default 5000 per variant)
 *
 * Bounded: a fixed number of sequential requests on 127.0.0.1, each with a 1 s deadline. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "kx/bus.h"
#include "kx/log.h"
#include "kx/pb.h"
#include "kx/time.h"

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static void pct(int64_t *v, int n, int64_t *p50, int64_t *p90, int64_t *p99)
{
    qsort(v, (size_t)n, sizeof *v, cmp_i64);
    *p50 = v[n / 2];
    *p90 = v[(n * 9) / 10];
    *p99 = v[(n * 99) / 100];
}

/* Baseline responder/requester: raw cnats, default options (no SendAsap). */
static void raw_echo(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    (void)sub;
    (void)closure;
    natsConnection_Publish(nc, natsMsg_GetReply(msg), natsMsg_GetData(msg),
                           natsMsg_GetDataLength(msg));
    natsMsg_Destroy(msg);
}

/* libkx responder: decode the HealthRequest, answer a HealthReply — what services do. */
static kx_bus *g_resp_bus;
static void kx_echo(natsMsg *msg, void *arg)
{
    (void)arg;
    Kx__V1__HealthRequest *req =
        kx_pb_unpack(&kx__v1__health_request__descriptor, natsMsg_GetData(msg),
                     (size_t)natsMsg_GetDataLength(msg));
    Kx__V1__HealthReply rep = KX__V1__HEALTH_REPLY__INIT;
    rep.service = "bench";
    rep.ready = req != NULL;
    kx_bus_respond_pb(g_resp_bus, msg, &rep.base);
    kx_pb_free(req);
    natsMsg_Destroy(msg);
}

static int run_raw(const char *url, int n, int64_t *lat)
{
    natsConnection *resp = NULL, *req = NULL;
    natsSubscription *sub = NULL;
    if (natsConnection_ConnectTo(&resp, url) != NATS_OK ||
        natsConnection_ConnectTo(&req, url) != NATS_OK)
        return -1;
    natsConnection_Subscribe(&sub, resp, "bench.raw", raw_echo, NULL);
    natsConnection_Flush(resp);
    char payload[64] = {0};
    for (int i = 0; i < n; i++) {
        natsMsg *reply = NULL;
        int64_t t0 = kx_mono_us();
        if (natsConnection_Request(&reply, req, "bench.raw", payload, sizeof payload, 1000) !=
            NATS_OK)
            return -1;
        lat[i] = kx_mono_us() - t0;
        natsMsg_Destroy(reply);
    }
    natsSubscription_Destroy(sub);
    natsConnection_Destroy(req);
    natsConnection_Destroy(resp);
    return 0;
}

static int run_kx(const char *url, int n, int64_t *lat)
{
    kx_bus *req = NULL;
    natsSubscription *sub = NULL;
    if (kx_bus_connect(url, "bench-resp", &g_resp_bus) != KX_OK ||
        kx_bus_connect(url, "bench-req", &req) != KX_OK)
        return -1;
    for (int i = 0; i < 200 && !(kx_bus_connected(g_resp_bus) && kx_bus_connected(req)); i++)
        nats_Sleep(10);
    if (kx_bus_subscribe(g_resp_bus, "bench.kx", NULL, kx_echo, NULL, &sub) != KX_OK)
        return -1;
    natsConnection_Flush(kx_bus_conn(g_resp_bus));
    Kx__V1__HealthRequest hr = KX__V1__HEALTH_REQUEST__INIT;
    for (int i = 0; i < n; i++) {
        kx_bus_meta meta;
        kx_bus_meta_init(&meta, kx_deadline_in(1000), "00000000-0000-4000-8000-000000000000");
        natsMsg *reply = NULL;
        int64_t t0 = kx_mono_us();
        if (kx_bus_request_pb(req, "bench.kx", &hr.base, &meta, &reply) != KX_OK)
            return -1;
        lat[i] = kx_mono_us() - t0;
        natsMsg_Destroy(reply);
    }
    kx_bus_close(req, 1000);
    kx_bus_close(g_resp_bus, 1000);
    return 0;
}

int main(int argc, char **argv)
{
    long requests = 5000;
    if (argc > 1 && !kx_th_parse_long(argv[1], &requests))
        requests = -1;
    if (requests < 100 || requests > 200000) {
        fprintf(stderr, "requests must be 100..200000\n");
        return 2;
    }
    int n = (int)requests;
    kx_log_init("bench", "bench");
    kx_log_set_level(KX_LOG_WARN);
    char *dir = kx_th_tmpdir("kx-bench-bus");
    kx_th_nats nats;
    if (!dir || kx_th_nats_start(dir, &nats) != KX_OK) {
        fprintf(stderr, "cannot start nats-server\n");
        return 1;
    }
    int64_t *raw = calloc((size_t)n, sizeof *raw), *kx = calloc((size_t)n, sizeof *kx);
    int rc = 1;
    if (raw && kx && run_raw(nats.url, n, raw) == 0 && run_kx(nats.url, n, kx) == 0) {
        int64_t r50, r90, r99, k50, k90, k99;
        pct(raw, n, &r50, &r90, &r99);
        pct(kx, n, &k50, &k90, &k99);
        printf("bus request/reply, %d sequential requests each, 127.0.0.1\n", n);
        printf("%-44s p50 %6lld us  p90 %6lld us  p99 %6lld us\n",
               "baseline: raw cnats, default options", (long long)r50, (long long)r90,
               (long long)r99);
        printf("%-44s p50 %6lld us  p90 %6lld us  p99 %6lld us\n",
               "kx_bus_request_pb (SendAsap, headers, pb)", (long long)k50, (long long)k90,
               (long long)k99);
        printf("ratio kx/baseline p50 %.2f  p99 %.2f\n", (double)k50 / (double)r50,
               (double)k99 / (double)r99);
        rc = 0;
    } else {
        fprintf(stderr, "benchmark failed\n");
    }
    free(raw);
    free(kx);
    kx_th_nats_stop(&nats);
    kx_th_rmrf(dir);
    free(dir);
    return rc;
}
