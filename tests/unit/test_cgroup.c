/* test_cgroup.c — kx/cgroup.h against a directory laid out like a delegated cgroup v2
 * directory (cgroup.controllers, cgroup.procs, cgroup.subtree_control as plain files): which
 * roots are refused and why, the controllers enabled for the children, the service moving
 * itself into a leaf, the limits written for a jail's cgroup, a failed write leaving no
 * directory behind, and removal (cgroup.kill written, the directory gone, idempotent).
 *
 * The kernel side (clone3 CLONE_INTO_CGROUP, the limits enforced) needs a host that delegates
 * a cgroup v2 subtree, which this machine (cgroup v1 controllers) does not: the files written
 * here are what that kernel reads. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"
#include "kx/cgroup.h"

static char *g_dir;

static void put(const char *dir, const char *file, const char *text)
{
    char path[1200];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* The content of dir/file with its newline cut; "" when absent. Static buffer. */
static const char *get(const char *dir, const char *file)
{
    static char buf[256];
    char path[1200];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    buf[0] = '\0';
    FILE *f = fopen(path, "r");
    if (f != NULL) {
        if (fgets(buf, sizeof buf, f) == NULL)
            buf[0] = '\0';
        fclose(f);
    }
    buf[strcspn(buf, "\n")] = '\0';
    return buf;
}

/* A fresh fake delegated root: <tmp>/root with the given controllers and procs. */
static char *fake_root(const char *controllers, const char *procs)
{
    static char root[600];
    static int made;
    snprintf(root, sizeof root, "%s/root-%d", g_dir, ++made);
    assert_int_equal(mkdir(root, 0755), 0);
    put(root, "cgroup.controllers", controllers);
    put(root, "cgroup.procs", procs);
    put(root, "cgroup.subtree_control", "");
    return root;
}

static int setup(void **state)
{
    (void)state;
    g_dir = kx_th_tmpdir("kx-unit-cgroup");
    return g_dir != NULL ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    kx_th_rmrf(g_dir);
    free(g_dir);
    return 0;
}

static void test_refusals(void **state)
{
    (void)state;
    kx_cgroup_root r;
    char what[512];
    assert_int_equal(kx_cgroup_root_prepare("relative/path", g_dir, &r, what, sizeof what),
                     KX_ERR_INVALID);
    assert_non_null(strstr(what, "relative/path"));

    char missing[700];
    snprintf(missing, sizeof missing, "%s/none", g_dir);
    assert_int_equal(kx_cgroup_root_prepare(missing, g_dir, &r, what, sizeof what),
                     KX_ERR_UNAVAILABLE);
    assert_non_null(strstr(what, "not a cgroup v2 directory"));

    /* this machine's case: v2 mounted with no controller of ours */
    char *root = fake_root("hugetlb\n", "");
    assert_int_equal(kx_cgroup_root_prepare(root, g_dir, &r, what, sizeof what),
                     KX_ERR_UNAVAILABLE);
    assert_non_null(strstr(what, "no memory, pids or cpu controller"));
    assert_non_null(strstr(what, "hugetlb"));

    /* another process in the root: controllers cannot be enabled below it */
    char procs[64];
    snprintf(procs, sizeof procs, "%ld\n", (long)getppid());
    root = fake_root("cpu memory pids\n", procs);
    assert_int_equal(kx_cgroup_root_prepare(root, g_dir, &r, what, sizeof what),
                     KX_ERR_UNAVAILABLE);
    assert_non_null(strstr(what, "1 other process"));
    assert_string_equal(get(root, "cgroup.subtree_control"), "");
}

static void test_prepare_enables_controllers(void **state)
{
    (void)state;
    kx_cgroup_root r;
    char what[512];
    /* "cpuset" must not count as "cpu" */
    char *root = fake_root("cpuset io memory pids\n", "");
    assert_int_equal(kx_cgroup_root_prepare(root, g_dir, &r, what, sizeof what), KX_OK);
    assert_true(r.memory);
    assert_true(r.pids);
    assert_false(r.cpu);
    assert_string_equal(get(root, "cgroup.subtree_control"), "+memory +pids ");
    assert_non_null(strstr(what, "memory.max pids.max"));
    assert_null(strstr(what, "cpu.max"));
}

static void test_service_moves_to_a_leaf(void **state)
{
    (void)state;
    kx_cgroup_root r;
    char what[512], procs[64], pid[32];
    snprintf(pid, sizeof pid, "%ld", (long)getpid());
    snprintf(procs, sizeof procs, "%s\n", pid);
    char *root = fake_root("cpu memory pids\n", procs);
    char leaf[700];
    snprintf(leaf, sizeof leaf, "%s/service", root);
    /* as the kernel would have made it at mkdir (also: an existing leaf is reused) */
    assert_int_equal(mkdir(leaf, 0755), 0);
    put(leaf, "cgroup.procs", "");
    assert_int_equal(kx_cgroup_root_prepare(root, g_dir, &r, what, sizeof what), KX_OK);
    assert_string_equal(get(leaf, "cgroup.procs"), pid);
    assert_string_equal(get(root, "cgroup.subtree_control"), "+memory +pids +cpu");
}

static void test_make_writes_limits_and_remove(void **state)
{
    (void)state;
    kx_cgroup_root r;
    char what[512], why[512];
    char *root = fake_root("cpu memory pids\n", "");
    assert_int_equal(kx_cgroup_root_prepare(root, g_dir, &r, what, sizeof what), KX_OK);
    kx_cgroup_limits lim = {.memory_bytes = 512LL << 20, .pids = 128, .cpu_percent = 50};
    int fd = -1;
    assert_int_equal(kx_cgroup_make(&r, "sb-1", &lim, &fd, why, sizeof why), KX_OK);
    assert_true(fd >= 0);
    close(fd);
    char dir[700];
    snprintf(dir, sizeof dir, "%s/sb-1", root);
    assert_string_equal(get(dir, "memory.max"), "536870912");
    assert_string_equal(get(dir, "pids.max"), "128");
    assert_string_equal(get(dir, "cpu.max"), "50000 100000");

    /* made again (left by an earlier start): reused, limits rewritten; 0 = "max" */
    kx_cgroup_limits none = {0};
    assert_int_equal(kx_cgroup_make(&r, "sb-1", &none, &fd, why, sizeof why), KX_OK);
    close(fd);
    assert_string_equal(get(dir, "memory.max"), "max");
    assert_string_equal(get(dir, "pids.max"), "max");
    assert_string_equal(get(dir, "cpu.max"), "max 100000");

    /* removal: cgroup.kill written; a directory that does not empty stays (busy) */
    put(dir, "cgroup.kill", "");
    assert_int_equal(kx_cgroup_remove(&r, "sb-1"), KX_ERR_UNAVAILABLE);
    assert_string_equal(get(dir, "cgroup.kill"), "1");
    static const char *const files[] = {"memory.max", "pids.max", "cpu.max", "cgroup.kill"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char path[800];
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        unlink(path);
    }
    assert_int_equal(kx_cgroup_remove(&r, "sb-1"), KX_OK);
    struct stat st;
    assert_int_equal(stat(dir, &st), -1);
    assert_int_equal(kx_cgroup_remove(&r, "sb-1"), KX_OK); /* gone already: fine */
}

static void test_make_refuses_names_and_cleans_up(void **state)
{
    (void)state;
    kx_cgroup_root r;
    char what[512], why[512];
    char *root = fake_root("memory\n", "");
    assert_int_equal(kx_cgroup_root_prepare(root, g_dir, &r, what, sizeof what), KX_OK);
    kx_cgroup_limits lim = {.memory_bytes = 1 << 20};
    int fd = -1;
    static const char *const bad[] = {"", "..", "a/b", "../x", "sb 1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(kx_cgroup_make(&r, bad[i], &lim, &fd, why, sizeof why), KX_ERR_INVALID);
        assert_int_equal(fd, -1);
        assert_int_equal(kx_cgroup_remove(&r, bad[i]), KX_ERR_INVALID);
    }
    /* a limit file that cannot be written: the error names it, no directory is left */
    char dir[700];
    snprintf(dir, sizeof dir, "%s/sb-2", root);
    assert_int_equal(mkdir(dir, 0755), 0);
    char blocker[800];
    snprintf(blocker, sizeof blocker, "%s/memory.max", dir);
    assert_int_equal(mkdir(blocker, 0755), 0); /* a directory where the file should be */
    assert_int_equal(kx_cgroup_make(&r, "sb-2", &lim, &fd, why, sizeof why), KX_ERR_IO);
    assert_non_null(strstr(why, "memory.max"));
    assert_int_equal(fd, -1);
    rmdir(blocker);
    rmdir(dir);
    /* a root that went away: the error names the cgroup */
    kx_cgroup_root broken = r;
    snprintf(broken.path, sizeof broken.path, "%s/none", g_dir);
    assert_int_equal(kx_cgroup_make(&broken, "sb-3", &lim, &fd, why, sizeof why), KX_ERR_IO);
    assert_int_equal(fd, -1);
    assert_non_null(strstr(why, "cannot make the cgroup"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_prepare_enables_controllers),
        cmocka_unit_test(test_service_moves_to_a_leaf),
        cmocka_unit_test(test_make_writes_limits_and_remove),
        cmocka_unit_test(test_make_refuses_names_and_cleans_up),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
