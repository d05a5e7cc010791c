-- 022_version_config_bytes.sql — the size of each agent version's config, so that the versions
-- list (gw_versions_list) answers the newest versions up to a bound in bytes.
--
-- The list answered every version of an agent in one JSON array, each with its system prompt
-- (up to KX_MAX_PROMPT_BYTES, 256 KiB) and MCP lists: an agent edited a few thousand times is
-- a response of a GB built by Postgres for every reader — and a public agent's versions are
-- readable by any account. The bound needs each version's size without building its JSON or
-- detoasting its config (the stored size undercounts a compressible prompt); a stored
-- generated column computes it once, when the version is written (versions are rare writes).
ALTER TABLE agent_versions
    ADD COLUMN config_bytes integer GENERATED ALWAYS AS (octet_length(config::text)) STORED;
