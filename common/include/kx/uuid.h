/* kx/uuid.h — random (v4) and time-ordered (v7) UUIDs, and validation of UUID text from
 * outside. */
#ifndef KX_UUID_H
#define KX_UUID_H

#include <stdbool.h>

#define KX_UUID_LEN 36 /* without the NUL */

/* Writes a lowercase v4 UUID and a NUL into out (>= 37 bytes). Uses getrandom(2). */
void kx_uuid_new(char out[KX_UUID_LEN + 1]);
/* Writes a lowercase version-7 UUID (RFC 9562) and a NUL into out (>= 37 bytes): the first 48
 * bits are the Unix time in milliseconds (CLOCK_REALTIME), the other 74 free bits random (the
 * same pool as kx_uuid_new). Ids made in a later millisecond sort after earlier ones, as text
 * and as Postgres uuid, so a table keyed by them appends at the right edge of its primary-key
 * index instead of touching a random leaf per row (docs/performance.md, "PostgreSQL's own
 * settings"). For row keys, not for secrets: it shows when it was made. */
void kx_uuid_new_v7(char out[KX_UUID_LEN + 1]);
/* True when s is exactly 8-4-4-4-12 hex digits (any case). NULL is not valid. */
bool kx_uuid_valid(const char *s);

#endif
