/* pb.c — packing and unpacking protobuf-c messages with ownership made explicit: packed bytes
 * are malloc'd for the caller, unpacked messages are freed with kx_pb_free. Bytes from outside
 * that are not a valid message of the expected type come back as NULL. */
#include "kx/pb.h"

#include <stdlib.h>

#include "kx/log.h"

kx_err kx_pb_pack(const ProtobufCMessage *msg, uint8_t **buf, size_t *len)
{
    *buf = NULL;
    *len = 0;
    if (msg == NULL) {
        kx_error("pb: kx_pb_pack called with a NULL message");
        return KX_ERR_INVALID;
    }
    size_t size = protobuf_c_message_get_packed_size(msg);
    uint8_t *out = malloc(size > 0 ? size : 1);   /* an empty message still gets a buffer */
    if (out == NULL) {
        kx_error("pb: out of memory packing %s (%zu bytes)", msg->descriptor->name, size);
        return KX_ERR_NOMEM;
    }
    size_t written = protobuf_c_message_pack(msg, out);
    if (written != size) {
        kx_error("pb: packing %s wrote %zu bytes, expected %zu", msg->descriptor->name, written,
                 size);
        free(out);
        return KX_ERR_INTERNAL;
    }
    *buf = out;
    *len = size;
    return KX_OK;
}

void *kx_pb_unpack(const ProtobufCMessageDescriptor *desc, const void *data, size_t len)
{
    if (desc == NULL || (data == NULL && len > 0))
        return NULL;
    static const uint8_t empty[1];
    return protobuf_c_message_unpack(desc, NULL, len, data ? (const uint8_t *)data : empty);
}

void kx_pb_free(void *msg)
{
    if (msg != NULL)
        protobuf_c_message_free_unpacked((ProtobufCMessage *)msg, NULL);
}
