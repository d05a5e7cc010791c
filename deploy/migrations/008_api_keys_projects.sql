-- 008_api_keys_projects.sql — API keys (docs/api.md, "API keys"), and what the project and
-- thread routes need.
--
--   * api_keys: one row per key. public_key ("pk_" + 32 hex) is the lookup (unique index: one
--     indexed read per request); the secret ("sk_" + 64 hex, 256 random bits) is never stored,
--     only HMAC-SHA256(secret, key = the gateway's KX_API_KEY_SECRET) as 64 hex characters.
--     A keyed hash rather than a slow one: the secret is 256 random bits, so guessing it from
--     the digest is out of reach without any work factor, and a slow hash would cost every
--     API-key request milliseconds of CPU; the key (not in the database) makes a leaked table
--     useless even for checking guesses. status is 'active' or 'revoked'; expires_at NULL =
--     never. last_used_at is refreshed at most once a minute per key.
--   * threads.deleted_at, projects.deleted_at: DELETE /api/threads/{id} and /api/projects/{id}
--     stop the active runs, delete the messages (the conversation's content) and mark the rows
--     deleted; the routes treat a deleted row as absent (404). The agent_runs rows stay: they
--     are the account's usage (runs_per_day, tokens_per_month of 005), which deleting a
--     thread must not reset, and agent_runs.thread_id has no ON DELETE action.
--   * agent_runs_thread_active_idx: DELETE of a thread or a project stops the active runs of
--     its threads.

CREATE TABLE api_keys (
    key_id       uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    account_id   uuid NOT NULL,
    public_key   text NOT NULL UNIQUE CHECK (public_key ~ '^pk_[0-9a-f]{32}$'),
    secret_hash  text NOT NULL CHECK (secret_hash ~ '^[0-9a-f]{64}$'),
    title        text NOT NULL CHECK (char_length(title) BETWEEN 1 AND 255),
    description  text,
    status       text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'revoked')),
    expires_at   timestamptz,
    last_used_at timestamptz,
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at   timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX api_keys_account_idx ON api_keys (account_id, created_at);
CREATE TRIGGER api_keys_touch BEFORE UPDATE ON api_keys
    FOR EACH ROW EXECUTE FUNCTION kx_touch_updated_at();

CREATE INDEX agent_runs_thread_active_idx ON agent_runs (thread_id)
    WHERE status IN ('queued', 'running');

ALTER TABLE threads ADD COLUMN deleted_at timestamptz;
ALTER TABLE projects ADD COLUMN deleted_at timestamptz;
CREATE INDEX threads_account_live_idx ON threads (account_id, created_at) WHERE deleted_at IS NULL;
CREATE INDEX projects_account_live_idx ON projects (account_id, created_at)
    WHERE deleted_at IS NULL;
