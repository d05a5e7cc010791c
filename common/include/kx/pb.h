/* kx/pb.h — protobuf-c helpers and the generated kx.v1 messages.
 *
 * Everything from outside is unpacked with kx_pb_unpack, which returns NULL for bytes that are
 * not a valid message of that type; free what it returns with kx_pb_free. */
#ifndef KX_PB_H
#define KX_PB_H

#include <stddef.h>
#include <stdint.h>
#include <protobuf-c/protobuf-c.h>
#include "kx/err.h"
#include "kx/v1/common.pb-c.h"
#include "kx/v1/run.pb-c.h"
#include "kx/v1/tool.pb-c.h"
#include "kx/v1/sandbox.pb-c.h"
#include "kx/v1/mcp.pb-c.h"

/* Packs msg into a new malloc'd buffer (*buf, owned by the caller; free()). An empty message
 * gives a non-NULL buffer of length 0. */
kx_err kx_pb_pack(const ProtobufCMessage *msg, uint8_t **buf, size_t *len);

/* Unpacks data as a message of type desc; NULL if it is not one. */
void *kx_pb_unpack(const ProtobufCMessageDescriptor *desc, const void *data, size_t len);
void kx_pb_free(void *msg); /* NULL is a no-op */

/* protobuf-c leaves unset strings pointing at protobuf_c_empty_string; this is true for NULL
 * or "". */
static inline int kx_pb_str_empty(const char *s)
{
    return s == NULL || s[0] == '\0';
}

#endif
