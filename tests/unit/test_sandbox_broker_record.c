/* test_sandbox_broker_record.c — the sandbox's record on disk (lifecycle.h):
 * <root>/<project>/sandbox.state read back with and without the owner field that several
 * brokers added (a record written before it still loads, with no owner), and refused when
 * malformed (a field missing, an owner too long, a bad id or uid). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"
#include "lifecycle.h"

#define PROJECT "0b6a1c7e-52d3-4a41-9c59-3f1f2a9d1e01"
#define SBID "5f0e6f6e-8d8b-4c7e-bb47-2f6a3c4d5e6f"

static sb_config g_cfg;

static void write_record(const char *text)
{
    char dir[2200], path[2300];
    snprintf(dir, sizeof dir, "%s/%s", g_cfg.root, PROJECT);
    (void)mkdir(dir, 0711);
    snprintf(path, sizeof path, "%s/sandbox.state", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_record_without_owner_loads(void **state)
{
    write_record(SBID " stopped 200123 1700000000000 1700000000500\n");
    sb_state st;
    assert_int_equal(sb_state_load(&g_cfg, PROJECT, &st), KX_OK);
    assert_string_equal(st.id, SBID);
    assert_string_equal(st.state, "stopped");
    assert_int_equal(st.uid, 200123);
    assert_int_equal(st.created_ms, 1700000000000LL);
    assert_int_equal(st.updated_ms, 1700000000500LL);
    assert_string_equal(st.owner, "");
}

static void test_record_with_owner_loads(void **state)
{
    write_record(SBID " running 200123 1700000000000 1700000000500 sb-1\n");
    sb_state st;
    assert_int_equal(sb_state_load(&g_cfg, PROJECT, &st), KX_OK);
    assert_string_equal(st.state, "running");
    assert_string_equal(st.owner, "sb-1");
}

static void test_bad_records_refused(void **state)
{
    char longowner[200];
    memset(longowner, 'x', sizeof longowner - 1);
    longowner[sizeof longowner - 1] = '\0';
    char text[400];
    snprintf(text, sizeof text, SBID " running 1 2 3 %s\n", longowner);
    const char *bad[] = {
        text,                                   /* an owner longer than the field */
        SBID " running 200123 1700000000000\n", /* updated missing */
        "not-a-uuid running 1 2 3 sb-1\n",
        SBID " running -5 2 3 sb-1\n",
        SBID " running 1 2 x sb-1\n",
        "",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_record(bad[i]);
        sb_state st;
        if (sb_state_load(&g_cfg, PROJECT, &st) != KX_ERR_INTERNAL)
            fail_msg("record %zu was accepted: '%s'", i, bad[i]);
    }
}

static void test_missing_record_not_found(void **state)
{
    sb_state st;
    assert_int_equal(sb_state_load(&g_cfg, "11111111-2222-4333-8444-555555555555", &st),
                     KX_ERR_NOT_FOUND);
}

static int setup(void **state)
{
    char *dir = kx_th_tmpdir("kx-record");
    if (dir == NULL)
        return -1;
    snprintf(g_cfg.root, sizeof g_cfg.root, "%s", dir);
    free(dir);
    return 0;
}

static int teardown(void **state)
{
    kx_th_rmrf(g_cfg.root);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_record_without_owner_loads),
        cmocka_unit_test(test_record_with_owner_loads),
        cmocka_unit_test(test_bad_records_refused),
        cmocka_unit_test(test_missing_record_not_found),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
