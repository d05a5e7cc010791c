/* args_scan.h — whether the arguments of a native tool call that is still streaming form one
 * whole JSON object yet (execute-on-stream starts the call as soon as they do), reading each
 * byte of them once however many deltas they come in.
 *
 * The scan follows strings (and their escapes) and the nesting of objects and arrays; once the
 * outermost object closes with nothing but white space after it, the text is parsed once with
 * jansson to be sure (the scan does not check everything, e.g. "{]" or a bad number), and that
 * verdict is kept. Anything but white space after the close, or a text that does not start
 * with '{', can never become a whole object: false for good. A provider that streams its
 * arguments in many small deltas each ending with '}' thus costs what its bytes cost, not a
 * parse of the whole text per delta (which stalled the runner's loop, and every run on it).
 *
 * Pure: no I/O, no globals; one scan per call; not thread-safe. */
#ifndef RUNNER_ARGS_SCAN_H
#define RUNNER_ARGS_SCAN_H

#include <stdbool.h>
#include <stddef.h>

typedef struct args_scan {
    size_t pos;   /* bytes of the text read so far */
    size_t depth; /* open objects and arrays */
    bool in_str, esc;
    bool closed; /* the outermost object closed */
    bool never;  /* cannot become one whole object */
    int verdict; /* the parse once closed: 1 an object, -1 not, 0 not parsed yet */
} args_scan;

/* Zeroes the scan (before a call's first bytes). */
void args_scan_reset(args_scan *a);

/* Reads what text[0..len) gained since the last look (a text may only grow between two calls;
 * a shorter one is scanned again from its start): true when it is one whole JSON object. */
bool args_scan_whole(args_scan *a, const char *text, size_t len);

#endif
