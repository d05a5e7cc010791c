/* fuzz_util.h — small helpers shared by the libFuzzer targets of tests/fuzz.
 *
 * FUZZ_CHECK is an assertion that survives NDEBUG (RelWithDebInfo builds): a property a parser
 * promises that does not hold is a finding, reported as a crash with the failed condition.
 * fuzz_cstr makes a NUL-terminated copy for parsers that take C strings. */
#ifndef KX_FUZZ_UTIL_H
#define KX_FUZZ_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_CHECK(cond)                                                                \
    do {                                                                                \
        if (!(cond)) {                                                                  \
            fprintf(stderr, "%s:%d: property failed: %s\n", __FILE__, __LINE__, #cond); \
            abort();                                                                    \
        }                                                                               \
    } while (0)

/* A malloc'd NUL-terminated copy of data[0..size) (caller frees); aborts on OOM. */
static inline char *fuzz_cstr(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    FUZZ_CHECK(s != NULL);
    if (size > 0)
        memcpy(s, data, size);
    s[size] = '\0';
    return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif
