/* fdlimit.c — RLIMIT_NOFILE raised to what a capacity needs (see kx/fdlimit.h). */
#include "kx/fdlimit.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

/* /proc/sys/fs/nr_open: the most a hard limit may be raised to; 0 if unreadable. */
static uint64_t nr_open(void)
{
    FILE *f = fopen("/proc/sys/fs/nr_open", "re");
    if (f == NULL)
        return 0;
    char buf[32] = "";
    char *end = NULL;
    unsigned long long v = 0;
    if (fgets(buf, sizeof buf, f) != NULL) {
        errno = 0;
        v = strtoull(buf, &end, 10);
        if (errno != 0 || end == buf)
            v = 0;
    }
    fclose(f);
    return (uint64_t)v;
}

kx_err kx_fd_limit_ensure(uint64_t need, uint64_t *have, char *why, size_t whylen)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
        snprintf(why, whylen, "getrlimit(RLIMIT_NOFILE) failed: %s", strerror(errno));
        return KX_ERR_INVALID;
    }
    if (have != NULL)
        *have = rl.rlim_cur;
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur >= need)
        return KX_OK;
    if (rl.rlim_cur == RLIM_INFINITY)
        return KX_OK;
    int hard_errno = 0;
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < need) {
        /* Only a privileged process may raise the hard limit, and never past nr_open. */
        uint64_t cap = nr_open();
        struct rlimit up = {.rlim_cur = need, .rlim_max = need};
        if (cap != 0 && need > cap) {
            snprintf(why, whylen,
                     "%llu file descriptors are needed, more than the kernel allows any process "
                     "(/proc/sys/fs/nr_open = %llu)",
                     (unsigned long long)need, (unsigned long long)cap);
            up.rlim_cur = up.rlim_max = cap;
            if (setrlimit(RLIMIT_NOFILE, &up) != 0) { /* as far as it goes */
                up.rlim_cur = rl.rlim_max;
                up.rlim_max = rl.rlim_max;
                setrlimit(RLIMIT_NOFILE, &up);
            }
            if (have != NULL && getrlimit(RLIMIT_NOFILE, &rl) == 0)
                *have = rl.rlim_cur;
            return KX_ERR_INVALID;
        }
        if (setrlimit(RLIMIT_NOFILE, &up) == 0) {
            if (have != NULL)
                *have = need;
            return KX_OK;
        }
        hard_errno = errno;
    } else {
        struct rlimit up = {.rlim_cur = need, .rlim_max = rl.rlim_max};
        if (setrlimit(RLIMIT_NOFILE, &up) == 0) {
            if (have != NULL)
                *have = need;
            return KX_OK;
        }
        snprintf(why, whylen, "setrlimit(RLIMIT_NOFILE, %llu) failed: %s",
                 (unsigned long long)need, strerror(errno));
        return KX_ERR_INVALID;
    }
    /* Not allowed to raise the hard limit: take the soft limit up to it, and say so. */
    struct rlimit up = {.rlim_cur = rl.rlim_max, .rlim_max = rl.rlim_max};
    if (setrlimit(RLIMIT_NOFILE, &up) == 0 && have != NULL)
        *have = rl.rlim_max;
    snprintf(why, whylen,
             "%llu file descriptors are needed but the hard limit RLIMIT_NOFILE is %llu and this "
             "process may not raise it (%s): raise it (ulimit -Hn, systemd LimitNOFILE=, docker "
             "--ulimit nofile=) or lower the capacity",
             (unsigned long long)need, (unsigned long long)rl.rlim_max, strerror(hard_errno));
    return KX_ERR_INVALID;
}
