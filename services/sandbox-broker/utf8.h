/* utf8.h — making command output valid UTF-8 before it goes into protobuf string fields.
 *
 * Commands print whatever bytes they like, and the output cap can cut a multi-byte character
 * in half; proto3 strings and the JSON the tool-executor builds from them must be UTF-8. Each
 * byte that does not start a valid sequence (RFC 3629: no overlong forms, no surrogates,
 * nothing above U+10FFFF) becomes U+FFFD. Pure; unit tested. */
#ifndef SB_UTF8_H
#define SB_UTF8_H

#include <stdbool.h>
#include <stddef.h>

/* Length of the valid sequence starting at s (1..4), or 0 if none starts there. */
size_t sb_utf8_seq_len(const unsigned char *s, size_t avail);
bool sb_utf8_valid(const char *s, size_t len);

/* A malloc'd NUL-terminated copy of s[0..len) with invalid bytes replaced by U+FFFD
 * (caller frees). NUL bytes are replaced too: protobuf-c strings end at the first NUL.
 * *out_len (may be NULL) gets its length. NULL on allocation failure. */
char *sb_utf8_sanitize(const char *s, size_t len, size_t *out_len);

#endif
