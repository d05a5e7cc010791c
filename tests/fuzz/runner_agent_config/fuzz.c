/* fuzz.c — the agent configuration the runner reads from agent_versions.config and
 * agents.metadata (agent_config.c), written by clients through the agents API in any shape, and
 * the prompt template renderer.
 *
 * The input is "config" 0x1f "metadata" (either may be anything). Properties: a parse either
 * succeeds with arrays for both MCP lists and an object (or NULL) of enabled families, or fails
 * with a reason; the always-on functions stay enabled; rendering the input as a template never
 * writes past its buffer and keeps text without "{{" unchanged. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "agent_config.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (text == NULL)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    char *meta = strchr(text, 0x1f);
    if (meta != NULL)
        *meta++ = '\0';
    agent_config c;
    char why[256] = "";
    kx_err err = agent_config_parse("a", "v", text, meta, &c, why, sizeof why);
    if (err == KX_OK) {
        FUZZ_CHECK(c.found);
        FUZZ_CHECK(json_is_array(c.configured_mcps) && json_is_array(c.custom_mcps));
        FUZZ_CHECK(c.agentpress == NULL || json_is_object(c.agentpress));
        FUZZ_CHECK(agent_config_tool_enabled(&c, "ask") &&
                   agent_config_tool_enabled(&c, "expand_message"));
        FUZZ_CHECK(c.max_xml_tool_calls >= 0 && c.max_xml_tool_calls <= 100);
    } else {
        FUZZ_CHECK(err == KX_ERR_NOMEM || why[0] != '\0');
    }
    agent_config_clear(&c);
    char *r = agent_config_render(text, 1796073907);
    FUZZ_CHECK(r != NULL);
    if (strstr(text, "{{") == NULL)
        FUZZ_CHECK(strcmp(r, text) == 0);
    free(r);
    free(text);
    return 0;
}
