/* demo_body.h — the top-level fields of a chat request body that the demo model reads:
 * "messages" (an array, required), "stream" (true, false or null) and "model" (a string).
 *
 * The rest of the body (a real client's "tools" array holds most of it) is only checked to be
 * JSON, by a scan that builds nothing; only the "messages" value is parsed into a tree. When the
 * scan finds anything it does not accept at once (bad JSON, a wrong type, a number that might
 * overflow, a \u0000 or surrogate escape, deep nesting), the whole body is parsed with jansson
 * as before, so every rejected body gets the same error message it always got ("the request
 * body is not valid JSON: <jansson's reason> (line L, column C)", "\"messages\" is missing: it
 * must be an array of messages", ...), and a body the scan accepts is one jansson accepts too.
 *
 * Pure (no I/O, no globals). Ownership: demo_body owns messages and model; demo_body_free. */
#ifndef KX_DEMO_BODY_H
#define KX_DEMO_BODY_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct demo_body {
    json_t *messages; /* the "messages" array */
    char *model;      /* "model", or NULL when absent */
    bool stream;      /* "stream" is true */
    bool scanned;     /* read by the scan (false: by the full parse; for tests) */
} demo_body;

/* Reads text[0..len). Returns 0; -1 with the problem in why (as above), out zeroed. */
int demo_body_read(const char *text, size_t len, demo_body *out, char *why, size_t whylen);
void demo_body_free(demo_body *b);

#endif
