/* run_events.c — the wire-level count of a kx.run.ev message's events (see kx/run_events.h). */
#include "kx/run_events.h"

#define EVENTS_FIELD 7 /* RunEvent.events */

/* Reads a base-128 varint at *p (< end); false when it runs past end or past 64 bits. */
static int read_varint(const uint8_t **p, const uint8_t *end, uint64_t *out)
{
    uint64_t v = 0;
    for (unsigned shift = 0; shift < 64 && *p < end; shift += 7) {
        uint8_t b = *(*p)++;
        v |= (uint64_t)(b & 0x7f) << shift;
        if ((b & 0x80) == 0) {
            *out = v;
            return 1;
        }
    }
    return 0;
}

size_t kx_run_events_count_packed(const void *data, size_t len)
{
    const uint8_t *p = data, *end = p + len;
    size_t n = 0;
    while (p < end) {
        uint64_t key = 0, skip = 0;
        if (!read_varint(&p, end, &key))
            return 0;
        switch (key & 7) {
        case 0: /* varint */
            if (!read_varint(&p, end, &skip))
                return 0;
            continue;
        case 1: skip = 8; break;
        case 5: skip = 4; break;
        case 2:
            if (!read_varint(&p, end, &skip))
                return 0;
            if ((key >> 3) == EVENTS_FIELD)
                n++;
            break;
        default: return 0; /* groups are not used by kx.v1 */
        }
        if (skip > (uint64_t)(end - p))
            return 0;
        p += skip;
    }
    return n > 0 ? n : 1;
}
