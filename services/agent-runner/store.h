/* store.h — every SQL statement the agent-runner runs, and small typed wrappers around them.
 *
 * All writes are fenced by the run's lease epoch (docs/architecture.md, "A run's life"): a
 * message insert or a finish that matches no row means the run was taken away (stopped, reaped,
 * claimed again) and the caller must drop the run without writing or publishing anything more.
 *
 * Every write is idempotent (docs/architecture.md, "Run core"), so kx_db may retry it after a
 * lost connection, and a batch of them may be run again whole (run_ops.c). These functions
 * block on libpq: they are called only on the runner's database threads (rdb.h), each with the
 * kx_db its thread owns — never on the loop thread.
 *
 * The writes, the claim and the reads of a run also come in pipelined halves (kx_db_pipe_*, kx/db.h): *_send queues the
 * statement in the connection's open pipeline, *_recv reads its answer later, in send order,
 * with the same outcomes as the blocking call. */
#ifndef RUNNER_STORE_H
#define RUNNER_STORE_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include "kx/db.h"
#include "kx/err.h"

/* The statement table to give kx_db_connect (static lifetime). */
const kx_db_stmt *store_statements(void);

/* The run's agent and version as stored (agent_config.h reads them). Fields are "" / NULL when
 * there is no agent or no version. */
typedef struct store_agent {
    char agent_id[40];
    char version_id[40];
    char *config;   /* agent_versions.config as JSON text; NULL: no version */
    char *metadata; /* agents.metadata as JSON text; NULL: no agent */
} store_agent;
void store_agent_clear(store_agent *a);

/* What a successful claim returns. */
typedef struct store_claim {
    int64_t epoch;
    char thread_id[40];
    char account_id[40];
    char project_id[40];
    char model_name[128];  /* agent_runs.metadata.model_name, "" if none */
    int64_t started_at_ms; /* unix ms the claim set started_at to: the wall time counts from it */
} store_claim;

/* queued -> running for this runner (a fresh claim id each call; retried after a lost answer,
 * the statement recognises its own success). KX_OK and *claimed = true with *out filled; KX_OK and
 * *claimed = false when the run is not queued (someone else has it, or it was stopped); other
 * errors when the database failed (KX_ERR_NOMEM with *claimed true: the run is ours, its agent
 * could not be kept). */
kx_err store_claim_run(kx_db *db, const char *run_id, const char *owner, int64_t ttl_ms,
                       bool *claimed, store_claim *out);
/* The same with the caller's claim id (a caller that tries again after a lost answer passes
 * the same id: the statement then recognises its own success), blocking or in two pipelined
 * halves. The claim reads the run's agent too (what store_load_agent reads, in the same
 * statement): into *agent when agent is not NULL (store_agent_clear it; empty when not
 * claimed). */
kx_err store_claim_run_as(kx_db *db, const char *run_id, const char *owner, int64_t ttl_ms,
                          const char *claim_id, bool *claimed, store_claim *out,
                          store_agent *agent);
kx_err store_claim_run_send(kx_db *db, const char *run_id, const char *owner, int64_t ttl_ms,
                            const char *claim_id);
kx_err store_claim_run_recv(kx_db *db, bool *claimed, store_claim *out, store_agent *agent);

/* A saved messages row. */
typedef struct store_row {
    char message_id[40];
    char created_at[48]; /* ISO 8601, as Postgres prints timestamptz in JSON */
    char updated_at[48];
} store_row;

/* One messages row to write (store_insert_messages). message_id is the caller's fresh uuid for
 * this row; content_json/metadata_json are JSON texts. */
typedef struct store_new_row {
    const char *message_id;
    const char *type;
    bool is_llm;
    const char *content_json;
    const char *metadata_json;
} store_new_row;

/* What one statement writes at most: rows, and bytes of their JSON (a single row may be larger:
 * a statement always takes at least one). run_ops.c coalesces a batch's rows up to these. */
#define STORE_INSERT_MAX_ROWS 64
#define STORE_INSERT_MAX_BYTES (1024 * 1024)

/* Fenced insert of n rows (1..STORE_INSERT_MAX_ROWS) in ONE statement; locks the run row it
 * checks until the transaction ends. The rows get strictly increasing created_at in the order
 * given, all strictly after every message of the thread the statement can see (those of
 * earlier statements, of this transaction too): the thread reads back in this order
 * (ORDER BY created_at). updated_at = created_at. A retry after a lost answer writes nothing
 * twice and returns the rows the first try wrote, as they were; ids already written (by this
 * run) are returned as they are and the others written. out[i] is rows[i]'s row.
 * KX_ERR_CONFLICT when fenced (the run is not running with this epoch: nothing written).
 * KX_ERR_INVALID when n is out of range. */
kx_err store_insert_messages(kx_db *db, const char *run_id, int64_t epoch,
                             const store_new_row *rows, size_t n, store_row *out);

/* The same for one row. */
kx_err store_insert_message(kx_db *db, const char *run_id, int64_t epoch, const char *message_id,
                            const char *type, bool is_llm, const char *content_json,
                            const char *metadata_json, store_row *out);

/* store_insert_messages in two halves, for kx_db's pipeline (kx/db.h): _send queues the
 * statement in the open pipeline; _recv reads its answer (rows must be the same n rows). */
kx_err store_insert_messages_send(kx_db *db, const char *run_id, int64_t epoch,
                                  const store_new_row *rows, size_t n);
kx_err store_insert_messages_recv(kx_db *db, const store_new_row *rows, size_t n, store_row *out);

/* A run's last rows and its fenced finish in ONE statement (store.c,
 * runner_insert_messages_finish): store_insert_messages, then, in the same statement and only
 * when the rows were written, store_finish_run with status and error (and the tokens of the
 * assistant_response_end rows, as the insert with usage adds them). *won as store_finish_run's
 * (a retry after a lost answer reports the first try's win). KX_ERR_CONFLICT when fenced:
 * nothing written, nothing ended. The rows are the thread's newest when written, so a caller
 * whose last LLM row is the answer may use it for the end of an answered run (the condition of
 * store_finish_answered_send holds). Blocking, or in two pipelined halves. */
kx_err store_insert_finish(kx_db *db, const char *run_id, int64_t epoch, const store_new_row *rows,
                           size_t n, const char *status, const char *error, store_row *out,
                           bool *won);
kx_err store_insert_finish_send(kx_db *db, const char *run_id, int64_t epoch,
                                const store_new_row *rows, size_t n, const char *status,
                                const char *error);
kx_err store_insert_finish_recv(kx_db *db, const store_new_row *rows, size_t n, store_row *out,
                                bool *won);

/* Fenced finish: status "completed" or "failed", error NULL or the reason. *won is true when
 * this call ended the run (and so must publish the terminal event). */
kx_err store_finish_run(kx_db *db, const char *run_id, int64_t epoch, const char *status,
                        const char *error, bool *won);
kx_err store_finish_run_send(kx_db *db, const char *run_id, int64_t epoch, const char *status,
                             const char *error);
kx_err store_finish_run_recv(kx_db *db, bool *won);
/* The run "completed" after the model answered without a tool call, only if the thread's
 * newest LLM message is still an assistant message, pipelined. *won as above; when not won,
 * *ours says the run is still running with this epoch: the finish was declined (a newer
 * message came), not fenced. */
kx_err store_finish_answered_send(kx_db *db, const char *run_id, int64_t epoch);
kx_err store_finish_answered_recv(kx_db *db, bool *won, bool *ours);

/* Drain: running -> queued (fenced by epoch; epoch + 1; the attempt does not count; the
 * scheduler announces and re-dispatches it). why goes to agent_runs.error until the claim. */
kx_err store_handback_run(kx_db *db, const char *run_id, int64_t epoch, const char *why);
kx_err store_handback_run_send(kx_db *db, const char *run_id, int64_t epoch, const char *why);
/* Release: a run whose end could not be written is let go to the reaper (fenced by epoch; its
 * status stays running, its lease expires now, it names no runner; why goes to
 * agent_runs.error: store.c, SQL_RELEASE, statement runner_release_to_reaper). */
kx_err store_release_run_send(kx_db *db, const char *run_id, int64_t epoch, const char *why);
/* The answer of a hand-back's or a release's send. A server error is never KX_ERR_CONFLICT. */
kx_err store_let_go_recv(kx_db *db);

/* One LLM message of a thread, as stored. */
typedef struct store_msg {
    char type[32];
    char message_id[40];
    char *content; /* the jsonb as text (an object, or a string holding JSON); malloc'd */
    long long nth; /* its place among the thread's LLM rows, from 1 (a jump: rows left out) */
} store_msg;

/* The thread's is_llm_message rows in created_at order: its first one (the task) and the
 * newest ones up to max_bytes of text (the row that passes it included), so that a turn reads
 * at most about max_bytes + one message however long the thread (KX_CONTEXT_READ_MAX_MB; the
 * rows between are left out, as context_fit would drop them from the middle). *msgs is
 * malloc'd; free with store_msgs_free. */
kx_err store_load_llm_messages(kx_db *db, const char *thread_id, int64_t max_bytes,
                               store_msg **msgs, size_t *n);
kx_err store_load_llm_messages_send(kx_db *db, const char *thread_id, int64_t max_bytes);
kx_err store_load_llm_messages_recv(kx_db *db, store_msg **msgs, size_t *n);
void store_msgs_free(store_msg *msgs, size_t n);

/* The run's agent and version as stored (store_load_agent, the claim). */
kx_err store_load_agent(kx_db *db, const char *run_id, store_agent *out);
kx_err store_load_agent_send(kx_db *db, const char *run_id);
kx_err store_load_agent_recv(kx_db *db, store_agent *out);

/* Project naming: the run's project, its name (malloc'd) and whether this run is the
 * project's first. */
kx_err store_project_first_run(kx_db *db, const char *run_id, char *project_id, size_t pid_len,
                               char **name, bool *first);
/* Renames the project only if its name is still old_name; *renamed says whether it did. */
kx_err store_project_rename(kx_db *db, const char *project_id, const char *name,
                            const char *old_name, bool *renamed);
/* The first user message of the run's thread (its content as JSON text, malloc'd; NULL if
 * none). */
kx_err store_first_user_message(kx_db *db, const char *run_id, char **content);

#endif
