-- 015_message_write_cost.sql — what the runner's message inserts cost Postgres per run (issue
-- 12; docs/performance.md, "Message writes: usage in the insert, one index less").
--
-- Token usage (migration 005): agent_runs.tokens_used is still the sum of the run's turns'
-- usage, counted once per inserted assistant_response_end row, in the transaction that inserts
-- it. What changes is who adds it for the runner's rows:
--   * kx_turn_tokens(content): a turn's tokens, the rule of 005 as one inlinable SQL function
--     (content.usage.total_tokens; anything not a number counts 0; clamped to 0..10^12).
--   * The runner's fenced insert (services/agent-runner/store.c, runner_insert_messages) adds
--     the usage of the rows it actually inserted (its RETURNING: a retried batch inserts
--     nothing, ON CONFLICT, and so adds nothing) to its run in the same statement — one UPDATE
--     per batch that carries usage, none otherwise — and first sets kx.usage_counted_ids to
--     the batch's message ids for the transaction (set_config(..., true)).
--   * The row trigger messages_run_usage skips a row whose message_id is in that setting (the
--     statement that inserted it counted it); every other row, of any writer, it counts as
--     before. A message id is inserted once (primary key), so a row skipped is exactly a row
--     the runner's statement inserted and counted, even when other inserts follow in the same
--     transaction; the setting ends with the transaction.
--   Before, each assistant_response_end row (2 per run in the issue-12 benchmark) ran the
--   PL/pgSQL trigger and its own UPDATE of agent_runs (~0.16 ms each).
--
-- Indexes of messages. messages_thread_created_idx (thread_id, created_at) and the partial
-- messages_thread_llm_idx (thread_id, created_at) WHERE is_llm_message become one index,
-- (thread_id, created_at, is_llm_message), under the first one's name. Each LLM row was written
-- to both (the runner's assistant and tool rows and the gateway's user row: 4 of a run's 16
-- rows in the issue-12 benchmark); now every row is one entry. The LLM history still reads only
-- the LLM rows from the heap: "is_llm_message" is a condition on the index's third column,
-- tested on the index entries (dropping the partial index alone would have read and dropped
-- every non-LLM row of the thread — 12 of a run's 16 — on each of the 3 loads of a run, the
-- whole history of a long thread). The entry grows from 32 to 40 bytes; the index of both
-- together is as big as the two were.
-- The indexes left, and the statements that read each:
--   * messages_pkey (message_id): the fenced insert's ON CONFLICT and its retry branch; the
--     tool-executor's task_list_update / message_get; the gateway's one-message delete.
--   * messages_thread_created_idx (thread_id, created_at, is_llm_message): the runner's LLM
--     history (runner_llm_messages, 3 per run: thread_id = $1 AND is_llm_message, in
--     created_at order), the fenced insert's newest row of the thread (one backward step), the
--     gateway's message lists (gw_messages_asc/desc), thread and project deletes and the thread
--     list's message counts, the tool-executor's task list (thread_id, type filter,
--     created_at order), the runner's first user message (project naming), the foreign key's
--     ON DELETE CASCADE from threads.
--   * messages_agent_id_idx (agent_id) WHERE agent_id IS NOT NULL (012): the foreign key's ON
--     DELETE SET NULL from agents.
-- On an existing deployment the index build below is a plain CREATE INDEX (the migration runs
-- in one transaction): writes to messages wait while it reads the table once.

CREATE FUNCTION kx_turn_tokens(p_content jsonb) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN jsonb_typeof(p_content -> 'usage' -> 'total_tokens') = 'number'
                THEN greatest(0, least(floor((p_content -> 'usage' ->> 'total_tokens')::numeric),
                                       1000000000000))::bigint
                ELSE 0 END
$$;

CREATE OR REPLACE FUNCTION kx_record_run_usage() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    n bigint := kx_turn_tokens(NEW.content);
BEGIN
    IF n > 0 THEN
        UPDATE agent_runs SET tokens_used = tokens_used + n WHERE id = NEW.agent_run_id;
    END IF;
    RETURN NULL;
END $$;

DROP TRIGGER messages_run_usage ON messages;
CREATE TRIGGER messages_run_usage AFTER INSERT ON messages FOR EACH ROW
    WHEN (NEW.type = 'assistant_response_end' AND NEW.agent_run_id IS NOT NULL
          AND coalesce(strpos(current_setting('kx.usage_counted_ids', true),
                              NEW.message_id::text), 0) = 0)
    EXECUTE FUNCTION kx_record_run_usage();

CREATE INDEX messages_thread_created_llm_idx ON messages (thread_id, created_at, is_llm_message);
DROP INDEX IF EXISTS messages_thread_llm_idx;
DROP INDEX IF EXISTS messages_thread_created_idx;
ALTER INDEX messages_thread_created_llm_idx RENAME TO messages_thread_created_idx;
