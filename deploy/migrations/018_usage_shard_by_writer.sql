-- 018_usage_shard_by_writer.sql — the month's token counter of an account with limits takes
-- each addition on the shard of the backend that writes it, not of the run (issue 12;
-- docs/performance.md, "An account with limits at 2 000 concurrent runs").
--
-- 016 split tokens_month over 8 rows by a hash of the run id, so that the runner's connections
-- adding usage for one busy account would not queue on one row. But the runner writes a group
-- of runs' batches in ONE transaction, and the runs of one account hash to different shards:
-- a group that added usage to a run of shard 3 and then one of shard 5 held shard 3's row lock
-- while it waited for shard 5's, which a second group held while it waited for shard 3's.
-- Postgres broke that deadlock after deadlock_timeout (1 s), the group was rolled back and run
-- again job by job: 2 000 concurrent runs of an account with limits went at 69-130 runs/s
-- instead of 270-380 (bench_run --limited).
--
-- Now an addition goes to shard pg_backend_pid() & 7: a transaction touches one counter row
-- of the account, however many of its runs it adds usage to, so two of them can wait for each
-- other's row (when their backends share a shard) but never in a cycle. The sum over the 8
-- rows, the only thing read (kx_usage_get), is unchanged; kx_usage_recount may spread a
-- recount otherwise (by run), which is as good. p_run is kept for the callers.
CREATE OR REPLACE FUNCTION kx_usage_add_run_tokens(p_account uuid, p_run uuid,
                                                   p_created timestamptz, p_tokens bigint)
RETURNS void LANGUAGE sql VOLATILE AS $$
    SELECT kx_usage_add(p_account, 'tokens_month', kx_month_start(p_created),
                        pg_backend_pid() & 7, p_tokens)
$$;
