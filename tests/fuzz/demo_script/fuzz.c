/* fuzz.c — the demo model's script reader (tests/fakes/demo-model/demo_script.c) and what it
 * does with a parsed script: the text of a user message comes from whoever calls the model.
 *
 * Byte 0 picks the mode: even, the rest is the script message itself (skipped unless it is
 * UTF-8, as every message that arrives in JSON is); odd, the rest is a chat
 * request's "messages" array (JSON), read with demo_conv_read first. Every step of the parsed
 * script is then built into a turn and rendered both as a completion and as a stream.
 * Properties: steps are well-formed (a call has a valid tool name and an argument object, a
 * say has text, modifiers are in their documented ranges, lines increase); and the streamed
 * chunks, read back with the agent-runner's own accumulator (llm_stream.c), give exactly the
 * turn's text or tool call — the fake and the runner must agree on the wire format. In odd
 * mode the bytes are also read as a whole request body and wrapped as its "messages" by
 * demo_body_read (demo_body.c), which must accept exactly what jansson accepts and read the
 * same fields (its scan falls back on jansson for anything unusual). */
#include <jansson.h>
#include <string.h>

#include "demo_body.h"
#include "demo_conv.h"
#include "demo_script.h"
#include "demo_turn.h"
#include "fuzz_util.h"
#include "llm_stream.h"

static void check_mods(const demo_mods *m)
{
    FUZZ_CHECK(m->sleep_ms >= 0 && m->sleep_ms <= DEMO_MAX_SLEEP_MS);
    FUZZ_CHECK(m->fail_status == 0 || (m->fail_status >= 400 && m->fail_status <= 599));
    FUZZ_CHECK(m->fail_status == 0 || (m->fail_count >= 1 && m->fail_count <= DEMO_MAX_COUNT));
    FUZZ_CHECK(m->hang_count >= 0 && m->hang_count <= DEMO_MAX_COUNT);
}

/* Renders the turn as a stream and reads it back as the runner would. */
static void check_stream(const demo_turn *t, const demo_reply_meta *meta)
{
    char **chunks = NULL;
    size_t n = 0;
    FUZZ_CHECK(demo_render_stream(t, meta, &chunks, &n) == 0);
    llm_stream st;
    llm_stream_init(&st);
    bool done = false;
    for (size_t i = 0; i < n; i++) {
        const char *c = chunks[i];
        size_t len = strlen(c);
        FUZZ_CHECK(len >= 8 && strncmp(c, "data: ", 6) == 0 && strcmp(c + len - 2, "\n\n") == 0);
        llm_feed_result r = llm_stream_feed(&st, c + 6, len - 8, NULL);
        FUZZ_CHECK(r == LLM_FEED_OK || (r == LLM_FEED_DONE && i == n - 1));
        done = r == LLM_FEED_DONE;
    }
    FUZZ_CHECK(done);
    if (t->tool_call) {
        FUZZ_CHECK(st.ncalls == 1);
        FUZZ_CHECK(st.calls[0].name.s != NULL && strcmp(st.calls[0].name.s, t->tool) == 0);
        FUZZ_CHECK(st.calls[0].arguments.s != NULL &&
                   strcmp(st.calls[0].arguments.s, t->arguments) == 0);
        FUZZ_CHECK(strcmp(st.finish_reason, "tool_calls") == 0);
    } else {
        FUZZ_CHECK(st.ncalls == 0);
        FUZZ_CHECK(strcmp(st.content.s != NULL ? st.content.s : "", t->content) == 0);
    }
    llm_stream_free(&st);
    demo_chunks_free(chunks, n);
}

static void run_script(const char *text, const demo_conv *conv)
{
    demo_script s;
    if (demo_script_parse(text, &s) != 0)
        return;
    size_t errors = 0;
    int last_line = 0;
    for (size_t i = 0; i < s.nsteps; i++) {
        const demo_step *st = demo_script_step(&s, i);
        FUZZ_CHECK(st == &s.steps[i]);
        FUZZ_CHECK(st->line > last_line);
        last_line = st->line;
        check_mods(&st->mods);
        if (st->kind == DEMO_STEP_SAY) {
            FUZZ_CHECK(st->text != NULL && st->tool == NULL && st->args == NULL);
            errors += st->is_error;
        } else {
            FUZZ_CHECK(st->tool != NULL && json_is_object(st->args) && !st->is_error);
            size_t tl = strlen(st->tool);
            FUZZ_CHECK(tl >= 1 && tl <= 64 &&
                       strspn(st->tool,
                              "abcdefghijklmnopqrstuvwxyz"
                              "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") == tl);
        }
    }
    FUZZ_CHECK(errors == s.nerrors);
    check_mods(&s.final_mods);
    FUZZ_CHECK(demo_script_step(&s, s.nsteps) == NULL);
    FUZZ_CHECK(demo_script_mods(&s, s.nsteps) == &s.final_mods);

    demo_reply_meta meta = {"chatcmpl-fuzz", DEMO_MODEL_NAME, 1767225600, 10};
    for (size_t i = 0; i <= s.nsteps && i < 8; i++) {
        demo_turn t;
        FUZZ_CHECK(demo_turn_build(demo_script_step(&s, i), i, conv, &t) == 0);
        char *whole = demo_render_completion(&t, &meta);
        FUZZ_CHECK(whole != NULL);
        json_t *parsed = json_loads(whole, 0, NULL);
        FUZZ_CHECK(json_is_object(parsed));
        json_decref(parsed);
        free(whole);
        check_stream(&t, &meta);
        demo_turn_free(&t);
    }
    demo_script_free(&s);
}

/* demo_body_read on body[0..len) agrees with a full jansson parse. */
static void check_body(const char *body, size_t len)
{
    demo_body b;
    char why[512];
    int rc = demo_body_read(body, len, &b, why, sizeof why);
    json_t *v = json_loadb(body, len, 0, NULL);
    json_t *m = json_object_get(v, "messages"), *st = json_object_get(v, "stream"),
           *md = json_object_get(v, "model");
    bool ok = json_is_object(v) && json_is_array(m) &&
        (st == NULL || json_is_boolean(st) || json_is_null(st)) &&
        (md == NULL || json_is_string(md));
    FUZZ_CHECK((rc == 0) == ok);
    if (rc == 0) {
        FUZZ_CHECK(json_equal(b.messages, m));
        FUZZ_CHECK(b.stream == json_is_true(st));
        FUZZ_CHECK(md == NULL ? b.model == NULL
                              : b.model != NULL && strcmp(b.model, json_string_value(md)) == 0);
        demo_body_free(&b);
    }
    json_decref(v);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    char *text = fuzz_cstr(data + 1, size - 1);
    demo_conv conv;
    memset(&conv, 0, sizeof conv);
    if ((data[0] & 1) == 0) {
        /* the model gets the message from a JSON request: it is always UTF-8 */
        json_t *valid = json_stringn(text, size - 1);
        if (valid == NULL) {
            free(text);
            return 0;
        }
        json_decref(valid);
        conv.first_user = text;
        conv.script = text;
        run_script(text, &conv);
    } else {
        check_body(text, size - 1);
        size_t wlen = size - 1 + 32;
        char *wrapped = malloc(wlen);
        if (wrapped != NULL) {
            int n = snprintf(wrapped, wlen, "{\"stream\":true,\"messages\":%s}", text);
            if (n > 0 && (size_t)n < wlen)
                check_body(wrapped, (size_t)n);
            free(wrapped);
        }
        json_t *messages = json_loads(text, 0, NULL);
        char err[256];
        if (json_is_array(messages) && demo_conv_read(messages, &conv, err, sizeof err) == 0) {
            FUZZ_CHECK(conv.first_user != NULL);
            if (conv.script != NULL)
                run_script(conv.script, &conv);
            demo_conv_free(&conv);
        }
        json_decref(messages);
    }
    free(text);
    return 0;
}
