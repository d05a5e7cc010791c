/* waiter.h — the demo model's one waiting thread: timers and hang-up watches for suspended
 * connections, so that `sleep`, `hang` and paced stream chunks hold no thread per connection.
 *
 * A wait is (an fd to watch for the peer hanging up, or -1; a delay in ms, or -1 for none). It
 * ends exactly once, on the waiter's thread, with the first of: the delay passed
 * (WAIT_ELAPSED), the peer hung up or the socket failed (WAIT_HANGUP), or waiter_stop
 * (WAIT_STOPPED); then its callback runs (there the server records why and calls
 * MHD_resume_connection). The thread sleeps in epoll_wait: 10 000 waits cost no CPU while
 * nothing happens; timers are a binary heap (O(log n) per wait).
 *
 * The fd stays owned by its connection, which libmicrohttpd keeps open while it is suspended;
 * the waiter removes it from its own epoll set before the callback runs (so a callback may
 * resume the connection at once, and the fd may be closed and reused after).
 *
 * Ownership: waiter_start returns a waiter that waiter_stop ends (firing every pending wait
 * with WAIT_STOPPED, then joining the thread) and frees. Thread-safe: waiter_add may be called
 * from any thread. */
#ifndef KX_DEMO_WAITER_H
#define KX_DEMO_WAITER_H

#include <stddef.h>
#include <stdint.h>

typedef enum waiter_reason {
    WAIT_ELAPSED = 0, /* the delay passed */
    WAIT_HANGUP,      /* the peer closed its side (or the socket failed) */
    WAIT_STOPPED,     /* the server is stopping */
} waiter_reason;

typedef struct waiter waiter;
typedef void (*waiter_fn)(void *arg, waiter_reason why); /* runs on the waiter's thread */

waiter *waiter_start(void); /* NULL on failure (logged) */
/* Starts a wait. fd: watched for EPOLLRDHUP/EPOLLHUP/EPOLLERR (-1: no watch); ms: delay
 * (< 0: none — then fd must be set, or only waiter_stop ends it). Returns 0, or -1 when out of
 * memory or the fd cannot be watched (the callback is then not called). */
int waiter_add(waiter *w, int fd, int64_t ms, waiter_fn fn, void *arg);
size_t waiter_pending(waiter *w); /* waits not yet ended */
void waiter_stop(waiter *w);      /* NULL is a no-op */

#endif
