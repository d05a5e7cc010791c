/* tests/harness/pgdb.c — a migrated database with a connection (pgdb.h). */
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
