/* store.c — every SQL statement the scheduler runs, in one table, and the wrappers that run
 * them and keep s->db_up current (the readiness check reports it).
 *
 * All transitions are single compare-and-set UPDATEs on agent_runs (docs/architecture.md,
 * "A run's life"): the scheduler never holds a transaction open. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kx/log.h"
#include "sched.h"

const kx_db_stmt sched_statements[] = {
    /* kx.run.submit: a queued run is being dispatched now. */
    {"sched_mark_dispatched",
     "UPDATE agent_runs SET dispatched_at = now() "
     "WHERE id = $1::uuid AND status = 'queued' "
     "RETURNING id, thread_id, account_id, project_id, attempt"},
    /* The dispatch could not be published: let the sweep retry it soon. */
    {"sched_unmark_dispatched",
     "UPDATE agent_runs SET dispatched_at = NULL WHERE id = $1::uuid AND status = 'queued'"},
    /* kx.run.hb: extend every lease whose epoch still matches, in one statement. */
    {"sched_extend_leases",
     "UPDATE agent_runs r SET lease_expires_at = now() + ($3::bigint * interval '1 millisecond'), "
     "heartbeat_at = now() "
     "FROM unnest($1::uuid[], $2::bigint[]) AS h(id, epoch) "
     "WHERE r.id = h.id AND r.lease_epoch = h.epoch AND r.status = 'running'"},
    /* The reaper: fail runs whose lease expired or whose wall time passed; fence the old
     * holder off (epoch + 1). $1 = max wall time in seconds; $2 = whether expired leases may
     * be reaped now (false right after the scheduler could not see heartbeats). */
    {"sched_reap",
     "UPDATE agent_runs SET status = 'failed', completed_at = now(), "
     "error = CASE WHEN $2::boolean AND lease_expires_at < now() "
     "  THEN 'lease expired: runner ' || coalesce(lease_owner, 'unknown') || "
     "       ' stopped heartbeating' "
     "  ELSE 'exceeded max wall time of ' || $1::bigint::text || ' s' END, "
     "lease_epoch = lease_epoch + 1, lease_expires_at = NULL "
     "WHERE status = 'running' AND (($2::boolean AND lease_expires_at < now()) "
     "  OR started_at < now() - ($1::bigint * interval '1 second')) "
     "RETURNING id, coalesce(lease_owner, ''), error, lease_epoch, account_id"},
    /* The sweep: queued runs never dispatched (2 s grace for the gateway's own submit), or
     * dispatched so long ago that the dispatch must have been lost. */
    {"sched_sweep",
     "UPDATE agent_runs SET dispatched_at = now() "
     "WHERE id IN (SELECT id FROM agent_runs WHERE status = 'queued' AND "
     "  ((dispatched_at IS NULL AND created_at < now() - interval '2 seconds') "
     "   OR dispatched_at < now() - interval '60 seconds') "
     "  ORDER BY created_at LIMIT 100 FOR UPDATE SKIP LOCKED) "
     "AND status = 'queued' "
     "RETURNING id, thread_id, account_id, project_id, attempt"},
    KX_DB_STMT_END,
};

/* Postgres is "up" unless the last call could not reach it. */
static kx_err note(scheduler *s, kx_err err)
{
    bool up = err != KX_ERR_UNAVAILABLE;
    atomic_store(&s->db_up, up);
    if (!up)
        sched_blind(s);
    return err;
}

kx_err sched_store_migrate(scheduler *s)
{
    return note(s, kx_db_migrate(s->db, kx_db_migrations_dir()));
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
    row->attempt = PQgetisnull(res, i, 4) ? 0 : atoi(PQgetvalue(res, i, 4));
}

kx_err sched_store_mark_dispatched(scheduler *s, const char *run_id, sched_run_row *row,
                                   bool *found)
{
    *found = false;
    kx_err err = KX_OK;
    const char *params[] = {run_id};
    PGresult *res = kx_db_exec(s->db, "sched_mark_dispatched", 1, params, &err);
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

kx_err sched_store_unmark_dispatched(scheduler *s, const char *run_id)
{
    const char *params[] = {run_id};
    return note(s, kx_db_exec_cmd(s->db, "sched_unmark_dispatched", 1, params, NULL));
}

kx_err sched_store_extend_leases(scheduler *s, const char *ids, const char *epochs, long *rows)
{
    char ttl[32];
    snprintf(ttl, sizeof ttl, "%lld", (long long)s->cfg.lease_ttl_ms);
    const char *params[] = {ids, epochs, ttl};
    return note(s, kx_db_exec_cmd(s->db, "sched_extend_leases", 3, params, rows));
}

PGresult *sched_store_reap(scheduler *s, bool reap_leases, kx_err *err)
{
    char wall[32];
    snprintf(wall, sizeof wall, "%lld", (long long)s->cfg.wall_time_s);
    const char *params[] = {wall, reap_leases ? "true" : "false"};
    PGresult *res = kx_db_exec(s->db, "sched_reap", 2, params, err);
    note(s, res != NULL ? KX_OK : *err);
    return res;
}

PGresult *sched_store_sweep(scheduler *s, kx_err *err)
{
    PGresult *res = kx_db_exec(s->db, "sched_sweep", 0, NULL, err);
    note(s, res != NULL ? KX_OK : *err);
    return res;
}
