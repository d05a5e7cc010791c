/* fuzz.c — the agent-runner's reading of the tool-executor's answer to a tool call
 * (tools_outcome_from_reply in tools.c): a NATS reply whose data is a kx.v1.ToolResult, or
 * whose Kx-Error header says the call was refused.
 *
 * Byte 0 says whether a Kx-Error header is set: if it is odd, the input up to the first '\n'
 * after byte 0 is the header value (CR, LF and NUL become spaces: a header cannot hold them)
 * and the rest is the data; else the rest is the data. Properties: the outcome always has an
 * output the run can save (a JSON value, never NULL), and a failure always has an error
 * text; both must be printable as JSON, since the run stores them in messages rows. */
#include <jansson.h>
#include <nats/nats.h>
#include <string.h>

#include "fuzz_util.h"
#include "kx/bus.h"
#include "tools.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    FUZZ_CHECK(nats_Open(-1) == NATS_OK);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const uint8_t *body = data + 1;
    size_t blen = size - 1;
    char *hdr = NULL;
    if (data[0] & 1) {
        const uint8_t *nl = memchr(body, '\n', blen);
        size_t hl = nl != NULL ? (size_t)(nl - body) : blen;
        hdr = fuzz_cstr(body, hl);
        for (size_t i = 0; i < hl; i++)
            if (hdr[i] == '\r' || hdr[i] == '\0')
                hdr[i] = ' ';
        body += nl != NULL ? hl + 1 : hl;
        blen -= nl != NULL ? hl + 1 : hl;
    }
    natsMsg *m = NULL;
    FUZZ_CHECK(natsMsg_Create(&m, "_INBOX.fuzz", NULL, (const char *)body, (int)blen) == NATS_OK);
    if (hdr != NULL && natsMsgHeader_Set(m, KX_HDR_ERROR, hdr) != NATS_OK) {
        natsMsg_Destroy(m);
        free(hdr);
        return 0;
    }
    tool_outcome o;
    tools_outcome_from_reply(KX_OK, m, &o);
    FUZZ_CHECK(o.output != NULL);
    char *printed = json_dumps(o.output, JSON_ENCODE_ANY);
    FUZZ_CHECK(printed != NULL);
    free(printed);
    if (!o.success) {
        FUZZ_CHECK(o.error != NULL && o.error[0] != '\0');
        json_t *e = json_string(o.error);
        FUZZ_CHECK(e != NULL);
        json_decref(e);
    }
    tool_outcome_clear(&o);
    natsMsg_Destroy(m);
    free(hdr);
    return 0;
}
