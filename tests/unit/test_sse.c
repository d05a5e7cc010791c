/* test_sse.c — the text/event-stream parser: a stream exercising every WHATWG rule gives the
 * expected events, and the same events whether fed whole, split at every byte position, or
 * byte by byte; BOM handling; the event size limit. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "kx/sse.h"

typedef struct ev {
    char *event, *data, *id;
    size_t data_len;
} ev;

typedef struct got {
    ev evs[16];
    int n;
} got;

static void collect(const char *event, const char *data, size_t data_len, const char *id,
                    void *arg)
{
    got *g = arg;
    assert_true(g->n < 16);
    ev *e = &g->evs[g->n++];
    e->event = strdup(event);
    e->data = malloc(data_len + 1);
    memcpy(e->data, data, data_len);
    e->data[data_len] = '\0';
    e->data_len = data_len;
    e->id = strdup(id);
}

static void got_free(got *g)
{
    for (int i = 0; i < g->n; i++) {
        free(g->evs[i].event);
        free(g->evs[i].data);
        free(g->evs[i].id);
    }
    g->n = 0;
}

static const char STREAM[] = "\xEF\xBB\xBF: comment\r\n"
                             "data: first\r\n"
                             "\r\n"
                             "event: update\n"
                             "data: line1\n"
                             "data:line2\n"
                             "data:  indented\n"
                             "id: 7\n"
                             "retry: 1000\n"
                             "\n"
                             "event: empty\n"
                             "\n"
                             "data\r"
                             "\r"
                             ": ping\n"
                             "foo: bar\n"
                             "data: after-unknown\n"
                             "id\n"
                             "\n"
                             "data: {\"choices\": [1]}\r\n\r\n"
                             "data: incomplete\n";

static const struct {
    const char *event, *data, *id;
} WANT[] = {
    {"message", "first", ""},
    {"update", "line1\nline2\n indented", "7"},
    /* "event: empty" without data: nothing. */
    {"message", "", "7"},             /* a bare "data" line is an empty data line */
    {"message", "after-unknown", ""}, /* "id" alone resets the id */
    {"message", "{\"choices\": [1]}", ""},
    /* "data: incomplete" never sees its blank line. */
};
#define NWANT ((int)(sizeof WANT / sizeof WANT[0]))

static void check(const got *g)
{
    assert_int_equal(g->n, NWANT);
    for (int i = 0; i < NWANT; i++) {
        assert_string_equal(g->evs[i].event, WANT[i].event);
        assert_string_equal(g->evs[i].data, WANT[i].data);
        assert_int_equal(g->evs[i].data_len, strlen(WANT[i].data));
        assert_string_equal(g->evs[i].id, WANT[i].id);
    }
}

static void test_whole_stream(void **state)
{
    got g = {.n = 0};
    kx_sse_parser p;
    kx_sse_init(&p, collect, &g);
    assert_int_equal(kx_sse_feed(&p, STREAM, sizeof STREAM - 1), KX_OK);
    check(&g);
    got_free(&g);
    kx_sse_free(&p);
}

static void test_every_split_position(void **state)
{
    size_t len = sizeof STREAM - 1;
    for (size_t cut = 0; cut <= len; cut++) {
        got g = {.n = 0};
        kx_sse_parser p;
        kx_sse_init(&p, collect, &g);
        assert_int_equal(kx_sse_feed(&p, STREAM, cut), KX_OK);
        assert_int_equal(kx_sse_feed(&p, STREAM + cut, len - cut), KX_OK);
        check(&g);
        got_free(&g);
        kx_sse_free(&p);
    }
    /* And byte by byte (every split at once). */
    got g = {.n = 0};
    kx_sse_parser p;
    kx_sse_init(&p, collect, &g);
    for (size_t i = 0; i < len; i++)
        assert_int_equal(kx_sse_feed(&p, STREAM + i, 1), KX_OK);
    check(&g);
    got_free(&g);
    kx_sse_free(&p);
}

/* Number of events a whole stream gives. */
static int count_events(const char *s, size_t len)
{
    got g = {.n = 0};
    kx_sse_parser p;
    kx_sse_init(&p, collect, &g);
    assert_int_equal(kx_sse_feed(&p, s, len), KX_OK);
    int n = g.n;
    got_free(&g);
    kx_sse_free(&p);
    return n;
}

static void test_bom_only_once_and_only_whole(void **state)
{
    const char one[] = "\xEF\xBB\xBF"
                       "data: x\n\n";
    const char two[] = "\xEF\xBB\xBF\xEF\xBB\xBF"
                       "data: x\n\n"; /* 2nd is in the field name */
    const char partial[] = "\xEF\xBB"
                           "data: x\n\n"; /* not a BOM: kept */
    const char none[] = "data: x\n\n";
    assert_int_equal(count_events(one, sizeof one - 1), 1);
    assert_int_equal(count_events(two, sizeof two - 1), 0);
    assert_int_equal(count_events(partial, sizeof partial - 1), 0);
    assert_int_equal(count_events(none, sizeof none - 1), 1);
}

static void test_crlf_split_between_feeds_is_one_line_end(void **state)
{
    got g = {.n = 0};
    kx_sse_parser p;
    kx_sse_init(&p, collect, &g);
    /* "\r" then "\n" then "\r\n": one line end, then a blank line. */
    assert_int_equal(kx_sse_feed(&p, "data: a\r", 8), KX_OK);
    assert_int_equal(kx_sse_feed(&p, "\n", 1), KX_OK);
    assert_int_equal(g.n, 0);
    assert_int_equal(kx_sse_feed(&p, "data: b\r\n\r\n", 11), KX_OK);
    assert_int_equal(g.n, 1);
    assert_string_equal(g.evs[0].data, "a\nb");
    got_free(&g);
    kx_sse_free(&p);
}

static void test_event_size_limit(void **state)
{
    got g = {.n = 0};
    kx_sse_parser p;
    kx_sse_init(&p, collect, &g);
    p.max_event_bytes = 100;
    char line[80];
    memset(line, 'x', sizeof line);
    memcpy(line, "data: ", 6); /* NOLINT(bugprone-not-null-terminated-result): fed by length */
    line[79] = '\n';
    assert_int_equal(kx_sse_feed(&p, line, sizeof line), KX_OK); /* 73 bytes of data */
    assert_int_equal(kx_sse_feed(&p, line, sizeof line), KX_ERR_PROTOCOL);
    kx_sse_free(&p);

    /* A single line without an end, longer than the limit. */
    kx_sse_init(&p, collect, &g);
    p.max_event_bytes = 100;
    char big[150];
    memset(big, 'y', sizeof big);
    assert_int_equal(kx_sse_feed(&p, big, 60), KX_OK);
    assert_int_equal(kx_sse_feed(&p, big, 60), KX_ERR_PROTOCOL);
    assert_int_equal(g.n, 0);
    kx_sse_free(&p);
}

/* "retry" sets the reconnection time (digits only; "12x" is ignored); a priming event (id,
 * empty data) is dispatched with empty data and its id is kept, as MCP's SSE polling needs. */
static void test_retry_field(void **state)
{
    (void)state;
    got g = {0};
    kx_sse_parser p;
    kx_sse_init(&p, collect, &g);
    assert_int_equal(p.retry_ms, -1);
    const char *s = "id: prime-1\nretry: 500\ndata:\n\nretry: 12x\n\n";
    assert_int_equal(kx_sse_feed(&p, s, strlen(s)), KX_OK);
    assert_int_equal(g.n, 1);
    assert_int_equal(g.evs[0].data_len, 0);
    assert_string_equal(g.evs[0].id, "prime-1");
    assert_int_equal(p.retry_ms, 500);
    assert_string_equal(p.id, "prime-1");
    kx_sse_free(&p);
    got_free(&g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_whole_stream),
        cmocka_unit_test(test_every_split_position),
        cmocka_unit_test(test_bom_only_once_and_only_whole),
        cmocka_unit_test(test_crlf_split_between_feeds_is_one_line_end),
        cmocka_unit_test(test_event_size_limit),
        cmocka_unit_test(test_retry_field),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
