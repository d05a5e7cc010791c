/* fuzz.c — protobuf decoding of every bus message type (the .proto files of proto/kx/v1/) with kx_pb_unpack,
 * as each service does with the bytes a NATS message carries.
 *
 * Byte 0 picks the message type (the list is generated from the .proto files, so new types
 * are included automatically); the rest is the message. A message that decodes is packed
 * again, the packed bytes must decode, and packing that must give the same bytes (the
 * encoding of a decoded message is canonical). Note: libprotobuf-c itself comes from Debian
 * and is not instrumented, so coverage guidance only sees this file and the generated code;
 * ASan still checks every heap access made through its interceptors and by our code. */
#include <string.h>

#include "fuzz_util.h"
#include "kx/pb.h"

static const ProtobufCMessageDescriptor *const types[] = {
#include "proto_types.h"
};
#define NTYPES (sizeof types / sizeof types[0])

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const ProtobufCMessageDescriptor *desc = types[data[0] % NTYPES];
    ProtobufCMessage *m = kx_pb_unpack(desc, data + 1, size - 1);
    if (m == NULL)
        return 0;
    FUZZ_CHECK(m->descriptor == desc);
    uint8_t *b1 = NULL, *b2 = NULL;
    size_t l1 = 0, l2 = 0;
    FUZZ_CHECK(kx_pb_pack(m, &b1, &l1) == KX_OK);
    ProtobufCMessage *m2 = kx_pb_unpack(desc, b1, l1);
    FUZZ_CHECK(m2 != NULL);
    FUZZ_CHECK(kx_pb_pack(m2, &b2, &l2) == KX_OK);
    FUZZ_CHECK(l1 == l2 && (l1 == 0 || memcmp(b1, b2, l1) == 0));
    free(b1);
    free(b2);
    kx_pb_free(m2);
    kx_pb_free(m);
    return 0;
}
