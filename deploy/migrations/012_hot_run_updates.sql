-- 012_hot_run_updates.sql — what a run costs Postgres per row written (issue 12;
-- docs/performance.md, "Per-row write cost of a run").
--
-- HOT updates of agent_runs. An UPDATE can be HOT (heap-only: no new entry in any index) when
-- it changes no column any index of the table mentions (key, INCLUDE, expression or partial
-- predicate) and the new row version fits on the same page. The touch trigger (migration 001)
-- sets updated_at on every UPDATE, and two indexes had updated_at as a key column, so no
-- update of a run was ever HOT: each one inserted into every index of the table, the GIN on
-- metadata included — the token-usage trigger's two updates per run (migration 005), the
-- scheduler's dispatch_seq and every other.
--   * agent_runs_notice_idx (updated_at) WHERE notice IS NOT NULL becomes (id) WHERE notice
--     IS NOT NULL. Its reader, the scheduler's sched_notices, takes a batch in the index's
--     order (notice IS NOT NULL ORDER BY id LIMIT n) — the runs with a notice, a handful
--     between a reap and its publication — and sorts the batch by updated_at from the rows.
--   * agent_runs_owner_idx (lease_owner, updated_at) becomes (lease_owner). Its reader, the
--     scheduler's sched_cleanup (is any run of this runner still running?), looks up
--     lease_owner only.
--   * agent_runs_metadata_idx, the GIN on metadata (Kortix's schema has it), is dropped: no
--     statement of any service searches agent_runs.metadata (only ->> of one row read by its
--     id); every run inserted, and every update that is not HOT, wrote one entry per key and
--     value of it.
--   * fillfactor 70: inserts leave 30 % of each page free, so that the new version of a row
--     updated soon after its insert (admission, the claim, the usage of each turn, the end)
--     finds room on the row's own page. Applies to pages written from now on (no rewrite).
-- Columns an update may now change and stay HOT: tokens_used, dispatch_seq, updated_at,
-- heartbeat_at, error, completed_at, started_at, attempt, claim_id, notice_epoch, metadata, ...
-- (tests/unit/test_runner_usage_hot.c checks that the usage update is HOT and that no index names
-- tokens_used, dispatch_seq or updated_at). Status, lease_epoch, dispatched_at and
-- lease_expires_at stay indexed: the updates that change them are not HOT.
-- On an existing deployment the index builds below are plain CREATE INDEX (the migration runs in
-- one transaction): writes to agent_runs and messages wait while agent_runs_owner_idx (every
-- run) and the two partial indexes are built.
DROP INDEX IF EXISTS agent_runs_notice_idx;
CREATE INDEX IF NOT EXISTS agent_runs_notice_idx ON agent_runs (id) WHERE notice IS NOT NULL;
DROP INDEX IF EXISTS agent_runs_owner_idx;
CREATE INDEX IF NOT EXISTS agent_runs_owner_idx ON agent_runs (lease_owner);
DROP INDEX IF EXISTS agent_runs_metadata_idx;
ALTER TABLE agent_runs SET (fillfactor = 70);

-- messages: the runner's fenced insert (~8 per run) wrote 5 indexes.
--   * messages_agent_run_id_idx is dropped: no statement reads messages by agent_run_id alone
--     (the insert's retry branch finds its row by message_id, the primary key).
--   * messages_agent_id_idx keeps the one lookup it serves, the foreign key's ON DELETE SET
--     NULL when an agent is deleted (agent_id = $1 implies agent_id IS NOT NULL), and no longer
--     holds the NULL of every message written without an agent (every message the runner
--     writes).
DROP INDEX IF EXISTS messages_agent_run_id_idx;
DROP INDEX IF EXISTS messages_agent_id_idx;
CREATE INDEX IF NOT EXISTS messages_agent_id_idx ON messages (agent_id) WHERE agent_id IS NOT NULL;

-- The runner's project naming asks, after each run, whether it was its project's first
-- (services/agent-runner/store.c, runner_project_first_run: another run of the project created
-- no later). No index of agent_runs led with project_id, so every run's question read every
-- run of every account (tests/unit/test_runner_plans.c).
CREATE INDEX IF NOT EXISTS agent_runs_project_created_idx ON agent_runs (project_id, created_at);
