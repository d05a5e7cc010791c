/* bench_mcp.c — tools/call round trip to a warm stdio MCP server
 * (@modelcontextprotocol/server-everything, tool "echo"): through the mcp-proxy (kx.mcp.call
 * over NATS, from a blocking requester) against a baseline measured in the same run, a bare
 * client calling its own warm server directly (the proxy's session code on a private loop in
 * this process, no NATS). The two run in alternating batches of 100 calls, so that both see
 * the same machine load. Prints p50/p90/p99 of each and their ratio.
 *
 *   build-bench/tests/bench/bench_mcp [--calls N] [--results FILE]     (default 2000 calls)
 *
 * Bounded: N sequential calls per variant after 50 warm-up calls, each with a 5 s deadline,
 * on 127.0.0.1 only. --results appends "key value unit" lines for tests/bench/run.sh. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "harness.h"
#include "kx/bus.h"
#include "kx/log.h"
#include "kx/loop.h"
#include "kx/pb.h"
#include "kx/time.h"
#include "mcp_config.h"
#include "sandbox_client.h"
#include "session.h"

#define NM \
    KX_SOURCE_DIR "/tests/node_modules/@modelcontextprotocol/server-everything/dist/index.js"
#define WARMUP 50

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

typedef struct stats {
    int64_t p50, p90, p99;
} stats;

static stats percentiles(int64_t *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_i64);
    return (stats){v[n / 2], v[(n * 9) / 10], v[(n * 99) / 100]};
}

/* ---- baseline: a bare client on its own loop ---- */

#define BATCH 100

typedef struct direct {
    kx_loop *loop;
    mcp_session *s;
    int total, done;
    int batch_end; /* the loop stops when done reaches it */
    int64_t t0;
    int64_t *lat;
    int failures;
} direct;

static void direct_next(direct *d);

static void direct_called(const json_t *result, const char *code, const char *message, void *arg)
{
    direct *d = arg;
    int64_t us = kx_mono_us() - d->t0;
    if (result == NULL) {
        fprintf(stderr, "direct call failed: %s: %s\n", code, message);
        d->failures++;
    }
    if (d->done >= WARMUP)
        d->lat[d->done - WARMUP] = us;
    d->done++;
    direct_next(d);
}

static void stopped(void *arg)
{
    direct *d = arg;
    kx_loop_stop(d->loop);
}

static void direct_next(direct *d)
{
    if (d->done == d->total || d->failures > 0) {
        mcp_session_shutdown(d->s, "done", stopped, d);
        return;
    }
    if (d->done == d->batch_end) {
        kx_loop_stop(d->loop); /* the proxy's batch runs; the session stays warm */
        return;
    }
    d->t0 = kx_mono_us();
    mcp_session_call(d->s, "echo", json_pack("{s:s}", "message", "bench"), kx_deadline_in(5000),
                     NULL, direct_called, d);
}

static void direct_start(kx_loop *loop, void *arg)
{
    (void)loop;
    direct_next(arg);
}

static int direct_open(direct *d, int n, int64_t *lat)
{
    static char *argv[] = {"node", NM, "stdio", NULL};
    static char *env[] = {NULL};
    mcp_server_config cfg = {.name = "direct", .kind = MCP_T_STDIO, .argv = argv, .env = env};
    mcp_server_hash(&cfg);
    memset(d, 0, sizeof *d);
    d->total = n + WARMUP;
    d->lat = lat;
    d->loop = kx_loop_new();
    d->s = d->loop ? mcp_session_new(d->loop, &cfg, 20000, NULL) : NULL;
    return d->s ? 0 : -1;
}

/* Runs the next batch of direct calls (the first batch includes the warm-up); the last one
 * also stops the server. */
static int direct_batch(direct *d, int calls)
{
    d->batch_end = d->done + calls;
    if (d->batch_end > d->total)
        d->batch_end = d->total;
    kx_loop_post(d->loop, direct_start, d);
    kx_loop_run(d->loop);
    return d->failures == 0 ? 0 : -1;
}

static void direct_close(direct *d)
{
    mcp_session_free(d->s);
    kx_loop_free(d->loop);
}

/* ---- through the proxy ---- */

/* Calls from..to-1 (the first WARMUP are not measured). */
static int proxy_batch(kx_bus *bus, int from, int to, int64_t *lat)
{
    for (int i = from; i < to; i++) {
        char id[32];
        snprintf(id, sizeof id, "bench-%d", i);
        Kx__V1__McpCallRequest req = KX__V1__MCP_CALL_REQUEST__INIT;
        req.call_id = id;
        req.server = "everything";
        req.tool = "echo";
        req.arguments_json = "{\"message\": \"bench\"}";
        kx_err err = KX_OK;
        int64_t us = 0;
        Kx__V1__McpCallReply *r =
            kx_th_bus_ask(bus, KX_SUBJ_MCP_CALL, &req.base, NULL, i < WARMUP ? 30000 : 5000,
                          &kx__v1__mcp_call_reply__descriptor, &us, &err);
        if (err != KX_OK && err != KX_ERR_PROTOCOL) {
            fprintf(stderr, "kx.mcp.call %d: %s\n", i, kx_err_str(err));
            return -1;
        }
        bool ok = r && r->error == NULL && !r->is_error;
        if (!ok)
            fprintf(stderr, "kx.mcp.call %d failed: %s\n", i,
                    r && r->error ? r->error->message : "?");
        kx_pb_free(r);
        if (!ok)
            return -1;
        if (i >= WARMUP)
            lat[i - WARMUP] = us;
    }
    return 0;
}

int main(int argc, char **argv)
{
    long calls = 2000;
    const char *results = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--calls") && i + 1 < argc) {
            if (!kx_th_parse_long(argv[++i], &calls))
                calls = -1; /* refused below */
        } else if (!strcmp(argv[i], "--results") && i + 1 < argc)
            results = argv[++i];
        else {
            fprintf(stderr, "usage: bench_mcp [--calls N] [--results FILE]\n");
            return 2;
        }
    }
    if (calls < 100 || calls > 100000) {
        fprintf(stderr, "bench_mcp: --calls must be 100..100000\n");
        return 2;
    }
    int n = (int)calls;
    kx_log_init("bench-mcp", "bench-mcp");
    if (access(NM, R_OK) != 0) {
        fprintf(stderr, "missing %s: npm install in tests/\n", NM);
        return 1;
    }
    int64_t *direct_lat = calloc((size_t)n, sizeof *direct_lat);
    int64_t *proxy_lat = calloc((size_t)n, sizeof *proxy_lat);
    char *dir = kx_th_tmpdir("kx-bench-mcp");
    kx_th_nats nats;
    if (!direct_lat || !proxy_lat || !dir || kx_th_nats_start(dir, &nats) != KX_OK) {
        free(direct_lat);
        free(proxy_lat);
        free(dir);
        return 1;
    }
    char nats_env[128], servers_env[1024], port_env[64], log[600];
    snprintf(nats_env, sizeof nats_env, "KX_NATS_URL=%s", nats.url);
    snprintf(port_env, sizeof port_env, "KX_HEALTH_PORT=%u", kx_th_free_port());
    snprintf(servers_env, sizeof servers_env,
             "KX_MCP_SERVERS={\"everything\": {\"command\": \"node\", \"args\": [\"%s\", "
             "\"stdio\"]}}",
             NM);
    snprintf(log, sizeof log, "%s/mcp-proxy.log", dir);
    const char *env[] = {nats_env, servers_env, port_env, "KX_LOG_LEVEL=warn", NULL};
    const char *pargv[] = {KX_BUILD_DIR "/services/mcp-proxy/mcp-proxy", NULL};
    pid_t proxy = 0;
    kx_bus *bus = NULL;
    int rc = 1;
    if (kx_th_spawn(pargv, env, log, &proxy) != KX_OK ||
        kx_bus_connect(nats.url, "bench-mcp", &bus) != KX_OK)
        goto out;
    for (int i = 0; i < 500 && !kx_bus_connected(bus); i++)
        usleep(10000);
    usleep(300000); /* the proxy subscribes */

    printf("tools/call echo to a warm stdio server-everything, %d sequential calls each "
           "(after %d warm-up calls)\n",
           n, WARMUP);
    direct dc;
    if (direct_open(&dc, n, direct_lat) != 0)
        goto out;
    bool ok = true;
    for (int done = 0; ok && done < n + WARMUP;) {
        int calls = done == 0 ? WARMUP + BATCH : BATCH;
        if (done + calls > n + WARMUP)
            calls = n + WARMUP - done;
        ok = direct_batch(&dc, calls) == 0 && proxy_batch(bus, done, done + calls, proxy_lat) == 0;
        done += calls;
    }
    if (ok && dc.done == dc.total)
        direct_batch(&dc, 0); /* all done: stops the server */
    direct_close(&dc);
    if (!ok)
        goto out;
    stats d = percentiles(direct_lat, n), p = percentiles(proxy_lat, n);
    printf("baseline: bare client, direct stdio    p50 %lld us p90 %lld us p99 %lld us\n",
           (long long)d.p50, (long long)d.p90, (long long)d.p99);
    printf("through mcp-proxy (kx.mcp.call, NATS)  p50 %lld us p90 %lld us p99 %lld us\n",
           (long long)p.p50, (long long)p.p90, (long long)p.p99);
    printf("ratio proxy/baseline p50 %.2f p99 %.2f; added p50 %lld us\n",
           (double)p.p50 / (double)d.p50, (double)p.p99 / (double)d.p99,
           (long long)(p.p50 - d.p50));
    if (results != NULL) {
        FILE *f = fopen(results, "a");
        if (f != NULL) {
            fprintf(f, "mcp.direct.p50 %lld us\nmcp.direct.p99 %lld us\n", (long long)d.p50,
                    (long long)d.p99);
            fprintf(f, "mcp.proxy.p50 %lld us\nmcp.proxy.p99 %lld us\n", (long long)p.p50,
                    (long long)p.p99);
            fprintf(f, "mcp.ratio.p50 %.2f x\nmcp.ratio.p99 %.2f x\n",
                    (double)p.p50 / (double)d.p50, (double)p.p99 / (double)d.p99);
            fclose(f);
        }
    }
    rc = 0;
out:
    kx_bus_close(bus, 1000);
    if (proxy > 0)
        kx_th_kill(proxy);
    kx_th_nats_stop(&nats);
    kx_th_rmrf(dir);
    free(dir);
    free(direct_lat);
    free(proxy_lat);
    return rc;
}
