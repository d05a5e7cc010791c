/* text.h — small UTF-8 helpers for text that comes from clients (form fields, prompts).
 *
 * Python counts characters (code points), not bytes; Kortix names a project after the first
 * 30 characters of the prompt. These helpers do the same in C without cutting a multi-byte
 * sequence in half. */
#ifndef GW_TEXT_H
#define GW_TEXT_H

#include <stdbool.h>
#include <stddef.h>

/* The project name for a prompt: the prompt itself when it has at most max_chars characters,
 * else its first max_chars characters followed by "...". malloc'd (caller frees); NULL on OOM.
 * s must be valid UTF-8. */
char *gw_project_name(const char *s, size_t max_chars);

/* A prompt or message is stored, then travels inside bus messages (its run's events, the LLM
 * request): text larger than max_bytes (KX_MAX_PROMPT_BYTES, well below NATS' 1 MB
 * max_payload) is refused with a 413 naming the field, the size and the limit. True when it
 * fits. */
struct gw_reply;
bool gw_text_fits(const char *field, const char *s, size_t max_bytes, struct gw_reply *reply);

/* Characters (code points, not bytes) of valid UTF-8 text s. */
size_t gw_utf8_chars(const char *s);
/* Short fields (a name, a message type, a model name) have a cap in characters (Python's len):
 * text s (NULL fits) of more than max_chars is refused with a 400 naming the field, its length
 * and the cap. True when it fits. */
bool gw_text_chars_fit(const char *field, const char *s, size_t max_chars, struct gw_reply *reply);

/* The caps of docs/api.md ("Validation") shared by several routes. */
#define GW_MODEL_NAME_MAX_CHARS 256

#endif
