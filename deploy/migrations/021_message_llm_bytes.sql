-- 021_message_llm_bytes.sql — the size of each LLM message, so that a turn reads a thread's
-- newest messages up to a bound in bytes (the agent-runner's runner_llm_messages) instead of
-- the whole thread.
--
-- Before, every turn read every is_llm_message row of its thread: a thread that had collected
-- a few hundred tool results of up to 1 MiB each (each turn's reads grow with the thread;
-- nothing limits a thread's length) brought hundreds of MB into the runner per turn — libpq's
-- result, a copy, the parsed JSON — for a context window of at most a few MB, in a process
-- that holds thousands of other runs. The bound must be on the text the runner receives: the
-- stored size (pg_column_size) is the compressed one, and a repetitive tool output compresses
-- a hundredfold. Computing octet_length(content::text) for every row at every read would
-- detoast the whole thread in Postgres instead; a stored generated column computes it once, at
-- insert, for LLM rows only (NULL for the statuses). Adding it rewrites the table once.
ALTER TABLE messages
    ADD COLUMN llm_bytes integer
    GENERATED ALWAYS AS (CASE WHEN is_llm_message THEN octet_length(content::text) END) STORED;
