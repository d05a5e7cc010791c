/* tests/integration/test_gateway_downloads.c — sandbox file downloads (GET /api/sandboxes/{id}/
 * files/content) whose sandbox hangs, with the gateway alone against a real nats-server and
 * PostgreSQL (tests/harness/gateway_alone.h) and a fake sandbox-broker on kx.sandbox.files that
 * answers some READs and never answers the others:
 *   - one account's downloads hanging on their first READ take at most
 *     KX_SANDBOX_DOWNLOADS_PER_ACCOUNT handler workers: its downloads past that are a 429 at
 *     once, without a READ, and another account's GET /api/projects answers at once (before:
 *     every worker waited KX_SANDBOX_GET_TIMEOUT_MS on the broker, the other account's GET
 *     with them);
 *   - a streamed download counts until it ends (its READs mid-way hold the downloads' worker
 *     pool): two of them hanging on their second READ, the account's third download is a 429;
 *   - the slots come back when the downloads end (a READ's timeout, the transfer cut): the
 *     account downloads again.
 * The gateway runs with 4 handler workers, a bound of 2 downloads per account and a 3 s READ
 * deadline, so that "every worker" is 4 requests and a hang lasts 3 s. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "api_client.h"
#include "gateway_alone.h"
#include "kx/bus.h"
#include "kx/http.h"
#include "kx/log.h"
#include "kx/pb.h"
#include "kx/time.h"
#include "kx/uuid.h"
#include "stack.h"

#define WORKERS 4     /* KX_HTTP_WORKERS */
#define PER_ACCOUNT 2 /* KX_SANDBOX_DOWNLOADS_PER_ACCOUNT */
#define READ_MS 3000  /* KX_SANDBOX_GET_TIMEOUT_MS */
#define CHUNK 65536   /* the fake broker's chunk of a streamed file */
#define STREAMED (4 * CHUNK)

static kx_th_gw g_gw;
static kx_bus *g_bus;
static char g_acct_a[KX_UUID_LEN + 1], g_acct_b[KX_UUID_LEN + 1];
static char *g_tok_a, *g_tok_b;
static char g_sid[KX_UUID_LEN + 1]; /* account a's sandbox */

/* ---- the fake sandbox-broker -------------------------------------------------------------- */

/* READs of /workspace/small.txt: "hello", whole. READs of /workspace/stream*: the first chunk
 * of a STREAMED-byte file at offset 0, nothing (no answer) after. Anything else: no answer. */
static pthread_t g_broker;
static natsSubscription *g_sub;
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static bool g_stop;
static int g_reads_hang, g_reads_stream_later; /* READs left unanswered */

static void answer(natsMsg *m, const char *name, const uint8_t *data, size_t len, int64_t size,
                   bool eof)
{
    Kx__V1__SandboxFileInfo info = KX__V1__SANDBOX_FILE_INFO__INIT;
    info.name = (char *)name;
    info.path = (char *)name;
    info.size = size;
    Kx__V1__SandboxFilesReply rep = KX__V1__SANDBOX_FILES_REPLY__INIT;
    rep.info = &info;
    rep.data.data = (uint8_t *)data;
    rep.data.len = len;
    rep.next_offset = (int64_t)len;
    rep.eof = eof;
    (void)kx_bus_respond_pb(g_bus, m, &rep.base);
}

static void *broker_main(void *arg)
{
    (void)arg;
    static uint8_t chunk[CHUNK];
    memset(chunk, 'x', sizeof chunk);
    for (;;) {
        pthread_mutex_lock(&g_mu);
        bool stop = g_stop;
        pthread_mutex_unlock(&g_mu);
        if (stop)
            break;
        natsMsg *m = NULL;
        if (natsSubscription_NextMsg(&m, g_sub, 100) != NATS_OK)
            continue;
        Kx__V1__SandboxFilesRequest *rq =
            kx_pb_unpack(&kx__v1__sandbox_files_request__descriptor, natsMsg_GetData(m),
                         (size_t)natsMsg_GetDataLength(m));
        const char *path = rq != NULL && rq->path != NULL ? rq->path : "";
        if (strcmp(path, "/workspace/small.txt") == 0) {
            answer(m, "small.txt", (const uint8_t *)"hello", 5, 5, true);
        } else if (strncmp(path, "/workspace/stream", 17) == 0 && rq->offset == 0) {
            answer(m, path + 11, chunk, CHUNK, STREAMED, false);
        } else {
            pthread_mutex_lock(&g_mu);
            if (strncmp(path, "/workspace/stream", 17) == 0)
                g_reads_stream_later++;
            else
                g_reads_hang++;
            pthread_mutex_unlock(&g_mu);
        }
        kx_pb_free(rq);
        natsMsg_Destroy(m);
    }
    return NULL;
}

static int reads_hang(void)
{
    pthread_mutex_lock(&g_mu);
    int n = g_reads_hang;
    pthread_mutex_unlock(&g_mu);
    return n;
}

static int reads_stream_later(void)
{
    pthread_mutex_lock(&g_mu);
    int n = g_reads_stream_later;
    pthread_mutex_unlock(&g_mu);
    return n;
}

static bool wait_count(int (*count)(void), int n, int64_t limit_ms)
{
    int64_t until = kx_mono_ms() + limit_ms;
    while (count() < n) {
        if (kx_mono_ms() > until)
            return false;
        usleep(20 * 1000);
    }
    return true;
}

static int setup(void **state)
{
    (void)state;
    kx_log_init("test-gateway-downloads", "test");
    kx_log_set_level(KX_LOG_WARN);
    memset(&g_gw, 0, sizeof g_gw);
    const char *env[] = {"KX_HTTP_WORKERS=4", "KX_SANDBOX_DOWNLOADS_PER_ACCOUNT=2",
                         "KX_SANDBOX_GET_TIMEOUT_MS=3000", NULL};
    if (kx_th_gw_start(&g_gw, "kx-it-gw-dl", env) != KX_OK)
        return -1;
    if (kx_bus_connect(g_gw.s.nats.url, "test-gateway-downloads", &g_bus) != KX_OK)
        return -1;
    for (int i = 0; i < 100 && !kx_bus_connected(g_bus); i++)
        usleep(20000);
    if (natsConnection_SubscribeSync(&g_sub, kx_bus_conn(g_bus), KX_SUBJ_SANDBOX_FILES) !=
            NATS_OK ||
        natsConnection_Flush(kx_bus_conn(g_bus)) != NATS_OK ||
        pthread_create(&g_broker, NULL, broker_main, NULL) != 0)
        return -1;
    g_tok_a = kx_th_new_account(&g_gw.s, g_acct_a);
    g_tok_b = kx_th_new_account(&g_gw.s, g_acct_b);
    if (g_tok_a == NULL || g_tok_b == NULL)
        return -1;
    /* account a's project with a running sandbox (as the broker's events record it) */
    kx_uuid_new(g_sid);
    const char *p[] = {g_acct_a, g_sid};
    PGresult *r = kx_th_sql(&g_gw.s,
                            "INSERT INTO projects (account_id, name, sandbox) VALUES ($1::uuid, "
                            "'downloads', jsonb_build_object('id', $2::text, 'state', "
                            "'running')) RETURNING 1",
                            2, p);
    bool ok = r != NULL && PQntuples(r) == 1;
    PQclear(r);
    return ok ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    pthread_mutex_lock(&g_mu);
    g_stop = true;
    pthread_mutex_unlock(&g_mu);
    if (g_sub != NULL) {
        pthread_join(g_broker, NULL);
        natsSubscription_Destroy(g_sub);
    }
    return 0;
}

/* ---- HTTP --------------------------------------------------------------------------------- */

typedef struct get_job {
    pthread_t t;
    const char *token;
    char path[300];
    long status;
    char detail[400];
    size_t body_len;
    int64_t took_ms;
} get_job;

static void *get_run(void *arg)
{
    get_job *j = arg;
    char url[400], auth[600];
    snprintf(url, sizeof url, "%s%s", g_gw.s.base_url, j->path);
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", j->token);
    const char *headers[] = {auth, NULL};
    kx_http_resp r;
    memset(&r, 0, sizeof r);
    int64_t t0 = kx_mono_ms();
    j->status = 0;
    if (kx_http_request("GET", url, headers, NULL, 0, kx_deadline_in(15000), 0, &r) == KX_OK) {
        j->status = r.status;
        j->body_len = r.len;
        json_t *v = r.status != 200 && r.body != NULL ? json_loads(r.body, 0, NULL) : NULL;
        const char *d = json_string_value(json_object_get(v, "detail"));
        snprintf(j->detail, sizeof j->detail, "%s", d != NULL ? d : "");
        json_decref(v);
    }
    j->took_ms = kx_mono_ms() - t0;
    kx_http_resp_free(&r);
    return NULL;
}

static void get(get_job *j, const char *token, const char *path)
{
    j->token = token;
    snprintf(j->path, sizeof j->path, "%s", path);
    get_run(j);
}

static void file_path(const char *name, char *out, size_t cap)
{
    snprintf(out, cap, "/api/sandboxes/%s/files/content?path=/workspace/%s", g_sid, name);
}

/* Account a downloads small.txt until it is let in (its slots came back), within limit_ms. */
static void small_download_within(int64_t limit_ms)
{
    char path[300];
    file_path("small.txt", path, sizeof path);
    int64_t until = kx_mono_ms() + limit_ms;
    get_job j;
    for (;;) {
        memset(&j, 0, sizeof j);
        get(&j, g_tok_a, path);
        if (j.status != 429 || kx_mono_ms() > until)
            break;
        usleep(100 * 1000);
    }
    if (j.status != 200)
        fail_msg("small.txt as account a: %ld %s", j.status, j.detail);
    assert_int_equal(j.body_len, 5);
}

/* ---- the cases ------------------------------------------------------------------------------ */

/* Before: the first READ of a download runs on a handler worker (KX_HTTP_WORKERS) and holds it
 * until the broker answers or KX_SANDBOX_GET_TIMEOUT_MS passes, for any number of downloads of
 * one account: six of them held all four workers, and account b's GET /api/projects waited
 * behind them for the READ deadline. */
static void test_hanging_downloads_do_not_stall_other_accounts(void **state)
{
    (void)state;
    enum {
        N = WORKERS + 2
    };
    get_job jobs[N];
    memset(jobs, 0, sizeof jobs);
    for (int i = 0; i < N; i++) {
        char name[32];
        snprintf(name, sizeof name, "hang%d.bin", i);
        jobs[i].token = g_tok_a;
        file_path(name, jobs[i].path, sizeof jobs[i].path);
        assert_int_equal(pthread_create(&jobs[i].t, NULL, get_run, &jobs[i]), 0);
    }
    assert_true(wait_count(reads_hang, PER_ACCOUNT, 5000)); /* the READs the broker keeps */
    usleep(300 * 1000); /* the other downloads: refused, or waiting for a worker (before) */

    get_job other;
    memset(&other, 0, sizeof other);
    get(&other, g_tok_b, "/api/projects");
    print_message("[ download ] %d of account a's downloads hanging on the broker; account b's "
                  "GET /api/projects: %ld in %lld ms\n",
                  reads_hang(), other.status, (long long)other.took_ms);

    int refused = 0, timed_out = 0;
    for (int i = 0; i < N; i++) {
        pthread_join(jobs[i].t, NULL);
        if (jobs[i].status == 429) {
            refused++;
            assert_non_null(strstr(jobs[i].detail, "KX_SANDBOX_DOWNLOADS_PER_ACCOUNT"));
            assert_true(jobs[i].took_ms < 1000);
        } else if (jobs[i].status == 504) {
            timed_out++;
        }
    }
    print_message("[ download ] account a's %d downloads: %d refused (429), %d timed out (504); "
                  "%d READs reached the broker; e.g. \"%s\"\n",
                  N, refused, timed_out, reads_hang(), jobs[N - 1].detail);
    if (other.status != 200 || other.took_ms > 1000)
        fail_msg("account b's GET /api/projects answered %ld after %lld ms while account a's "
                 "downloads hung (want 200 within 1000 ms)",
                 other.status, (long long)other.took_ms);
    assert_int_equal(refused, N - PER_ACCOUNT);
    assert_int_equal(timed_out, PER_ACCOUNT);
    assert_int_equal(reads_hang(), PER_ACCOUNT); /* the refused ones never asked the broker */
    small_download_within(5000);                 /* the two slots came back with their 504s */
}

/* A raw GET of a streamed file as account a; the socket, its answer's head read. */
static int open_stream(const char *name)
{
    char path[300], req[1200];
    file_path(name, path, sizeof path);
    int fd = kx_th_raw_connect(g_gw.s.http_port, NULL);
    assert_true(fd >= 0);
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer %s\r\n\r\n",
                     path, g_tok_a);
    assert_int_equal(write(fd, req, (size_t)n), n);
    char head[512];
    ssize_t got = recv(fd, head, sizeof head - 1, 0);
    assert_true(got > 12);
    head[got] = '\0';
    assert_non_null(strstr(head, " 200 "));
    return fd;
}

/* A streamed download holds its slot until it ends, with its READs mid-way on the downloads'
 * own pool: two of them waiting on the broker for their second chunk, a third download of the
 * account is refused; cut by the READ's deadline, they give their slots back. */
static void test_streamed_downloads_count_until_they_end(void **state)
{
    (void)state;
    int before = reads_stream_later();
    int fd1 = open_stream("stream1.bin"), fd2 = open_stream("stream2.bin");
    assert_true(wait_count(reads_stream_later, before + PER_ACCOUNT, 5000));
    char path[300];
    file_path("small.txt", path, sizeof path);
    get_job third;
    memset(&third, 0, sizeof third);
    get(&third, g_tok_a, path);
    print_message("[ download ] two streamed downloads waiting for their second chunk; a third: "
                  "%ld %s\n",
                  third.status, third.detail);
    assert_int_equal(third.status, 429);
    assert_non_null(strstr(third.detail, "KX_SANDBOX_DOWNLOADS_PER_ACCOUNT"));
    close(fd1);
    close(fd2);
    int64_t t0 = kx_mono_ms();
    small_download_within(READ_MS + 5000);
    print_message("[ download ] slots back %lld ms after the clients left (READ deadline %d ms)\n",
                  (long long)(kx_mono_ms() - t0), READ_MS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hanging_downloads_do_not_stall_other_accounts),
        cmocka_unit_test(test_streamed_downloads_count_until_they_end),
    };
    if (getenv("KX_TEST_FILTER") != NULL)
        cmocka_set_test_filter(getenv("KX_TEST_FILTER"));
    int failed = cmocka_run_group_tests(tests, setup, teardown);
    if (g_bus != NULL)
        kx_bus_close(g_bus, 1000);
    kx_th_gw_stop(&g_gw, failed != 0);
    free(g_tok_a);
    free(g_tok_b);
    return failed == 0 ? 0 : 1;
}
