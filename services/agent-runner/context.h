/* context.h — what the model sees of a thread: its LLM messages (messages.is_llm_message) in
 * created_at order, turned into OpenAI chat messages.
 *
 * messages.content may be a jsonb object or a jsonb string that itself holds JSON (Kortix's
 * writers do both); both are accepted, and a string that is not JSON becomes the text of a
 * message whose role follows the row's type. The list is also made acceptable to strict
 * OpenAI-compatible servers: an assistant's tool_calls that never got a result (the run was
 * stopped mid-call) get a synthetic tool result, and a tool result that answers no preceding
 * call becomes a user message. Where the read left rows out (KX_CONTEXT_READ_MAX_MB: a turn reads
 * the first row and the newest ones), a note says how many (context_left_out_note). */
#ifndef RUNNER_CONTEXT_H
#define RUNNER_CONTEXT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "kx/db.h"
#include "kx/err.h"
#include "store.h"

/* The text given to the model for a tool call whose result was never saved. */
#define CONTEXT_MISSING_RESULT "the tool call did not complete: the run was stopped or failed"

/* The thread's LLM messages from its rows (store_load_llm_messages, or its pipelined halves)
 * into *messages (a new json array; caller json_decref's) and the type of the newest row into
 * last_type ("" when the thread has none). */
kx_err context_from_rows(const store_msg *rows, size_t n, json_t **messages, char *last_type,
                         size_t last_type_len);

/* The pure part, for tests: one stored row (type, content as text) as a chat message (new
 * reference, NULL only on OOM), and the repair pass over a whole list (in place). */
json_t *context_message_from_row(const char *type, const char *content_text);
void context_repair(json_t *messages);

/* ---- see_image: an image for the next model call ---------------------------------------- */

#define CONTEXT_IMAGE_MAX_BYTES (10 * 1024 * 1024)

/* The image a see_image call asked for (the executor's result carries this reference, not the
 * bytes: they do not fit the bus). */
typedef struct context_image_ref {
    char file_path[600];
    char mime_type[32];
    int64_t size;
} context_image_ref;

/* Whether the newest tool results (the messages after the last assistant message) hold a
 * successful see_image result: its reference (the newest one) into *out. Pure. */
bool context_pending_image(const json_t *messages, context_image_ref *out);
/* A user message carrying the image as an OpenAI image part (a data URL), after a text part
 * naming it. New reference; NULL on OOM. */
json_t *context_image_message(const context_image_ref *ref, const unsigned char *data, size_t len);
/* The same without the image, saying why it could not be loaded. */
json_t *context_image_failed_message(const context_image_ref *ref, const char *why);

#endif
