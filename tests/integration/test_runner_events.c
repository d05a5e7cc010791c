/* test_runner_events.c — the agent-runner's event volume and limits, through the whole stack
 * (one stack for the binary; the demo model paces its chunks 4 ms apart, KX_MODEL_CHUNK_MS):
 *  - a tool result whose event would pass the bus limit (it carries the output twice, and
 *    inside JSON-in-JSON a newline costs 3 bytes: 200 000 newlines make a 1.2 MB event; the
 *    sandbox already cuts a 900 KB output to ~230 KB, so this is the largest case a command
 *    reaches): it reaches the SSE client cut to head + tail + a note, under the bus limit,
 *    not "too large, fetch it"; the saved row keeps all of it; the run completes;
 *  - a streamed answer of 100 deltas becomes a handful of coalesced chunk events
 *    (KX_EVENT_COALESCE_MS 50) whose text is the whole answer, in order;
 *  - the last text of a streamed answer (the chunk its row's queueing flushes) leaves in the
 *    same kx.run.ev message as that row's event, just before it, not alone one commit earlier;
 *  - a runner whose capacity RLIMIT_NOFILE cannot serve refuses to start, saying why. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "kx/bus.h"
#include "kx/pb.h"
#include "kx/run_events.h"
#include "kx/time.h"
#include "stack.h"

#define STREAM_TIMEOUT_MS 60000

static kx_th_stack g_stack;

static int setup(void **state)
{
    const char *env[] = {"KX_MODEL_CHUNK_MS=4", "KX_LOG_LEVEL=info", NULL};
    kx_th_stack_opts o = {.env = env};
    return kx_th_stack_start(&o, &g_stack) == KX_OK ? 0 : -1;
}

static int teardown(void **state)
{
    return kx_th_stack_stop(&g_stack, false) == 0 ? 0 : -1;
}

/* POST /api/agent/initiate with prompt; the run id into run_id (37 bytes). */
static void initiate(const char *token, const char *prompt, char *run_id, char *thread_id)
{
    const char *pairs[] = {"prompt", prompt, NULL};
    char *ctype = NULL;
    size_t len = 0;
    char *body = kx_th_form_multipart(pairs, &ctype, &len);
    assert_non_null(body);
    kx_http_resp resp = {0};
    assert_int_equal(kx_th_http(&g_stack, "POST", "/api/agent/initiate", token, ctype, body, len,
                                &resp),
                     KX_OK);
    if (resp.status != 200)
        fail_msg("initiate: status %ld: %s", resp.status, resp.body ? resp.body : "");
    json_t *v = json_loads(resp.body, 0, NULL);
    assert_non_null(v);
    snprintf(run_id, 40, "%s", json_string_value(json_object_get(v, "agent_run_id")));
    snprintf(thread_id, 40, "%s", json_string_value(json_object_get(v, "thread_id")));
    json_decref(v);
    kx_http_resp_free(&resp);
    free(body);
    free(ctype);
}

static void read_stream(const char *token, const char *run_id, kx_th_sse *sse)
{
    char path[128];
    snprintf(path, sizeof path, "/api/agent-run/%s/stream", run_id);
    assert_int_equal(kx_th_sse_read(&g_stack, path, token, STREAM_TIMEOUT_MS, sse), KX_OK);
    assert_int_equal(sse->status, 200);
    assert_true(sse->terminal);
}

static const char *jstr(const json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

static void test_large_tool_result_streams_capped(void **state)
{
    char *token = kx_th_stack_token(&g_stack, "a1b2c3d4-0000-4000-8000-000000000901");
    char run_id[40], thread_id[40];
    initiate(token,
             "call execute_command {\"command\": \"printf HEAD-; yes '' | head -c 200000; printf "
             "%s -TAIL\", \"blocking\": true}",
             run_id, thread_id);
    kx_th_sse sse = {0};
    read_stream(token, run_id, &sse);
    const char *last = sse.data[sse.n - 1];
    assert_non_null(strstr(last, "\"completed\""));
    bool found = false;
    size_t largest = 0;
    for (size_t i = 0; i < sse.n; i++) {
        size_t len = strlen(sse.data[i]);
        if (len > largest)
            largest = len;
        assert_null(strstr(sse.data[i], "too_large")); /* not by reference: inline, capped */
        json_t *ev = json_loads(sse.data[i], 0, NULL);
        if (ev == NULL || strcmp(jstr(ev, "type") ? jstr(ev, "type") : "", "tool") != 0) {
            json_decref(ev);
            continue;
        }
        json_t *content = json_loads(jstr(ev, "content"), 0, NULL);
        assert_non_null(content);
        const json_t *result =
            json_object_get(json_object_get(content, "tool_execution"), "result");
        char *text = json_dumps(result, 0);
        assert_non_null(text);
        print_message("tool event: %zu bytes; its result %zu bytes\n", len, strlen(text));
        assert_non_null(strstr(text, "HEAD-"));
        assert_non_null(strstr(text, "-TAIL"));
        assert_non_null(strstr(text, "bytes cut from the middle to fit the event stream"));
        free(text);
        json_decref(content);
        json_decref(ev);
        found = true;
    }
    assert_true(found);
    assert_true(largest < 800 * 1024);
    /* the saved row has everything */
    const char *params[] = {thread_id};
    char *n = kx_th_sql_value(&g_stack,
                              "SELECT length(content::text) FROM messages WHERE thread_id = $1 "
                              "AND type = 'tool'",
                              1, params);
    assert_non_null(n);
    long saved = 0;
    assert_true(kx_th_parse_long(n, &saved));
    print_message("saved tool row: %ld bytes\n", saved);
    assert_true(saved > 400000); /* 200 000 newlines, each "\\n" in the jsonb text */
    free(n);
    kx_th_sse_free(&sse);
    free(token);
}

static void test_text_deltas_are_coalesced(void **state)
{
    char *token = kx_th_stack_token(&g_stack, "a1b2c3d4-0000-4000-8000-000000000902");
    /* 300 words: 100 deltas of 3 words, 4 ms apart (~0.4 s of streaming) */
    char prompt[4096] = "say";
    size_t off = 3;
    for (int i = 0; i < 300; i++)
        off += (size_t)snprintf(prompt + off, sizeof prompt - off, " w%d", i);
    char run_id[40], thread_id[40];
    initiate(token, prompt, run_id, thread_id);
    kx_th_sse sse = {0};
    read_stream(token, run_id, &sse);
    size_t chunks = 0;
    char text[8192] = "";
    size_t tl = 0;
    for (size_t i = 0; i < sse.n; i++) {
        json_t *ev = json_loads(sse.data[i], 0, NULL);
        const char *md = ev ? jstr(ev, "metadata") : NULL;
        if (md == NULL || strstr(md, "\"chunk\"") == NULL) {
            json_decref(ev);
            continue;
        }
        json_t *c = json_loads(jstr(ev, "content"), 0, NULL);
        const char *piece = jstr(c, "content");
        assert_non_null(piece);
        tl += (size_t)snprintf(text + tl, sizeof text - tl, "%s", piece);
        assert_int_equal(json_integer_value(json_object_get(ev, "sequence")), (json_int_t)chunks);
        chunks++;
        json_decref(c);
        json_decref(ev);
    }
    print_message("100 deltas -> %zu chunk events\n", chunks);
    assert_true(chunks >= 1);
    assert_true(chunks <= 40); /* 0.4 s at 50 ms: ~8; far below one per delta */
    assert_string_equal(text, prompt + 4);
    kx_th_sse_free(&sse);
    free(token);
}

/* Whether the event's payload is a chunk (an unsaved delta) / the saved assistant answer. */
static bool is_chunk(const Kx__V1__RunEvent *e)
{
    return e->kind == KX__V1__RUN_EVENT_KIND__RUN_EVENT_KIND_CHUNK;
}

static bool is_answer_row(const Kx__V1__RunEvent *e)
{
    return e->kind == KX__V1__RUN_EVENT_KIND__RUN_EVENT_KIND_MESSAGE &&
        strstr(e->payload_json, "\"type\": \"assistant\"") != NULL &&
        strstr(e->payload_json, "complete") != NULL;
}

static void test_answer_text_leaves_with_its_row(void **state)
{
    char *token = kx_th_stack_token(&g_stack, "a1b2c3d4-0000-4000-8000-000000000903");
    char run_id[40], thread_id[40];
    initiate(token, "say one short answer", run_id, thread_id); /* < 50 ms: one chunk */
    kx_th_sse sse = {0};
    read_stream(token, run_id, &sse);
    kx_th_sse_free(&sse);
    /* the run's kx.run.ev messages as stored, in order */
    kx_bus *bus = NULL;
    assert_int_equal(kx_bus_connect(g_stack.nats.url, "it-runner-events", &bus), KX_OK);
    char subject[80];
    snprintf(subject, sizeof subject, "kx.run.ev.%s", run_id);
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = "KX_RUN_EVENTS";
    so.Config.DeliverPolicy = js_DeliverAll;
    so.Ordered = true;
    natsSubscription *sub = NULL;
    assert_int_equal(js_SubscribeSync(&sub, kx_bus_js(bus), subject, NULL, &so, NULL), NATS_OK);
    int chunk_msg = -1, answer_msg = -1, answer_idx = -1, chunk_idx = -1;
    bool terminal = false;
    for (int m = 0; !terminal && m < 64; m++) {
        natsMsg *msg = NULL;
        assert_int_equal(natsSubscription_NextMsg(&msg, sub, 10000), NATS_OK);
        Kx__V1__RunEvent *ev = kx__v1__run_event__unpack(NULL, (size_t)natsMsg_GetDataLength(msg),
                                                         (const uint8_t *)natsMsg_GetData(msg));
        assert_non_null(ev);
        for (size_t i = 0; i < kx_run_events_n(ev); i++) {
            const Kx__V1__RunEvent *e = kx_run_events_at(ev, i);
            if (is_chunk(e)) {
                chunk_msg = m;
                chunk_idx = (int)i;
            }
            if (is_answer_row(e)) {
                answer_msg = m;
                answer_idx = (int)i;
            }
            terminal = terminal || e->terminal;
        }
        print_message("message %d: %zu events%s\n", m, kx_run_events_n(ev),
                      ev->terminal ? " (terminal)" : "");
        kx__v1__run_event__free_unpacked(ev, NULL);
        natsMsg_Destroy(msg);
    }
    assert_true(terminal);
    assert_true(chunk_msg >= 0);
    assert_true(answer_msg >= 0);
    assert_int_equal(chunk_msg, answer_msg); /* one message, the text first */
    assert_true(chunk_idx < answer_idx);
    natsSubscription_Destroy(sub);
    kx_bus_close(bus, 1000);
    free(token);
}

/* The runner alone under prlimit (1 024 soft, 2 048 hard) and without CAP_SYS_RESOURCE: a
 * capacity of 5 000 runs cannot be served and the runner says so and exits non-zero, before
 * it touches Postgres. */
static void test_capacity_over_the_fd_limit_is_refused(void **state)
{
    char log[600];
    snprintf(log, sizeof log, "%s/runner-fdlimit.log", g_stack.dir);
    static const char runner_bin[] = KX_BUILD_DIR "/services/agent-runner/agent-runner";
    const char *argv[] = {"prlimit",
                          "--nofile=1024:2048",
                          "setpriv",
                          "--bounding-set=-sys_resource",
                          "--inh-caps=-sys_resource",
                          runner_bin,
                          NULL};
    char health[32], nats[96];
    snprintf(health, sizeof health, "KX_HEALTH_PORT=%u", (unsigned)kx_th_free_port());
    snprintf(nats, sizeof nats, "KX_NATS_URL=%s", g_stack.nats.url);
    const char *env[] = {"KX_RUNNER_CAPACITY=5000", health, nats, NULL};
    pid_t pid = 0;
    assert_int_equal(kx_th_spawn(argv, env, log, &pid), KX_OK);
    int status = 0;
    int64_t deadline = kx_mono_ms() + 20000;
    pid_t got = 0;
    while ((got = waitpid(pid, &status, WNOHANG)) == 0 && kx_mono_ms() < deadline)
        usleep(50 * 1000);
    if (got == 0)
        kx_th_kill(pid);
    assert_int_equal(got, pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) != 0);
    FILE *f = fopen(log, "re");
    assert_non_null(f);
    char line[4096];
    bool said = false;
    while (fgets(line, sizeof line, f))
        said = said ||
            (strstr(line, "KX_RUNNER_CAPACITY=5000 cannot be served") != NULL &&
             strstr(line, "hard limit RLIMIT_NOFILE is 2048") != NULL);
    fclose(f);
    assert_true(said);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_large_tool_result_streams_capped),
        cmocka_unit_test(test_text_deltas_are_coalesced),
        cmocka_unit_test(test_answer_text_leaves_with_its_row),
        cmocka_unit_test(test_capacity_over_the_fd_limit_is_refused),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
