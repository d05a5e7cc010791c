/* kx/fdlimit.h — making sure a process may open as many descriptors as its capacity needs.
 *
 * A server that holds one socket per run or per connection (the agent-runner's LLM streams, the
 * demo model's connections) needs RLIMIT_NOFILE above its capacity; a shell's children get a
 * soft limit of 1 024 by default, and past it every accept or connect fails with EMFILE — runs
 * fail one by one, far from the cause. kx_fd_limit_ensure raises the soft limit to what is
 * needed (and the hard limit too, where the process may: root, CAP_SYS_RESOURCE, never past
 * /proc/sys/fs/nr_open), or says exactly why it cannot, so a service can refuse to start with
 * a capacity its limits cannot serve. */
#ifndef KX_FDLIMIT_H
#define KX_FDLIMIT_H

#include <stddef.h>
#include <stdint.h>
#include "kx/err.h"

/* Raises RLIMIT_NOFILE so that at least need descriptors may be open. KX_OK when the soft limit
 * is now >= need (*have = the soft limit, may be NULL). KX_ERR_INVALID when it cannot be:
 * why[] names the limit that stops it (soft, hard, nr_open), its value and what to do; the
 * limits are then raised as far as they go. Does not log. */
kx_err kx_fd_limit_ensure(uint64_t need, uint64_t *have, char *why, size_t whylen);

#endif
