-- 024_agent_delete_indexes.sql — deleting an agent reads indexes, not whole tables.
--
-- DELETE FROM agents (DELETE /api/agents/{id}) cascades to the agent's versions and triggers,
-- and sets to NULL what referred to them. Each of those follows a reference backwards, and
-- none had an index on its referring column, so each was a sequential scan of the whole table:
-- agent_runs for the agent (agent_runs.agent_id) and once per version (agent_version_id),
-- messages once per version (agent_version_id, migration 019's trigger), agent_versions once
-- per version (previous_version_id), agents once per version (current_version_id) and
-- run_triggers (agent_id). On a grown database — ten million runs and messages — an agent
-- with a handful of versions could not be deleted within the statement timeout. The indexes
-- are partial: rows that refer to nothing (most messages, runs made without an agent) add no
-- entry; an equality on the column implies it is not NULL, so the reverse look-ups use them.
-- On an existing deployment each is built once by this migration (writes to the table wait).
CREATE INDEX IF NOT EXISTS agent_runs_agent_idx ON agent_runs (agent_id)
    WHERE agent_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS agent_runs_agent_version_idx ON agent_runs (agent_version_id)
    WHERE agent_version_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS messages_agent_version_idx ON messages (agent_version_id)
    WHERE agent_version_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS agent_versions_previous_idx ON agent_versions (previous_version_id)
    WHERE previous_version_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS agents_current_version_idx ON agents (current_version_id)
    WHERE current_version_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS run_triggers_agent_idx ON run_triggers (agent_id);
