/* test_mcp_agent.c — the mcp-proxy's pure parts for agents' servers: Kortix's config shapes
 * (custom_mcps / configured_mcps), model-visible names and their de-duplication, the
 * tools/call result mapping within a byte budget, the loopback guard's address check,
 * KX_MCP_SERVERS with http/sse servers, config hashes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "agent_config.h"
#include "http_transport.h"
#include "kx/time.h"
#include "mcp_config.h"
#include "result_map.h"
#include "session.h"

static int parse(const char *text, bool custom, mcp_agent_server *out, char *why)
{
    json_t *j = json_loads(text, 0, NULL);
    assert_non_null(j);
    int rc = mcp_agent_server_parse(j, custom, out, why, 512);
    json_decref(j);
    return rc;
}

static void test_custom_shapes(void **state)
{
    (void)state;
    mcp_agent_server s;
    char why[512];
    assert_int_equal(parse("{\"name\": \"My Srv\", \"type\": \"json\", \"config\": {\"command\": "
                           "\"npx\", \"args\": [\"-y\", \"pkg\"], \"env\": {\"K\": \"v\"}}, "
                           "\"enabledTools\": [\"a\"]}",
                           true, &s, why),
                     0);
    assert_string_equal(s.cfg.name, "custom_json_my_srv");
    assert_int_equal(s.cfg.kind, MCP_T_STDIO);
    assert_true(s.cfg.user);
    assert_string_equal(s.cfg.argv[0], "npx");
    assert_string_equal(s.cfg.argv[2], "pkg");
    assert_string_equal(s.cfg.env[0], "K=v");
    assert_true(mcp_agent_tool_enabled(&s, "a"));
    assert_false(mcp_agent_tool_enabled(&s, "b"));
    char hash1[sizeof s.cfg.hash];
    memcpy(hash1, s.cfg.hash, sizeof hash1);
    mcp_agent_server_free(&s);

    /* Same command, other env: another session (hash). */
    assert_int_equal(parse("{\"name\": \"My Srv\", \"type\": \"json\", \"config\": {\"command\": "
                           "\"npx\", \"args\": [\"-y\", \"pkg\"], \"env\": {\"K\": \"w\"}}}",
                           true, &s, why),
                     0);
    assert_string_not_equal(s.cfg.hash, hash1);
    assert_true(mcp_agent_tool_enabled(&s, "anything")); /* custom: empty = all */
    mcp_agent_server_free(&s);

    assert_int_equal(parse("{\"name\": \"web\", \"customType\": \"sse\", \"config\": {\"url\": "
                           "\"https://x.example/sse\", \"headers\": {\"Authorization\": "
                           "\"Bearer t\"}}}",
                           true, &s, why),
                     0);
    assert_string_equal(s.cfg.name, "custom_sse_web");
    assert_int_equal(s.cfg.kind, MCP_T_SSE);
    assert_string_equal(s.cfg.headers[0], "Authorization: Bearer t");
    mcp_agent_server_free(&s);

    /* configured_mcps: Streamable HTTP, qualifiedName, empty enabledTools = none. */
    assert_int_equal(parse("{\"name\": \"Exa\", \"qualifiedName\": \"exa\", \"config\": "
                           "{\"url\": \"https://exa.example/mcp\"}, \"enabledTools\": []}",
                           false, &s, why),
                     0);
    assert_string_equal(s.cfg.name, "exa");
    assert_int_equal(s.cfg.kind, MCP_T_HTTP);
    assert_false(mcp_agent_tool_enabled(&s, "search"));
    mcp_agent_server_free(&s);
}

static void assert_refused(const char *text, bool custom, const char *want)
{
    mcp_agent_server s;
    char why[512];
    assert_int_equal(parse(text, custom, &s, why), -1);
    if (strstr(why, want) == NULL)
        fail_msg("want \"%s\" in \"%s\"", want, why);
}

static void test_bad_entries_say_what_is_wrong(void **state)
{
    (void)state;
    assert_refused("{\"type\": \"json\", \"config\": {}}", true, "needs \"name\"");
    assert_refused("{\"name\": \"a\", \"config\": {\"command\": \"x\"}}", true, "needs \"type\"");
    assert_refused("{\"name\": \"a\", \"type\": \"pipedream\", \"config\": {}}", true,
                   "pipedream");
    assert_refused("{\"name\": \"a\", \"type\": \"ftp\", \"config\": {}}", true,
                   "unknown type \"ftp\"");
    assert_refused("{\"name\": \"a\", \"type\": \"http\", \"config\": {\"url\": \"file:///etc/"
                   "passwd\"}}",
                   true, "http:// or https://");
    assert_refused("{\"name\": \"a\", \"type\": \"http\", \"config\": {\"url\": \"http://x/\", "
                   "\"headers\": {\"X\": \"a\\r\\nInjected: 1\"}}}",
                   true, "line breaks");
    assert_refused("{\"name\": \"a\", \"type\": \"json\", \"config\": {\"command\": \"x\"}, "
                   "\"enabledTools\": [1]}",
                   true, "enabledTools[0]");
    assert_refused("{\"name\": \"a\", \"type\": \"json\"}", true, "needs \"config\"");
}

static void test_model_names_as_kortix(void **state)
{
    (void)state;
    char n[MCP_MODEL_NAME_MAX + 1];
    mcp_model_name("everything", "get-sum", true, n, sizeof n);
    assert_string_equal(n, "get_sum"); /* one-word server: the tool's name */
    mcp_model_name("My Srv", "search", true, n, sizeof n);
    assert_string_equal(n, "srv_search"); /* Kortix's leak of "Srv" */
    mcp_model_name("exa", "web_search", false, n, sizeof n);
    assert_string_equal(n, "web_search");
    mcp_model_name("x", "we!rd name.tool", true, n, sizeof n);
    assert_string_equal(n, "we_rd_name_tool");
    char longname[200];
    memset(longname, 'a', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    mcp_model_name("x", longname, true, n, sizeof n);
    assert_int_equal(strlen(n), MCP_MODEL_NAME_MAX);

    json_t *taken = json_object();
    json_object_set_new(taken, "echo", json_true());
    assert_int_equal(mcp_names_claim(taken, "echo", n, sizeof n), 0);
    assert_string_equal(n, "echo_2");
    assert_int_equal(mcp_names_claim(taken, "echo", n, sizeof n), 0);
    assert_string_equal(n, "echo_3");
    assert_int_equal(mcp_names_claim(taken, "other", n, sizeof n), 0);
    assert_string_equal(n, "other");
    /* A 64-character name keeps its length when made unique. */
    char base[MCP_MODEL_NAME_MAX + 1];
    memset(base, 'b', MCP_MODEL_NAME_MAX);
    base[MCP_MODEL_NAME_MAX] = '\0';
    assert_int_equal(mcp_names_claim(taken, base, n, sizeof n), 0);
    assert_int_equal(mcp_names_claim(taken, base, n, sizeof n), 0);
    assert_int_equal(strlen(n), MCP_MODEL_NAME_MAX);
    assert_string_equal(n + MCP_MODEL_NAME_MAX - 2, "_2");
    json_decref(taken);
}

/* A server may list thousands of tools of one name. Each claim used to try _2, _3, ... from the
 * start: 10 000 of them took seconds of the proxy's only loop (every other run's calls
 * waited). The names stay the same: the lowest free suffix in order, reserved ones skipped. */
static void test_many_tools_of_one_name(void **state)
{
    (void)state;
    char n[MCP_MODEL_NAME_MAX + 1];
    json_t *taken = json_object();
    json_object_set_new(taken, "x_3", json_true()); /* reserved */
    int64_t t0 = kx_mono_ms();
    for (int i = 0; i < 10000; i++) {
        assert_int_equal(mcp_names_claim(taken, "x", n, sizeof n), 0);
        if (i == 0)
            assert_string_equal(n, "x");
        else if (i == 1)
            assert_string_equal(n, "x_2");
        else if (i == 2)
            assert_string_equal(n, "x_4");
    }
    int64_t took = kx_mono_ms() - t0;
    assert_string_equal(n, "x_10001");
    assert_int_equal(json_object_size(taken), 10001);
    /* A base that is itself a suffixed name gets its own suffix. */
    assert_int_equal(mcp_names_claim(taken, "x_2", n, sizeof n), 0);
    assert_string_equal(n, "x_2_2");
    json_decref(taken);
    if (took > 1000)
        fail_msg("10000 claims of one name took %lld ms", (long long)took);
}

/* The config hash keys the tool-list cache that every account shares. With FNV-1a-64 these two
 * entries, which differ in one env value, hashed alike (found in two minutes on one core), so
 * one's tool list was served for the other's. */
static void test_config_hash_is_not_forgeable(void **state)
{
    (void)state;
    const char *fmt = "{\"name\": \"envdesc\", \"type\": \"json\", \"config\": {\"command\": "
                      "\"node\", \"args\": [\"/fakes/misbehave.js\", \"env-desc\"], \"env\": "
                      "{\"K\": \"%s\"}}}";
    const char *values[] = {"f1ad8aaaaee3b361", "42418c43b7565663"};
    char hashes[2][sizeof((mcp_server_config *)0)->hash];
    for (int i = 0; i < 2; i++) {
        char text[400], why[512];
        snprintf(text, sizeof text, fmt, values[i]);
        mcp_agent_server s;
        assert_int_equal(parse(text, true, &s, why), 0);
        snprintf(hashes[i], sizeof hashes[i], "%s", s.cfg.hash);
        mcp_agent_server_free(&s);
    }
    if (strcmp(hashes[0], hashes[1]) == 0)
        fail_msg("K=%s and K=%s: the same config hash %s", values[0], values[1], hashes[0]);
}

static void test_result_mapping(void **state)
{
    (void)state;
    json_t *r = json_loads("{\"content\": [{\"type\": \"text\", \"text\": \"a\"}, {\"type\": "
                           "\"image\", \"data\": \"AAAA\", \"mimeType\": \"image/png\"}, "
                           "{\"type\": \"mystery\"}], \"isError\": true, "
                           "\"structuredContent\": {\"k\": 1}}",
                           0, NULL);
    mcp_mapped m;
    assert_int_equal(mcp_result_map(r, 1 << 20, &m), 0);
    assert_string_equal(m.text, "a\n[image: image/png, 4 bytes base64]\n[mystery content]");
    assert_true(m.is_error);
    assert_false(m.truncated);
    assert_string_equal(m.structured_json, "{\"k\":1}");
    mcp_mapped_free(&m);
    json_decref(r);

    /* Only structured content: the text is its JSON. */
    r = json_loads("{\"content\": [], \"structuredContent\": {\"t\": 2}}", 0, NULL);
    assert_int_equal(mcp_result_map(r, 1 << 20, &m), 0);
    assert_string_equal(m.text, "{\"t\":2}");
    mcp_mapped_free(&m);
    json_decref(r);

    /* Over budget: the text is cut on a UTF-8 boundary with a note; big data elided. */
    size_t n = 100000;
    char *big = malloc(n + 1);
    for (size_t i = 0; i < n; i += 2) {
        big[i] = (char)0xC3; /* "é" */
        big[i + 1] = (char)0xA9;
    }
    big[n] = '\0';
    char *data = malloc(50001);
    memset(data, 'A', 50000);
    data[50000] = '\0';
    r = json_pack("{s:[{s:s, s:s}, {s:s, s:s, s:s}]}", "content", "type", "text", "text", big,
                  "type", "image", "data", data, "mimeType", "image/png");
    assert_int_equal(mcp_result_map(r, 40000, &m), 0);
    assert_true(m.truncated);
    assert_true(strlen(m.text) <= 20000);
    assert_non_null(strstr(m.text, "[truncated by mcp-proxy:"));
    json_t *check = json_string(m.text); /* still valid UTF-8 */
    assert_non_null(check);
    json_decref(check);
    assert_true(strlen(m.content_json) <= 10000);
    mcp_mapped_free(&m);
    json_decref(r);
    free(big);
    free(data);

    /* The budget holds for the text written as a JSON string (output_json): quotes take two
     * bytes there, other control characters six. */
    const char fills[] = {'"', '\x01', '\n'};
    for (size_t f = 0; f < sizeof fills; f++) {
        big = malloc(n + 1);
        memset(big, fills[f], n);
        big[n] = '\0';
        r = json_pack("{s:[{s:s, s:s}]}", "content", "type", "text", "text", big);
        assert_int_equal(mcp_result_map(r, 40000, &m), 0);
        assert_true(m.truncated);
        json_t *str = json_string(m.text);
        char *dumped = json_dumps(str, JSON_ENCODE_ANY);
        if (strlen(dumped) > 20000)
            fail_msg("text of 0x%02x: %zu bytes as JSON, budget 20000", fills[f], strlen(dumped));
        assert_true(strlen(m.text) > 2000);
        assert_non_null(strstr(m.text, "[truncated by mcp-proxy:"));
        free(dumped);
        json_decref(str);
        mcp_mapped_free(&m);
        json_decref(r);
        free(big);
    }

    assert_int_equal(mcp_result_map(NULL, 1000, &m), -1);
    assert_true(m.is_error);
    mcp_mapped_free(&m);
}

static void test_address_guard(void **state)
{
    (void)state;
    assert_false(mcp_http_address_allowed("127.0.0.1", 4222, ""));
    assert_false(mcp_http_address_allowed("127.1.2.3", 80, NULL));
    assert_false(mcp_http_address_allowed("0.0.0.0", 80, ""));
    assert_false(mcp_http_address_allowed("169.254.169.254", 80, ""));
    assert_false(mcp_http_address_allowed("::1", 80, ""));
    assert_false(mcp_http_address_allowed("::", 80, ""));
    assert_false(mcp_http_address_allowed("::ffff:127.0.0.1", 80, ""));
    assert_false(mcp_http_address_allowed("fe80::1", 80, ""));
    assert_false(mcp_http_address_allowed("not an ip", 80, ""));
    assert_true(mcp_http_address_allowed("93.184.216.34", 443, ""));
    assert_true(mcp_http_address_allowed("2606:2800::1", 443, ""));
    assert_true(mcp_http_address_allowed("127.0.0.1", 3001, "3000, 3001"));
    assert_false(mcp_http_address_allowed("127.0.0.1", 300, "3000,3001"));
}

static void test_operator_http_servers_and_versions(void **state)
{
    (void)state;
    mcp_config c;
    char why[512];
    assert_int_equal(mcp_config_parse("{\"h\": {\"type\": \"http\", \"url\": "
                                      "\"http://127.0.0.1:1/mcp\", \"headers\": {\"A\": \"b\"}},"
                                      " \"s\": {\"type\": \"sse\", \"url\": \"https://x/sse\"}}",
                                      &c, why, sizeof why),
                     0);
    assert_int_equal(c.n, 2);
    assert_int_equal(c.servers[0].kind, MCP_T_HTTP);
    assert_string_equal(c.servers[0].headers[0], "A: b");
    assert_false(c.servers[0].user);
    assert_int_equal(c.servers[1].kind, MCP_T_SSE);
    assert_string_not_equal(c.servers[0].hash, c.servers[1].hash);
    mcp_config_free(&c);
    assert_int_equal(mcp_config_parse("{\"h\": {\"type\": \"http\", \"command\": \"x\"}}", &c, why,
                                      sizeof why),
                     -1);
    assert_non_null(strstr(why, "unknown key \"command\""));
    assert_int_equal(mcp_config_parse("{\"h\": {\"type\": \"ws\"}}", &c, why, sizeof why), -1);
    assert_non_null(strstr(why, "\"type\" must be"));

    assert_true(mcp_protocol_supported("2025-11-25"));
    assert_true(mcp_protocol_supported("2025-06-18"));
    assert_true(mcp_protocol_supported("2024-11-05"));
    assert_false(mcp_protocol_supported("2026-07-28"));
    assert_false(mcp_protocol_supported(NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_custom_shapes),
        cmocka_unit_test(test_bad_entries_say_what_is_wrong),
        cmocka_unit_test(test_model_names_as_kortix),
        cmocka_unit_test(test_many_tools_of_one_name),
        cmocka_unit_test(test_config_hash_is_not_forgeable),
        cmocka_unit_test(test_result_mapping),
        cmocka_unit_test(test_address_guard),
        cmocka_unit_test(test_operator_http_servers_and_versions),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
