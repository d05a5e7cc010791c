-- 023_message_purges.sql — a deleted thread's messages are removed after the delete, in
-- batches, not inside it.
--
-- DELETE /api/threads/{id} and DELETE /api/projects/{id} deleted every message of the thread
-- (of each of the project's threads) in the request's one statement, under the gateway's
-- statement timeout (KX_DB_STATEMENT_TIMEOUT_MS, 5 s): a thread that had gathered a million
-- rows (15 a run; a trigger firing every minute makes 21 000 a day) could never be deleted —
-- every try timed out and rolled back. Now the delete marks the thread deleted (its messages
-- are unreadable from then on: every reader goes through the thread) and queues it here; the
-- gateway's purger (services/gateway/purge.c) deletes the queued threads' messages a batch at
-- a time, each batch its own short statement, and removes the entry when none is left. A
-- gateway that stops mid-way leaves the entry for the next purge (any replica: entries are
-- taken FOR UPDATE SKIP LOCKED).
CREATE TABLE message_purges (
    thread_id  uuid PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
