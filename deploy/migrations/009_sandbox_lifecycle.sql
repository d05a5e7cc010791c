-- 009_sandbox_lifecycle.sql — projects.sandbox as the sandbox-broker's lifecycle fills it.
--
-- projects.sandbox holds {id, state, provider, broker, created_unix_ms, updated_unix_ms}
-- (docs/subjects.md, kx.sandbox.state). The broker holds no database URL: the gateway records
-- each state event and each ensure-active reply, only when updated_unix_ms is not older than
-- what the row has. The sandbox routes (/api/sandboxes/{id}/...) find a project by its
-- sandbox's id: this index makes that lookup one index probe.
CREATE INDEX IF NOT EXISTS projects_sandbox_id_idx ON projects ((sandbox ->> 'id'))
    WHERE sandbox ? 'id';
