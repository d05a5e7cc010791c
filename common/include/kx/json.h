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

/* malloc'd string (free()), NULL on OOM. */
char *kx_json_dumps_py(const json_t *v);
/* Compact form for bodies sent to machines (LLM requests, protobuf fields). */
char *kx_json_dumps_compact(const json_t *v);

/* Typed getters that treat a missing key or a wrong type alike: they return def. */
const char *kx_json_str(const json_t *obj, const char *key, const char *def);
long long kx_json_int(const json_t *obj, const char *key, long long def);
bool kx_json_bool(const json_t *obj, const char *key, bool def);

#endif
