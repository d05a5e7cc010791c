/* signal.c — SIGTERM and SIGINT delivered as loop events through a signalfd.
 *
 * The signals are blocked in the calling thread (threads started later inherit the mask), so
 * the kernel queues them on the signalfd instead of interrupting anybody; the loop reads them
 * and calls on_term on the loop thread. SIGPIPE is ignored: a closed socket is an EPIPE error
 * on the write, not a process kill. Signals are process-wide, so there is one registration per
 * process (a second call moves it to the new loop and callback). */
#include "kx/signal.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include "kx/log.h"
#include "kx/time.h"

static struct {
    int fd;
    kx_signal_cb cb;
    void *arg;
} g_sig = {.fd = -1};

static void on_signalfd(kx_loop *loop, int fd, uint32_t events, void *arg)
{
    for (;;) {
        struct signalfd_siginfo si;
        ssize_t n = read(fd, &si, sizeof si);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN)
                kx_error("signal: reading the signalfd failed: %s", strerror(errno));
            return;
        }
        if (n != (ssize_t)sizeof si) {
            kx_error("signal: short read from the signalfd (%zd bytes)", n);
            return;
        }
        kx_info("signal: received %s", strsignal((int)si.ssi_signo));
        if (g_sig.cb != NULL)
            g_sig.cb(loop, (int)si.ssi_signo, g_sig.arg);
    }
}

bool kx_signal_wait(int64_t ms, int *signo)
{
    if (g_sig.fd < 0) { /* nothing watches the signals: only the wait */
        struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
        }
        return false;
    }
    int64_t until = kx_mono_ms() + ms;
    for (;;) {
        int64_t left = until - kx_mono_ms();
        struct pollfd p = {.fd = g_sig.fd, .events = POLLIN};
        int n = poll(&p, 1, left > 0 ? (int)(left > INT_MAX ? INT_MAX : left) : 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        struct signalfd_siginfo si;
        if (read(g_sig.fd, &si, sizeof si) == (ssize_t)sizeof si) {
            *signo = (int)si.ssi_signo;
            return true;
        }
        if (errno != EAGAIN && errno != EINTR)
            return false;
    }
}

kx_err kx_signal_watch(kx_loop *loop, kx_signal_cb on_term, void *arg)
{
    struct sigaction ign;
    memset(&ign, 0, sizeof ign);
    ign.sa_handler = SIG_IGN;
    sigemptyset(&ign.sa_mask);
    if (sigaction(SIGPIPE, &ign, NULL) != 0) {
        kx_error("signal: ignoring SIGPIPE failed: %s", strerror(errno));
        return KX_ERR_IO;
    }
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    int rc = pthread_sigmask(SIG_BLOCK, &mask, NULL);
    if (rc != 0) {
        kx_error("signal: blocking SIGTERM/SIGINT failed: %s", strerror(rc));
        return KX_ERR_IO;
    }
    if (g_sig.fd < 0) {
        g_sig.fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
        if (g_sig.fd < 0) {
            kx_error("signal: signalfd failed: %s", strerror(errno));
            return KX_ERR_IO;
        }
    }
    g_sig.cb = on_term;
    g_sig.arg = arg;
    return kx_loop_watch(loop, g_sig.fd, EPOLLIN, on_signalfd, NULL);
}
