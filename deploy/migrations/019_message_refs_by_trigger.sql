-- 019_message_refs_by_trigger.sql — the three foreign keys of messages become triggers that
-- check only the rows that need a check (issue 12; docs/performance.md, "Message rows without
-- foreign-key events").
--
-- messages.thread_id -> threads (ON DELETE CASCADE), messages.agent_id -> agents and
-- messages.agent_version_id -> agent_versions (both ON DELETE SET NULL) were foreign keys. A
-- foreign key queues one AFTER event per inserted row and fires it at the end of the statement,
-- whatever the row: the runner's fenced inserts (15 rows per run in the issue-12 benchmark)
-- queued 45 events per run — 15 SPI look-ups of the thread, each taking FOR KEY SHARE on the
-- threads row (a WAL record and a dirtied page per statement), and 30 events for the two agent
-- columns the runner never sets, each fetching the new row back from the heap to find its key
-- NULL. PostgreSQL 15 cannot skip a foreign key's event; a trigger with a WHEN clause queues
-- nothing when the clause is false.
--
-- Which rows skip the thread check: the rows of the runner's fenced statement
-- (services/agent-runner/store.c, runner_insert_messages[_usage]). That statement sets
-- kx.usage_counted_ids (migration 015) to its batch's message ids for the transaction and takes
-- each row's thread_id from the agent_runs row it holds FOR SHARE. That run row references the
-- thread (agent_runs_thread_id_fkey, no ON DELETE/UPDATE action), so until the insert commits
-- the thread cannot be deleted or its key changed: the run row's own foreign key refuses it,
-- and the run row itself cannot be deleted or its thread_id changed (it waits for our FOR
-- SHARE). Threads are soft-deleted by the services (migration 008: deleted_at; the gateway
-- deletes the messages itself), which no foreign key looked at anyway. A message id is
-- inserted once (primary key), so an id found in the setting is a row that statement wrote.
-- Every other writer (the gateway, the tool-executor, kx_fire_trigger, any SQL) is checked as
-- before: the referenced row is locked FOR KEY SHARE at the end of the statement, and a
-- missing one fails the statement with SQLSTATE 23503 naming the old constraint.
--
-- The referenced side keeps its behaviour: a deleted thread deletes its messages (also on
-- TRUNCATE ... CASCADE of threads, which no longer reaches messages by a key), a deleted agent
-- or agent version sets the column NULL, and changing a referenced key fails with 23503 (the
-- keys' NO ACTION on update). In READ COMMITTED each statement of these functions sees what
-- committed before it, so a message racing the delete of its thread is either seen and
-- deleted or refused (the inserter's FOR KEY SHARE makes the delete wait for it). One
-- difference: a hard DELETE of a thread in REPEATABLE READ or SERIALIZABLE no longer fails on a
-- message committed after its snapshot (a foreign key's cascade used a fresh snapshot and
-- raised a serialization failure); no service deletes threads. And the checks run with the
-- writer's privileges (a foreign key's run as the table's owner): the services connect as the
-- schema's owner.

ALTER TABLE messages DROP CONSTRAINT messages_thread_id_fkey;
ALTER TABLE messages DROP CONSTRAINT messages_agent_id_fkey;
ALTER TABLE messages DROP CONSTRAINT messages_agent_version_id_fkey;

CREATE FUNCTION kx_fk_violation(p_constraint text, p_column text, p_key uuid, p_parent text)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'insert or update on table "messages" violates foreign key constraint "%"',
        p_constraint
        USING ERRCODE = 'foreign_key_violation', CONSTRAINT = p_constraint, TABLE = 'messages',
              DETAIL = format('Key (%s)=(%s) is not present in table "%s".', p_column, p_key,
                              p_parent);
END $$;

-- The child side (the test of kx.usage_counted_ids is written out, as in 015's trigger: a SQL
-- function in a trigger's WHEN is not inlined, it would run as a query per row): the referenced rows of NEW exist (locked FOR KEY SHARE, as a foreign key's
-- check locks them). On INSERT the thread is not looked up for a row of the runner's fenced
-- statement; on UPDATE only a changed key is.
CREATE FUNCTION kx_message_refs_check() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (TG_OP = 'INSERT'
        AND coalesce(strpos(current_setting('kx.usage_counted_ids', true),
                            NEW.message_id::text), 0) = 0)
       OR (TG_OP = 'UPDATE' AND NEW.thread_id IS DISTINCT FROM OLD.thread_id) THEN
        PERFORM 1 FROM threads WHERE thread_id = NEW.thread_id FOR KEY SHARE;
        IF NOT FOUND THEN
            PERFORM kx_fk_violation('messages_thread_id_fkey', 'thread_id', NEW.thread_id,
                                    'threads');
        END IF;
    END IF;
    IF NEW.agent_id IS NOT NULL
       AND (TG_OP = 'INSERT' OR NEW.agent_id IS DISTINCT FROM OLD.agent_id) THEN
        PERFORM 1 FROM agents WHERE agent_id = NEW.agent_id FOR KEY SHARE;
        IF NOT FOUND THEN
            PERFORM kx_fk_violation('messages_agent_id_fkey', 'agent_id', NEW.agent_id,
                                    'agents');
        END IF;
    END IF;
    IF NEW.agent_version_id IS NOT NULL
       AND (TG_OP = 'INSERT' OR NEW.agent_version_id IS DISTINCT FROM OLD.agent_version_id) THEN
        PERFORM 1 FROM agent_versions WHERE version_id = NEW.agent_version_id FOR KEY SHARE;
        IF NOT FOUND THEN
            PERFORM kx_fk_violation('messages_agent_version_id_fkey', 'agent_version_id',
                                    NEW.agent_version_id, 'agent_versions');
        END IF;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER messages_refs_insert AFTER INSERT ON messages FOR EACH ROW
    WHEN (NEW.agent_id IS NOT NULL OR NEW.agent_version_id IS NOT NULL
          OR coalesce(strpos(current_setting('kx.usage_counted_ids', true),
                             NEW.message_id::text), 0) = 0)
    EXECUTE FUNCTION kx_message_refs_check();
CREATE TRIGGER messages_refs_update AFTER UPDATE OF thread_id, agent_id, agent_version_id
    ON messages FOR EACH ROW
    WHEN (NEW.thread_id IS DISTINCT FROM OLD.thread_id
          OR (NEW.agent_id IS NOT NULL AND NEW.agent_id IS DISTINCT FROM OLD.agent_id)
          OR (NEW.agent_version_id IS NOT NULL
              AND NEW.agent_version_id IS DISTINCT FROM OLD.agent_version_id))
    EXECUTE FUNCTION kx_message_refs_check();

-- The referenced side.
CREATE FUNCTION kx_message_parent_gone() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_TABLE_NAME = 'threads' THEN
        IF TG_OP = 'TRUNCATE' THEN
            DELETE FROM messages;
        ELSIF TG_OP = 'DELETE' THEN
            DELETE FROM messages WHERE thread_id = OLD.thread_id;
        ELSIF EXISTS (SELECT 1 FROM messages WHERE thread_id = OLD.thread_id) THEN
            RAISE EXCEPTION 'update or delete on table "threads" violates foreign key constraint "messages_thread_id_fkey" on table "messages"'
                USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'messages_thread_id_fkey',
                      TABLE = 'threads';
        END IF;
    ELSIF TG_TABLE_NAME = 'agents' THEN
        IF TG_OP = 'DELETE' THEN
            UPDATE messages SET agent_id = NULL WHERE agent_id = OLD.agent_id;
        ELSIF EXISTS (SELECT 1 FROM messages WHERE agent_id = OLD.agent_id) THEN
            RAISE EXCEPTION 'update or delete on table "agents" violates foreign key constraint "messages_agent_id_fkey" on table "messages"'
                USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'messages_agent_id_fkey',
                      TABLE = 'agents';
        END IF;
    ELSE
        IF TG_OP = 'DELETE' THEN
            UPDATE messages SET agent_version_id = NULL WHERE agent_version_id = OLD.version_id;
        ELSIF EXISTS (SELECT 1 FROM messages WHERE agent_version_id = OLD.version_id) THEN
            RAISE EXCEPTION 'update or delete on table "agent_versions" violates foreign key constraint "messages_agent_version_id_fkey" on table "messages"'
                USING ERRCODE = 'foreign_key_violation',
                      CONSTRAINT = 'messages_agent_version_id_fkey', TABLE = 'agent_versions';
        END IF;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER threads_messages_delete AFTER DELETE ON threads FOR EACH ROW
    EXECUTE FUNCTION kx_message_parent_gone();
CREATE TRIGGER threads_messages_key AFTER UPDATE OF thread_id ON threads FOR EACH ROW
    WHEN (NEW.thread_id IS DISTINCT FROM OLD.thread_id)
    EXECUTE FUNCTION kx_message_parent_gone();
CREATE TRIGGER threads_messages_truncate AFTER TRUNCATE ON threads FOR EACH STATEMENT
    EXECUTE FUNCTION kx_message_parent_gone();
CREATE TRIGGER agents_messages_delete AFTER DELETE ON agents FOR EACH ROW
    EXECUTE FUNCTION kx_message_parent_gone();
CREATE TRIGGER agents_messages_key AFTER UPDATE OF agent_id ON agents FOR EACH ROW
    WHEN (NEW.agent_id IS DISTINCT FROM OLD.agent_id)
    EXECUTE FUNCTION kx_message_parent_gone();
CREATE TRIGGER agent_versions_messages_delete AFTER DELETE ON agent_versions FOR EACH ROW
    EXECUTE FUNCTION kx_message_parent_gone();
CREATE TRIGGER agent_versions_messages_key AFTER UPDATE OF version_id ON agent_versions
    FOR EACH ROW WHEN (NEW.version_id IS DISTINCT FROM OLD.version_id)
    EXECUTE FUNCTION kx_message_parent_gone();
