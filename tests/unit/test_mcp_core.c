/* test_mcp_core.c — unit tests of the mcp-proxy's pure parts (services/mcp-proxy, library
 * kx_mcp_core): the JSON-RPC 2.0 layer (jsonrpc.c), newline framing with its cap (linebuf.c),
 * the log budget for servers' lines (log_budget.c), KX_MCP_SERVERS parsing (mcp_config.c) and a
 * jailed server's host uid (user_stdio.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonrpc.h"
#include "linebuf.h"
#include "log_budget.h"
#include "mcp_config.h"
#include "user_stdio.h"

/* ---- a fake peer: records what the layer sends and what it hands over ---- */

typedef struct peer {
    char sent[8][512];
    int nsent;
    kx_err send_result;
    char incoming_method[64];
    bool incoming_had_id;
    int nincoming;
    /* responses */
    int nresponses;
    char last_result[256];
    int64_t last_error_code;
    char last_error_msg[128];
} peer;

static kx_err fake_send(const char *text, size_t len, void *arg)
{
    peer *p = arg;
    if (p->send_result != KX_OK)
        return p->send_result;
    assert_true(p->nsent < 8);
    assert_true(len < sizeof p->sent[0]);
    memcpy(p->sent[p->nsent], text, len);
    p->sent[p->nsent][len] = '\0';
    assert_null(memchr(text, '\n', len)); /* framing is the transport's business */
    p->nsent++;
    return KX_OK;
}

static void fake_incoming(mcp_rpc *rpc, const char *method, const json_t *params, const json_t *id,
                          void *arg)
{
    peer *p = arg;
    snprintf(p->incoming_method, sizeof p->incoming_method, "%s", method);
    p->incoming_had_id = id != NULL;
    p->nincoming++;
    if (id != NULL && strcmp(method, "ping") == 0)
        assert_int_equal(mcp_rpc_reply_result(rpc, id, json_object()), KX_OK);
}

static void on_response(const json_t *result, const mcp_rpc_error *error, void *arg)
{
    peer *p = arg;
    p->nresponses++;
    assert_true((result == NULL) != (error == NULL));
    if (result != NULL) {
        char *s = json_dumps(result, JSON_COMPACT);
        snprintf(p->last_result, sizeof p->last_result, "%s", s);
        free(s);
        p->last_error_code = 0;
    } else {
        p->last_error_code = error->code;
        snprintf(p->last_error_msg, sizeof p->last_error_msg, "%s", error->message);
    }
}

static kx_err feed(mcp_rpc *rpc, const char *text)
{
    char why[256];
    return mcp_rpc_receive(rpc, text, strlen(text), why, sizeof why);
}

/* ---- JSON-RPC ---- */

static void test_request_ids_and_wire_form(void **state)
{
    peer p = {0};
    mcp_rpc *rpc = mcp_rpc_new(fake_send, fake_incoming, &p);
    int64_t id1 = 0, id2 = 0;
    assert_int_equal(mcp_rpc_request(rpc, "initialize", json_pack("{s:s}", "a", "b"), on_response,
                                     &p, &id1),
                     KX_OK);
    assert_int_equal(mcp_rpc_request(rpc, "tools/list", NULL, on_response, &p, &id2), KX_OK);
    assert_int_equal(id1, 1);
    assert_int_equal(id2, 2);
    assert_string_equal(
        p.sent[0],
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{\"a\":\"b\"}}");
    assert_string_equal(p.sent[1], "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/list\"}");
    assert_int_equal(mcp_rpc_pending(rpc), 2);

    assert_int_equal(mcp_rpc_notify(rpc, "notifications/initialized", NULL), KX_OK);
    assert_string_equal(p.sent[2],
                        "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}");
    mcp_rpc_free(rpc);
}

static void test_responses_match_requests(void **state)
{
    peer p = {0};
    mcp_rpc *rpc = mcp_rpc_new(fake_send, fake_incoming, &p);
    int64_t a, b;
    mcp_rpc_request(rpc, "x", NULL, on_response, &p, &a);
    mcp_rpc_request(rpc, "y", NULL, on_response, &p, &b);
    /* answered out of order */
    assert_int_equal(feed(rpc, "{\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{\"v\":2}}"), KX_OK);
    assert_int_equal(p.nresponses, 1);
    assert_string_equal(p.last_result, "{\"v\":2}");
    assert_int_equal(feed(rpc,
                          "{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{\"code\":-32601,"
                          "\"message\":\"Method not found\"}}"),
                     KX_OK);
    assert_int_equal(p.nresponses, 2);
    assert_int_equal(p.last_error_code, -32601);
    assert_string_equal(p.last_error_msg, "Method not found");
    assert_int_equal(mcp_rpc_pending(rpc), 0);
    /* answered twice: the second is for an id that is no longer pending */
    assert_int_equal(feed(rpc, "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}"), KX_ERR_NOT_FOUND);
    assert_int_equal(p.nresponses, 2);
    mcp_rpc_free(rpc);
}

/* \u0000 from a server, in a value or a key, reads as U+FFFD; a backslash followed by the
 * letters u0000 is text and stays (the key case was dropped: jansson refuses NUL in keys). */
static void test_nul_escapes(void **state)
{
    (void)state;
    peer p = {0};
    mcp_rpc *rpc = mcp_rpc_new(fake_send, fake_incoming, &p);
    int64_t id;
    mcp_rpc_request(rpc, "x", NULL, on_response, &p, &id);
    assert_int_equal(feed(rpc,
                          "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":"
                          "{\"k\\u0000\":\"a\\u0000b\",\"t\":\"\\\\u0000\"}}"),
                     KX_OK);
    assert_int_equal(p.nresponses, 1);
    assert_string_equal(p.last_result,
                        "{\"k\xEF\xBF\xBD\":\"a\xEF\xBF\xBD"
                        "b\",\"t\":\"\\\\u0000\"}");
    json_error_t err;
    json_t *j = mcp_json_loadb("[\"\\\\\\u0000\"]", 12, &err); /* ["\\\u0000"] */
    assert_non_null(j);
    assert_string_equal(json_string_value(json_array_get(j, 0)), "\\\xEF\xBF\xBD");
    json_decref(j);
    assert_null(
        mcp_json_loadb("[\"\\u0000", strlen("[\"\\u0000"), &err)); /* cut short: still not JSON */
    mcp_rpc_free(rpc);
}

static void test_malformed_messages(void **state)
{
    peer p = {0};
    mcp_rpc *rpc = mcp_rpc_new(fake_send, fake_incoming, &p);
    int64_t id;
    mcp_rpc_request(rpc, "x", NULL, on_response, &p, &id);
    char why[256] = "";
    const char *bad = "not json at all";
    assert_int_equal(mcp_rpc_receive(rpc, bad, strlen(bad), why, sizeof why), KX_ERR_PROTOCOL);
    assert_non_null(strstr(why, "not JSON"));
    assert_int_equal(feed(rpc, "[{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}]"),
                     KX_ERR_PROTOCOL); /* batches are refused */
    assert_int_equal(feed(rpc, "{\"id\":1,\"result\":{}}"), KX_ERR_PROTOCOL); /* no jsonrpc */
    assert_int_equal(feed(rpc, "{\"jsonrpc\":\"1.0\",\"id\":1,\"result\":{}}"), KX_ERR_PROTOCOL);
    assert_int_equal(feed(rpc, "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{},\"error\":{}}"),
                     KX_ERR_PROTOCOL);
    assert_int_equal(feed(rpc, "{\"jsonrpc\":\"2.0\",\"id\":1}"), KX_ERR_PROTOCOL);
    assert_int_equal(feed(rpc, "{\"jsonrpc\":\"2.0\"}"), KX_ERR_PROTOCOL);
    assert_int_equal(feed(rpc, "42"), KX_ERR_PROTOCOL);
    assert_int_equal(feed(rpc, "{\"jsonrpc\":\"2.0\",\"id\":\"1\",\"result\":{}}"),
                     KX_ERR_NOT_FOUND); /* we only issue integer ids */
    assert_int_equal(p.nresponses, 0);
    assert_int_equal(mcp_rpc_pending(rpc), 1);
    /* a malformed error object still ends the request, as an internal error */
    assert_int_equal(feed(rpc, "{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{\"code\":\"x\"}}"),
                     KX_ERR_PROTOCOL);
    assert_int_equal(p.nresponses, 1);
    assert_int_equal(p.last_error_code, MCP_RPC_INTERNAL_ERROR);
    assert_int_equal(mcp_rpc_pending(rpc), 0);
    mcp_rpc_free(rpc);
}

static void test_peer_requests_and_notifications(void **state)
{
    peer p = {0};
    mcp_rpc *rpc = mcp_rpc_new(fake_send, fake_incoming, &p);
    assert_int_equal(feed(rpc,
                          "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/tools/"
                          "list_changed\"}"),
                     KX_OK);
    assert_string_equal(p.incoming_method, "notifications/tools/list_changed");
    assert_false(p.incoming_had_id);
    assert_int_equal(feed(rpc, "{\"jsonrpc\":\"2.0\",\"id\":\"abc\",\"method\":\"ping\"}"), KX_OK);
    assert_true(p.incoming_had_id);
    assert_int_equal(p.nsent, 1);
    assert_string_equal(p.sent[0], "{\"jsonrpc\":\"2.0\",\"id\":\"abc\",\"result\":{}}");
    /* an invalid request with an id is answered with Invalid Request */
    assert_int_equal(feed(rpc, "{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":5}"), KX_ERR_PROTOCOL);
    assert_int_equal(p.nincoming, 2);
    assert_int_equal(p.nsent, 2);
    assert_string_equal(p.sent[1],
                        "{\"jsonrpc\":\"2.0\",\"id\":7,\"error\":{\"code\":-32600,"
                        "\"message\":\"Invalid Request\"}}");
    mcp_rpc_free(rpc);
}

static void test_cancel_fail_all_and_send_failure(void **state)
{
    peer p = {0};
    mcp_rpc *rpc = mcp_rpc_new(fake_send, fake_incoming, &p);
    int64_t a, b, c;
    mcp_rpc_request(rpc, "a", NULL, on_response, &p, &a);
    mcp_rpc_request(rpc, "b", NULL, on_response, &p, &b);
    mcp_rpc_request(rpc, "c", NULL, on_response, &p, &c);
    assert_true(mcp_rpc_cancel(rpc, b));
    assert_false(mcp_rpc_cancel(rpc, b));
    assert_int_equal(feed(rpc, "{\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{}}"), KX_ERR_NOT_FOUND);
    assert_int_equal(p.nresponses, 0);
    mcp_rpc_fail_all(rpc, -1, "server exited");
    assert_int_equal(p.nresponses, 2);
    assert_int_equal(p.last_error_code, -1);
    assert_string_equal(p.last_error_msg, "server exited");
    assert_int_equal(mcp_rpc_pending(rpc), 0);

    p.send_result = KX_ERR_UNAVAILABLE;
    int64_t d = -5;
    assert_int_equal(mcp_rpc_request(rpc, "d", NULL, on_response, &p, &d), KX_ERR_UNAVAILABLE);
    assert_int_equal(d, -5); /* untouched */
    assert_int_equal(mcp_rpc_pending(rpc), 0);
    mcp_rpc_free(rpc);
}

/* ---- linebuf ---- */

typedef struct lines {
    char got[8][64];
    int n;
} lines;

static void on_line(const char *line, size_t len, void *arg)
{
    lines *l = arg;
    assert_true(l->n < 8);
    assert_int_equal(strlen(line), len);
    snprintf(l->got[l->n++], sizeof l->got[0], "%s", line);
}

static void test_linebuf_splits_any_pieces(void **state)
{
    mcp_linebuf lb;
    lines l = {0};
    mcp_linebuf_init(&lb, 100, false);
    const char *stream = "{\"a\":1}\r\n{\"b\":\n\nlast";
    for (size_t i = 0; i < strlen(stream); i++) /* one byte at a time */
        assert_int_equal(mcp_linebuf_feed(&lb, stream + i, 1, on_line, &l), KX_OK);
    assert_int_equal(l.n, 3);
    assert_string_equal(l.got[0], "{\"a\":1}"); /* "\r" dropped */
    assert_string_equal(l.got[1], "{\"b\":");
    assert_string_equal(l.got[2], "");
    mcp_linebuf_flush(&lb, on_line, &l);
    assert_int_equal(l.n, 4);
    assert_string_equal(l.got[3], "last");
    mcp_linebuf_free(&lb);
}

/* A server's lines in our log: a burst, then a steady rate; the refused ones are counted and
 * handed to the next line let through. */
static void test_log_budget(void **state)
{
    (void)state;
    mcp_log_budget b = {0};
    uint64_t dropped = 99;
    int let = 0;
    for (int i = 0; i < 10000; i++)
        if (mcp_log_budget_take(&b, 1000, &dropped)) {
            assert_int_equal(dropped, 0);
            let++;
        }
    assert_int_equal(let, MCP_LOG_BURST);
    /* a second later: MCP_LOG_PER_S more, the first of them with the count */
    assert_true(mcp_log_budget_take(&b, 2000, &dropped));
    assert_int_equal(dropped, 10000 - MCP_LOG_BURST);
    let = 1;
    for (int i = 0; i < 100; i++)
        if (mcp_log_budget_take(&b, 2000, &dropped))
            let++;
    assert_int_equal(let, MCP_LOG_PER_S);
    /* a quiet hour refills the burst, no more */
    let = 0;
    for (int i = 0; i < 10000; i++)
        if (mcp_log_budget_take(&b, 3600000, &dropped))
            let++;
    assert_int_equal(let, MCP_LOG_BURST);
}

static void test_linebuf_cap(void **state)
{
    mcp_linebuf lb;
    lines l = {0};
    mcp_linebuf_init(&lb, 8, false);
    assert_int_equal(mcp_linebuf_feed(&lb, "12345678\n", 9, on_line, &l), KX_OK); /* = max */
    assert_int_equal(mcp_linebuf_feed(&lb, "12345", 5, on_line, &l), KX_OK);
    assert_int_equal(mcp_linebuf_feed(&lb, "6789\n", 5, on_line, &l), KX_ERR_PROTOCOL);
    assert_int_equal(l.n, 1);
    mcp_linebuf_free(&lb);

    /* cut_long: delivered in pieces of max */
    lines c = {0};
    mcp_linebuf_init(&lb, 4, true);
    assert_int_equal(mcp_linebuf_feed(&lb, "abcdefghij\nxy\n", 14, on_line, &c), KX_OK);
    assert_int_equal(c.n, 4);
    assert_string_equal(c.got[0], "abcd");
    assert_string_equal(c.got[1], "efgh");
    assert_string_equal(c.got[2], "ij");
    assert_string_equal(c.got[3], "xy");
    mcp_linebuf_free(&lb);
}

/* ---- KX_MCP_SERVERS ---- */

static void test_config_valid(void **state)
{
    mcp_config c;
    char why[512];
    assert_int_equal(mcp_config_parse("{\"everything\": {\"command\": \"node\", \"args\": "
                                      "[\"index.js\", \"stdio\"], \"env\": {\"A\": \"1\", "
                                      "\"B_2\": \"x=y\"}}, \"other.srv\": {\"command\": "
                                      "\"/bin/cat\", \"type\": \"stdio\"}}",
                                      &c, why, sizeof why),
                     0);
    assert_int_equal(c.n, 2);
    const mcp_server_config *e = mcp_config_find(&c, "everything");
    assert_non_null(e);
    assert_string_equal(e->argv[0], "node");
    assert_string_equal(e->argv[1], "index.js");
    assert_string_equal(e->argv[2], "stdio");
    assert_null(e->argv[3]);
    assert_string_equal(e->env[0], "A=1");
    assert_string_equal(e->env[1], "B_2=x=y");
    assert_null(e->env[2]);
    const mcp_server_config *o = mcp_config_find(&c, "other.srv");
    assert_string_equal(o->argv[0], "/bin/cat");
    assert_null(o->argv[1]);
    assert_null(o->env[0]);
    assert_null(mcp_config_find(&c, "nope"));
    char names[64];
    mcp_config_names(&c, names, sizeof names);
    assert_string_equal(names, "everything, other.srv");
    mcp_config_free(&c);

    assert_int_equal(mcp_config_parse(NULL, &c, why, sizeof why), 0);
    assert_int_equal(c.n, 0);
    mcp_config_names(&c, names, sizeof names);
    assert_string_equal(names, "none");
    mcp_config_free(&c);
}

static void assert_config_error(const char *text, const char *needle)
{
    mcp_config c;
    char why[512] = "";
    assert_int_equal(mcp_config_parse(text, &c, why, sizeof why), -1);
    if (strstr(why, needle) == NULL)
        fail_msg("error \"%s\" does not contain \"%s\"", why, needle);
    assert_int_equal(c.n, 0);
}

static void test_config_errors(void **state)
{
    assert_config_error("{\"a\": ", "not valid JSON");
    assert_config_error("[]", "must be a JSON object");
    assert_config_error("{\"a\": \"node\"}", "server 'a' must be an object");
    assert_config_error("{\"a\": {}}", "server 'a' needs \"command\"");
    assert_config_error("{\"a\": {\"command\": \"\"}}", "needs \"command\"");
    assert_config_error("{\"a\": {\"command\": \"x\", \"args\": \"-v\"}}", "\"args\" must be");
    assert_config_error("{\"a\": {\"command\": \"x\", \"args\": [1]}}", "args[0] is not");
    assert_config_error("{\"a\": {\"command\": \"x\", \"env\": []}}", "\"env\" must be");
    assert_config_error("{\"a\": {\"command\": \"x\", \"env\": {\"K\": 1}}}",
                        "env \"K\" must be a string");
    assert_config_error("{\"a\": {\"command\": \"x\", \"env\": {\"1K\": \"v\"}}}",
                        "not a valid environment variable name");
    assert_config_error("{\"a\": {\"command\": \"x\", \"arg\": []}}", "unknown key \"arg\"");
    assert_config_error("{\"a\": {\"command\": \"x\", \"type\": \"sse\"}}",
                        "unknown key \"command\"");
    assert_config_error("{\"a b\": {\"command\": \"x\"}}", "name \"a b\" is not valid");
    assert_config_error("{\"a\": {\"command\": \"x\"}, \"a\": {\"command\": \"y\"}}", "duplicate");
}

/* A jailed server's host uid depends on its account as well as its config: two accounts with
 * one config got the same uid (and shared RLIMIT_NPROC: one could exhaust the other's process
 * limit). The same account and config keep theirs; every uid stays in the configured range. */
static void test_jail_uid_per_account(void **state)
{
    (void)state;
    mcp_jail_config jc = {.uid_base = 300000, .uid_count = 65536};
    const char *hash = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    const char *a = "11111111-1111-4111-8111-111111111111";
    const char *b = "22222222-2222-4222-8222-222222222222";
    uid_t ua = mcp_user_stdio_uid(&jc, a, hash);
    assert_int_equal(ua, mcp_user_stdio_uid(&jc, a, hash));
    assert_int_not_equal(ua, mcp_user_stdio_uid(&jc, b, hash));
    int differ = 0;
    char acc[40];
    for (int i = 0; i < 100; i++) { /* 100 accounts, one config: nearly all apart */
        snprintf(acc, sizeof acc, "%08d-0000-4000-8000-000000000000", i);
        uid_t u = mcp_user_stdio_uid(&jc, acc, hash);
        assert_in_range(u, 300000, 300000 + 65535);
        differ += u != ua;
    }
    assert_true(differ >= 98);
    jc.uid_count = 1; /* one uid: everyone's */
    assert_int_equal(mcp_user_stdio_uid(&jc, b, hash), 300000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_ids_and_wire_form),
        cmocka_unit_test(test_responses_match_requests),
        cmocka_unit_test(test_malformed_messages),
        cmocka_unit_test(test_nul_escapes),
        cmocka_unit_test(test_peer_requests_and_notifications),
        cmocka_unit_test(test_cancel_fail_all_and_send_failure),
        cmocka_unit_test(test_linebuf_splits_any_pieces),
        cmocka_unit_test(test_linebuf_cap),
        cmocka_unit_test(test_log_budget),
        cmocka_unit_test(test_config_valid),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_jail_uid_per_account),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
