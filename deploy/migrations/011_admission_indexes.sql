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
