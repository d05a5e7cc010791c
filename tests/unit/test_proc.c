/* test_proc.c — child processes: output through non-blocking pipes, killing the whole process
 * group (a background grandchild included), the pidfd, exec failures reported as errors that
 * name the program, environment not inherited when one is given, cwd, stdin, files, blocked
 * signals not inherited, and no leaked file descriptors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "kx/proc.h"
#include "kx/time.h"

static const char *const ENV[] = {"PATH=/usr/bin:/bin", "FOO=bar", NULL};

/* Reads fd until EOF or timeout_ms; returns what was read (static buffer). */
static const char *read_all(int fd, int timeout_ms)
{
    static char buf[8192];
    size_t len = 0;
    int64_t give_up = kx_mono_ms() + timeout_ms;
    for (;;) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int left = (int)(give_up - kx_mono_ms());
        if (left <= 0 || poll(&pfd, 1, left) <= 0)
            break;
        ssize_t n = read(fd, buf + len, sizeof buf - 1 - len);
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    buf[len] = '\0';
    return buf;
}

/* Waits for the pidfd to become readable (the child exited) and reaps it. */
static int wait_exit(kx_proc *p)
{
    struct pollfd pfd = {.fd = p->pidfd, .events = POLLIN};
    assert_int_equal(poll(&pfd, 1, 5000), 1);
    int st = -1;
    assert_int_equal(kx_proc_reap(p, &st), KX_OK);
    return st;
}

static void test_output_and_group_kill(void **state)
{
    const char *argv[] = {"sh", "-c", "echo hi; sleep 30 & sleep 30", NULL};
    kx_proc_opts o = {
        .argv = argv, .envp = ENV, .in = KX_PROC_NULL, .out = KX_PROC_PIPE, .err = KX_PROC_PIPE};
    kx_proc p;
    assert_int_equal(kx_proc_spawn(&o, &p), KX_OK);
    assert_true(p.pid > 0);
    assert_true(p.pidfd >= 0);
    assert_int_equal(p.in_fd, -1);
    assert_true(p.out_fd >= 0 && p.err_fd >= 0);
    assert_true(fcntl(p.out_fd, F_GETFL) & O_NONBLOCK);
    assert_true(fcntl(p.out_fd, F_GETFD) & FD_CLOEXEC);
    assert_int_equal(getpgid(p.pid), p.pid); /* its own group */
    assert_int_equal(getsid(p.pid), p.pid);  /* and session */

    /* "hi\n" arrives while the shell is still running (read up to the newline). */
    char buf[16] = {0};
    size_t len = 0;
    int64_t give_up = kx_mono_ms() + 5000;
    while (strchr(buf, '\n') == NULL && kx_mono_ms() < give_up) {
        struct pollfd pfd = {.fd = p.out_fd, .events = POLLIN};
        poll(&pfd, 1, 100);
        ssize_t n = read(p.out_fd, buf + len, sizeof buf - 1 - len);
        if (n > 0)
            len += (size_t)n;
    }
    assert_string_equal(buf, "hi\n");
    assert_int_equal(kx_proc_reap(&p, NULL), KX_ERR_TIMEOUT); /* still running */

    /* sh and both sleeps. */
    give_up = kx_mono_ms() + 2000;
    while (kx_th_group_live(p.pid) < 3 && kx_mono_ms() < give_up)
        usleep(10000);
    assert_int_equal(kx_th_group_live(p.pid), 3);
    assert_int_equal(kx_proc_kill_group(&p, SIGKILL), KX_OK);
    int st = wait_exit(&p);
    assert_true(WIFSIGNALED(st));
    assert_int_equal(WTERMSIG(st), SIGKILL);
    /* The background sleep (reparented, not our child) is gone too. */
    give_up = kx_mono_ms() + 2000;
    while (kx_th_group_live(p.pid) > 0 && kx_mono_ms() < give_up)
        usleep(10000);
    assert_int_equal(kx_th_group_live(p.pid), 0);
    kx_proc_close(&p);
    assert_int_equal(p.pidfd, -1);
    assert_int_equal(p.out_fd, -1);
}

static void test_missing_program_fails_cleanly(void **state)
{
    const char *argv[] = {"kx-no-such-program", "x", NULL};
    kx_proc_opts o = {.argv = argv, .envp = ENV};
    kx_proc p;
    assert_int_equal(kx_proc_spawn(&o, &p), KX_ERR_NOT_FOUND);
    assert_int_equal(p.pidfd, -1);
    assert_int_equal(p.out_fd, -1);
    /* With a path: found by execve itself, which fails in the child. */
    const char *argv2[] = {"/nonexistent/prog", NULL};
    o.argv = argv2;
    assert_int_equal(kx_proc_spawn(&o, &p), KX_ERR_NOT_FOUND);
    /* Exists but is not a program: exec fails in the child. */
    const char *argv3[] = {"/etc/hostname", NULL};
    o.argv = argv3;
    assert_int_equal(kx_proc_spawn(&o, &p), KX_ERR_IO);
    /* A bad cwd fails in the child too. */
    const char *argv4[] = {"true", NULL};
    o.argv = argv4;
    o.cwd = "/nonexistent-dir";
    assert_int_equal(kx_proc_spawn(&o, &p), KX_ERR_NOT_FOUND);
    /* No zombie left behind by any of these. */
    assert_int_equal(waitpid(-1, NULL, WNOHANG), -1);
    assert_int_equal(errno, ECHILD);
}

static void test_environment_and_cwd(void **state)
{
    assert_int_equal(setenv("KX_PROC_TEST_SECRET", "leaked", 1), 0);
    const char *argv[] = {"sh", "-c", "echo \"[$KX_PROC_TEST_SECRET][$FOO]\"; pwd", NULL};
    kx_proc_opts o = {
        .argv = argv, .envp = ENV, .cwd = "/tmp", .out = KX_PROC_PIPE, .err = KX_PROC_NULL};
    kx_proc p;
    assert_int_equal(kx_proc_spawn(&o, &p), KX_OK);
    assert_string_equal(read_all(p.out_fd, 5000), "[][bar]\n/tmp\n");
    assert_int_equal(WEXITSTATUS(wait_exit(&p)), 0);
    kx_proc_close(&p);

    /* envp NULL: the parent's environment, PATH included. */
    o.envp = NULL;
    assert_int_equal(kx_proc_spawn(&o, &p), KX_OK);
    assert_string_equal(read_all(p.out_fd, 5000), "[leaked][]\n/tmp\n");
    wait_exit(&p);
    kx_proc_close(&p);
    unsetenv("KX_PROC_TEST_SECRET");

    /* No PATH in envp: /usr/local/bin:/usr/bin:/bin. */
    const char *const bare_env[] = {"A=1", NULL};
    const char *argv2[] = {"env", NULL};
    kx_proc_opts o2 = {.argv = argv2, .envp = bare_env, .out = KX_PROC_PIPE};
    assert_int_equal(kx_proc_spawn(&o2, &p), KX_OK);
    assert_string_equal(read_all(p.out_fd, 5000), "A=1\n");
    wait_exit(&p);
    kx_proc_close(&p);
}

static void test_stdin_pipe_and_files(void **state)
{
    const char *argv[] = {"sh", "-c", "cat; echo err >&2", NULL};
    kx_proc_opts o = {
        .argv = argv, .envp = ENV, .in = KX_PROC_PIPE, .out = KX_PROC_PIPE, .err = KX_PROC_PIPE};
    kx_proc p;
    assert_int_equal(kx_proc_spawn(&o, &p), KX_OK);
    assert_int_equal(write(p.in_fd, "ping\n", 5), 5);
    close(p.in_fd);
    p.in_fd = -1;
    assert_string_equal(read_all(p.out_fd, 5000), "ping\n");
    assert_string_equal(read_all(p.err_fd, 5000), "err\n");
    wait_exit(&p);
    kx_proc_close(&p);

    /* stdout and stderr appended to one file. */
    char path[] = "/tmp/kx-test-proc-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "before\n", 7), 7);
    close(fd);
    const char *argv2[] = {"sh", "-c", "echo out; echo err >&2", NULL};
    kx_proc_opts o2 = {.argv = argv2,
                       .envp = ENV,
                       .out = KX_PROC_FILE,
                       .err = KX_PROC_FILE,
                       .out_path = path,
                       .err_path = path};
    assert_int_equal(kx_proc_spawn(&o2, &p), KX_OK);
    assert_int_equal(p.out_fd, -1);
    wait_exit(&p);
    kx_proc_close(&p);
    fd = open(path, O_RDONLY);
    assert_string_equal(read_all(fd, 1000), "before\nout\nerr\n");
    close(fd);
    unlink(path);
}

static void test_no_fd_leak_and_signals_unblocked(void **state)
{
    /* An fd the parent opened WITHOUT close-on-exec must still not reach the child. */
    int leaky = open("/dev/null", O_RDONLY);
    assert_true(leaky >= 3);
    /* A blocked SIGTERM (as a service with a signalfd has) must not stay blocked. */
    sigset_t term, old;
    sigemptyset(&term);
    sigaddset(&term, SIGTERM);
    sigprocmask(SIG_BLOCK, &term, &old);
    const char *argv[] = {"sh", "-c", "ls /proc/$$/fd; exec sleep 30", NULL};
    kx_proc_opts o = {.argv = argv, .envp = ENV, .out = KX_PROC_PIPE, .err = KX_PROC_NULL};
    kx_proc p;
    kx_err err = kx_proc_spawn(&o, &p);
    sigprocmask(SIG_SETMASK, &old, NULL);
    close(leaky);
    assert_int_equal(err, KX_OK);
    char first[64] = {0};
    const char *lines = read_all(p.out_fd, 300); /* sleep keeps stdout open: read what came */
    snprintf(first, sizeof first, "%.*s", (int)sizeof first - 1, lines);
    assert_string_equal(first, "0\n1\n2\n");
    assert_int_equal(kx_proc_kill_group(&p, SIGTERM), KX_OK);
    int st = wait_exit(&p);
    assert_true(WIFSIGNALED(st));
    assert_int_equal(WTERMSIG(st), SIGTERM);
    assert_int_equal(kx_proc_kill_group(&p, SIGTERM), KX_ERR_NOT_FOUND);
    kx_proc_close(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_output_and_group_kill),
        cmocka_unit_test(test_missing_program_fails_cleanly),
        cmocka_unit_test(test_environment_and_cwd),
        cmocka_unit_test(test_stdin_pipe_and_files),
        cmocka_unit_test(test_no_fd_leak_and_signals_unblocked),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
