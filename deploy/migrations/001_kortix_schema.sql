-- 001_kortix_schema.sql — the Kortix tables, with Kortix names and columns
-- (reference: Kortix schema as of its 2025-07-29 migrations), plus what our scheduler needs.
-- Differences from Kortix, on purpose:
--   * every table holding user data carries account_id (the JWT's sub), so every query can be
--     scoped to one account without joins;
--   * agent_runs has a CHECK on status and the lease columns (owner, epoch, expiry, attempt,
--     heartbeat) that fence late writers; 'queued' is a real state;
--   * started_at is NULL until a runner claims the run;
--   * created_at defaults to clock_timestamp() so rows written in one transaction still order.
-- Applied by kx_db_migrate under an advisory lock, once.

CREATE TABLE projects (
    project_id  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name        text NOT NULL,
    description text,
    account_id  uuid NOT NULL,
    sandbox     jsonb NOT NULL DEFAULT '{}'::jsonb,
    is_public   boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX projects_account_id_idx ON projects (account_id);
CREATE INDEX projects_created_at_idx ON projects (created_at);

CREATE TABLE threads (
    thread_id   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    account_id  uuid NOT NULL,
    project_id  uuid REFERENCES projects (project_id) ON DELETE CASCADE,
    is_public   boolean NOT NULL DEFAULT false,
    metadata    jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX threads_account_id_idx ON threads (account_id);
CREATE INDEX threads_project_id_idx ON threads (project_id);
CREATE INDEX threads_created_at_idx ON threads (created_at);
CREATE INDEX threads_metadata_idx ON threads USING gin (metadata);

CREATE TABLE agents (
    agent_id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    account_id         uuid NOT NULL,
    name               varchar(255) NOT NULL,
    description        text,
    is_default         boolean NOT NULL DEFAULT false,
    avatar             varchar(10),
    avatar_color       varchar(7),
    current_version_id uuid,
    version_count      integer NOT NULL DEFAULT 1,
    is_public          boolean NOT NULL DEFAULT false,
    tags               text[] NOT NULL DEFAULT '{}',
    metadata           jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at         timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX agents_account_id_idx ON agents (account_id);
CREATE UNIQUE INDEX agents_one_default_per_account ON agents (account_id) WHERE is_default;
CREATE UNIQUE INDEX agents_one_suna_default_per_account ON agents (account_id)
    WHERE (metadata ->> 'is_suna_default')::boolean;
CREATE INDEX agents_tags_idx ON agents USING gin (tags);

CREATE TABLE agent_versions (
    version_id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agent_id            uuid NOT NULL REFERENCES agents (agent_id) ON DELETE CASCADE,
    account_id          uuid NOT NULL,
    version_number      integer NOT NULL,
    version_name        varchar(50) NOT NULL,
    is_active           boolean NOT NULL DEFAULT true,
    created_by          uuid,
    change_description  text,
    previous_version_id uuid REFERENCES agent_versions (version_id),
    config              jsonb NOT NULL DEFAULT '{"system_prompt": "", "tools": {}}'::jsonb
                        CHECK (config ? 'system_prompt' AND config ? 'tools'),
    created_at          timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at          timestamptz NOT NULL DEFAULT clock_timestamp(),
    UNIQUE (agent_id, version_number),
    UNIQUE (agent_id, version_name)
);
CREATE INDEX agent_versions_agent_id_idx ON agent_versions (agent_id);

ALTER TABLE agents ADD CONSTRAINT agents_current_version_fk
    FOREIGN KEY (current_version_id) REFERENCES agent_versions (version_id) ON DELETE SET NULL;

CREATE TABLE messages (
    message_id       uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    thread_id        uuid NOT NULL REFERENCES threads (thread_id) ON DELETE CASCADE,
    account_id       uuid NOT NULL,
    type             text NOT NULL,
    is_llm_message   boolean NOT NULL DEFAULT true,
    content          jsonb NOT NULL,
    metadata         jsonb NOT NULL DEFAULT '{}'::jsonb,
    agent_id         uuid REFERENCES agents (agent_id) ON DELETE SET NULL,
    agent_version_id uuid REFERENCES agent_versions (version_id) ON DELETE SET NULL,
    agent_run_id     uuid,
    created_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at       timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX messages_thread_created_idx ON messages (thread_id, created_at);
CREATE INDEX messages_thread_llm_idx ON messages (thread_id, created_at) WHERE is_llm_message;
CREATE INDEX messages_agent_id_idx ON messages (agent_id);
CREATE INDEX messages_agent_run_id_idx ON messages (agent_run_id);

CREATE TABLE agent_runs (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    thread_id        uuid NOT NULL REFERENCES threads (thread_id),
    account_id       uuid NOT NULL,
    project_id       uuid NOT NULL,
    status           text NOT NULL DEFAULT 'queued'
                     CHECK (status IN ('queued', 'running', 'completed', 'failed', 'stopped')),
    started_at       timestamptz,
    completed_at     timestamptz,
    error            text,
    agent_id         uuid REFERENCES agents (agent_id) ON DELETE SET NULL,
    agent_version_id uuid REFERENCES agent_versions (version_id) ON DELETE SET NULL,
    metadata         jsonb NOT NULL DEFAULT '{}'::jsonb,
    -- scheduler: the lease and its fencing epoch. Every transition is
    -- UPDATE ... WHERE status = <expected> AND lease_epoch = <held>.
    lease_owner      text,
    lease_epoch      bigint NOT NULL DEFAULT 0,
    lease_expires_at timestamptz,
    heartbeat_at     timestamptz,
    attempt          integer NOT NULL DEFAULT 0,
    max_attempts     integer NOT NULL DEFAULT 1,
    dispatched_at    timestamptz,
    created_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at       timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX agent_runs_thread_id_idx ON agent_runs (thread_id, created_at);
CREATE INDEX agent_runs_account_active_idx ON agent_runs (account_id)
    WHERE status IN ('queued', 'running');
CREATE INDEX agent_runs_lease_expiry_idx ON agent_runs (lease_expires_at) WHERE status = 'running';
CREATE INDEX agent_runs_queued_idx ON agent_runs (created_at) WHERE status = 'queued';
CREATE INDEX agent_runs_metadata_idx ON agent_runs USING gin (metadata);

CREATE FUNCTION kx_touch_updated_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := clock_timestamp();
    RETURN NEW;
END $$;

CREATE TRIGGER projects_touch BEFORE UPDATE ON projects
    FOR EACH ROW EXECUTE FUNCTION kx_touch_updated_at();
CREATE TRIGGER threads_touch BEFORE UPDATE ON threads
    FOR EACH ROW EXECUTE FUNCTION kx_touch_updated_at();
CREATE TRIGGER agents_touch BEFORE UPDATE ON agents
    FOR EACH ROW EXECUTE FUNCTION kx_touch_updated_at();
CREATE TRIGGER agent_versions_touch BEFORE UPDATE ON agent_versions
    FOR EACH ROW EXECUTE FUNCTION kx_touch_updated_at();
CREATE TRIGGER messages_touch BEFORE UPDATE ON messages
    FOR EACH ROW EXECUTE FUNCTION kx_touch_updated_at();
CREATE TRIGGER agent_runs_touch BEFORE UPDATE ON agent_runs
    FOR EACH ROW EXECUTE FUNCTION kx_touch_updated_at();
