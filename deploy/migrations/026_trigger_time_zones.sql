-- 026_trigger_time_zones.sql — scheduled runs read their cron expression on a time zone's wall
-- clock ("0 9 * * 1-5" in Europe/Berlin is 09:00 in Berlin, summer and winter).
--
-- run_triggers.timezone held only 'UTC' (CHECK (timezone = 'UTC'), migration 005): the gateway
-- refused any other zone. It now holds an IANA zone name; the gateway checks that the zone
-- exists in the time zone database when a trigger is created or edited (common/src/tz.c, kx_tz)
-- and computes next_fire_at on its wall clock, as the scheduler does after each fire. The
-- check here only bounds what a row may hold: the characters and length kx_tz accepts.
-- Existing rows stay 'UTC'; nothing is rewritten (the constraint is checked against them once).
ALTER TABLE run_triggers DROP CONSTRAINT run_triggers_timezone_check;
ALTER TABLE run_triggers ADD CONSTRAINT run_triggers_timezone_check
    CHECK (timezone ~ '^[A-Za-z0-9_+-][A-Za-z0-9_+./-]{0,63}$');
