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
    uint8_t *out = malloc(size > 0 ? size : 1); /* an empty message still gets a buffer */
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

/* False when m or a message inside it kept an unknown field numbered 0. Field 0 does not exist
 * in protobuf, but libprotobuf-c accepts it when its tag is written in two bytes (0x82 0x00)
 * and keeps it as an unknown field; packing the message again then gives bytes that the same
 * library refuses. Such input is not a valid message. */
static int no_field_zero(const ProtobufCMessage *m)
{
    for (unsigned i = 0; i < m->n_unknown_fields; i++)
        if (m->unknown_fields[i].tag == 0)
            return 0;
    const ProtobufCMessageDescriptor *d = m->descriptor;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (f->type != PROTOBUF_C_TYPE_MESSAGE)
            continue;
        const char *base = (const char *)m;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = *(const size_t *)(base + f->quantifier_offset);
            ProtobufCMessage *const *items = *(ProtobufCMessage *const *const *)(base + f->offset);
            for (size_t k = 0; k < n; k++)
                if (items[k] != NULL && !no_field_zero(items[k]))
                    return 0;
            continue;
        }
        /* a oneof member is only there when the oneof's case names it */
        if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
            *(const uint32_t *)(base + f->quantifier_offset) != f->id)
            continue;
        const ProtobufCMessage *sub = *(ProtobufCMessage *const *)(base + f->offset);
        if (sub != NULL && !no_field_zero(sub))
            return 0;
    }
    return 1;
}

void *kx_pb_unpack(const ProtobufCMessageDescriptor *desc, const void *data, size_t len)
{
    if (desc == NULL || (data == NULL && len > 0))
        return NULL;
    static const uint8_t empty[1];
    ProtobufCMessage *m =
        protobuf_c_message_unpack(desc, NULL, len, data ? (const uint8_t *)data : empty);
    if (m != NULL && !no_field_zero(m)) {
        protobuf_c_message_free_unpacked(m, NULL);
        return NULL;
    }
    return m;
}

void kx_pb_free(void *msg)
{
    if (msg != NULL)
        protobuf_c_message_free_unpacked((ProtobufCMessage *)msg, NULL);
}
