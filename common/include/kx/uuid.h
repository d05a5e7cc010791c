/* kx/uuid.h — random (v4) UUIDs and validation of UUID text from outside. */
#ifndef KX_UUID_H
#define KX_UUID_H

#include <stdbool.h>

#define KX_UUID_LEN 36 /* without the NUL */

/* Writes a lowercase v4 UUID and a NUL into out (>= 37 bytes). Uses getrandom(2). */
void kx_uuid_new(char out[KX_UUID_LEN + 1]);
/* True when s is exactly 8-4-4-4-12 hex digits (any case). NULL is not valid. */
bool kx_uuid_valid(const char *s);

#endif
