/* fuzz.c — the scheduler's use of a runner's heartbeat (hb_arrays.c): a kx.v1.RunnerHeartbeat
 * from the bus becomes the two Postgres array literals of the lease-extension UPDATE, so
 * nothing in the message may change the literals' structure.
 *
 * The input is the protobuf message. Properties: the ids literal is "{}" or "{" UUIDs joined
 * by "," "}", with hex digits and dashes only; the epochs literal is "{" non-negative decimal
 * integers joined by "," "}"; both hold n entries, and n + skipped is the number of leases. */
#include <string.h>

#include "fuzz_util.h"
#include "hb_arrays.h"
#include "kx/pb.h"

/* Checks "{e,e,...}" where every element is made of chars from set; returns the count. */
static size_t literal_count(const char *s, const char *set)
{
    size_t len = strlen(s);
    FUZZ_CHECK(len >= 2 && s[0] == '{' && s[len - 1] == '}');
    if (len == 2)
        return 0;
    size_t n = 1;
    for (size_t i = 1; i < len - 1; i++) {
        if (s[i] == ',') {
            FUZZ_CHECK(s[i - 1] != '{' && s[i - 1] != ',' && s[i + 1] != '}');
            n++;
        } else {
            FUZZ_CHECK(strchr(set, s[i]) != NULL);
        }
    }
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    Kx__V1__RunnerHeartbeat *hb = kx_pb_unpack(&kx__v1__runner_heartbeat__descriptor, data, size);
    if (hb == NULL)
        return 0;
    char *ids = NULL, *epochs = NULL;
    size_t n = 0, skipped = 0;
    FUZZ_CHECK(sched_hb_arrays(hb, &ids, &epochs, &n, &skipped) == KX_OK);
    FUZZ_CHECK(n + skipped == hb->n_runs);
    FUZZ_CHECK(literal_count(ids, "0123456789abcdefABCDEF-") == n);
    FUZZ_CHECK(literal_count(epochs, "0123456789") == n);
    FUZZ_CHECK(strlen(ids) == (n == 0 ? 2 : 2 + n * 36 + (n - 1)));
    free(ids);
    free(epochs);
    kx_pb_free(hb);
    return 0;
}
