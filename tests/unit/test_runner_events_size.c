/* test_runner_events_size.c — size and flow discipline of the run event stream, against a
 * real nats-server with JetStream (the harness starts it):
 *  - a row too large for the bus (a 900 KB tool output, which the event carries twice) is cut
 *    to head + tail + a note naming the saved message, and fits;
 *  - a payload still too large is streamed by reference ("message N too large to stream, fetch
 *    it", with the row's ids), never dropped; a small one goes as is;
 *  - the publisher bounds what is in flight, queues the rest in order, never blocks;
 *  - a publish whose ack never comes becomes an error event, not silence;
 *  - on the publisher's own connection (no SendAsap) the events published in one loop callback
 *    are buffered and leave together, not one write each; a paused nats-server still gives
 *    back-pressure (bound, queue) and loses nothing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <unistd.h>

#include "events.h"
#include "harness.h"
#include "kx/log.h"
#include "kx/loop.h"
#include "publisher.h"
#include "kx/pb.h"
#include "kx/time.h"

#define RUN "11111111-2222-4333-8444-555555555555"

static void test_stand_in_shape(void **state)
{
    const char *row = "{\"message_id\": \"m-1\", \"thread_id\": \"t-1\", \"type\": \"assistant\"}";
    char *s = events_too_large_json(7, row, strlen(row));
    assert_non_null(s);
    assert_string_equal(
        s,
        "{\"type\": \"status\", \"status\": \"too_large\", \"message\": \"message 7 "
        "too large to stream (62 bytes), fetch it\", \"message_id\": \"m-1\", "
        "\"thread_id\": \"t-1\", \"size\": 62}");
    free(s);
    s = events_too_large_json(8, "not json", 8);
    assert_non_null(strstr(s, "\"message_id\": null"));
    free(s);
}

/* The payload of the last event on the run's subject, waiting up to 5 s for one whose seq is
 * seq. malloc'd. */
static char *last_payload(kx_bus *bus, uint64_t seq)
{
    for (int i = 0; i < 250; i++) {
        natsMsg *m = NULL;
        jsErrCode jerr = 0;
        if (js_GetLastMsg(&m, kx_bus_js(bus), KX_STREAM_EVENTS, KX_SUBJ_RUN_EV_PREFIX RUN, NULL,
                          &jerr) == NATS_OK) {
            Kx__V1__RunEvent *ev = kx_pb_unpack(&kx__v1__run_event__descriptor, natsMsg_GetData(m),
                                                (size_t)natsMsg_GetDataLength(m));
            char *p = ev != NULL && ev->seq == seq ? strdup(ev->payload_json) : NULL;
            kx_pb_free(ev);
            natsMsg_Destroy(m);
            if (p != NULL)
                return p;
        }
        usleep(20 * 1000);
    }
    return NULL;
}

static void test_large_payload_goes_by_reference(void **state)
{
    char *dir = kx_th_tmpdir("kx-ut-events-size");
    kx_th_nats nats;
    assert_int_equal(kx_th_nats_start(dir, &nats), KX_OK);
    kx_bus *bus = NULL;
    assert_int_equal(kx_bus_connect(nats.url, "test-events-size", &bus), KX_OK);
    for (int i = 0; i < 100 && !kx_bus_connected(bus); i++)
        usleep(20000);
    assert_int_equal(kx_bus_ensure_streams(bus), KX_OK);
    kx_loop *loop = kx_loop_new();
    publisher *pub = NULL;
    assert_int_equal(publisher_new(bus, loop, 4096, 5000, true, &pub), KX_OK);

    /* A small event: as is. */
    assert_int_equal(events_publish(pub, RUN, 1, 1, KX__V1__RUN_EVENT_KIND__RUN_EVENT_KIND_MESSAGE,
                                    false, "{\"n\": 1}", NULL),
                     KX_OK);
    char *p = last_payload(bus, 1);
    assert_non_null(p);
    assert_string_equal(p, "{\"n\": 1}");
    free(p);

    /* A 1 MB saved row (its content over NATS' limit): by reference, with its ids. */
    size_t big = 1000000;
    char *row = malloc(big + 200);
    int n =
        snprintf(row, 200, "{\"message_id\": \"m-9\", \"thread_id\": \"t-9\", \"content\": \"");
    memset(row + n, 'x', big);
    snprintf(row + n + big, 8, "\"}");
    assert_int_equal(events_publish(pub, RUN, 1, 2, KX__V1__RUN_EVENT_KIND__RUN_EVENT_KIND_MESSAGE,
                                    false, row, NULL),
                     KX_OK);
    p = last_payload(bus, 2); /* it was dropped before: nothing arrived */
    assert_non_null(p);
    json_t *v = json_loads(p, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(v, "status")), "too_large");
    assert_string_equal(json_string_value(json_object_get(v, "message_id")), "m-9");
    assert_string_equal(json_string_value(json_object_get(v, "thread_id")), "t-9");
    assert_int_equal(json_integer_value(json_object_get(v, "size")), (json_int_t)strlen(row));
    json_decref(v);
    free(p);
    free(row);

    publisher_free(pub, 2000);
    kx_loop_free(loop);
    kx_bus_close(bus, 1000);
    kx_th_nats_stop(&nats);
    kx_th_rmrf(dir);
    free(dir);
}

/* A tool result row with a 900 KB output, which the event carries twice (content and
 * metadata.frontend_content): before, 1.8 MB went by reference only; now both copies are cut
 * to head + tail + a note naming the message, and the event fits under the inline limit. */
static void test_tool_row_is_capped_to_fit(void **state)
{
    size_t big = 900 * 1000;
    char *out = malloc(big + 1);
    memset(out, 'a', big);
    memcpy(out, "HEAD-", 5);
    memcpy(out + big - 5, "-TAIL", 5);
    out[big] = '\0';
    json_t *te = json_pack("{s:{s:s, s:{s:b, s:s}}}", "tool_execution", "function_name",
                           "execute_command", "result", "success", 1, "output", out);
    json_t *meta = json_pack("{s:s, s:O}", "assistant_message_id", "a-1", "frontend_content", te);
    char *ev = events_row_json("m-900", "t-1", "tool", true, te, meta, "2026-11-30T00:00:00Z",
                               "2026-11-30T00:00:00Z");
    assert_non_null(ev);
    size_t len = strlen(ev);
    print_message("900 KB tool row event: %zu bytes\n", len);
    assert_true(len <= EVENTS_INLINE_MAX);
    json_t *row = json_loads(ev, 0, NULL);
    assert_non_null(row);
    json_t *content = json_loads(json_string_value(json_object_get(row, "content")), 0, NULL);
    assert_non_null(content);
    const char *o = json_string_value(
        json_object_get(json_object_get(json_object_get(content, "tool_execution"), "result"),
                        "output"));
    assert_non_null(o);
    assert_memory_equal(o, "HEAD-", 5);
    assert_memory_equal(o + strlen(o) - 5, "-TAIL", 5);
    assert_non_null(strstr(o, "bytes cut from the middle to fit the event stream; message m-900"));
    assert_true(strlen(o) > 100 * 1000); /* most of what fits is kept */
    json_t *md = json_loads(json_string_value(json_object_get(row, "metadata")), 0, NULL);
    assert_non_null(md);
    assert_string_equal(json_string_value(json_object_get(md, "assistant_message_id")), "a-1");
    json_decref(md);
    json_decref(content);
    json_decref(row);
    free(ev);
    /* a small row is not touched */
    json_t *small = json_pack("{s:s}", "content", "hello");
    ev = events_row_json("m-1", "t-1", "assistant", true, small, small, "x", "y");
    assert_non_null(strstr(ev, "hello"));
    assert_null(strstr(ev, "bytes cut"));
    free(ev);
    json_decref(small);
    json_decref(te);
    json_decref(meta);
    free(out);
}

/* ---- the publisher on a running loop ---- */

typedef struct flow {
    kx_loop *loop;
    publisher *pub;
    kx_th_nats *nats;
    int64_t until_ms;
    bool (*done)(struct flow *f);
    int64_t max_queued;
    bool busy_seen;
    int phase;
} flow;

static void tick(kx_loop *loop, void *arg)
{
    flow *f = arg;
    int64_t q = publisher_queued(f->pub);
    if (q > f->max_queued)
        f->max_queued = q;
    if (f->done(f) || kx_mono_ms() > f->until_ms) {
        kx_loop_stop(loop);
        return;
    }
    kx_loop_timer(loop, 10, tick, f);
}

static bool all_acked(flow *f)
{
    return publisher_inflight(f->pub) == 0 && publisher_queued(f->pub) == 0;
}

#define FLOW_EVENTS 3000

static void publish_many(kx_loop *loop, void *arg)
{
    flow *f = arg;
    for (uint64_t i = 1; i <= FLOW_EVENTS; i++) {
        char payload[64];
        snprintf(payload, sizeof payload, "{\"i\": %llu}", (unsigned long long)i);
        assert_int_equal(events_publish(f->pub, RUN, 1, i,
                                        KX__V1__RUN_EVENT_KIND__RUN_EVENT_KIND_MESSAGE, false,
                                        payload, NULL),
                         KX_OK);
    }
    f->busy_seen = publisher_busy(f->pub);
    tick(loop, f);
}

/* 3 000 events with at most 8 in flight: the rest wait in the publisher's queue (the loop never
 * blocks), and all arrive, in order. */
static void test_bounded_inflight_keeps_order(void **state)
{
    char *dir = kx_th_tmpdir("kx-ut-events-flow");
    kx_th_nats nats;
    assert_int_equal(kx_th_nats_start(dir, &nats), KX_OK);
    kx_bus *bus = NULL;
    assert_int_equal(kx_bus_connect(nats.url, "test-events-flow", &bus), KX_OK);
    for (int i = 0; i < 100 && !kx_bus_connected(bus); i++)
        usleep(20000);
    assert_int_equal(kx_bus_ensure_streams(bus), KX_OK);
    flow f = {.loop = kx_loop_new(), .nats = &nats, .done = all_acked};
    assert_int_equal(publisher_new(bus, f.loop, 8, 5000, true, &f.pub), KX_OK);
    f.until_ms = kx_mono_ms() + 30000;
    int64_t t0 = kx_mono_ms();
    kx_loop_timer(f.loop, 0, publish_many, &f);
    kx_loop_run(f.loop);
    print_message("%d events, at most 8 in flight: queue peaked at %lld, all acked after %lld "
                  "ms\n",
                  FLOW_EVENTS, (long long)f.max_queued, (long long)(kx_mono_ms() - t0));
    assert_true(f.busy_seen);
    assert_true(f.max_queued > 0);
    assert_true(all_acked(&f));
    /* in the stream, in order */
    jsStreamInfo *si = NULL;
    assert_int_equal(js_GetStreamInfo(&si, kx_bus_js(bus), KX_STREAM_EVENTS, NULL, NULL), NATS_OK);
    assert_int_equal(si->State.Msgs, FLOW_EVENTS);
    uint64_t first = si->State.FirstSeq;
    assert_true(si->Config->MaxBytes > 0); /* the events stream has a byte limit */
    jsStreamInfo_Destroy(si);
    for (uint64_t i = 0; i < FLOW_EVENTS; i += 499) {
        natsMsg *m = NULL;
        assert_int_equal(js_GetMsg(&m, kx_bus_js(bus), KX_STREAM_EVENTS, first + i, NULL, NULL),
                         NATS_OK);
        Kx__V1__RunEvent *ev = kx_pb_unpack(&kx__v1__run_event__descriptor, natsMsg_GetData(m),
                                            (size_t)natsMsg_GetDataLength(m));
        assert_non_null(ev);
        assert_int_equal(ev->seq, i + 1);
        kx_pb_free(ev);
        natsMsg_Destroy(m);
    }
    publisher_free(f.pub, 2000);
    kx_loop_free(f.loop);
    kx_bus_close(bus, 1000);
    kx_th_nats_stop(&nats);
    kx_th_rmrf(dir);
    free(dir);
}

static bool error_event_seen(flow *f);

static void publish_while_stopped(kx_loop *loop, void *arg)
{
    flow *f = arg;
    assert_true(kx_th_freeze(f->nats->pid)); /* JetStream will not ack */
    assert_int_equal(events_publish(f->pub, RUN, 1, 7,
                                    KX__V1__RUN_EVENT_KIND__RUN_EVENT_KIND_MESSAGE, false,
                                    "{\"n\": 7}", NULL),
                     KX_OK);
    tick(loop, f);
}

static kx_bus *probe_bus;

static bool error_event_seen(flow *f)
{
    if (f->phase == 0 && publisher_inflight(f->pub) == 0) { /* the ack deadline passed */
        f->phase = 1;
        kill(f->nats->pid, SIGCONT);
        return false;
    }
    if (f->phase == 0)
        return false;
    char *p = last_payload(probe_bus, 7);
    bool ok = p != NULL && strstr(p, "event 7 could not be streamed") != NULL;
    free(p);
    return ok;
}

/* nats-server stopped (SIGSTOP) while an event is published: its ack never comes; after the
 * ack deadline an error event stands in for it on the run's subject. */
static void test_unacked_publish_becomes_error_event(void **state)
{
    char *dir = kx_th_tmpdir("kx-ut-events-err");
    kx_th_nats nats;
    assert_int_equal(kx_th_nats_start(dir, &nats), KX_OK);
    kx_bus *bus = NULL;
    assert_int_equal(kx_bus_connect(nats.url, "test-events-err", &bus), KX_OK);
    for (int i = 0; i < 100 && !kx_bus_connected(bus); i++)
        usleep(20000);
    assert_int_equal(kx_bus_ensure_streams(bus), KX_OK);
    probe_bus = bus;
    flow f = {.loop = kx_loop_new(), .nats = &nats, .done = error_event_seen};
    assert_int_equal(publisher_new(bus, f.loop, 64, 300, true, &f.pub), KX_OK);
    f.until_ms = kx_mono_ms() + 20000;
    kx_loop_timer(f.loop, 0, publish_while_stopped, &f);
    kx_loop_run(f.loop);
    kill(nats.pid, SIGCONT);
    assert_int_equal(f.phase, 1);
    assert_true(error_event_seen(&f));
    publisher_free(f.pub, 2000);
    kx_loop_free(f.loop);
    kx_bus_close(bus, 1000);
    kx_th_nats_stop(&nats);
    kx_th_rmrf(dir);
    free(dir);
}

/* Opens a JetStream-ready nats-server, a bus on it and a publisher (own_conn) with max_pending
 * and ack_wait_ms; waits until the publisher's connection is up. */
static kx_bus *flow_setup(const char *dir, kx_th_nats *nats, flow *f, int64_t max_pending,
                          int64_t ack_wait_ms, bool own_conn)
{
    assert_int_equal(kx_th_nats_start(dir, nats), KX_OK);
    kx_bus *bus = NULL;
    assert_int_equal(kx_bus_connect(nats->url, "test-events-buf", &bus), KX_OK);
    for (int i = 0; i < 100 && !kx_bus_connected(bus); i++)
        usleep(20000);
    assert_int_equal(kx_bus_ensure_streams(bus), KX_OK);
    f->loop = kx_loop_new();
    f->nats = nats;
    assert_int_equal(publisher_new(bus, f->loop, max_pending, ack_wait_ms, own_conn, &f->pub),
                     KX_OK);
    for (int i = 0; i < 250; i++) {
        if (natsConnection_Status(publisher_conn(f->pub)) == NATS_CONN_STATUS_CONNECTED)
            break;
        usleep(20000);
    }
    assert_int_equal(natsConnection_Status(publisher_conn(f->pub)), NATS_CONN_STATUS_CONNECTED);
    return bus;
}

static void flow_teardown(kx_bus *bus, kx_th_nats *nats, flow *f, char *dir)
{
    publisher_free(f->pub, 2000);
    kx_loop_free(f->loop);
    kx_bus_close(bus, 1000);
    kx_th_nats_stop(nats);
    kx_th_rmrf(dir);
    free(dir);
}

/* Whether the events of seq first..last are the stream's messages from its first on, in
 * order. */
static void assert_stream_in_order(kx_bus *bus, uint64_t first_seq, uint64_t last_seq)
{
    jsStreamInfo *si = NULL;
    assert_int_equal(js_GetStreamInfo(&si, kx_bus_js(bus), KX_STREAM_EVENTS, NULL, NULL), NATS_OK);
    assert_int_equal(si->State.Msgs, last_seq - first_seq + 1);
    uint64_t first = si->State.FirstSeq;
    jsStreamInfo_Destroy(si);
    for (uint64_t i = 0; i <= last_seq - first_seq; i++) {
        natsMsg *m = NULL;
        assert_int_equal(js_GetMsg(&m, kx_bus_js(bus), KX_STREAM_EVENTS, first + i, NULL, NULL),
                         NATS_OK);
        Kx__V1__RunEvent *ev = kx_pb_unpack(&kx__v1__run_event__descriptor, natsMsg_GetData(m),
                                            (size_t)natsMsg_GetDataLength(m));
        assert_non_null(ev);
        assert_int_equal(ev->seq, first_seq + i);
        kx_pb_free(ev);
        natsMsg_Destroy(m);
    }
}

static void publish_range(publisher *pub, uint64_t from, uint64_t to)
{
    for (uint64_t i = from; i <= to; i++) {
        char payload[64];
        snprintf(payload, sizeof payload, "{\"i\": %llu}", (unsigned long long)i);
        assert_int_equal(events_publish(pub, RUN, 1, i,
                                        KX__V1__RUN_EVENT_KIND__RUN_EVENT_KIND_MESSAGE, false,
                                        payload, NULL),
                         KX_OK);
    }
}

#define BURST 10

/* Bytes the publisher's connection still held right after a burst of BURST publishes, the most
 * seen in `tries` bursts (between bursts the acks are waited for). */
static int max_buffered_after_bursts(flow *f, int tries)
{
    int most = 0;
    for (int t = 0; t < tries; t++) {
        uint64_t from = (uint64_t)t * BURST + 1;
        publish_range(f->pub, from, from + BURST - 1);
        int b = natsConnection_Buffered(publisher_conn(f->pub));
        if (b > most)
            most = b;
        f->until_ms = kx_mono_ms() + 10000;
        kx_loop_timer(f->loop, 0, tick, f);
        kx_loop_run(f->loop);
        assert_true(all_acked(f));
    }
    return most;
}

/* The publisher's own connection buffers: right after a loop callback published BURST events
 * they are still in cnats' buffer (written together by its flusher), where the runner's
 * SendAsap connection has written each one already (nothing buffered). Either way all arrive,
 * in order. (Three bursts: one preempted for over a millisecond could be flushed already.) */
static void test_events_leave_together(void **state)
{
    char *dir = kx_th_tmpdir("kx-ut-events-buf");
    kx_th_nats nats;
    flow f = {.done = all_acked};
    kx_bus *bus = flow_setup(dir, &nats, &f, 4096, 5000, true);
    int most = max_buffered_after_bursts(&f, 3);
    print_message("own connection: %d bytes still buffered after %d publishes\n", most, BURST);
    assert_true(most > 0);
    assert_stream_in_order(bus, 1, 3 * BURST);
    flow_teardown(bus, &nats, &f, dir);

    dir = kx_th_tmpdir("kx-ut-events-asap");
    flow g = {.done = all_acked};
    bus = flow_setup(dir, &nats, &g, 4096, 5000, false);
    most = max_buffered_after_bursts(&g, 3);
    assert_int_equal(most, 0); /* SendAsap: each publish written in the call */
    assert_stream_in_order(bus, 1, 3 * BURST);
    flow_teardown(bus, &nats, &g, dir);
}

/* nats-server paused (SIGSTOP) under the buffered connection: publishes beyond the bound wait
 * in the publisher's queue (busy: back-pressure), the loop does not block, and once the server
 * runs again every event is stored, in order, none lost or doubled. */
static void test_paused_nats_backpressure_no_loss(void **state)
{
    char *dir = kx_th_tmpdir("kx-ut-events-pause");
    kx_th_nats nats;
    flow f = {.done = all_acked};
    kx_bus *bus = flow_setup(dir, &nats, &f, 16, 10000, true);
    assert_true(kx_th_freeze(nats.pid));
    int64_t t0 = kx_mono_ms();
    publish_range(f.pub, 1, 200);
    int64_t took = kx_mono_ms() - t0;
    assert_int_equal(publisher_inflight(f.pub), 16);
    assert_int_equal(publisher_queued(f.pub), 200 - 16);
    assert_true(publisher_busy(f.pub));
    print_message("200 publishes with nats-server paused returned in %lld ms\n", (long long)took);
    kill(nats.pid, SIGCONT);
    f.until_ms = kx_mono_ms() + 20000;
    kx_loop_timer(f.loop, 0, tick, &f);
    kx_loop_run(f.loop);
    assert_true(all_acked(&f));
    assert_false(publisher_busy(f.pub));
    assert_stream_in_order(bus, 1, 200);
    flow_teardown(bus, &nats, &f, dir);
}

int main(void)
{
    kx_log_init("test-events-size", "test");
    kx_log_set_level(KX_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stand_in_shape),
        cmocka_unit_test(test_large_payload_goes_by_reference),
        cmocka_unit_test(test_tool_row_is_capped_to_fit),
        cmocka_unit_test(test_bounded_inflight_keeps_order),
        cmocka_unit_test(test_unacked_publish_becomes_error_event),
        cmocka_unit_test(test_events_leave_together),
        cmocka_unit_test(test_paused_nats_backpressure_no_loss),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
