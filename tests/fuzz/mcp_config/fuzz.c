/* fuzz.c — the mcp-proxy's reader of KX_MCP_SERVERS (mcp_config.c): the operator's JSON that
 * names the MCP servers and the commands that start them.
 *
 * Properties: on success every server has a valid name (1..64 of [A-Za-z0-9_.-]), a non-empty
 * NULL-terminated argv whose first word is the command, and "KEY=value" environment entries;
 * a refusal always says why, in a NUL-terminated message that fits its buffer; and nothing is
 * cut short: each argv word and env value is as long as the JSON string it came from. */
#include <jansson.h>
#include <string.h>

#include "fuzz_util.h"
#include "mcp_config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = fuzz_cstr(data, size);
    mcp_config c;
    char why[96];
    memset(why, 'x', sizeof why);
    if (mcp_config_parse(text, &c, why, sizeof why) == 0) {
        json_t *root = json_loads(text, 0, NULL);
        for (size_t i = 0; i < c.n; i++) {
            const mcp_server_config *s = &c.servers[i];
            const json_t *js = json_object_get(root, s->name);
            FUZZ_CHECK(json_is_object(js));
            const json_t *args = json_object_get(js, "args");
            FUZZ_CHECK(strlen(s->argv[0]) == json_string_length(json_object_get(js, "command")));
            for (size_t k = 0; k < json_array_size(args); k++)
                FUZZ_CHECK(s->argv[k + 1] != NULL &&
                           strlen(s->argv[k + 1]) == json_string_length(json_array_get(args, k)));
            FUZZ_CHECK(s->argv[json_array_size(args) + 1] == NULL);
            for (char **e = s->env; *e != NULL; e++) {
                const char *eq = strchr(*e, '=');
                FUZZ_CHECK(eq != NULL);
                /* the name may be any length: copy it whole (a 256-byte buffer once cut a
                 * 300-character name and failed this check on a correct entry) */
                char *key = strndup(*e, (size_t)(eq - *e));
                FUZZ_CHECK(key != NULL);
                const json_t *val = json_object_get(json_object_get(js, "env"), key);
                FUZZ_CHECK(json_is_string(val) && strlen(eq + 1) == json_string_length(val));
                free(key);
            }
            size_t nl = strlen(s->name);
            FUZZ_CHECK(nl >= 1 && nl <= 64);
            FUZZ_CHECK(strspn(s->name,
                              "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                              "0123456789_.-") == nl);
            FUZZ_CHECK(s->argv != NULL && s->argv[0] != NULL && s->argv[0][0] != '\0');
            for (char **a = s->argv; *a != NULL; a++)
                FUZZ_CHECK(*a != NULL);
            FUZZ_CHECK(s->env != NULL);
            for (char **e = s->env; *e != NULL; e++)
                FUZZ_CHECK(strchr(*e, '=') != NULL && (*e)[0] != '=');
        }
        json_decref(root);
        mcp_config_free(&c);
    } else {
        FUZZ_CHECK(memchr(why, '\0', sizeof why) != NULL && why[0] != '\0');
    }
    free(text);
    return 0;
}
