/* test_runner_events_size.c — size discipline of the run event stream: a payload too large
 * for the bus (NATS max_payload 1 MB) is streamed by reference ("message N too large to
 * stream, fetch it", with the row's ids), never dropped; a small one goes as is. Against a
 * real nats-server with JetStream (the harness starts it). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "events.h"
#include "harness.h"
#include "kx/log.h"
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

    /* A small event: as is. */
    assert_int_equal(events_publish(bus, RUN, 1, 1, KX__V1__RUN_EVENT_KIND__RUN_EVENT_KIND_MESSAGE,
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
    assert_int_equal(events_publish(bus, RUN, 1, 2, KX__V1__RUN_EVENT_KIND__RUN_EVENT_KIND_MESSAGE,
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

    kx_bus_close(bus, 1000);
    kx_th_nats_stop(&nats);
    kx_th_rmrf(dir);
    free(dir);
}

int main(void)
{
    kx_log_init("test-events-size", "test");
    kx_log_set_level(KX_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stand_in_shape),
        cmocka_unit_test(test_large_payload_goes_by_reference),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
