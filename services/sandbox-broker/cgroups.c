/* cgroups.c — each sandbox's cgroup v2 limits, when the broker has a delegated cgroup
 * (broker_config.c prepares b->cgroup at start): the cgroup made with its limits before the
 * jail starts in it, removed after the jail ends, and leftovers (a jail whose processes were
 * still exiting, a broker that crashed) removed by the idle sweep. See kx/cgroup.h. */
#include "cgroups.h"

#include <dirent.h>
#include <string.h>
#include <unistd.h>

#include "kx/log.h"
#include "kx/uuid.h"
#include "sandbox.h"

#define PREFIX "sb-"

static void name_of(const char *project_id, char *out, size_t len)
{
    snprintf(out, len, PREFIX "%s", project_id);
}

kx_err sb_cgroup_open(sb_broker *b, const char *project_id, int *fd_out, char *why, size_t whylen)
{
    *fd_out = -1;
    if (!b->cgroup_on)
        return KX_OK;
    char name[64];
    name_of(project_id, name, sizeof name);
    return kx_cgroup_make(&b->cgroup, name, &b->cfg.cg_limits, fd_out, why, whylen);
}

void sb_cgroup_release(sb_broker *b, const char *project_id)
{
    if (!b->cgroup_on)
        return;
    char name[64];
    name_of(project_id, name, sizeof name);
    if (kx_cgroup_remove(&b->cgroup, name) != KX_OK)
        kx_debug("sandbox: cgroup %s/%s still has processes exiting: the sweep removes it",
                 b->cgroup.path, name);
}

void sb_cgroup_sweep(sb_broker *b)
{
    if (!b->cgroup_on)
        return;
    DIR *d = opendir(b->cgroup.path);
    if (d == NULL)
        return;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        const char *project = de->d_name + strlen(PREFIX);
        if (de->d_type != DT_DIR || strncmp(de->d_name, PREFIX, strlen(PREFIX)) != 0 ||
            !kx_uuid_valid(project) || sb_sandbox_find(b, project) != NULL)
            continue;
        if (kx_cgroup_remove(&b->cgroup, de->d_name) == KX_OK)
            kx_info("sandbox: removed the leftover cgroup %s/%s", b->cgroup.path, de->d_name);
    }
    closedir(d);
}
