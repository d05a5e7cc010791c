/* kx/json_scan.h — checking JSON text without building a jansson tree, for the scans that read
 * the common shapes of a document in one pass and leave the rest to jansson (the demo model's
 * request bodies, the agent-runner's SSE chunks). What the scan accepts jansson's parser
 * accepts too, with the same value; what it refuses may still be JSON (the caller then parses
 * it with jansson). Pure; thread-safe. */
#ifndef KX_JSON_SCAN_H
#define KX_JSON_SCAN_H

#include <stdbool.h>

/* The string literal at p (p[0] == '"', p < end): the position after its closing quote, or
 * NULL when it is not one the scan accepts: unterminated, a control character, a bad escape,
 * \u0000 or a surrogate escape (jansson refuses \u0000 and lone surrogates; pairs are left to
 * it too), bytes that are not UTF-8. *escaped tells whether it held a backslash. */
const unsigned char *kx_json_scan_string(const unsigned char *p, const unsigned char *end,
                                         bool *escaped);
/* The value of the four hex digits at p (which must hold 4 bytes), or -1. */
int kx_json_hex4(const unsigned char *p);

#endif
