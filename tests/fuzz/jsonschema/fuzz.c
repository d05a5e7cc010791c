/* fuzz.c — kx/jsonschema: checking a schema and validating (with the XML coercions) an
 * instance against it. The input is a JSON object {"schema": ..., "instance": ...}; anything
 * else is skipped.
 * Properties: a schema that passes kx_jsonschema_check validates without crashing; the answer
 * is KX_OK or KX_ERR_INVALID (NOMEM aside) with a NUL-terminated reason that is non-empty on
 * refusal; after KX_OK the (coerced) instance validates again, unchanged, without coercion. */
#include <jansson.h>
#include <string.h>

#include "fuzz_util.h"
#include "kx/jsonschema.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *doc = json_loadb((const char *)data, size, JSON_DECODE_ANY, NULL);
    json_t *schema = json_object_get(doc, "schema");
    json_t *inst = json_object_get(doc, "instance");
    char why[256];
    if (schema != NULL && inst != NULL && kx_jsonschema_check(schema, why, sizeof why) == KX_OK) {
        json_t *v = json_deep_copy(inst);
        memset(why, 'x', sizeof why);
        kx_err err = kx_jsonschema_validate(schema, &v, KX_JS_COERCE, why, sizeof why);
        FUZZ_CHECK(err == KX_OK || err == KX_ERR_INVALID || err == KX_ERR_NOMEM);
        FUZZ_CHECK(memchr(why, '\0', sizeof why) != NULL);
        if (err == KX_ERR_INVALID)
            FUZZ_CHECK(why[0] != '\0');
        if (err == KX_OK && v != NULL) {
            json_t *again = json_deep_copy(v);
            FUZZ_CHECK(kx_jsonschema_validate(schema, &again, 0, why, sizeof why) == KX_OK);
            FUZZ_CHECK(json_equal(again, v));
            json_decref(again);
        }
        json_decref(v);
    }
    json_decref(doc);
    return 0;
}
