/* kx/cgroup.h — cgroup v2 limits for jails: a delegated cgroup directory the service manages,
 * and one child cgroup per jail with memory.max, pids.max and cpu.max written before the jail
 * starts in it (kx_jail_opts.cgroup_fd: clone3 with CLONE_INTO_CGROUP, so no process of the
 * jail ever runs outside it).
 *
 * The delegated directory ("the root") is KX_SANDBOX_CGROUP for the sandbox-broker: a path, or
 * "auto" for the cgroup the process itself is in (/proc/self/cgroup's "0::" line, under the
 * cgroup2 mount). cgroup v2 lets a cgroup with processes in it have no controller-enabled
 * children ("no internal processes"), so when the service itself is in the root it first moves
 * itself into <root>/service (a leaf), then enables the controllers it needs in
 * <root>/cgroup.subtree_control. A root that has other processes, no memory/pids/cpu
 * controller, or is not writable is refused with a sentence saying which.
 *
 * Not every host delegates one: a container on a cgroup v1 (or hybrid) host has no writable
 * v2 controllers; then the rlimits of kx/jail.h are the only limits, and health says so.
 *
 * Ownership: kx_cgroup_root is the caller's; the directory fds returned are the caller's to
 * close. Nothing here is thread-safe beyond what the kernel gives; call from one thread. */
#ifndef KX_CGROUP_H
#define KX_CGROUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "kx/err.h"

/* 0 = no limit written for that controller ("max"). */
typedef struct kx_cgroup_limits {
    int64_t memory_bytes; /* memory.max (and memory.swap.max = 0 where the file exists) */
    int64_t pids;         /* pids.max: processes and threads of the whole jail */
    int64_t cpu_percent;  /* cpu.max as a share of one CPU: 100 = one core, 50 = half */
} kx_cgroup_limits;

typedef struct kx_cgroup_root {
    char path[1024];        /* absolute directory of the delegated cgroup */
    bool memory, pids, cpu; /* controllers enabled for its children */
} kx_cgroup_root;

/* Prepares spec ("auto" or an absolute directory) as the root of jail cgroups (see above).
 * mount is where cgroup2 is mounted ("" = found in /proc/self/mountinfo; tests pass a
 * directory laid out like cgroupfs). KX_OK with *out filled and what = a sentence naming the
 * root and its controllers; otherwise what says why not (KX_ERR_UNAVAILABLE: not delegated
 * here; KX_ERR_INVALID: spec is not a directory path). */
kx_err kx_cgroup_root_prepare(const char *spec, const char *mount, kx_cgroup_root *out, char *what,
                              size_t whatlen);

/* Makes (or reuses, when left by an earlier start) <root>/<name> with lim written, and opens
 * it: *dirfd_out is an O_DIRECTORY fd for kx_jail_opts.cgroup_fd. name is one path component
 * of [A-Za-z0-9_.-]. why says which file could not be written. */
kx_err kx_cgroup_make(const kx_cgroup_root *root, const char *name, const kx_cgroup_limits *lim,
                      int *dirfd_out, char *why, size_t whylen);

/* Ends everything in <root>/<name> (cgroup.kill where the kernel has it) and removes the
 * directory: KX_OK when gone or never made; KX_ERR_UNAVAILABLE while processes are still
 * exiting (the directory stays, and the next kx_cgroup_make of the name reuses it). */
kx_err kx_cgroup_remove(const kx_cgroup_root *root, const char *name);

#endif
