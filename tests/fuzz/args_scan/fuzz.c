/* fuzz.c — whether a streaming tool call's arguments are one whole JSON object yet (agent-runner
 * args_scan.c): the arguments a model streams, delta by delta.
 *
 * Feeds the input in growing prefixes (split points taken from the input itself) to one scan,
 * as the deltas of one call arrive; at every prefix the scan must say "whole" exactly when
 * jansson reads the prefix as one JSON object (white space around it allowed), and it must
 * have read each byte once. A scan fed the whole text at once gives the same verdict. */
#include <jansson.h>

#include "args_scan.h"
#include "fuzz_util.h"

static bool jansson_object(const char *text, size_t len)
{
    json_t *v = json_loadb(text, len, 0, NULL);
    bool object = json_is_object(v);
    json_decref(v);
    return object;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    args_scan a;
    args_scan_reset(&a);
    size_t at = 0;
    bool last = false;
    while (at < size) {
        at += (size_t)(data[at] % 37u) + 1;
        if (at > size)
            at = size;
        last = args_scan_whole(&a, text, at);
        FUZZ_CHECK(last == jansson_object(text, at));
        FUZZ_CHECK(a.never || a.pos == at);
    }
    args_scan whole;
    args_scan_reset(&whole);
    FUZZ_CHECK(args_scan_whole(&whole, text, size) == last);
    return 0;
}
