/* fuzz.c — the XML tool-call parser of the agent-runner (xml_calls.c): the text a model writes.
 *
 * Drives xml_calls_find on the whole input, xml_calls_value on it, and checks the streaming
 * scanner: feeding the text in growing prefixes (split points taken from the input) must say
 * "complete" exactly when xml_calls_block_complete does on the same prefix, and a FOUND or an
 * ERROR must describe a block inside the text. */
#include <jansson.h>
#include <string.h>

#include "fuzz_util.h"
#include "xml_calls.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;

    xml_call call;
    xml_calls_result r = xml_calls_find(text, size, &call);
    if (r == XML_CALLS_NONE) {
        FUZZ_CHECK(call.function_name == NULL && call.arguments == NULL);
    } else {
        FUZZ_CHECK(call.function_name != NULL);
        FUZZ_CHECK(call.block_start <= call.block_end && call.block_end <= size);
        FUZZ_CHECK(call.raw_xml != NULL &&
                   strlen(call.raw_xml) <= call.block_end - call.block_start);
        if (r == XML_CALLS_FOUND) {
            FUZZ_CHECK(json_is_object(call.arguments) && json_is_object(call.raw_parameters));
            FUZZ_CHECK(call.function_name[0] != '\0');
            FUZZ_CHECK(json_object_size(call.arguments) == json_object_size(call.raw_parameters));
        } else {
            FUZZ_CHECK(call.error[0] != '\0');
        }
        xml_call_clear(&call);
    }

    /* every invoke by index: inside the same block; NONE ends the walk for good */
    bool none = false;
    for (size_t i = 1; i < 5; i++) {
        xml_call c2;
        xml_calls_result r2 = xml_calls_find_at(text, size, i, &c2);
        if (r2 == XML_CALLS_NONE) {
            FUZZ_CHECK(c2.function_name == NULL);
            none = true;
            continue;
        }
        FUZZ_CHECK(!none && r != XML_CALLS_NONE);
        FUZZ_CHECK(c2.block_end <= size && c2.function_name != NULL);
        xml_call_clear(&c2);
        if (r2 == XML_CALLS_ERROR)
            break;
    }

    json_t *v = xml_calls_value(text, size);
    FUZZ_CHECK(v != NULL);
    json_decref(v);

    /* the streaming scan: prefixes grow by (byte % 61) + 1 bytes, steered by the text itself */
    xml_scan scan = {0};
    size_t at = 0;
    bool was_complete = false;
    while (at < size) {
        at += (size_t)(data[at] % 61u) + 1;
        if (at > size)
            at = size;
        bool streamed = xml_calls_scan(&scan, text, at);
        bool whole = xml_calls_block_complete(text, at);
        FUZZ_CHECK(streamed == whole);
        FUZZ_CHECK(!was_complete || whole);
        was_complete = whole;
        if (streamed)
            break;
    }
    return 0;
}
