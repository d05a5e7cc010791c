/* tests/integration/test_skeleton.c — the walking skeleton, end to end through the HTTP API:
 * the real six services, nats-server, PostgreSQL and the demo model (tests/harness/stack.h).
 *
 * What it proves, each against docs/architecture.md and docs/api.md:
 *   - a run started with POST /api/agent/initiate (multipart and urlencoded) streams the exact
 *     event sequence of a native tool call turn followed by an answer turn, ending with the
 *     exact completion string; the tool really ran (its output says "hello") and the answer
 *     quotes it; the run, its messages (user, assistant, tool, status rows) and its project are
 *     in Postgres; the stream replays identically after the fact;
 *   - a second and third turn on the same thread (POST messages + agent/start, agent/start with
 *     a prompt) complete;
 *   - STOP ends a hanging run within 1 s with the exact stopped event as the last one;
 *   - authentication and account isolation (401, 403);
 *   - an LLM answer that fails once with 500 is retried and the run completes;
 *   - an XML tool call works like a native one (finish reason xml_tool_limit_reached).
 * The demo model's script language is in tests/fakes/demo-model/demo_script.h.
 *
 * One stack serves every case; each case uses accounts of its own. When a case fails, main
 * prints the tail of every log and keeps the stack's temp dir. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <jansson.h>

#include "kx/time.h"
#include "kx/uuid.h"
#include "stack.h"

#define STREAM_TIMEOUT_MS 30000
#define NATIVE_PROMPT "call execute_command {\"command\": \"echo hello\", \"blocking\": true}"
#define COMPLETED \
    "{\"type\": \"status\", \"status\": \"completed\", \"message\": \"Agent run completed successfully\"}"
#define STOPPED \
    "{\"type\": \"status\", \"status\": \"stopped\", \"message\": \"Agent run stopped by user\"}"

static kx_th_stack g_stack;

/* ---- small helpers ---------------------------------------------------------------------- */

/* A fresh account and a token for it (both the caller's: free the token). */
static char *new_account(char account[KX_UUID_LEN + 1])
{
    kx_uuid_new(account);
    char *token = kx_th_stack_token(&g_stack, account);
    assert_non_null(token);
    return token;
}

static const char *jstr(const json_t *obj, const char *key)
{
    return json_string_value(json_object_get(obj, key));
}

/* A JSON value that may be a JSON text in a string (stream rows) or the object itself (API
 * rows, which may hold either). New reference or NULL. */
static json_t *as_json(const json_t *v)
{
    if (json_is_string(v))
        return json_loads(json_string_value(v), JSON_DECODE_ANY, NULL);
    if (v != NULL)
        json_incref((json_t *)v);
    return (json_t *)v;
}

/* True when needle occurs in the JSON text of v (for "the output mentions hello"). */
static bool json_mentions(const json_t *v, const char *needle)
{
    if (json_is_string(v))
        return strstr(json_string_value(v), needle) != NULL;
    char *text = json_dumps(v, JSON_ENCODE_ANY);
    bool found = text != NULL && strstr(text, needle) != NULL;
    free(text);
    return found;
}

static void assert_jstr(const json_t *obj, const char *key, const char *want)
{
    const char *got = jstr(obj, key);
    if (got == NULL) {
        char *text = json_dumps(obj, JSON_ENCODE_ANY);
        fail_msg("key \"%s\" is not a string in %s (want \"%s\")", key, text ? text : "?", want);
    }
    assert_string_equal(got, want);
}

/* ---- one run's events ------------------------------------------------------------------- */

/* One stream event, classified. */
typedef struct ev {
    const char *raw;  /* the data text (borrowed from the kx_th_sse) */
    json_t *row;      /* the parsed payload */
    json_t *content;  /* DB-row shaped events: content parsed (it is a JSON string) */
    json_t *metadata; /* ... and metadata */
    char label[64];   /* "thread_run_start", "chunk", "assistant", "tool", "finish:stop",
                            "status:completed" (a run status), ... */
} ev;

typedef struct run {
    char thread_id[KX_UUID_LEN + 1];
    char run_id[KX_UUID_LEN + 1];
    kx_th_sse sse;
    ev *evs;
    size_t n;
    char seq[8192]; /* labels joined by spaces, runs of chunks as one "chunk+" */
} run;

static void classify(ev *e)
{
    e->row = json_loads(e->raw, 0, NULL);
    if (!json_is_object(e->row))
        fail_msg("stream event is not a JSON object: %s", e->raw);
    const char *type = jstr(e->row, "type");
    assert_non_null(type);
    if (json_object_get(e->row, "content") == NULL) {
        /* A run status: {"type": "status", "status": ..., "message": ...}. */
        assert_string_equal(type, "status");
        snprintf(e->label, sizeof e->label, "status:%s", jstr(e->row, "status"));
        return;
    }
    /* DB-row shaped: content and metadata are JSON strings. */
    if (!json_is_string(json_object_get(e->row, "content")) ||
        !json_is_string(json_object_get(e->row, "metadata")))
        fail_msg("content and metadata must be JSON strings: %s", e->raw);
    e->content = as_json(json_object_get(e->row, "content"));
    e->metadata = as_json(json_object_get(e->row, "metadata"));
    if (e->content == NULL || e->metadata == NULL)
        fail_msg("content or metadata is not JSON text: %s", e->raw);
    if (strcmp(type, "status") == 0) {
        const char *st = jstr(e->content, "status_type");
        assert_non_null(st);
        if (strcmp(st, "finish") == 0)
            snprintf(e->label, sizeof e->label, "finish:%s", jstr(e->content, "finish_reason"));
        else
            snprintf(e->label, sizeof e->label, "%s", st);
    } else if (strcmp(type, "assistant") == 0) {
        const char *ss = jstr(e->metadata, "stream_status");
        assert_non_null(ss);
        snprintf(e->label, sizeof e->label, "%s",
                 strcmp(ss, "chunk") == 0 ? "chunk" : "assistant");
        if (strcmp(ss, "chunk") != 0)
            assert_string_equal(ss, "complete");
    } else {
        snprintf(e->label, sizeof e->label, "%s", type);
    }
}

static void run_parse_events(run *r)
{
    r->n = r->sse.n;
    r->evs = calloc(r->n ? r->n : 1, sizeof *r->evs);
    assert_non_null(r->evs);
    size_t len = 0;
    r->seq[0] = '\0';
    for (size_t i = 0; i < r->n; i++) {
        ev *e = &r->evs[i];
        e->raw = r->sse.data[i];
        classify(e);
        if (strcmp(e->label, "chunk") == 0 && i > 0 && strcmp(r->evs[i - 1].label, "chunk") == 0)
            continue;
        const char *word = strcmp(e->label, "chunk") == 0 ? "chunk+" : e->label;
        len += (size_t)snprintf(r->seq + len, sizeof r->seq - len, "%s%s", len ? " " : "", word);
        assert_true(len < sizeof r->seq);
    }
}

static void run_free(run *r)
{
    for (size_t i = 0; i < r->n; i++) {
        json_decref(r->evs[i].row);
        json_decref(r->evs[i].content);
        json_decref(r->evs[i].metadata);
    }
    free(r->evs);
    kx_th_sse_free(&r->sse);
    memset(r, 0, sizeof *r);
}

/* Reads the run's stream from the start to its terminal event. */
static void run_read_stream(run *r, const char *token)
{
    char path[128];
    snprintf(path, sizeof path, "/api/agent-run/%s/stream", r->run_id);
    assert_int_equal(kx_th_sse_read(&g_stack, path, token, STREAM_TIMEOUT_MS, &r->sse), KX_OK);
    if (r->sse.status != 200)
        fail_msg("GET %s: status %ld: %s", path, r->sse.status, r->sse.body ? r->sse.body : "");
    assert_false(r->sse.timed_out);
    assert_true(r->sse.terminal);
    assert_non_null(r->sse.content_type);
    assert_non_null(strstr(r->sse.content_type, "text/event-stream"));
    run_parse_events(r);
}

typedef enum form_kind {
    FORM_MULTIPART,
    FORM_URLENCODED
} form_kind;

/* POST /api/agent/initiate with prompt; fills thread and run ids. */
static void initiate(run *r, const char *token, const char *prompt, form_kind kind)
{
    const char *pairs[] = {"prompt", prompt, NULL};
    char *ctype = NULL;
    size_t len = 0;
    char *body;
    if (kind == FORM_MULTIPART) {
        body = kx_th_form_multipart(pairs, &ctype, &len);
    } else {
        body = kx_th_form_urlencoded(pairs, &len);
        ctype = strdup("application/x-www-form-urlencoded");
    }
    assert_non_null(body);
    assert_non_null(ctype);
    kx_http_resp resp = {0};
    assert_int_equal(kx_th_http(&g_stack, "POST", "/api/agent/initiate", token, ctype, body, len,
                                &resp),
                     KX_OK);
    if (resp.status != 200)
        fail_msg("initiate: status %ld: %s", resp.status, resp.body ? resp.body : "");
    json_t *v = json_loads(resp.body, 0, NULL);
    assert_non_null(v);
    const char *tid = jstr(v, "thread_id"), *rid = jstr(v, "agent_run_id");
    assert_non_null(tid);
    assert_non_null(rid);
    assert_true(kx_uuid_valid(tid));
    assert_true(kx_uuid_valid(rid));
    snprintf(r->thread_id, sizeof r->thread_id, "%s", tid);
    snprintf(r->run_id, sizeof r->run_id, "%s", rid);
    json_decref(v);
    kx_http_resp_free(&resp);
    free(body);
    free(ctype);
}

/* The first event with this label at or after *from (which is moved past it). */
static ev *next_ev(run *r, size_t *from, const char *label)
{
    for (size_t i = *from; i < r->n; i++) {
        if (strcmp(r->evs[i].label, label) == 0) {
            *from = i + 1;
            return &r->evs[i];
        }
    }
    fail_msg("no \"%s\" event after #%zu in: %s", label, *from, r->seq);
    return NULL;
}

/* The text of the chunks between from and the next non-chunk event, joined; checks each
 * chunk's shape and that sequence numbers increase. malloc'd. */
static char *joined_chunks(run *r, size_t from, const char *thread_run_id)
{
    size_t cap = 1, len = 0;
    char *text = calloc(1, 1);
    long long last_seq = -1;
    for (size_t i = from; i < r->n && strcmp(r->evs[i].label, "chunk") == 0; i++) {
        ev *e = &r->evs[i];
        assert_true(json_is_null(json_object_get(e->row, "message_id")));
        assert_true(json_is_integer(json_object_get(e->row, "sequence")));
        long long seq = json_integer_value(json_object_get(e->row, "sequence"));
        assert_true(seq > last_seq);
        last_seq = seq;
        assert_jstr(e->row, "thread_id", r->thread_id);
        assert_jstr(e->content, "role", "assistant");
        assert_jstr(e->metadata, "thread_run_id", thread_run_id);
        const char *delta = jstr(e->content, "content");
        assert_non_null(delta);
        size_t dl = strlen(delta);
        char *grown = realloc(text, cap + dl);
        if (grown == NULL)
            free(text);
        assert_non_null(grown);
        text = grown;
        cap += dl;
        memcpy(text + len, delta, dl + 1);
        len += dl;
    }
    return text;
}

/* Every DB-row shaped event carries the row's columns, for this thread. */
static void check_row_shapes(run *r)
{
    for (size_t i = 0; i < r->n; i++) {
        ev *e = &r->evs[i];
        if (e->content == NULL)
            continue;
        assert_jstr(e->row, "thread_id", r->thread_id);
        assert_true(json_is_boolean(json_object_get(e->row, "is_llm_message")));
        assert_non_null(jstr(e->row, "created_at"));
        assert_non_null(jstr(e->row, "updated_at"));
        if (strcmp(e->label, "chunk") != 0) {
            assert_true(kx_uuid_valid(jstr(e->row, "message_id")));
            bool is_status = strcmp(jstr(e->row, "type"), "status") == 0;
            assert_int_equal(json_is_true(json_object_get(e->row, "is_llm_message")), !is_status);
        }
    }
}

/* The sequence of a turn that answers with text only, as a string. */
#define TEXT_TURN \
    "thread_run_start assistant_response_start chunk+ assistant finish:stop thread_run_end"

/* ---- API reads -------------------------------------------------------------------------- */

/* GET /api/agent-run/{id} → the JSON (caller decrefs); asserts 200. */
static json_t *get_run(const char *run_id, const char *token)
{
    char path[128];
    snprintf(path, sizeof path, "/api/agent-run/%s", run_id);
    long status = 0;
    json_t *v = kx_th_json(&g_stack, "GET", path, token, NULL, &status);
    assert_int_equal(status, 200);
    assert_non_null(v);
    return v;
}

/* GET /api/threads/{id}/messages[?order=...] → the "messages" array (caller decrefs). */
static json_t *get_messages(const char *thread_id, const char *token, const char *order)
{
    char path[160];
    snprintf(path, sizeof path, "/api/threads/%s/messages%s%s", thread_id,
             order != NULL ? "?order=" : "", order != NULL ? order : "");
    long status = 0;
    json_t *v = kx_th_json(&g_stack, "GET", path, token, NULL, &status);
    assert_int_equal(status, 200);
    assert_non_null(v);
    json_t *msgs = json_object_get(v, "messages");
    assert_true(json_is_array(msgs));
    json_incref(msgs);
    json_decref(v);
    return msgs;
}

static void assert_run_status(const char *run_id, const char *token, const char *thread_id,
                              const char *status)
{
    json_t *v = get_run(run_id, token);
    assert_jstr(v, "id", run_id);
    assert_jstr(v, "threadId", thread_id);
    assert_jstr(v, "status", status);
    assert_non_null(jstr(v, "startedAt"));
    assert_non_null(jstr(v, "completedAt"));
    if (strcmp(status, "completed") == 0 || strcmp(status, "stopped") == 0)
        assert_true(json_is_null(json_object_get(v, "error")));
    json_decref(v);
}

/* ---- the walking skeleton --------------------------------------------------------------- */

/* Everything about a finished native-tool-call run (see the top of this file). */
static void check_native_run(run *r, const char *token, const char *account)
{
    assert_string_equal(r->seq,
                        "thread_run_start assistant_response_start tool_started assistant "
                        "tool_completed tool finish:tool_calls thread_run_end " TEXT_TURN
                        " status:completed");
    assert_string_equal(r->evs[r->n - 1].raw, COMPLETED);
    check_row_shapes(r);

    /* Turn 1: the tool call. */
    size_t at = 0;
    ev *start1 = next_ev(r, &at, "thread_run_start");
    const char *t1 = jstr(start1->content, "thread_run_id");
    assert_non_null(t1);
    assert_true(kx_uuid_valid(t1));
    assert_jstr(start1->metadata, "thread_run_id", t1);
    ev *ars = next_ev(r, &at, "assistant_response_start");
    assert_jstr(ars->metadata, "thread_run_id", t1);

    ev *started = next_ev(r, &at, "tool_started");
    ev *assistant1 = next_ev(r, &at, "assistant");
    ev *completed = next_ev(r, &at, "tool_completed");
    ev *tool = next_ev(r, &at, "tool");
    next_ev(r, &at, "finish:tool_calls");
    ev *end1 = next_ev(r, &at, "thread_run_end");
    assert_jstr(end1->metadata, "thread_run_id", t1);

    /* The assistant message carries the native call. */
    assert_jstr(assistant1->content, "role", "assistant");
    assert_jstr(assistant1->metadata, "thread_run_id", t1);
    json_t *calls = json_object_get(assistant1->content, "tool_calls");
    assert_true(json_is_array(calls));
    assert_int_equal(json_array_size(calls), 1);
    json_t *call = json_array_get(calls, 0);
    const char *call_id = jstr(call, "id");
    assert_non_null(call_id);
    assert_jstr(call, "type", "function");
    json_t *fn = json_object_get(call, "function");
    assert_jstr(fn, "name", "execute_command");
    json_t *args = json_loads(jstr(fn, "arguments"), 0, NULL);
    assert_non_null(args);
    assert_jstr(args, "command", "echo hello");
    assert_true(json_is_true(json_object_get(args, "blocking")));
    json_decref(args);

    assert_jstr(started->content, "role", "assistant");
    assert_jstr(started->content, "function_name", "execute_command");
    assert_jstr(started->content, "xml_tag_name", "execute-command");
    assert_jstr(started->content, "message", "Starting execution of execute_command");
    assert_int_equal(json_integer_value(json_object_get(started->content, "tool_index")), 0);
    assert_jstr(started->content, "tool_call_id", call_id);

    assert_jstr(completed->content, "function_name", "execute_command");
    assert_jstr(completed->content, "tool_call_id", call_id);
    const char *tool_msg_id = jstr(tool->row, "message_id");
    assert_jstr(completed->metadata, "linked_tool_result_message_id", tool_msg_id);

    /* The tool event: the frontend form, {"tool_execution": {...}} with the real output. */
    json_t *te = json_object_get(tool->content, "tool_execution");
    assert_true(json_is_object(te));
    assert_jstr(te, "function_name", "execute_command");
    assert_jstr(te, "xml_tag_name", "execute-command");
    assert_jstr(te, "tool_call_id", call_id);
    assert_jstr(json_object_get(te, "arguments"), "command", "echo hello");
    json_t *result = json_object_get(te, "result");
    assert_true(json_is_true(json_object_get(result, "success")));
    assert_true(json_mentions(json_object_get(result, "output"), "hello"));
    assert_true(json_is_null(json_object_get(result, "error")));

    /* Turn 2: the answer, streamed in chunks, quoting the tool result. */
    ev *start2 = next_ev(r, &at, "thread_run_start");
    const char *t2 = jstr(start2->content, "thread_run_id");
    assert_non_null(t2);
    assert_string_not_equal(t1, t2);
    next_ev(r, &at, "assistant_response_start");
    size_t first_chunk = at;
    assert_string_equal(r->evs[first_chunk].label, "chunk");
    char *text = joined_chunks(r, first_chunk, t2);
    ev *assistant2 = next_ev(r, &at, "assistant");
    assert_jstr(assistant2->content, "content", text);
    assert_true(json_is_null(json_object_get(assistant2->content, "tool_calls")));
    assert_jstr(assistant2->metadata, "thread_run_id", t2);
    assert_non_null(strstr(text, "hello"));
    ev *fin2 = next_ev(r, &at, "finish:stop");
    assert_jstr(fin2->metadata, "thread_run_id", t2);

    /* The run in the API and in Postgres. */
    assert_run_status(r->run_id, token, r->thread_id, "completed");
    const char *p1[] = {r->run_id};
    PGresult *row = kx_th_sql(&g_stack,
                              "SELECT status, attempt, lease_epoch, account_id, "
                              "started_at IS NOT NULL, completed_at >= started_at "
                              "FROM agent_runs WHERE id = $1",
                              1, p1);
    assert_non_null(row);
    assert_int_equal(PQntuples(row), 1);
    assert_string_equal(PQgetvalue(row, 0, 0), "completed");
    assert_string_equal(PQgetvalue(row, 0, 1), "1");
    long n = 0;
    assert_true(kx_th_parse_long(PQgetvalue(row, 0, 2), &n));
    assert_true(n >= 1);
    assert_string_equal(PQgetvalue(row, 0, 3), account);
    assert_string_equal(PQgetvalue(row, 0, 4), "t");
    assert_string_equal(PQgetvalue(row, 0, 5), "t");
    PQclear(row);
    /* The project is named after the prompt, cut to 30 characters + "...". */
    const char *p2[] = {r->thread_id};
    char *name = kx_th_sql_value(&g_stack,
                                 "SELECT p.name FROM projects p JOIN threads t USING (project_id) "
                                 "WHERE t.thread_id = $1",
                                 1, p2);
    assert_non_null(name);
    char want_name[64];
    snprintf(want_name, sizeof want_name, "%.30s...", NATIVE_PROMPT);
    assert_string_equal(name, want_name);
    free(name);

    /* The thread's messages, oldest first. */
    json_t *msgs = get_messages(r->thread_id, token, "asc");
    size_t nm = json_array_size(msgs);
    const char *llm_types[8];
    size_t nllm = 0;
    char status_types[512] = "";
    size_t sl = 0;
    int response_ends = 0;
    json_t *db_user = NULL, *db_assistant1 = NULL, *db_tool = NULL, *db_assistant2 = NULL;
    json_t *db_tool_meta = NULL;
    /* Each row's content as an object (rows may hold it as JSON text); released at the end. */
    json_t **contents = calloc(nm ? nm : 1, sizeof *contents);
    assert_non_null(contents);
    for (size_t i = 0; i < nm; i++) {
        json_t *m = json_array_get(msgs, i);
        const char *type = jstr(m, "type");
        assert_non_null(type);
        assert_jstr(m, "thread_id", r->thread_id);
        json_t *content = contents[i] = as_json(json_object_get(m, "content"));
        assert_true(json_is_object(content));
        if (json_is_true(json_object_get(m, "is_llm_message"))) {
            assert_true(nllm < 8);
            llm_types[nllm++] = type;
            if (strcmp(type, "user") == 0)
                db_user = content;
            else if (strcmp(type, "tool") == 0) {
                db_tool = content;
                db_tool_meta = as_json(json_object_get(m, "metadata"));
            } else if (strcmp(type, "assistant") == 0 && db_assistant1 == NULL)
                db_assistant1 = content;
            else if (strcmp(type, "assistant") == 0)
                db_assistant2 = content;
        } else if (strcmp(type, "status") == 0) {
            sl += (size_t)snprintf(status_types + sl, sizeof status_types - sl, "%s%s",
                                   sl ? " " : "", jstr(content, "status_type"));
            assert_true(sl < sizeof status_types);
        } else if (strcmp(type, "assistant_response_end") == 0) {
            response_ends++;
        }
    }
    assert_int_equal(nllm, 4);
    assert_string_equal(llm_types[0], "user");
    assert_string_equal(llm_types[1], "assistant");
    assert_string_equal(llm_types[2], "tool");
    assert_string_equal(llm_types[3], "assistant");
    assert_string_equal(status_types,
                        "thread_run_start assistant_response_start tool_started "
                        "tool_completed finish thread_run_end thread_run_start "
                        "assistant_response_start finish thread_run_end");
    assert_int_equal(response_ends, 2);
    assert_jstr(db_user, "role", "user");
    assert_jstr(db_user, "content", NATIVE_PROMPT);
    assert_jstr(json_array_get(json_object_get(db_assistant1, "tool_calls"), 0), "id", call_id);
    assert_jstr(db_tool, "role", "tool");
    assert_jstr(db_tool, "tool_call_id", call_id);
    assert_jstr(db_tool, "name", "execute_command");
    assert_non_null(strstr(jstr(db_tool, "content"), "hello"));
    assert_jstr(db_tool_meta, "assistant_message_id", jstr(assistant1->row, "message_id"));
    assert_true(json_is_object(
        json_object_get(json_object_get(db_tool_meta, "frontend_content"), "tool_execution")));
    assert_jstr(db_assistant2, "content", text);
    json_decref(db_tool_meta);
    for (size_t i = 0; i < nm; i++)
        json_decref(contents[i]);
    free(contents);

    /* Every saved event of the stream is a row of the thread. */
    for (size_t i = 0; i < r->n; i++) {
        const char *mid = jstr(r->evs[i].row, "message_id");
        if (mid == NULL)
            continue;
        bool found = false;
        for (size_t k = 0; k < nm && !found; k++)
            found = strcmp(jstr(json_array_get(msgs, k), "message_id"), mid) == 0;
        if (!found)
            fail_msg("streamed %s %s is not in the thread's messages", r->evs[i].label, mid);
    }

    /* The default order is newest first: the same rows reversed. */
    json_t *desc = get_messages(r->thread_id, token, NULL);
    assert_int_equal(json_array_size(desc), nm);
    for (size_t i = 0; i < nm; i++)
        assert_string_equal(jstr(json_array_get(desc, i), "message_id"),
                            jstr(json_array_get(msgs, nm - 1 - i), "message_id"));
    json_decref(desc);
    json_decref(msgs);
    free(text);
}

/* The run's stream read again after it ended is the same, event for event. */
static void check_replay(run *r, const char *token)
{
    run again = {0};
    snprintf(again.run_id, sizeof again.run_id, "%s", r->run_id);
    snprintf(again.thread_id, sizeof again.thread_id, "%s", r->thread_id);
    run_read_stream(&again, token);
    assert_int_equal(again.n, r->n);
    for (size_t i = 0; i < r->n; i++)
        assert_string_equal(again.evs[i].raw, r->evs[i].raw);
    run_free(&again);
}

static void skeleton(form_kind kind)
{
    char account[KX_UUID_LEN + 1];
    char *token = new_account(account);
    run r = {0};
    initiate(&r, token, NATIVE_PROMPT, kind);
    run_read_stream(&r, token);
    check_native_run(&r, token, account);
    check_replay(&r, token);
    run_free(&r);
    free(token);
}

static void test_skeleton_multipart(void **state)
{
    skeleton(FORM_MULTIPART);
}

static void test_skeleton_urlencoded(void **state)
{
    skeleton(FORM_URLENCODED);
}

/* ---- more turns on one thread ----------------------------------------------------------- */

/* The last assistant message's text of a finished text-only run. */
static void check_text_run(run *r, const char *token, const char *want_text)
{
    assert_string_equal(r->seq, TEXT_TURN " status:completed");
    assert_string_equal(r->evs[r->n - 1].raw, COMPLETED);
    check_row_shapes(r);
    size_t at = 0;
    ev *start = next_ev(r, &at, "thread_run_start");
    const char *t = jstr(start->content, "thread_run_id");
    assert_non_null(t);
    next_ev(r, &at, "assistant_response_start");
    char *text = joined_chunks(r, at, t);
    ev *a = next_ev(r, &at, "assistant");
    assert_jstr(a->content, "content", text);
    assert_string_equal(text, want_text);
    free(text);
    assert_run_status(r->run_id, token, r->thread_id, "completed");
}

/* POST /api/thread/{id}/agent/start with body; returns the new run id into r. */
static void start_turn(run *r, const char *token, const char *body)
{
    char path[128];
    snprintf(path, sizeof path, "/api/thread/%s/agent/start", r->thread_id);
    long status = 0;
    json_t *v = kx_th_json(&g_stack, "POST", path, token, body, &status);
    assert_non_null(v);
    if (status != 200)
        fail_msg("agent/start: %ld", status);
    assert_jstr(v, "status", "queued");
    const char *rid = jstr(v, "agent_run_id");
    assert_true(kx_uuid_valid(rid));
    snprintf(r->run_id, sizeof r->run_id, "%s", rid);
    json_decref(v);
}

static void test_second_turn(void **state)
{
    char account[KX_UUID_LEN + 1];
    char *token = new_account(account);
    run r1 = {0};
    initiate(&r1, token, "say first turn", FORM_MULTIPART);
    run_read_stream(&r1, token);
    check_text_run(&r1, token, "first turn");

    /* Turn 2: the message first, then the start. */
    char path[128];
    snprintf(path, sizeof path, "/api/threads/%s/messages", r1.thread_id);
    long status = 0;
    json_t *row = kx_th_json(&g_stack, "POST", path, token,
                             "{\"type\": \"user\", \"content\": \"say all good\", "
                             "\"is_llm_message\": true}",
                             &status);
    assert_int_equal(status, 200);
    assert_non_null(row);
    assert_true(kx_uuid_valid(jstr(row, "message_id")));
    assert_jstr(row, "type", "user");
    json_decref(row);
    run r2 = {0};
    snprintf(r2.thread_id, sizeof r2.thread_id, "%s", r1.thread_id);
    start_turn(&r2, token, "{}");
    assert_string_not_equal(r2.run_id, r1.run_id);
    run_read_stream(&r2, token);
    check_text_run(&r2, token, "all good");

    /* Turn 3: the prompt given to agent/start itself. */
    run r3 = {0};
    snprintf(r3.thread_id, sizeof r3.thread_id, "%s", r1.thread_id);
    start_turn(&r3, token, "{\"prompt\": \"say third turn\"}");
    run_read_stream(&r3, token);
    check_text_run(&r3, token, "third turn");

    /* The thread's runs, newest first. */
    snprintf(path, sizeof path, "/api/thread/%s/agent-runs", r1.thread_id);
    json_t *v = kx_th_json(&g_stack, "GET", path, token, NULL, &status);
    assert_int_equal(status, 200);
    json_t *runs = json_object_get(v, "agent_runs");
    assert_int_equal(json_array_size(runs), 3);
    assert_jstr(json_array_get(runs, 0), "id", r3.run_id);
    assert_jstr(json_array_get(runs, 1), "id", r2.run_id);
    assert_jstr(json_array_get(runs, 2), "id", r1.run_id);
    for (size_t i = 0; i < 3; i++)
        assert_jstr(json_array_get(runs, i), "status", "completed");
    json_decref(v);

    /* Three user messages in the thread, in order. */
    json_t *msgs = get_messages(r1.thread_id, token, "asc");
    const char *want[] = {"say first turn", "say all good", "say third turn"};
    size_t users = 0;
    for (size_t i = 0; i < json_array_size(msgs); i++) {
        json_t *m = json_array_get(msgs, i);
        if (strcmp(jstr(m, "type"), "user") != 0)
            continue;
        assert_true(users < 3);
        json_t *c = as_json(json_object_get(m, "content"));
        assert_jstr(c, "content", want[users++]);
        json_decref(c);
    }
    assert_int_equal(users, 3);
    json_decref(msgs);
    run_free(&r1);
    run_free(&r2);
    run_free(&r3);
    free(token);
}

/* ---- stop ------------------------------------------------------------------------------- */

static void test_stop_hanging_run(void **state)
{
    char account[KX_UUID_LEN + 1];
    char *token = new_account(account);
    run r = {0};
    initiate(&r, token, "hang", FORM_MULTIPART);

    char path[128];
    snprintf(path, sizeof path, "/api/agent-run/%s/stream", r.run_id);
    kx_th_sse_reader *reader = kx_th_sse_start(&g_stack, path, token, STREAM_TIMEOUT_MS);
    assert_non_null(reader);

    /* Wait until a runner holds it and is waiting for the model. */
    int64_t give_up = kx_mono_ms() + 10000;
    for (;;) {
        json_t *v = get_run(r.run_id, token);
        bool running = strcmp(jstr(v, "status"), "running") == 0;
        json_decref(v);
        if (running)
            break;
        if (kx_mono_ms() > give_up)
            fail_msg("run %s never became running", r.run_id);
        struct timespec ts = {0, 50 * 1000000L};
        nanosleep(&ts, NULL);
    }
    struct timespec ts = {0, 300 * 1000000L}; /* let it reach the model and hang there */
    nanosleep(&ts, NULL);

    int64_t t0 = kx_mono_ms();
    snprintf(path, sizeof path, "/api/agent-run/%s/stop", r.run_id);
    long status = 0;
    json_t *v = kx_th_json(&g_stack, "POST", path, token, NULL, &status);
    int64_t t_answer = kx_mono_ms();
    assert_int_equal(status, 200);
    assert_jstr(v, "status", "stopped");
    json_decref(v);
    assert_true(t_answer - t0 < 1000);

    assert_int_equal(kx_th_sse_join(reader, &r.sse), KX_OK);
    assert_int_equal(r.sse.status, 200);
    assert_true(r.sse.terminal);
    assert_true(r.sse.n >= 1);
    int64_t t_event = r.sse.at_ms[r.sse.n - 1];
    if (t_event - t0 >= 1000)
        fail_msg("the stopped event came %lld ms after the stop", (long long)(t_event - t0));
    assert_string_equal(r.sse.data[r.sse.n - 1], STOPPED);
    run_parse_events(&r);
    assert_string_equal(r.seq, "thread_run_start assistant_response_start status:stopped");

    /* The run stays stopped: a runner that was mid-call cannot overwrite it. */
    assert_run_status(r.run_id, token, r.thread_id, "stopped");
    nanosleep(&(struct timespec){1, 0}, NULL);
    assert_run_status(r.run_id, token, r.thread_id, "stopped");
    const char *p[] = {r.run_id};
    char *db = kx_th_sql_value(&g_stack, "SELECT status FROM agent_runs WHERE id = $1", 1, p);
    assert_non_null(db);
    assert_string_equal(db, "stopped");
    free(db);

    /* A second stop changes nothing and says how it ended. */
    v = kx_th_json(&g_stack, "POST", path, token, NULL, &status);
    assert_int_equal(status, 200);
    assert_jstr(v, "status", "stopped");
    json_decref(v);

    /* The replay ends with the same single terminal event. */
    run again = {0};
    snprintf(again.run_id, sizeof again.run_id, "%s", r.run_id);
    snprintf(again.thread_id, sizeof again.thread_id, "%s", r.thread_id);
    run_read_stream(&again, token);
    assert_string_equal(again.seq, r.seq);
    run_free(&again);
    run_free(&r);
    free(token);
}

/* ---- authentication and isolation ------------------------------------------------------- */

static void assert_detail(json_t *v, const char *prefix)
{
    const char *d = jstr(v, "detail");
    if (d == NULL || strncmp(d, prefix, strlen(prefix)) != 0)
        fail_msg("detail \"%s\" does not start with \"%s\"", d ? d : "(none)", prefix);
}

static void test_auth(void **state)
{
    char account[KX_UUID_LEN + 1], other[KX_UUID_LEN + 1];
    char *token = new_account(account);
    char *other_token = new_account(other);
    run r = {0};
    initiate(&r, token, "say mine", FORM_URLENCODED);
    run_read_stream(&r, token);
    check_text_run(&r, token, "mine");

    char run_path[128], stream_path[128], msgs_path[128], stop_path[128];
    snprintf(run_path, sizeof run_path, "/api/agent-run/%s", r.run_id);
    snprintf(stream_path, sizeof stream_path, "/api/agent-run/%s/stream", r.run_id);
    snprintf(msgs_path, sizeof msgs_path, "/api/threads/%s/messages", r.thread_id);
    snprintf(stop_path, sizeof stop_path, "/api/agent-run/%s/stop", r.run_id);
    long status = 0;

    /* No credentials. */
    json_t *v = kx_th_json(&g_stack, "GET", run_path, NULL, NULL, &status);
    assert_int_equal(status, 401);
    assert_detail(v, "No valid authentication credentials found");
    json_decref(v);
    kx_http_resp resp = {0};
    const char *form = "prompt=say+hi";
    assert_int_equal(kx_th_http(&g_stack, "POST", "/api/agent/initiate", NULL,
                                "application/x-www-form-urlencoded", form, strlen(form), &resp),
                     KX_OK);
    assert_int_equal(resp.status, 401);
    kx_http_resp_free(&resp);

    /* Signed with another secret; expired; a sub that is not a UUID. */
    char *forged = kx_th_jwt("not-the-secret", account, 3600);
    v = kx_th_json(&g_stack, "GET", run_path, forged, NULL, &status);
    assert_int_equal(status, 401);
    assert_detail(v, "Invalid token");
    json_decref(v);
    free(forged);
    char *expired = kx_th_jwt(g_stack.secret, account, -3600);
    v = kx_th_json(&g_stack, "GET", run_path, expired, NULL, &status);
    assert_int_equal(status, 401);
    assert_detail(v, "Invalid token");
    json_decref(v);
    free(expired);
    char *not_uuid = kx_th_jwt(g_stack.secret, "not-a-uuid", 3600);
    v = kx_th_json(&g_stack, "GET", run_path, not_uuid, NULL, &status);
    assert_int_equal(status, 401);
    assert_detail(v, "Invalid token payload");
    json_decref(v);
    free(not_uuid);
    kx_th_sse sse;
    assert_int_equal(kx_th_sse_read(&g_stack, stream_path, NULL, 5000, &sse), KX_OK);
    assert_int_equal(sse.status, 401);
    kx_th_sse_free(&sse);

    /* Another account: 404 on the run, its stream, its stop and its thread. */
    v = kx_th_json(&g_stack, "GET", run_path, other_token, NULL, &status);
    assert_int_equal(status, 404);
    assert_detail(v, "Agent run not found");
    json_decref(v);
    assert_int_equal(kx_th_sse_read(&g_stack, stream_path, other_token, 5000, &sse), KX_OK);
    assert_int_equal(sse.status, 404);
    assert_int_equal(sse.n, 0);
    kx_th_sse_free(&sse);
    v = kx_th_json(&g_stack, "POST", stop_path, other_token, NULL, &status);
    assert_int_equal(status, 404);
    json_decref(v);
    v = kx_th_json(&g_stack, "GET", msgs_path, other_token, NULL, &status);
    assert_int_equal(status, 404);
    assert_detail(v, "Thread not found");
    json_decref(v);
    assert_run_status(r.run_id, token, r.thread_id, "completed");

    /* Unknown ids are 404; the stream also takes ?token= (EventSource sends no headers). */
    char unknown[KX_UUID_LEN + 1], path[512];
    kx_uuid_new(unknown);
    snprintf(path, sizeof path, "/api/agent-run/%s", unknown);
    v = kx_th_json(&g_stack, "GET", path, token, NULL, &status);
    assert_int_equal(status, 404);
    assert_detail(v, "Agent run not found");
    json_decref(v);
    snprintf(path, sizeof path, "%s?token=%s", stream_path, token);
    assert_int_equal(kx_th_sse_read(&g_stack, path, NULL, STREAM_TIMEOUT_MS, &sse), KX_OK);
    assert_int_equal(sse.status, 200);
    assert_true(sse.terminal);
    assert_int_equal(sse.n, r.n);
    kx_th_sse_free(&sse);

    run_free(&r);
    free(token);
    free(other_token);
}

/* ---- LLM retry and XML calls ------------------------------------------------------------ */

static void test_llm_500_is_retried(void **state)
{
    char account[KX_UUID_LEN + 1];
    char *token = new_account(account);
    /* The demo model counts attempts per conversation text: the account makes this one unique
     * (a line that is not a directive is ignored by the model). */
    char prompt[256];
    snprintf(prompt, sizeof prompt, "fail 500 1\nsay recovered after a failure\nnonce %s",
             account);
    run r = {0};
    initiate(&r, token, prompt, FORM_MULTIPART);
    run_read_stream(&r, token);
    check_text_run(&r, token, "recovered after a failure");
    run_free(&r);
    free(token);
}

static void test_xml_tool_call(void **state)
{
    char account[KX_UUID_LEN + 1];
    char *token = new_account(account);
    run r = {0};
    initiate(&r, token,
             "xml execute_command {\"command\": \"echo hello-xml\", \"blocking\": true}",
             FORM_MULTIPART);
    run_read_stream(&r, token);
    assert_string_equal(r.seq,
                        "thread_run_start assistant_response_start chunk+ tool_started "
                        "assistant tool_completed tool finish:xml_tool_limit_reached "
                        "thread_run_end " TEXT_TURN " status:completed");
    assert_string_equal(r.evs[r.n - 1].raw, COMPLETED);
    check_row_shapes(&r);

    size_t at = 0;
    ev *start1 = next_ev(&r, &at, "thread_run_start");
    const char *t1 = jstr(start1->content, "thread_run_id");
    next_ev(&r, &at, "assistant_response_start");
    char *xml_text = joined_chunks(&r, at, t1);
    assert_non_null(strstr(xml_text, "<function_calls>"));
    assert_non_null(strstr(xml_text, "<invoke name=\"execute_command\">"));
    ev *started = next_ev(&r, &at, "tool_started");
    assert_jstr(started->content, "function_name", "execute_command");
    assert_jstr(started->content, "xml_tag_name", "execute-command");
    assert_true(json_is_null(json_object_get(started->content, "tool_call_id")));
    ev *assistant1 = next_ev(&r, &at, "assistant");
    assert_non_null(strstr(jstr(assistant1->content, "content"), "</function_calls>"));
    assert_true(json_is_null(json_object_get(assistant1->content, "tool_calls")));
    ev *tool = next_ev(&r, &at, "tool");
    json_t *te = json_object_get(tool->content, "tool_execution");
    assert_jstr(te, "function_name", "execute_command");
    assert_true(json_is_null(json_object_get(te, "tool_call_id")));
    json_t *result = json_object_get(te, "result");
    assert_true(json_is_true(json_object_get(result, "success")));
    assert_true(json_mentions(json_object_get(result, "output"), "hello-xml"));

    next_ev(&r, &at, "thread_run_start");
    const char *t2 = jstr(r.evs[at - 1].content, "thread_run_id");
    next_ev(&r, &at, "assistant_response_start");
    char *answer = joined_chunks(&r, at, t2);
    assert_non_null(strstr(answer, "hello-xml"));

    /* In Postgres the XML result is an LLM message with role user holding the JSON text. */
    json_t *msgs = get_messages(r.thread_id, token, "asc");
    bool found = false;
    for (size_t i = 0; i < json_array_size(msgs); i++) {
        json_t *m = json_array_get(msgs, i);
        if (strcmp(jstr(m, "type"), "tool") != 0)
            continue;
        json_t *c = as_json(json_object_get(m, "content"));
        assert_jstr(c, "role", "user");
        json_t *inner = json_loads(jstr(c, "content"), 0, NULL);
        assert_non_null(inner);
        assert_true(json_is_object(json_object_get(inner, "tool_execution")));
        json_decref(inner);
        json_decref(c);
        found = true;
    }
    assert_true(found);
    json_decref(msgs);
    assert_run_status(r.run_id, token, r.thread_id, "completed");
    free(xml_text);
    free(answer);
    run_free(&r);
    free(token);
}

/* ---- main ------------------------------------------------------------------------------- */

static int start_stack(void **state)
{
    kx_th_stack_opts opts = {0};
    return kx_th_stack_start(&opts, &g_stack) == KX_OK ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_skeleton_multipart),
        cmocka_unit_test(test_skeleton_urlencoded),
        cmocka_unit_test(test_second_turn),
        cmocka_unit_test(test_stop_hanging_run),
        cmocka_unit_test(test_auth),
        cmocka_unit_test(test_llm_500_is_retried),
        cmocka_unit_test(test_xml_tool_call),
    };
    int failed = cmocka_run_group_tests(tests, start_stack, NULL);
    if (kx_th_stack_stop(&g_stack, failed != 0) != 0)
        failed++;
    return failed != 0;
}
