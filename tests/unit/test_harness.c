/* test_harness.c — the test harness itself: temp dirs the postgres user can enter, free
 * ports, spawning with extra environment into a log file, killing a whole process group
 * (even one that ignores SIGTERM), waiting for HTTP, nats-server start/stop, stopping a
 * multi-threaded process whole (kx_th_freeze), KX_TEST_KEEP.
 * (PostgreSQL start/stop/restart is exercised by test_db.) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "kx/httpd.h"
#include "kx/time.h"
#include "procstat.h"

static char *g_tmp;

static int setup(void **state)
{
    g_tmp = kx_th_tmpdir("kx-test-harness");
    return g_tmp != NULL ? 0 : -1;
}

static int teardown(void **state)
{
    kx_th_rmrf(g_tmp);
    free(g_tmp);
    return 0;
}

static char *slurp(const char *path)
{
    static char buf[4096];
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    return buf;
}

static void test_tmpdir_and_port(void **state)
{
    struct stat st;
    assert_int_equal(stat(g_tmp, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0755);
    assert_non_null(strstr(g_tmp, "/tmp/kx-test-harness-"));
    uint16_t port = kx_th_free_port();
    assert_true(port > 0);
    assert_false(kx_th_port_accepts(port));
    /* rmrf removes nested content; KX_TEST_KEEP=1 keeps it. */
    char dir[300], file[320];
    snprintf(dir, sizeof dir, "%s/a", g_tmp);
    assert_int_equal(mkdir(dir, 0755), 0);
    snprintf(file, sizeof file, "%s/f", dir);
    fclose(fopen(file, "w"));
    assert_int_equal(setenv("KX_TEST_KEEP", "1", 1), 0);
    kx_th_rmrf(dir);
    unsetenv("KX_TEST_KEEP");
    assert_int_equal(access(file, F_OK), 0);
    kx_th_rmrf(dir);
    assert_int_not_equal(access(dir, F_OK), 0);
}

static void test_spawn_log_env_and_kill(void **state)
{
    char log[300];
    snprintf(log, sizeof log, "%s/spawn.log", g_tmp);
    assert_int_equal(setenv("KX_HARNESS_INHERITED", "yes", 1), 0);
    assert_int_equal(setenv("KX_HARNESS_OVERRIDE", "old", 1), 0);
    const char *argv[] = {"sh", "-c",
                          "echo \"$KX_HARNESS_INHERITED $KX_HARNESS_OVERRIDE $EXTRA\"; "
                          "echo oops >&2; exec sleep 30",
                          NULL};
    const char *env[] = {"KX_HARNESS_OVERRIDE=new", "EXTRA=x", NULL};
    pid_t pid = 0;
    assert_int_equal(kx_th_spawn(argv, env, log, &pid), KX_OK);
    assert_true(pid > 0);
    int64_t give_up = kx_mono_ms() + 3000;
    while (strstr(slurp(log), "oops") == NULL && kx_mono_ms() < give_up)
        usleep(10000);
    assert_string_equal(slurp(log), "yes new x\noops\n");
    assert_int_equal(getpgid(pid), pid);
    assert_int_equal(kx_th_kill(pid), 128 + SIGTERM);

    /* A group whose members ignore SIGTERM gets SIGKILL after 5 s. */
    const char *stubborn[] = {"sh", "-c", "trap '' TERM; sleep 30 & sleep 30", NULL};
    assert_int_equal(kx_th_spawn(stubborn, NULL, log, &pid), KX_OK);
    usleep(100000);
    int64_t t0 = kx_mono_ms();
    assert_int_equal(kx_th_kill(pid), 128 + SIGKILL);
    assert_true(kx_mono_ms() - t0 >= 4900);
    assert_int_equal(kx_th_group_live(pid), 0); /* nobody left in the group */

    const char *missing[] = {"kx-no-such-program", NULL};
    assert_int_not_equal(kx_th_spawn(missing, NULL, log, &pid), KX_OK);
    unsetenv("KX_HARNESS_INHERITED");
    unsetenv("KX_HARNESS_OVERRIDE");
}

/* Numbers read back from commands and SQL: all of the text or nothing (atoi took "12abc" as 12
 * and "abc" as 0). */
static void test_parse_long(void **state)
{
    long v = 7;
    assert_true(kx_th_parse_long("3\n", &v));
    assert_int_equal(v, 3);
    assert_true(kx_th_parse_long("  -42 ", &v));
    assert_int_equal(v, -42);
    v = 7;
    const char *bad[] = {"", "\n", "abc", "12abc", "1 2", "0x10", "99999999999999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_false(kx_th_parse_long(bad[i], &v));
    assert_false(kx_th_parse_long(NULL, &v));
    assert_int_equal(v, 7); /* untouched on refusal */
}

static void test_wait_http(void **state)
{
    kx_httpd *h = NULL;
    assert_int_equal(kx_httpd_start("127.0.0.1", 0, NULL, NULL, &h), KX_OK);
    char url[100];
    snprintf(url, sizeof url, "http://127.0.0.1:%u/healthz", kx_httpd_port(h));
    assert_int_equal(kx_th_wait_http(url, 2000), KX_OK);
    snprintf(url, sizeof url, "http://127.0.0.1:%u/nope", kx_httpd_port(h));
    int64_t t0 = kx_mono_ms();
    assert_int_equal(kx_th_wait_http(url, 300), KX_ERR_TIMEOUT); /* 404 is not ready */
    assert_true(kx_mono_ms() - t0 >= 300);
    kx_httpd_stop(h);
}

static void test_nats_start_stop(void **state)
{
    kx_th_nats n;
    assert_int_equal(kx_th_nats_start(g_tmp, &n), KX_OK);
    assert_true(n.pid > 0);
    char want[64];
    snprintf(want, sizeof want, "nats://127.0.0.1:%u", n.port);
    assert_string_equal(n.url, want);
    assert_true(kx_th_port_accepts(n.port));
    kx_th_nats_stop(&n);
    assert_false(kx_th_port_accepts(n.port));
    assert_int_not_equal(access(n.dir, F_OK), 0);
}

/* Bytes a fresh connection to 127.0.0.1:port receives within ms (nats-server sends INFO at
 * once; a stopped one sends nothing, though the kernel still completes the handshake). */
static ssize_t greeting(uint16_t port, int ms, char *buf, size_t cap)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ssize_t n = recv(fd, buf, cap - 1, 0);
    buf[n > 0 ? n : 0] = '\0';
    close(fd);
    return n;
}

/* kx_th_freeze: on return every thread of a multi-threaded server is stopped (kill(SIGSTOP)
 * alone returns before that: CI once saw a "paused" nats-server answer), and it stays silent
 * until SIGCONT; a bad or gone pid is refused. */
static void test_freeze(void **state)
{
    (void)state;
    kx_th_nats n;
    assert_int_equal(kx_th_nats_start(g_tmp, &n), KX_OK);
    char buf[256];
    assert_true(greeting(n.port, 2000, buf, sizeof buf) > 0);
    assert_non_null(strstr(buf, "INFO"));
    for (int round = 0; round < 3; round++) {
        assert_true(kx_th_freeze(n.pid));
        int stopped, all;
        assert_true(kx_th_thread_states(n.pid, &stopped, &all));
        assert_true(all > 1); /* the case that matters: several threads */
        assert_int_equal(stopped, all);
        assert_true(greeting(n.port, 300, buf, sizeof buf) <= 0);
        assert_int_equal(kill(n.pid, SIGCONT), 0);
        assert_true(greeting(n.port, 2000, buf, sizeof buf) > 0);
        assert_non_null(strstr(buf, "INFO"));
    }
    kx_th_nats_stop(&n);
    assert_false(kx_th_freeze(0));
    assert_false(kx_th_freeze(-1));
    pid_t gone = fork();
    assert_true(gone >= 0);
    if (gone == 0)
        _exit(0);
    assert_int_equal(waitpid(gone, NULL, 0), gone);
    assert_false(kx_th_freeze(gone));
}

/* procstat: a stat line whose command name holds spaces and ") (" parses by the last ')';
 * a truncated or garbled one is refused; a live child is found by its parent, and a zombie is
 * neither alive nor a child. */
static void count_child(pid_t pid, void *arg)
{
    if (pid == *(pid_t *)arg)
        *(pid_t *)arg = 0; /* found */
}

static void test_procstat(void **state)
{
    (void)state;
    char path[512];
    snprintf(path, sizeof path, "%s/stat", g_tmp);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("4242 (a b) (c) S 17 4242 4242 0 -1 4194560 10 0 0 0 7 3 2 1 20 0 1 0\n", f);
    fclose(f);
    kx_th_pstat st;
    assert_true(kx_th_pstat_read(path, &st));
    assert_int_equal(st.state, 'S');
    assert_int_equal(st.ppid, 17);
    assert_int_equal(st.pgrp, 4242);
    assert_int_equal(st.utime, 7);
    assert_int_equal(st.stime, 3);
    assert_int_equal(st.cutime, 2);
    assert_int_equal(st.cstime, 1);
    f = fopen(path, "w");
    fputs("4242 (x) S 17 4242 4242 0\n", f); /* cut before utime */
    fclose(f);
    assert_false(kx_th_pstat_read(path, &st));
    f = fopen(path, "w");
    fputs("4242 no parentheses S 1 2 3\n", f);
    fclose(f);
    assert_false(kx_th_pstat_read(path, &st));
    snprintf(path, sizeof path, "%s/absent", g_tmp);
    assert_false(kx_th_pstat_read(path, &st));

    assert_true(kx_th_alive(getpid()));
    assert_true(kx_th_pstat_of(getpid(), &st));
    assert_int_equal(st.ppid, getppid());
    assert_true(kx_th_tick_ns() > 0);
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        pause();
        _exit(0);
    }
    pid_t seek = child;
    assert_true(kx_th_each_child(getpid(), count_child, &seek) >= 1);
    assert_int_equal(seek, 0);
    int stopped, all;
    assert_true(kx_th_thread_states(child, &stopped, &all));
    assert_int_equal(all, 1);
    assert_int_equal(stopped, 0);
    kill(child, SIGKILL);
    int64_t until = kx_mono_ms() + 5000;
    while (kx_th_alive(child) && kx_mono_ms() < until) /* a zombie until reaped */
        usleep(1000);
    assert_false(kx_th_alive(child));
    seek = child;
    kx_th_each_child(getpid(), count_child, &seek);
    assert_int_equal(seek, child); /* not found: a zombie is no child */
    assert_int_equal(waitpid(child, NULL, 0), child);
    assert_false(kx_th_thread_states(child, &stopped, &all));
    assert_int_equal(kx_th_postmaster_of(g_tmp), 0); /* no postmaster.pid */
}

/* The /proc walk: a child found by its argument (under this process, not under another
 * ancestor), its command line read whole, joined and cut, and a descriptor it holds open in a
 * dir found by kx_th_procs_using; none of it once the child is reaped. */
static bool visit_self(pid_t pid, void *arg)
{
    if (pid == getpid())
        *(bool *)arg = true;
    return true;
}

static void test_proc_walk(void **state)
{
    (void)state;
    bool self = false;
    assert_true(kx_th_each_proc(visit_self, &self) >= 1);
    assert_true(self);
    char path[512];
    snprintf(path, sizeof path, "%s/held", g_tmp);
    int fd = open(path, O_WRONLY | O_CREAT, 0600); /* inherited by the child */
    assert_true(fd >= 0);
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        char *argv[] = {"sleep", "271.828", NULL};
        execvp(argv[0], argv);
        _exit(127);
    }
    close(fd);
    int64_t until = kx_mono_ms() + 5000;
    while (kx_th_procs_with_arg("271.828", NULL) < 1 && kx_mono_ms() < until)
        usleep(1000);
    uid_t uid = (uid_t)-1;
    assert_int_equal(kx_th_procs_with_arg("271.828", &uid), 1);
    assert_int_equal(uid, getuid());
    assert_int_equal(kx_th_procs_with_arg_under("271.828", getpid(), NULL), 1);
    assert_int_equal(kx_th_procs_with_arg_under("271.828", child, NULL), 0);
    assert_int_equal(kx_th_procs_with_arg("271.82", NULL), 0); /* whole arguments only */
    char cmd[64];
    assert_int_equal(kx_th_cmdline_of(child, cmd, sizeof cmd, true), 14);
    assert_string_equal(cmd, "sleep 271.828 ");
    assert_int_equal(kx_th_cmdline_of(child, cmd, sizeof cmd, false), 14);
    assert_string_equal(cmd, "sleep");
    assert_string_equal(cmd + 6, "271.828");
    assert_int_equal(kx_th_cmdline_of(child, cmd, 6, true), 5);
    assert_string_equal(cmd, "sleep");
    assert_int_equal(kx_th_procs_using(g_tmp), 1);
    kill(child, SIGKILL);
    assert_int_equal(waitpid(child, NULL, 0), child);
    assert_int_equal(kx_th_procs_with_arg("271.828", NULL), 0);
    assert_int_equal(kx_th_cmdline_of(child, cmd, sizeof cmd, true), 0);
    assert_string_equal(cmd, "");
    assert_int_equal(kx_th_procs_using(g_tmp), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tmpdir_and_port), cmocka_unit_test(test_spawn_log_env_and_kill),
        cmocka_unit_test(test_parse_long),      cmocka_unit_test(test_wait_http),
        cmocka_unit_test(test_nats_start_stop), cmocka_unit_test(test_freeze),
        cmocka_unit_test(test_procstat),        cmocka_unit_test(test_proc_walk),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
