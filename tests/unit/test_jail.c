/* test_jail.c — kx_jail_argv: the bubblewrap command line for each option (pure), the no-jail
 * form of unsafe mode, refused incomplete options, read-only binds, long environment names;
 * kx_jail_probe on a missing bwrap; kx_jail_spawn (without bwrap) handing the caller's pipes
 * to the program as 0/1/2 and refusing its connects to the denied ports. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

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

/* Operator binds become --ro-bind; a relative path is refused; an environment variable whose
 * name is longer than 255 bytes is passed (it was refused by a fixed-size buffer). */
static void test_ro_binds_and_long_env_names(void **state)
{
    char name[301];
    memset(name, 'N', 300);
    name[300] = '\0';
    char var[400];
    snprintf(var, sizeof var, "%s=v", name);
    const char *const env[] = {var, NULL};
    kx_jail_bind binds[] = {{"/srv/mcp/node_modules", "/node_modules"}};
    kx_jail_opts o = {.bwrap = "/usr/bin/bwrap",
                      .bind_fd = -1,
                      .ro_binds = binds,
                      .nro_binds = 1,
                      .argv = ARGV,
                      .envp = env};
    char **v = NULL;
    assert_int_equal(kx_jail_argv(&o, &v), KX_OK);
    int i = find(v, "/srv/mcp/node_modules");
    assert_true(i > 0);
    assert_string_equal(v[i - 1], "--ro-bind");
    assert_string_equal(v[i + 1], "/node_modules");
    i = find(v, name);
    assert_true(i > 0);
    assert_string_equal(v[i - 1], "--setenv");
    assert_string_equal(v[i + 1], "v");
    kx_jail_argv_free(v);
    binds[0].src = "relative/dir";
    assert_int_equal(kx_jail_argv(&o, &v), KX_ERR_INVALID);
    assert_null(v);
}

static uint16_t listen_any(int *fd)
{
    *fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    assert_int_equal(bind(*fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(*fd, 8), 0);
    assert_int_equal(getsockname(*fd, (struct sockaddr *)&a, &len), 0);
    return ntohs(a.sin_port);
}

/* Reads fd until EOF (at most 5 s) into buf. */
static void read_all(int fd, char *buf, size_t cap)
{
    size_t n = 0;
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 5000) <= 0)
            break;
        ssize_t r = read(fd, buf + n, cap - 1 - n);
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    buf[n] = '\0';
}

/* Without bwrap (the spawn path is the same): the program's stdin, stdout and stderr are the
 * caller's pipes, and a connect to a denied port is refused while another port answers. */
static void test_spawn_hands_pipes_and_denies_ports(void **state)
{
    int l1, l2;
    uint16_t denied = listen_any(&l1), open_port = listen_any(&l2);
    char script[512];
    snprintf(script, sizeof script,
             "read line; echo \"got:$line\"; echo oops >&2; "
             "(exec 3<>/dev/tcp/127.0.0.1/%u) 2>/dev/null && echo denied:connected || "
             "echo denied:refused; "
             "(exec 3<>/dev/tcp/127.0.0.1/%u) 2>/dev/null && echo open:connected || "
             "echo open:refused",
             denied, open_port);
    const char *const argv[] = {"/bin/bash", "-c", script, NULL};
    int in[2], out[2], err[2];
    assert_int_equal(pipe2(in, O_CLOEXEC), 0);
    assert_int_equal(pipe2(out, O_CLOEXEC), 0);
    assert_int_equal(pipe2(err, O_CLOEXEC), 0);
    uint16_t deny[] = {denied};
    int ruleset = -1;
    kx_err e = kx_jail_tcp_deny_ruleset(deny, 1, &ruleset);
    if (e == KX_ERR_UNAVAILABLE) {
        for (int i = 0; i < 2; i++) {
            close(in[i]);
            close(out[i]);
            close(err[i]);
        }
        close(l1);
        close(l2);
        skip(); /* no Landlock network rules on this kernel */
    }
    assert_int_equal(e, KX_OK);
    kx_jail_opts o = {.bwrap = NULL,
                      .uid = 65534,
                      .gid = 65534,
                      .bind_fd = -1,
                      .argv = argv,
                      .deny_ruleset_fd = ruleset,
                      .stdin_fd = in[0],
                      .stdout_fd = out[1],
                      .stderr_fd = err[1]};
    pid_t pid;
    int pidfd;
    e = kx_jail_spawn(&o, &pid, &pidfd);
    close(in[0]);
    close(out[1]);
    close(err[1]);
    close(ruleset); /* the child has enforced it (or failed): ours to close */
    assert_int_equal(e, KX_OK);
    assert_int_equal(write(in[1], "hello\n", 6), 6);
    close(in[1]);
    char obuf[256], ebuf[256];
    read_all(out[0], obuf, sizeof obuf);
    read_all(err[0], ebuf, sizeof ebuf);
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    close(pidfd);
    close(out[0]);
    close(err[0]);
    close(l1);
    close(l2);
    assert_non_null(strstr(obuf, "got:hello"));
    assert_non_null(strstr(ebuf, "oops"));
    assert_non_null(strstr(obuf, "denied:refused"));
    assert_non_null(strstr(obuf, "open:connected"));
    assert_true(WIFEXITED(st));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_default_jail),
        cmocka_unit_test(test_host_network_keeps_the_net_namespace_shared),
        cmocka_unit_test(test_unsafe_is_the_program_alone),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_probe_names_a_missing_bwrap),
        cmocka_unit_test(test_ro_binds_and_long_env_names),
        cmocka_unit_test(test_spawn_hands_pipes_and_denies_ports),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
