/* test_harness_pg_settings.c — the harness's durable PostgreSQL (bench_run's production-setting
 * phase) runs with the server settings Kortix is deployed with, deploy/postgres/kortix.conf
 * (what up.sh includes and docker-compose.yml passes), and still with fsync,
 * synchronous_commit and full_page_writes on; the non-durable one (every other test) keeps
 * PostgreSQL's defaults for them. So the benchmark measures the server as deployed, and a
 * setting this PostgreSQL does not accept (e.g. wal_compression = lz4 on a build without lz4)
 * fails here. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "kx/log.h"

/* SHOW name on c, into out ("" when it fails). */
static void show(PGconn *c, const char *name, char *out, size_t len)
{
    char sql[KX_TH_PG_SETTING_LEN + 8];
    snprintf(sql, sizeof sql, "SHOW %s", name);
    PGresult *r = PQexec(c, sql);
    snprintf(out, len, "%s", PQresultStatus(r) == PGRES_TUPLES_OK ? PQgetvalue(r, 0, 0) : "");
    PQclear(r);
}

static void test_durable_server_runs_with_the_deployed_settings(void **state)
{
    (void)state;
    char set[KX_TH_PG_SETTINGS_MAX][KX_TH_PG_SETTING_LEN];
    int n = kx_th_pg_deploy_settings(set, KX_TH_PG_SETTINGS_MAX);
    assert_true(n > 0);

    char *tmp = kx_th_tmpdir("kx-th-pgset");
    assert_non_null(tmp);
    kx_th_pg pg;
    assert_int_equal(kx_th_pg_start(tmp, &pg), KX_OK);
    char got[128];
    PGconn *c = PQconnectdb(pg.url);
    assert_int_equal(PQstatus(c), CONNECTION_OK);
    show(c, "fsync", got, sizeof got);
    assert_string_equal(got, "off"); /* the tests' fast server */
    PQfinish(c);

    assert_int_equal(kx_th_pg_down(&pg), KX_OK);
    pg.durable = true;
    assert_int_equal(kx_th_pg_up(&pg), KX_OK);
    c = PQconnectdb(pg.url);
    assert_int_equal(PQstatus(c), CONNECTION_OK);
    for (int i = 0; i < n; i++) {
        char name[KX_TH_PG_SETTING_LEN];
        memcpy(name, set[i], sizeof name);
        char *eq = strchr(name, '=');
        assert_non_null(eq);
        *eq = '\0';
        show(c, name, got, sizeof got);
        /* the file writes each value as SHOW prints it (4GB, not 4096MB) */
        if (strcmp(got, eq + 1) != 0)
            fail_msg("%s: the durable server shows '%s', deploy/postgres/kortix.conf says '%s'",
                     name, got, eq + 1);
    }
    const char *on[] = {"fsync", "synchronous_commit", "full_page_writes"};
    for (size_t i = 0; i < sizeof on / sizeof on[0]; i++) {
        show(c, on[i], got, sizeof got);
        if (strcmp(got, "on") != 0)
            fail_msg("%s is '%s' on the durable server: durability is not traded", on[i], got);
    }
    PQfinish(c);
    kx_th_pg_stop(&pg);
    kx_th_rmrf(tmp);
    free(tmp);
}

int main(void)
{
    kx_log_init("test_harness_pg_settings", "test");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_durable_server_runs_with_the_deployed_settings),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
