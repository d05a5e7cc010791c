/* test_runner_agent_config.c — the run's agent configuration (services/agent-runner/
 * agent_config.c): both stored shapes of a version's config, bad configs named, the default,
 * tool families on and off, the date/time variables of the prompt; and the project-naming
 * title cleaner (project_name.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "agent_config.h"
#include "project_name.h"

static json_t *schemas(void)
{
    return json_loads("[{\"type\":\"function\",\"function\":{\"name\":\"execute_command\"}},"
                      "{\"type\":\"function\",\"function\":{\"name\":\"create_file\"}},"
                      "{\"type\":\"function\",\"function\":{\"name\":\"ask\"}},"
                      "{\"type\":\"function\",\"function\":{\"name\":\"browser_click_element\"}},"
                      "{\"type\":\"function\",\"function\":{\"name\":\"mcp_srv_tool\"}}]",
                      0, NULL);
}

static void test_versioned_shape(void **state)
{
    (void)state;
    agent_config c;
    char why[200] = "";
    assert_int_equal(
        agent_config_parse("a1", "v1",
                           "{\"system_prompt\": \"Hi\", \"tools\": {\"agentpress\": "
                           "{\"sb_shell_tool\": {\"enabled\": true}, \"sb_files_tool\": "
                           "{\"enabled\": false}}, \"mcp\": [{\"name\": \"x\"}], "
                           "\"custom_mcp\": []}, \"tool_execution_strategy\": \"sequential\", "
                           "\"max_xml_tool_calls\": 3, \"model\": \"gpt-4o\"}",
                           "{}", &c, why, sizeof why),
        KX_OK);
    assert_true(c.found);
    assert_string_equal(c.system_prompt, "Hi");
    assert_string_equal(c.model, "gpt-4o");
    assert_int_equal(c.strategy, AGENT_STRATEGY_SEQUENTIAL);
    assert_true(c.strategy_set);
    assert_int_equal(c.max_xml_tool_calls, 3);
    assert_int_equal(json_array_size(c.configured_mcps), 1);
    assert_true(agent_config_tool_enabled(&c, "execute_command"));
    assert_false(agent_config_tool_enabled(&c, "create_file"));
    assert_false(agent_config_tool_enabled(&c, "browser_click_element"));
    assert_true(agent_config_tool_enabled(&c, "ask"));            /* always on */
    assert_true(agent_config_tool_enabled(&c, "expand_message")); /* always on */
    assert_true(agent_config_tool_enabled(&c, "mcp_srv_tool"));   /* the agent's own MCP */
    json_t *all = schemas();
    json_t *mine = agent_config_filter_tools(&c, all);
    assert_int_equal(json_array_size(mine), 3); /* execute_command, ask, mcp_srv_tool */
    json_decref(mine);
    json_decref(all);
    agent_config_clear(&c);
}

static void test_flat_shape_and_booleans(void **state)
{
    (void)state;
    agent_config c;
    char why[200] = "";
    assert_int_equal(agent_config_parse("a1", "v1",
                                        "{\"system_prompt\": \"\", \"tools\": {}, "
                                        "\"agentpress_tools\": {\"sb_files_tool\": true}, "
                                        "\"custom_mcps\": [{\"name\": \"c\"}]}",
                                        "{\"tool_execution_strategy\": \"parallel\"}", &c, why,
                                        sizeof why),
                     KX_OK);
    assert_null(c.system_prompt); /* empty: the default prompt */
    assert_true(agent_config_tool_enabled(&c, "create_file"));
    assert_false(agent_config_tool_enabled(&c, "execute_command"));
    assert_int_equal(json_array_size(c.custom_mcps), 1);
    assert_int_equal(c.strategy, AGENT_STRATEGY_PARALLEL);
    agent_config_clear(&c);
}

static void test_suna_default_and_no_agent(void **state)
{
    (void)state;
    agent_config c;
    char why[200] = "";
    assert_int_equal(agent_config_parse("a", "v", "{\"system_prompt\": \"x\", \"tools\": {}}",
                                        "{\"is_suna_default\": true}", &c, why, sizeof why),
                     KX_OK);
    assert_true(agent_config_tool_enabled(&c, "create_file")); /* register_all_tools */
    agent_config_clear(&c);
    agent_config_default(&c);
    assert_false(c.found);
    assert_true(agent_config_tool_enabled(&c, "deploy"));
    agent_config_clear(&c);
}

static void test_bad_configs_are_named(void **state)
{
    (void)state;
    static const struct {
        const char *config, *want;
    } cases[] = {
        {"not json", "not a JSON object"},
        {"[1]", "not a JSON object"},
        {"{\"system_prompt\": 5, \"tools\": {}}", "system_prompt is not a string"},
        {"{\"system_prompt\": \"\", \"tools\": {}, \"agentpress_tools\": \"all\"}",
         "agentpress_tools is not an object"},
        {"{\"system_prompt\": \"\", \"tools\": {\"mcp\": {}}}", "configured_mcps is not an array"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        agent_config c;
        char why[200] = "";
        assert_int_equal(agent_config_parse("a", "v", cases[i].config, NULL, &c, why, sizeof why),
                         KX_ERR_INVALID);
        if (strstr(why, cases[i].want) == NULL)
            fail_msg("%s: \"%s\" does not say \"%s\"", cases[i].config, why, cases[i].want);
        agent_config_clear(&c);
    }
}

static void test_render(void **state)
{
    (void)state;
    time_t t = 1796073907; /* 2026-11-30 21:25:07 UTC, a Monday */
    char *s = agent_config_render("Today {{current_date}} {{current_time}} ({{current_weekday}}, "
                                  "{{timezone}}); {{current_datetime}}; {{current_year}}-"
                                  "{{current_month}}-{{current_day}}; {{unknown}} {{",
                                  t);
    assert_string_equal(s,
                        "Today 2026-11-30 21:25:07 (Monday, UTC); 2026-11-30 21:25:07 UTC; "
                        "2026-11-30; {{unknown}} {{");
    free(s);
}

static void test_terminating(void **state)
{
    (void)state;
    assert_true(agent_config_is_terminating("ask"));
    assert_true(agent_config_is_terminating("complete"));
    assert_false(agent_config_is_terminating("web_browser_takeover"));
    assert_false(agent_config_is_terminating("asked"));
}

static void test_title_cleaner(void **state)
{
    (void)state;
    char out[PROJECT_NAME_MAX + 1];
    assert_true(project_name_clean("  \"Colour Survey\".  \nmore", out, sizeof out));
    assert_string_equal(out, "Colour Survey");
    assert_true(project_name_clean("**Deploy Notes**", out, sizeof out));
    assert_string_equal(out, "Deploy Notes");
    assert_false(project_name_clean(" \"\" \n", out, sizeof out));
    char longer[300];
    memset(longer, 'a', sizeof longer - 1);
    longer[sizeof longer - 1] = '\0';
    assert_true(project_name_clean(longer, out, sizeof out));
    assert_int_equal(strlen(out), PROJECT_NAME_MAX);
    /* a cut never splits a UTF-8 character */
    char utf[101];
    for (int i = 0; i < 50; i++)
        memcpy(utf + 2 * i, "\xc3\xa9", 2);
    utf[100] = '\0';
    assert_true(project_name_clean(utf, out, sizeof out));
    assert_int_equal(strlen(out) % 2, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_versioned_shape),
        cmocka_unit_test(test_flat_shape_and_booleans),
        cmocka_unit_test(test_suna_default_and_no_agent),
        cmocka_unit_test(test_bad_configs_are_named),
        cmocka_unit_test(test_render),
        cmocka_unit_test(test_terminating),
        cmocka_unit_test(test_title_cleaner),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
