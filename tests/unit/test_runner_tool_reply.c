/* test_runner_tool_reply.c — how the agent-runner reads the tool-executor's answer
 * (tools_outcome_from_reply in services/agent-runner/tools.c): results, refusals in the
 * Kx-Error header, and text that is not UTF-8 or was cut inside a character. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <nats/nats.h>
#include <stdlib.h>
#include <string.h>

#include "kx/bus.h"
#include "kx/pb.h"
#include "kx/utf8.h"
#include "tools.h"

static natsMsg *reply_of(const Kx__V1__ToolResult *r, const char *error_header)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    if (r != NULL)
        assert_int_equal(kx_pb_pack(&r->base, &buf, &len), KX_OK);
    natsMsg *m = NULL;
    assert_int_equal(natsMsg_Create(&m, "_INBOX.t", NULL, (const char *)buf, (int)len), NATS_OK);
    if (error_header != NULL)
        assert_int_equal(natsMsgHeader_Set(m, KX_HDR_ERROR, error_header), NATS_OK);
    free(buf);
    return m;
}

static void assert_printable(const tool_outcome *o)
{
    assert_non_null(o->output);
    char *s = json_dumps(o->output, JSON_ENCODE_ANY);
    assert_non_null(s);
    free(s);
    if (o->error != NULL)
        assert_true(kx_utf8_valid(o->error, strlen(o->error)));
}

static void test_result(void **state)
{
    Kx__V1__ToolResult r = KX__V1__TOOL_RESULT__INIT;
    r.call_id = "c1";
    r.success = true;
    r.output_json = "{\"output\": \"ok\"}";
    natsMsg *m = reply_of(&r, NULL);
    tool_outcome o;
    tools_outcome_from_reply(KX_OK, m, &o);
    assert_true(o.success);
    assert_string_equal(json_string_value(json_object_get(o.output, "output")), "ok");
    tool_outcome_clear(&o);
    natsMsg_Destroy(m);
}

/* A refusal whose text was cut at the 600-byte buffer inside a two-byte character: the outcome
 * had no output (json_string refused the text) and the run could not record the tool result.
 * Found by tests/fuzz/runner_tool_reply. */
static void test_long_refusal_cut_in_a_character(void **state)
{
    char hdr[1000];
    for (int i = 0; i < 400; i++)
        memcpy(hdr + 2 * i, "\xc3\xa9", 3); /* é, and the NUL after it */
    natsMsg *m = reply_of(NULL, hdr);
    tool_outcome o;
    tools_outcome_from_reply(KX_OK, m, &o);
    assert_false(o.success);
    assert_non_null(strstr(o.error, "refused the call"));
    assert_printable(&o);
    tool_outcome_clear(&o);
    natsMsg_Destroy(m);
}

/* An error message and an output that are not UTF-8 (bytes over the bus): kept, repaired. */
static void test_not_utf8_over_the_bus(void **state)
{
    Kx__V1__ToolResult r = KX__V1__TOOL_RESULT__INIT;
    Kx__V1__Error e = KX__V1__ERROR__INIT;
    e.message = "bad \xff byte";
    r.success = false;
    r.error = &e;
    natsMsg *m = reply_of(&r, NULL);
    tool_outcome o;
    tools_outcome_from_reply(KX_OK, m, &o);
    assert_false(o.success);
    assert_string_equal(o.error, "bad ? byte");
    assert_printable(&o);
    tool_outcome_clear(&o);
    natsMsg_Destroy(m);

    Kx__V1__ToolResult ok = KX__V1__TOOL_RESULT__INIT;
    ok.success = true;
    ok.output_json = "plain \xfe text";
    m = reply_of(&ok, NULL);
    tools_outcome_from_reply(KX_OK, m, &o);
    assert_true(o.success);
    assert_string_equal(json_string_value(o.output), "plain ? text");
    tool_outcome_clear(&o);
    natsMsg_Destroy(m);
}

/* The deadline a tool call carries is what is left of the run (bounded by the longest tool
 * timeout), not KX_TOOL_TIMEOUT_S + 5 s: the executor's class timeouts (180 s for sandbox
 * tools) and a tool's own `timeout` must be reachable. */
static void test_call_deadline_is_the_run(void **state)
{
    (void)state;
    int64_t now = 1700000000000LL;
    /* two hours left: the bound is the longest timeout a tool accepts, plus the reply grace */
    kx_deadline d = tools_call_deadline(now, now + 7200 * 1000);
    assert_true(d >= now + (int64_t)TOOLS_CALL_MAX_S * 1000);
    assert_true(d > now + 180 * 1000); /* the sandbox class is reachable */
    /* 30 s left: the run's end */
    assert_int_equal(tools_call_deadline(now, now + 30000), now + 30000);
    /* no wall deadline: still bounded */
    d = tools_call_deadline(now, KX_NO_DEADLINE);
    assert_true(d > now + 3600 * 1000 && d < now + 3700 * 1000);
}

int main(void)
{
    assert_int_equal(nats_Open(-1), NATS_OK);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_result),
        cmocka_unit_test(test_long_refusal_cut_in_a_character),
        cmocka_unit_test(test_not_utf8_over_the_bus),
        cmocka_unit_test(test_call_deadline_is_the_run),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    nats_Close();
    return rc;
}
