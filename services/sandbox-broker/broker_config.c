/* broker_config.c — the sandbox-broker's own settings (docs/operations.md) and the isolation
 * check at start.
 *   KX_SANDBOX_ROOT        where project workspaces live; default $KX_DATA_DIR/sandboxes when
 *                          KX_DATA_DIR is set, else /tmp/kx-sandboxes. Must be absolute.
 *   KX_SANDBOX_MAX_OUTPUT  bytes of stdout and of stderr kept per command (default 1 MiB; the
 *                          bus's max_payload lowers it further, see capture.c).
 *   KX_SANDBOX_BWRAP, KX_SANDBOX_INIT, KX_SANDBOX_UNSAFE, KX_SANDBOX_NETWORK,
 *   KX_SANDBOX_DENY_PORTS, KX_SANDBOX_UID_BASE/_COUNT, KX_SANDBOX_MAX_PROCS,
 *   KX_SANDBOX_MAX_MEMORY_MB, KX_SANDBOX_MAX_FILE_MB, KX_SANDBOX_CPU_S, KX_SANDBOX_DISK_MB,
 *   KX_SANDBOX_TMP_MB, KX_SANDBOX_BG_MAX_S, KX_SANDBOX_LOG_MAX, KX_SANDBOX_SPILL_MAX,
 *   KX_SANDBOX_JAIL_START_TIMEOUT_MS, KX_SANDBOX_MAX_PER_ACCOUNT,
 *   KX_SANDBOX_AUTO_STOP_MIN (_MS for tests),
 *   KX_SANDBOX_AUTO_ARCHIVE_MIN (_MS for tests), KX_SANDBOX_PREVIEW_CONNS/_MAX_MB/_MAX_S,
 *   KX_SANDBOX_CGROUP (auto|off|path), KX_SANDBOX_CGROUP_MEMORY_MB, KX_SANDBOX_CGROUP_PIDS,
 *   KX_SANDBOX_CPU_PERCENT — see services/sandbox-broker/README.md.
 *   (KX_SANDBOX_BROKER_ID and KX_SANDBOX_LEASE_MS are read by fleet.c.) */
#include "broker.h"

#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sandbox_path.h"

#include "kx/config.h"
#include "kx/log.h"

void sb_account_full(char *why, size_t whylen, const char *account, int64_t n, int64_t idle_s)
{
    char wait[96] = "";
    if (idle_s > 0)
        snprintf(wait, sizeof wait, ", or wait until one stops after %lld s without use",
                 (long long)idle_s);
    snprintf(why, whylen,
             "account %s already has %lld sandboxes running, its limit "
             "(KX_SANDBOX_MAX_PER_ACCOUNT): stop one of them%s",
             account, (long long)n, wait);
}

static kx_err env_mb(const char *name, int64_t def, int64_t min, int64_t max, int64_t *out)
{
    int64_t v;
    kx_err err = kx_env_int(name, def, min, max, &v);
    *out = v * 1024 * 1024;
    return err;
}

static kx_err read_root(sb_config *cfg)
{
    const char *root = kx_env_str("KX_SANDBOX_ROOT", NULL);
    const char *data = kx_env_str("KX_DATA_DIR", NULL);
    int n;
    if (root != NULL)
        n = snprintf(cfg->root, sizeof cfg->root, "%s", root);
    else if (data != NULL)
        n = snprintf(cfg->root, sizeof cfg->root, "%s/sandboxes", data);
    else
        n = snprintf(cfg->root, sizeof cfg->root, "/tmp/kx-sandboxes");
    if (n < 0 || (size_t)n >= sizeof cfg->root) {
        kx_error("config: KX_SANDBOX_ROOT (or KX_DATA_DIR) is too long: at most %zu bytes",
                 sizeof cfg->root - 32);
        return KX_ERR_INVALID;
    }
    if (cfg->root[0] != '/') {
        kx_error("config: KX_SANDBOX_ROOT=\"%s\" is not valid: expected an absolute path",
                 cfg->root);
        return KX_ERR_INVALID;
    }
    /* No trailing slashes, so paths built from it have single separators. */
    for (size_t len = strlen(cfg->root); len > 1 && cfg->root[len - 1] == '/'; len--)
        cfg->root[len - 1] = '\0';
    return KX_OK;
}

/* KX_SANDBOX_NETWORK, KX_SANDBOX_DENY_PORTS and the NATS port: the suite's jail network. */
static kx_err read_network(sb_config *cfg)
{
    char why[400];
    kx_err err = kx_jail_net_from_env(&cfg->net, cfg->deny_ports,
                                      sizeof cfg->deny_ports / sizeof cfg->deny_ports[0],
                                      &cfg->ndeny_ports, why, sizeof why);
    if (err != KX_OK)
        kx_error("config: %s", why);
    return err;
}

static kx_err read_paths(sb_config *cfg)
{
    snprintf(cfg->bwrap, sizeof cfg->bwrap, "%s",
             kx_env_str("KX_SANDBOX_BWRAP", "/usr/bin/bwrap"));
    const char *init = kx_env_str("KX_SANDBOX_INIT", NULL);
    if (init != NULL) {
        snprintf(cfg->init, sizeof cfg->init, "%s", init);
        return KX_OK;
    }
    char self[1024];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) {
        kx_error("config: cannot find the broker's own binary; set KX_SANDBOX_INIT");
        return KX_ERR_INVALID;
    }
    self[n] = '\0';
    snprintf(cfg->init, sizeof cfg->init, "%s/kx-sandbox-init", dirname(self));
    return KX_OK;
}

kx_err sb_config_load(sb_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    if (read_root(cfg) != KX_OK || read_paths(cfg) != KX_OK || read_network(cfg) != KX_OK)
        return KX_ERR_INVALID;
    int64_t mb;
    kx_err err = KX_OK;
#define INT(name, def, lo, hi, dst) \
    if (err == KX_OK)               \
    err = kx_env_int(name, def, lo, hi, dst)
#define MB(name, def, lo, hi, dst) \
    if (err == KX_OK)              \
    err = env_mb(name, def, lo, hi, dst)
    INT("KX_SANDBOX_MAX_OUTPUT", SB_DEFAULT_MAX_OUTPUT, 1024, (int64_t)256 * 1024 * 1024,
        &cfg->max_output);
    err = err == KX_OK ? kx_env_bool("KX_SANDBOX_UNSAFE", false, &cfg->unsafe) : err;
    INT("KX_SANDBOX_UID_BASE", 200000, 1000, 2000000000, &cfg->uid_base);
    INT("KX_SANDBOX_UID_COUNT", 65536, 1, 1000000, &cfg->uid_count);
    INT("KX_SANDBOX_MAX_PROCS", 256, 8, 100000, &cfg->limits.nproc);
    MB("KX_SANDBOX_MAX_MEMORY_MB", 4096, 64, 1024 * 1024, &cfg->limits.as_bytes);
    MB("KX_SANDBOX_MAX_FILE_MB", 1024, 1, 1024 * 1024, &cfg->limits.fsize_bytes);
    INT("KX_SANDBOX_CPU_S", 600, 1, 86400, &cfg->cpu_s);
    MB("KX_SANDBOX_DISK_MB", 5120, 1, 1024 * 1024 * 16, &cfg->disk_bytes);
    MB("KX_SANDBOX_TMP_MB", 256, 1, 65536, &cfg->tmp_bytes);
    INT("KX_SANDBOX_BG_MAX_S", 3600, 1, 7 * 86400, &cfg->bg_max_s);
    INT("KX_SANDBOX_LOG_MAX", 16 * 1024 * 1024, 4096, (int64_t)1024 * 1024 * 1024, &cfg->log_max);
    INT("KX_SANDBOX_SPILL_MAX", 64 * 1024 * 1024, 0, (int64_t)16 * 1024 * 1024 * 1024,
        &cfg->spill_max);
    INT("KX_SANDBOX_JAIL_START_TIMEOUT_MS", 10000, 100, 600000, &cfg->start_ms);
    INT("KX_SANDBOX_MAX_PER_ACCOUNT", 20, 0, 1000000, &cfg->per_account);
    if (getenv("KX_SANDBOX_START_TIMEOUT_MS") != NULL &&
        getenv("KX_SANDBOX_JAIL_START_TIMEOUT_MS") == NULL)
        kx_warn("config: KX_SANDBOX_START_TIMEOUT_MS is no longer read; a jail's start limit "
                "is KX_SANDBOX_JAIL_START_TIMEOUT_MS (%lld ms)",
                (long long)cfg->start_ms);
    int64_t stop_min = 15;
    INT("KX_SANDBOX_AUTO_STOP_MIN", 15, 1, 7 * 24 * 60, &stop_min);
    INT("KX_SANDBOX_AUTO_STOP_MS", stop_min * 60 * 1000, 100, (int64_t)7 * 24 * 3600 * 1000,
        &cfg->idle_stop_ms);
    int64_t archive_min = 120;
    INT("KX_SANDBOX_AUTO_ARCHIVE_MIN", 120, 1, 365 * 24 * 60, &archive_min);
    INT("KX_SANDBOX_AUTO_ARCHIVE_MS", archive_min * 60 * 1000, 100,
        (int64_t)365 * 24 * 3600 * 1000, &cfg->idle_archive_ms);
    INT("KX_SANDBOX_PREVIEW_CONNS", 64, 1, 4096, &cfg->preview_conns);
    MB("KX_SANDBOX_PREVIEW_MAX_MB", 64, 1, 65536, &cfg->preview_bytes);
    INT("KX_SANDBOX_PREVIEW_MAX_S", 300, 1, 86400, &cfg->preview_s);
    MB("KX_SANDBOX_CGROUP_MEMORY_MB", 4096, 16, 1024 * 1024, &cfg->cg_limits.memory_bytes);
    INT("KX_SANDBOX_CGROUP_PIDS", 512, 8, 1000000, &cfg->cg_limits.pids);
    INT("KX_SANDBOX_CPU_PERCENT", 100, 1, 100000, &cfg->cg_limits.cpu_percent);
#undef INT
#undef MB
    (void)mb;
    const char *cg = kx_env_str("KX_SANDBOX_CGROUP", "auto");
    if (err == KX_OK && strcmp(cg, "auto") != 0 && strcmp(cg, "off") != 0 &&
        (cg[0] != '/' || strlen(cg) >= sizeof cfg->cgroup)) {
        kx_error("config: KX_SANDBOX_CGROUP=\"%s\" is not valid: expected auto, off or an "
                 "absolute path of a delegated cgroup v2 directory",
                 cg);
        return KX_ERR_INVALID;
    }
    snprintf(cfg->cgroup, sizeof cfg->cgroup, "%s", cg);
    cfg->limits.nofile = 4096;
    if (cfg->uid_base <= 0 || (uid_t)cfg->uid_base == getuid()) {
        kx_error("config: KX_SANDBOX_UID_BASE=%lld is the broker's own uid",
                 (long long)cfg->uid_base);
        return KX_ERR_INVALID;
    }
    return err;
}

/* bwrap resolves a workspace's path as the sandbox's uid: the root (created 0711 if missing)
 * and every ancestor must be searchable by others. Names the first one that is not. */
static kx_err check_root_searchable(const char *root, char *why, size_t whylen)
{
    if (sb_mkdir_p(root, 0711) != KX_OK) {
        snprintf(why, whylen, "cannot create KX_SANDBOX_ROOT %.500s: %s", root, strerror(errno));
        return KX_ERR_INVALID;
    }
    char path[2048];
    snprintf(path, sizeof path, "%s", root);
    for (;;) {
        struct stat st;
        if (stat(path, &st) != 0) {
            snprintf(why, whylen, "cannot stat %.500s: %s", path, strerror(errno));
            return KX_ERR_INVALID;
        }
        if (!(st.st_mode & S_IXOTH)) {
            snprintf(why, whylen,
                     "%.500s is not searchable by other users (mode %03o): "
                     "sandboxes run as their own uid and must reach their workspace under "
                     "KX_SANDBOX_ROOT; chmod o+x %.500s (it stays unlistable), or choose "
                     "another root",
                     path, (unsigned)(st.st_mode & 0777), path);
            return KX_ERR_INVALID;
        }
        char *slash = strrchr(path, '/');
        if (slash == NULL || slash == path)
            return KX_OK;
        *slash = '\0';
    }
}

kx_err sb_isolation_check(sb_broker *b)
{
    sb_config *cfg = &b->cfg;
    char cg[1400];
    if (strcmp(cfg->cgroup, "off") == 0) {
        snprintf(cg, sizeof cg,
                 "cgroup v2 off (KX_SANDBOX_CGROUP=off): sandbox limits from "
                 "rlimits only");
    } else {
        kx_err cerr = kx_cgroup_root_prepare(cfg->cgroup, "", &b->cgroup, cg, sizeof cg);
        if (cerr == KX_OK)
            b->cgroup_on = true;
        else if (strcmp(cfg->cgroup, "auto") == 0) {
            size_t used = strlen(cg);
            snprintf(cg + used, sizeof cg - used, "; sandbox limits from rlimits only");
        } else { /* asked for by path: must work */
            kx_error("sandbox: refusing to start: KX_SANDBOX_CGROUP=%s: %s", cfg->cgroup, cg);
            return KX_ERR_UNAVAILABLE;
        }
    }
    if (access(cfg->init, X_OK) != 0) {
        kx_error("sandbox: the sandbox init %s is not an executable: build kx-sandbox-init or "
                 "set KX_SANDBOX_INIT",
                 cfg->init);
        return KX_ERR_UNAVAILABLE;
    }
    uid_t probe_uid = geteuid() == 0 ? (uid_t)cfg->uid_base : geteuid();
    char why[1200];
    kx_err err = kx_jail_probe(cfg->bwrap, probe_uid, probe_uid, 5000, why, sizeof why);
    if (err == KX_OK && geteuid() == 0 &&
        (err = check_root_searchable(cfg->root, why, sizeof why)) != KX_OK) {
        kx_error("sandbox: refusing to start: %s", why);
        return KX_ERR_UNAVAILABLE;
    }
    char notes[3000];
    if (err == KX_OK) {
        b->jailed = true;
        snprintf(notes, sizeof notes,
                 "sandboxes: bubblewrap namespaces, network %s, uids %s; "
                 "%s",
                 cfg->net == KX_JAIL_NET_NONE ? "none (loopback only)"
                                              : "host "
                                                "(suite ports denied)",
                 geteuid() == 0 ? "one per sandbox" : "the broker's own (not root: cannot drop)",
                 cg);
        kx_info("sandbox: isolation ok: %s", notes);
    } else if (cfg->unsafe) {
        b->jailed = false;
        snprintf(notes, sizeof notes,
                 "UNSAFE: KX_SANDBOX_UNSAFE=1 and bubblewrap does not "
                 "work (%s): commands run WITHOUT namespaces; %s",
                 why, cg);
        kx_warn("sandbox: %s", notes);
    } else {
        kx_error("sandbox: refusing to start: %s (set KX_SANDBOX_UNSAFE=1 to run commands "
                 "without isolation, never for untrusted users)",
                 why);
        return KX_ERR_UNAVAILABLE;
    }
    kx_svc_set_notes(b->svc, notes);
    return KX_OK;
}
