/* project_name.h — project auto-naming (Kortix generates a project's name from its first
 * request with a small model and max_tokens 20): after the first run of a new project ends, the
 * runner asks KX_NAMING_MODEL (default: the run's model) for a short title of the project's
 * first user message and writes it to projects.name — only if the name is still the one the
 * gateway gave it (nobody renamed the project meanwhile). Naming runs after the run's terminal
 * event, with no tools: its reads and its write on a database thread (rdb.h), the model call on
 * the loop; any failure (model down, empty title, database) is logged
 * and changes nothing: it never fails a run. KX_PROJECT_NAMING=0 turns it off.
 *
 * Ownership: each naming request owns itself until its answer; project_name_cancel_all drops
 * those in flight (shutdown, before the LLM client is freed). Loop thread only. */
#ifndef RUNNER_PROJECT_NAME_H
#define RUNNER_PROJECT_NAME_H

#include <stddef.h>
#include "runner.h"

/* Starts naming the run's project if this run was the project's first. */
void project_name_after_run(runner *o, const char *run_id, const char *run_model);

/* The title from a model's answer: quotes, markdown marks and white space trimmed, one line,
 * at most PROJECT_NAME_MAX bytes (cut at a character boundary). false when nothing is left. */
#define PROJECT_NAME_MAX 80
bool project_name_clean(const char *answer, char *out, size_t outlen);

void project_name_cancel_all(void);

#endif
