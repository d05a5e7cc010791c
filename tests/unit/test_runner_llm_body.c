/* test_runner_llm_body.c — the OpenAI request body splices the tool schemas in from the text
 * the run printed once (llm_opts.tools_text) instead of printing them every turn; the body must
 * be byte for byte what printing the whole tree with kx_json_dumps_compact gave (the reference
 * below is that earlier implementation), with and without the text, with and without tools,
 * max_tokens and stream_options, on the harness's sample run (sample_run.h: UTF-8, control
 * characters, a tool call, a real). The body is now written straight into one buffer (no tree); the
 * reference stays the tree print. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kx/json.h"
#include "llm_provider.h"
#include "sample_run.h"

static char *ref_body(const llm_route *rt, const char *system, const json_t *tools,
                      const json_t *messages, int64_t max_tokens)
{
    json_t *root = kx_th_ref_body_head(rt->model, system, messages);
    if (json_array_size(tools) > 0) {
        json_object_set(root, "tools", (json_t *)tools);
        json_object_set_new(root, "tool_choice", json_string("auto"));
    }
    if (max_tokens > 0)
        json_object_set_new(root, "max_tokens", json_integer(max_tokens));
    if (strcmp(rt->provider, "demo") != 0)
        json_object_set_new(root, "stream_options", json_pack("{s:b}", "include_usage", 1));
    char *out = kx_json_dumps_compact(root);
    json_decref(root);
    return out;
}

static void test_body_matches_the_tree_print(void **state)
{
    (void)state;
    json_t *tools = kx_th_sample_tools();
    json_t *none = json_array();
    char *tools_text = kx_json_dumps_compact(tools);
    char *none_text = kx_json_dumps_compact(none);
    json_t *messages = kx_th_sample_messages();
    const char *providers[] = {"demo", "openai"};
    const int64_t caps[] = {0, 4096};
    for (int p = 0; p < 2; p++)
        for (int c = 0; c < 2; c++)
            for (int t = 0; t < 3; t++) {
                llm_route rt;
                memset(&rt, 0, sizeof rt);
                rt.provider = providers[p];
                snprintf(rt.model, sizeof rt.model, "%s", "kortix/basic \"m\"");
                const json_t *tl = t == 2 ? none : tools;
                const char *text = t == 0 ? tools_text : t == 1 ? NULL : none_text;
                char *want = ref_body(&rt, "You are \xc3\xa9 helpful.\n", tl, messages, caps[c]);
                char *got = llm_openai_provider.body(NULL, &rt, "You are \xc3\xa9 helpful.\n", tl,
                                                     text, messages, caps[c]);
                assert_non_null(want);
                assert_non_null(got);
                assert_string_equal(got, want);
                free(want);
                free(got);
            }
    free(tools_text);
    free(none_text);
    json_decref(tools);
    json_decref(none);
    json_decref(messages);
}

/* What the earlier implementation refused (a system prompt or model name that is not UTF-8:
 * json_string gave NULL and it returned NULL; ref_body skips such checks) the direct write
 * refuses too; no messages is an empty list after the system one. */
static void test_body_refuses_what_the_tree_refused(void **state)
{
    (void)state;
    json_t *messages = kx_th_sample_messages();
    json_t *none = json_array();
    llm_route rt;
    memset(&rt, 0, sizeof rt);
    rt.provider = "demo";
    snprintf(rt.model, sizeof rt.model, "%s", "m");
    assert_null(llm_openai_provider.body(NULL, &rt, "bad \xff", none, NULL, messages, 0));
    snprintf(rt.model, sizeof rt.model, "%s", "m\xc3");
    assert_null(llm_openai_provider.body(NULL, &rt, "s", none, NULL, messages, 0));
    snprintf(rt.model, sizeof rt.model, "%s", "m");
    char *want = ref_body(&rt, "s", none, none, 0);
    char *got = llm_openai_provider.body(NULL, &rt, "s", none, NULL, none, 0);
    assert_non_null(got);
    assert_string_equal(got, want);
    assert_string_equal(got,
                        "{\"model\":\"m\",\"messages\":[{\"role\":\"system\",\"content\":\"s\"}],"
                        "\"stream\":true,\"temperature\":0}");
    free(want);
    free(got);
    json_decref(none);
    json_decref(messages);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_body_matches_the_tree_print),
        cmocka_unit_test(test_body_refuses_what_the_tree_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
