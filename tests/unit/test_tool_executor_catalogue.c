/* test_tool_executor_catalogue.c — the catalogue's selection (services/tool-executor/registry.c):
 * the web tools are offered only with their API keys, an agent's agentpress_tools decides which
 * groups it has (always-on tools always), and see_image's image type by magic bytes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "registry.h"

static bool has(const json_t *tools, const char *name)
{
    size_t i;
    const json_t *t;
    json_array_foreach(tools, i, t)
    {
        if (strcmp(json_string_value(json_object_get(json_object_get(t, "function"), "name")),
                   name) == 0)
            return true;
    }
    return false;
}

static void test_web_tools_need_keys(void **state)
{
    (void)state;
    assert_int_equal(unsetenv("TAVILY_API_KEY"), 0);
    assert_int_equal(unsetenv("FIRECRAWL_API_KEY"), 0);
    te_web_config_load();
    assert_int_equal(te_registry_init(), KX_OK);
    json_t *all = te_registry_schemas(NULL);
    assert_false(has(all, "web_search"));
    assert_false(has(all, "scrape_webpage"));
    assert_true(has(all, "expose_port"));
    assert_true(has(all, "see_image"));
    assert_true(has(all, "execute_command"));
    json_decref(all);
    assert_false(te_tool_offered(te_registry_find("web_search")));

    assert_int_equal(setenv("TAVILY_API_KEY", "k", 1), 0);
    te_web_config_load();
    all = te_registry_schemas(NULL);
    assert_true(has(all, "web_search"));
    assert_false(has(all, "scrape_webpage")); /* each tool its own key */
    json_decref(all);
    assert_int_equal(setenv("FIRECRAWL_API_KEY", "", 1), 0); /* empty is not set */
    te_web_config_load();
    assert_false(te_tool_offered(te_registry_find("scrape_webpage")));
    assert_int_equal(setenv("FIRECRAWL_API_KEY", "k", 1), 0);
    te_web_config_load();
    assert_true(te_tool_offered(te_registry_find("scrape_webpage")));
    te_registry_free();
}

static void test_agent_has(void **state)
{
    (void)state;
    assert_int_equal(setenv("TAVILY_API_KEY", "k", 1), 0);
    te_web_config_load();
    assert_int_equal(te_registry_init(), KX_OK);
    json_t *cfg = json_loads("{\"sb_shell_tool\": true, \"web_search_tool\": {\"enabled\": "
                             "false}, \"sb_vision_tool\": {\"enabled\": true}}",
                             0, NULL);
    assert_true(te_registry_agent_has(te_registry_find("execute_command"), cfg));
    assert_false(te_registry_agent_has(te_registry_find("web_search"), cfg));
    assert_true(te_registry_agent_has(te_registry_find("see_image"), cfg));
    assert_false(te_registry_agent_has(te_registry_find("expose_port"), cfg));
    assert_true(te_registry_agent_has(te_registry_find("ask"), cfg)); /* always on */
    json_t *empty = json_object();
    assert_true(te_registry_agent_has(te_registry_find("expose_port"), empty)); /* all */
    assert_true(te_registry_agent_has(te_registry_find("web_search"), NULL));
    assert_int_equal(unsetenv("TAVILY_API_KEY"), 0);
    te_web_config_load();
    assert_false(te_registry_agent_has(te_registry_find("web_search"), NULL)); /* not offered */
    json_t *sel = te_registry_schemas(cfg);
    assert_true(has(sel, "see_image"));
    assert_false(has(sel, "expose_port"));
    json_decref(sel);
    json_decref(empty);
    json_decref(cfg);
    te_registry_free();
}

static void test_image_mime(void **state)
{
    (void)state;
    const unsigned char png[] = "\x89PNG\r\n\x1a\n\0\0";
    const unsigned char jpg[] = "\xff\xd8\xff\xdb";
    const unsigned char gif7[] = "GIF87a..";
    const unsigned char gif9[] = "GIF89a..";
    const unsigned char webp[] = "RIFF\0\0\0\0WEBPVP8L";
    const unsigned char riff[] = "RIFF\0\0\0\0WAVEfmt ";
    assert_string_equal(te_image_mime(png, 10), "image/png");
    assert_null(te_image_mime(png, 7)); /* too short to tell */
    assert_string_equal(te_image_mime(jpg, 4), "image/jpeg");
    assert_string_equal(te_image_mime(gif7, 8), "image/gif");
    assert_string_equal(te_image_mime(gif9, 8), "image/gif");
    assert_string_equal(te_image_mime(webp, 16), "image/webp");
    assert_null(te_image_mime(riff, 16)); /* RIFF but not WebP */
    assert_null(te_image_mime((const unsigned char *)"hello world", 11));
    assert_null(te_image_mime((const unsigned char *)"", 0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_web_tools_need_keys),
        cmocka_unit_test(test_agent_has),
        cmocka_unit_test(test_image_mime),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
