/* test_bus.c — kx_bus against a real nats-server (started by the test harness on a free port):
 * publish/subscribe with headers, request/reply with the deadline/trace/account headers read
 * back by the responder, request timeout at the deadline, no responders, async requests on a
 * loop (reply on the loop thread, timeout, no responders, cancel, free with requests pending),
 * loop subscriptions, stream creation twice, JetStream publish (sync and async) read back,
 * batch publishes (all acknowledged, some refused, acks that never come), the one
 * natsStatus -> kx_err mapping, and a connection that starts before its server. */
#include <pthread.h>
#include <signal.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"
#include "kx/bus.h"
#include "kx/loop.h"
#include "kx/pb.h"
#include "kx/time.h"
#include "kx/uuid.h"

static char *g_tmp;
static kx_th_nats g_nats;

static int group_setup(void **state)
{
    if (nats_Open(-1) != NATS_OK) /* natsMsg_Create below runs before any connection */
        return -1;
    g_tmp = kx_th_tmpdir("kx-test-bus");
    if (g_tmp == NULL)
        return -1;
    return kx_th_nats_start(g_tmp, &g_nats) == KX_OK ? 0 : -1;
}

static int group_teardown(void **state)
{
    kx_th_nats_stop(&g_nats);
    kx_th_rmrf(g_tmp);
    free(g_tmp);
    return 0;
}

static kx_bus *connect_or_fail(const char *name)
{
    kx_bus *bus = NULL;
    assert_int_equal(kx_bus_connect(g_nats.url, name, &bus), KX_OK);
    assert_non_null(bus);
    for (int i = 0; i < 200 && !kx_bus_connected(bus); i++)
        usleep(10 * 1000);
    assert_true(kx_bus_connected(bus));
    return bus;
}

/* Polls an atomic counter until it reaches want or timeout_ms passes. */
static bool wait_count(atomic_int *n, int want, int64_t timeout_ms)
{
    int64_t end = kx_mono_ms() + timeout_ms;
    while (atomic_load(n) < want && kx_mono_ms() < end)
        usleep(2000);
    return atomic_load(n) >= want;
}

/* ---- publish / subscribe ---- */

typedef struct sub_state {
    atomic_int count;
    atomic_int bad;
    char account[40];
} sub_state;

static void on_sub_msg(natsMsg *msg, void *arg)
{
    sub_state *s = arg;
    kx_bus_meta meta;
    char want[32];
    snprintf(want, sizeof want, "msg-%d", atomic_load(&s->count));
    if (kx_bus_meta_read(msg, &meta) != KX_OK || strcmp(meta.account, s->account) != 0 ||
        natsMsg_GetDataLength(msg) != (int)strlen(want) ||
        memcmp(natsMsg_GetData(msg), want, strlen(want)) != 0)
        atomic_fetch_add(&s->bad, 1);
    atomic_fetch_add(&s->count, 1);
    natsMsg_Destroy(msg);
}

static void test_publish_subscribe(void **state)
{
    kx_bus *pub = connect_or_fail("test-pub");
    kx_bus *sub = connect_or_fail("test-sub");
    sub_state s = {0};
    kx_uuid_new(s.account);
    natsSubscription *ns = NULL;
    assert_int_equal(kx_bus_subscribe(sub, "kx.test.ps", NULL, on_sub_msg, &s, &ns), KX_OK);
    assert_non_null(ns);
    assert_int_equal(natsConnection_Flush(kx_bus_conn(sub)), NATS_OK);
    kx_bus_meta meta;
    kx_bus_meta_init(&meta, KX_NO_DEADLINE, s.account);
    for (int i = 0; i < 20; i++) {
        char body[32];
        snprintf(body, sizeof body, "msg-%d", i);
        assert_int_equal(kx_bus_publish(pub, "kx.test.ps", body, strlen(body), &meta), KX_OK);
    }
    assert_true(wait_count(&s.count, 20, 3000));
    assert_int_equal(atomic_load(&s.bad), 0);
    /* the caller may destroy its subscription before closing the bus */
    natsSubscription_Destroy(ns);
    kx_bus_close(pub, 1000);
    kx_bus_close(sub, 1000);
}

/* A buffered sibling (KX_BUS_BUFFERED): the same server, the name with its suffix; a publish is
 * held in cnats' buffer (not written in the call, as on a SendAsap bus) and still arrives, in
 * order, with its headers. */
static void test_buffered_sibling(void **state)
{
    kx_bus *sub = connect_or_fail("test-sib-sub");
    kx_bus *sib = NULL;
    assert_int_equal(kx_bus_connect_sibling(sub, "-events", KX_BUS_BUFFERED, &sib), KX_OK);
    for (int i = 0; i < 200 && !kx_bus_connected(sib); i++)
        usleep(10 * 1000);
    assert_true(kx_bus_connected(sib));
    char name[64] = "";
    assert_int_equal(natsConnection_GetConnectedServerId(kx_bus_conn(sib), name, sizeof name),
                     NATS_OK);
    char name2[64] = "";
    assert_int_equal(natsConnection_GetConnectedServerId(kx_bus_conn(sub), name2, sizeof name2),
                     NATS_OK);
    assert_string_equal(name, name2);
    sub_state s = {0};
    kx_uuid_new(s.account);
    natsSubscription *ns = NULL;
    assert_int_equal(kx_bus_subscribe(sub, "kx.test.sib", NULL, on_sub_msg, &s, &ns), KX_OK);
    assert_int_equal(natsConnection_Flush(kx_bus_conn(sub)), NATS_OK);
    kx_bus_meta meta;
    kx_bus_meta_init(&meta, KX_NO_DEADLINE, s.account);
    int most_buffered = 0;
    for (int i = 0; i < 20; i++) {
        char body[32];
        snprintf(body, sizeof body, "msg-%d", i);
        assert_int_equal(kx_bus_publish(sib, "kx.test.sib", body, strlen(body), &meta), KX_OK);
        int b = natsConnection_Buffered(kx_bus_conn(sib));
        if (b > most_buffered)
            most_buffered = b;
    }
    assert_true(most_buffered > 0); /* SendAsap would have written each one in the call */
    assert_true(wait_count(&s.count, 20, 3000));
    assert_int_equal(atomic_load(&s.bad), 0);
    assert_int_equal(kx_bus_publish(sub, "kx.test.sib.other", "x", 1, &meta), KX_OK);
    assert_int_equal(natsConnection_Buffered(kx_bus_conn(sub)), 0); /* the SendAsap one */
    kx_bus_close(sib, 1000);
    kx_bus_close(sub, 1000);
}

/* ---- request / reply ---- */

/* Echo responder: replies "<deadline>|<trace id>|<account>|<body>". */
static void on_echo(natsMsg *msg, void *arg)
{
    kx_bus *bus = arg;
    kx_bus_meta meta;
    char trace[33];
    char out[256];
    kx_err err = kx_bus_meta_read(msg, &meta);
    kx_bus_trace_id(&meta, trace);
    snprintf(out, sizeof out, "%lld|%s|%s|%.*s|%d", (long long)meta.deadline, trace, meta.account,
             natsMsg_GetDataLength(msg), natsMsg_GetData(msg), (int)err);
    kx_bus_respond(bus, msg, out, strlen(out));
    natsMsg_Destroy(msg);
}

static void on_silent(natsMsg *msg, void *arg)
{
    natsMsg_Destroy(msg);
}

static void test_request_reply_carries_headers(void **state)
{
    kx_bus *server = connect_or_fail("test-responder");
    kx_bus *client = connect_or_fail("test-requester");
    assert_int_equal(kx_bus_subscribe(server, "kx.test.echo", "echoers", on_echo, server, NULL),
                     KX_OK);
    assert_int_equal(kx_bus_flush(server, 2000), KX_OK);

    char account[KX_UUID_LEN + 1];
    kx_uuid_new(account);
    kx_bus_meta meta;
    kx_bus_meta_init(&meta, kx_deadline_in(2000), account);
    char trace[33];
    kx_bus_trace_id(&meta, trace);
    assert_int_equal(strlen(trace), 32);
    assert_int_equal(strlen(meta.traceparent), 55);

    natsMsg *reply = NULL;
    assert_int_equal(kx_bus_request(client, "kx.test.echo", "ping", 4, &meta, &reply), KX_OK);
    assert_non_null(reply);
    char want[256];
    snprintf(want, sizeof want, "%lld|%s|%s|ping|0", (long long)meta.deadline, trace, account);
    assert_int_equal(natsMsg_GetDataLength(reply), (int)strlen(want));
    assert_memory_equal(natsMsg_GetData(reply), want, strlen(want));
    natsMsg_Destroy(reply);

    /* protobuf flavour */
    Kx__V1__HealthRequest hr = KX__V1__HEALTH_REQUEST__INIT;
    assert_int_equal(kx_bus_request_pb(client, "kx.test.echo", &hr.base, &meta, &reply), KX_OK);
    natsMsg_Destroy(reply);

    /* no deadline: refused before sending */
    kx_bus_meta none;
    kx_bus_meta_init(&none, KX_NO_DEADLINE, NULL);
    reply = (natsMsg *)1;
    assert_int_equal(kx_bus_request(client, "kx.test.echo", "x", 1, &none, &reply),
                     KX_ERR_INVALID);
    assert_null(reply);
    kx_bus_close(client, 1000);
    kx_bus_close(server, 1000);
}

static void test_request_timeout_at_deadline(void **state)
{
    kx_bus *server = connect_or_fail("test-silent");
    kx_bus *client = connect_or_fail("test-requester");
    assert_int_equal(kx_bus_subscribe(server, "kx.test.silent", NULL, on_silent, NULL, NULL),
                     KX_OK);
    assert_int_equal(kx_bus_flush(server, 2000), KX_OK);
    kx_bus_meta meta;
    kx_bus_meta_init(&meta, kx_deadline_in(300), NULL);
    natsMsg *reply = NULL;
    int64_t t0 = kx_mono_ms();
    assert_int_equal(kx_bus_request(client, "kx.test.silent", "x", 1, &meta, &reply),
                     KX_ERR_TIMEOUT);
    int64_t took = kx_mono_ms() - t0;
    assert_null(reply);
    assert_true(took >= 280);
    assert_true(took < 450);

    /* an already expired deadline times out without waiting */
    kx_bus_meta_init(&meta, kx_now_ms() - 1, NULL);
    t0 = kx_mono_ms();
    assert_int_equal(kx_bus_request(client, "kx.test.silent", "x", 1, &meta, &reply),
                     KX_ERR_TIMEOUT);
    assert_true(kx_mono_ms() - t0 < 20);
    kx_bus_close(client, 1000);
    kx_bus_close(server, 1000);
}

static void test_no_responders_is_unavailable(void **state)
{
    kx_bus *client = connect_or_fail("test-requester");
    kx_bus_meta meta;
    kx_bus_meta_init(&meta, kx_deadline_in(3000), NULL);
    natsMsg *reply = NULL;
    int64_t t0 = kx_mono_ms();
    assert_int_equal(kx_bus_request(client, "kx.test.nobody", "x", 1, &meta, &reply),
                     KX_ERR_UNAVAILABLE);
    assert_true(kx_mono_ms() - t0 < 1000);
    assert_null(reply);
    kx_bus_close(client, 1000);
}

/* ---- async requests on a loop ---- */

typedef struct async_result {
    int calls;
    kx_err err;
    char body[256];
    bool on_loop_thread;
    int64_t at_mono;
} async_result;

typedef struct async_test {
    kx_loop *loop;
    int outstanding;
} async_test;

static async_test *g_at;

static void on_async_reply(kx_err err, natsMsg *reply, void *arg)
{
    async_result *r = arg;
    r->calls++;
    r->err = err;
    r->on_loop_thread = kx_loop_in_loop_thread(g_at->loop);
    r->at_mono = kx_mono_ms();
    if (reply != NULL) {
        snprintf(r->body, sizeof r->body, "%.*s", natsMsg_GetDataLength(reply),
                 natsMsg_GetData(reply));
        natsMsg_Destroy(reply);
    }
    if (--g_at->outstanding == 0)
        kx_loop_stop(g_at->loop);
}

static void stop_loop(kx_loop *loop, void *arg)
{
    kx_loop_stop(loop);
}

/* A responder bus answering echo_subject (and never silent_subject, when not NULL), a client
 * bus with a request context on a fresh loop, both flushed: requests made now reach them. */
typedef struct async_fixture {
    kx_bus *server, *client;
    kx_loop *loop;
    kx_bus_async *ab; /* NULL once the test freed it */
    async_test at;    /* g_at points here */
} async_fixture;

static void async_fixture_setup(async_fixture *fx, const char *echo_subject,
                                const char *silent_subject)
{
    memset(fx, 0, sizeof *fx);
    fx->server = connect_or_fail("test-responder");
    fx->client = connect_or_fail("test-async");
    assert_int_equal(kx_bus_subscribe(fx->server, echo_subject, NULL, on_echo, fx->server, NULL),
                     KX_OK);
    if (silent_subject != NULL)
        assert_int_equal(kx_bus_subscribe(fx->server, silent_subject, NULL, on_silent, NULL, NULL),
                         KX_OK);
    assert_int_equal(natsConnection_Flush(kx_bus_conn(fx->server)), NATS_OK);
    fx->loop = kx_loop_new();
    assert_non_null(fx->loop);
    fx->at.loop = fx->loop;
    g_at = &fx->at;
    assert_int_equal(kx_bus_async_new(fx->client, fx->loop, &fx->ab), KX_OK);
    assert_int_equal(natsConnection_Flush(kx_bus_conn(fx->client)), NATS_OK);
}

/* Frees the request context (unless the test did), closes both buses, then frees the loop. */
static void async_fixture_teardown(async_fixture *fx)
{
    kx_bus_async_free(fx->ab);
    fx->ab = NULL;
    kx_bus_close(fx->client, 1000);
    kx_bus_close(fx->server, 1000);
    kx_loop_free(fx->loop);
    g_at = NULL;
}

static void test_async_requests_on_loop(void **state)
{
    async_fixture fx;
    async_fixture_setup(&fx, "kx.test.aecho", "kx.test.asilent");
    kx_loop *loop = fx.loop;
    async_test *at = &fx.at;
    kx_bus_async *ab = fx.ab;

    async_result ok = {0}, timeout = {0}, nobody = {0}, expired = {0}, cancelled = {0},
                 cancelled_echo = {0};
    kx_bus_meta meta;
    kx_bus_meta_init(&meta, kx_deadline_in(2000), "acct");
    uint64_t id_ok = 0, id_cancel = 0, id_cancel_echo = 0;
    assert_int_equal(kx_bus_async_request(ab, "kx.test.aecho", "hi", 2, &meta, on_async_reply, &ok,
                                          &id_ok),
                     KX_OK);
    assert_true(id_ok != 0);
    kx_bus_meta tmeta;
    kx_bus_meta_init(&tmeta, kx_deadline_in(250), NULL);
    int64_t t0 = kx_mono_ms();
    assert_int_equal(kx_bus_async_request(ab, "kx.test.asilent", "x", 1, &tmeta, on_async_reply,
                                          &timeout, NULL),
                     KX_OK);
    assert_int_equal(kx_bus_async_request(ab, "kx.test.anobody", "x", 1, &meta, on_async_reply,
                                          &nobody, NULL),
                     KX_OK);
    kx_bus_meta emeta;
    kx_bus_meta_init(&emeta, kx_now_ms() - 5, NULL);
    assert_int_equal(kx_bus_async_request(ab, "kx.test.aecho", "x", 1, &emeta, on_async_reply,
                                          &expired, NULL),
                     KX_OK);
    assert_int_equal(kx_bus_async_request(ab, "kx.test.asilent", "x", 1, &tmeta, on_async_reply,
                                          &cancelled, &id_cancel),
                     KX_OK);
    assert_int_equal(kx_bus_async_request(ab, "kx.test.aecho", "y", 1, &meta, on_async_reply,
                                          &cancelled_echo, &id_cancel_echo),
                     KX_OK);
    assert_int_equal(kx_bus_async_pending(ab), 6);
    kx_bus_async_cancel(ab, id_cancel);
    kx_bus_async_cancel(ab, id_cancel_echo); /* its reply will arrive and be dropped */
    kx_bus_async_cancel(ab, 999999);         /* unknown: ignored */
    assert_int_equal(kx_bus_async_pending(ab), 4);
    kx_bus_meta nometa;
    kx_bus_meta_init(&nometa, KX_NO_DEADLINE, NULL);
    assert_int_equal(kx_bus_async_request(ab, "kx.test.aecho", "x", 1, &nometa, on_async_reply,
                                          &expired, NULL),
                     KX_ERR_INVALID);
    at->outstanding = 4;
    assert_non_null(kx_loop_timer(loop, 5000, stop_loop, NULL)); /* safety net */
    assert_int_equal(kx_loop_run(loop), KX_OK);

    assert_int_equal(ok.calls, 1);
    assert_int_equal(ok.err, KX_OK);
    assert_true(ok.on_loop_thread);
    char want[256];
    char trace[33];
    kx_bus_trace_id(&meta, trace);
    snprintf(want, sizeof want, "%lld|%s|acct|hi|0", (long long)meta.deadline, trace);
    assert_string_equal(ok.body, want);

    assert_int_equal(timeout.calls, 1);
    assert_int_equal(timeout.err, KX_ERR_TIMEOUT);
    assert_true(timeout.on_loop_thread);
    assert_true(timeout.at_mono - t0 >= 230);
    assert_true(timeout.at_mono - t0 < 450);

    assert_int_equal(nobody.calls, 1);
    assert_int_equal(nobody.err, KX_ERR_UNAVAILABLE);
    assert_true(nobody.on_loop_thread);

    assert_int_equal(expired.calls, 1);
    assert_int_equal(expired.err, KX_ERR_TIMEOUT);

    /* let the cancelled ones' deadline pass and the dropped echo arrive: no callback */
    assert_non_null(kx_loop_timer(loop, 400, stop_loop, NULL));
    assert_int_equal(kx_loop_run(loop), KX_OK);
    assert_int_equal(cancelled.calls, 0);
    assert_int_equal(cancelled_echo.calls, 0);
    assert_int_equal(kx_bus_async_pending(ab), 0);

    /* freeing with requests pending calls nobody back */
    async_result orphan = {0};
    assert_int_equal(kx_bus_async_request(ab, "kx.test.aecho", "z", 1, &meta, on_async_reply,
                                          &orphan, NULL),
                     KX_OK);
    assert_int_equal(kx_bus_async_pending(ab), 1);
    kx_bus_async_free(ab);
    fx.ab = NULL;
    assert_non_null(kx_loop_timer(loop, 200, stop_loop, NULL)); /* the reply comes and goes */
    assert_int_equal(kx_loop_run(loop), KX_OK);
    assert_int_equal(orphan.calls, 0);

    async_fixture_teardown(&fx);
}

/* A reply posted to a loop that never runs again (a service shutting down while a reply is
 * in flight) is freed with the loop: LeakSanitizer found its message, its delivery and the
 * inbox's shared part leaked before (it_sandbox_timeout under ASan, tool-executor exit 1). */
static void test_async_reply_queued_at_shutdown(void **state)
{
    async_fixture fx;
    async_fixture_setup(&fx, "kx.test.lecho", NULL);
    kx_bus_meta meta;
    kx_bus_meta_init(&meta, kx_deadline_in(2000), NULL);
    async_result never = {0};
    assert_int_equal(kx_bus_async_request(fx.ab, "kx.test.lecho", "q", 1, &meta, on_async_reply,
                                          &never, NULL),
                     KX_OK);
    usleep(500 * 1000); /* the reply arrives and is posted to the loop, which does not run */
    async_fixture_teardown(&fx); /* the loop, freed last, disposes of the queued delivery */
    assert_int_equal(never.calls, 0);
}

/* Many concurrent async requests all complete once (and grow the pending table). */
typedef struct many_state {
    kx_loop *loop;
    int done, ok, expected;
} many_state;

static void on_many(kx_err err, natsMsg *reply, void *arg)
{
    many_state *m = arg;
    m->done++;
    if (err == KX_OK && reply != NULL)
        m->ok++;
    natsMsg_Destroy(reply);
    if (m->done == m->expected)
        kx_loop_stop(m->loop);
}

static void test_async_many(void **state)
{
    async_fixture fx;
    async_fixture_setup(&fx, "kx.test.many", NULL);
    kx_loop *loop = fx.loop;
    kx_bus_async *ab = fx.ab;
    many_state m = {.loop = loop, .expected = 500};
    kx_bus_meta meta;
    kx_bus_meta_init(&meta, kx_deadline_in(5000), NULL);
    for (int i = 0; i < m.expected; i++)
        assert_int_equal(kx_bus_async_request(ab, "kx.test.many", "m", 1, &meta, on_many, &m,
                                              NULL),
                         KX_OK);
    assert_non_null(kx_loop_timer(loop, 8000, stop_loop, NULL));
    assert_int_equal(kx_loop_run(loop), KX_OK);
    assert_int_equal(m.done, m.expected);
    assert_int_equal(m.ok, m.expected);
    assert_int_equal(kx_bus_async_pending(ab), 0);
    async_fixture_teardown(&fx);
}

/* ---- loop subscriptions ---- */

typedef struct loop_sub_state {
    kx_loop *loop;
    int count;
    bool all_on_loop;
} loop_sub_state;

static void on_loop_msg(natsMsg *msg, void *arg)
{
    loop_sub_state *s = arg;
    if (!kx_loop_in_loop_thread(s->loop))
        s->all_on_loop = false;
    s->count++;
    natsMsg_Destroy(msg);
    if (s->count == 10)
        kx_loop_stop(s->loop);
}

static void test_subscribe_loop(void **state)
{
    kx_bus *bus = connect_or_fail("test-loop-sub");
    kx_loop *loop = kx_loop_new();
    loop_sub_state s = {.loop = loop, .all_on_loop = true};
    assert_int_equal(kx_bus_subscribe_loop(bus, loop, "kx.test.loop.>", "grp", on_loop_msg, &s,
                                           NULL),
                     KX_OK);
    assert_int_equal(natsConnection_Flush(kx_bus_conn(bus)), NATS_OK);
    for (int i = 0; i < 10; i++)
        assert_int_equal(kx_bus_publish(bus, "kx.test.loop.a", "x", 1, NULL), KX_OK);
    assert_non_null(kx_loop_timer(loop, 3000, stop_loop, NULL));
    assert_int_equal(kx_loop_run(loop), KX_OK);
    assert_int_equal(s.count, 10);
    assert_true(s.all_on_loop);
    kx_bus_close(bus, 1000); /* frees the subscription */
    kx_loop_free(loop);
}

/* ---- JetStream ---- */

static void test_streams_idempotent_and_configured(void **state)
{
    kx_bus *bus = connect_or_fail("test-streams");
    assert_int_equal(kx_bus_ensure_streams(bus), KX_OK);
    assert_int_equal(kx_bus_ensure_streams(bus), KX_OK);
    struct {
        const char *name, *subject;
        jsRetentionPolicy retention;
    } want[] = {{KX_STREAM_DISPATCH, "kx.run.dispatch", js_WorkQueuePolicy},
                {KX_STREAM_EVENTS, "kx.run.ev.>", js_LimitsPolicy}};
    for (size_t i = 0; i < 2; i++) {
        jsStreamInfo *si = NULL;
        jsErrCode jerr = 0;
        assert_int_equal(js_GetStreamInfo(&si, kx_bus_js(bus), want[i].name, NULL, &jerr),
                         NATS_OK);
        assert_int_equal(si->Config->SubjectsLen, 1);
        assert_string_equal(si->Config->Subjects[0], want[i].subject);
        assert_int_equal(si->Config->Retention, want[i].retention);
        assert_int_equal(si->Config->Storage, js_FileStorage);
        if (i == 1)
            assert_true(si->Config->MaxAge == (int64_t)24 * 3600 * 1000000000);
        jsStreamInfo_Destroy(si);
    }
    kx_bus_close(bus, 1000);
}

/* kx.run.submit is core (issue 12): no stream stores it, and a KX_RUN_SUBMIT work queue left
 * by an older version (which would keep capturing the submits, consumed by nobody) is deleted
 * by kx_bus_ensure_streams. A core subscriber in the scheduler's queue group gets a submit. */
static void test_streams_retire_submit(void **state)
{
    kx_bus *bus = connect_or_fail("test-streams-retire");
    assert_int_equal(kx_th_old_submit_stream(bus), KX_OK);
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    assert_int_equal(js_GetStreamInfo(&si, kx_bus_js(bus), KX_STREAM_SUBMIT, NULL, &jerr),
                     NATS_OK);
    jsStreamInfo_Destroy(si);
    si = NULL;

    assert_int_equal(kx_bus_ensure_streams(bus), KX_OK);
    jerr = 0;
    natsStatus st = js_GetStreamInfo(&si, kx_bus_js(bus), KX_STREAM_SUBMIT, NULL, &jerr);
    assert_true(st == NATS_NOT_FOUND || jerr == JSStreamNotFoundErr);
    jsStreamInfo_Destroy(si);
    assert_int_equal(kx_bus_ensure_streams(bus), KX_OK); /* gone already: still fine */

    natsSubscription *sub = NULL;
    assert_int_equal(natsConnection_QueueSubscribeSync(&sub, kx_bus_conn(bus), KX_SUBJ_RUN_SUBMIT,
                                                       KX_CONSUMER_SCHEDULER),
                     NATS_OK);
    assert_int_equal(natsConnection_Flush(kx_bus_conn(bus)), NATS_OK);
    assert_int_equal(kx_bus_publish(bus, KX_SUBJ_RUN_SUBMIT, "x", 1, NULL), KX_OK);
    natsMsg *m = NULL;
    assert_int_equal(natsSubscription_NextMsg(&m, sub, 3000), NATS_OK);
    natsMsg_Destroy(m);
    natsSubscription_Destroy(sub);
    kx_bus_close(bus, 1000);
}

/* A bus with the streams, a new run id and its events subject. */
static kx_bus *events_bus(const char *name, char run_id[KX_UUID_LEN + 1], char *subject,
                          size_t len)
{
    kx_bus *bus = connect_or_fail(name);
    assert_int_equal(kx_bus_ensure_streams(bus), KX_OK);
    kx_uuid_new(run_id);
    snprintf(subject, len, "%s%s", KX_SUBJ_RUN_EV_PREFIX, run_id);
    return bus;
}

/* The last message on subject in the events stream (*m, the caller's), unpacked. */
static Kx__V1__RunEvent *last_event(kx_bus *bus, const char *subject, natsMsg **m)
{
    *m = NULL;
    jsErrCode jerr = 0;
    assert_int_equal(js_GetLastMsg(m, kx_bus_js(bus), KX_STREAM_EVENTS, subject, NULL, &jerr),
                     NATS_OK);
    Kx__V1__RunEvent *got = kx_pb_unpack(&kx__v1__run_event__descriptor, natsMsg_GetData(*m),
                                         (size_t)natsMsg_GetDataLength(*m));
    assert_non_null(got);
    return got;
}

static void test_js_publish_read_back(void **state)
{
    char run_id[KX_UUID_LEN + 1], subject[96];
    kx_bus *bus = events_bus("test-js", run_id, subject, sizeof subject);

    Kx__V1__RunEvent ev = KX__V1__RUN_EVENT__INIT;
    ev.run_id = run_id;
    ev.seq = 1;
    ev.kind = KX__V1__RUN_EVENT_KIND__RUN_EVENT_KIND_STATUS;
    kx_bus_meta meta;
    kx_bus_meta_init(&meta, kx_deadline_in(3000), "acct-1");
    assert_int_equal(kx_bus_js_publish_pb(bus, subject, &ev.base, &meta), KX_OK);

    natsMsg *m = NULL;
    Kx__V1__RunEvent *got = last_event(bus, subject, &m);
    assert_string_equal(got->run_id, run_id);
    assert_int_equal(got->seq, 1);
    kx_bus_meta rmeta;
    assert_int_equal(kx_bus_meta_read(m, &rmeta), KX_OK);
    assert_int_equal(rmeta.deadline, meta.deadline);
    assert_string_equal(rmeta.account, "acct-1");
    assert_string_equal(rmeta.traceparent, meta.traceparent);
    kx_pb_free(got);
    natsMsg_Destroy(m);

    /* async publishes, in order, acked before close */
    for (uint64_t i = 2; i <= 50; i++) {
        ev.seq = i;
        assert_int_equal(kx_bus_js_publish_pb_async(bus, subject, &ev.base, &meta), KX_OK);
    }
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = 3000;
    assert_int_equal(js_PublishAsyncComplete(kx_bus_js(bus), &po), NATS_OK);
    got = last_event(bus, subject, &m);
    assert_int_equal(got->seq, 50);
    kx_pb_free(got);
    natsMsg_Destroy(m);

    /* a subject no stream captures: the publish is refused, not lost silently */
    assert_int_not_equal(kx_bus_js_publish_pb(bus, "kx.test.nostream", &ev.base, &meta), KX_OK);
    kx_bus_close(bus, 1000);
}

/* kx_bus_js_publish_many: more messages than the pending bound, all acknowledged with their
 * own stream sequences (distinct, in order: one connection keeps the order); messages for a
 * subject no stream captures come back with 0 and an error, the others of the batch still go
 * through; with NATS gone, nothing is sent and every sequence is 0. */
static void test_js_publish_many(void **state)
{
    (void)state;
    char run_id[KX_UUID_LEN + 1], subject[96];
    kx_bus *bus = events_bus("test-js-many", run_id, subject, sizeof subject);
    enum {
        N = KX_BUS_MANY_MAX_PENDING + 44
    };
    static natsMsg *msgs[N];
    static uint64_t seqs[N];
    Kx__V1__RunEvent ev = KX__V1__RUN_EVENT__INIT;
    ev.run_id = run_id;
    ev.kind = KX__V1__RUN_EVENT_KIND__RUN_EVENT_KIND_STATUS;
    for (int i = 0; i < N; i++) {
        ev.seq = (uint64_t)i + 1;
        /* every 100th to a subject no stream captures */
        const char *subj = i % 100 == 50 ? "kx.test.nostream" : subject;
        assert_int_equal(kx_bus_pb_msg(subj, &ev.base, NULL, &msgs[i]), KX_OK);
    }
    kx_err err = kx_bus_js_publish_many(bus, N, msgs, 3000, seqs);
    assert_int_not_equal(err, KX_OK); /* the refused ones */
    uint64_t last = 0;
    for (int i = 0; i < N; i++) {
        assert_null(msgs[i]);
        if (i % 100 == 50) {
            assert_int_equal(seqs[i], 0);
            continue;
        }
        assert_true(seqs[i] > last);
        last = seqs[i];
    }
    /* the last one is in the stream with the last sequence */
    natsMsg *m = NULL;
    Kx__V1__RunEvent *got = last_event(bus, subject, &m);
    assert_int_equal(got->seq, N);
    kx_pb_free(got);
    natsMsg_Destroy(m);

    /* all of a batch to one stream: KX_OK */
    for (int i = 0; i < 10; i++)
        assert_int_equal(kx_bus_pb_msg(subject, &ev.base, NULL, &msgs[i]), KX_OK);
    assert_int_equal(kx_bus_js_publish_many(bus, 10, msgs, 3000, seqs), KX_OK);
    for (int i = 0; i < 10; i++)
        assert_true(seqs[i] > last);

    /* NATS gone: refused at once, nothing acknowledged, the messages freed */
    kx_th_nats_stop(&g_nats);
    for (int i = 0; i < 500 && kx_bus_connected(bus); i++)
        usleep(10000);
    for (int i = 0; i < 10; i++)
        assert_int_equal(kx_bus_pb_msg(subject, &ev.base, NULL, &msgs[i]), KX_OK);
    assert_int_equal(kx_bus_js_publish_many(bus, 10, msgs, 1000, seqs), KX_ERR_UNAVAILABLE);
    for (int i = 0; i < 10; i++) {
        assert_null(msgs[i]);
        assert_int_equal(seqs[i], 0);
    }
    kx_bus_close(bus, 1000);
    assert_int_equal(kx_th_nats_start(g_tmp, &g_nats), KX_OK);
}

/* A core subscriber that takes messages and never answers: a JetStream publish to its
 * subject gets no ack (and no "no responders" either). */
static void on_swallow(natsMsg *msg, void *arg)
{
    atomic_fetch_add((atomic_int *)arg, 1);
    natsMsg_Destroy(msg);
}

/* Fills msgs[0..n) with events on subject, except the indexes in noack[0..k) which go to
 * kx.test.noack. */
static void many_msgs(natsMsg **msgs, int n, const char *subject, const int *noack, int k)
{
    Kx__V1__RunEvent ev = KX__V1__RUN_EVENT__INIT;
    ev.kind = KX__V1__RUN_EVENT_KIND__RUN_EVENT_KIND_STATUS;
    for (int i = 0; i < n; i++) {
        const char *subj = subject;
        for (int j = 0; j < k; j++)
            if (noack[j] == i)
                subj = "kx.test.noack";
        ev.seq = (uint64_t)i + 1;
        assert_int_equal(kx_bus_pb_msg(subj, &ev.base, NULL, &msgs[i]), KX_OK);
    }
}

/* kx_bus_js_publish_many when acks do not come. (a) Three messages of a batch of ten go to a
 * subject that a plain subscriber takes without answering: the call returns
 * KX_ERR_TIMEOUT after about the ack wait (bounded: ack wait plus the 1 s margin, plus slack
 * for a loaded machine), those three have sequence 0, the seven others their stream sequences
 * in order. (b) The stream's nats-server (this test's own, by PID) is paused with SIGSTOP
 * while a batch is out: nothing is acknowledged, every sequence is 0, the call returns
 * KX_ERR_TIMEOUT within the same bound; once the server runs again, its late acks find no
 * batch (no handler runs on the freed one: ASan) and the bus works on. */
static void test_js_publish_many_ack_timeout(void **state)
{
    (void)state;
    enum {
        N = 10,
        ACK_WAIT_MS = 400,
        BOUND_MS = ACK_WAIT_MS + 1000 + 3000 /* the wait, its margin, a loaded machine */
    };
    char run_id[KX_UUID_LEN + 1], subject[96];
    kx_bus *bus = events_bus("test-js-many-noack", run_id, subject, sizeof subject);
    kx_bus *sink = connect_or_fail("test-js-many-sink");
    atomic_int swallowed = 0;
    assert_int_equal(kx_bus_subscribe(sink, "kx.test.noack", NULL, on_swallow, &swallowed, NULL),
                     KX_OK);
    assert_int_equal(natsConnection_Flush(kx_bus_conn(sink)), NATS_OK);

    /* (a) some acks never come */
    natsMsg *msgs[N];
    uint64_t seqs[N];
    const int noack[] = {3, 6, 7};
    many_msgs(msgs, N, subject, noack, 3);
    int64_t t0 = kx_mono_ms();
    kx_err err = kx_bus_js_publish_many(bus, N, msgs, ACK_WAIT_MS, seqs);
    int64_t took = kx_mono_ms() - t0;
    assert_int_equal(err, KX_ERR_TIMEOUT);
    assert_true(took < BOUND_MS);
    assert_true(wait_count(&swallowed, 3, 2000)); /* they were sent: only the acks are missing */
    uint64_t last = 0;
    for (int i = 0; i < N; i++) {
        assert_null(msgs[i]);
        if (i == 3 || i == 6 || i == 7) {
            assert_int_equal(seqs[i], 0);
            continue;
        }
        assert_true(seqs[i] > last);
        last = seqs[i];
    }

    /* (b) the stream's server paused: no ack at all */
    many_msgs(msgs, N, subject, NULL, 0);
    assert_true(kx_th_freeze(g_nats.pid)); /* all its threads: kill() alone returns sooner */
    t0 = kx_mono_ms();
    err = kx_bus_js_publish_many(bus, N, msgs, ACK_WAIT_MS, seqs);
    took = kx_mono_ms() - t0;
    assert_int_equal(kill(g_nats.pid, SIGCONT), 0);
    assert_int_equal(err, KX_ERR_TIMEOUT);
    assert_true(took < BOUND_MS);
    for (int i = 0; i < N; i++) {
        assert_null(msgs[i]);
        assert_int_equal(seqs[i], 0);
    }
    /* the server stores them late and acks nobody; the next batch goes through */
    usleep(300 * 1000);
    many_msgs(msgs, N, subject, NULL, 0);
    assert_int_equal(kx_bus_js_publish_many(bus, N, msgs, 3000, seqs), KX_OK);
    for (int i = 0; i < N; i++)
        assert_true(seqs[i] > last);
    kx_bus_close(sink, 1000);
    kx_bus_close(bus, 1000);
}

/* kx_bus_js_publish_many when single publishes of a batch fail, each its own way, in the
 * middle of the batch: (1) one message over the connection's max_payload, which cnats refuses
 * before it leaves (js_PublishMsgAsync fails: the batch takes it back at once, settles it
 * and frees it), (2) one the stream refuses (a test stream with max_msg_size 1 KiB: an error
 * ack), (3) one the stream takes in the same test stream. Each failure has sequence 0, is not
 * in any stream, and costs the batch nothing else: every other message is acknowledged with
 * its stream sequence, in order; the call says the batch failed; every message is freed
 * (msgs[i] NULL; ASan's leak check). A refused message taken back must not be matched by a
 * later ack either: the batch runs twice, the second time with the refused message first. */
static void test_js_publish_many_some_refused(void **state)
{
    (void)state;
    char run_id[KX_UUID_LEN + 1], subject[96];
    kx_bus *bus = events_bus("test-js-many-refused", run_id, subject, sizeof subject);
    jsStreamConfig sc;
    jsStreamConfig_Init(&sc);
    const char *small_subj[] = {"kx.test.small"};
    sc.Name = "KX_TEST_SMALL";
    sc.Subjects = small_subj;
    sc.SubjectsLen = 1;
    sc.Storage = js_MemoryStorage;
    sc.MaxMsgSize = 1024;
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_AddStream(&si, kx_bus_js(bus), &sc, NULL, &jerr);
    assert_true(s == NATS_OK || jerr == JSStreamNameExistErr);
    jsStreamInfo_Destroy(si);
    int64_t max_payload = natsConnection_GetMaxPayload(kx_bus_conn(bus));
    assert_true(max_payload > 0);
    char *big = calloc(1, (size_t)max_payload + 1);
    char small_big[2048];
    memset(small_big, 'x', sizeof small_big);
    assert_non_null(big);

    enum {
        N = 12
    };
    for (int round = 0; round < 2; round++) {
        const int too_big = round == 0 ? 4 : 0, refused = round == 0 ? 7 : 1;
        const int small_ok = 9;
        natsMsg *msgs[N];
        uint64_t seqs[N];
        Kx__V1__RunEvent ev = KX__V1__RUN_EVENT__INIT;
        ev.run_id = run_id;
        ev.kind = KX__V1__RUN_EVENT_KIND__RUN_EVENT_KIND_STATUS;
        for (int i = 0; i < N; i++) {
            ev.seq = (uint64_t)round * N + (uint64_t)i + 1;
            if (i == too_big)
                assert_int_equal(natsMsg_Create(&msgs[i], subject, NULL, big,
                                                (int)max_payload + 1),
                                 NATS_OK);
            else if (i == refused)
                assert_int_equal(natsMsg_Create(&msgs[i], "kx.test.small", NULL, small_big,
                                                (int)sizeof small_big),
                                 NATS_OK);
            else if (i == small_ok)
                assert_int_equal(natsMsg_Create(&msgs[i], "kx.test.small", NULL, "ok", 2),
                                 NATS_OK);
            else
                assert_int_equal(kx_bus_pb_msg(subject, &ev.base, NULL, &msgs[i]), KX_OK);
        }
        kx_err err = kx_bus_js_publish_many(bus, N, msgs, 3000, seqs);
        assert_int_not_equal(err, KX_OK);
        uint64_t last = 0;
        for (int i = 0; i < N; i++) {
            assert_null(msgs[i]);
            if (i == too_big || i == refused) {
                if (seqs[i] != 0)
                    fail_msg("round %d: message %d was refused but has sequence %llu", round, i,
                             (unsigned long long)seqs[i]);
                continue;
            }
            if (seqs[i] == 0)
                fail_msg("round %d: message %d was not acknowledged", round, i);
            if (i != small_ok) { /* the events stream's sequences, in order */
                assert_true(seqs[i] > last);
                last = seqs[i];
            }
        }
        /* the last event of the batch is the run's last: the oversized one is not there */
        natsMsg *m = NULL;
        Kx__V1__RunEvent *got = last_event(bus, subject, &m);
        assert_int_equal(got->seq, (uint64_t)round * N + N);
        kx_pb_free(got);
        natsMsg_Destroy(m);
        /* the small stream holds the accepted message only */
        m = NULL;
        assert_int_equal(js_GetLastMsg(&m, kx_bus_js(bus), "KX_TEST_SMALL", "kx.test.small", NULL,
                                       &jerr),
                         NATS_OK);
        assert_int_equal(natsMsg_GetDataLength(m), 2);
        assert_int_equal(natsMsg_GetSequence(m), seqs[small_ok]);
        natsMsg_Destroy(m);
    }
    free(big);
    assert_int_equal(js_DeleteStream(kx_bus_js(bus), "KX_TEST_SMALL", NULL, &jerr), NATS_OK);
    kx_bus_close(bus, 1000);
}

/* ---- the one natsStatus -> kx_err mapping ---- */

/* kx_bus_status_err: the batch publish mapped NATS_NO_MEMORY (and bad arguments) to
 * KX_ERR_IO while the rest of the bus said KX_ERR_NOMEM (KX_ERR_INVALID); the pull consumer
 * said KX_ERR_IO for a closed connection. One mapping now. */
static void test_status_err_mapping(void **state)
{
    (void)state;
    static const struct {
        natsStatus s;
        kx_err want;
    } cases[] = {
        {NATS_OK, KX_OK},
        {NATS_TIMEOUT, KX_ERR_TIMEOUT},
        {NATS_NO_MEMORY, KX_ERR_NOMEM},
        {NATS_INVALID_ARG, KX_ERR_INVALID},
        {NATS_INVALID_SUBJECT, KX_ERR_INVALID},
        {NATS_NO_RESPONDERS, KX_ERR_UNAVAILABLE},
        {NATS_CONNECTION_CLOSED, KX_ERR_UNAVAILABLE},
        {NATS_CONNECTION_DISCONNECTED, KX_ERR_UNAVAILABLE},
        {NATS_NOT_YET_CONNECTED, KX_ERR_UNAVAILABLE},
        {NATS_NO_SERVER, KX_ERR_UNAVAILABLE},
        {NATS_ERR, KX_ERR_IO},
        {NATS_PROTOCOL_ERROR, KX_ERR_IO},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (kx_bus_status_err(cases[i].s) != cases[i].want)
            fail_msg("kx_bus_status_err(%s) = %s, want %s", natsStatus_GetText(cases[i].s),
                     kx_err_str(kx_bus_status_err(cases[i].s)), kx_err_str(cases[i].want));
    }
}

/* ---- metadata parsing ---- */

static void test_meta_read_rejects_malformed_deadline(void **state)
{
    natsMsg *m = NULL;
    assert_int_equal(natsMsg_Create(&m, "kx.x", NULL, NULL, 0), NATS_OK);
    kx_bus_meta meta;
    assert_int_equal(kx_bus_meta_read(m, &meta), KX_OK); /* nothing: zeros */
    assert_int_equal(meta.deadline, 0);
    assert_string_equal(meta.traceparent, "");
    assert_string_equal(meta.account, "");
    assert_int_equal(natsMsgHeader_Set(m, KX_HDR_DEADLINE, "12x"), NATS_OK);
    assert_int_equal(kx_bus_meta_read(m, &meta), KX_ERR_INVALID);
    assert_int_equal(natsMsgHeader_Set(m, KX_HDR_DEADLINE, "1795290013123"), NATS_OK);
    assert_int_equal(kx_bus_meta_read(m, &meta), KX_OK);
    assert_int_equal(meta.deadline, 1795290013123LL);
    natsMsg_Destroy(m);

    kx_bus_meta bad = {0};
    snprintf(bad.traceparent, sizeof bad.traceparent, "garbage");
    char trace[33];
    kx_bus_trace_id(&bad, trace);
    assert_string_equal(trace, "");
}

/* ---- freeing messages without cnats' garbage-collector thread ---- */

static void on_msg_free(natsMsg *msg, void *arg)
{
    atomic_int *got = arg;
    kx_bus_meta meta;
    assert_int_equal(kx_bus_meta_read(msg, &meta), KX_OK); /* its headers lifted into a hash */
    kx_bus_msg_free(msg);
    atomic_fetch_add(got, 1);
}

/* kx_bus_msg_free frees what it is given, whatever it holds (under ASan: no leak, no double
 * free): made messages with and without headers, read or not, NULL, and messages received on
 * a core subscription, read and freed in the callback. */
static void test_msg_free(void **state)
{
    kx_bus_msg_free(NULL);
    for (int i = 0; i < 3; i++) {
        natsMsg *m = NULL;
        assert_int_equal(natsMsg_Create(&m, "kx.x", "reply.x", "body", 4), NATS_OK);
        if (i > 0)
            assert_int_equal(natsMsgHeader_Set(m, KX_HDR_ACCOUNT, "a"), NATS_OK);
        if (i > 1)
            assert_string_equal(natsMsg_GetData(m), "body");
        kx_bus_msg_free(m);
    }
    kx_bus *bus = connect_or_fail("test-free");
    atomic_int got = 0;
    natsSubscription *sub = NULL;
    assert_int_equal(kx_bus_subscribe(bus, "kx.test.free", NULL, on_msg_free, &got, &sub), KX_OK);
    assert_int_equal(natsConnection_Flush(kx_bus_conn(bus)), NATS_OK);
    kx_bus_meta meta;
    kx_bus_meta_init(&meta, kx_deadline_in(5000), "acct");
    for (int i = 0; i < 1000; i++)
        assert_int_equal(kx_bus_publish(bus, "kx.test.free", "x", 1, &meta), KX_OK);
    assert_true(wait_count(&got, 1000, 5000));
    natsSubscription_Destroy(sub);
    kx_bus_close(bus, 1000);
}

/* ---- connect before the server exists ---- */

static void test_connect_before_server_starts(void **state)
{
    uint16_t port = kx_th_free_port();
    assert_true(port != 0);
    char url[64];
    snprintf(url, sizeof url, "nats://127.0.0.1:%u", port);
    kx_bus *bus = NULL;
    int64_t t0 = kx_mono_ms();
    assert_int_equal(kx_bus_connect(url, "test-early", &bus), KX_OK);
    assert_true(kx_mono_ms() - t0 < 1000); /* returned without waiting for a server */
    assert_false(kx_bus_connected(bus));

    char dir[300], log[320], port_s[8];
    snprintf(dir, sizeof dir, "%s/late", g_tmp);
    snprintf(log, sizeof log, "%s/late.log", g_tmp);
    snprintf(port_s, sizeof port_s, "%u", port);
    const char *argv[] = {"nats-server", "-a", "127.0.0.1", "-p", port_s, "-sd", dir, NULL};
    pid_t pid = 0;
    assert_int_equal(kx_th_spawn(argv, NULL, log, &pid), KX_OK);
    bool up = false;
    for (int i = 0; i < 500 && !up; i++) { /* backoff is capped at 2 s (+25 %) */
        usleep(10 * 1000);
        up = kx_bus_connected(bus);
    }
    assert_true(up);
    kx_bus_close(bus, 1000);
    kx_th_kill(pid);

    /* closing a bus that never connected is quick */
    assert_int_equal(kx_bus_connect(url, "test-never", &bus), KX_OK);
    t0 = kx_mono_ms();
    kx_bus_close(bus, 1000);
    assert_true(kx_mono_ms() - t0 < 1500);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_meta_read_rejects_malformed_deadline),
        cmocka_unit_test(test_publish_subscribe),
        cmocka_unit_test(test_msg_free),
        cmocka_unit_test(test_buffered_sibling),
        cmocka_unit_test(test_request_reply_carries_headers),
        cmocka_unit_test(test_request_timeout_at_deadline),
        cmocka_unit_test(test_no_responders_is_unavailable),
        cmocka_unit_test(test_async_requests_on_loop),
        cmocka_unit_test(test_async_reply_queued_at_shutdown),
        cmocka_unit_test(test_async_many),
        cmocka_unit_test(test_subscribe_loop),
        cmocka_unit_test(test_streams_idempotent_and_configured),
        cmocka_unit_test(test_streams_retire_submit),
        cmocka_unit_test(test_js_publish_read_back),
        cmocka_unit_test(test_js_publish_many),
        cmocka_unit_test(test_js_publish_many_ack_timeout),
        cmocka_unit_test(test_js_publish_many_some_refused),
        cmocka_unit_test(test_status_err_mapping),
        cmocka_unit_test(test_connect_before_server_starts),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
