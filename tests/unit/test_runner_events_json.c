/* test_runner_events_json.c — the event payload builders of events.c write their JSON
 * directly into one buffer (no jansson tree); their output must be byte for byte what the
 * jansson-built texts were, since Kortix's frontend matches substrings of it. The reference
 * builders below are the earlier jansson implementations (json_pack + kx_json_dumps_py, the
 * inner texts re-wrapped with json_string), compared on many generated inputs: ASCII, UTF-8 of
 * 2 to 4 bytes, every control character, quotes and backslashes, nested objects and arrays,
 * integers, reals, booleans, null, strings of 1 MB (the cut-to-fit path) — plus
 * kx_json_put_py / kx_json_put_py_str against kx_json_dumps_py. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "events.h"
#include "kx/buf.h"
#include "kx/json.h"

/* ---- the reference: the jansson builders events.c used before ---------------------------- */

static json_t *ref_as_json_text(const json_t *v)
{
    char *text = kx_json_dumps_py(v);
    if (text == NULL)
        return NULL;
    json_t *s = json_string(text);
    free(text);
    return s;
}

static char *ref_dump_and_free(json_t *obj)
{
    char *out = obj ? kx_json_dumps_py(obj) : NULL;
    json_decref(obj);
    return out;
}

static char *ref_row_text(const char *message_id, const char *thread_id, const char *type,
                          bool is_llm, const json_t *content, const json_t *metadata,
                          const char *created_at, const char *updated_at)
{
    json_t *c = ref_as_json_text(content);
    json_t *m = ref_as_json_text(metadata);
    json_t *row = NULL;
    if (c != NULL && m != NULL)
        row = json_pack("{s:s, s:s, s:s, s:b, s:O, s:O, s:s, s:s}", "message_id", message_id,
                        "thread_id", thread_id, "type", type, "is_llm_message", is_llm, "content",
                        c, "metadata", m, "created_at", created_at, "updated_at", updated_at);
    json_decref(c);
    json_decref(m);
    return ref_dump_and_free(row);
}

static char *ref_row_json(const char *message_id, const char *thread_id, const char *type,
                          bool is_llm, const json_t *content, const json_t *metadata,
                          const char *created_at, const char *updated_at)
{
    char *out = ref_row_text(message_id, thread_id, type, is_llm, content, metadata, created_at,
                             updated_at);
    for (size_t max = 256u * 1024u; out != NULL && strlen(out) > EVENTS_INLINE_MAX && max >= 512;
         max /= 2) {
        json_t *c = events_cap_strings(content, max, message_id);
        json_t *m = events_cap_strings(metadata, max, message_id);
        free(out);
        out = c && m
            ? ref_row_text(message_id, thread_id, type, is_llm, c, m, created_at, updated_at)
            : NULL;
        json_decref(c);
        json_decref(m);
    }
    return out;
}

static char *ref_chunk_json(uint64_t sequence, const char *thread_id, const char *delta,
                            size_t len, const char *thread_run_id, const char *now)
{
    json_t *content = json_pack("{s:s, s:s%}", "role", "assistant", "content", delta, len);
    json_t *metadata =
        json_pack("{s:s, s:s}", "stream_status", "chunk", "thread_run_id", thread_run_id);
    json_t *c = content ? ref_as_json_text(content) : NULL;
    json_t *m = metadata ? ref_as_json_text(metadata) : NULL;
    json_t *ev = NULL;
    if (c != NULL && m != NULL)
        ev = json_pack("{s:I, s:n, s:s, s:s, s:b, s:O, s:O, s:s, s:s}", "sequence",
                       (json_int_t)sequence, "message_id", "thread_id", thread_id, "type",
                       "assistant", "is_llm_message", 1, "content", c, "metadata", m, "created_at",
                       now, "updated_at", now);
    json_decref(content);
    json_decref(metadata);
    json_decref(c);
    json_decref(m);
    return ref_dump_and_free(ev);
}

static char *ref_status_json(const char *status, const char *message)
{
    return ref_dump_and_free(
        json_pack("{s:s, s:s, s:s}", "type", "status", "status", status, "message", message));
}

/* ---- generated inputs ---------------------------------------------------------------------- */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint32_t rnd(uint32_t n)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state % n);
}

/* Appends one valid UTF-8 character of a random class to b. */
static void add_char(kx_buf *b)
{
    static const char *specials[] = {"\"",   "\\",           "/", "\n", "\r", "\t", "\b", "\f",
                                     "\x7f", "\xe2\x80\xa8", "<", "'",  "{",  "}",  ":",  ","};
    char c[4];
    switch (rnd(6)) {
    case 0: /* a control character, every one of them in time */
        c[0] = (char)(rnd(32) == 0 ? 1 : rnd(32));
        if (c[0] == 0)
            c[0] = 0x1f;
        kx_buf_add(b, c, 1);
        break;
    case 1: kx_buf_str(b, specials[rnd(sizeof specials / sizeof *specials)]); break;
    case 2: /* 2-byte: é ... */
        c[0] = (char)(0xc2 + rnd(30));
        c[1] = (char)(0x80 + rnd(64));
        kx_buf_add(b, c, 2);
        break;
    case 3: /* 3-byte, outside the surrogates */
        c[0] = (char)(0xe1 + rnd(12));
        c[1] = (char)(0x80 + rnd(64));
        c[2] = (char)(0x80 + rnd(64));
        kx_buf_add(b, c, 3);
        break;
    case 4: /* 4-byte: an emoji plane */
        c[0] = (char)0xf0;
        c[1] = (char)(0x90 + rnd(48));
        c[2] = (char)(0x80 + rnd(64));
        c[3] = (char)(0x80 + rnd(64));
        kx_buf_add(b, c, 4);
        break;
    default: c[0] = (char)(' ' + rnd(95)); kx_buf_add(b, c, 1);
    }
}

static char *rand_text(size_t max_chars)
{
    kx_buf b = KX_BUF_INIT;
    size_t n = max_chars ? rnd((uint32_t)max_chars + 1) : 0;
    kx_buf_str(&b, "");
    for (size_t i = 0; i < n; i++)
        add_char(&b);
    return kx_buf_take(&b);
}

static json_t *rand_value(int depth)
{
    switch (rnd(depth > 0 ? 9 : 6)) {
    case 0: return json_integer((json_int_t)rnd(2000000) - 1000000);
    case 1: {
        static const double reals[] = {0.1, -2.5, 1e16, 1.5e-05, 3.14159, 100.0, -0.0, 1e-7};
        return json_real(reals[rnd(sizeof reals / sizeof *reals)]);
    }
    case 2: return json_boolean(rnd(2));
    case 3: return json_null();
    case 4:
    case 5: {
        char *t = rand_text(40);
        json_t *s = json_string(t);
        free(t);
        return s;
    }
    case 6:
    case 7: {
        json_t *o = json_object();
        size_t n = rnd(5);
        for (size_t i = 0; i < n; i++) {
            char *k = rand_text(8);
            json_object_set_new(o, k, rand_value(depth - 1));
            free(k);
        }
        return o;
    }
    default: {
        json_t *a = json_array();
        size_t n = rnd(5);
        for (size_t i = 0; i < n; i++)
            json_array_append_new(a, rand_value(depth - 1));
        return a;
    }
    }
}

/* ---- tests ------------------------------------------------------------------------------ */

static void test_put_py_matches_dumps_py(void **state)
{
    (void)state;
    for (int i = 0; i < 2000; i++) {
        json_t *v = rand_value(4);
        char *want = kx_json_dumps_py(v);
        kx_buf b = KX_BUF_INIT;
        kx_buf_str(&b, "x");
        kx_json_put_py(&b, v);
        assert_false(b.oom);
        assert_string_equal(b.s + 1, want);
        kx_buf_free(&b);
        free(want);
        if (json_is_string(v)) {
            char *w = kx_json_dumps_py(v);
            kx_buf s = KX_BUF_INIT;
            kx_json_put_py_str(&s, json_string_value(v), json_string_length(v));
            assert_string_equal(s.s, w);
            kx_buf_free(&s);
            free(w);
        }
        json_decref(v);
    }
    kx_buf n = KX_BUF_INIT;
    kx_json_put_py(&n, NULL); /* as kx_json_dumps_py(NULL): a failure */
    assert_true(n.oom);
    kx_buf_free(&n);
}

static void test_every_byte_escaped_like_dumps_py(void **state)
{
    (void)state;
    char all[128];
    for (int i = 0; i < 128; i++)
        all[i] = (char)(i == 0 ? 'a' : i); /* jansson strings hold no NUL */
    json_t *s = json_stringn(all, sizeof all);
    char *want = kx_json_dumps_py(s);
    kx_buf b = KX_BUF_INIT;
    kx_json_put_py_str(&b, all, sizeof all);
    assert_string_equal(b.s, want);
    kx_buf_free(&b);
    free(want);
    json_decref(s);
}

static void check_row(const char *mid, const char *tid, const char *type, bool is_llm,
                      json_t *content, json_t *metadata)
{
    const char *at = "2026-12-01T15:04:05.123456+00:00";
    char *want = ref_row_json(mid, tid, type, is_llm, content, metadata, at, at);
    char *got = events_row_json(mid, tid, type, is_llm, content, metadata, at, at);
    assert_non_null(want);
    assert_non_null(got);
    assert_string_equal(got, want);
    free(want);
    free(got);
}

static void test_row_matches_jansson(void **state)
{
    (void)state;
    for (int i = 0; i < 1500; i++) {
        json_t *content = rand_value(4);
        json_t *metadata = rand_value(3);
        char *type = rand_text(10);
        check_row("0b0e7a36-6a5c-4f57-9a4a-0c6b8b8f1d2e", "t-\xc3\xa9\"\n", type, rnd(2), content,
                  metadata);
        free(type);
        json_decref(content);
        json_decref(metadata);
    }
    /* a typical tool result row */
    json_t *c = json_pack("{s:s, s:s, s:s}", "role", "tool", "tool_call_id", "call_1", "content",
                          "{\"tool\": \"view_tasks\", \"output\": \"a\\nb \\u00e9\"}");
    json_t *m =
        json_pack("{s:s, s:{s:b, s:f}}", "thread_run_id", "r-1", "frontend_content", "ok", 0.25);
    check_row("m-1", "t-1", "tool", false, c, m);
    json_decref(c);
    json_decref(m);
}

/* 1 MB strings: the row is cut to fit (events_cap_strings), by the same steps as before. */
static void test_huge_row_matches_jansson(void **state)
{
    (void)state;
    for (int round = 0; round < 3; round++) {
        kx_buf big = KX_BUF_INIT;
        while (big.len < 1024u * 1024u)
            add_char(&big);
        json_t *c = json_pack("{s:s, s:s%}", "role", "tool", "content", big.s, big.len);
        json_t *m = json_pack("{s:s%, s:i}", "frontend_content", big.s, big.len, "n", round);
        check_row("m-big", "t-1", "tool", false, c, m);
        char *got = events_row_json("m-big", "t-1", "tool", false, c, m, "a", "b");
        assert_non_null(got);
        assert_true(strlen(got) <= EVENTS_INLINE_MAX);
        free(got);
        json_decref(c);
        json_decref(m);
        kx_buf_free(&big);
    }
}

static void test_chunk_matches_jansson(void **state)
{
    (void)state;
    for (int i = 0; i < 1500; i++) {
        char *delta = rand_text(i % 100 == 0 ? 20000 : 200);
        uint64_t seq = i == 0 ? UINT64_MAX : (uint64_t)rnd(100000);
        char *got = events_chunk_json(seq, "t-1", delta, strlen(delta), "run-\x01\xc3\xa9");
        assert_non_null(got);
        json_t *parsed = json_loads(got, 0, NULL);
        assert_non_null(parsed);
        const char *now = json_string_value(json_object_get(parsed, "created_at"));
        assert_non_null(now);
        char *want = ref_chunk_json(seq, "t-1", delta, strlen(delta), "run-\x01\xc3\xa9", now);
        assert_string_equal(got, want);
        json_decref(parsed);
        free(want);
        free(got);
        free(delta);
    }
}

static void test_status_matches_jansson(void **state)
{
    (void)state;
    for (int i = 0; i < 500; i++) {
        char *st = rand_text(12);
        char *msg = rand_text(300);
        char *got = events_status_json(st, msg);
        char *want = ref_status_json(st, msg);
        assert_string_equal(got, want);
        free(got);
        free(want);
        free(st);
        free(msg);
    }
    assert_null(events_status_json(NULL, "x"));
    assert_null(events_chunk_json(1, NULL, "x", 1, "r"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_put_py_matches_dumps_py),
        cmocka_unit_test(test_every_byte_escaped_like_dumps_py),
        cmocka_unit_test(test_row_matches_jansson),
        cmocka_unit_test(test_huge_row_matches_jansson),
        cmocka_unit_test(test_chunk_matches_jansson),
        cmocka_unit_test(test_status_matches_jansson),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
