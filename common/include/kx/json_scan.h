/* kx/json_scan.h — checking JSON text without building a jansson tree, for the scans that read
 * the common shapes of a document in one pass and leave the rest to jansson (the demo model's
 * request bodies, the agent-runner's SSE chunks). What the scan accepts jansson's parser
 * accepts too, with the same value; what it refuses may still be JSON (the caller then parses
 * it with jansson). The pieces here (white space, literals, numbers, strings) are the ones
 * both scans share; each keeps its own walk of objects and arrays. Pure; thread-safe. */
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

/* The position after the JSON white space (space, tab, newline, carriage return) at p. */
const unsigned char *kx_json_skip_ws(const unsigned char *p, const unsigned char *end);

/* The literal word (true, false or null) at p: the position after it, or NULL when the text at
 * p does not start with it (or is cut short of it). */
const unsigned char *kx_json_scan_literal(const unsigned char *p, const unsigned char *end,
                                          const char *word);

/* What kx_json_scan_number read of a number, for the caller to judge: each scan takes the
 * numbers jansson takes with the same value (no overflow), by limits of its own on these. */
typedef struct kx_json_number {
    int int_digits;  /* digits before the point */
    int frac_digits; /* digits after it; 0 when there is no fraction */
    bool has_exp;    /* an exponent follows */
    int exp_digits;  /* its digits, after its sign */
    bool in_range;   /* an integer (no fraction, no exponent) that fits a long long */
    long long value; /* its value when in_range, else 0 */
} kx_json_number;

/* The number at p (p < end) by JSON's grammar (RFC 8259: an optional '-', no leading zeros, a
 * fraction and an exponent of at least one digit each): the position after it, *out filled, or
 * NULL when the text at p is not one: no digit, a digit after a leading zero, a point or an
 * exponent without digits, or cut short there. */
const unsigned char *kx_json_scan_number(const unsigned char *p, const unsigned char *end,
                                         kx_json_number *out);

#endif
