/* cgroups.h — each sandbox's cgroup v2 limits (cgroups.c). Every function does nothing (and
 * succeeds) when the broker has no delegated cgroup (b->cgroup_on false). Loop thread only. */
#ifndef SB_CGROUPS_H
#define SB_CGROUPS_H

#include "broker.h"

/* Makes project_id's cgroup with the configured limits: *fd_out for kx_jail_opts.cgroup_fd
 * (the caller closes it after the spawn), or -1 when cgroups are off. why names the file that
 * could not be written. */
kx_err sb_cgroup_open(sb_broker *b, const char *project_id, int *fd_out, char *why, size_t whylen);
/* After the jail ended: kills what is left in the cgroup and removes it (or leaves it to the
 * sweep while its processes exit). */
void sb_cgroup_release(sb_broker *b, const char *project_id);
/* Removes the cgroups of sandboxes not running here (from the idle sweep). */
void sb_cgroup_sweep(sb_broker *b);

#endif
