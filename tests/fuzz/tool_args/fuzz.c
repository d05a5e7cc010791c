/* fuzz.c — the tool-executor's reading of what a model asked for and what the sandbox
 * answered: te_exec_args_parse on a tool call's arguments (JSON written by the model, or
 * parameters parsed from its XML) and te_outcome_from_exec on a SandboxExecResult from the bus.
 *
 * Byte 0 picks the mode. Even: the rest is arguments_json. Properties: accepted arguments have
 * a non-empty command without NUL, a timeout in 1..TE_EXEC_MAX_TIMEOUT_S, non-NULL folder and
 * session; a refusal names execute_command. Odd: the rest is a protobuf SandboxExecResult,
 * for a blocking call when bit 1 of byte 0 is set; the outcome's output is JSON that jansson
 * reads, and a failure has an error code. */
#include <jansson.h>
#include <string.h>

#include "fuzz_util.h"
#include "kx/pb.h"
#include "outcome.h"
#include "tool_args.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    if ((data[0] & 1) == 0) {
        char *text = fuzz_cstr(data + 1, size - 1);
        te_exec_args a;
        char why[256];
        memset(why, 'x', sizeof why);
        kx_err err = te_exec_args_parse(text, &a, why, sizeof why);
        if (err == KX_OK) {
            FUZZ_CHECK(a.command != NULL && a.command[0] != '\0');
            FUZZ_CHECK(a.folder != NULL && a.session_name != NULL);
            FUZZ_CHECK(a.timeout_s >= 1 && a.timeout_s <= TE_EXEC_MAX_TIMEOUT_S);
            te_exec_args_free(&a);
        } else {
            FUZZ_CHECK(err == KX_ERR_INVALID);
            FUZZ_CHECK(memchr(why, '\0', sizeof why) != NULL && strstr(why, "execute_command"));
        }
        free(text);
        return 0;
    }
    bool blocking = (data[0] & 2) != 0;
    Kx__V1__SandboxExecResult *r =
        kx_pb_unpack(&kx__v1__sandbox_exec_result__descriptor, data + 1, size - 1);
    if (r == NULL)
        return 0;
    te_outcome o;
    te_outcome_init(&o);
    te_outcome_from_exec(&o, r, blocking, 60);
    if (o.output_json != NULL) {
        json_t *j = json_loads(o.output_json, 0, NULL);
        FUZZ_CHECK(j != NULL);
        json_decref(j);
    }
    if (!o.success)
        FUZZ_CHECK(o.error_code[0] != '\0' || o.output_json != NULL);
    FUZZ_CHECK(memchr(o.error_message, '\0', sizeof o.error_message) != NULL);
    te_outcome_free(&o);
    kx_pb_free(r);
    return 0;
}
