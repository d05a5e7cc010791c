/* fuzz.c — the request metadata every service reads from a NATS message's headers
 * (kx_bus_meta_read and kx_bus_trace_id in common/src/bus.c): Kx-Deadline, traceparent and
 * the account, set by whoever published the message.
 *
 * The input holds the three header values separated by '\n' (a header value cannot hold CR,
 * LF or NUL: those bytes become spaces). Each present value is set on a message built with
 * cnats (no connection needed), which is then read. Properties: a malformed Kx-Deadline is
 * KX_ERR_INVALID and anything else KX_OK; the strings read are NUL-terminated; the trace id is
 * "" or 32 lowercase hex digits; writing what was read onto a fresh message and reading that
 * gives the same metadata. */
#include <nats/nats.h>
#include <string.h>

#include "fuzz_util.h"
#include "kx/bus.h"

static bool lower_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return true;
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    FUZZ_CHECK(nats_Open(-1) == NATS_OK); /* cnats' library state, as kx_bus_connect does */
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = fuzz_cstr(data, size);
    for (size_t i = 0; i < size; i++)
        if (text[i] == '\r' || text[i] == '\0')
            text[i] = ' ';
    const char *names[3] = {KX_HDR_DEADLINE, KX_HDR_TRACEPARENT, KX_HDR_ACCOUNT};
    char *vals[3] = {NULL, NULL, NULL};
    char *p = text;
    for (int i = 0; i < 3 && p != NULL; i++) {
        vals[i] = p;
        p = strchr(p, '\n');
        if (p != NULL)
            *p++ = '\0';
    }
    natsMsg *m = NULL;
    FUZZ_CHECK(natsMsg_Create(&m, "kx.fuzz", NULL, "", 0) == NATS_OK);
    for (int i = 0; i < 3; i++)
        if (vals[i] != NULL && natsMsgHeader_Set(m, names[i], vals[i]) != NATS_OK)
            goto out;

    kx_bus_meta meta;
    kx_err err = kx_bus_meta_read(m, &meta);
    FUZZ_CHECK(err == KX_OK || err == KX_ERR_INVALID);
    FUZZ_CHECK(err == KX_OK || vals[0] != NULL);
    FUZZ_CHECK(meta.deadline >= 0);
    FUZZ_CHECK(memchr(meta.traceparent, '\0', sizeof meta.traceparent) != NULL);
    FUZZ_CHECK(memchr(meta.account, '\0', sizeof meta.account) != NULL);
    char trace[33];
    kx_bus_trace_id(&meta, trace);
    FUZZ_CHECK(trace[0] == '\0' || (strlen(trace) == 32 && lower_hex(trace, 32)));

    natsMsg *m2 = NULL;
    FUZZ_CHECK(natsMsg_Create(&m2, "kx.fuzz", NULL, "", 0) == NATS_OK);
    if (kx_bus_meta_write(m2, &meta) == KX_OK) {
        kx_bus_meta again;
        FUZZ_CHECK(kx_bus_meta_read(m2, &again) == KX_OK);
        FUZZ_CHECK(again.deadline == meta.deadline);
        FUZZ_CHECK(strcmp(again.traceparent, meta.traceparent) == 0);
        FUZZ_CHECK(strcmp(again.account, meta.account) == 0);
    }
    natsMsg_Destroy(m2);
out:
    natsMsg_Destroy(m);
    free(text);
    return 0;
}
