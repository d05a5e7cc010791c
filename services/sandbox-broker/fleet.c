/* fleet.c — several sandbox-brokers over one KX_SANDBOX_ROOT: the broker's id and lease, the
 * forwarding of a request to the broker that runs its sandbox, and takeover when a broker's
 * lease expires (see fleet.h). */
#include "fleet.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kx/config.h"
#include "kx/log.h"
#include "kx/metrics.h"
#include "kx/time.h"
#include "kx/uuid.h"
#include "lifecycle.h"
#include "sandbox.h"
#include "sandbox_path.h"

#define LEASE_DIR ".brokers"
#define MAX_DIRECT 16                       /* subjects with a direct twin */
#define SEEN_MAX 64                         /* expired leases already handled (id + mtime) */
#define STALE_LEASE_MS (24LL * 3600 * 1000) /* a dead broker's lease file is removed after */

typedef struct direct_op {
    char op[24]; /* last token of the shared subject: exec, files, create, ... */
    kx_bus_msg_cb cb;
    void *arg;
} direct_op;

static direct_op g_direct[MAX_DIRECT];
static size_t g_ndirect;

typedef struct seen_lease {
    char id[64];
    int64_t mtime_ms;
} seen_lease;
static seen_lease g_seen[SEEN_MAX];
static size_t g_nseen;

/* ---- identity and lease ----------------------------------------------------------------- */

/* A NATS token made of id: letters, digits, '-' and '_' (anything else becomes '_'). */
static void token_of(const char *id, char *out, size_t cap)
{
    size_t n = 0;
    for (; id[n] != '\0' && n + 1 < cap; n++) {
        char c = id[n];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '_';
        out[n] = ok ? c : '_';
    }
    out[n] = '\0';
}

static void lease_path(const sb_broker *b, const char *id, char *out, size_t cap)
{
    int n = snprintf(out, cap, "%s/" LEASE_DIR "/%.63s", b->cfg.root, id);
    if (n < 0 || (size_t)n >= cap)
        out[0] = '\0'; /* cannot happen: the root is at most 2047 bytes, an id 63 */
}

/* Where this process lives: "<boot id> <pid namespace> <pid> <start time>" — the lease's
 * content. A broker reading a lease written in its own boot and PID namespace can tell at
 * once that its writer is gone (kill -9), without waiting for the lease to expire. */
static char g_self[192];

static bool read_small(const char *path, char *out, size_t cap)
{
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return false;
    ssize_t n = read(fd, out, cap - 1);
    close(fd);
    if (n <= 0)
        return false;
    out[n] = '\0';
    return true;
}

/* The start time (clock ticks since boot, /proc/<pid>/stat field 22) of pid, or -1. */
static long long start_time(long pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    if (!read_small(path, buf, sizeof buf))
        return -1;
    const char *p = strrchr(buf, ')'); /* the command name may hold spaces */
    for (int field = 2; p != NULL && field < 22; field++)
        p = strchr(p + 1, ' ');
    return p != NULL ? strtoll(p + 1, NULL, 10) : -1;
}

/* "<boot id> <pid namespace>" of this process, or "" when unknown. */
static void where(char *out, size_t cap)
{
    char boot[64] = "", ns[64] = "";
    if (read_small("/proc/sys/kernel/random/boot_id", boot, sizeof boot))
        boot[strcspn(boot, "\n")] = '\0';
    ssize_t n = readlink("/proc/self/ns/pid", ns, sizeof ns - 1);
    ns[n > 0 ? n : 0] = '\0';
    snprintf(out, cap, "%s %s", boot[0] != '\0' ? boot : "-", ns[0] != '\0' ? ns : "-");
}

/* True when the lease's writer is known to be gone: same boot and PID namespace as this
 * process, and its pid no longer runs (or runs another program since). */
static bool writer_gone(const sb_broker *b, const char *id)
{
    char path[2200], buf[256], here[160];
    lease_path(b, id, path, sizeof path);
    if (!read_small(path, buf, sizeof buf))
        return false;
    where(here, sizeof here);
    size_t hl = strlen(here);
    if (strchr(here, '-') == here || strncmp(buf, here, hl) != 0 || buf[hl] != ' ')
        return false; /* another host or namespace: only the lease's age counts */
    char *end = NULL;
    long pid = strtol(buf + hl + 1, &end, 10);
    long long started = end != NULL ? strtoll(end, NULL, 10) : -1;
    if (pid <= 0 || started < 0)
        return false;
    long long now = start_time(pid);
    return now < 0 || now != started;
}

/* Touches this broker's lease (created when missing: a file's mtime is the lease). */
static kx_err lease_renew(sb_broker *b)
{
    char path[2200];
    lease_path(b, b->id, path, sizeof path);
    int fd = open(path, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0)
        return KX_ERR_IO;
    size_t len = strlen(g_self);
    bool ok = pwrite(fd, g_self, len, 0) == (ssize_t)len && ftruncate(fd, (off_t)len) == 0;
    ok = futimens(fd, NULL) == 0 && ok;
    close(fd);
    return ok ? KX_OK : KX_ERR_IO;
}

/* The lease's mtime (unix ms), or -1 when there is none. */
static int64_t lease_mtime(const sb_broker *b, const char *id)
{
    char path[2200];
    lease_path(b, id, path, sizeof path);
    struct stat st;
    if (lstat(path, &st) != 0)
        return -1;
    return (int64_t)st.st_mtim.tv_sec * 1000 + st.st_mtim.tv_nsec / 1000000;
}

bool sb_fleet_alive(sb_broker *b, const char *id)
{
    if (strcmp(id, b->id) == 0)
        return true;
    int64_t m = lease_mtime(b, id);
    return m >= 0 && kx_now_ms() - m < b->lease_ms && !writer_gone(b, id);
}

kx_err sb_fleet_init(sb_broker *b)
{
    const char *id = kx_env_str("KX_SANDBOX_BROKER_ID", NULL);
    if (id != NULL && (id[0] == '\0' || strlen(id) >= sizeof b->id)) {
        kx_error("config: KX_SANDBOX_BROKER_ID=\"%.80s\" is not valid: expected 1..%zu of "
                 "A-Z a-z 0-9 - _",
                 id, sizeof b->id - 1);
        return KX_ERR_INVALID;
    }
    if (id != NULL) {
        token_of(id, b->id, sizeof b->id);
        if (strcmp(b->id, id) != 0) {
            kx_error("config: KX_SANDBOX_BROKER_ID=\"%s\" is not valid: only A-Z a-z 0-9 - _", id);
            return KX_ERR_INVALID;
        }
    } else {
        token_of(b->svc->instance_id, b->id, sizeof b->id);
    }
    if (kx_env_int("KX_SANDBOX_LEASE_MS", 10000, 300, 3600 * 1000, &b->lease_ms) != KX_OK)
        return KX_ERR_INVALID;
    snprintf(b->direct_prefix, sizeof b->direct_prefix, "kx.sandbox.%s.", b->id);
    char here[160];
    where(here, sizeof here);
    snprintf(g_self, sizeof g_self, "%s %ld %lld\n", here, (long)getpid(),
             start_time((long)getpid()));
    char dir[2100];
    snprintf(dir, sizeof dir, "%s/" LEASE_DIR, b->cfg.root);
    if (sb_mkdir_p(dir, 0755) != KX_OK) {
        kx_error("sandbox: cannot create %s: %s", dir, strerror(errno));
        return KX_ERR_IO;
    }
    if (lease_renew(b) != KX_OK) {
        kx_error("sandbox: cannot write the broker's lease in %s: %s", dir, strerror(errno));
        return KX_ERR_IO;
    }
    kx_info("sandbox: broker id %s, lease %lld ms in %s", b->id, (long long)b->lease_ms, dir);
    return KX_OK;
}

/* ---- subjects --------------------------------------------------------------------------- */

kx_err sb_fleet_subscribe(sb_broker *b, const char *subject, const char *queue, kx_bus_msg_cb cb,
                          void *arg, natsSubscription **out)
{
    const char *dot = strrchr(subject, '.');
    if (g_ndirect >= MAX_DIRECT || dot == NULL || strlen(dot + 1) >= sizeof g_direct[0].op)
        return KX_ERR_INTERNAL;
    direct_op *d = &g_direct[g_ndirect++];
    snprintf(d->op, sizeof d->op, "%s", dot + 1);
    d->cb = cb;
    d->arg = arg;
    return kx_bus_subscribe_loop(b->svc->bus, b->svc->loop, subject, queue, cb, arg, out);
}

/* kx.sandbox.<id>.<op>: the handler of the shared subject <op>. */
static void on_direct(natsMsg *msg, void *arg)
{
    sb_broker *b = arg;
    const char *subject = natsMsg_GetSubject(msg);
    size_t plen = strlen(b->direct_prefix);
    const char *op = strncmp(subject, b->direct_prefix, plen) == 0 ? subject + plen : "";
    for (size_t i = 0; i < g_ndirect; i++) {
        if (strcmp(g_direct[i].op, op) == 0) {
            g_direct[i].cb(msg, g_direct[i].arg);
            return;
        }
    }
    kx_warn("sandbox: no operation for %s", subject);
    natsMsg_Destroy(msg);
}

/* ---- routing ---------------------------------------------------------------------------- */

static void count_forward(const char *outcome)
{
    char labels[48];
    snprintf(labels, sizeof labels, "outcome=\"%s\"", outcome);
    kx_counter_add(kx_metrics_counter("kx_sandbox_forwarded_total", labels,
                                      "Requests forwarded to the broker running their sandbox"),
                   1);
}

/* Publishes msg's data and headers on subject with msg's reply subject. */
static kx_err forward(sb_broker *b, natsMsg *msg, const char *subject)
{
    natsMsg *fwd = NULL;
    natsStatus s = natsMsg_Create(&fwd, subject, natsMsg_GetReply(msg), natsMsg_GetData(msg),
                                  natsMsg_GetDataLength(msg));
    const char **keys = NULL;
    int nkeys = 0;
    if (s == NATS_OK) {
        natsStatus ks = natsMsgHeader_Keys(msg, &keys, &nkeys);
        if (ks != NATS_OK && ks != NATS_NOT_FOUND)
            s = ks;
    }
    for (int i = 0; s == NATS_OK && i < nkeys; i++) {
        const char **vals = NULL;
        int nvals = 0;
        if (natsMsgHeader_Values(msg, keys[i], &vals, &nvals) != NATS_OK)
            continue;
        for (int k = 0; s == NATS_OK && k < nvals; k++)
            s = natsMsgHeader_Add(fwd, keys[i], vals[k]);
        free((void *)vals);
    }
    free((void *)keys);
    if (s == NATS_OK)
        s = natsConnection_PublishMsg(kx_bus_conn(b->svc->bus), fwd);
    natsMsg_Destroy(fwd);
    return s == NATS_OK ? KX_OK : KX_ERR_UNAVAILABLE;
}

bool sb_fleet_route(sb_broker *b, natsMsg *msg, const char *project_id_in)
{
    const char *subject = natsMsg_GetSubject(msg);
    char project_id[KX_UUID_LEN + 1]; /* records are kept under the lower-case id */
    size_t i = 0;
    for (; i < KX_UUID_LEN && project_id_in[i] != '\0'; i++)
        project_id[i] = (char)tolower((unsigned char)project_id_in[i]);
    project_id[i] = '\0';
    if (strncmp(subject, b->direct_prefix, strlen(b->direct_prefix)) == 0)
        return false; /* sent to this broker: never forwarded again */
    if (sb_sandbox_find(b, project_id) != NULL)
        return false;
    sb_state st;
    if (sb_state_load(&b->cfg, project_id, &st) != KX_OK || !sb_lifecycle_elsewhere(b, &st))
        return false;
    const char *op = strrchr(subject, '.');
    char to[160];
    snprintf(to, sizeof to, "kx.sandbox.%s.%s", st.owner, op != NULL ? op + 1 : "");
    if (forward(b, msg, to) != KX_OK) {
        kx_warn("sandbox: project %s: could not forward %s to broker %s", project_id, subject,
                st.owner);
        count_forward("failed");
        return false; /* answered here: the start's claim refuses it, naming the owner */
    }
    kx_debug("sandbox: project %s: %s forwarded to broker %s", project_id, subject, st.owner);
    count_forward("forwarded");
    natsMsg_Destroy(msg);
    return true;
}

/* ---- takeover --------------------------------------------------------------------------- */

int sb_fleet_adopt(sb_broker *b, const char *dead)
{
    DIR *d = opendir(b->cfg.root);
    if (d == NULL)
        return 0;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        sb_state st;
        if (!kx_uuid_valid(de->d_name) || sb_sandbox_find(b, de->d_name) != NULL ||
            sb_state_load(&b->cfg, de->d_name, &st) != KX_OK || strcmp(st.state, "running") != 0)
            continue;
        bool ours = dead != NULL
            ? strcmp(st.owner, dead) == 0
            : st.owner[0] == '\0' || strcmp(st.owner, b->id) == 0 || !sb_fleet_alive(b, st.owner);
        if (!ours)
            continue;
        sb_sandbox *s = NULL;
        char why[512] = "";
        /* The claim (under the record's lock) decides between brokers adopting at once. */
        if (sb_sandbox_ensure(b, de->d_name, NULL, b->cfg.start_ms, &s, why, sizeof why) == KX_OK)
            n++;
        else
            kx_info("sandbox: project %s: not adopted: %s", de->d_name, why);
    }
    closedir(d);
    return n;
}

static bool seen(const char *id, int64_t mtime_ms)
{
    for (size_t i = 0; i < g_nseen; i++) {
        if (strcmp(g_seen[i].id, id) == 0 && g_seen[i].mtime_ms == mtime_ms)
            return true;
    }
    seen_lease *e = &g_seen[g_nseen < SEEN_MAX ? g_nseen++ : (size_t)(mtime_ms % SEEN_MAX)];
    snprintf(e->id, sizeof e->id, "%.63s", id);
    e->mtime_ms = mtime_ms;
    return false;
}

/* After this broker's own lease lapsed (it was frozen, or its disk or loop stalled), another
 * broker may have taken its sandboxes over: every jail here whose record names another owner
 * ends (the record is left to its owner). Runs only after a lapse: O(1) per normal beat. */
static void drop_taken(sb_broker *b, int64_t late_ms)
{
    kx_warn("sandbox: this broker's lease lapsed (renewed %lld ms ago, lease %lld ms): "
            "checking which sandboxes are still its own",
            (long long)late_ms, (long long)b->lease_ms);
    sb_sandbox *s = b->sandboxes;
    while (s != NULL) {
        sb_sandbox *next = sb_sandbox_next(s);
        sb_state st;
        if (sb_state_load(&b->cfg, sb_sandbox_project(s), &st) != KX_OK ||
            strcmp(st.state, "running") != 0 || strcmp(st.owner, b->id) != 0) {
            kx_warn("sandbox: project %s: now %s on broker %s: its jail here ends",
                    sb_sandbox_project(s), st.state, st.owner[0] ? st.owner : "(none)");
            sb_sandbox_stop(s, "taken over by another broker while this one's lease lapsed");
        }
        s = next;
    }
}

/* The beat: renew the lease, then look for leases that expired since the last beat. */
static void on_beat(kx_loop *loop, void *arg)
{
    sb_broker *b = arg;
    b->fleet_timer = NULL;
    if (b->draining)
        return;
    int64_t mine = lease_mtime(b, b->id);
    int64_t late = mine < 0 ? b->lease_ms : kx_now_ms() - mine;
    if (lease_renew(b) != KX_OK)
        kx_warn("sandbox: could not renew the broker's lease: %s", strerror(errno));
    if (late >= b->lease_ms)
        drop_taken(b, late);
    char dir[2100];
    snprintf(dir, sizeof dir, "%s/" LEASE_DIR, b->cfg.root);
    DIR *d = opendir(dir);
    int64_t now = kx_now_ms();
    struct dirent *de;
    while (d != NULL && (de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.' || strlen(de->d_name) >= sizeof b->id ||
            strcmp(de->d_name, b->id) == 0)
            continue;
        int64_t m = lease_mtime(b, de->d_name);
        if (m < 0 || (now - m < b->lease_ms && !writer_gone(b, de->d_name)))
            continue;
        if (now - m > STALE_LEASE_MS) { /* long dead: nothing of it is left running */
            char path[2200];
            lease_path(b, de->d_name, path, sizeof path);
            (void)unlink(path);
            continue;
        }
        if (seen(de->d_name, m))
            continue;
        kx_warn("sandbox: broker %s is gone (lease renewed %lld ms ago): taking over its "
                "sandboxes",
                de->d_name, (long long)(now - m));
        int n = sb_fleet_adopt(b, de->d_name);
        if (n > 0)
            kx_info("sandbox: %d sandbox(es) of broker %s now run here", n, de->d_name);
    }
    if (d != NULL)
        closedir(d);
    int64_t every = b->lease_ms / 4;
    b->fleet_timer = kx_loop_timer(b->svc->loop, every, on_beat, b);
}

kx_err sb_fleet_start(sb_broker *b)
{
    char subj[128];
    snprintf(subj, sizeof subj, "%s>", b->direct_prefix);
    kx_err err =
        kx_bus_subscribe_loop(b->svc->bus, b->svc->loop, subj, NULL, on_direct, b, &b->direct_sub);
    if (err != KX_OK) {
        kx_error("sandbox: cannot subscribe to %s: %s", subj, kx_err_str(err));
        return err;
    }
    b->fleet_timer = kx_loop_timer(b->svc->loop, b->lease_ms / 4, on_beat, b);
    return b->fleet_timer != NULL ? KX_OK : KX_ERR_NOMEM;
}

void sb_fleet_stop(sb_broker *b)
{
    kx_timer_cancel(b->fleet_timer);
    b->fleet_timer = NULL;
    if (b->direct_sub != NULL) {
        natsSubscription_Unsubscribe(b->direct_sub);
        natsSubscription_Destroy(b->direct_sub);
        b->direct_sub = NULL;
    }
    char path[2200];
    lease_path(b, b->id, path, sizeof path);
    (void)unlink(path);
}
