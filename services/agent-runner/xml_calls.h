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
 * first <function_calls> block is used; tag names are matched without regard to case; there is
 * no entity unescaping and no CDATA. Unlike Kortix, every <invoke> of the block can be taken
 * (xml_calls_next; Kortix runs only the first), and a block that does not parse is reported as
 * an error (with a message for the model) instead of being ignored (Kortix issue #511). */
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

/* The most raw_xml holds when the call does not parse (it is saved with every tool row). */
#define XML_CALLS_EXCERPT_MAX 1024

/* What the first block held. Strings are malloc'd and json_t references owned by the struct;
 * free everything with xml_call_clear. */
typedef struct xml_call {
    char *function_name;    /* the invoke's name ("" on error) */
    json_t *arguments;      /* object: parameter name -> typed value (see below) */
    json_t *raw_parameters; /* object: parameter name -> the value text as written */
    char *raw_xml;          /* this invoke, "<invoke" to "</invoke>"; on ERROR an excerpt of
                               at most XML_CALLS_EXCERPT_MAX bytes from where it went wrong
                               (the invoke, else the block) */
    size_t block_start;     /* offset of "<function_calls>" in the text */
    size_t block_end;       /* offset just past "</function_calls>" (the text's length when
                                 the block is unterminated) */
    char error[256];        /* XML_CALLS_ERROR: what was wrong, in words for the model */
} xml_call;

/* A walk over the invokes of the first block of a text: the block and its end are found once,
 * and each invoke is searched from the previous one's end, so taking the N invokes of a block
 * costs O(block), not O(N x block). Zero it before the first xml_calls_next; the text must not
 * change during the walk. */
typedef struct xml_walk {
    bool started, done; /* done: NONE from now on */
    bool closed;        /* the block has its "</function_calls>" */
    size_t block_start; /* as in xml_call */
    size_t block_end;   /* as in xml_call */
    size_t body_end;    /* offset of "</function_calls>" (the text's length if unterminated) */
    size_t from;        /* the next invoke is searched from here */
    size_t invokes;     /* invokes seen */
    size_t work;        /* bytes searched so far: what the walk cost (tests check it) */
} xml_walk;

/* The next <invoke name="X"> of the first block of text[0..len) with its
 * <parameter name="P">value</parameter> children (name quoted with " or '). A value is stripped
 * of surrounding white space, then: JSON if it starts with '{' or '[' (kept as a string if it
 * is not valid JSON); true/false (any case) -> boolean; an integer -> integer; a decimal number
 * -> real; anything else -> string (as Kortix; xml_calls_apply_schema then gives the parameters
 * the tool wants as strings their text). A repeated parameter keeps its last value.
 * XML_CALLS_NONE when there is no block or no further invoke; XML_CALLS_ERROR when the block is
 * unterminated, has no invoke at all, or this invoke does not parse — an ERROR ends the walk
 * (NONE after it). On NONE *out is zeroed, on FOUND and ERROR the caller must
 * xml_call_clear(out). Out of memory is an ERROR too. */
xml_calls_result xml_calls_next(xml_walk *walk, const char *text, size_t len, xml_call *out);

/* The first invoke of the first block: xml_calls_next on a new walk. */
xml_calls_result xml_calls_find(const char *text, size_t len, xml_call *out);

/* The index-th invoke (from 0) of the first block, walking from the block's start (to take
 * several, use one walk instead): NONE when there is no such invoke or an earlier one did not
 * parse. */
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

/* Undoes the guesses of the value types where the tool's schema wants a string: each parameter
 * whose property in parameters (the "parameters" object of the tool's function schema: {"type":
 * "object", "properties": {...}}) has the type "string" (or only "string" and "null", also as
 * "anyOf" / "oneOf" branches: {"anyOf": [{"type": "string"}, {"type": "null"}]}) gets its
 * text as written (raw_parameters: stripped, nothing else) in c->arguments, so `{"a": 1}`, `[1,
 * 2]`, `007`, `1.50` and `True` reach a string parameter unchanged instead of as an object, an
 * array, 7, 1.5 and true. The other parameters (other types, not in the schema, no schema:
 * parameters NULL) keep their guessed values. Unlike Kortix (kortix-behaviour.md §9), which
 * hands the tool the guesses. false on OOM. */
bool xml_calls_apply_schema(xml_call *c, const json_t *parameters);

/* Parses one parameter value as described above. Returns a new reference (NULL on OOM). */
json_t *xml_calls_value(const char *raw, size_t len);

#endif
