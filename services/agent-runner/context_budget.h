/* context_budget.h — fitting a thread into a model's context window before each LLM call
 * (kortix-behaviour.md §10, made to always converge).
 *
 * Token estimate (no tokenizer): ceil(bytes * 10 / 23) per text (2.3 bytes per token), plus
 * CONTEXT_MSG_OVERHEAD tokens per message. Calibrated against OpenAI's o200k_base and
 * cl100k_base tokenizers (tests/bench/context_estimate.js): English prose 3.9 bytes/token, C
 * and JavaScript 3.6-3.7, indented JSON 3.3, a Kortix tool result holding an `ls -la` listing
 * 2.4, `ps aux` output 2.4-2.5, repeated ASCII 5.3. 2.3 is below every sample, so the estimate
 * over-counts (by 1.0-1.1x on listings, 1.7x on prose) and the budget holds; Anthropic's
 * tokenizer counts somewhat more than OpenAI's, which the margin absorbs (docs/performance.md,
 * "Context estimate").
 *
 * Budget per model: KX_CONTEXT_BUDGETS ("substring=tokens,...", first match wins), else
 * Kortix's table: "sonnet" 108 000, "gpt" 100 000, "gemini" 700 000, "deepseek" 100 000,
 * anything else 31 000 tokens. The system prompt and the tool schemas count against it.
 *
 * When the thread is over its budget (all in place, on the messages array):
 *   1. every message but the newest whose content is over T tokens is cut to T tokens' worth
 *      of bytes, ending with "... (truncated)", its message_id and a pointer to the
 *      expand_message tool; T starts at 4096 and halves, up to 6 passes (down to 128);
 *   2. the newest message is cut in the middle (head and tail kept) to what is left;
 *   3. messages are dropped from the middle (the first message and the newest kept), tool
 *      results with the assistant message that asked for them, a note in their place that
 *      says how many are left out (context_left_out_note: one note however many drops, and
 *      merged with a note the thread's read already left there), then context_repair;
 *   4. if the first and newest messages alone are still over, both are cut further.
 * The result always fits, whatever the stored rows hold: a thread never fails every later run
 * with the provider's "context too long" 400.
 *
 * Messages carry their row id in CONTEXT_ID_KEY (context_from_rows sets it), notes their count
 * in CONTEXT_LEFT_OUT_KEY; context_strip_ids removes both before the request is built. Pure
 * functions. */
#ifndef RUNNER_CONTEXT_BUDGET_H
#define RUNNER_CONTEXT_BUDGET_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CONTEXT_ID_KEY "_kx_message_id"
#define CONTEXT_LEFT_OUT_KEY "_kx_left_out"
#define CONTEXT_BYTES_PER_10_TOKENS 23 /* 2.3 bytes per token */
#define CONTEXT_MSG_OVERHEAD 4
#define CONTEXT_DEFAULT_BUDGET 31000

typedef struct context_fit_report {
    int64_t tokens_before, tokens_after; /* the messages' estimate (fixed part excluded) */
    size_t truncated;                    /* messages cut */
    size_t dropped;                      /* messages removed */
} context_fit_report;

int64_t context_text_tokens(size_t bytes);
int64_t context_message_tokens(const json_t *msg);
int64_t context_messages_tokens(const json_t *messages);

/* The budget of a model: overrides ("substring=tokens,..."; NULL or "" for none) first, then
 * Kortix's table. */
int64_t context_budget_for(const char *overrides, const char *model);
/* Whether overrides has that form: every item "substring=tokens" with a substring of 1..127
 * bytes and tokens an integer from 1 to 10^9. false with why set (naming the item) otherwise:
 * the runner refuses to start with KX_CONTEXT_BUDGETS it would silently half-ignore. */
bool context_budgets_valid(const char *overrides, char *why, size_t whylen);

/* Fits messages into budget - fixed_tokens (the system prompt and tool schemas). report may
 * be NULL. Returns 0, -1 on OOM (messages are then still valid, maybe not fitted). */
int context_fit(json_t *messages, int64_t budget, int64_t fixed_tokens,
                context_fit_report *report);

/* A user message that stands for count messages of the thread left out at its place (they do
 * not fit the model's context), so the model knows the conversation has a gap there; count is
 * kept in CONTEXT_LEFT_OUT_KEY. New reference; NULL on OOM. */
json_t *context_left_out_note(size_t count);

/* Removes CONTEXT_ID_KEY and CONTEXT_LEFT_OUT_KEY from every message. */
void context_strip_ids(json_t *messages);

#endif
