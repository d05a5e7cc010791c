/* test_runner_events_batch.c — a run's events gathered into one kx.run.ev message
 * (events.h, events_batch; proto/kx/v1/run.proto, RunEvent.events), without a bus (a capture
 * stands in for the publisher):
 *  - a batch packs its events in order, complete, and the message's own fields repeat the
 *    last one's (terminal included), with no payload of its own; readers see the same events
 *    through kx_run_events_n / kx_run_events_at;
 *  - a batch of one event is the single-event form, as before batches existed;
 *  - a batch is split BEFORE an event that would take it over EVENTS_BATCH_MAX: every message
 *    stays under NATS' 1 MB, the order is kept across the messages, nothing is lost;
 *  - a payload over EVENTS_INLINE_MAX inside a batch is streamed by reference, like alone;
 *  - kx_run_events_count_packed (the publisher's count on the ack thread) agrees with the
 *    unpacked message, and refuses bytes that are not a message. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "events.h"
#include "kx/log.h"
#include "kx/pb.h"
#include "kx/run_events.h"

#define RUN "11111111-2222-4333-8444-555555555555"
#define MAX_MSGS 16

typedef struct capture {
    uint8_t *data[MAX_MSGS];
    size_t len[MAX_MSGS];
    size_t n;
    char traceparent[56];
} capture;

static kx_err capture_send(void *arg, const Kx__V1__RunEvent *m, const kx_bus_meta *meta)
{
    capture *c = arg;
    assert_true(c->n < MAX_MSGS);
    assert_int_equal(kx_pb_pack(&m->base, &c->data[c->n], &c->len[c->n]), KX_OK);
    c->n++;
    if (meta != NULL)
        snprintf(c->traceparent, sizeof c->traceparent, "%s", meta->traceparent);
    return KX_OK;
}

static void capture_free(capture *c)
{
    for (size_t i = 0; i < c->n; i++)
        free(c->data[i]);
    memset(c, 0, sizeof *c);
}

static Kx__V1__RunEvent *unpack(const capture *c, size_t i)
{
    Kx__V1__RunEvent *m = kx_pb_unpack(&kx__v1__run_event__descriptor, c->data[i], c->len[i]);
    assert_non_null(m);
    return m;
}

static char *xdup(const char *s)
{
    char *d = strdup(s);
    assert_non_null(d);
    return d;
}

static void test_batch_round_trip(void **state)
{
    capture c = {0};
    kx_bus_meta meta;
    kx_bus_meta_init(&meta, kx_deadline_in(1000), NULL);
    events_batch b;
    events_batch_begin(&b, capture_send, &c, RUN, 3, &meta);
    const char *payloads[] = {"{\"a\": 1}", "{\"b\": \"two\"}", "{\"sequence\": 0}",
                              "{\"type\": \"status\", \"status\": \"completed\"}"};
    Kx__V1__RunEventKind kinds[] = {KX__V1__RUN_EVENT_KIND__RUN_EVENT_KIND_MESSAGE,
                                    KX__V1__RUN_EVENT_KIND__RUN_EVENT_KIND_MESSAGE,
                                    KX__V1__RUN_EVENT_KIND__RUN_EVENT_KIND_CHUNK,
                                    KX__V1__RUN_EVENT_KIND__RUN_EVENT_KIND_STATUS};
    for (int i = 0; i < 4; i++)
        assert_int_equal(events_batch_add(&b, 10 + (uint64_t)i, kinds[i], i == 3,
                                          xdup(payloads[i])),
                         KX_OK);
    assert_int_equal(c.n, 0); /* nothing goes out before the end */
    assert_int_equal(events_batch_end(&b), KX_OK);
    assert_int_equal(c.n, 1);
    assert_string_equal(c.traceparent, meta.traceparent);
    Kx__V1__RunEvent *m = unpack(&c, 0);
    assert_int_equal(kx_run_events_n(m), 4);
    assert_int_equal(kx_run_events_count_packed(c.data[0], c.len[0]), 4);
    /* the message's own fields: the last event's, no payload */
    assert_string_equal(m->run_id, RUN);
    assert_int_equal(m->lease_epoch, 3);
    assert_int_equal(m->seq, 13);
    assert_int_equal(m->kind, KX__V1__RUN_EVENT_KIND__RUN_EVENT_KIND_STATUS);
    assert_true(m->terminal);
    assert_true(kx_pb_str_empty(m->payload_json));
    for (size_t i = 0; i < 4; i++) {
        const Kx__V1__RunEvent *e = kx_run_events_at(m, i);
        assert_string_equal(e->run_id, RUN);
        assert_int_equal(e->lease_epoch, 3);
        assert_int_equal(e->seq, 10 + i);
        assert_int_equal(e->kind, kinds[i]);
        assert_int_equal(e->terminal, i == 3);
        assert_string_equal(e->payload_json, payloads[i]);
        assert_int_equal(e->n_events, 0);
    }
    kx_pb_free(m);
    capture_free(&c);
}

static void test_single_event_form(void **state)
{
    capture c = {0};
    events_batch b;
    events_batch_begin(&b, capture_send, &c, RUN, 1, NULL);
    assert_int_equal(events_batch_end(&b), KX_OK); /* empty: nothing */
    assert_int_equal(c.n, 0);
    events_batch_begin(&b, capture_send, &c, RUN, 1, NULL);
    assert_int_equal(events_batch_add(&b, 5, KX__V1__RUN_EVENT_KIND__RUN_EVENT_KIND_MESSAGE, false,
                                      xdup("{\"x\": 1}")),
                     KX_OK);
    assert_int_equal(events_batch_end(&b), KX_OK);
    assert_int_equal(c.n, 1);
    Kx__V1__RunEvent *m = unpack(&c, 0);
    assert_int_equal(m->n_events, 0);
    assert_int_equal(kx_run_events_n(m), 1);
    assert_ptr_equal(kx_run_events_at(m, 0), m);
    assert_int_equal(m->seq, 5);
    assert_string_equal(m->payload_json, "{\"x\": 1}");
    assert_int_equal(kx_run_events_count_packed(c.data[0], c.len[0]), 1);
    /* exactly what a lone RunEvent packs to (the form older readers know) */
    Kx__V1__RunEvent one = KX__V1__RUN_EVENT__INIT;
    one.run_id = RUN;
    one.lease_epoch = 1;
    one.seq = 5;
    one.kind = KX__V1__RUN_EVENT_KIND__RUN_EVENT_KIND_MESSAGE;
    one.payload_json = "{\"x\": 1}";
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(kx_pb_pack(&one.base, &buf, &len), KX_OK);
    assert_int_equal(len, c.len[0]);
    assert_memory_equal(buf, c.data[0], len);
    free(buf);
    kx_pb_free(m);
    capture_free(&c);
}

/* A payload of n bytes: {"i": i, "pad": "ppp…"}. */
static char *padded(int i, size_t n)
{
    char *s = malloc(n + 1);
    assert_non_null(s);
    int h = snprintf(s, n + 1, "{\"i\": %d, \"pad\": \"", i);
    memset(s + h, 'p', n - (size_t)h - 2);
    memcpy(s + n - 2, "\"}", 3);
    return s;
}

static int index_of(const char *payload)
{
    static const char head[] = "{\"i\": ";
    if (strncmp(payload, head, sizeof head - 1) != 0)
        return -1;
    char *end = NULL;
    long i = strtol(payload + sizeof head - 1, &end, 10);
    return end != payload + sizeof head - 1 ? (int)i : -1;
}

/* Events of 300 KB: two fit a message, a third would not — it starts the next one. Then a
 * string of small events after a large one, and one at the inline maximum, which still takes
 * a small one after it. */
static void test_split_before_the_cap(void **state)
{
    capture c = {0};
    events_batch b;
    events_batch_begin(&b, capture_send, &c, RUN, 1, NULL);
    size_t sizes[] = {300000, 300000, 300000, 300000, 300000, 100, 100, EVENTS_INLINE_MAX, 100};
    size_t n = sizeof sizes / sizeof sizes[0];
    for (size_t i = 0; i < n; i++)
        assert_int_equal(events_batch_add(&b, i, KX__V1__RUN_EVENT_KIND__RUN_EVENT_KIND_MESSAGE,
                                          i == n - 1, padded((int)i, sizes[i])),
                         KX_OK);
    assert_int_equal(events_batch_end(&b), KX_OK);
    /* [0 1] [2 3] [4 5 6] [7 8] */
    size_t want[] = {2, 2, 3, 2};
    assert_int_equal(c.n, 4);
    int next = 0;
    for (size_t k = 0; k < c.n; k++) {
        assert_true(c.len[k] <= EVENTS_BATCH_MAX + 256);
        assert_true(c.len[k] < 1000u * 1000u - 4096); /* NATS' max_payload, headers aside */
        Kx__V1__RunEvent *m = unpack(&c, k);
        assert_int_equal(kx_run_events_n(m), want[k]);
        assert_int_equal(kx_run_events_count_packed(c.data[k], c.len[k]), want[k]);
        for (size_t i = 0; i < kx_run_events_n(m); i++) {
            const Kx__V1__RunEvent *e = kx_run_events_at(m, i);
            assert_int_equal(index_of(e->payload_json), next);
            assert_int_equal(strlen(e->payload_json), sizes[next]);
            assert_int_equal(e->seq, (uint64_t)next);
            next++;
        }
        assert_int_equal(m->terminal, k == c.n - 1);
        kx_pb_free(m);
    }
    assert_int_equal(next, (int)n);
    capture_free(&c);
}

/* A payload over the inline maximum inside a batch goes by reference, in its place. */
static void test_too_large_in_a_batch(void **state)
{
    capture c = {0};
    events_batch b;
    events_batch_begin(&b, capture_send, &c, RUN, 1, NULL);
    assert_int_equal(events_batch_add(&b, 1, KX__V1__RUN_EVENT_KIND__RUN_EVENT_KIND_MESSAGE, false,
                                      xdup("{\"i\": 0}")),
                     KX_OK);
    assert_int_equal(events_batch_add(&b, 2, KX__V1__RUN_EVENT_KIND__RUN_EVENT_KIND_MESSAGE, false,
                                      padded(1, 900000)),
                     KX_OK);
    assert_int_equal(events_batch_add(&b, 3, KX__V1__RUN_EVENT_KIND__RUN_EVENT_KIND_MESSAGE, false,
                                      xdup("{\"i\": 2}")),
                     KX_OK);
    assert_int_equal(events_batch_end(&b), KX_OK);
    assert_int_equal(c.n, 1);
    Kx__V1__RunEvent *m = unpack(&c, 0);
    assert_int_equal(kx_run_events_n(m), 3);
    assert_string_equal(kx_run_events_at(m, 0)->payload_json, "{\"i\": 0}");
    assert_non_null(strstr(kx_run_events_at(m, 1)->payload_json,
                           "\"status\": \"too_large\", \"message\": \"message 2 too large"));
    assert_string_equal(kx_run_events_at(m, 2)->payload_json, "{\"i\": 2}");
    kx_pb_free(m);
    capture_free(&c);
}

/* More events than the batch holds without the heap: one message, all in order. */
static void test_many_small_events(void **state)
{
    capture c = {0};
    events_batch b;
    events_batch_begin(&b, capture_send, &c, RUN, 2, NULL);
    for (int i = 0; i < 100; i++) {
        char p[32];
        snprintf(p, sizeof p, "{\"i\": %d}", i);
        assert_int_equal(events_batch_add(&b, (uint64_t)i,
                                          KX__V1__RUN_EVENT_KIND__RUN_EVENT_KIND_CHUNK, false,
                                          xdup(p)),
                         KX_OK);
    }
    assert_int_equal(events_batch_end(&b), KX_OK);
    assert_int_equal(c.n, 1);
    Kx__V1__RunEvent *m = unpack(&c, 0);
    assert_int_equal(kx_run_events_n(m), 100);
    assert_int_equal(kx_run_events_count_packed(c.data[0], c.len[0]), 100);
    for (size_t i = 0; i < 100; i++)
        assert_int_equal(index_of(kx_run_events_at(m, i)->payload_json), (int)i);
    assert_false(m->terminal);
    kx_pb_free(m);
    capture_free(&c);
}

static void test_count_packed_refuses_garbage(void **state)
{
    const uint8_t truncated[] = {0x3a, 0x10, 0x01}; /* field 7, 16 bytes announced, 1 there */
    assert_int_equal(kx_run_events_count_packed(truncated, sizeof truncated), 0);
    const uint8_t group[] = {0x0b}; /* a group start: not used by kx.v1 */
    assert_int_equal(kx_run_events_count_packed(group, sizeof group), 0);
    const uint8_t endless[] = {0x08, 0xff}; /* a varint that never ends */
    assert_int_equal(kx_run_events_count_packed(endless, sizeof endless), 0);
    assert_int_equal(kx_run_events_count_packed("", 0), 1); /* an empty RunEvent */
}

int main(void)
{
    kx_log_init("test-runner-events-batch", "test");
    kx_log_set_level(KX_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_batch_round_trip),
        cmocka_unit_test(test_single_event_form),
        cmocka_unit_test(test_split_before_the_cap),
        cmocka_unit_test(test_too_large_in_a_batch),
        cmocka_unit_test(test_many_small_events),
        cmocka_unit_test(test_count_packed_refuses_garbage),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
