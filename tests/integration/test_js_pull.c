/* tests/integration/test_js_pull.c — kx/js_pull.h against a real nats-server (JetStream on).
 *
 * The regression: the agent-runner aborted with glibc heap corruption ("malloc(): unaligned
 * tcache chunk detected", "double free or corruption (!prev)") while claiming bursts of
 * dispatches. Its fetcher used cnats' natsSubscription_Fetch, which in cnats 3.4.1 writes past
 * its array of `batch` messages in this interleaving: an earlier pull request is still live on
 * the server (a Fetch that returned before its request ended), more than half a batch of its
 * messages already wait in the inbox, and further messages keep arriving while the next Fetch
 * runs. Driven through natsSubscription_Fetch (batch 64, 63 waiting, 10 more arriving) it
 * returned 73 messages: 9 pointers written past a 64-slot heap array. The same interleaving is
 * driven here through kx_js_pull_fetch, which must never return more than it was asked for and
 * must deliver every message exactly once. The other cases: an empty consumer times out with
 * nothing, a consumer that does not exist is reported, acks stop redelivery, the consumer
 * lookup tells "there" from "gone", and a closed connection is KX_ERR_UNAVAILABLE. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"
#include "kx/bus.h"
#include "kx/js_pull.h"
#include "kx/log.h"
#include "kx/time.h"

#define STREAM "KXT_PULL"
#define SUBJ "kxt.pull"
#define CONSUMER "pullers"
#define TOTAL 74 /* 1 + 63 + 10, as in the interleaving above */

static char *g_tmp;
static kx_th_nats g_nats;
static kx_bus *g_bus;

static int group_setup(void **state)
{
    (void)state;
    kx_log_init("test-js-pull", "test");
    kx_log_set_level(KX_LOG_WARN);
    g_tmp = kx_th_tmpdir("kx-it-js-pull");
    if (g_tmp == NULL || kx_th_nats_start(g_tmp, &g_nats) != KX_OK)
        return -1;
    if (kx_bus_connect(g_nats.url, "it-js-pull", &g_bus) != KX_OK)
        return -1;
    for (int i = 0; i < 500 && !kx_bus_connected(g_bus); i++)
        usleep(10 * 1000);
    jsStreamConfig sc;
    jsStreamConfig_Init(&sc);
    sc.Name = STREAM;
    const char *subjects[] = {SUBJ};
    sc.Subjects = subjects;
    sc.SubjectsLen = 1;
    if (js_AddStream(NULL, kx_bus_js(g_bus), &sc, NULL, NULL) != NATS_OK)
        return -1;
    jsConsumerConfig cc;
    jsConsumerConfig_Init(&cc);
    cc.Durable = CONSUMER;
    cc.AckPolicy = js_AckExplicit;
    cc.AckWait = 2LL * 1000 * 1000 * 1000;
    return kx_bus_ensure_consumer(g_bus, STREAM, &cc) == KX_OK ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    kx_bus_close(g_bus, 1000);
    kx_th_nats_stop(&g_nats);
    kx_th_rmrf(g_tmp);
    free(g_tmp);
    return 0;
}

static void publish_n(int first, int n)
{
    for (int i = first; i < first + n; i++) {
        char body[16];
        int len = snprintf(body, sizeof body, "%d", i);
        assert_int_equal(js_Publish(NULL, kx_bus_js(g_bus), SUBJ, body, len, NULL, NULL), NATS_OK);
    }
}

/* Records m's number in seen (failing on a duplicate), acks and destroys it. */
static void take(natsMsg *m, bool seen[TOTAL])
{
    int i = (int)strtol(natsMsg_GetData(m), NULL, 10);
    assert_true(i >= 0 && i < TOTAL);
    assert_false(seen[i]);
    seen[i] = true;
    assert_int_equal(kx_js_ack(g_bus, m), KX_OK);
    natsMsg_Destroy(m);
}

/* The pending count of messages the puller's inbox subscription holds cannot be read from
 * here; the server is given time to deliver instead. */
static void settle(void)
{
    usleep(300 * 1000);
}

static void test_never_more_than_asked_with_an_earlier_request_live(void **state)
{
    (void)state;
    kx_js_pull *p = NULL;
    assert_int_equal(kx_js_pull_new(g_bus, STREAM, CONSUMER, &p), KX_OK);
    bool seen[TOTAL] = {false};
    natsMsg *out[200];
    int n = 0;

    /* a request for 200 that returns after its first message: it stays live on the server */
    publish_n(0, 1);
    assert_int_equal(kx_js_pull_fetch(p, 200, 10000, out, &n), KX_OK);
    assert_int_equal(n, 1);
    take(out[0], seen);

    /* 63 more reach the inbox through that request: more than half of the next batch */
    publish_n(1, 63);
    settle();

    /* the next fetch asks for 64 while 10 more arrive through the earlier request */
    publish_n(64, 10);
    int got = 0, calls = 0;
    int64_t until = kx_mono_ms() + 15000;
    while (got < TOTAL - 1 && kx_mono_ms() < until) {
        int max = calls == 0 ? 64 : 7; /* then smaller batches, as free slots shrink */
        n = -1;
        assert_int_equal(kx_js_pull_fetch(p, max, 1000, out, &n), KX_OK);
        assert_true(n >= 0 && n <= max); /* cnats' Fetch returned 73 for 64 here */
        for (int i = 0; i < n; i++)
            take(out[i], seen);
        got += n;
        calls++;
    }
    assert_int_equal(got, TOTAL - 1);
    for (int i = 0; i < TOTAL; i++)
        assert_true(seen[i]);

    /* acked: nothing comes back, not even after the AckWait (2 s) */
    usleep(2500 * 1000);
    n = -1;
    assert_int_equal(kx_js_pull_fetch(p, 64, 1500, out, &n), KX_OK);
    assert_int_equal(n, 0);
    kx_js_pull_free(p);
}

static void test_empty_times_out_and_unacked_comes_back(void **state)
{
    (void)state;
    /* a consumer of its own: the first test's requests may still be live on the other one */
    jsConsumerConfig cc;
    jsConsumerConfig_Init(&cc);
    cc.Durable = "nakkers";
    cc.AckPolicy = js_AckExplicit;
    cc.DeliverPolicy = js_DeliverNew;
    assert_int_equal(kx_bus_ensure_consumer(g_bus, STREAM, &cc), KX_OK);
    kx_js_pull *p = NULL;
    assert_int_equal(kx_js_pull_new(g_bus, STREAM, "nakkers", &p), KX_OK);
    natsMsg *out[4];
    int n = -1;
    int64_t t0 = kx_mono_ms();
    assert_int_equal(kx_js_pull_fetch(p, 4, 300, out, &n), KX_OK);
    assert_int_equal(n, 0);
    assert_true(kx_mono_ms() - t0 >= 250);

    /* a nak'd message comes again at once */
    js_Publish(NULL, kx_bus_js(g_bus), SUBJ, "nak", 3, NULL, NULL);
    n = 0;
    for (int i = 0; i < 10 && n == 0; i++)
        assert_int_equal(kx_js_pull_fetch(p, 4, 1000, out, &n), KX_OK);
    assert_int_equal(n, 1);
    assert_int_equal(kx_js_nak(g_bus, out[0]), KX_OK);
    natsMsg_Destroy(out[0]);
    n = 0;
    for (int i = 0; i < 10 && n == 0; i++)
        assert_int_equal(kx_js_pull_fetch(p, 4, 1000, out, &n), KX_OK);
    assert_int_equal(n, 1);
    assert_memory_equal(natsMsg_GetData(out[0]), "nak", 3);
    assert_int_equal(kx_js_term(g_bus, out[0]), KX_OK); /* and never again */
    natsMsg_Destroy(out[0]);
    kx_js_pull_free(p);
}

static void test_missing_consumer_is_reported(void **state)
{
    (void)state;
    kx_js_pull *p = NULL;
    assert_int_equal(kx_js_pull_new(g_bus, STREAM, "no-such-consumer", &p), KX_OK);
    natsMsg *out[4];
    int n = -1;
    kx_err err = KX_OK;
    int64_t t0 = kx_mono_ms();
    for (int i = 0; i < 20 && err == KX_OK; i++) { /* told at the next look at the consumer */
        err = kx_js_pull_fetch(p, 4, 1000, out, &n);
        assert_int_equal(n, 0);
    }
    assert_int_equal(err, KX_ERR_UNAVAILABLE);
    assert_true(kx_mono_ms() - t0 <= KX_JS_PULL_CHECK_MS + 2500);
    kx_js_pull_free(p);
}

/* kx_bus_consumer_exists (the lookup kx_bus_ensure_consumer and the puller share): there,
 * a missing consumer and a missing stream told apart from "JetStream did not answer". */
static void test_consumer_exists(void **state)
{
    (void)state;
    assert_int_equal(kx_bus_consumer_exists(g_bus, STREAM, CONSUMER), KX_OK);
    assert_int_equal(kx_bus_consumer_exists(g_bus, STREAM, "no-such-consumer"), KX_ERR_NOT_FOUND);
    assert_int_equal(kx_bus_consumer_exists(g_bus, "KXT_NO_SUCH_STREAM", CONSUMER),
                     KX_ERR_NOT_FOUND);
}

/* A pull request that cannot go out because the connection is closed: KX_ERR_UNAVAILABLE, as
 * for every other "NATS is not there" (it was KX_ERR_IO, the puller's own mapping). */
static void test_closed_connection_is_unavailable(void **state)
{
    (void)state;
    kx_bus *bus = NULL;
    assert_int_equal(kx_bus_connect(g_nats.url, "it-js-pull-closed", &bus), KX_OK);
    for (int i = 0; i < 500 && !kx_bus_connected(bus); i++)
        usleep(10 * 1000);
    kx_js_pull *p = NULL;
    assert_int_equal(kx_js_pull_new(bus, STREAM, CONSUMER, &p), KX_OK);
    natsConnection_Close(kx_bus_conn(bus));
    natsMsg *out[4];
    int n = -1;
    assert_int_equal(kx_js_pull_fetch(p, 4, 200, out, &n), KX_ERR_UNAVAILABLE);
    assert_int_equal(n, 0);
    kx_js_pull_free(p);
    kx_bus_close(bus, 1000);
}

static void test_request_json(void **state)
{
    (void)state;
    char buf[96];
    kx_js_pull_request_json(buf, sizeof buf, 64, 1000);
    assert_string_equal(buf, "{\"batch\":64,\"expires\":1000000000}");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_json),
        cmocka_unit_test(test_never_more_than_asked_with_an_earlier_request_live),
        cmocka_unit_test(test_empty_times_out_and_unacked_comes_back),
        cmocka_unit_test(test_missing_consumer_is_reported),
        cmocka_unit_test(test_consumer_exists),
        cmocka_unit_test(test_closed_connection_is_unavailable),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
