-- 014_admission_bounds.sql — what creating and admitting a run costs Postgres (issue 12;
-- docs/performance.md, "Admission and run creation: Postgres per run").
--
-- admission_bounds: per account, an upper bound on its active runs (running, or dispatched
-- and not yet claimed), so that an admission pass need not count them (services/scheduler/
-- admit.c, "Counting"; store.c "sched_admit"). Counting an account's active runs reads them
-- all up to KX_MAX_PARALLEL_RUNS: with a limit in the thousands, every pass read every active
-- run of the account (about 2 000 index entries and row versions per pass in the issue-12
-- throughput benchmark, ~0.7 ms).
--   * A run becomes active only through admission, whose passes run one at a time (the
--     transaction-scoped advisory lock) and add the runs they admit to the bound in their own
--     transaction; runs stop being active elsewhere (claims keep them active; ends, stops and
--     reaps lower the true count), which only makes the bound looser. So it stays an upper
--     bound across scheduler replicas, restarts and crashes.
--   * A pass trusts it only while bound + batch < limit (then the account has room for the
--     whole batch whatever the exact count: the pass decides exactly as an exact count would)
--     and for SCHED_BOUND_MAX_AGE_MS (1 s) after the count it started from; otherwise it
--     counts (up to the limit, as before) and writes the count plus its admissions, if the
--     next pass could trust that (more than a batch of room left): with the default limit
--     of 3, admission writes no row here.
--   * The 1 s also bounds what the rare paths that make a run active outside admission (a
--     runner claiming a queued run that a stale dispatch named; the sweep's re-dispatch of a
--     run given back meanwhile) can add unseen: they overran the limit before this too, until
--     the runs ended.
--   * The scheduler's cleanup deletes rows not counted for an hour.
CREATE TABLE IF NOT EXISTS admission_bounds (
    account_id uuid PRIMARY KEY,
    active_max bigint NOT NULL,
    counted_at timestamptz NOT NULL
);

-- Indexes no statement reads, written by every run created and (on agent_runs) by each of the
-- updates of a run that are not HOT (admission, the claim, the end): each cost an index entry
-- per row version (docs/performance.md, "Admission and run creation: Postgres per run").
--   * agent_runs_thread_active_idx (thread_id) WHERE status IN ('queued', 'running'): every
--     statement that asks for a thread's active runs reads agent_runs_thread_id_idx (the test
--     is written "(…) IS TRUE", so that no partial index on status fits it; migration 011,
--     services/gateway/store.c).
--   * agent_runs_account_active_idx (account_id) WHERE status IN ('queued', 'running'): its
--     one reader, the gateway's KX_OVER_LIMIT=reject count (gw_account_active), now reads the
--     same runs as the two sets agent_runs_active_idx and agent_runs_waiting_idx hold.
--   * agent_runs_owner_idx (lease_owner) holds only the runs that have an owner: a run gets
--     one at its claim; its reader (sched_cleanup: lease_owner = a runner id) never asks for
--     NULL.
--   * threads_account_id_idx, threads_created_at_idx, threads_metadata_idx (GIN),
--     projects_account_id_idx, projects_created_at_idx (Kortix's schema has them): every
--     statement that reads an account's threads or projects asks for the live ones and reads
--     threads_account_live_idx / projects_account_live_idx (migration 008); none reads them by
--     creation time alone or searches threads.metadata.
DROP INDEX IF EXISTS agent_runs_thread_active_idx;
DROP INDEX IF EXISTS agent_runs_account_active_idx;
DROP INDEX IF EXISTS agent_runs_owner_idx;
CREATE INDEX IF NOT EXISTS agent_runs_owner_idx ON agent_runs (lease_owner)
    WHERE lease_owner IS NOT NULL;
DROP INDEX IF EXISTS threads_account_id_idx;
DROP INDEX IF EXISTS threads_created_at_idx;
DROP INDEX IF EXISTS threads_metadata_idx;
DROP INDEX IF EXISTS projects_account_id_idx;
DROP INDEX IF EXISTS projects_created_at_idx;
