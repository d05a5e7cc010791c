/* kx/loop.h — the event loop every asynchronous service runs on.
 *
 * One thread runs kx_loop_run(); it owns every object registered with the loop. File
 * descriptors are watched with epoll; timers live in a binary heap keyed by monotonic time;
 * other threads (cnats callbacks, fetchers) hand work to the loop with kx_loop_post(), which is
 * the only thread-safe entry point besides kx_loop_stop(). Callbacks run on the loop thread and
 * must not block.
 *
 * Lifecycle: kx_loop_new -> (watch/timer/post)* -> kx_loop_run ... kx_loop_stop -> kx_loop_free.
 */
#ifndef KX_LOOP_H
#define KX_LOOP_H

#include <stdbool.h>
#include <stdint.h>
#include "kx/err.h"

typedef struct kx_loop kx_loop;
typedef struct kx_timer kx_timer;

/* Events: a mask of EPOLLIN/EPOLLOUT/EPOLLERR/EPOLLHUP as in <sys/epoll.h>. */
typedef void (*kx_fd_cb)(kx_loop *loop, int fd, uint32_t events, void *arg);
typedef void (*kx_timer_cb)(kx_loop *loop, void *arg);
typedef void (*kx_task_cb)(kx_loop *loop, void *arg);

kx_loop *kx_loop_new(void);
/* Frees the loop. Tasks still queued are dropped without being run; timers are freed.
 * The caller closes its own fds. */
void kx_loop_free(kx_loop *loop);

/* Runs until kx_loop_stop(). Returns KX_OK, or KX_ERR_IO if epoll failed. */
kx_err kx_loop_run(kx_loop *loop);
/* Thread-safe (and async-signal-safe): makes kx_loop_run return after the current callback. */
void kx_loop_stop(kx_loop *loop);
bool kx_loop_in_loop_thread(const kx_loop *loop);

/* Watches fd for events (adds, or changes the mask and callback if already watched).
 * events == 0 keeps the fd registered but silent. Loop thread only. */
kx_err kx_loop_watch(kx_loop *loop, int fd, uint32_t events, kx_fd_cb cb, void *arg);
/* Stops watching fd (does not close it). Safe to call from inside that fd's callback. */
void kx_loop_unwatch(kx_loop *loop, int fd);

/* One-shot timer after ms milliseconds (0 = next iteration). The loop owns the timer until it
 * fires (then frees it, before calling cb) or until kx_timer_cancel(). Loop thread only.
 * Returns NULL only on allocation failure. */
kx_timer *kx_loop_timer(kx_loop *loop, int64_t ms, kx_timer_cb cb, void *arg);
/* Cancels and frees a timer that has not fired. NULL is a no-op. Loop thread only. */
void kx_timer_cancel(kx_timer *timer);

/* Thread-safe: runs cb(loop, arg) on the loop thread soon, in FIFO order of posting.
 * Returns KX_ERR_NOMEM on allocation failure (cb is then never called). */
kx_err kx_loop_post(kx_loop *loop, kx_task_cb cb, void *arg);
/* The same, for a task that owns arg: if the loop is freed before the task ran, dispose(arg)
 * is called instead (from kx_loop_free's thread), so nothing posted is leaked at shutdown. */
kx_err kx_loop_post_owned(kx_loop *loop, kx_task_cb cb, void *arg, void (*dispose)(void *arg));

/* Monotonic ms as cached at the start of the current iteration (cheap). */
int64_t kx_loop_now(const kx_loop *loop);

#endif
