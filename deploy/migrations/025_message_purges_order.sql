-- 025_message_purges_order.sql — the purger takes the oldest queued thread on an index.
--
-- The gateway's purger (services/gateway/purge.h, migration 023) takes the oldest entry of
-- message_purges, ORDER BY created_at LIMIT 1 FOR UPDATE SKIP LOCKED, once per deleted thread.
-- With only the primary key, each take read and sorted the whole queue (FOR UPDATE: a full
-- sort, not a top-1; 100 000 entries, a bulk delete of projects, sorted on disk in 35 ms per
-- take): emptying a queue of n threads cost n whole sorts, an hour of the database's time for
-- 100 000 and days for a million, while the deleted threads' messages stayed. With this index
-- a take reads the queue's head.
CREATE INDEX IF NOT EXISTS message_purges_created_idx ON message_purges (created_at);
