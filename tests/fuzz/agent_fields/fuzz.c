/* fuzz.c — the checks of an agent's or version's fields (services/gateway/agent_fields.c): what
 * POST/PUT /api/agents, import and POST .../versions receive.
 *
 * The input is the body, read as JSON (NUL escapes allowed, so the NUL checks are reached); each
 * kind of check (create, update, import, version) runs on it with a 64-byte prompt limit.
 * Properties: a refusal is a 400 or 413 whose body is JSON {"detail": "..."}; an acceptance
 * holds only known fields, none of them null, no string with a NUL (Postgres cannot store one),
 * the required fields present, and prints as JSON again (what goes to the database). */
#include <jansson.h>
#include <microhttpd.h>
#include <string.h>

#include "agent_fields.h"
#include "fuzz_util.h"
#include "reply.h"

static bool no_nul(const json_t *v)
{
    size_t i;
    const char *k;
    json_t *e;
    switch (json_typeof(v)) {
    case JSON_STRING: return strlen(json_string_value(v)) == json_string_length(v);
    case JSON_ARRAY: json_array_foreach(v, i, e) if (!no_nul(e)) return false; return true;
    case JSON_OBJECT:
        json_object_foreach((json_t *)v, k, e) if (!no_nul(e)) return false;
        return true;
    default: return true;
    }
}

static bool known(const char *key)
{
    static const char *const KEYS[] = {"name",
                                       "description",
                                       "system_prompt",
                                       "model",
                                       "agentpress_tools",
                                       "configured_mcps",
                                       "custom_mcps",
                                       "is_default",
                                       "avatar",
                                       "avatar_color",
                                       "tags",
                                       "metadata",
                                       "version_name"};
    for (size_t i = 0; i < sizeof KEYS / sizeof KEYS[0]; i++)
        if (strcmp(key, KEYS[i]) == 0)
            return true;
    return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *in = json_loadb((const char *)data, size, JSON_ALLOW_NUL | JSON_DECODE_ANY, NULL);
    if (in == NULL)
        return 0;
    static const gw_agent_fields_kind KINDS[] = {GW_FIELDS_CREATE, GW_FIELDS_UPDATE,
                                                 GW_FIELDS_IMPORT, GW_FIELDS_VERSION};
    for (size_t k = 0; k < sizeof KINDS / sizeof KINDS[0]; k++) {
        gw_reply r = {0};
        json_t *out = gw_agent_fields(in, KINDS[k], 64, &r);
        if (out == NULL) {
            FUZZ_CHECK(r.status == MHD_HTTP_BAD_REQUEST || r.status == MHD_HTTP_CONTENT_TOO_LARGE);
            json_t *b = r.body ? json_loads(r.body, 0, NULL) : NULL;
            FUZZ_CHECK(json_is_string(json_object_get(b, "detail")));
            json_decref(b);
            gw_reply_free(&r);
            continue;
        }
        FUZZ_CHECK(r.status == 0 && json_is_object(out) && json_object_size(out) > 0);
        const char *key;
        json_t *v;
        json_object_foreach(out, key, v)
        {
            FUZZ_CHECK(known(key) && !json_is_null(v));
        }
        FUZZ_CHECK(no_nul(out));
        if (KINDS[k] != GW_FIELDS_UPDATE)
            FUZZ_CHECK(json_is_string(json_object_get(out, "system_prompt")));
        if (KINDS[k] == GW_FIELDS_CREATE || KINDS[k] == GW_FIELDS_IMPORT)
            FUZZ_CHECK(json_is_string(json_object_get(out, "name")));
        const json_t *p = json_object_get(out, "system_prompt");
        FUZZ_CHECK(p == NULL || strlen(json_string_value(p)) <= 64);
        char *text = json_dumps(out, JSON_COMPACT);
        FUZZ_CHECK(text != NULL);
        free(text);
        json_decref(out);
    }
    json_decref(in);
    return 0;
}
