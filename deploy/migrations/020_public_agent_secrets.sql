-- 020_public_agent_secrets.sql — another account reading a public agent sees its MCP servers
-- without their credentials (docs/api.md, "Agents and versions").
--
-- A public agent (is_public, set by an operator: Kortix's marketplace) can be read by every
-- account: the agent, its versions, one version, a comparison. Kortix answered the whole config,
-- and an MCP server's entry carries its credentials: custom_mcps[].config.headers (an
-- Authorization header), configured_mcps[].config (a Smithery API key), a URL with a token in
-- its query or user part. For a reader who is not the owner each entry keeps only what says
-- which server and which tools — name, qualifiedName, type, customType, enabledTools — and its
-- config only the URL without user part, query and fragment. The owner sees everything.

-- The URL without "user:password@", "?query" and "#fragment".
CREATE FUNCTION kx_url_public(u text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT regexp_replace(regexp_replace(u, '[?#].*$', ''),
                          '^([A-Za-z][A-Za-z0-9+.-]*://)[^/@]*@', '\1')
$$;

-- A list of MCP server entries as another account may see it.
CREATE FUNCTION kx_mcps_public(l jsonb) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(jsonb_agg(CASE WHEN jsonb_typeof(t.e) = 'object' THEN
               jsonb_strip_nulls(jsonb_build_object(
                   'name', t.e -> 'name', 'qualifiedName', t.e -> 'qualifiedName',
                   'type', t.e -> 'type', 'customType', t.e -> 'customType',
                   'enabledTools', t.e -> 'enabledTools'))
               || jsonb_build_object('config',
                   CASE WHEN jsonb_typeof(t.e #> '{config,url}') = 'string'
                        THEN jsonb_build_object('url', kx_url_public(t.e #>> '{config,url}'))
                        ELSE '{}'::jsonb END)
               ELSE t.e END ORDER BY t.i), '[]'::jsonb)
    FROM jsonb_array_elements(l) WITH ORDINALITY t(e, i)
$$;

-- The version as a reader may see it: with p_public (the reader does not own the agent) its
-- config without MCP credentials.
CREATE FUNCTION kx_version_for(v agent_versions, p_public boolean) RETURNS agent_versions
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF p_public AND v.version_id IS NOT NULL THEN
        v.config := kx_cfg_extra(v.config)
            || kx_cfg_build(kx_cfg_prompt(v.config), kx_cfg_agentpress(v.config),
                            kx_mcps_public(kx_cfg_mcps(v.config)),
                            kx_mcps_public(kx_cfg_custom(v.config)), kx_cfg_model(v.config));
    END IF;
    RETURN v;
END $$;

-- Kortix's AgentResponse as account p_viewer may see it (NULL: the owner). The one definition:
-- migration 007's kx_agent_json(a) becomes this for the owner.
CREATE FUNCTION kx_agent_json(a agents, p_viewer uuid) RETURNS json LANGUAGE plpgsql STABLE AS $$
DECLARE
    v agent_versions;
BEGIN
    SELECT * INTO v FROM agent_versions WHERE version_id = a.current_version_id;
    v := kx_version_for(v, p_viewer IS NOT NULL AND p_viewer <> a.account_id);
    RETURN json_build_object(
        'agent_id', a.agent_id, 'account_id', a.account_id, 'name', a.name,
        'description', a.description, 'system_prompt', kx_cfg_prompt(v.config),
        'model', kx_cfg_model(v.config), 'configured_mcps', kx_cfg_mcps(v.config),
        'custom_mcps', kx_cfg_custom(v.config), 'agentpress_tools', kx_cfg_agentpress(v.config),
        'is_default', a.is_default, 'avatar', a.avatar, 'avatar_color', a.avatar_color,
        'created_at', kx_iso(a.created_at), 'updated_at', kx_iso(a.updated_at),
        'is_public', a.is_public, 'tags', to_json(a.tags),
        'current_version_id', a.current_version_id, 'version_count', a.version_count,
        'current_version', CASE WHEN v.version_id IS NULL THEN NULL ELSE kx_version_json(v) END,
        'metadata', a.metadata);
END $$;

CREATE OR REPLACE FUNCTION kx_agent_json(a agents) RETURNS json LANGUAGE sql STABLE AS $$
    SELECT kx_agent_json(a, NULL::uuid)
$$;
