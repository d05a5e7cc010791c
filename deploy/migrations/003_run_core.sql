-- 003_run_core.sql — what the run core needs to be "exactly once" under faults
-- (docs/architecture.md, "Run core: states, leases, fencing, idempotent writes").
--   * runner_leases: ONE lease row per agent-runner instance. A heartbeat renews that row only,
--     whatever the number of runs the runner holds (O(1) per runner); a running run points to
--     its runner by agent_runs.lease_owner and keeps its own fencing epoch (lease_epoch).
--   * agent_runs.claim_id: the id the runner generated for the claim that made the run
--     running, so that a claim retried after a lost answer recognises its own success.
--   * agent_runs.notice: an outbox for what the reaper decided ('failed' or 'retried'): the
--     STOP and the stream event are published from it and it is cleared afterwards, so a reap
--     whose answer was lost, or a scheduler killed after the reap, still tells everyone.
--   * agent_runs.dispatch_seq: the KX_RUN_DISPATCH stream sequence of the run's last
--     dispatch; the sweep re-dispatches a queued run only when that message is gone.

CREATE TABLE runner_leases (
    runner_id    text PRIMARY KEY,
    expires_at   timestamptz NOT NULL,
    heartbeat_at timestamptz NOT NULL DEFAULT now(),
    capacity     integer NOT NULL DEFAULT 0
);

ALTER TABLE agent_runs
    ADD COLUMN claim_id     uuid,
    ADD COLUMN notice       text CHECK (notice IN ('failed', 'retried')),
    ADD COLUMN dispatch_seq bigint;

ALTER TABLE agent_runs ALTER COLUMN max_attempts SET DEFAULT 2;

CREATE INDEX agent_runs_notice_idx ON agent_runs (updated_at) WHERE notice IS NOT NULL;
CREATE INDEX agent_runs_owner_idx ON agent_runs (lease_owner, updated_at);
