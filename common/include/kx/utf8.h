/* kx/utf8.h — checking and repairing UTF-8 in text that goes into JSON or Postgres, and where
 * to cut such text without splitting a character.
 *
 * jansson refuses strings that are not UTF-8 (json_string returns NULL) and Postgres text
 * cannot hold NUL, so text that comes from outside or was cut to fit a buffer is checked or
 * repaired here before it is put into a JSON value. Valid means RFC 3629: no overlong forms,
 * no surrogates, nothing above U+10FFFF, and no NUL byte. Pure; thread-safe; nothing here
 * keeps a pointer it is given, and only kx_utf8_sanitize allocates (the caller owns it). */
#ifndef KX_UTF8_H
#define KX_UTF8_H

#include <stdbool.h>
#include <stddef.h>

/* Length (1..4) of the valid sequence at s[0..avail), or 0 if none starts there (NUL too). */
size_t kx_utf8_seq_len(const unsigned char *s, size_t avail);
/* True when s[0..len) is valid UTF-8 without NUL bytes. */
bool kx_utf8_valid(const char *s, size_t len);
/* Replaces, in place, every byte of the NUL-terminated s that does not belong to a valid
 * sequence with '?' (so a string cut in the middle of a character stays printable). */
void kx_utf8_scrub(char *s);
/* A malloc'd NUL-terminated copy of s[0..len) in which every byte that does not belong to a
 * valid sequence, NUL included, became U+FFFD (for bytes from outside, e.g. a command's output
 * cut by a cap, headed for a protobuf string: protobuf-c strings end at the first NUL).
 * *out_len (may be NULL) gets its length. The caller frees; NULL when out of memory. */
char *kx_utf8_sanitize(const char *s, size_t len, size_t *out_len);
/* Where to cut s[0..len) at or before n so that no character is split: n stepped back over
 * UTF-8 continuation bytes (10xxxxxx), i.e. the largest n' <= n such that n' is 0 or s[n']
 * is not a continuation byte; len when n >= len (the end is always a boundary). Reads only
 * s[1..n] with n < len, never s[len] or beyond, so s need not be NUL-terminated. Only the
 * bytes are looked at, not validity: a run of stray continuation bytes at the start gives 0. */
size_t kx_utf8_floor(const char *s, size_t len, size_t n);
/* The same forward, for where a kept tail starts: n stepped forward over continuation bytes,
 * i.e. the smallest n' >= n such that n' is len or s[n'] is not a continuation byte; len when
 * n >= len. Reads only s[n..len). */
size_t kx_utf8_ceil(const char *s, size_t len, size_t n);

#endif
