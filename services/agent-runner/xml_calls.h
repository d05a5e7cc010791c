/* xml_calls.h — the XML tool-call format that Kortix models write into their text
 * (kortix-behaviour.md §9):
 *
 *     <function_calls>
 *     <invoke name="execute_command">
 *     <parameter name="command">ls -la</parameter>
 *     </invoke>
 *     </function_calls>
 *
 * Pure functions (no I/O, no globals), so they are unit-tested on their own. As Kortix: only the
 * first <function_calls> block is used and only its first <invoke>; tag names are matched
 * without regard to case; there is no entity unescaping and no CDATA. Unlike Kortix, a block
 * that does not parse is reported as an error (with a message for the model) instead of being
 * ignored (Kortix issue #511). */
#ifndef RUNNER_XML_CALLS_H
#define RUNNER_XML_CALLS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

typedef enum xml_calls_result {
    XML_CALLS_NONE = 0, /* no "<function_calls>" in the text */
    XML_CALLS_FOUND,    /* *out describes the first invoke of the first block */
    XML_CALLS_ERROR,    /* a block is there but does not parse: out->error says why */
} xml_calls_result;

/* What the first block held. Strings are malloc'd and json_t references owned by the struct;
 * free everything with xml_call_clear. */
typedef struct xml_call {
    char *function_name;    /* the invoke's name ("" on error) */
    json_t *arguments;      /* object: parameter name -> typed value (see below) */
    json_t *raw_parameters; /* object: parameter name -> the value text as written */
    char *raw_xml;          /* the whole block, "<function_calls>" to "</function_calls>" */
    size_t block_start;     /* offset of "<function_calls>" in the text */
    size_t block_end;       /* offset just past "</function_calls>" (the text's length when
                                 the block is unterminated) */
    char error[256];        /* XML_CALLS_ERROR: what was wrong, in words for the model */
} xml_call;

/* Finds the first block of text[0..len) and parses its first <invoke name="X"> with its
 * <parameter name="P">value</parameter> children (name quoted with " or '). A value is stripped
 * of surrounding white space, then: JSON if it starts with '{' or '[' (kept as a string if it
 * is not valid JSON); true/false (any case) -> boolean; an integer -> integer; a decimal number
 * -> real; anything else -> string. A repeated parameter keeps its last value.
 * Returns XML_CALLS_NONE, XML_CALLS_FOUND or XML_CALLS_ERROR; on NONE *out is zeroed, on FOUND
 * and ERROR the caller must xml_call_clear(out). Out of memory is an ERROR too. */
xml_calls_result xml_calls_find(const char *text, size_t len, xml_call *out);

/* The same for the index-th <invoke> (from 0) of the first block: XML_CALLS_NONE when the block
 * has no such invoke (index > 0), so callers take invokes 0, 1, ... until NONE or their limit
 * (max_xml_tool_calls). An invoke without its </invoke> ends the walk with an ERROR. */
xml_calls_result xml_calls_find_at(const char *text, size_t len, size_t index, xml_call *out);

/* True when text holds a complete "<function_calls>" ... "</function_calls>" block; used while
 * streaming to stop reading once the one call of the turn is complete. */
bool xml_calls_block_complete(const char *text, size_t len);

/* The same test for a text that grows while the model streams, without searching it all again
 * each time: *scan (zero it before the first call) remembers what was searched. Between calls
 * the text may only grow (same prefix). */
typedef struct xml_scan {
    size_t from;     /* searched up to here */
    size_t open_end; /* just past "<function_calls>" once seen */
    bool open_seen;
} xml_scan;
bool xml_calls_scan(xml_scan *scan, const char *text, size_t len);

void xml_call_clear(xml_call *c);

/* Parses one parameter value as described above. Returns a new reference (NULL on OOM). */
json_t *xml_calls_value(const char *raw, size_t len);

#endif
