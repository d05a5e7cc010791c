-- fpi_cost.sql — the backend CPU of a full-page image (FPI): the same durable HOT updates of
-- 8 000 distinct heap pages, 100 pages per commit, right after a CHECKPOINT (every page's
-- first change writes its image into the WAL) and again (no image); CPU from
-- /proc/self/schedstat (ns), WAL from pg_current_wal_lsn(). docs/performance.md, "PostgreSQL's
-- own settings". Superuser (pg_read_file, CHECKPOINT), a scratch database, fsync on:
--   psql -X -q -d <db> -f tests/bench/sql/fpi_cost.sql            (wal_compression off)
--   PGOPTIONS="-c wal_compression=lz4" psql -X -q -d <db> -f tests/bench/sql/fpi_cost.sql
-- The table (10 000 pages, 4 rows of ~1.3 KB a page, 75 % full) is made once.
\set QUIET on
SET client_min_messages = warning;
CREATE TABLE IF NOT EXISTS fpi_t (id int PRIMARY KEY, v int NOT NULL, pad text NOT NULL)
    WITH (fillfactor = 75);
ALTER TABLE fpi_t ALTER pad SET STORAGE plain;
INSERT INTO fpi_t SELECT g, 0, (SELECT string_agg(gen_random_uuid()::text, '') FROM
    generate_series(1, 17) WHERE g > 0) || repeat('{"status_type": "x"}', 30)
    FROM generate_series(1, 40000) g WHERE NOT EXISTS (SELECT 1 FROM fpi_t);
VACUUM ANALYZE fpi_t;
-- row id = page * 4 + 1: one row on each page
CREATE OR REPLACE PROCEDURE fpi_round(pages int, per int) LANGUAGE plpgsql AS $$
DECLARE b int;
BEGIN
  FOR b IN 0 .. pages / per - 1 LOOP
    UPDATE fpi_t SET v = v + 1
      WHERE id = ANY (ARRAY(SELECT g * 4 + 1 FROM generate_series(b * per, b * per + per - 1) g));
    COMMIT;
  END LOOP;
END $$;
CREATE TEMP TABLE s (k text, cpu bigint, lsn pg_lsn);
CREATE PROCEDURE pg_temp.snap(k text) LANGUAGE sql AS $$
  INSERT INTO s SELECT k, (SELECT split_part(x, ' ', 1)::bigint
    FROM pg_read_file('/proc/self/schedstat') x), pg_current_wal_lsn() $$;
CALL fpi_round(8000, 100);
CHECKPOINT;
CALL pg_temp.snap('0');
CALL fpi_round(8000, 100);
CALL pg_temp.snap('after the checkpoint');
CALL fpi_round(8000, 100);
CALL pg_temp.snap('again');
\pset tuples_only on
SELECT string_agg(format('%s: %s us, %s B of WAL a page', k, round((cpu - lag_cpu) / 1000.0 / 8000, 2),
    round((lsn - lag_lsn) / 8000.0)), ' | ' ORDER BY k DESC)
  FROM (SELECT *, lag(cpu) OVER w AS lag_cpu, lag(lsn) OVER w AS lag_lsn FROM s
        WINDOW w AS (ORDER BY k = '0' DESC, k = 'again')) z WHERE lag_cpu IS NOT NULL;
