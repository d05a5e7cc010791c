/* uuid.c — random version-4 UUIDs (from getrandom(2), a pool of bytes per thread),
 * time-ordered version-7 UUIDs (a millisecond timestamp, then the same random bytes), and strict
 * validation of UUID text that comes from outside (URLs, JWT subjects, headers). */
#include "kx/uuid.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
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

/* The bytes of the next UUIDs: one getrandom(2) per POOL_BYTES / 16 UUIDs and thread, not one
 * per UUID (a run makes ~15 ids; the syscall was ~1.7 % of the agent-runner's CPU). A forked
 * child must not repeat its parent's ids: the atfork handler empties the forking thread's pool
 * in the child (the only thread there). */
#define POOL_BYTES 512
static _Thread_local uint8_t pool[POOL_BYTES];
static _Thread_local size_t pool_left;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static void pool_forget(void)
{
    pool_left = 0;
}

static void register_atfork(void)
{
    if (pthread_atfork(NULL, NULL, pool_forget) != 0) {
        kx_error("uuid: pthread_atfork failed; cannot make unique ids in forked children");
        abort();
    }
}

static void pool_take(uint8_t out[16])
{
    if (pool_left < 16) {
        pthread_once(&atfork_once, register_atfork);
        random_bytes(pool, sizeof pool);
        pool_left = sizeof pool;
    }
    uint8_t *from = pool + sizeof pool - pool_left;
    memcpy(out, from, 16);
    memset(from, 0, 16); /* a used id's bytes do not stay behind */
    pool_left -= 16;
}

/* The 16 bytes b as 8-4-4-4-12 lowercase hex and a NUL. */
static void format(const uint8_t b[16], char out[KX_UUID_LEN + 1])
{
    static const char hex[] = "0123456789abcdef";
    char *o = out;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            *o++ = '-';
        *o++ = hex[b[i] >> 4];
        *o++ = hex[b[i] & 0x0F];
    }
    *o = '\0';
}

void kx_uuid_new(char out[KX_UUID_LEN + 1])
{
    uint8_t b[16];
    pool_take(b);
    b[6] = (uint8_t)((b[6] & 0x0F) | 0x40); /* version 4 */
    b[8] = (uint8_t)((b[8] & 0x3F) | 0x80); /* variant 10xx (RFC 4122) */
    format(b, out);
}

void kx_uuid_new_v7(char out[KX_UUID_LEN + 1])
{
    uint8_t b[16];
    pool_take(b);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t ms = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
    for (int i = 0; i < 6; i++) /* 48 bits, big-endian */
        b[i] = (uint8_t)(ms >> (8 * (5 - i)));
    b[6] = (uint8_t)((b[6] & 0x0F) | 0x70); /* version 7 */
    b[8] = (uint8_t)((b[8] & 0x3F) | 0x80); /* variant 10xx */
    format(b, out);
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
