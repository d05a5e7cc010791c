/* kx/signal.h — SIGTERM/SIGINT as loop events.
 *
 * kx_signal_watch blocks SIGTERM, SIGINT and SIGPIPE (ignored) in the calling thread — call it
 * from main() before starting any thread, so every thread inherits the mask — and delivers
 * SIGTERM/SIGINT through a signalfd watched by the loop: on_term runs on the loop thread.
 * A second signal while draining calls on_term again (services treat it as "exit now"). */
#ifndef KX_SIGNAL_H
#define KX_SIGNAL_H

#include "kx/loop.h"

typedef void (*kx_signal_cb)(kx_loop *loop, int signo, void *arg);

kx_err kx_signal_watch(kx_loop *loop, kx_signal_cb on_term, void *arg);
/* Waits up to ms for SIGTERM/SIGINT on the signalfd without the loop (after kx_signal_watch,
 * before the loop runs): true, with *signo, when one came (it is then consumed: the loop will
 * not see it). false after ms (also when kx_signal_watch was not called: then it only waits). */
bool kx_signal_wait(int64_t ms, int *signo);

#endif
