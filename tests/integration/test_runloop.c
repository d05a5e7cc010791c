/* test_runloop.c — the agent loop (services/agent-runner/run.c) through the whole stack, with
 * the runner pointed at the fake provider (tests/fakes/llm-provider/fake-llm.js, OpenAI wire
 * format: text and tool-call deltas split into small chunks):
 *   1. two native calls in one turn, parallel (the default): both started before either result
 *      is recorded; results in index order; the model reads both; and with the provider's
 *      indices out of order (1, then 0): each call runs once, with its own id;
 *      a provider's call id too long to keep: the call gets one of the runner's;
 *   2. the same with the account's default agent set to sequential: each call recorded before
 *      the next starts; the agent's model and its prompt with {{current_date}} rendered and the
 *      tool section appended; only the enabled families' schemas;
 *   3. an XML block with two invokes: both run (max_xml_tool_calls 2 from the agent), the saved
 *      text is cut after the block;
 *   3b. XML string parameters: create_file with JSON-looking and numeric-looking contents writes
 *      exactly the text written in the block;
 *   4. malformed XML and an unknown tool: failed tool results the model reads, runs complete;
 *   5. ask ends the run: finish agent_terminated, agent_should_terminate "true", no more turns;
 *   6. KX_MAX_ITERATIONS (4): a model that always calls a tool fails with the limit named;
 *   7. finish_reason "length": continued in the same turn, one assistant message; the
 *      KX_MAX_AUTO_CONTINUES cap (5) appends Kortix's notice;
 *   8. a tool printing 2 MB (the sandbox returns part of it), then a 2 MB tool result in the
 *      thread, followed by three more runs on the same thread (the fake answers 400 to any
 *      request over 200 kB, like a provider over its context window): all complete, every
 *      later request under the limit and pointing at expand_message with the row's id;
 *   8b. a thread of 120 MB of LLM messages: a turn reads its first message and the newest
 *      KX_CONTEXT_READ_MAX_MB, and the runner's peak memory grows by far less than the thread;
 *   9. execute-on-stream: a call complete in the stream starts before the stream ends (the
 *      fake holds the stream 2 s after it; the tool prints the time it ran);
 *  10. project naming: the first run's project gets the naming model's title (max_tokens 20,
 *      no tools). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <jansson.h>

#include "harness.h"
#include "kx/buf.h"
#include "kx/time.h"
#include "kx/uuid.h"
#include "fake_log.h"
#include "stack.h"

#define FAKE KX_SOURCE_DIR "/tests/fakes/llm-provider/fake-llm.js"
#define RUN_TIMEOUT_MS 40000

static char *g_dir;
static pid_t g_fake;
static uint16_t g_port;
static kx_th_stack g_stack;

static void sleep_ms(int64_t ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* ---- the fake's request log ------------------------------------------------------------ */

/* The requests the fake got for model, in order: a new array. */
static json_t *requests_for(const char *model)
{
    char cond[128];
    snprintf(cond, sizeof cond, "model=%s", model);
    return kx_th_fake_log(g_port, cond, NULL);
}

/* ---- runs -------------------------------------------------------------------------------- */

typedef struct run {
    char id[KX_UUID_LEN + 1];
    char thread_id[KX_UUID_LEN + 1];
} run;

static const char *jstr(const json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "";
}

static char *new_token(char account[KX_UUID_LEN + 1])
{
    kx_uuid_new(account);
    char *t = kx_th_stack_token(&g_stack, account);
    assert_non_null(t);
    return t;
}

/* model NULL: the run names none (the agent's or KX_MODEL applies). */
static void initiate(const char *token, const char *model, const char *prompt, run *r)
{
    const char *pairs[] = {"prompt", prompt, model ? "model_name" : NULL, model, NULL};
    char *ctype = NULL;
    size_t len = 0;
    char *body = kx_th_form_multipart(pairs, &ctype, &len);
    kx_http_resp resp = {0};
    assert_int_equal(kx_th_http(&g_stack, "POST", "/api/agent/initiate", token, ctype, body, len,
                                &resp),
                     KX_OK);
    if (resp.status != 200)
        fail_msg("initiate: status %ld: %s", resp.status, resp.body ? resp.body : "");
    json_t *v = json_loads(resp.body, 0, NULL);
    snprintf(r->id, sizeof r->id, "%s", jstr(v, "agent_run_id"));
    snprintf(r->thread_id, sizeof r->thread_id, "%s", jstr(v, "thread_id"));
    json_decref(v);
    kx_http_resp_free(&resp);
    free(body);
    free(ctype);
}

static void start_on_thread(const char *token, const char *model, const char *prompt, run *r)
{
    char path[128], body[512];
    snprintf(path, sizeof path, "/api/thread/%s/agent/start", r->thread_id);
    snprintf(body, sizeof body, "{\"model_name\": \"%s\", \"prompt\": \"%s\"}", model, prompt);
    long status = 0;
    json_t *v = kx_th_json(&g_stack, "POST", path, token, body, &status);
    if (status != 200)
        fail_msg("agent/start: %ld", status);
    snprintf(r->id, sizeof r->id, "%s", jstr(v, "agent_run_id"));
    json_decref(v);
}

static char *sql1(const char *sql, const char *param)
{
    const char *p[] = {param};
    char *v = kx_th_sql_value(&g_stack, sql, 1, p);
    assert_non_null(v);
    return v;
}

static char *run_col(const run *r, const char *column)
{
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT coalesce((%s)::text, '') FROM agent_runs WHERE id = $1",
             column);
    return sql1(sql, r->id);
}

/* Waits for the end and checks the status; returns nothing, fails with the run's error. */
static void expect_final(const run *r, const char *want)
{
    int64_t give_up = kx_mono_ms() + RUN_TIMEOUT_MS;
    for (;;) {
        char *st = run_col(r, "status");
        if (strcmp(st, "queued") != 0 && strcmp(st, "running") != 0) {
            if (strcmp(st, want) != 0) {
                char *err = run_col(r, "error");
                fail_msg("run %s ended %s, want %s (error: %s)", r->id, st, want, err);
            }
            free(st);
            return;
        }
        free(st);
        if (kx_mono_ms() > give_up)
            fail_msg("run %s did not end within %d ms", r->id, RUN_TIMEOUT_MS);
        sleep_ms(50);
    }
}

/* The run's rows in order, one per line: "type[:status_type|:finish_reason]". */
static char *row_trace(const run *r)
{
    return sql1("SELECT string_agg(type || coalesce(':' || (content->>'status_type'), '') || "
                "coalesce(':' || (content->>'finish_reason'), ''), ' ' ORDER BY created_at) "
                "FROM messages WHERE agent_run_id = $1",
                r->id);
}

static char *last_answer(const run *r)
{
    return sql1("SELECT content->>'content' FROM messages WHERE agent_run_id = $1 AND "
                "type = 'assistant' ORDER BY created_at DESC LIMIT 1",
                r->id);
}

static void assert_contains(const char *hay, const char *needle)
{
    if (strstr(hay, needle) == NULL)
        fail_msg("\"%s\" not found in: %.2000s", needle, hay);
}

static void assert_not_contains(const char *hay, const char *needle)
{
    if (strstr(hay, needle) != NULL)
        fail_msg("\"%s\" found in: %.2000s", needle, hay);
}

/* ---- tests ------------------------------------------------------------------------------- */

static void test_two_calls_parallel(void **state)
{
    (void)state;
    char account[KX_UUID_LEN + 1];
    char *token = new_token(account);
    run r;
    initiate(token, "multi:par", "two things", &r);
    expect_final(&r, "completed");
    char *trace = row_trace(&r);
    print_message("[ rows     ] %s\n", trace);
    /* both started before the first result */
    assert_contains(trace,
                    "status:tool_started assistant status:tool_started tool "
                    "status:tool_completed tool status:tool_completed status:finish:tool_calls");
    free(trace);
    char *results = sql1("SELECT string_agg(content->>'tool_call_id' || '=' || "
                         "(content->>'content'), ' | ' ORDER BY created_at) FROM messages "
                         "WHERE agent_run_id = $1 AND type = 'tool'",
                         r.id);
    assert_contains(results, "call_m1=");
    char *one = strstr(results, "call_m1="), *two = strstr(results, "call_m2=");
    assert_non_null(two);
    assert_true(one < two); /* index order */
    assert_contains(one, "one");
    assert_contains(two, "two");
    free(results);
    char *answer = last_answer(&r);
    assert_string_equal(answer, "Got 2 results.");
    free(answer);
    free(token);
}

/* Provider indices out of order: index 1 streams first (and is started from the stream once
 * complete), index 0 comes 500 ms later. The runner kept the calls sorted by index and its
 * early-started calls by position, so index 0 took index 1's place: echo BBB ran twice, echo
 * AAA never, and both tool rows carried call_s1. Each call must run once, with its own id. */
static void test_calls_with_indices_out_of_order(void **state)
{
    (void)state;
    char account[KX_UUID_LEN + 1];
    char *token = new_token(account);
    run r;
    initiate(token, "swapped:t", "two things, out of order", &r);
    expect_final(&r, "completed");
    char *results = sql1("SELECT string_agg(content->>'tool_call_id' || '=' || "
                         "(content->>'content'), ' | ' ORDER BY created_at) FROM messages "
                         "WHERE agent_run_id = $1 AND type = 'tool'",
                         r.id);
    print_message("[ results  ] %.600s\n", results);
    char *b = strstr(results, "call_s1="), *a = strstr(results, "call_s0=");
    if (a == NULL || b == NULL)
        fail_msg("want one tool row for call_s0 and one for call_s1: %.2000s", results);
    assert_null(strstr(b + 1, "call_s1=")); /* once each */
    assert_null(strstr(a + 1, "call_s0="));
    char *aaa = strstr(results, "AAA"), *bbb = strstr(results, "BBB");
    assert_non_null(aaa);
    assert_non_null(bbb);
    assert_null(strstr(aaa + 3, "AAA")); /* each command ran once */
    assert_null(strstr(bbb + 3, "BBB"));
    assert_true(aaa > a && (b < a || aaa < b)); /* AAA is call_s0's output */
    free(results);
    char *calls = sql1("SELECT string_agg(tc->>'id', ',') FROM messages m, "
                       "jsonb_array_elements(m.content->'tool_calls') tc "
                       "WHERE m.agent_run_id = $1 AND m.type = 'assistant' AND "
                       "jsonb_typeof(m.content->'tool_calls') = 'array'",
                       r.id);
    assert_true(strcmp(calls, "call_s1,call_s0") == 0 || strcmp(calls, "call_s0,call_s1") == 0);
    free(calls);
    free(token);
}

/* A provider's tool-call id longer than the runner keeps (79 bytes): it was cut there, inside
 * a two-byte UTF-8 character, and the run failed as "out of memory" building its JSON. Now the
 * runner gives the call an id of its own, the same in the assistant message and the tool row. */
static void test_call_id_too_long(void **state)
{
    (void)state;
    char account[KX_UUID_LEN + 1];
    char *token = new_token(account);
    run r;
    initiate(token, "longid:t", "one call with a long id", &r);
    expect_final(&r, "completed");
    char *ids = sql1("SELECT (SELECT string_agg(tc->>'id', ',') FROM messages m, "
                     "jsonb_array_elements(m.content->'tool_calls') tc WHERE m.agent_run_id = $1 "
                     "AND m.type = 'assistant' AND jsonb_typeof(m.content->'tool_calls') = "
                     "'array') || ' ' || (SELECT string_agg(content->>'tool_call_id', ',') FROM "
                     "messages WHERE agent_run_id = $1 AND type = 'tool')",
                     r.id);
    print_message("[ ids      ] %s\n", ids);
    char *sp = strchr(ids, ' ');
    assert_non_null(sp);
    assert_int_equal(sp - ids, (long)strlen(sp + 1)); /* one id, the same in both rows */
    assert_memory_equal(ids, sp + 1, (size_t)(sp - ids));
    assert_true(strncmp(ids, "call_", 5) == 0 && sp - ids < 80);
    free(ids);
    free(token);
}

/* Calls of one answer with the same id ("call_1" twice) could not be told apart by their
 * results, and Anthropic refuses a repeated id or one with other characters than [A-Za-z0-9_-]
 * ("call.2") with a 400 on every later turn of the thread (a fallback to an Anthropic model
 * included). The runner keeps the first "call_1" and gives the others ids of its own, each the
 * same in the assistant message and in its tool row (before: "call_1,call_1,call.2"). */
static void test_call_ids_repeated_or_unusable(void **state)
{
    (void)state;
    char account[KX_UUID_LEN + 1];
    char *token = new_token(account);
    run r;
    initiate(token, "dupids:t", "three calls, two ids", &r);
    expect_final(&r, "completed");
    const char *p[] = {r.id};
    char *calls = kx_th_sql_value(
        &g_stack,
        "SELECT string_agg(tc->>'id', ',' ORDER BY tc->>'id') FROM messages m, "
        "jsonb_array_elements(m.content->'tool_calls') tc WHERE m.agent_run_id = $1::uuid AND "
        "m.type = 'assistant' AND jsonb_typeof(m.content->'tool_calls') = 'array'",
        1, p);
    char *results = kx_th_sql_value(&g_stack,
                                    "SELECT string_agg(content->>'tool_call_id', ',' ORDER BY "
                                    "content->>'tool_call_id') FROM messages WHERE "
                                    "agent_run_id = $1::uuid AND type = 'tool'",
                                    1, p);
    char *distinct = kx_th_sql_value(
        &g_stack,
        "SELECT count(DISTINCT tc->>'id') || ' ' || bool_and(tc->>'id' ~ '^[A-Za-z0-9_-]+$') "
        "|| ' ' || bool_or(tc->>'id' = 'call_1') FROM messages m, "
        "jsonb_array_elements(m.content->'tool_calls') tc WHERE m.agent_run_id = $1::uuid AND "
        "m.type = 'assistant' AND jsonb_typeof(m.content->'tool_calls') = 'array'",
        1, p);
    print_message("[ ids      ] calls %s; results %s\n", calls, results);
    assert_string_equal(calls, results); /* each call's id in its tool row */
    assert_string_equal(distinct, "3 true true");
    free(calls);
    free(results);
    free(distinct);
    free(token);
}

/* The account's default agent, with config (JSON) as its current version (one statement: the
 * foreign keys between the two rows are checked at its end). */
static void make_default_agent(const char *account, const char *config)
{
    char aid[KX_UUID_LEN + 1], vid[KX_UUID_LEN + 1];
    kx_uuid_new(aid);
    kx_uuid_new(vid);
    const char *p[] = {account, config, aid, vid};
    char *v = kx_th_sql_value(
        &g_stack,
        "WITH v AS (INSERT INTO agent_versions (version_id, agent_id, account_id, "
        "version_number, version_name, config) VALUES ($4::uuid, $3::uuid, $1::uuid, 1, 'v1', "
        "$2::jsonb) RETURNING version_id) "
        "INSERT INTO agents (agent_id, account_id, name, is_default, current_version_id) "
        "SELECT $3::uuid, $1::uuid, 'Tester', true, version_id FROM v RETURNING agent_id::text",
        4, p);
    assert_non_null(v);
    free(v);
}

static void test_two_calls_sequential_agent(void **state)
{
    (void)state;
    char account[KX_UUID_LEN + 1];
    char *token = new_token(account);
    make_default_agent(account,
                       "{\"system_prompt\": \"You are Tester. Today is {{current_date}}.\", "
                       "\"tools\": {\"agentpress\": {\"sb_shell_tool\": {\"enabled\": true}, "
                       "\"sb_files_tool\": false}}, \"model\": \"multi:seq\", "
                       "\"tool_execution_strategy\": \"sequential\"}");
    run r;
    initiate(token, NULL, "two things, one by one", &r);
    expect_final(&r, "completed");
    char *trace = row_trace(&r);
    print_message("[ rows     ] %s\n", trace);
    assert_contains(trace,
                    "status:tool_started assistant tool status:tool_completed "
                    "status:tool_started tool status:tool_completed "
                    "status:finish:tool_calls");
    free(trace);
    json_t *reqs = requests_for("multi:seq"); /* the agent's model */
    assert_int_equal(json_array_size(reqs), 2);
    json_t *body = json_object_get(json_array_get(reqs, 0), "body");
    const char *system = jstr(json_array_get(json_object_get(body, "messages"), 0), "content");
    char today[16];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(today, sizeof today, "%Y-%m-%d", &tm);
    char want[64];
    snprintf(want, sizeof want, "You are Tester. Today is %s.", today);
    if (strncmp(system, want, strlen(want)) != 0)
        fail_msg("system prompt: %.300s", system);
    assert_contains(system, "<function_calls>");
    assert_contains(system, "- execute_command: ");
    /* The shell family and the always-on tools are offered; the disabled files family is not. */
    json_t *tools = json_object_get(body, "tools");
    int has_shell = 0, has_complete = 0, has_files = 0;
    size_t i;
    json_t *tool;
    json_array_foreach(tools, i, tool)
    {
        const char *name = jstr(json_object_get(tool, "function"), "name");
        if (name == NULL)
            fail_msg("a tool schema without function.name");
        has_shell |= strcmp(name, "execute_command") == 0;
        has_complete |= strcmp(name, "complete") == 0;
        has_files |= strcmp(name, "create_file") == 0;
    }
    assert_true(has_shell);
    assert_true(has_complete);
    assert_false(has_files);
    json_decref(reqs);
    free(token);
}

static void test_xml_two_invokes(void **state)
{
    (void)state;
    char account[KX_UUID_LEN + 1];
    char *token = new_token(account);
    make_default_agent(account,
                       "{\"system_prompt\": \"\", \"tools\": {}, \"agentpress_tools\": "
                       "{\"sb_shell_tool\": true}, \"max_xml_tool_calls\": 2}");
    run r;
    initiate(token, "xmlmulti:t", "two xml calls", &r);
    expect_final(&r, "completed");
    char *trace = row_trace(&r);
    print_message("[ rows     ] %s\n", trace);
    assert_contains(trace,
                    "tool status:tool_completed tool status:tool_completed "
                    "status:finish:xml_tool_limit_reached");
    free(trace);
    char *first = sql1("SELECT content->>'content' FROM messages WHERE agent_run_id = $1 AND "
                       "type = 'assistant' ORDER BY created_at LIMIT 1",
                       r.id);
    assert_contains(first, "</function_calls>");
    assert_not_contains(first, "TEXT AFTER THE BLOCK");
    free(first);
    char *outs = sql1("SELECT string_agg(content->>'content', ' | ' ORDER BY created_at) FROM "
                      "messages WHERE agent_run_id = $1 AND type = 'tool'",
                      r.id);
    assert_contains(outs, "x1");
    assert_contains(outs, "x2");
    free(outs);
    char *answer = last_answer(&r);
    assert_string_equal(answer, "Read 2 results.");
    free(answer);
    free(token);
}

/* String parameters of XML calls get the text as written: create_file with contents `{"a": 1}`
 * and `007` writes exactly those bytes (the JSON-looking one was refused as an object, "007"
 * was written as "7"). Sequential, so the cat runs after both writes. */
static void test_xml_string_parameters(void **state)
{
    (void)state;
    char account[KX_UUID_LEN + 1];
    char *token = new_token(account);
    make_default_agent(account,
                       "{\"system_prompt\": \"\", \"tools\": {}, \"agentpress_tools\": "
                       "{\"sb_shell_tool\": true, \"sb_files_tool\": true}, "
                       "\"max_xml_tool_calls\": 3, \"tool_execution_strategy\": \"sequential\"}");
    run r;
    initiate(token, "xmlstrings:t", "write two files", &r);
    expect_final(&r, "completed");
    char *outs = sql1("SELECT string_agg(content->>'content', ' | ' ORDER BY created_at) FROM "
                      "messages WHERE agent_run_id = $1 AND type = 'tool'",
                      r.id);
    print_message("[ results  ] %.600s\n", outs);
    assert_not_contains(outs, "must be a string");
    assert_contains(outs, "{\\\"a\\\": 1}007"); /* cat's output, inside a JSON string */
    free(outs);
    char *args = sql1("SELECT string_agg(metadata->'frontend_content'->'tool_execution'->"
                      "'arguments'->>'file_contents', '|' ORDER BY created_at) FROM messages "
                      "WHERE agent_run_id = $1 AND type = 'tool'",
                      r.id);
    assert_string_equal(args, "{\"a\": 1}|007");
    free(args);
    free(token);
}

static void test_bad_xml_and_unknown_tool(void **state)
{
    (void)state;
    char account[KX_UUID_LEN + 1];
    char *token = new_token(account);
    run r;
    initiate(token, "badxml:t", "broken xml", &r);
    expect_final(&r, "completed");
    char *out = sql1("SELECT content->>'content' FROM messages WHERE agent_run_id = $1 AND "
                     "type = 'tool'",
                     r.id);
    assert_contains(out, "\"success\": false");
    assert_contains(out, "</invoke>");
    free(out);
    char *answer = last_answer(&r);
    assert_string_equal(answer, "Read 1 results.");
    free(answer);

    run u;
    initiate(token, "unknown:t", "unknown tool", &u);
    expect_final(&u, "completed");
    answer = last_answer(&u);
    assert_contains(answer, "Tool function 'no_such_tool' not found");
    free(answer);
    free(token);
}

/* A NUL character in the model's text (\u0000 in a chunk) and a NUL byte in a tool's output:
 * Postgres keeps neither in text or jsonb, so both become U+FFFD and the run goes on (a NUL
 * failed the run: the chunk was "not a JSON object"). */
static void test_nul_characters(void **state)
{
    (void)state;
    char account[KX_UUID_LEN + 1];
    char *token = new_token(account);
    run r;
    initiate(token, "nul:t", "send a NUL", &r);
    expect_final(&r, "completed");
    char *first = sql1("SELECT content->>'content' FROM messages WHERE agent_run_id = $1 AND "
                       "type = 'assistant' ORDER BY created_at LIMIT 1",
                       r.id);
    assert_contains(first,
                    "before\xEF\xBF\xBD"
                    "after");
    free(first);
    char *out = sql1("SELECT content::text FROM messages WHERE agent_run_id = $1 AND "
                     "type = 'tool'",
                     r.id);
    assert_contains(out,
                    "N1\xEF\xBF\xBD"
                    "N2");
    free(out);
    char *last = last_answer(&r);
    assert_contains(last, "Read\xEF\xBF\xBD 1 results.");
    free(last);
    free(token);
}

static void test_ask_ends_the_run(void **state)
{
    (void)state;
    char account[KX_UUID_LEN + 1];
    char *token = new_token(account);
    run r;
    initiate(token, "ask:t", "ask me", &r);
    expect_final(&r, "completed");
    char *trace = row_trace(&r);
    print_message("[ rows     ] %s\n", trace);
    assert_contains(trace,
                    "status:finish:tool_calls status:finish:agent_terminated "
                    "assistant_response_end status:thread_run_end");
    free(trace);
    char *term = sql1("SELECT metadata->>'agent_should_terminate' FROM messages WHERE "
                      "agent_run_id = $1 AND content->>'status_type' IN ('tool_completed', "
                      "'tool_failed')",
                      r.id);
    assert_string_equal(term, "true");
    free(term);
    json_t *reqs = requests_for("ask:t");
    assert_int_equal(json_array_size(reqs), 1); /* no turn after ask */
    json_decref(reqs);
    free(token);
}

static void test_max_iterations(void **state)
{
    (void)state;
    char account[KX_UUID_LEN + 1];
    char *token = new_token(account);
    run r;
    initiate(token, "loop:t", "forever", &r);
    expect_final(&r, "failed");
    char *err = run_col(&r, "error");
    assert_string_equal(err, "reached max iterations (4)");
    free(err);
    json_t *reqs = requests_for("loop:t");
    assert_int_equal(json_array_size(reqs), 4);
    json_decref(reqs);
    free(token);
}

static void test_length_auto_continue(void **state)
{
    (void)state;
    char account[KX_UUID_LEN + 1];
    char *token = new_token(account);
    run r;
    initiate(token, "length:3:t", "a long answer", &r);
    expect_final(&r, "completed");
    char *trace = row_trace(&r);
    assert_string_equal(trace,
                        "status:thread_run_start status:assistant_response_start "
                        "assistant status:finish:stop assistant_response_end "
                        "status:thread_run_end");
    free(trace);
    char *answer = last_answer(&r);
    assert_string_equal(answer, "part0 part1 part2 the end.");
    free(answer);
    json_t *reqs = requests_for("length:3:t");
    assert_int_equal(json_array_size(reqs), 4);
    /* a continuation carries the answer so far as the last message */
    json_t *msgs = json_object_get(json_object_get(json_array_get(reqs, 2), "body"), "messages");
    json_t *last = json_array_get(msgs, json_array_size(msgs) - 1);
    assert_string_equal(jstr(last, "role"), "assistant");
    assert_string_equal(jstr(last, "content"), "part0 part1 ");
    json_decref(reqs);

    run c; /* KX_MAX_AUTO_CONTINUES=5: the sixth "length" is kept with the notice */
    initiate(token, "length:9:cap", "a longer answer", &c);
    expect_final(&c, "completed");
    answer = last_answer(&c);
    assert_string_equal(answer,
                        "part0 part1 part2 part3 part4 part5 \n[Agent reached maximum "
                        "auto-continue limit of 5]");
    free(answer);
    reqs = requests_for("length:9:cap");
    assert_int_equal(json_array_size(reqs), 6);
    json_decref(reqs);
    free(token);
}

static void test_huge_tool_output_keeps_the_thread(void **state)
{
    (void)state;
    char account[KX_UUID_LEN + 1];
    char *token = new_token(account);
    run r;
    initiate(token, "big:200000:t", "print a lot", &r);
    expect_final(&r, "completed");
    char *size = sql1("SELECT length(content->>'content') FROM messages WHERE agent_run_id = $1 "
                      "AND type = 'tool'",
                      r.id);
    print_message("[ output   ] the tool result the sandbox returned: %s bytes\n", size);
    free(size);
    /* a 2 MB tool result in the thread (the sandbox and the bus cut one tool's output below
     * 1 MB, but a thread may hold any row: an MCP tool, an import, an older runner) */
    const char *p[] = {r.thread_id, account};
    char *ok = kx_th_sql_value(
        &g_stack,
        "WITH a AS (INSERT INTO messages (thread_id, account_id, type, is_llm_message, content, "
        "created_at) VALUES ($1::uuid, $2::uuid, 'assistant', true, jsonb_build_object('role', "
        "'assistant', 'content', 'Reading the log.', 'tool_calls', jsonb_build_array("
        "jsonb_build_object('id', 'call_huge', 'type', 'function', 'function', "
        "jsonb_build_object('name', 'execute_command', 'arguments', '{\"command\": \"cat log\"}')))), "
        "clock_timestamp()) RETURNING 1) "
        "INSERT INTO messages (thread_id, account_id, type, is_llm_message, content, created_at) "
        "SELECT $1::uuid, $2::uuid, 'tool', true, jsonb_build_object('role', 'tool', "
        "'tool_call_id', 'call_huge', 'name', 'execute_command', 'content', repeat('log line "
        "of the huge output ', 80000)), clock_timestamp() + interval '1 ms' FROM a "
        "RETURNING 'ok'",
        2, p);
    assert_non_null(ok);
    free(ok);
    char *total = sql1("SELECT sum(length(content::text)) FROM messages WHERE thread_id = $1 "
                       "AND is_llm_message",
                       r.thread_id);
    print_message("[ thread   ] %s bytes of LLM messages\n", total);
    assert_true(strtol(total, NULL, 10) > 2000000);
    free(total);
    for (int i = 0; i < 3; i++) {
        start_on_thread(token, "big:200000:t", "and now?", &r);
        expect_final(&r, "completed");
    }
    json_t *reqs = requests_for("big:200000:t");
    size_t n = json_array_size(reqs);
    assert_int_equal(n, 5); /* the call, its answer, three more runs */
    for (size_t i = 2; i < n; i++) {
        json_t *e = json_array_get(reqs, i);
        int64_t bytes = (int64_t)json_integer_value(json_object_get(e, "bytes"));
        assert_true(bytes < 200000);
        char *text = json_dumps(json_object_get(e, "body"), JSON_COMPACT);
        assert_contains(text, "Use the expand_message tool to see contents");
        assert_contains(text, "message_id \\\"");
        free(text);
    }
    json_decref(reqs);
    free(token);
}

/* The agent-runner's PID in the stack. */
static pid_t runner_pid(void)
{
    for (int i = 0; i < KX_TH_STACK_NPROCS; i++)
        if (g_stack.procs[i].name != NULL && strcmp(g_stack.procs[i].name, "agent-runner") == 0)
            return g_stack.procs[i].pid;
    return 0;
}

/* VmHWM of pid in KiB (the peak resident set since the last reset), -1 when unreadable. */
static long long peak_kib(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    long long kib = -1;
    while (f != NULL && fgets(line, sizeof line, f) != NULL)
        if (strncmp(line, "VmHWM:", 6) == 0)
            kib = strtoll(line + 6, NULL, 10);
    if (f != NULL)
        fclose(f);
    return kib;
}

/* Resets pid's VmHWM to its current resident set ("5" in clear_refs, Linux 4.0). */
static void reset_peak(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/clear_refs", (int)pid);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_true(fputs("5", f) >= 0);
    assert_int_equal(fclose(f), 0);
}

/* A thread of 120 MB of LLM messages (120 of 1 MB: a long thread's tool results) costs a turn
 * what its newest KX_CONTEXT_READ_MAX_MB (8) cost, not the whole thread: the runner's peak
 * resident set grows by well under 100 MB for the run (before, each turn read every row —
 * libpq's result, a copy and the parsed JSON: +360 MB here, and without bound for longer
 * threads). The model still reads the thread's first message and the new prompt. */
static void test_long_thread_is_read_within_bounds(void **state)
{
    (void)state;
    char account[KX_UUID_LEN + 1];
    char *token = new_token(account);
    run r;
    initiate(token, "hello:long", "the first request", &r);
    expect_final(&r, "completed");
    const char *p[] = {r.thread_id, account};
    char *ok = kx_th_sql_value(
        &g_stack,
        "INSERT INTO messages (thread_id, account_id, type, is_llm_message, content, created_at) "
        "SELECT $1::uuid, $2::uuid, 'user', true, jsonb_build_object('role', 'user', 'content', "
        "g || repeat(' the long thread', 62500)), clock_timestamp() + g * interval '1 us' "
        "FROM generate_series(1, 120) g RETURNING 'ok'",
        2, p);
    assert_non_null(ok);
    free(ok);
    char *total = sql1("SELECT sum(llm_bytes) FROM messages WHERE thread_id = $1", r.thread_id);
    print_message("[ thread   ] %s bytes of LLM messages\n", total);
    assert_true(strtoll(total, NULL, 10) > 120000000);
    free(total);

    pid_t pid = runner_pid();
    assert_true(pid > 0);
    reset_peak(pid);
    long long before = peak_kib(pid);
    start_on_thread(token, "hello:long", "and the newest", &r);
    expect_final(&r, "completed");
    long long grew = peak_kib(pid) - before;
    print_message("[ runner   ] peak resident set grew by %lld KiB for the turn\n", grew);
    assert_true(before > 0);
    assert_true(grew < 100 * 1024);

    json_t *reqs = requests_for("hello:long");
    assert_int_equal(json_array_size(reqs), 2);
    json_t *body = json_object_get(json_array_get(reqs, 1), "body");
    char *text = json_dumps(body, JSON_COMPACT);
    assert_contains(text, "the first request");
    assert_contains(text, "and the newest");
    free(text);
    /* the model is told where rows are left out and how many: the rows it was shown and the
     * counts of the notes make the whole thread as it stood (every LLM row but the answer) */
    const char *rp[] = {r.thread_id, r.id};
    char *rows = kx_th_sql_value(&g_stack,
                                 "SELECT count(*) FROM messages WHERE thread_id = $1::uuid AND "
                                 "is_llm_message AND agent_run_id IS DISTINCT FROM $2::uuid",
                                 2, rp);
    assert_non_null(rows);
    long long shown = 0, notes = 0, left_out = 0;
    size_t i;
    json_t *m;
    json_array_foreach(json_object_get(body, "messages"), i, m)
    {
        const char *content = json_string_value(json_object_get(m, "content"));
        const char *role = json_string_value(json_object_get(m, "role"));
        if (role != NULL && strcmp(role, "system") == 0)
            continue;
        if (content != NULL && content[0] == '[' &&
            strstr(content, " of this conversation ") != NULL &&
            strstr(content, "left out here") != NULL) {
            long long k = strtoll(content + 1, NULL, 10);
            assert_true(k > 0);
            notes++;
            left_out += k;
        } else {
            shown++;
        }
    }
    print_message("[ request  ] %lld messages shown, %lld left out in %lld note(s), of %s rows\n",
                  shown, left_out, notes, rows);
    assert_true(notes >= 1);
    assert_int_equal(shown + left_out, strtoll(rows, NULL, 10));
    free(rows);
    json_decref(reqs);
    free(token);
}

static void test_execute_on_stream(void **state)
{
    (void)state;
    char account[KX_UUID_LEN + 1];
    char *token = new_token(account);
    run r;
    initiate(token, "slow2:t", "two calls, slowly", &r);
    expect_final(&r, "completed");
    char *out = sql1("SELECT content->>'content' FROM messages WHERE agent_run_id = $1 AND "
                     "type = 'tool' AND content->>'tool_call_id' = 'call_s1'",
                     r.id);
    const char *digits = strpbrk(out, "0123456789");
    assert_non_null(digits);
    long long ran_ms = strtoll(digits, NULL, 10);
    json_t *reqs = requests_for("slow2:t");
    long long closed_ms =
        (long long)json_integer_value(json_object_get(json_array_get(reqs, 0), "closed_ms"));
    json_decref(reqs);
    print_message("[ timing   ] the first call ran %lld ms before its answer's stream ended\n",
                  closed_ms - ran_ms);
    if (closed_ms - ran_ms < 1000) /* the stream pauses 2 s after the first call */
        fail_msg("the first call ran at %lld, the stream ended at %lld", ran_ms, closed_ms);
    free(out);
    char *answer = last_answer(&r);
    assert_string_equal(answer, "Both ran.");
    free(answer);
    free(token);
}

static void test_project_naming(void **state)
{
    (void)state;
    char account[KX_UUID_LEN + 1];
    char *token = new_token(account);
    run r;
    initiate(token, "multi:name", "survey everyone about their favourite colour", &r);
    expect_final(&r, "completed");
    char *name = NULL;
    for (int i = 0; i < 200; i++) {
        free(name);
        name = sql1("SELECT p.name FROM projects p JOIN agent_runs r ON r.project_id = "
                    "p.project_id WHERE r.id = $1",
                    r.id);
        if (strcmp(name, "Colour Survey Notes") == 0)
            break;
        sleep_ms(50);
    }
    assert_string_equal(name, "Colour Survey Notes");
    free(name);
    json_t *reqs = requests_for("title:n");
    assert_true(json_array_size(reqs) >= 1);
    bool seen = false;
    size_t i;
    json_t *e;
    json_array_foreach(reqs, i, e)
    {
        json_t *body = json_object_get(e, "body");
        char *text = json_dumps(body, JSON_COMPACT);
        if (strstr(text, "favourite colour") != NULL) {
            seen = true;
            assert_int_equal(json_integer_value(json_object_get(body, "max_tokens")), 20);
            assert_null(json_object_get(body, "tools"));
        }
        free(text);
    }
    assert_true(seen);
    json_decref(reqs);
    free(token);
}

/* ---- setup --------------------------------------------------------------------------------- */

static int start_fake(void)
{
    g_dir = kx_th_tmpdir("kx-runloop");
    if (g_dir == NULL)
        return -1;
    g_fake = kx_th_node_fake(g_dir, FAKE, NULL, "fake-llm.log", &g_port);
    return g_fake != 0 ? 0 : -1;
}

static int start_stack(void **state)
{
    (void)state;
    char openai[96];
    snprintf(openai, sizeof openai, "OPENAI_BASE_URL=http://127.0.0.1:%u/v1", g_port);
    const char *env[] = {openai,
                         "KX_MODEL=text",
                         "KX_RUN_MAX_ATTEMPTS=1",
                         "KX_MAX_ITERATIONS=4",
                         "KX_MAX_AUTO_CONTINUES=5",
                         "KX_NAMING_MODEL=title:n",
                         "KX_PROJECT_NAMING=1", /* the harness turns it off */
                         NULL};
    kx_th_stack_opts opts = {.env = env};
    return kx_th_stack_start(&opts, &g_stack) == KX_OK ? 0 : -1;
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (start_fake() != 0) {
        fprintf(stderr, "could not start the fake provider (%s)\n", FAKE);
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_two_calls_parallel),
        cmocka_unit_test(test_calls_with_indices_out_of_order),
        cmocka_unit_test(test_call_id_too_long),
        cmocka_unit_test(test_two_calls_sequential_agent),
        cmocka_unit_test(test_xml_two_invokes),
        cmocka_unit_test(test_xml_string_parameters),
        cmocka_unit_test(test_bad_xml_and_unknown_tool),
        cmocka_unit_test(test_nul_characters),
        cmocka_unit_test(test_ask_ends_the_run),
        cmocka_unit_test(test_max_iterations),
        cmocka_unit_test(test_length_auto_continue),
        cmocka_unit_test(test_huge_tool_output_keeps_the_thread),
        cmocka_unit_test(test_long_thread_is_read_within_bounds),
        cmocka_unit_test(test_call_ids_repeated_or_unusable),
        cmocka_unit_test(test_execute_on_stream),
        cmocka_unit_test(test_project_naming),
    };
    int failed = cmocka_run_group_tests_name("runloop", tests, start_stack, NULL);
    if (kx_th_stack_stop(&g_stack, failed != 0) != 0)
        failed++;
    kx_th_kill(g_fake);
    if (failed == 0)
        kx_th_rmrf(g_dir);
    else
        fprintf(stderr, "fake provider log kept in %s\n", g_dir);
    free(g_dir);
    curl_global_cleanup();
    return failed != 0;
}
