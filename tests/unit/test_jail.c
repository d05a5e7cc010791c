/* test_jail.c — kx_jail_argv: the bubblewrap command line for each option (pure), the no-jail
 * form of unsafe mode, refused incomplete options; kx_jail_probe on a missing bwrap. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "kx/jail.h"

static const char *const ARGV[] = {"/.kx/init", "--sock", "5", NULL};

/* Index of the first argv element equal to s, or -1. */
static int find(char **v, const char *s)
{
    for (int i = 0; v[i] != NULL; i++) {
        if (strcmp(v[i], s) == 0)
            return i;
    }
    return -1;
}

static void test_default_jail(void **state)
{
    const char *const env[] = {"PATH=/usr/bin:/bin", "A=b=c", NULL};
    kx_jail_file f = {.fd = 7, .dest = "/.kx/init"};
    kx_jail_opts o = {.bwrap = "/usr/bin/bwrap",
                      .uid = 200001,
                      .gid = 200001,
                      .bind_fd = 9,
                      .bind_dest = "/workspace",
                      .files = &f,
                      .nfiles = 1,
                      .keep_sys_admin = true,
                      .tmp_bytes = 1048576,
                      .argv = ARGV,
                      .envp = env};
    char **v = NULL;
    assert_int_equal(kx_jail_argv(&o, &v), KX_OK);
    assert_string_equal(v[0], "/usr/bin/bwrap");
    const char *must[] = {"--unshare-user",    "--unshare-pid", "--unshare-ipc",
                          "--unshare-uts",     "--unshare-net", "--disable-userns",
                          "--die-with-parent", "--as-pid-1",    "--clearenv",
                          "--new-session"};
    for (size_t i = 0; i < sizeof must / sizeof must[0]; i++)
        assert_true(find(v, must[i]) > 0);
    int i = find(v, "--bind-fd");
    assert_true(i > 0);
    assert_string_equal(v[i + 1], "9");
    assert_string_equal(v[i + 2], "/workspace");
    i = find(v, "--file");
    assert_string_equal(v[i + 1], "7");
    assert_string_equal(v[i - 1], "0555"); /* --perms 0555 --file 7 /.kx/init */
    i = find(v, "--ro-bind");
    assert_string_equal(v[i + 1], "/usr"); /* read-only system */
    i = find(v, "--size");
    assert_string_equal(v[i + 1], "1048576");
    assert_string_equal(v[i + 2], "--tmpfs");
    assert_string_equal(v[i + 3], "/tmp");
    i = find(v, "--cap-add");
    assert_string_equal(v[i + 1], "CAP_SYS_ADMIN");
    i = find(v, "A"); /* --setenv A b=c */
    assert_string_equal(v[i - 1], "--setenv");
    assert_string_equal(v[i + 1], "b=c");
    i = find(v, "--");
    assert_string_equal(v[i + 1], "/.kx/init");
    assert_string_equal(v[i + 3], "5");
    assert_null(v[i + 4]);
    /* Nothing of the host beyond /usr, /etc and the workspace. */
    assert_int_equal(find(v, "--bind"), -1);
    assert_int_equal(find(v, "--share-net"), -1);
    kx_jail_argv_free(v);
}

static void test_host_network_keeps_the_net_namespace_shared(void **state)
{
    kx_jail_opts o = {.bwrap = "/usr/bin/bwrap",
                      .bind_fd = -1,
                      .net = KX_JAIL_NET_HOST,
                      .argv = ARGV};
    char **v = NULL;
    assert_int_equal(kx_jail_argv(&o, &v), KX_OK);
    assert_int_equal(find(v, "--unshare-net"), -1);
    assert_true(find(v, "--unshare-pid") > 0);
    assert_int_equal(find(v, "--cap-add"), -1);
    kx_jail_argv_free(v);
}

static void test_unsafe_is_the_program_alone(void **state)
{
    kx_jail_opts o = {.bwrap = NULL, .bind_fd = -1, .argv = ARGV};
    char **v = NULL;
    assert_int_equal(kx_jail_argv(&o, &v), KX_OK);
    assert_string_equal(v[0], "/.kx/init");
    assert_string_equal(v[2], "5");
    assert_null(v[3]);
    kx_jail_argv_free(v);
}

static void test_refused(void **state)
{
    char **v = NULL;
    kx_jail_opts o = {.bwrap = "/usr/bin/bwrap", .bind_fd = -1, .argv = NULL};
    assert_int_equal(kx_jail_argv(&o, &v), KX_ERR_INVALID);
    assert_null(v);
    o.argv = ARGV;
    o.bind_fd = 3;
    o.bind_dest = "relative";
    assert_int_equal(kx_jail_argv(&o, &v), KX_ERR_INVALID);
    o.bind_fd = -1;
    const char *const bad_env[] = {"NOEQUALS", NULL};
    o.envp = bad_env;
    assert_int_equal(kx_jail_argv(&o, &v), KX_ERR_INVALID);
    assert_null(v);
}

static void test_probe_names_a_missing_bwrap(void **state)
{
    char why[512];
    assert_int_equal(kx_jail_probe("/nonexistent/bwrap", 65534, 65534, 1000, why, sizeof why),
                     KX_ERR_UNAVAILABLE);
    assert_non_null(strstr(why, "/nonexistent/bwrap"));
    assert_non_null(strstr(why, "bubblewrap"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_default_jail),
        cmocka_unit_test(test_host_network_keeps_the_net_namespace_shared),
        cmocka_unit_test(test_unsafe_is_the_program_alone),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_probe_names_a_missing_bwrap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
