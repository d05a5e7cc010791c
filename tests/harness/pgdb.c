/* tests/harness/pgdb.c — a migrated database with a connection; a backend's CPU (pgdb.h). */
#include "pgdb.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kx/db.h"

kx_err kx_th_pgdb_start(const char *prefix, kx_th_pgdb *out)
{
    memset(out, 0, sizeof *out);
    out->tmp = kx_th_tmpdir(prefix);
    if (out->tmp == NULL)
        return KX_ERR_IO;
    kx_err err = kx_th_pg_start(out->tmp, &out->pg);
    if (err != KX_OK)
        return err;
    kx_db *db = NULL;
    err = kx_db_connect(out->pg.url, NULL, &db);
    if (err == KX_OK)
        err = kx_db_migrate(db, kx_db_migrations_dir());
    kx_db_close(db);
    if (err != KX_OK) {
        fprintf(stderr, "pgdb: the migrations of %s did not apply\n", kx_db_migrations_dir());
        return err;
    }
    out->sql = PQconnectdb(out->pg.url);
    if (PQstatus(out->sql) != CONNECTION_OK) {
        fprintf(stderr, "pgdb: connect to %s: %s", out->pg.url, PQerrorMessage(out->sql));
        return KX_ERR_UNAVAILABLE;
    }
    return KX_OK;
}

void kx_th_pgdb_stop(kx_th_pgdb *d)
{
    PQfinish(d->sql);
    d->sql = NULL;
    kx_th_pg_stop(&d->pg);
    if (d->tmp != NULL)
        kx_th_rmrf(d->tmp);
    free(d->tmp);
    d->tmp = NULL;
}

kx_err kx_th_pgdb_connect(const kx_th_pgdb *d, const kx_db_stmt *stmts, kx_db **db,
                          int *backend_pid)
{
    *backend_pid = 0;
    kx_err err = kx_db_connect(d->pg.url, stmts, db);
    if (err != KX_OK)
        return err;
    PGresult *res = kx_db_exec_sql(*db, "SELECT pg_backend_pid()", &err);
    if (res == NULL)
        return err != KX_OK ? err : KX_ERR_INTERNAL;
    *backend_pid = (int)strtol(PQgetvalue(res, 0, 0), NULL, 10);
    PQclear(res);
    return KX_OK;
}

int64_t kx_th_proc_cpu_ns(int pid)
{
    char path[64], line[128];
    snprintf(path, sizeof path, "/proc/%d/schedstat", pid);
    FILE *f = fopen(path, "r");
    int64_t ns = -1;
    if (f != NULL) {
        if (fgets(line, sizeof line, f) != NULL)
            ns = strtoll(line, NULL, 10);
        fclose(f);
    }
    return ns;
}

void kx_th_loadavg(char *out, size_t n)
{
    snprintf(out, n, "?");
    FILE *f = fopen("/proc/loadavg", "r");
    if (f == NULL)
        return;
    if (fgets(out, (int)n, f) == NULL)
        snprintf(out, n, "?");
    out[strcspn(out, "\n")] = '\0';
    fclose(f);
}
