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
--   * lease_revocations: a runner's lease on a run taken away (stopped, reaped, handed back:
--     any UPDATE that moves a running run's epoch on) is recorded for that runner by a trigger,
--     whoever made the change; heartbeat answers carry them, and the runner drops those runs at
--     once instead of working on until its next fenced write.
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
    ADD COLUMN notice_epoch bigint,
    ADD COLUMN dispatch_seq bigint;

ALTER TABLE agent_runs ALTER COLUMN max_attempts SET DEFAULT 2;

CREATE INDEX agent_runs_notice_idx ON agent_runs (updated_at) WHERE notice IS NOT NULL;
CREATE INDEX agent_runs_owner_idx ON agent_runs (lease_owner, updated_at);

CREATE TABLE lease_revocations (
    runner_id  text NOT NULL,
    run_id     uuid NOT NULL,
    epoch      bigint NOT NULL,          -- the run's epoch after the revocation
    revoked_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX lease_revocations_runner_idx ON lease_revocations (runner_id, revoked_at);

CREATE FUNCTION kx_revoke_lease() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO lease_revocations (runner_id, run_id, epoch)
    VALUES (OLD.lease_owner, OLD.id, NEW.lease_epoch);
    RETURN NULL;
END $$;

CREATE TRIGGER agent_runs_revoke AFTER UPDATE ON agent_runs FOR EACH ROW
    WHEN (OLD.status = 'running' AND NEW.lease_epoch <> OLD.lease_epoch
          AND OLD.lease_owner IS NOT NULL)
    EXECUTE FUNCTION kx_revoke_lease();
