-- 011_admission_indexes.sql — indexes that make the scheduler's admission statement
-- (services/scheduler/store.c, "sched_admit") cost O(batch), not O(active + waiting runs).
--
--   * agent_runs_waiting_idx: the runs waiting for admission (queued, never dispatched), per
--     account, oldest first. Admission finds the accounts that have waiting runs by skipping
--     through it (one probe per account) and reads each account's oldest waiting runs from it,
--     only as many as that account may start in this batch.
--   * agent_runs_active_idx: the active runs (running, or dispatched and not yet claimed) per
--     account: an account's active count is read from it, and only up to its limit.
-- A thread's one-active-run rule is checked per candidate on agent_runs_thread_active_idx
-- (migration 008).
CREATE INDEX IF NOT EXISTS agent_runs_waiting_idx ON agent_runs (account_id, created_at, id)
    WHERE status = 'queued' AND dispatched_at IS NULL;
CREATE INDEX IF NOT EXISTS agent_runs_active_idx ON agent_runs (account_id)
    WHERE status = 'running' OR (status = 'queued' AND dispatched_at IS NOT NULL);

-- Generic plans (docs/performance.md, "Every other statement: an audit of the plans"): a
-- prepared statement planned while the table looked empty takes any partial index whose
-- predicate it implies, and walks it whole.
--   * agent_runs_queued_idx (every queued run) gave admission and every dispatch-path update
--     such a walk of ALL queued runs. Its one remaining reader, the sweep (queued runs
--     dispatched over 10 s ago), gets an index of exactly those: dispatched and not claimed.
--   * agent_runs_thread_active_idx had the same predicate as agent_runs_account_active_idx,
--     so a count of an account's active runs could walk every active run of every account
--     through it. "thread_id IS NOT NULL" (always true: the column is NOT NULL) is implied by
--     a thread_id = ... lookup and by nothing else.
DROP INDEX IF EXISTS agent_runs_queued_idx;
CREATE INDEX IF NOT EXISTS agent_runs_redispatch_idx ON agent_runs (dispatched_at, created_at)
    WHERE status = 'queued' AND dispatched_at IS NOT NULL;
DROP INDEX IF EXISTS agent_runs_thread_active_idx;
CREATE INDEX IF NOT EXISTS agent_runs_thread_active_idx ON agent_runs (thread_id)
    WHERE status IN ('queued', 'running') AND thread_id IS NOT NULL;
