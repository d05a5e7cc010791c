/* tests/harness/procstat.c — the /proc readers of procstat.h. */
#include "procstat.h"

#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

bool kx_th_pstat_read(const char *path, kx_th_pstat *out)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return false;
    char line[1024];
    size_t n = fread(line, 1, sizeof line - 1, f);
    fclose(f);
    line[n] = '\0';
    /* "pid (comm) state ppid pgrp ...": comm may hold spaces and ')', so count from the last */
    const char *p = strrchr(line, ')');
    if (p == NULL || p[1] != ' ' || p[2] == '\0' || p[3] != ' ')
        return false;
    *out = (kx_th_pstat){.state = p[2]};
    /* fields 4 .. 17 as numbers: v[0] is field 4 */
    long long v[14];
    const char *q = p + 3;
    for (int k = 0; k < 14; k++) {
        char *end = NULL;
        v[k] = strtoll(q, &end, 10);
        if (end == q)
            return false;
        q = end;
    }
    out->ppid = (pid_t)v[0];
    out->pgrp = (pid_t)v[1];
    out->utime = v[10];
    out->stime = v[11];
    out->cutime = v[12];
    out->cstime = v[13];
    return true;
}

bool kx_th_pstat_of(pid_t pid, kx_th_pstat *out)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    return kx_th_pstat_read(path, out);
}

bool kx_th_alive(pid_t pid)
{
    kx_th_pstat st;
    return pid > 0 && kx_th_pstat_of(pid, &st) && st.state != 'Z' && st.state != 'X';
}

int64_t kx_th_tick_ns(void)
{
    long hz = sysconf(_SC_CLK_TCK);
    return 1000000000LL / (hz > 0 ? hz : 100);
}

bool kx_th_thread_states(pid_t pid, int *stopped, int *all)
{
    *stopped = *all = 0;
    char dir[64];
    snprintf(dir, sizeof dir, "/proc/%d/task", (int)pid);
    DIR *d = opendir(dir);
    if (d == NULL)
        return false;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9')
            continue;
        char path[128];
        snprintf(path, sizeof path, "%s/%.32s/stat", dir, e->d_name);
        kx_th_pstat st;
        if (!kx_th_pstat_read(path, &st))
            continue; /* the thread ended */
        (*all)++;
        if (st.state == 'T' || st.state == 't')
            (*stopped)++;
    }
    closedir(d);
    return true;
}

int kx_th_each_proc(bool (*visit)(pid_t pid, void *arg), void *arg)
{
    DIR *d = opendir("/proc");
    if (d == NULL)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        char *end;
        long pid = strtol(e->d_name, &end, 10);
        if (*end == '\0' && pid > 0 && pid <= INT_MAX && visit((pid_t)pid, arg))
            n++;
    }
    closedir(d);
    return n;
}

/* A walk of the processes whose stat line parses and that want(pid, st, key) accepts: fn(pid,
 * arg) for each (when fn is not NULL). */
typedef struct stat_walk {
    bool (*want)(pid_t pid, const kx_th_pstat *st, const void *key);
    const void *key;
    void (*fn)(pid_t pid, void *arg);
    void *arg;
} stat_walk;

static bool visit_stat(pid_t pid, void *arg)
{
    const stat_walk *w = arg;
    kx_th_pstat st;
    if (!kx_th_pstat_of(pid, &st) || !w->want(pid, &st, w->key))
        return false;
    if (w->fn != NULL)
        w->fn(pid, w->arg);
    return true;
}

static bool child_of(pid_t pid, const kx_th_pstat *st, const void *key)
{
    pid_t parent = *(const pid_t *)key;
    return pid != parent && st->ppid == parent && st->state != 'Z' && st->state != 'X';
}

static bool in_group(pid_t pid, const kx_th_pstat *st, const void *key)
{
    (void)pid;
    return st->pgrp == *(const pid_t *)key && st->state != 'Z';
}

int kx_th_each_child(pid_t parent, void (*fn)(pid_t child, void *arg), void *arg)
{
    return kx_th_each_proc(visit_stat, &(stat_walk){child_of, &parent, fn, arg});
}

int kx_th_group_live(pid_t pgid)
{
    return kx_th_each_proc(visit_stat, &(stat_walk){in_group, &pgid, NULL, NULL});
}

size_t kx_th_cmdline_of(pid_t pid, char *buf, size_t size, bool joined)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/cmdline", (int)pid);
    FILE *f = fopen(path, "r");
    size_t n = 0;
    if (f != NULL) {
        n = fread(buf, 1, size - 1, f);
        fclose(f);
    }
    for (size_t i = 0; joined && i < n; i++)
        buf[i] = buf[i] == '\0' ? ' ' : buf[i];
    buf[n] = '\0';
    return n;
}

pid_t kx_th_postmaster_of(const char *data_dir)
{
    char path[512];
    snprintf(path, sizeof path, "%s/postmaster.pid", data_dir);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    char line[32] = "";
    long pid = 0;
    if (fgets(line, sizeof line, f) == NULL || !kx_th_parse_long(line, &pid) || pid <= 0 ||
        pid > 0x7fffffffL)
        pid = 0;
    fclose(f);
    return (pid_t)pid;
}
