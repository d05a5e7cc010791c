/* uuid.c — random version-4 UUIDs (from getrandom(2)) and strict validation of UUID text that
 * comes from outside (URLs, JWT subjects, headers). */
#include "kx/uuid.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/random.h>
#include <unistd.h>

#include "kx/log.h"

static void random_bytes(uint8_t *buf, size_t len)
{
    size_t got = 0;
    while (got < len) {
        ssize_t n = getrandom(buf + got, len - got, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            /* getrandom cannot fail otherwise on Linux >= 3.17; without randomness a UUID
             * would not be unique, so this is fatal rather than silently weak. */
            kx_error("uuid: getrandom failed (errno %d); cannot make unique ids", errno);
            abort();
        }
        got += (size_t)n;
    }
}

void kx_uuid_new(char out[KX_UUID_LEN + 1])
{
    uint8_t b[16];
    random_bytes(b, sizeof b);
    b[6] = (uint8_t)((b[6] & 0x0F) | 0x40); /* version 4 */
    b[8] = (uint8_t)((b[8] & 0x3F) | 0x80); /* variant 10xx (RFC 4122) */
    snprintf(out, KX_UUID_LEN + 1,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
             b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
             b[15]);
}

static bool is_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

bool kx_uuid_valid(const char *s)
{
    if (s == NULL)
        return false;
    for (int i = 0; i < KX_UUID_LEN; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-')
                return false;
        } else if (!is_hex(s[i])) { /* also stops at an early NUL */
            return false;
        }
    }
    return s[KX_UUID_LEN] == '\0';
}
