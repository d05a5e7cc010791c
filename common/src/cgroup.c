/* cgroup.c — cgroup v2 limits for jails: preparing a delegated root, one child cgroup per jail
 * with its limits written, and its removal (see kx/cgroup.h). */
#include "kx/cgroup.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Reads the first line of dir/file into buf (newline cut). */
static bool read_line(const char *dir, const char *file, char *buf, size_t len)
{
    char path[1200];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    FILE *f = fopen(path, "re");
    if (f == NULL)
        return false;
    bool got = fgets(buf, (int)len, f) != NULL;
    fclose(f);
    if (!got)
        buf[0] = '\0';
    buf[strcspn(buf, "\n")] = '\0';
    return true;
}

/* Writes text to dir/file (a cgroup interface file), as one write. errno on failure. */
static bool write_file(const char *dir, const char *file, const char *text, bool create)
{
    char path[1200];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    int fd = open(path, O_WRONLY | O_CLOEXEC | (create ? O_CREAT | O_TRUNC : 0), 0644);
    if (fd < 0)
        return false;
    size_t n = strlen(text);
    ssize_t w = write(fd, text, n);
    int e = errno;
    close(fd);
    errno = w == (ssize_t)n ? 0 : (w < 0 ? e : EIO);
    return w == (ssize_t)n;
}

static bool has_word(const char *list, const char *word)
{
    size_t n = strlen(word);
    for (const char *p = list; (p = strstr(p, word)) != NULL; p += n)
        if ((p == list || p[-1] == ' ') && (p[n] == '\0' || p[n] == ' '))
            return true;
    return false;
}

/* Where cgroup2 is mounted, from /proc/self/mountinfo ("... - cgroup2 ..."). */
static bool find_mount(char *out, size_t len)
{
    FILE *f = fopen("/proc/self/mountinfo", "re");
    if (f == NULL)
        return false;
    char line[2048];
    bool found = false;
    while (!found && fgets(line, sizeof line, f) != NULL) {
        char *dash = strstr(line, " - cgroup2 ");
        char mnt[1024];
        if (dash != NULL && sscanf(line, "%*s %*s %*s %*s %1023s", mnt) == 1) {
            snprintf(out, len, "%s", mnt);
            found = true;
        }
    }
    fclose(f);
    return found;
}

/* Reads dir/cgroup.procs: how many pids other than ours it lists, and whether ours is there. */
static int scan_procs(const char *dir, bool *ours)
{
    char path[1200], line[64];
    snprintf(path, sizeof path, "%s/cgroup.procs", dir);
    *ours = false;
    FILE *f = fopen(path, "re");
    if (f == NULL)
        return 0;
    int others = 0;
    while (fgets(line, sizeof line, f) != NULL) {
        char *end = NULL;
        long pid = strtol(line, &end, 10);
        if (end == line)
            continue;
        if (pid == (long)getpid())
            *ours = true;
        else
            others++;
    }
    fclose(f);
    return others;
}

kx_err kx_cgroup_root_prepare(const char *spec, const char *mount, kx_cgroup_root *out, char *what,
                              size_t whatlen)
{
    memset(out, 0, sizeof *out);
    char mnt[1024];
    if (mount != NULL && mount[0] != '\0')
        snprintf(mnt, sizeof mnt, "%s", mount);
    else if (!find_mount(mnt, sizeof mnt)) {
        snprintf(what, whatlen, "no cgroup v2 hierarchy is mounted");
        return KX_ERR_UNAVAILABLE;
    }
    if (spec == NULL || strcmp(spec, "auto") == 0) {
        char line[1024] = "", rel[1024] = "";
        FILE *f = fopen("/proc/self/cgroup", "re");
        while (f != NULL && fgets(line, sizeof line, f) != NULL)
            if (strncmp(line, "0::", 3) == 0)
                snprintf(rel, sizeof rel, "%s", line + 3);
        if (f != NULL)
            fclose(f);
        rel[strcspn(rel, "\n")] = '\0';
        if (rel[0] != '/') {
            snprintf(what, whatlen, "this process is in no cgroup v2");
            return KX_ERR_UNAVAILABLE;
        }
        snprintf(out->path, sizeof out->path, "%s%s", mnt, strcmp(rel, "/") == 0 ? "" : rel);
    } else if (spec[0] == '/' && strlen(spec) < sizeof out->path) {
        snprintf(out->path, sizeof out->path, "%s", spec);
    } else {
        snprintf(what, whatlen, "KX_SANDBOX_CGROUP=\"%s\": expected auto, off or an absolute path",
                 spec);
        return KX_ERR_INVALID;
    }

    char ctl[512];
    if (!read_line(out->path, "cgroup.controllers", ctl, sizeof ctl)) {
        snprintf(what, whatlen, "%s is not a cgroup v2 directory (no cgroup.controllers)",
                 out->path);
        return KX_ERR_UNAVAILABLE;
    }
    bool memory = has_word(ctl, "memory"), pids = has_word(ctl, "pids"),
         cpu = has_word(ctl, "cpu");
    if (!memory && !pids && !cpu) {
        snprintf(what, whatlen,
                 "cgroup v2 at %s has no memory, pids or cpu controller (controllers: \"%s\")",
                 out->path, ctl);
        return KX_ERR_UNAVAILABLE;
    }
    if (access(out->path, W_OK) != 0) {
        snprintf(what, whatlen, "cgroup v2 at %s is not delegated to this process (%s)", out->path,
                 strerror(errno));
        return KX_ERR_UNAVAILABLE;
    }
    /* No internal processes: the service leaves the root for a leaf of its own. */
    bool ours = false;
    scan_procs(out->path, &ours);
    if (ours) {
        char leaf[1200], pid[24];
        snprintf(leaf, sizeof leaf, "%s/service", out->path);
        snprintf(pid, sizeof pid, "%ld", (long)getpid());
        if ((mkdir(leaf, 0755) != 0 && errno != EEXIST) ||
            !write_file(leaf, "cgroup.procs", pid, false)) {
            snprintf(what, whatlen, "cannot move this process into %s: %s", leaf, strerror(errno));
            return KX_ERR_UNAVAILABLE;
        }
    }
    int others = scan_procs(out->path, &ours);
    if (others > 0) {
        snprintf(what, whatlen,
                 "cgroup v2 at %s holds %d other process(es): a delegated cgroup must be this "
                 "service's alone",
                 out->path, others);
        return KX_ERR_UNAVAILABLE;
    }
    char enable[64];
    snprintf(enable, sizeof enable, "%s%s%s", memory ? "+memory " : "", pids ? "+pids " : "",
             cpu ? "+cpu" : "");
    if (!write_file(out->path, "cgroup.subtree_control", enable, false)) {
        snprintf(what, whatlen, "cannot enable \"%s\" in %s/cgroup.subtree_control: %s", enable,
                 out->path, strerror(errno));
        return KX_ERR_UNAVAILABLE;
    }
    out->memory = memory;
    out->pids = pids;
    out->cpu = cpu;
    snprintf(what, whatlen, "cgroup v2 at %s: a cgroup per sandbox with%s%s%s", out->path,
             memory ? " memory.max" : "", pids ? " pids.max" : "", cpu ? " cpu.max" : "");
    return KX_OK;
}

static bool name_ok(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > 200 || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        return false;
    for (const char *p = name; *p != '\0'; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '_' || *p == '.' || *p == '-'))
            return false;
    return true;
}

kx_err kx_cgroup_make(const kx_cgroup_root *root, const char *name, const kx_cgroup_limits *lim,
                      int *dirfd_out, char *why, size_t whylen)
{
    *dirfd_out = -1;
    if (!name_ok(name)) {
        snprintf(why, whylen, "\"%s\" is not a cgroup name", name);
        return KX_ERR_INVALID;
    }
    char dir[1300];
    snprintf(dir, sizeof dir, "%s/%s", root->path, name);
    bool fresh = mkdir(dir, 0755) == 0;
    if (!fresh && errno != EEXIST) {
        snprintf(why, whylen, "cannot make the cgroup %s: %s", dir, strerror(errno));
        return KX_ERR_IO;
    }
    char mem[32] = "max", pids[32] = "max", cpu[48] = "max 100000";
    if (lim->memory_bytes > 0)
        snprintf(mem, sizeof mem, "%lld", (long long)lim->memory_bytes);
    if (lim->pids > 0)
        snprintf(pids, sizeof pids, "%lld", (long long)lim->pids);
    if (lim->cpu_percent > 0) /* quota per 100 ms period */
        snprintf(cpu, sizeof cpu, "%lld 100000", (long long)lim->cpu_percent * 1000);
    const struct {
        bool on;
        const char *file, *text;
    } writes[] = {{root->memory, "memory.max", mem},
                  {root->pids, "pids.max", pids},
                  {root->cpu, "cpu.max", cpu}};
    for (size_t i = 0; i < sizeof writes / sizeof writes[0]; i++) {
        if (writes[i].on && !write_file(dir, writes[i].file, writes[i].text, true)) {
            snprintf(why, whylen, "cannot write \"%s\" to %s/%s: %s", writes[i].text, dir,
                     writes[i].file, strerror(errno));
            if (fresh)
                rmdir(dir);
            return KX_ERR_IO;
        }
    }
    /* No swap beyond memory.max, where the kernel has swap accounting. */
    if (root->memory && !write_file(dir, "memory.swap.max", "0", false) && errno != ENOENT) {
        snprintf(why, whylen, "cannot write 0 to %s/memory.swap.max: %s", dir, strerror(errno));
        if (fresh)
            rmdir(dir);
        return KX_ERR_IO;
    }
    int fd = open(dir, O_DIRECTORY | O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(why, whylen, "cannot open the cgroup %s: %s", dir, strerror(errno));
        if (fresh)
            rmdir(dir);
        return KX_ERR_IO;
    }
    *dirfd_out = fd;
    return KX_OK;
}

kx_err kx_cgroup_remove(const kx_cgroup_root *root, const char *name)
{
    if (!name_ok(name))
        return KX_ERR_INVALID;
    char dir[1300];
    snprintf(dir, sizeof dir, "%s/%s", root->path, name);
    write_file(dir, "cgroup.kill", "1", false); /* absent before Linux 5.14: the jail is dead */
    if (rmdir(dir) == 0 || errno == ENOENT)
        return KX_OK;
    return errno == EBUSY || errno == ENOTEMPTY ? KX_ERR_UNAVAILABLE : KX_ERR_IO;
}
