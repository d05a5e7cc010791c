/* demo_script.h — the demo model's script language: the newest user message, read line by line.
 *
 * A line whose first word is a directive is part of the script; every other line is ignored.
 *   call <tool> <json-object>   step: a native tool call (OpenAI tool_calls)
 *   xml <tool> <json-object>    step: the same call written in Kortix's XML format, as text
 *   say <text>                  step: a plain answer
 *   sleep <ms>                  modifier: wait that long before the first byte
 *   fail <status> <n>           modifier: answer the first n attempts with that HTTP status
 *   hang [<n>]                  modifier: never answer (the first n attempts; every one without n)
 * Modifiers attach to the next step; those after the last step attach to the final answer (the
 * turn the model takes when the steps have run out). A malformed directive line does not stop
 * the parse: it becomes a say-step whose text explains the error, so the model answers with the
 * explanation instead of crashing, and the remaining lines keep their meaning.
 *
 * demo_script_parse is a pure function (no I/O, no globals) so that unit tests and fuzzers can
 * drive it. Ownership: a parsed demo_script owns everything it points to; demo_script_free
 * releases it. */
#ifndef KX_DEMO_SCRIPT_H
#define KX_DEMO_SCRIPT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DEMO_MAX_SLEEP_MS 3600000 /* one hour: longer than any client waits */
#define DEMO_MAX_COUNT 1000000    /* largest n of fail / hang */

typedef enum demo_step_kind {
    DEMO_STEP_CALL, /* native tool call */
    DEMO_STEP_XML,  /* XML tool call in the text */
    DEMO_STEP_SAY,  /* plain text */
} demo_step_kind;

/* What modifiers ask of one step. All zero: answer at once. */
typedef struct demo_mods {
    int64_t sleep_ms; /* wait before the first byte */
    int fail_status;  /* 0 = no failure; else an HTTP status 400..599 */
    int fail_count;   /* attempts answered with fail_status (>= 1 when fail_status is set) */
    bool hang;        /* hold the connection without answering */
    int hang_count;   /* attempts that hang; 0 = every attempt */
} demo_mods;

typedef struct demo_step {
    demo_step_kind kind;
    char *tool;    /* CALL, XML: the tool name; NULL for SAY */
    json_t *args;  /* CALL, XML: the argument object (keys in written order); NULL for SAY */
    char *text;    /* SAY: the text (for an error step, the explanation); NULL otherwise */
    bool is_error; /* this SAY step stands for a malformed directive line */
    int line;      /* 1-based line of the directive in the message */
    demo_mods mods;
} demo_step;

typedef struct demo_script {
    demo_step *steps;
    size_t nsteps;
    demo_mods final_mods; /* modifiers written after the last step */
    size_t nerrors;       /* malformed lines (each became an error say-step) */
} demo_script;

/* Parses text (NUL-terminated; NULL is an empty message) into *out. Returns 0, or -1 when out of
 * memory (then *out is empty). Malformed lines are not a failure: see the top of this file. */
int demo_script_parse(const char *text, demo_script *out);
void demo_script_free(demo_script *s);

/* The step with this index, or NULL when the steps have run out (the final answer is due). */
const demo_step *demo_script_step(const demo_script *s, size_t index);
/* The modifiers for step index: that step's, or final_mods when the steps have run out. */
const demo_mods *demo_script_mods(const demo_script *s, size_t index);

#endif
