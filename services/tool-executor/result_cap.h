/* result_cap.h — every tool result fits the bus.
 *
 * A ToolResult travels in one NATS message (max_payload, 1 MiB by default). A tool's output
 * can be larger than its source suggests: the sandbox caps a command's raw bytes, but JSON
 * escapes them (a '"' becomes two bytes, a control byte six). An output over the budget is
 * replaced by a JSON string holding its head and its tail (cut at character boundaries) and a
 * note saying how much was cut — never dropped, never turned into a timeout. The success flag
 * and the status of the call are kept.
 * Pure; unit tested in tests/unit/test_tool_executor_runs.c. */
#ifndef TE_RESULT_CAP_H
#define TE_RESULT_CAP_H

#include <stdbool.h>
#include <stddef.h>

/* The budget for output_json given the connection's max_payload: what is left after the
 * ToolResult's other fields, the headers and a margin. */
size_t te_result_budget(size_t max_payload);

/* If strlen(*output_json) > budget, replaces *output_json (malloc'd; freed here) with a capped
 * JSON string of at most budget bytes and returns true. Returns false when nothing was cut
 * (or when memory ran out: then the output is replaced by a short note that says so). */
bool te_result_cap(char **output_json, size_t budget);

#endif
