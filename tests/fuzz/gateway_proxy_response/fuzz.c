/* fuzz.c — the gateway's reading of an HTTP answer that a server inside a sandbox sent through
 * a preview link (preview_proxy.c, gw_proxy_parse): bytes the sandbox controls entirely.
 *
 * The input is the whole answer. Properties: either a refusal with a reason, or a status in
 * 100..599, at most GW_PROXY_MAX_HEADERS headers each named from the pass-on list with a
 * value that has no CR or LF (a header can never be split into two by the sandbox), and a body
 * no longer than the input. */
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "preview_proxy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *raw = malloc(size + 1);
    if (raw == NULL)
        return 0;
    memcpy(raw, data, size);
    raw[size] = '\0';
    gw_proxy_resp r;
    char why[300] = "";
    kx_err err = gw_proxy_parse(raw, size, &r, why, sizeof why);
    if (err != KX_OK) {
        FUZZ_CHECK(why[0] != '\0');
    } else {
        FUZZ_CHECK(r.status >= 100 && r.status <= 599);
        FUZZ_CHECK(r.nheaders <= GW_PROXY_MAX_HEADERS);
        FUZZ_CHECK(r.body_len <= size);
        FUZZ_CHECK(r.body != NULL && r.body[r.body_len] == '\0');
        for (size_t i = 0; i < r.nheaders; i++) {
            FUZZ_CHECK(r.names[i] != NULL && r.values[i] != NULL);
            FUZZ_CHECK(strpbrk(r.values[i], "\r\n") == NULL);
        }
        free(r.body);
    }
    free(raw);
    return 0;
}
