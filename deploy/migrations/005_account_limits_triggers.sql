-- 005_account_limits_triggers.sql — per-account quotas and model allow-lists, token usage per
-- run, and scheduled runs (docs/architecture.md, "Account limits" and "Scheduled runs";
-- docs/operations.md, "Account limits" for the operator's edits).
--
--   * account_limits: one optional row per account, edited by an operator with psql. No row
--     means no limit at all; in a row, a NULL column means no limit of that kind.
--       runs_per_day      runs created since 00:00 UTC today (every status counts)
--       tokens_per_month  tokens (agent_runs.tokens_used) of the runs created since the 1st of
--                         this month, 00:00 UTC
--       allowed_models    the model names a run may name; a run that names none runs on the
--                         deployment's default model (the runner's KX_MODEL) and is not
--                         restricted by the list
--   * The rule is enforced by the database itself, in the transaction that creates a run (a
--     BEFORE INSERT trigger on agent_runs), under the account's advisory lock: concurrent
--     starts of one account are serialised, so a quota is never overrun, whoever creates the
--     run (the gateway, a scheduled trigger) and however many replicas run. A refusal raises
--     SQLSTATE KX403 (model not allowed) or KX429 (quota reached) with the client's error body
--     as JSON in DETAIL; the gateway answers with it (403 / 429). Operator edits apply to the
--     next run created: nothing is cached.
--   * agent_runs.tokens_used: the run's token usage, the sum of its turns' usage, added by a
--     trigger on the insert of each turn's assistant_response_end message (the runner's fenced,
--     idempotent insert: a message id is inserted once, so a turn is counted once; turns of a
--     reaped or stopped attempt count too).
--   * run_triggers: cron-scheduled runs (POST /api/triggers). kx_fire_trigger fires one due
--     trigger exactly once: a compare-and-set of next_fire_at from the due time to the next
--     one, and the run's rows in the same transaction; (trigger_id, trigger_fire_at) is unique
--     on agent_runs, so one due time can never make two runs.

CREATE TABLE account_limits (
    account_id       uuid PRIMARY KEY,
    runs_per_day     integer CHECK (runs_per_day >= 0),
    tokens_per_month bigint CHECK (tokens_per_month >= 0),
    allowed_models   text[],
    note             text,
    updated_at       timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE TRIGGER account_limits_touch BEFORE UPDATE ON account_limits
    FOR EACH ROW EXECUTE FUNCTION kx_touch_updated_at();

ALTER TABLE agent_runs
    ADD COLUMN tokens_used     bigint NOT NULL DEFAULT 0,
    ADD COLUMN trigger_id      uuid,
    ADD COLUMN trigger_fire_at timestamptz;
CREATE INDEX agent_runs_account_created_idx ON agent_runs (account_id, created_at);
CREATE UNIQUE INDEX agent_runs_trigger_fire_idx ON agent_runs (trigger_id, trigger_fire_at)
    WHERE trigger_id IS NOT NULL;

-- Why a run of p_account naming p_model (NULL: the default model) may not be created now:
-- NULL when it may, else {"status": 403 | 429, "detail": <the client's error body>} (json,
-- so that the keys keep the order written here).
CREATE FUNCTION kx_account_refusal(p_account uuid, p_model text) RETURNS json
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
        since := date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';
        SELECT count(*) INTO used FROM agent_runs
        WHERE account_id = p_account AND created_at >= since;
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
        since := date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';
        SELECT coalesce(sum(tokens_used), 0) INTO used FROM agent_runs
        WHERE account_id = p_account AND created_at >= since;
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

CREATE FUNCTION kx_enforce_account_limits() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    refusal json;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM account_limits WHERE account_id = NEW.account_id) THEN
        RETURN NEW; -- no row: no limits, no lock
    END IF;
    -- the account's creation lock (the gateway's KX_OVER_LIMIT=reject takes the same one):
    -- the counts below see every run a concurrent creation of this account committed
    PERFORM pg_advisory_xact_lock(hashtext(NEW.account_id::text));
    refusal := kx_account_refusal(NEW.account_id, NEW.metadata ->> 'model_name');
    IF refusal IS NOT NULL THEN
        RAISE EXCEPTION USING
            ERRCODE = CASE WHEN refusal ->> 'status' = '403' THEN 'KX403' ELSE 'KX429' END,
            MESSAGE = refusal -> 'detail' ->> 'message',
            DETAIL = (refusal -> 'detail')::text;
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER agent_runs_account_limits BEFORE INSERT ON agent_runs
    FOR EACH ROW EXECUTE FUNCTION kx_enforce_account_limits();

-- A turn's usage, added to its run. The value comes from the model provider (or the runner's
-- estimate): anything that is not a number counts 0, and one turn counts at most 10^12.
CREATE FUNCTION kx_record_run_usage() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    total jsonb := NEW.content -> 'usage' -> 'total_tokens';
    n bigint := 0;
BEGIN
    IF jsonb_typeof(total) = 'number' THEN
        n := greatest(0, least(floor((total #>> '{}')::numeric), 1000000000000))::bigint;
    END IF;
    IF n > 0 THEN
        UPDATE agent_runs SET tokens_used = tokens_used + n WHERE id = NEW.agent_run_id;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER messages_run_usage AFTER INSERT ON messages FOR EACH ROW
    WHEN (NEW.type = 'assistant_response_end' AND NEW.agent_run_id IS NOT NULL)
    EXECUTE FUNCTION kx_record_run_usage();

CREATE TABLE run_triggers (
    trigger_id      uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    account_id      uuid NOT NULL,
    agent_id        uuid NOT NULL REFERENCES agents (agent_id) ON DELETE CASCADE,
    name            text NOT NULL,
    cron_expression text NOT NULL,
    timezone        text NOT NULL DEFAULT 'UTC' CHECK (timezone = 'UTC'),
    prompt          text NOT NULL,
    model_name      text,
    is_active       boolean NOT NULL DEFAULT true,
    next_fire_at    timestamptz,  -- NULL while paused, or when the expression fires no more
    last_fired_at   timestamptz,  -- the due time of the last fire
    last_run_id     uuid,
    last_error      text,         -- why the last fire made no run (quota, allow-list), or NULL
    fire_count      bigint NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at      timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX run_triggers_account_idx ON run_triggers (account_id, created_at);
CREATE INDEX run_triggers_due_idx ON run_triggers (next_fire_at) WHERE is_active;
CREATE TRIGGER run_triggers_touch BEFORE UPDATE ON run_triggers
    FOR EACH ROW EXECUTE FUNCTION kx_touch_updated_at();

-- Fires trigger p_trigger for its due time p_due, once: moves next_fire_at from p_due to p_next
-- (NULL: it fires no more) and creates the run — a new project and thread, the prompt as the
-- user message, a queued run (admission dispatches it within the account's parallel limit) —
-- in this one transaction. outcome: 'fired' (run_id, thread_id set); 'refused' (the account's
-- quota or allow-list refused the run: the fire is skipped, detail and last_error say why);
-- 'duplicate' (a run for this due time exists already); 'skipped' (not due at p_due any more:
-- another scheduler fired it, or it was paused, edited or deleted). Running it twice for the
-- same p_due is harmless: the second finds next_fire_at moved on and skips.
CREATE FUNCTION kx_fire_trigger(p_trigger uuid, p_due timestamptz, p_next timestamptz)
RETURNS TABLE (outcome text, run_id uuid, thread_id uuid, detail text)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    t run_triggers;
    v_project uuid;
    v_thread uuid;
    v_run uuid;
BEGIN
    UPDATE run_triggers r SET next_fire_at = p_next, last_fired_at = p_due,
        fire_count = r.fire_count + 1
    WHERE r.trigger_id = p_trigger AND r.is_active AND r.next_fire_at = p_due
    RETURNING * INTO t;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'skipped'::text, NULL::uuid, NULL::uuid, NULL::text;
        RETURN;
    END IF;
    BEGIN
        INSERT INTO projects (account_id, name) VALUES (t.account_id, t.name)
        RETURNING project_id INTO v_project;
        INSERT INTO threads (account_id, project_id, metadata)
        VALUES (t.account_id, v_project, jsonb_build_object('trigger_id', t.trigger_id))
        RETURNING threads.thread_id INTO v_thread;
        INSERT INTO messages (thread_id, account_id, type, is_llm_message, content, metadata)
        VALUES (v_thread, t.account_id, 'user', true,
                jsonb_build_object('role', 'user', 'content', t.prompt), '{}'::jsonb);
        INSERT INTO agent_runs (thread_id, account_id, project_id, status, agent_id,
                                agent_version_id, metadata, trigger_id, trigger_fire_at)
        VALUES (v_thread, t.account_id, v_project, 'queued', t.agent_id,
                (SELECT a.current_version_id FROM agents a WHERE a.agent_id = t.agent_id),
                jsonb_build_object('model_name', t.model_name, 'enable_thinking', false,
                                   'reasoning_effort', 'low', 'enable_context_manager', false,
                                   'trigger_id', t.trigger_id),
                t.trigger_id, p_due)
        RETURNING id INTO v_run;
        UPDATE run_triggers SET last_run_id = v_run, last_error = NULL
        WHERE run_triggers.trigger_id = p_trigger;
        RETURN QUERY SELECT 'fired'::text, v_run, v_thread, NULL::text;
    EXCEPTION
        WHEN SQLSTATE 'KX429' OR SQLSTATE 'KX403' THEN
            UPDATE run_triggers SET last_error = SQLERRM WHERE run_triggers.trigger_id = p_trigger;
            RETURN QUERY SELECT 'refused'::text, NULL::uuid, NULL::uuid, SQLERRM;
        WHEN unique_violation THEN
            RETURN QUERY SELECT 'duplicate'::text, NULL::uuid, NULL::uuid, SQLERRM;
    END;
END $$;
