/* tests/harness/sample_run.h — the inputs of a small sample run, for tests and benches of what
 * the agent-runner prints (request bodies, rows): the messages it sends a model and the tool
 * schemas, and the reference tree of a request body's head, holding the bytes printers get wrong (2-, 3- and 4-byte UTF-8, quotes, backslash,
 * tab, newline, a control byte, DEL), a tool call and its result, and a real.
 *
 * Ownership: each function returns a new reference (json_decref it). */
#ifndef KX_TEST_SAMPLE_RUN_H
#define KX_TEST_SAMPLE_RUN_H

#include <jansson.h>

/* Index of the tool's result in kx_th_sample_messages() (a "tool" message, as a row's content). */
#define KX_TH_SAMPLE_TOOL_RESULT 2

/* [user, assistant with a tool call, the tool's result, user with a real]. */
json_t *kx_th_sample_messages(void);
/* Two tools in OpenAI's function form (view_tasks, read_file) taking a "path". */
json_t *kx_th_sample_tools(void);

/* The head of a chat request body as llm_openai.c built it in a jansson tree before it wrote
 * the text directly, the reference its tests and bench_llm compare with: {"model": model,
 * "messages": [{"role": "system", "content": system}, messages...], "stream": true,
 * "temperature": 0}. The caller adds the rest ("tools", ...). */
json_t *kx_th_ref_body_head(const char *model, const char *system, const json_t *messages);

#endif
