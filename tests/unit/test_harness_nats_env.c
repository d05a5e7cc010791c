/* test_harness_nats_env.c — every nats-server the harness starts runs with the environment
 * Kortix deploys it with, deploy/nats/nats.env (what up.sh exports for it and
 * docker-compose.yml's nats service reads): so the tests and the benchmarks run the server as
 * deployed (GOMAXPROCS: docs/performance.md, "nats-server on one Go processor"). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "kx/log.h"

/* /proc/<pid>/environ into buf (NUL-separated); its length, or 0. */
static size_t read_environ(pid_t pid, char *buf, size_t len)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/environ", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    size_t n = fread(buf, 1, len - 1, f);
    fclose(f);
    buf[n] = '\0';
    return n;
}

static bool environ_has(const char *env, size_t len, const char *var)
{
    for (size_t at = 0; at < len; at += strlen(env + at) + 1) {
        if (strcmp(env + at, var) == 0)
            return true;
    }
    return false;
}

static void test_nats_env_file_is_read(void **state)
{
    (void)state;
    char vars[KX_TH_NATS_ENV_MAX][KX_TH_NATS_ENV_LEN];
    int n = kx_th_nats_deploy_env(vars, KX_TH_NATS_ENV_MAX);
    assert_true(n > 0);
    bool gomaxprocs = false;
    for (int i = 0; i < n; i++)
        gomaxprocs = gomaxprocs || strncmp(vars[i], "GOMAXPROCS=", 11) == 0;
    assert_true(gomaxprocs);
}

static void test_started_server_has_the_deployed_environment(void **state)
{
    (void)state;
    char vars[KX_TH_NATS_ENV_MAX][KX_TH_NATS_ENV_LEN];
    int n = kx_th_nats_deploy_env(vars, KX_TH_NATS_ENV_MAX);
    assert_true(n > 0);

    /* what the test's own environment says must not win over the file */
    assert_int_equal(setenv("GOMAXPROCS", "7", 1), 0);
    char *tmp = kx_th_tmpdir("kx-th-natsenv");
    assert_non_null(tmp);
    kx_th_nats nats;
    assert_int_equal(kx_th_nats_start(tmp, &nats), KX_OK);
    static char env[1 << 16];
    size_t len = read_environ(nats.pid, env, sizeof env);
    assert_true(len > 0);
    for (int i = 0; i < n; i++) {
        if (!environ_has(env, len, vars[i]))
            fail_msg("nats-server (pid %d) runs without %s (deploy/nats/nats.env)", (int)nats.pid,
                     vars[i]);
    }
    assert_false(environ_has(env, len, "GOMAXPROCS=7"));
    kx_th_nats_stop(&nats);
    kx_th_rmrf(tmp);
    free(tmp);
    assert_int_equal(unsetenv("GOMAXPROCS"), 0);
}

int main(void)
{
    kx_log_init("test_harness_nats_env", "test");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nats_env_file_is_read),
        cmocka_unit_test(test_started_server_has_the_deployed_environment),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
