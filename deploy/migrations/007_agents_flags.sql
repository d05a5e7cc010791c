-- 007_agents_flags.sql — agents and their versions as the API serves them (docs/api.md,
-- "Agents and versions"), the account's default agent (Kortix's "Suna"), feature flags, and
-- the account's limits and usage (GET /api/billing/check-status).
--
-- Adds, renames nothing: agents / agent_versions keep 001's columns and meanings.
--
--   * A version's config (agent_versions.config) is written in Kortix's shape
--       {"system_prompt": str, "model": str|null,
--        "tools": {"agentpress": {tool: bool|{"enabled": bool, ...}}, "mcp": [configured_mcps],
--                  "custom_mcp": [custom_mcps]}}
--     plus the same three lists at the top level ("agentpress_tools", "configured_mcps",
--     "custom_mcps"), written from the same values by kx_cfg_build, for readers of that flat
--     shape (the custom-mcp-tools route wrote it before this migration). The readers below
--     (kx_cfg_*) take the "tools" form first and fall back on the flat one, so rows of either
--     shape read the same. An empty system_prompt means the runner's default prompt. Keys the
--     API does not edit (the runner's "tool_execution_strategy", "max_xml_tool_calls") are kept
--     from version to version (kx_cfg_extra).
--   * kx_agent_config(version_id): the runner's view of one version, one shape whatever the row
--     holds: {"system_prompt", "model", "agentpress_tools", "configured_mcps", "custom_mcps"}.
--   * Every write that makes a version goes through kx_agent_new_version, which locks the
--     agent's row first (FOR UPDATE): concurrent writers of one agent take turns, so version
--     numbers never collide (UNIQUE (agent_id, version_number) is the backstop), and exactly
--     one version is active (the agent's current_version_id).
--   * The default agent: kx_default_agent(account) returns the account's is_default agent and
--     creates Suna when the account has neither a default agent nor Suna, under the account's
--     agents lock (an advisory lock), so two first requests make one Suna.
--   * agents.idempotency_key: POST /api/agents (and import) with an Idempotency-Key header
--     create one agent per key and account; a retry answers the agent made the first time.
--   * feature_flags: set by an operator with SQL (docs/operations.md, "Feature flags"); a flag
--     without a row is off, as in Kortix.

ALTER TABLE agents ADD COLUMN idempotency_key text;
CREATE UNIQUE INDEX agents_idempotency_idx ON agents (account_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX agents_account_created_idx ON agents (account_id, created_at);

CREATE TABLE feature_flags (
    name        text PRIMARY KEY CHECK (name ~ '^[a-z0-9_]{1,64}$'),
    enabled     boolean NOT NULL DEFAULT false,
    description text NOT NULL DEFAULT '',
    updated_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE TRIGGER feature_flags_touch BEFORE UPDATE ON feature_flags
    FOR EACH ROW EXECUTE FUNCTION kx_touch_updated_at();
-- custom_agents gates the agent routes (403 when off); knowledge_base is not built here.
INSERT INTO feature_flags (name, enabled, description) VALUES
    ('custom_agents', true, 'Users may create, edit and version their own agents'),
    ('knowledge_base', false, 'Knowledge base context in agent prompts (not built)');

-- A timestamptz as Python's isoformat() in UTC (the gateway's GW_SQL_ISO).
CREATE FUNCTION kx_iso(t timestamptz) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"')
$$;

-- ---- version config readers (either shape) and the writer ----

CREATE FUNCTION kx_cfg_prompt(c jsonb) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN jsonb_typeof(c -> 'system_prompt') = 'string' THEN c ->> 'system_prompt'
                ELSE '' END
$$;
CREATE FUNCTION kx_cfg_model(c jsonb) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN jsonb_typeof(c -> 'model') = 'string' THEN c ->> 'model' END
$$;
CREATE FUNCTION kx_cfg_agentpress(c jsonb) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN jsonb_typeof(c #> '{tools,agentpress}') = 'object' THEN c #> '{tools,agentpress}'
                WHEN jsonb_typeof(c -> 'agentpress_tools') = 'object' THEN c -> 'agentpress_tools'
                ELSE '{}'::jsonb END
$$;
CREATE FUNCTION kx_cfg_mcps(c jsonb) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN jsonb_typeof(c #> '{tools,mcp}') = 'array' THEN c #> '{tools,mcp}'
                WHEN jsonb_typeof(c -> 'configured_mcps') = 'array' THEN c -> 'configured_mcps'
                ELSE '[]'::jsonb END
$$;
CREATE FUNCTION kx_cfg_custom(c jsonb) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN jsonb_typeof(c #> '{tools,custom_mcp}') = 'array' THEN c #> '{tools,custom_mcp}'
                WHEN jsonb_typeof(c -> 'custom_mcps') = 'array' THEN c -> 'custom_mcps'
                ELSE '[]'::jsonb END
$$;
CREATE FUNCTION kx_cfg_build(p_prompt text, p_agentpress jsonb, p_mcps jsonb, p_custom jsonb,
                             p_model text) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_build_object(
        'system_prompt', coalesce(p_prompt, ''), 'model', p_model,
        'tools', jsonb_build_object('agentpress', coalesce(p_agentpress, '{}'::jsonb),
                                    'mcp', coalesce(p_mcps, '[]'::jsonb),
                                    'custom_mcp', coalesce(p_custom, '[]'::jsonb)),
        'agentpress_tools', coalesce(p_agentpress, '{}'::jsonb),
        'configured_mcps', coalesce(p_mcps, '[]'::jsonb),
        'custom_mcps', coalesce(p_custom, '[]'::jsonb))
$$;
-- The keys of a config the API does not edit (e.g. the runner's "tool_execution_strategy",
-- "max_xml_tool_calls", set by an operator): kept by every new version made from it.
CREATE FUNCTION kx_cfg_extra(c jsonb) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN jsonb_typeof(c) = 'object'
                THEN c - 'system_prompt' - 'model' - 'tools' - 'agentpress_tools'
                       - 'configured_mcps' - 'custom_mcps'
                ELSE '{}'::jsonb END
$$;
-- A config in the written shape, its other keys kept (two configs are the same agent setup
-- when these are equal).
CREATE FUNCTION kx_cfg_norm(c jsonb) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT kx_cfg_extra(c) || kx_cfg_build(kx_cfg_prompt(c), kx_cfg_agentpress(c),
                                           kx_cfg_mcps(c), kx_cfg_custom(c), kx_cfg_model(c))
$$;
-- Is an agentpress entry (true, or {"enabled": true, ...}) on?
CREATE FUNCTION kx_tool_enabled(v jsonb) RETURNS boolean LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE jsonb_typeof(v) WHEN 'boolean' THEN v = 'true'::jsonb
                                WHEN 'object' THEN coalesce(v -> 'enabled' = 'true'::jsonb, false)
                                ELSE false END
$$;
-- "agentpress:<tool>" for each enabled tool and "mcp:<server name>" for each MCP server.
CREATE FUNCTION kx_cfg_tool_keys(c jsonb) RETURNS text[] LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(array_agg(k), '{}') FROM (
        SELECT 'agentpress:' || e.key AS k FROM jsonb_each(kx_cfg_agentpress(c)) e
        WHERE kx_tool_enabled(e.value)
        UNION ALL
        SELECT 'mcp:' || (m ->> 'name') FROM jsonb_array_elements(kx_cfg_mcps(c) || kx_cfg_custom(c)) m
        WHERE jsonb_typeof(m -> 'name') = 'string') s
$$;
-- Kortix's tools_count: enabled agentpress tools plus MCP servers.
CREATE FUNCTION kx_cfg_tools_count(c jsonb) RETURNS integer LANGUAGE sql IMMUTABLE AS $$
    SELECT (SELECT count(*) FROM jsonb_each(kx_cfg_agentpress(c)) e WHERE kx_tool_enabled(e.value))::int
         + jsonb_array_length(kx_cfg_mcps(c)) + jsonb_array_length(kx_cfg_custom(c))
$$;

-- The runner's view of a version (NULL when there is none).
CREATE FUNCTION kx_agent_config(p_version uuid) RETURNS json LANGUAGE sql STABLE AS $$
    SELECT json_build_object('system_prompt', kx_cfg_prompt(v.config), 'model', kx_cfg_model(v.config),
                             'agentpress_tools', kx_cfg_agentpress(v.config),
                             'configured_mcps', kx_cfg_mcps(v.config),
                             'custom_mcps', kx_cfg_custom(v.config))
    FROM agent_versions v WHERE v.version_id = p_version
$$;

-- ---- JSON as the API answers it ----

-- Kortix's VersionResponse (AgentVersionResponse plus status, change_description,
-- previous_version_id), with the version's model.
CREATE FUNCTION kx_version_json(v agent_versions) RETURNS json LANGUAGE sql STABLE AS $$
    SELECT json_build_object(
        'version_id', v.version_id, 'agent_id', v.agent_id, 'version_number', v.version_number,
        'version_name', v.version_name, 'system_prompt', kx_cfg_prompt(v.config),
        'model', kx_cfg_model(v.config), 'configured_mcps', kx_cfg_mcps(v.config),
        'custom_mcps', kx_cfg_custom(v.config), 'agentpress_tools', kx_cfg_agentpress(v.config),
        'is_active', v.is_active, 'status', CASE WHEN v.is_active THEN 'active' ELSE 'inactive' END,
        'created_at', kx_iso(v.created_at), 'updated_at', kx_iso(v.updated_at),
        'created_by', v.created_by, 'change_description', v.change_description,
        'previous_version_id', v.previous_version_id)
$$;

-- Kortix's AgentResponse: the agent row with its current version's config.
CREATE FUNCTION kx_agent_json(a agents) RETURNS json LANGUAGE sql STABLE AS $$
    SELECT json_build_object(
        'agent_id', a.agent_id, 'account_id', a.account_id, 'name', a.name,
        'description', a.description, 'system_prompt', kx_cfg_prompt(v.config),
        'model', kx_cfg_model(v.config), 'configured_mcps', kx_cfg_mcps(v.config),
        'custom_mcps', kx_cfg_custom(v.config), 'agentpress_tools', kx_cfg_agentpress(v.config),
        'is_default', a.is_default, 'avatar', a.avatar, 'avatar_color', a.avatar_color,
        'created_at', kx_iso(a.created_at), 'updated_at', kx_iso(a.updated_at),
        'is_public', a.is_public, 'tags', to_json(a.tags),
        'current_version_id', a.current_version_id, 'version_count', a.version_count,
        'current_version', CASE WHEN v.version_id IS NULL THEN NULL ELSE kx_version_json(v) END,
        'metadata', a.metadata)
    FROM (SELECT 1) one LEFT JOIN agent_versions v ON v.version_id = a.current_version_id
$$;

-- ---- writes ----

-- The account's agents lock: creating or changing the default agent takes it, so two of them
-- never race on the one-default-per-account index.
CREATE FUNCTION kx_agents_lock(p_account uuid) RETURNS void LANGUAGE sql AS $$
    SELECT pg_advisory_xact_lock(hashtext('kx-agents:' || p_account::text))
$$;

-- Saves p_config as a new active version of the account's agent (named p_name, or v<n>).
-- p_only_if_changed: when the current version already has this config, nothing is written and
-- the current version is returned with created = false. No row: not the account's agent.
CREATE FUNCTION kx_agent_new_version(p_agent uuid, p_account uuid, p_config jsonb, p_name text,
                                     p_change text, p_only_if_changed boolean)
RETURNS TABLE (version_id uuid, created boolean)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    a agents;
    cur agent_versions;
    n integer;
    v uuid;
BEGIN
    SELECT * INTO a FROM agents WHERE agent_id = p_agent AND account_id = p_account FOR UPDATE;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    SELECT * INTO cur FROM agent_versions WHERE agent_versions.version_id = a.current_version_id;
    IF p_only_if_changed AND cur.version_id IS NOT NULL
       AND kx_cfg_norm(cur.config) = kx_cfg_norm(p_config) THEN
        RETURN QUERY SELECT cur.version_id, false;
        RETURN;
    END IF;
    SELECT coalesce(max(version_number), 0) + 1 INTO n FROM agent_versions WHERE agent_id = p_agent;
    INSERT INTO agent_versions (agent_id, account_id, version_number, version_name, is_active,
                                created_by, change_description, previous_version_id, config)
    VALUES (p_agent, p_account, n, coalesce(p_name, 'v' || n), true, p_account, p_change,
            cur.version_id, kx_cfg_norm(p_config))
    RETURNING agent_versions.version_id INTO v;
    UPDATE agent_versions SET is_active = false
    WHERE agent_id = p_agent AND is_active AND agent_versions.version_id <> v;
    UPDATE agents SET current_version_id = v,
        version_count = (SELECT count(*) FROM agent_versions WHERE agent_id = p_agent)
    WHERE agent_id = p_agent;
    RETURN QUERY SELECT v, true;
END $$;

-- Creates an agent and its v1 from p ({name, description, system_prompt, model,
-- agentpress_tools, configured_mcps, custom_mcps, is_default, avatar, avatar_color, tags,
-- metadata}; validated by the gateway). With p_idem, one agent per (account, key): a repeat
-- returns the first one. Returns the agent's JSON.
CREATE FUNCTION kx_agent_create(p_account uuid, p jsonb, p_idem text, p_change text)
RETURNS json LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    a agents;
    dflt boolean := coalesce((p ->> 'is_default')::boolean, false);
BEGIN
    IF p_idem IS NOT NULL THEN
        SELECT * INTO a FROM agents WHERE account_id = p_account AND idempotency_key = p_idem;
        IF FOUND THEN
            RETURN kx_agent_json(a);
        END IF;
    END IF;
    PERFORM kx_agents_lock(p_account);
    IF dflt THEN
        UPDATE agents SET is_default = false WHERE account_id = p_account AND is_default;
    END IF;
    INSERT INTO agents (account_id, name, description, is_default, avatar, avatar_color, tags,
                        metadata, idempotency_key, version_count)
    VALUES (p_account, p ->> 'name', p ->> 'description', dflt, p ->> 'avatar',
            p ->> 'avatar_color',
            coalesce(ARRAY(SELECT jsonb_array_elements_text(
                CASE WHEN jsonb_typeof(p -> 'tags') = 'array' THEN p -> 'tags' ELSE '[]' END)), '{}'),
            CASE WHEN jsonb_typeof(p -> 'metadata') = 'object' THEN p -> 'metadata' ELSE '{}' END,
            p_idem, 0)
    ON CONFLICT (account_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
    RETURNING * INTO a;
    IF NOT FOUND THEN -- a concurrent request with the same key made it
        SELECT * INTO a FROM agents WHERE account_id = p_account AND idempotency_key = p_idem;
        RETURN kx_agent_json(a);
    END IF;
    PERFORM kx_agent_new_version(a.agent_id, p_account,
        kx_cfg_build(p ->> 'system_prompt', p -> 'agentpress_tools', p -> 'configured_mcps',
                     p -> 'custom_mcps', p ->> 'model'),
        'v1', p_change, false);
    SELECT * INTO a FROM agents WHERE agent_id = a.agent_id;
    RETURN kx_agent_json(a);
END $$;

-- PUT /agents/{id}: p holds only the fields to change. Agent fields (name, description,
-- is_default, avatar, avatar_color, tags) change the row; a changed config (system_prompt,
-- model, agentpress_tools, configured_mcps, custom_mcps) makes a new version
-- ("Configuration updated"). Suna's restrictions (metadata.restrictions.<x>_editable = false)
-- refuse a change of that field with SQLSTATE KX403. NULL: not the account's agent.
CREATE FUNCTION kx_agent_update(p_agent uuid, p_account uuid, p jsonb)
RETURNS json LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    a agents;
    c jsonb;
    nc jsonb;
    r jsonb;
BEGIN
    IF p ? 'is_default' THEN
        PERFORM kx_agents_lock(p_account);
    END IF;
    SELECT * INTO a FROM agents WHERE agent_id = p_agent AND account_id = p_account FOR UPDATE;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    SELECT config INTO c FROM agent_versions WHERE version_id = a.current_version_id;
    nc := kx_cfg_extra(c) || kx_cfg_build(
        CASE WHEN p ? 'system_prompt' THEN p ->> 'system_prompt' ELSE kx_cfg_prompt(c) END,
        CASE WHEN p ? 'agentpress_tools' THEN p -> 'agentpress_tools' ELSE kx_cfg_agentpress(c) END,
        CASE WHEN p ? 'configured_mcps' THEN p -> 'configured_mcps' ELSE kx_cfg_mcps(c) END,
        CASE WHEN p ? 'custom_mcps' THEN p -> 'custom_mcps' ELSE kx_cfg_custom(c) END,
        CASE WHEN p ? 'model' THEN p ->> 'model' ELSE kx_cfg_model(c) END);
    r := a.metadata -> 'restrictions';
    IF coalesce((a.metadata ->> 'is_suna_default')::boolean, false) AND jsonb_typeof(r) = 'object' THEN
        IF r -> 'name_editable' = 'false'::jsonb AND p ? 'name' AND p ->> 'name' <> a.name THEN
            RAISE EXCEPTION USING ERRCODE = 'KX403', MESSAGE = 'The default agent''s name cannot be edited';
        END IF;
        IF r -> 'description_editable' = 'false'::jsonb AND p ? 'description'
           AND p ->> 'description' IS DISTINCT FROM a.description THEN
            RAISE EXCEPTION USING ERRCODE = 'KX403', MESSAGE = 'The default agent''s description cannot be edited';
        END IF;
        IF r -> 'system_prompt_editable' = 'false'::jsonb
           AND kx_cfg_prompt(nc) IS DISTINCT FROM kx_cfg_prompt(c) THEN
            RAISE EXCEPTION USING ERRCODE = 'KX403', MESSAGE = 'The default agent''s system_prompt cannot be edited';
        END IF;
        IF r -> 'tools_editable' = 'false'::jsonb
           AND kx_cfg_agentpress(nc) IS DISTINCT FROM kx_cfg_agentpress(c) THEN
            RAISE EXCEPTION USING ERRCODE = 'KX403', MESSAGE = 'The default agent''s agentpress_tools cannot be edited';
        END IF;
        IF r -> 'mcps_editable' = 'false'::jsonb
           AND (kx_cfg_mcps(nc) IS DISTINCT FROM kx_cfg_mcps(c)
                OR kx_cfg_custom(nc) IS DISTINCT FROM kx_cfg_custom(c)) THEN
            RAISE EXCEPTION USING ERRCODE = 'KX403', MESSAGE = 'The default agent''s MCP servers cannot be edited';
        END IF;
    END IF;
    IF coalesce((p ->> 'is_default')::boolean, false) AND NOT a.is_default THEN
        UPDATE agents SET is_default = false WHERE account_id = p_account AND is_default;
    END IF;
    UPDATE agents SET
        name = CASE WHEN p ? 'name' THEN p ->> 'name' ELSE name END,
        description = CASE WHEN p ? 'description' THEN p ->> 'description' ELSE description END,
        is_default = CASE WHEN p ? 'is_default' THEN (p ->> 'is_default')::boolean ELSE is_default END,
        avatar = CASE WHEN p ? 'avatar' THEN p ->> 'avatar' ELSE avatar END,
        avatar_color = CASE WHEN p ? 'avatar_color' THEN p ->> 'avatar_color' ELSE avatar_color END,
        tags = CASE WHEN p ? 'tags' THEN ARRAY(SELECT jsonb_array_elements_text(p -> 'tags'))
                    ELSE tags END
    WHERE agent_id = p_agent;
    PERFORM kx_agent_new_version(p_agent, p_account, nc, NULL, 'Configuration updated', true);
    SELECT * INTO a FROM agents WHERE agent_id = p_agent;
    RETURN kx_agent_json(a);
END $$;

-- DELETE: 'deleted', 'default' (the default agent stays), or NULL (not the account's).
CREATE FUNCTION kx_agent_delete(p_agent uuid, p_account uuid)
RETURNS text LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    a agents;
BEGIN
    SELECT * INTO a FROM agents WHERE agent_id = p_agent AND account_id = p_account FOR UPDATE;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    IF a.is_default THEN
        RETURN 'default';
    END IF;
    UPDATE agents SET current_version_id = NULL WHERE agent_id = p_agent;
    DELETE FROM agents WHERE agent_id = p_agent;
    RETURN 'deleted';
END $$;

-- PUT .../versions/{vid}/activate: 'ok', 'no_version' (not a version of this agent), or NULL
-- (not the account's agent). Activating the active version changes nothing.
CREATE FUNCTION kx_agent_activate(p_agent uuid, p_account uuid, p_version uuid)
RETURNS text LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM 1 FROM agents WHERE agent_id = p_agent AND account_id = p_account FOR UPDATE;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    PERFORM 1 FROM agent_versions WHERE agent_id = p_agent AND version_id = p_version;
    IF NOT FOUND THEN
        RETURN 'no_version';
    END IF;
    UPDATE agent_versions SET is_active = (version_id = p_version)
    WHERE agent_id = p_agent AND is_active IS DISTINCT FROM (version_id = p_version);
    UPDATE agents SET current_version_id = p_version
    WHERE agent_id = p_agent AND current_version_id IS DISTINCT FROM p_version;
    RETURN 'ok';
END $$;

-- POST .../versions/{vid}/rollback: a new version with vid's config ("Rolled back to version
-- <name>"); when the current version already has that config nothing is written (a retried
-- rollback makes no second version). {"version": <json>, "created": bool}, 'no_version' as
-- {"error": "no_version"}, or NULL (not the account's agent).
CREATE FUNCTION kx_agent_rollback(p_agent uuid, p_account uuid, p_version uuid)
RETURNS json LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    t agent_versions;
    nv record;
    v agent_versions;
BEGIN
    PERFORM 1 FROM agents WHERE agent_id = p_agent AND account_id = p_account FOR UPDATE;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    SELECT * INTO t FROM agent_versions WHERE agent_id = p_agent AND version_id = p_version;
    IF NOT FOUND THEN
        RETURN json_build_object('error', 'no_version');
    END IF;
    SELECT * INTO nv FROM kx_agent_new_version(p_agent, p_account, t.config, NULL,
                                               'Rolled back to version ' || t.version_name, true);
    SELECT * INTO v FROM agent_versions WHERE version_id = nv.version_id;
    RETURN json_build_object('version', kx_version_json(v), 'created', nv.created);
END $$;

-- The account's default agent: its is_default agent; else its Suna; else a new Suna
-- (is_default, metadata.is_suna_default, Kortix's restrictions, the runner's default prompt
-- and Kortix's default tools), made once whatever the concurrency (the agents lock).
CREATE FUNCTION kx_default_agent(p_account uuid) RETURNS uuid
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v uuid;
BEGIN
    SELECT agent_id INTO v FROM agents WHERE account_id = p_account AND is_default;
    IF FOUND THEN
        RETURN v;
    END IF;
    PERFORM kx_agents_lock(p_account);
    SELECT agent_id INTO v FROM agents WHERE account_id = p_account
        AND (is_default OR coalesce((metadata ->> 'is_suna_default')::boolean, false))
        ORDER BY is_default DESC LIMIT 1;
    IF FOUND THEN
        RETURN v;
    END IF;
    INSERT INTO agents (account_id, name, description, is_default, avatar, avatar_color,
                        metadata, version_count)
    VALUES (p_account, 'Suna',
            'Suna is your AI assistant with access to various tools and integrations to help '
            'you with tasks across domains.', true, '🌞', '#F59E0B',
            jsonb_build_object('is_suna_default', true, 'centrally_managed', true,
                               'management_version', '1.0',
                               'installation_date', kx_iso(now()),
                               'restrictions', jsonb_build_object(
                                   'name_editable', false, 'description_editable', false,
                                   'system_prompt_editable', false, 'tools_editable', false,
                                   'mcps_editable', true)), 0)
    RETURNING agent_id INTO v;
    PERFORM kx_agent_new_version(v, p_account,
        kx_cfg_build('', jsonb_build_object(
            'sb_shell_tool', true, 'sb_files_tool', true, 'sb_browser_tool', true,
            'sb_deploy_tool', true, 'sb_expose_tool', true, 'web_search_tool', true,
            'sb_vision_tool', true, 'sb_image_edit_tool', true, 'data_providers_tool', true),
            '[]', '[]', NULL),
        'v1', 'Initial version', false);
    RETURN v;
END $$;

-- GET /agents: the account's agents filtered, sorted and paginated (Kortix's query), with the
-- default agent made first if the account has none.
CREATE FUNCTION kx_agents_list(p_account uuid, p_search text, p_has_default boolean,
                               p_has_mcp boolean, p_has_agentpress boolean, p_tools text[],
                               p_sort text, p_order text, p_limit integer, p_page integer)
RETURNS json LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    total bigint;
    items json;
    pat text := CASE WHEN p_search IS NULL OR p_search = '' THEN NULL
                     ELSE '%' || replace(replace(replace(p_search, '\', '\\'), '%', '\%'), '_', '\_')
                          || '%' END;
BEGIN
    PERFORM kx_default_agent(p_account);
    WITH f AS (
        SELECT a, v.config AS c FROM agents a
        LEFT JOIN agent_versions v ON v.version_id = a.current_version_id
        WHERE a.account_id = p_account
          AND (pat IS NULL OR a.name ILIKE pat OR coalesce(a.description, '') ILIKE pat)
          AND (p_has_default IS NULL OR a.is_default = p_has_default)
          AND (p_has_mcp IS NULL OR
               (jsonb_array_length(kx_cfg_mcps(v.config))
                + jsonb_array_length(kx_cfg_custom(v.config)) > 0) = p_has_mcp)
          AND (p_has_agentpress IS NULL OR
               ((SELECT count(*) FROM jsonb_each(kx_cfg_agentpress(v.config)) e
                 WHERE kx_tool_enabled(e.value)) > 0) = p_has_agentpress)
          AND (p_tools IS NULL OR p_tools <@ kx_cfg_tool_keys(v.config))),
    o AS (
        SELECT f.a, row_number() OVER (ORDER BY
               CASE WHEN p_sort = 'name' AND p_order = 'asc' THEN lower((f.a).name) END ASC,
               CASE WHEN p_sort = 'name' AND p_order = 'desc' THEN lower((f.a).name) END DESC,
               CASE WHEN p_sort = 'updated_at' AND p_order = 'asc' THEN (f.a).updated_at END ASC,
               CASE WHEN p_sort = 'updated_at' AND p_order = 'desc' THEN (f.a).updated_at END DESC,
               CASE WHEN p_sort = 'tools_count' AND p_order = 'asc' THEN kx_cfg_tools_count(f.c) END ASC,
               CASE WHEN p_sort = 'tools_count' AND p_order = 'desc' THEN kx_cfg_tools_count(f.c) END DESC,
               CASE WHEN p_order = 'asc' THEN (f.a).created_at END ASC,
               (f.a).created_at DESC, (f.a).agent_id) AS rn
        FROM f)
    SELECT (SELECT count(*) FROM o),
           coalesce((SELECT json_agg(kx_agent_json(o.a) ORDER BY o.rn) FROM o
                     WHERE o.rn > (p_page - 1)::bigint * p_limit
                       AND o.rn <= p_page::bigint * p_limit), '[]'::json)
    INTO total, items;
    RETURN json_build_object('agents', items, 'pagination', json_build_object(
        'page', p_page, 'limit', p_limit, 'total', total,
        'pages', (total + p_limit - 1) / p_limit));
END $$;

-- POST /agents/{id}/custom-mcp-tools: in the current config's custom_mcps, the entry of this
-- type (type or customType) and URL gets enabledTools = p_tools (an entry named "Custom MCP
-- (SSE|HTTP)" is added when there is none), saved as a new version ("Auto-updated MCP
-- tools"). When the entry already has exactly these tools nothing is written (created false).
-- No row: not the account's agent.
CREATE FUNCTION kx_agent_save_mcp_tools(p_agent uuid, p_account uuid, p_type text, p_url text,
                                        p_tools jsonb)
RETURNS TABLE (version_id uuid, created boolean)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    a agents;
    c jsonb;
    custom jsonb;
    idx integer;
BEGIN
    SELECT * INTO a FROM agents WHERE agent_id = p_agent AND account_id = p_account FOR UPDATE;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    SELECT config INTO c FROM agent_versions WHERE agent_versions.version_id = a.current_version_id;
    custom := kx_cfg_custom(c);
    SELECT t.i - 1 INTO idx FROM jsonb_array_elements(custom) WITH ORDINALITY t(e, i)
    WHERE coalesce(t.e ->> 'customType', t.e ->> 'type') = p_type
      AND t.e #>> '{config,url}' = p_url
    ORDER BY t.i LIMIT 1;
    IF idx IS NOT NULL THEN
        IF custom -> idx -> 'enabledTools' = p_tools AND a.current_version_id IS NOT NULL THEN
            RETURN QUERY SELECT a.current_version_id, false;
            RETURN;
        END IF;
        custom := jsonb_set(custom, ARRAY[idx::text, 'enabledTools'], p_tools);
    ELSE
        custom := custom || jsonb_build_array(jsonb_build_object(
            'name', 'Custom MCP (' || upper(p_type) || ')', 'customType', p_type, 'type', p_type,
            'config', jsonb_build_object('url', p_url), 'enabledTools', p_tools));
    END IF;
    RETURN QUERY SELECT * FROM kx_agent_new_version(p_agent, p_account,
        kx_cfg_extra(c) || kx_cfg_build(kx_cfg_prompt(c), kx_cfg_agentpress(c), kx_cfg_mcps(c),
                                        custom, kx_cfg_model(c)),
        NULL, 'Auto-updated MCP tools', false);
END $$;

-- GET .../versions/{v1}/compare/{v2}: {version1, version2, differences: [{field, type:
-- "modified", old_value, new_value}]} over the config's fields.
CREATE FUNCTION kx_version_compare(v1 agent_versions, v2 agent_versions)
RETURNS json LANGUAGE sql STABLE AS $$
    SELECT json_build_object('version1', kx_version_json(v1), 'version2', kx_version_json(v2),
        'differences', coalesce((
            SELECT json_agg(json_build_object('field', d.f, 'type', 'modified',
                                              'old_value', d.o, 'new_value', d.n) ORDER BY d.k)
            FROM (VALUES
                (1, 'system_prompt', to_jsonb(kx_cfg_prompt(v1.config)), to_jsonb(kx_cfg_prompt(v2.config))),
                (2, 'model', to_jsonb(kx_cfg_model(v1.config)), to_jsonb(kx_cfg_model(v2.config))),
                (3, 'agentpress_tools', kx_cfg_agentpress(v1.config), kx_cfg_agentpress(v2.config)),
                (4, 'configured_mcps', kx_cfg_mcps(v1.config), kx_cfg_mcps(v2.config)),
                (5, 'custom_mcps', kx_cfg_custom(v1.config), kx_cfg_custom(v2.config))) d(k, f, o, n)
            WHERE d.o IS DISTINCT FROM d.n), '[]'::json))
$$;

-- GET /agents/{id}/export (Kortix's export_version 1.0; metadata without the central
-- management keys).
CREATE FUNCTION kx_agent_export(a agents, p_by uuid) RETURNS json LANGUAGE sql STABLE AS $$
    SELECT json_build_object(
        'name', a.name, 'description', a.description, 'system_prompt', kx_cfg_prompt(v.config),
        'model', kx_cfg_model(v.config), 'agentpress_tools', kx_cfg_agentpress(v.config),
        'configured_mcps', kx_cfg_mcps(v.config), 'custom_mcps', kx_cfg_custom(v.config),
        'avatar', a.avatar, 'avatar_color', a.avatar_color, 'tags', to_json(a.tags),
        'metadata', a.metadata - 'is_suna_default' - 'centrally_managed' - 'installation_date'
                    - 'last_central_update' - 'restrictions' - 'management_version',
        'export_version', '1.0', 'exported_at', kx_iso(now()), 'exported_by', p_by)
    FROM (SELECT 1) one LEFT JOIN agent_versions v ON v.version_id = a.current_version_id
$$;

-- GET /agents/{id}/tools: {"agentpress_tools": [{name, enabled}], "mcp_tools": [{name,
-- server, enabled: true}]} of a config.
CREATE FUNCTION kx_cfg_tools_json(c jsonb) RETURNS json LANGUAGE sql IMMUTABLE AS $$
    SELECT json_build_object(
        'agentpress_tools', coalesce((
            SELECT json_agg(json_build_object('name', e.key, 'enabled', kx_tool_enabled(e.value))
                            ORDER BY e.key)
            FROM jsonb_each(kx_cfg_agentpress(c)) e), '[]'::json),
        'mcp_tools', coalesce((
            SELECT json_agg(json_build_object('name', t.tool, 'server', m.e ->> 'name',
                                              'enabled', true) ORDER BY m.i, t.j)
            FROM jsonb_array_elements(kx_cfg_mcps(c) || kx_cfg_custom(c)) WITH ORDINALITY m(e, i),
                 jsonb_array_elements_text(CASE WHEN jsonb_typeof(m.e -> 'enabledTools') = 'array'
                                                THEN m.e -> 'enabledTools' ELSE '[]' END)
                     WITH ORDINALITY t(tool, j)), '[]'::json))
$$;

-- GET /api/billing/check-status: Kortix's {can_run, message, subscription} for a self-hosted
-- deployment (no billing), with the account's quotas and usage from account_limits.
CREATE FUNCTION kx_account_status(p_account uuid) RETURNS json LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    l account_limits;
    day_since timestamptz := date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';
    month_since timestamptz := date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';
    runs_today bigint;
    tokens_month bigint;
    active bigint;
    refusal json;
BEGIN
    SELECT * INTO l FROM account_limits WHERE account_id = p_account;
    SELECT count(*) INTO runs_today FROM agent_runs
    WHERE account_id = p_account AND created_at >= day_since;
    SELECT coalesce(sum(tokens_used), 0) INTO tokens_month FROM agent_runs
    WHERE account_id = p_account AND created_at >= month_since;
    SELECT count(*) INTO active FROM agent_runs
    WHERE account_id = p_account AND status IN ('queued', 'running');
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

-- POST /agents/{id}/versions: a new active version (always; a repeat with the same
-- version_name is refused by UNIQUE (agent_id, version_name)), keeping the current config's
-- keys the API does not edit. Its JSON, or NULL (not the account's agent).
CREATE FUNCTION kx_agent_version_create(p_agent uuid, p_account uuid, p_config jsonb,
                                        p_name text, p_change text)
RETURNS json LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    nv record;
    v agent_versions;
BEGIN
    SELECT kx_cfg_extra(cv.config) || p_config INTO p_config
    FROM agents ag LEFT JOIN agent_versions cv ON cv.version_id = ag.current_version_id
    WHERE ag.agent_id = p_agent AND ag.account_id = p_account;
    SELECT * INTO nv FROM kx_agent_new_version(p_agent, p_account, p_config, p_name, p_change,
                                               false);
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    SELECT * INTO v FROM agent_versions WHERE version_id = nv.version_id;
    RETURN kx_version_json(v);
END $$;

-- PUT /agents/{id}/versions/{vid}/details: a version's name and change description (NULL: kept).
-- {"version": <json>}, {"error": "no_version"}, or NULL (not the account's agent). A name the
-- agent already has is refused by UNIQUE (agent_id, version_name).
CREATE FUNCTION kx_agent_version_details(p_agent uuid, p_account uuid, p_version uuid,
                                         p_name text, p_change text)
RETURNS json LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v agent_versions;
BEGIN
    PERFORM 1 FROM agents WHERE agent_id = p_agent AND account_id = p_account FOR UPDATE;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    UPDATE agent_versions SET version_name = coalesce(p_name, version_name),
        change_description = coalesce(p_change, change_description)
    WHERE agent_id = p_agent AND version_id = p_version
    RETURNING * INTO v;
    IF NOT FOUND THEN
        RETURN json_build_object('error', 'no_version');
    END IF;
    RETURN json_build_object('version', kx_version_json(v));
END $$;
