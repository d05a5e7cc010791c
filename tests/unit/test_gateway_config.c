/* test_gateway_config.c — gw_config_load (services/gateway/config.c) refuses a bad value of
 * every variable it reads at start, naming it, instead of starting with a default: the
 * sandbox routes' timeouts and the initiate upload limits were read on the first request and a
 * bad value dropped without a word (KX_SANDBOX_DOWNLOAD_MAX_MB too: read in MiB, 1024 by
 * default); and an empty KX_JWT_AUDIENCE turns the audience check off,
 * as documented (it read as unset: the default "authenticated"). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include "config.h"

static void test_bad_values_stop_the_start(void **state)
{
    (void)state;
    assert_int_equal(setenv("KX_JWT_SECRET", "unit-test-secret-of-at-least-32-bytes!", 1), 0);
    gw_config cfg;
    assert_int_equal(gw_config_load(&cfg), KX_OK);
    assert_int_equal(cfg.download_max, (int64_t)1024 << 20); /* the default: 1 GiB */
    assert_int_equal(cfg.sandbox_get_ms, 10000);
    assert_int_equal(cfg.sandbox_create_ms, 60000);
    assert_int_equal(cfg.sandbox_preview_ms, 10000);
    assert_int_equal(cfg.upload_file_max, 10 << 20);
    assert_int_equal(cfg.upload_total_max, 50 << 20);
    assert_int_equal(cfg.purge_interval_ms, 60000);
    gw_config_free(&cfg);
    assert_int_equal(setenv("KX_SANDBOX_DOWNLOAD_MAX_MB", "100", 1), 0);
    assert_int_equal(gw_config_load(&cfg), KX_OK);
    assert_int_equal(cfg.download_max, (int64_t)100 << 20);
    gw_config_free(&cfg);
    unsetenv("KX_SANDBOX_DOWNLOAD_MAX_MB");
    const char *bad[][2] = {
        {"KX_SANDBOX_GET_TIMEOUT_MS", "-5"},    {"KX_SANDBOX_CREATE_TIMEOUT_MS", "soon"},
        {"KX_SANDBOX_PREVIEW_TIMEOUT_MS", "0"}, {"KX_INITIATE_FILE_MAX_BYTES", "abc"},
        {"KX_INITIATE_FILES_MAX_BYTES", "-1"},  {"KX_HTTP_HELD_MB", "0"},
        {"KX_HTTP_HELD_ACCOUNT_MB", "lots"},    {"KX_SANDBOX_DOWNLOAD_MAX_MB", "0"},
        {"KX_SANDBOX_DOWNLOAD_MAX_MB", "2TB"},  {"KX_PURGE_INTERVAL_MS", "0"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(setenv(bad[i][0], bad[i][1], 1), 0);
        if (gw_config_load(&cfg) != KX_ERR_INVALID)
            fail_msg("%s=%s was taken", bad[i][0], bad[i][1]);
        gw_config_free(&cfg);
        unsetenv(bad[i][0]);
    }
}

static void test_empty_audience_is_not_checked(void **state)
{
    (void)state;
    gw_config cfg;
    unsetenv("KX_JWT_AUDIENCE");
    assert_int_equal(gw_config_load(&cfg), KX_OK);
    assert_string_equal(cfg.jwt_audience, "authenticated");
    gw_config_free(&cfg);
    assert_int_equal(setenv("KX_JWT_AUDIENCE", "", 1), 0);
    assert_int_equal(gw_config_load(&cfg), KX_OK);
    assert_string_equal(cfg.jwt_audience, ""); /* auth.c: "" = not checked */
    gw_config_free(&cfg);
    unsetenv("KX_JWT_AUDIENCE");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_values_stop_the_start),
        cmocka_unit_test(test_empty_audience_is_not_checked),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
