/* store.c — every SQL statement the scheduler runs, in one table, and the wrappers that run
 * them and keep s->db_up current (the readiness check reports it).
 *
 * Every write here is idempotent (docs/architecture.md, "Run core"), so kx_db may run it again
 * after a lost answer: the heartbeat is an upsert of one row; the reaper writes what it decided
 * into the rows themselves (notice, notice_epoch), so a reap whose answer was lost loses
 * nothing — the notices are read back by a separate SELECT and cleared by a compare-and-set on
 * notice_epoch; mark/unmark/set_dispatch_seq only touch queued rows. The scheduler never holds
 * a transaction open.
 *
 * The functions run on the database threads (kx/db_lanes.h): each takes the connection of the
 * thread it runs on (db); s gives the settings and the flags they update (atomics). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kx/log.h"
#include "kx/time.h"
#include "sched.h"

/* A timestamptz as ISO 8601 in UTC with milliseconds. */
#define ISO_MS(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"

/* Admission: waiting run w (the alias) may start as far as its thread goes — no other run of
 * the thread is active (running, or dispatched) or waits since before it (created_at, id).
 * The status test is written "(…) IS TRUE" so that no partial index on status fits it: a
 * generic plan made while no run was active walked agent_runs_thread_active_idx whole for each
 * candidate; this way the thread's runs are read through agent_runs_thread_id_idx
 * (tests/unit/test_scheduler_plans.c). */
#define SCHED_W_THREAD_IDLE                                                                       \
    "AND NOT EXISTS (SELECT 1 FROM agent_runs x WHERE x.thread_id = w.thread_id "                 \
    "AND (x.status IN ('queued', 'running')) IS TRUE AND x.id <> w.id AND (x.status = 'running' " \
    "OR x.dispatched_at IS NOT NULL OR (x.created_at, x.id) < (w.created_at, w.id)))"

/* clang-format off: SQL laid out by hand */
const kx_db_stmt sched_statements[] = {
    /* kx.run.submit: a queued run is being dispatched now. */
    {"sched_mark_dispatched",
     "UPDATE agent_runs SET updated_at = clock_timestamp(), dispatched_at = now(), "
     "dispatch_seq = NULL "
     "WHERE id = $1::uuid AND status IS NOT DISTINCT FROM 'queued' "
     "RETURNING id, thread_id, account_id, project_id, attempt"},
    /* The dispatch could not be published: let the sweep retry it soon. */
    {"sched_unmark_dispatched",
     "UPDATE agent_runs SET updated_at = clock_timestamp(), dispatched_at = NULL "
     "WHERE id = $1::uuid AND status IS NOT DISTINCT FROM 'queued'"},
    {"sched_set_dispatch_seq",
     "UPDATE agent_runs SET updated_at = clock_timestamp(), dispatch_seq = $2::bigint "
     "WHERE id = $1::uuid AND status IS NOT DISTINCT FROM 'queued'"},
    /* The same for an admission pass's runs at once: one statement, one commit (group commit).
     * Idempotent like the single one (a retry writes the same values).
     * Each run is found by the row version the admission returned ($3, its ctid): a TID probe,
     * checked against the run's id. A version updated since (the run claimed, stopped) is no
     * longer the run's and is skipped, as is a gone one: a claimed run needs no sequence, and
     * for any other a missing one costs a second dispatch by the sweep (sweep.c), harmless;
     * an update running concurrently is followed to its new version (checked again: status,
     * id). The filter on v.n is always true: it makes the planner estimate
     * one row from unnest, so that the generic plan probes the rows one by one even when it is
     * made while agent_runs was never analyzed. Joined by id (or "= ANY"), the generic plan
     * made on a young table is a sequential scan of agent_runs, kept for good: every pass then
     * read every run (tests/unit/test_scheduler_plans.c). */
    {"sched_set_dispatch_seqs",
     "UPDATE agent_runs r SET updated_at = clock_timestamp(), dispatch_seq = v.seq "
     "FROM unnest($1::uuid[], $2::bigint[], $3::tid[]) WITH ORDINALITY AS v(id, seq, tid, n) "
     "WHERE v.n BETWEEN 1 AND cardinality($1::uuid[]) AND r.ctid = v.tid AND r.id = v.id "
     "AND r.status IS NOT DISTINCT FROM 'queued'"},
    /* Runs whose dispatch was not acknowledged, given back; found as above. */
    {"sched_unmark_many",
     "UPDATE agent_runs r SET updated_at = clock_timestamp(), dispatched_at = NULL "
     "FROM unnest($1::uuid[], $2::tid[]) WITH ORDINALITY AS v(id, tid, n) "
     "WHERE v.n BETWEEN 1 AND cardinality($1::uuid[]) AND r.ctid = v.tid AND r.id = v.id "
     "AND r.status IS NOT DISTINCT FROM 'queued'"},
    /* kx.run.hb: renew the runner's ONE lease row (clock_timestamp: a heartbeat that waited
     * for a lock still grants a full TTL from when it is written), then the leases it lost
     * since $4 (unix ms), oldest first, at most $5; the last row carries the server's now. */
    {"sched_heartbeat",
     "WITH l AS (INSERT INTO runner_leases (runner_id, expires_at, heartbeat_at, capacity) "
     "  VALUES ($1, clock_timestamp() + ($2::bigint * interval '1 millisecond'), "
     "          clock_timestamp(), $3::int) "
     "  ON CONFLICT (runner_id) DO UPDATE SET expires_at = EXCLUDED.expires_at, "
     "    heartbeat_at = EXCLUDED.heartbeat_at, capacity = EXCLUDED.capacity RETURNING 1) "
     "SELECT * FROM (SELECT run_id::text, epoch, "
     "  (extract(epoch FROM revoked_at) * 1000)::bigint AS at FROM lease_revocations "
     "  WHERE runner_id = $1 AND revoked_at >= to_timestamp($4::bigint / 1000.0) "
     "  ORDER BY revoked_at LIMIT $5::int) v "
     "UNION ALL SELECT NULL, NULL, (extract(epoch FROM clock_timestamp()) * 1000)::bigint "
     "FROM l"},
    /* The reaper. A running run is dead when its wall time (from the claim) passed, or — if
     * leases may be reaped now ($2) — when its own claim-time lease AND its runner's lease row
     * both expired. Dead by lease: queued again with the epoch bumped while attempt < $3
     * (notice 'retried'), else failed (notice 'failed'); by wall time: failed. SKIP LOCKED: a
     * row a runner's fenced write holds right now is taken at the next pass. */
    {"sched_reap",
     "WITH dead AS (SELECT r.id, r.ctid AS tid, "
     "    r.started_at < now() - ($1::bigint * interval '1 second') AS wall, "
     "    coalesce(greatest(l.heartbeat_at, r.heartbeat_at), r.heartbeat_at, r.started_at) "
     "      AS last_beat "
     "  FROM agent_runs r LEFT JOIN runner_leases l ON l.runner_id = r.lease_owner "
     "  WHERE r.status = 'running' AND (r.started_at < now() - ($1::bigint * interval '1 second') "
     "    OR ($2::boolean AND r.lease_expires_at < now() "
     "        AND (l.expires_at IS NULL OR l.expires_at < now()))) "
     "  ORDER BY r.id LIMIT $4::int FOR UPDATE OF r SKIP LOCKED) "
     "UPDATE agent_runs r SET updated_at = clock_timestamp(), "
     "  status = CASE WHEN NOT d.wall AND r.attempt < $3::int THEN 'queued' ELSE 'failed' END, "
     "  notice = CASE WHEN NOT d.wall AND r.attempt < $3::int THEN 'retried' ELSE 'failed' END, "
     "  completed_at = CASE WHEN NOT d.wall AND r.attempt < $3::int THEN NULL ELSE now() END, "
     "  error = CASE WHEN d.wall THEN 'exceeded max wall time of ' || $1::bigint::text || ' s' "
     /* released by its runner (agent-runner/store.c, SQL_RELEASE): the runner's reason */
     "    WHEN r.lease_owner IS NULL AND r.error IS NOT NULL THEN r.error "
     "    ELSE 'reaped: runner ' || coalesce(r.lease_owner, 'unknown') || "
     "         ' stopped heartbeating at ' || " ISO_MS(
         "d.last_beat") " END, "
                        "  lease_epoch = r.lease_epoch + 1, notice_epoch = r.lease_epoch + 1, "
                        "  lease_expires_at = NULL, dispatched_at = NULL, dispatch_seq = NULL "
                        "FROM dead d WHERE r.ctid = d.tid AND r.id = d.id "
                        "AND r.status IS NOT DISTINCT FROM 'running'"},
    /* A batch of pending notices, the batch's oldest first. The batch is taken in the order
     * of agent_runs_notice_idx, (id) WHERE notice IS NOT NULL (migration 012), so that even the
     * generic plan made on a never-analyzed table reads that index and not every run; ordered
     * by updated_at as a whole, that plan was a sequential scan (unit_scheduler_plans). Every
     * pending notice is in some batch: each published one is cleared. */
    {"sched_notices",
     "SELECT id::text, coalesce(lease_owner, ''), coalesce(error, ''), notice_epoch, "
     "account_id::text, notice, thread_id::text, project_id::text, attempt, status "
     "FROM (SELECT * FROM agent_runs WHERE notice IS NOT NULL ORDER BY id LIMIT $1::int) n "
     "ORDER BY updated_at"},
    {"sched_notice_done",
     "UPDATE agent_runs SET updated_at = clock_timestamp(), notice = NULL, notice_epoch = NULL "
     "WHERE id = $1::uuid AND notice_epoch = $2::bigint"},
    /* Admission: which waiting runs (queued, not dispatched) may be dispatched now.
     *  - one active run per thread (multitask "enqueue"): only a thread's oldest waiting run,
     *    and only when none of the thread's runs is active (running, or dispatched);
     *  - per account at most $1 active runs (KX_MAX_PARALLEL_RUNS);
     *  - fair: each account's 1st waiting run, then each account's 2nd, ... (round robin),
     *    oldest first within a round, at most $2 per pass;
     *  - one scheduler replica at a time (a transaction-scoped advisory lock: a replica that
     *    does not get it admits nothing this pass), so replicas never exceed a limit together.
     * Marks the picked runs dispatched and returns them. A lost answer loses nothing: the
     * sweep takes a run marked dispatched without a recorded dispatch for lost after 10 s.
     *
     * Index-driven (migration 011), so a pass costs O(batch), not O(active + waiting runs):
     *  accts  the accounts with waiting runs: one probe of agent_runs_waiting_idx per account
     *         (a skip scan: the next account_id after the last one);
     *  room   each one's free slots: $1 minus its active runs, counted on agent_runs_active_idx
     *         and only up to $1 — or, when its bound (admission_bounds, migration 014) was
     *         counted less than $6 ms ago and leaves room for a whole batch ($2), $1 minus the
     *         bound, without counting (admit.c, "Counting");
     *  elig   those with room and at least one eligible waiting run (oldest of its thread, the
     *         thread idle: one probe of agent_runs_thread_id_idx per run looked at);
     *  quota  each of them may give k = min(room, ceil($2 / #elig)) runs to this pass: with
     *         round robin the pass never takes an account's (k+1)th run anyway unless another
     *         has fewer than k, so the pass picks what the full round-robin order would pick
     *         first, only sometimes fewer than $2 (the caller then runs another pass);
     *  cand   each account's first k eligible runs, oldest first, numbered (rn);
     *  pick   round robin: by rn, then oldest first;
 *  more   (a column of every row) whether an account gave all of its quota k while it had
 *         room for more: only then may a batch shorter than $2 leave runs to admit now.
     * An account whose oldest waiting runs all wait behind a busy thread is read up to its
     * first eligible run each pass (the old statement read every waiting run every pass).
     *
     * seqs   records the dispatch sequences of an earlier pass's runs ($3 ids, $4 sequences,
     *        $5 row versions; empty arrays: none) as sched_set_dispatch_seqs does, in this
     *        statement's commit (admit.c, "Sequences"). Its rows are dispatched, those the
     *        pass picks are not (one snapshot): the two updates never meet on a row.
     * upd    the final update probes the row versions cand read (TID probes, checked against
     *        the id): joined by id, the generic plan made on a never-analyzed agent_runs read it
     *        whole;
     *  nb, bup, bset  the bounds: a bound trusted gets the pass's admissions added; a count
     *        made is written with them (and the time) when the next pass could trust it (room
     *        for a batch left): an account near its limit — with the default limit of 3,
     *        every account — is counted each pass and costs no write. Only by the pass
     *        holding the lock. */
    {"sched_admit",
     "WITH RECURSIVE lk AS (SELECT pg_try_advisory_xact_lock(7743542548017916514) AS got), "
     "seqs AS (UPDATE agent_runs r SET updated_at = clock_timestamp(), dispatch_seq = v.seq "
     "  FROM unnest($3::uuid[], $4::bigint[], $5::tid[]) WITH ORDINALITY AS v(id, seq, tid, n) "
     "  WHERE v.n BETWEEN 1 AND cardinality($3::uuid[]) AND r.ctid = v.tid AND r.id = v.id "
     "    AND r.status IS NOT DISTINCT FROM 'queued' AND r.dispatched_at IS NOT NULL), "
     "accts AS ((SELECT account_id FROM agent_runs WHERE status = 'queued' "
     "    AND dispatched_at IS NULL ORDER BY account_id, created_at, id LIMIT 1) "
     "  UNION ALL SELECT (SELECT w.account_id FROM agent_runs w WHERE w.status = 'queued' "
     "    AND w.dispatched_at IS NULL AND w.account_id > a.account_id "
     "    ORDER BY w.account_id, w.created_at, w.id LIMIT 1) "
     "  FROM accts a WHERE a.account_id IS NOT NULL), "
     "room AS MATERIALIZED (SELECT a.account_id, b.active_max IS NOT NULL AS bounded, "
     "  $1::int - CASE WHEN b.active_max IS NOT NULL THEN b.active_max::bigint "
     "    ELSE (SELECT count(*) FROM (SELECT 1 FROM agent_runs r "
     "      WHERE r.account_id = a.account_id AND (r.status = 'running' "
     "      OR (r.status = 'queued' AND r.dispatched_at IS NOT NULL)) LIMIT $1::int) x) END AS room "
     "  FROM accts a LEFT JOIN admission_bounds b ON b.account_id = a.account_id "
     "    AND b.active_max + $2::int < $1::int "
     "    AND b.counted_at > now() - $6::bigint * interval '1 millisecond' "
     "  WHERE a.account_id IS NOT NULL), "
     "elig AS MATERIALIZED (SELECT q.account_id, q.room FROM room q WHERE q.room > 0 "
     "  AND EXISTS (SELECT 1 FROM agent_runs w WHERE w.account_id = q.account_id "
     "    AND w.status = 'queued' AND w.dispatched_at IS NULL " SCHED_W_THREAD_IDLE ")), "
     "quota AS (SELECT account_id, room, "
     "  least(room, ceil($2::numeric / count(*) OVER ()))::bigint AS k FROM elig), "
     "cand AS (SELECT q.account_id, c.id, c.tid, c.created_at, c.rn FROM quota q CROSS JOIN LATERAL ("
     "  SELECT w.id, w.ctid AS tid, w.created_at, "
     "    row_number() OVER (ORDER BY w.created_at, w.id) AS rn "
     "  FROM agent_runs w WHERE w.account_id = q.account_id AND w.status = 'queued' "
     "    AND w.dispatched_at IS NULL " SCHED_W_THREAD_IDLE " "
     "  ORDER BY w.created_at, w.id LIMIT q.k) c), "
     "pick AS (SELECT id, tid FROM cand WHERE (SELECT got FROM lk) "
     "  ORDER BY rn, created_at LIMIT $2::int), "
     "more AS (SELECT EXISTS (SELECT 1 FROM quota q WHERE q.k < q.room "
     "  AND q.k <= (SELECT count(*) FROM cand c WHERE c.account_id = q.account_id)) AS v), "
     "upd AS (UPDATE agent_runs r SET updated_at = clock_timestamp(), dispatched_at = now(), "
     "  dispatch_seq = NULL FROM pick p "
     "  WHERE r.ctid = p.tid AND r.id = p.id AND r.status IS NOT DISTINCT FROM 'queued' "
     "    AND r.dispatched_at IS NULL "
     "  RETURNING r.id, r.thread_id, r.account_id, r.project_id, r.attempt, r.ctid AS tid), "
     "nb AS (SELECT q.account_id, q.bounded, $1::int - q.room AS active, "
     "  (SELECT count(*) FROM upd u WHERE u.account_id = q.account_id) AS added "
     "  FROM room q WHERE (SELECT got FROM lk)), "
     "bup AS (UPDATE admission_bounds b SET active_max = b.active_max + nb.added "
     "  FROM nb WHERE nb.bounded AND nb.added > 0 AND b.account_id = nb.account_id), "
     "bset AS (INSERT INTO admission_bounds (account_id, active_max, counted_at) "
     "  SELECT account_id, active + added, now() FROM nb "
     "  WHERE NOT bounded AND active + added + $2::int < $1::int "
     "  ON CONFLICT (account_id) DO UPDATE SET active_max = EXCLUDED.active_max, "
     "    counted_at = EXCLUDED.counted_at) "
     "SELECT id, thread_id, account_id, project_id, attempt, (SELECT v FROM more) AS more, tid "
     "FROM upd"},
    /* The sweep's candidates: queued runs dispatched over 10 s ago; the caller re-dispatches
     * only those whose dispatch message is gone from the stream (or was never recorded).
     * Least recently looked at first. (Runs never dispatched are admission's.) */
    {"sched_sweep",
     "SELECT id::text, thread_id::text, account_id::text, project_id::text, attempt, "
     "coalesce(dispatch_seq, 0) AS dispatch_seq FROM agent_runs WHERE status = 'queued' AND "
     "dispatched_at < now() - interval '10 seconds' "
     "ORDER BY dispatched_at, created_at LIMIT 100"},
    /* A candidate whose dispatch is still in the stream: look at it again later. */
    {"sched_sweep_seen",
     "UPDATE agent_runs SET updated_at = clock_timestamp(), dispatched_at = now() "
     "WHERE id = $1::uuid AND status IS NOT DISTINCT FROM 'queued' "
     "AND dispatch_seq = $2::bigint"},
    /* Scheduled runs (triggers.c; kx_fire_trigger is in migration 005). next_fire_at goes back
     * to kx_fire_trigger as the text read here (exact: the compare-and-set is on it). */
    {"sched_triggers_due",
     "SELECT trigger_id::text, cron_expression, next_fire_at::text, "
     "floor(extract(epoch FROM next_fire_at))::bigint, floor(extract(epoch FROM now()))::bigint, "
     "timezone "
     "FROM run_triggers WHERE is_active AND next_fire_at <= now() "
     "ORDER BY next_fire_at LIMIT $1::int"},
    {"sched_trigger_fire",
     "SELECT outcome, coalesce(run_id::text, ''), coalesce(detail, '') "
     "FROM kx_fire_trigger($1::uuid, $2::timestamptz, to_timestamp($3::bigint))"},
    {"sched_trigger_disable",
     "UPDATE run_triggers SET next_fire_at = NULL, last_error = $3::text "
     "WHERE trigger_id = $1::uuid AND next_fire_at = $2::timestamptz"},
    /* Old bookkeeping, every minute (reaper.c): lease rows, admission bounds, and the quota
     * counters (migration 016) of days and months over 92 days ago (a quota reads only the
     * current day and month; the three months before stay for an operator's look). */
    {"sched_cleanup",
     "WITH a AS (DELETE FROM lease_revocations WHERE revoked_at < now() - interval '1 hour'), "
     "b AS (DELETE FROM admission_bounds WHERE counted_at < now() - interval '1 hour'), "
     "c AS (DELETE FROM account_usage WHERE period_start < now() - interval '92 days') "
     "DELETE FROM runner_leases l WHERE expires_at < now() - interval '1 hour' "
     "AND (SELECT 1 FROM agent_runs r WHERE r.lease_owner = l.runner_id "
     "AND r.status IS NOT DISTINCT FROM 'running' LIMIT 1) IS NULL"},
    KX_DB_STMT_END,
};
/* clang-format on */

/* Postgres is "up" unless the last call could not reach it. A statement that timed out also
 * means heartbeats may not have been applied in time: the reaper must not trust expiries. */
static kx_err note(scheduler *s, kx_err err)
{
    bool up = err != KX_ERR_UNAVAILABLE;
    atomic_store(&s->db_up, up);
    if (!up || err == KX_ERR_TIMEOUT)
        sched_blind(s);
    return err;
}

kx_err sched_store_migrate(scheduler *s, kx_db *db)
{
    return note(s, kx_db_migrate(db, kx_db_migrations_dir()));
}

static void copy_col(const PGresult *res, int i, int col, char *out, size_t outlen)
{
    snprintf(out, outlen, "%s", PQgetisnull(res, i, col) ? "" : PQgetvalue(res, i, col));
}

void sched_store_row(const PGresult *res, int i, sched_run_row *row)
{
    memset(row, 0, sizeof *row);
    copy_col(res, i, 0, row->run_id, sizeof row->run_id);
    copy_col(res, i, 1, row->thread_id, sizeof row->thread_id);
    copy_col(res, i, 2, row->account_id, sizeof row->account_id);
    copy_col(res, i, 3, row->project_id, sizeof row->project_id);
    row->attempt = PQgetisnull(res, i, 4) ? 0 : (int)strtol(PQgetvalue(res, i, 4), NULL, 10);
    int seq_col = PQfnumber(res, "dispatch_seq");
    if (seq_col >= 0 && !PQgetisnull(res, i, seq_col))
        row->dispatch_seq = strtoll(PQgetvalue(res, i, seq_col), NULL, 10);
    int tid_col = PQfnumber(res, "tid");
    if (tid_col >= 0)
        copy_col(res, i, tid_col, row->tid, sizeof row->tid);
}

kx_err sched_store_mark_dispatched(scheduler *s, kx_db *db, const char *run_id, sched_run_row *row,
                                   bool *found)
{
    *found = false;
    kx_err err = KX_OK;
    const char *params[] = {run_id};
    PGresult *res = kx_db_exec_idem(db, "sched_mark_dispatched", 1, params, &err);
    note(s, res != NULL ? KX_OK : err);
    if (res == NULL)
        return err;
    if (PQntuples(res) > 0) {
        sched_store_row(res, 0, row);
        *found = true;
    }
    PQclear(res);
    return KX_OK;
}

kx_err sched_store_unmark_dispatched(scheduler *s, kx_db *db, const char *run_id)
{
    const char *params[] = {run_id};
    return note(s, kx_db_exec_cmd_idem(db, "sched_unmark_dispatched", 1, params, NULL));
}

kx_err sched_store_set_dispatch_seq(scheduler *s, kx_db *db, const char *run_id, uint64_t seq)
{
    char sq[24];
    snprintf(sq, sizeof sq, "%" PRIu64, seq);
    const char *params[] = {run_id, sq};
    return note(s, kx_db_exec_cmd_idem(db, "sched_set_dispatch_seq", 2, params, NULL));
}

/* A Postgres array literal of n values: {a,b,...}, each value in double quotes when quoted
 * (a tid "(1,2)" holds a comma; uuids and numbers need no quoting; none of them holds a quote
 * or a backslash). Caller frees; NULL when out of memory. */
static char *array_lit(size_t n, const char *const *vals, bool quoted)
{
    size_t len = 3;
    for (size_t i = 0; i < n; i++)
        len += strlen(vals[i]) + 3;
    char *out = malloc(len);
    if (out == NULL)
        return NULL;
    char *p = out;
    *p++ = '{';
    for (size_t i = 0; i < n; i++) {
        size_t l = strlen(vals[i]);
        if (i > 0)
            *p++ = ',';
        if (quoted)
            *p++ = '"';
        memcpy(p, vals[i], l);
        p += l;
        if (quoted)
            *p++ = '"';
    }
    *p++ = '}';
    *p = '\0';
    return out;
}

/* The three array parameters of notes: run ids, sequences, row versions (malloc'd; false when
 * out of memory, nothing to free then). */
static bool notes_params(size_t n, const sched_seq_note *notes, char *out[3])
{
    const char **ids = calloc(n > 0 ? n : 1, sizeof *ids);
    const char **tids = calloc(n > 0 ? n : 1, sizeof *tids);
    const char **nums = calloc(n > 0 ? n : 1, sizeof *nums);
    char(*sq)[24] = calloc(n > 0 ? n : 1, sizeof *sq);
    out[0] = out[1] = out[2] = NULL;
    if (ids != NULL && tids != NULL && nums != NULL && sq != NULL) {
        for (size_t i = 0; i < n; i++) {
            snprintf(sq[i], sizeof sq[i], "%" PRIu64, notes[i].seq);
            ids[i] = notes[i].run_id;
            /* a note without its version (never: admission returns it) finds no row */
            tids[i] = notes[i].tid[0] != '\0' ? notes[i].tid : "(0,0)";
            nums[i] = sq[i];
        }
        out[0] = array_lit(n, ids, false);
        out[1] = array_lit(n, nums, false);
        out[2] = array_lit(n, tids, true);
    }
    free(sq);
    free(nums);
    free(tids);
    free(ids);
    if (out[0] != NULL && out[1] != NULL && out[2] != NULL)
        return true;
    for (int i = 0; i < 3; i++)
        free(out[i]);
    return false;
}

kx_err sched_store_set_dispatch_seqs(scheduler *s, kx_db *db, size_t n,
                                     const sched_seq_note *notes)
{
    if (n == 0)
        return KX_OK;
    char *p[3];
    if (!notes_params(n, notes, p))
        return KX_ERR_NOMEM;
    const char *params[] = {p[0], p[1], p[2]};
    kx_err err = note(s, kx_db_exec_cmd_idem(db, "sched_set_dispatch_seqs", 3, params, NULL));
    for (int i = 0; i < 3; i++)
        free(p[i]);
    return err;
}

kx_err sched_store_unmark_many(scheduler *s, kx_db *db, size_t n, const char *const *run_ids,
                               const char *const *tids)
{
    if (n == 0)
        return KX_OK;
    char *ids = array_lit(n, run_ids, false);
    char *tl = array_lit(n, tids, true);
    kx_err err = KX_ERR_NOMEM;
    if (ids != NULL && tl != NULL) {
        const char *params[] = {ids, tl};
        err = note(s, kx_db_exec_cmd_idem(db, "sched_unmark_many", 2, params, NULL));
    }
    free(tl);
    free(ids);
    return err;
}

PGresult *sched_store_heartbeat(scheduler *s, kx_db *db, const char *runner_id, int capacity,
                                int64_t since_ms, kx_err *err)
{
    char ttl[24], cap[16], since[24], limit[16];
    snprintf(ttl, sizeof ttl, "%lld", (long long)s->cfg.lease_ttl_ms);
    snprintf(cap, sizeof cap, "%d", capacity);
    snprintf(since, sizeof since, "%lld", (long long)since_ms);
    snprintf(limit, sizeof limit, "%d", SCHED_HB_MAX_REVOKED);
    const char *params[] = {runner_id, ttl, cap, since, limit};
    PGresult *res = kx_db_exec_idem(db, "sched_heartbeat", 5, params, err);
    note(s, res != NULL ? KX_OK : *err);
    return res;
}

kx_err sched_store_reap(scheduler *s, kx_db *db, bool reap_leases, long *rows)
{
    char wall[32], attempts[16], limit[16];
    snprintf(wall, sizeof wall, "%lld", (long long)s->cfg.wall_time_s);
    snprintf(attempts, sizeof attempts, "%lld", (long long)s->cfg.max_attempts);
    snprintf(limit, sizeof limit, "%d", SCHED_REAP_BATCH);
    const char *params[] = {wall, reap_leases ? "true" : "false", attempts, limit};
    return note(s, kx_db_exec_cmd_idem(db, "sched_reap", 4, params, rows));
}

PGresult *sched_store_notices(scheduler *s, kx_db *db, kx_err *err)
{
    char limit[16];
    snprintf(limit, sizeof limit, "%d", SCHED_REAP_BATCH);
    const char *params[] = {limit};
    PGresult *res = kx_db_exec(db, "sched_notices", 1, params, err);
    note(s, res != NULL ? KX_OK : *err);
    return res;
}

kx_err sched_store_notice_done(scheduler *s, kx_db *db, const char *run_id, int64_t notice_epoch)
{
    char ep[24];
    snprintf(ep, sizeof ep, "%lld", (long long)notice_epoch);
    const char *params[] = {run_id, ep};
    return note(s, kx_db_exec_cmd_idem(db, "sched_notice_done", 2, params, NULL));
}

PGresult *sched_store_admit(scheduler *s, kx_db *db, int batch, size_t nnotes,
                            const sched_seq_note *notes, kx_err *err)
{
    char limit[24], n[16], age[16], *p[3];
    snprintf(limit, sizeof limit, "%lld", (long long)s->cfg.max_parallel_runs);
    snprintf(n, sizeof n, "%d", batch);
    snprintf(age, sizeof age, "%d", SCHED_BOUND_MAX_AGE_MS);
    if (!notes_params(nnotes, notes, p)) {
        *err = KX_ERR_NOMEM;
        return NULL;
    }
    const char *params[] = {limit, n, p[0], p[1], p[2], age};
    PGresult *res = kx_db_exec_idem(db, "sched_admit", 6, params, err);
    note(s, res != NULL ? KX_OK : *err);
    for (int i = 0; i < 3; i++)
        free(p[i]);
    return res;
}

PGresult *sched_store_sweep(scheduler *s, kx_db *db, kx_err *err)
{
    PGresult *res = kx_db_exec(db, "sched_sweep", 0, NULL, err);
    note(s, res != NULL ? KX_OK : *err);
    return res;
}

kx_err sched_store_sweep_seen(scheduler *s, kx_db *db, const char *run_id, int64_t seq)
{
    char sq[24];
    snprintf(sq, sizeof sq, "%lld", (long long)seq);
    const char *params[] = {run_id, sq};
    return note(s, kx_db_exec_cmd_idem(db, "sched_sweep_seen", 2, params, NULL));
}

kx_err sched_store_cleanup(scheduler *s, kx_db *db)
{
    return note(s, kx_db_exec_cmd_idem(db, "sched_cleanup", 0, NULL, NULL));
}

PGresult *sched_store_triggers_due(scheduler *s, kx_db *db, int batch, kx_err *err)
{
    char n[16];
    snprintf(n, sizeof n, "%d", batch);
    const char *params[] = {n};
    PGresult *res = kx_db_exec(db, "sched_triggers_due", 1, params, err);
    note(s, res != NULL ? KX_OK : *err);
    return res;
}

PGresult *sched_store_trigger_fire(scheduler *s, kx_db *db, const char *trigger_id,
                                   const char *due, int64_t next, kx_err *err)
{
    char nx[24];
    snprintf(nx, sizeof nx, "%lld", (long long)next);
    const char *params[] = {trigger_id, due, next > 0 ? nx : NULL};
    PGresult *res = kx_db_exec_idem(db, "sched_trigger_fire", 3, params, err);
    note(s, res != NULL ? KX_OK : *err);
    return res;
}

kx_err sched_store_trigger_disable(scheduler *s, kx_db *db, const char *trigger_id,
                                   const char *due, const char *why)
{
    const char *params[] = {trigger_id, due, why};
    return note(s, kx_db_exec_cmd_idem(db, "sched_trigger_disable", 3, params, NULL));
}
