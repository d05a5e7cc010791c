-- 017_run_update_triggers.sql — what agent_runs' row triggers cost Postgres per run (issue 12;
-- docs/performance.md, "Triggers of agent_runs: only where they do something").
--
-- 1. Token counting (migration 016) only for the runs of accounts that have limits.
--    agent_runs_count_tokens fired on every change of tokens_used (about 2 per run: the usage
--    of each model turn) and called PL/pgSQL that took the account's limits lock shared and
--    probed account_limits, for every account — an account without limits (almost all) paid
--    that on every turn for nothing. Now the run row says whether it is counted:
--    agent_runs.usage_counted, and the trigger's WHEN tests it, so a run of an account without
--    limits calls no function at all.
--      * A run is inserted with usage_counted = whether its account has a limits row (the insert
--        trigger decides it under the account's limits lock taken shared, as it decided
--        whether to count the run: kx_usage_enter).
--      * An account_limits row added (or given another account_id) marks the account's runs of
--        the current month counted, then counts them (kx_usage_mark, kx_usage_recount): first without the
--        limits lock (each run's row lock waits for a writer in flight on that run, which does
--        not want the limits lock: its run is not counted), then under the lock taken
--        exclusively once more for the runs created meanwhile (the lock waits for the
--        creations in flight, which saw no limits row; after it every run of the month is
--        committed and visible), and then sums. A change of tokens_used that committed before
--        a run was marked is in the sum; one after it is added by the trigger, which waits
--        for the operator's commit on the run's row lock (or, for a run that was counted
--        already, on the limits lock as in 016): nothing is counted twice or missed. The
--        runs of earlier months are not marked: their changes would go to counters of a past
--        month, which nothing reads.
--      * A counted run of an account whose limits row is deleted stays marked; its trigger
--        finds no limits row and adds nothing (the rule of 016, unchanged for counted runs).
--      * Known edge: a transaction that holds the row of one of the account's runs created in
--        the few moments between the operator's two marking passes and then creates a run of
--        the same account (an interrupting start in one transaction) can deadlock with the
--        operator's second pass; Postgres cancels one of the two (40P01) and nothing is
--        counted from the cancelled one.
--    The two counting calls of 016 (a run inserted with tokens, a change of tokens_used) are one
--    function, kx_usage_add_run_tokens; the lock-and-probe both triggers took, kx_usage_enter.
--
-- 2. updated_at without a PL/pgSQL call where the statement sets it. agent_runs_touch
--    (migration 001, kx_touch_updated_at) ran on every UPDATE of a run: the dispatch, the
--    dispatch sequence, the claim, each turn's usage, the end (5-6 per run). It now fires only
--    when the UPDATE left updated_at as it was (WHEN (NEW.updated_at IS NOT DISTINCT FROM
--    OLD.updated_at)); the scheduler's and the runner's statements set updated_at =
--    clock_timestamp() themselves (what the trigger wrote), every other writer still gets it
--    touched. A writer that sets updated_at to another value now keeps that value.

-- Every write of agent_runs and account_limits waits while the runs are marked below.
LOCK TABLE agent_runs IN SHARE ROW EXCLUSIVE MODE;
LOCK TABLE account_limits IN SHARE ROW EXCLUSIVE MODE;

ALTER TABLE agent_runs ADD COLUMN usage_counted boolean NOT NULL DEFAULT false;

-- The account's limits lock taken shared (no wait on other writers; waits only for an operator
-- adding a limits row), and whether the account has limits.
CREATE FUNCTION kx_usage_enter(p_account uuid) RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_advisory_xact_lock_shared(hashtext('kx-limits:' || p_account::text));
    RETURN EXISTS (SELECT 1 FROM account_limits WHERE account_id = p_account);
END $$;

-- p_tokens more tokens used by run p_run (of p_account, created at p_created), on its shard of
-- its month's counter.
CREATE FUNCTION kx_usage_add_run_tokens(p_account uuid, p_run uuid, p_created timestamptz,
                                        p_tokens bigint) RETURNS void
LANGUAGE sql VOLATILE AS $$
    SELECT kx_usage_add(p_account, 'tokens_month', kx_month_start(p_created),
                        hashtext(p_run::text) & 7, p_tokens)
$$;

-- Marks p_account's runs of this month counted (those not yet).
CREATE FUNCTION kx_usage_mark(p_account uuid) RETURNS void LANGUAGE sql VOLATILE AS $$
    UPDATE agent_runs SET usage_counted = true
    WHERE account_id = p_account AND created_at >= kx_month_start(now()) AND NOT usage_counted
$$;

-- Marks p_account's runs of this month counted and replaces its counters by the counts from
-- agent_runs (the caller holds the account's limits lock exclusively, or the table locks above).
CREATE OR REPLACE FUNCTION kx_usage_recount(p_account uuid) RETURNS void
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM kx_usage_mark(p_account);
    DELETE FROM account_usage WHERE account_id = p_account;
    INSERT INTO account_usage (account_id, kind, period_start, shard, amount)
    SELECT p_account, 'runs_day', kx_day_start(created_at), 0, count(*)
    FROM agent_runs WHERE account_id = p_account AND created_at >= kx_day_start(now())
    GROUP BY 3;
    INSERT INTO account_usage (account_id, kind, period_start, shard, amount)
    SELECT p_account, 'tokens_month', kx_month_start(created_at), hashtext(id::text) & 7,
           sum(tokens_used)
    FROM agent_runs WHERE account_id = p_account AND created_at >= kx_month_start(now())
    GROUP BY 3, 4;
END $$;

CREATE OR REPLACE FUNCTION kx_account_limits_counting() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('DELETE', 'UPDATE') THEN
        PERFORM pg_advisory_xact_lock(hashtext('kx-limits:' || OLD.account_id::text));
        DELETE FROM account_usage WHERE account_id = OLD.account_id;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        -- the marking pass before the lock (see the header: no wait on the lock while holding
        -- rows), then the lock, the runs created meanwhile, and the counts
        PERFORM kx_usage_mark(NEW.account_id);
        PERFORM pg_advisory_xact_lock(hashtext('kx-limits:' || NEW.account_id::text));
        PERFORM kx_usage_recount(NEW.account_id);
    END IF;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION kx_enforce_account_limits() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    refusal json;
BEGIN
    NEW.usage_counted := kx_usage_enter(NEW.account_id);
    IF NOT NEW.usage_counted THEN
        RETURN NEW; -- no row: no limits, no creation lock, no counters
    END IF;
    -- the account's creation lock (the gateway's KX_OVER_LIMIT=reject takes the same one):
    -- the counters read below hold every run a concurrent creation of this account committed
    PERFORM pg_advisory_xact_lock(hashtext(NEW.account_id::text));
    refusal := kx_account_refusal(NEW.account_id, NEW.metadata ->> 'model_name');
    IF refusal IS NOT NULL THEN
        RAISE EXCEPTION USING
            ERRCODE = CASE WHEN refusal ->> 'status' = '403' THEN 'KX403' ELSE 'KX429' END,
            MESSAGE = refusal -> 'detail' ->> 'message',
            DETAIL = (refusal -> 'detail')::text;
    END IF;
    PERFORM kx_usage_add(NEW.account_id, 'runs_day', kx_day_start(NEW.created_at), 0, 1);
    IF NEW.tokens_used <> 0 THEN
        PERFORM kx_usage_add_run_tokens(NEW.account_id, NEW.id, NEW.created_at, NEW.tokens_used);
    END IF;
    RETURN NEW;
END $$;

-- A change of a counted run's tokens_used, added to its account's month counter (if it still
-- has limits).
CREATE OR REPLACE FUNCTION kx_count_run_tokens() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF kx_usage_enter(NEW.account_id) THEN
        PERFORM kx_usage_add_run_tokens(NEW.account_id, NEW.id, NEW.created_at,
                                        NEW.tokens_used - OLD.tokens_used);
    END IF;
    RETURN NEW;
END $$;

DROP TRIGGER agent_runs_count_tokens ON agent_runs;
CREATE TRIGGER agent_runs_count_tokens BEFORE UPDATE OF tokens_used ON agent_runs
    FOR EACH ROW WHEN (NEW.usage_counted AND NEW.tokens_used IS DISTINCT FROM OLD.tokens_used)
    EXECUTE FUNCTION kx_count_run_tokens();

DROP TRIGGER agent_runs_touch ON agent_runs;
CREATE TRIGGER agent_runs_touch BEFORE UPDATE ON agent_runs
    FOR EACH ROW WHEN (NEW.updated_at IS NOT DISTINCT FROM OLD.updated_at)
    EXECUTE FUNCTION kx_touch_updated_at();

-- The runs of this month of the accounts that have limits now (016 counted them).
UPDATE agent_runs SET usage_counted = true
WHERE account_id IN (SELECT account_id FROM account_limits)
  AND created_at >= kx_month_start(now());
