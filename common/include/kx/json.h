/* kx/json.h — jansson helpers, and the printer that matches Kortix's stream format.
 *
 * Kortix's frontend matches substrings of Python json.dumps output: ", " and ": " separators,
 * keys in insertion order, non-ASCII kept as UTF-8, control characters as lowercase \u00xx,
 * floats in their shortest round-trip form (0.1, not 0.10000000000000001). kx_json_dumps_py is
 * a small printer of its own because jansson differs from Python on the last two. */
#ifndef KX_JSON_H
#define KX_JSON_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include "kx/buf.h"

/* malloc'd string (free()), NULL on OOM. */
char *kx_json_dumps_py(const json_t *v);
/* The same text appended to b, for builders that write a larger text in one buffer (no copy,
 * no jansson tree around v). Out of memory (or v NULL) is b's sticky oom. */
void kx_json_put_py(kx_buf *b, const json_t *v);
/* s[0..n) appended to b as a JSON string literal escaped exactly as kx_json_dumps_py escapes
 * a string (bytes are copied as they are: the caller passes UTF-8). */
void kx_json_put_py_str(kx_buf *b, const char *s, size_t n);
/* Compact form for bodies sent to machines (LLM requests, protobuf fields). */
char *kx_json_dumps_compact(const json_t *v);
/* The same compact text appended to b (a request body written in one buffer, no tree around
 * v). false when the compact print refuses v (a string that is not UTF-8, nesting too deep,
 * v NULL) or memory ran out (then b->oom is set too); b may then hold part of the text. */
bool kx_json_put_compact(kx_buf *b, const json_t *v);
/* s[0..n) appended to b as a compact JSON string literal, as kx_json_dumps_compact prints a
 * string; false when s is not valid UTF-8 (jansson's json_string refuses it too) or on OOM. */
bool kx_json_put_compact_str(kx_buf *b, const char *s, size_t n);

/* json_loads for text whose integers may exceed json_int_t (PostgreSQL's jsonb prints 1e20
 * as 100000000000000000000): such an integer is read as a real instead of failing the whole
 * text; everything else as json_loads reads it (json_wide.c). error may be NULL. */
json_t *kx_json_loads_wide(const char *text, size_t flags, json_error_t *error);

/* Typed getters that treat a missing key or a wrong type alike: they return def. */
const char *kx_json_str(const json_t *obj, const char *key, const char *def);
long long kx_json_int(const json_t *obj, const char *key, long long def);
bool kx_json_bool(const json_t *obj, const char *key, bool def);

#endif
