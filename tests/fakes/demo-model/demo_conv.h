/* demo_conv.h — what the demo model reads from a chat request's "messages": the script message,
 * which step is due, and the last tool result.
 *
 * - The script message is the newest message with role "user" that is not a tool result. In
 *   Kortix's XML mode a tool result is a user message whose content is a JSON object with the
 *   key "tool_execution"; those are skipped.
 * - The step index is the number of assistant messages after the script message.
 * - The last tool result is the content of the last message with role "tool", or of the last
 *   tool_execution user message, whichever comes later.
 * - A user message whose content has image parts ({"type": "image_url", "image_url": {"url":
 *   "data:<mime>;base64,..."}}, the runner's see_image images) is an attachment, not the
 *   script: its images are counted and described ("image/png 4096 bytes": the decoded size;
 *   "url" for a part that is not a base64 data URL) for the final answer to report.
 * - Content may be a string, null, or an array of parts ({"type": "text", "text": ...}); parts'
 *   texts are joined with "\n". Anything else is read as its JSON text.
 *
 * Pure (no I/O, no globals). Ownership: demo_conv owns its strings; demo_conv_free frees them. */
#ifndef KX_DEMO_CONV_H
#define KX_DEMO_CONV_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct demo_conv {
    char *first_user;       /* content of the first user message; "" if none */
    char *script;           /* content of the script message; NULL if there is none */
    size_t step_index;      /* assistant messages after the script message */
    char *last_tool_result; /* NULL if there is none */
    size_t prompt_chars;    /* characters of all message contents (for the usage estimate) */
    size_t nimages;         /* image parts in the request (OpenAI {"type": "image_url"}) */
    char *images;           /* "image/png 4096 bytes, ..." of those parts; NULL if none */
} demo_conv;

/* Reads messages (must be a JSON array). Returns 0; -1 with a message naming the problem in err
 * when an element is not an object with a string "role" (or on allocation failure). */
int demo_conv_read(const json_t *messages, demo_conv *out, char *err, size_t errlen);
void demo_conv_free(demo_conv *c);

/* True when text is a JSON object with the key "tool_execution". */
bool demo_is_tool_result(const char *text);

/* 64-bit FNV-1a over the first user message, the script message and the step index: the key
 * under which attempts of one step of one conversation are counted. */
uint64_t demo_conv_key(const demo_conv *c, size_t step_index);

/* 64-bit FNV-1a of len bytes, continuing from h (start with DEMO_FNV_OFFSET). */
#define DEMO_FNV_OFFSET 14695981039346656037ULL
uint64_t demo_fnv1a(uint64_t h, const void *data, size_t len);
/* Number of UTF-8 code points of s (bytes that are not continuation bytes); token estimates. */
size_t demo_utf8_chars(const char *s);

#endif
