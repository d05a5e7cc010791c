-- 016_account_usage_counters.sql — an account's quota check in O(1), not O(its runs of the
-- day / month) (issue 12: 10 000 runs in one account; docs/performance.md, "Account quotas:
-- counters, not counts"; docs/operations.md, "Account limits").
--
-- Before, every run created in an account with an account_limits row (migration 005's BEFORE
-- INSERT trigger, kx_account_refusal; the gateway's own pre-check; GET billing/check-status)
-- counted the account's runs since 00:00 UTC and summed tokens_used over its runs since the
-- 1st of the month: one index entry and row version read per run (tests/bench/bench_quota.c:
-- 0.21 ms of Postgres CPU per creation at ~300 runs today, 0.59 ms at 1 000, 3.5 ms at 10 000,
-- against 0.10-0.19 ms without limits; GET billing/check-status 0.39 ms -> 8.0 ms).
--
-- account_usage holds those two figures as counters, kept only for accounts that have an
-- account_limits row, and exact while the row exists:
--   * runs_day (shard 0): the runs created in the UTC day period_start (by created_at). The
--     run insert trigger adds 1 when it lets a run through, under the account's creation lock
--     (as before: concurrent creations of one account are serialised and each one's check sees
--     the others' counts; a refused or rolled-back creation adds nothing, the same
--     transaction).
--   * tokens_month (shards 0..7): the tokens_used of the runs created in the UTC month
--     period_start. Every change of agent_runs.tokens_used (the runner's fenced insert, the
--     usage trigger of 005/015, anyone's UPDATE) adds its delta in its own transaction, to the
--     shard (hash of the run id) & 7: the runner's 16 connections adding usage for one busy
--     account update 8 rows, not one hot row, and take no lock the creations take. A run
--     inserted with tokens_used > 0 adds it too.
--   * The check reads one row (runs) and at most 8 (tokens): committed values, as the counts
--     read committed rows.
-- Exactness where counting starts: an account_limits row inserted (or given another
-- account_id) counts the account's runs of the current day and tokens of the current month
-- from agent_runs once, in the operator's transaction, after taking the account's limits lock
-- ('kx-limits:' || account) exclusively; every run insert and token change takes it shared
-- (no contention among writers) before it looks for a limits row. So a writer that saw no
-- limits row has committed before the recount reads, and a writer after it waits for the
-- operator's commit and then sees the row: nothing is counted twice or missed. Deleting the
-- row deletes the account's counters (an account without limits keeps none).
-- Differences from the counts, all at the edges: a run belongs to the day / month of its own
-- created_at (a count with created_at >= start counted a run with a future created_at in
-- today's figure too; nothing writes one); rows of past periods stay (one per day and 8 per
-- month per limited account; the scheduler's cleanup does not delete them yet).
-- The migration counts the accounts that have limits now, with writes to agent_runs blocked
-- until it commits (SHARE ROW EXCLUSIVE: no write of agent_runs in flight is missed).

LOCK TABLE agent_runs IN SHARE ROW EXCLUSIVE MODE;
LOCK TABLE account_limits IN SHARE ROW EXCLUSIVE MODE;

CREATE TABLE account_usage (
    account_id   uuid NOT NULL,
    kind         text NOT NULL CHECK (kind IN ('runs_day', 'tokens_month')),
    period_start timestamptz NOT NULL,
    shard        smallint NOT NULL DEFAULT 0 CHECK (shard BETWEEN 0 AND 7),
    amount       bigint NOT NULL,
    PRIMARY KEY (account_id, kind, period_start, shard)
);

CREATE FUNCTION kx_day_start(p_at timestamptz) RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT date_trunc('day', p_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
$$;

CREATE FUNCTION kx_month_start(p_at timestamptz) RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT date_trunc('month', p_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
$$;

CREATE FUNCTION kx_usage_add(p_account uuid, p_kind text, p_period timestamptz, p_shard integer,
                             p_amount bigint) RETURNS void
LANGUAGE sql VOLATILE AS $$
    INSERT INTO account_usage AS u (account_id, kind, period_start, shard, amount)
    VALUES (p_account, p_kind, p_period, p_shard, p_amount)
    ON CONFLICT (account_id, kind, period_start, shard)
    DO UPDATE SET amount = u.amount + EXCLUDED.amount
$$;

-- The account's usage of kind in the period starting at p_period (0 when none is recorded).
CREATE FUNCTION kx_usage_get(p_account uuid, p_kind text, p_period timestamptz) RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT coalesce(sum(amount), 0)::bigint FROM account_usage
    WHERE account_id = p_account AND kind = p_kind AND period_start = p_period
$$;

-- Counts p_account's runs of today and tokens of this month from agent_runs, replacing its
-- counters (the caller holds the account's limits lock exclusively, or the table locks above).
CREATE FUNCTION kx_usage_recount(p_account uuid) RETURNS void LANGUAGE plpgsql VOLATILE AS $$
BEGIN
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

CREATE FUNCTION kx_account_limits_counting() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('DELETE', 'UPDATE') THEN
        PERFORM pg_advisory_xact_lock(hashtext('kx-limits:' || OLD.account_id::text));
        DELETE FROM account_usage WHERE account_id = OLD.account_id;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        PERFORM pg_advisory_xact_lock(hashtext('kx-limits:' || NEW.account_id::text));
        PERFORM kx_usage_recount(NEW.account_id);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER account_limits_counting AFTER INSERT OR DELETE OR UPDATE OF account_id
    ON account_limits FOR EACH ROW EXECUTE FUNCTION kx_account_limits_counting();

-- 005's rule, reading the counters instead of counting (messages and JSON unchanged).
CREATE OR REPLACE FUNCTION kx_account_refusal(p_account uuid, p_model text) RETURNS json
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    l account_limits;
    used bigint;
    since timestamptz;
BEGIN
    SELECT * INTO l FROM account_limits WHERE account_id = p_account;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    IF l.allowed_models IS NOT NULL AND p_model IS NOT NULL
       AND NOT (p_model = ANY (l.allowed_models)) THEN
        RETURN json_build_object('status', 403, 'detail', json_build_object(
            'message', format('Your account may not use the model %s. Allowed models: %s',
                              p_model, CASE WHEN cardinality(l.allowed_models) = 0
                                            THEN '(none: only the default model)'
                                            ELSE array_to_string(l.allowed_models, ', ') END),
            'allowed_models', to_json(l.allowed_models)));
    END IF;
    IF l.runs_per_day IS NOT NULL THEN
        since := kx_day_start(now());
        used := kx_usage_get(p_account, 'runs_day', since);
        IF used >= l.runs_per_day THEN
            RETURN json_build_object('status', 429, 'detail', json_build_object(
                'message', format('Daily run quota reached: %s of %s runs started today (UTC). '
                                  'It resets at %s.', used, l.runs_per_day,
                                  to_char(since + interval '1 day', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')),
                'quota', 'runs_per_day', 'used', used, 'limit', l.runs_per_day,
                'resets_at', to_char(since + interval '1 day', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')));
        END IF;
    END IF;
    IF l.tokens_per_month IS NOT NULL THEN
        since := kx_month_start(now());
        used := kx_usage_get(p_account, 'tokens_month', since);
        IF used >= l.tokens_per_month THEN
            RETURN json_build_object('status', 429, 'detail', json_build_object(
                'message', format('Monthly token quota reached: %s of %s tokens used this month '
                                  '(UTC). It resets at %s.', used, l.tokens_per_month,
                                  to_char(since + interval '1 month', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')),
                'quota', 'tokens_per_month', 'used', used, 'limit', l.tokens_per_month,
                'resets_at', to_char(since + interval '1 month', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')));
        END IF;
    END IF;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION kx_enforce_account_limits() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    refusal json;
BEGIN
    -- shared: no wait on other writers; waits only for an operator's limits row being added
    PERFORM pg_advisory_xact_lock_shared(hashtext('kx-limits:' || NEW.account_id::text));
    IF NOT EXISTS (SELECT 1 FROM account_limits WHERE account_id = NEW.account_id) THEN
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
        PERFORM kx_usage_add(NEW.account_id, 'tokens_month', kx_month_start(NEW.created_at),
                             hashtext(NEW.id::text) & 7, NEW.tokens_used);
    END IF;
    RETURN NEW;
END $$;

-- A change of a run's tokens_used, added to its account's month counter (if it has limits).
CREATE FUNCTION kx_count_run_tokens() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock_shared(hashtext('kx-limits:' || NEW.account_id::text));
    IF EXISTS (SELECT 1 FROM account_limits WHERE account_id = NEW.account_id) THEN
        PERFORM kx_usage_add(NEW.account_id, 'tokens_month', kx_month_start(NEW.created_at),
                             hashtext(NEW.id::text) & 7, NEW.tokens_used - OLD.tokens_used);
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER agent_runs_count_tokens BEFORE UPDATE OF tokens_used ON agent_runs
    FOR EACH ROW WHEN (NEW.tokens_used IS DISTINCT FROM OLD.tokens_used)
    EXECUTE FUNCTION kx_count_run_tokens();

-- GET /api/billing/check-status: usage from the counters for an account with limits (without
-- limits it has no counters: counted from agent_runs, as before, O(its runs of the month));
-- its active runs counted from the partial indexes (before: every run of the account read).
CREATE OR REPLACE FUNCTION kx_account_status(p_account uuid) RETURNS json
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    l account_limits;
    day_since timestamptz := kx_day_start(now());
    month_since timestamptz := kx_month_start(now());
    runs_today bigint;
    tokens_month bigint;
    active bigint;
    refusal json;
BEGIN
    SELECT * INTO l FROM account_limits WHERE account_id = p_account;
    IF FOUND THEN
        runs_today := kx_usage_get(p_account, 'runs_day', day_since);
        tokens_month := kx_usage_get(p_account, 'tokens_month', month_since);
    ELSE
        SELECT count(*) INTO runs_today FROM agent_runs
        WHERE account_id = p_account AND created_at >= day_since;
        SELECT coalesce(sum(tokens_used), 0) INTO tokens_month FROM agent_runs
        WHERE account_id = p_account AND created_at >= month_since;
    END IF;
    -- queued or running, from the two partial indexes of migration 011 (the active runs and the
    -- waiting ones: together exactly those), not from every run of the account
    SELECT (SELECT count(*) FROM agent_runs WHERE account_id = p_account AND (status = 'running'
                OR (status = 'queued' AND dispatched_at IS NOT NULL)))
         + (SELECT count(*) FROM agent_runs WHERE account_id = p_account AND status = 'queued'
                AND dispatched_at IS NULL)
    INTO active;
    refusal := kx_account_refusal(p_account, NULL);
    RETURN json_build_object(
        'can_run', refusal IS NULL,
        'message', CASE WHEN refusal IS NULL THEN 'Self-hosted: no billing; within the account''s limits'
                        ELSE refusal -> 'detail' ->> 'message' END,
        'subscription', json_build_object('price_id', 'self_hosted', 'plan_name', 'Self-hosted',
                                          'minutes_limit', 'no limit'),
        'limits', json_build_object(
            'runs_per_day', json_build_object('limit', l.runs_per_day, 'used', runs_today,
                'resets_at', to_char(day_since + interval '1 day', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')),
            'tokens_per_month', json_build_object('limit', l.tokens_per_month, 'used', tokens_month,
                'resets_at', to_char(month_since + interval '1 month', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')),
            'allowed_models', to_json(l.allowed_models),
            'active_runs', active),
        'has_limits', l.account_id IS NOT NULL);
END $$;

-- The accounts that have limits now.
SELECT kx_usage_recount(account_id) FROM account_limits;
