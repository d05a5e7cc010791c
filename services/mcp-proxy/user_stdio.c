/* user_stdio.c — agents' (users') stdio MCP servers, each in a jail (see user_stdio.h): the
 * jail's settings and probe at start, and the launch — three pipes, kx_jail_spawn with them as
 * the jail's 0/1/2, and the child handed to the stdio transport. Never a bare spawn. */
#include "user_stdio.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kx/config.h"
#include "kx/log.h"
#include "kx/time.h"
#include "stdio_adapter.h"

#define JAIL_PATH "PATH=/usr/local/bin:/usr/bin:/bin"
#define JAIL_HOME "HOME=/tmp"

/* KX_MCP_JAIL_RO_BINDS: "src[:dest],..." — absolute paths, dest defaults to src. */
static kx_err parse_binds(mcp_jail_config *jc, const char *text)
{
    if ((jc->bind_text = strdup(text)) == NULL)
        return KX_ERR_NOMEM;
    for (char *save = NULL, *tok = strtok_r(jc->bind_text, ",", &save); tok != NULL;
         tok = strtok_r(NULL, ",", &save)) {
        char *colon = strchr(tok, ':');
        const char *dest = tok;
        if (colon != NULL) {
            *colon = '\0';
            dest = colon + 1;
        }
        static const char *const forbidden[] = {"/", "/usr", "/etc", "/proc", "/dev", "/tmp"};
        bool bad = tok[0] != '/' || dest[0] != '/' || strstr(tok, "/..") != NULL ||
            strstr(dest, "/..") != NULL || jc->nbinds >= MCP_JAIL_MAX_BINDS;
        for (size_t i = 0; !bad && i < sizeof forbidden / sizeof forbidden[0]; i++) {
            size_t n = strlen(forbidden[i]);
            bad = strcmp(dest, forbidden[i]) == 0 ||
                (n > 1 && strncmp(dest, forbidden[i], n) == 0 && dest[n] == '/');
        }
        if (bad) {
            kx_error("config: KX_MCP_JAIL_RO_BINDS=\"%s\" is not valid: expected up to %d "
                     "comma-separated absolute paths src[:dest] without \"..\", dest not /, "
                     "/usr, /etc, /proc, /dev, /tmp or below them (\"%s\" is wrong)",
                     text, MCP_JAIL_MAX_BINDS, tok);
            return KX_ERR_INVALID;
        }
        jc->binds[jc->nbinds].src = tok;
        jc->binds[jc->nbinds].dest = dest;
        jc->nbinds++;
    }
    return KX_OK;
}

kx_err mcp_jail_config_load(mcp_jail_config *jc)
{
    memset(jc, 0, sizeof *jc);
    jc->deny_ruleset_fd = -1;
    char why[400];
    if (kx_jail_net_from_env(&jc->net, jc->deny_ports,
                             sizeof jc->deny_ports / sizeof jc->deny_ports[0], &jc->ndeny_ports,
                             why, sizeof why) != KX_OK) {
        kx_error("config: %s", why);
        return KX_ERR_INVALID;
    }
    snprintf(jc->bwrap, sizeof jc->bwrap, "%s", kx_env_str("KX_SANDBOX_BWRAP", "/usr/bin/bwrap"));
    int64_t mem_mb = 4096, file_mb = 1024, tmp_mb = 512;
    if (kx_env_int("KX_MCP_JAIL_UID_BASE", 300000, 1000, 2000000000, &jc->uid_base) != KX_OK ||
        kx_env_int("KX_MCP_JAIL_UID_COUNT", 65536, 1, 1000000, &jc->uid_count) != KX_OK ||
        kx_env_int("KX_MCP_JAIL_MAX_PROCS", 256, 8, 100000, &jc->limits.nproc) != KX_OK ||
        kx_env_int("KX_MCP_JAIL_MAX_MEMORY_MB", 4096, 256, 1024 * 1024, &mem_mb) != KX_OK ||
        kx_env_int("KX_MCP_JAIL_MAX_FILE_MB", 1024, 1, 1024 * 1024, &file_mb) != KX_OK ||
        kx_env_int("KX_MCP_JAIL_TMP_MB", 512, 16, 65536, &tmp_mb) != KX_OK ||
        parse_binds(jc, kx_env_str("KX_MCP_JAIL_RO_BINDS", "")) != KX_OK)
        return KX_ERR_INVALID;
    jc->limits.as_bytes = mem_mb * 1024 * 1024;
    jc->limits.fsize_bytes = file_mb * 1024 * 1024;
    jc->limits.nofile = 4096;
    jc->tmp_bytes = tmp_mb * 1024 * 1024;

    uid_t probe_uid = geteuid() == 0 ? (uid_t)jc->uid_base : geteuid();
    if (kx_jail_probe(jc->bwrap, probe_uid, probe_uid, 5000, jc->why, sizeof jc->why) != KX_OK) {
        kx_warn("mcp-proxy: %s: %s; stdio servers from agents' configs will be refused "
                "(operator servers and HTTP servers are not affected)",
                MCP_USER_STDIO_REFUSAL, jc->why);
        return KX_OK;
    }
    if (jc->net == KX_JAIL_NET_HOST) {
        int64_t t0 = kx_mono_ms();
        kx_err err =
            kx_jail_tcp_deny_ruleset(jc->deny_ports, jc->ndeny_ports, &jc->deny_ruleset_fd);
        if (err != KX_OK) {
            snprintf(jc->why, sizeof jc->why,
                     "KX_SANDBOX_NETWORK=host needs Landlock network rules (Linux >= 6.7) to keep "
                     "the suite's ports out of reach, and %s",
                     err == KX_ERR_UNAVAILABLE ? "this kernel has none"
                                               : "building the rule set failed");
            kx_warn("mcp-proxy: %s: %s", MCP_USER_STDIO_REFUSAL, jc->why);
            return KX_OK;
        }
        kx_debug("mcp-proxy: the jail's port rules took %lld ms to build",
                 (long long)(kx_mono_ms() - t0));
    }
    jc->ok = true;
    kx_info("mcp-proxy: agents' stdio servers run jailed: bubblewrap namespaces, network %s, "
            "uids %s, %zu read-only bind(s)",
            jc->net == KX_JAIL_NET_NONE ? "none (loopback only)" : "host (suite ports denied)",
            geteuid() == 0 ? "one per account and server config"
                           : "the proxy's own (not root: cannot drop)",
            jc->nbinds);
    return KX_OK;
}

void mcp_jail_config_free(mcp_jail_config *jc)
{
    if (jc->deny_ruleset_fd >= 0)
        close(jc->deny_ruleset_fd);
    jc->deny_ruleset_fd = -1;
    free(jc->bind_text);
    jc->bind_text = NULL;
    jc->nbinds = 0;
}

/* PATH, HOME, then the config's env (bwrap applies them in order: the config's win). */
static const char **jail_env(const mcp_server_config *cfg)
{
    size_t n = 0;
    while (cfg->env != NULL && cfg->env[n] != NULL)
        n++;
    const char **env = calloc(n + 3, sizeof *env);
    if (env == NULL)
        return NULL;
    env[0] = JAIL_PATH;
    env[1] = JAIL_HOME;
    for (size_t i = 0; i < n; i++)
        env[2 + i] = cfg->env[i];
    return env;
}

static void close_pair(int p[2])
{
    for (int i = 0; i < 2; i++)
        if (p[i] >= 0)
            close(p[i]);
}

uid_t mcp_user_stdio_uid(const mcp_jail_config *jc, const char *account, const char *hash)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a 64 of account "\n" hash */
    for (const char *p = account != NULL ? account : ""; *p != '\0'; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    h = (h ^ (unsigned char)'\n') * 1099511628211ULL;
    for (const char *p = hash; *p != '\0'; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    return (uid_t)(jc->uid_base + (int64_t)(h % (uint64_t)jc->uid_count));
}

kx_err mcp_user_stdio_open(kx_loop *loop, const mcp_jail_config *jc, const char *account,
                           const mcp_server_config *cfg, const mcp_transport_cbs *cbs, void *arg,
                           mcp_transport **out, char *why, size_t whylen)
{
    *out = NULL;
    if (jc == NULL || !jc->ok) {
        snprintf(why, whylen, "%s: %s (server '%s' was not started)", MCP_USER_STDIO_REFUSAL,
                 jc != NULL ? jc->why : "no jail configured", cfg->name);
        return KX_ERR_UNAVAILABLE;
    }
    int in[2] = {-1, -1}, outp[2] = {-1, -1}, err[2] = {-1, -1};
    const char **env = jail_env(cfg);
    if (env == NULL || pipe2(in, O_CLOEXEC) != 0 || pipe2(outp, O_CLOEXEC) != 0 ||
        pipe2(err, O_CLOEXEC) != 0 || fcntl(in[1], F_SETFL, O_NONBLOCK) != 0 ||
        fcntl(outp[0], F_SETFL, O_NONBLOCK) != 0 || fcntl(err[0], F_SETFL, O_NONBLOCK) != 0) {
        snprintf(why, whylen, "cannot start MCP server '%s': %s", cfg->name,
                 env == NULL ? "out of memory" : strerror(errno));
        free(env);
        close_pair(in);
        close_pair(outp);
        close_pair(err);
        return KX_ERR_INTERNAL;
    }
    /* A host uid per account and server config: one user's server cannot signal, ptrace or
     * exhaust the process limit of another's. */
    uid_t uid = mcp_user_stdio_uid(jc, account, cfg->hash);
    kx_jail_opts o = {
        .bwrap = jc->bwrap,
        .uid = uid,
        .gid = uid,
        .bind_fd = -1,
        .ro_binds = jc->binds,
        .nro_binds = jc->nbinds,
        .net = jc->net,
        .deny_ruleset_fd = jc->net == KX_JAIL_NET_HOST ? jc->deny_ruleset_fd : -1,
        .limits = jc->limits,
        .tmp_bytes = jc->tmp_bytes,
        .argv = (const char *const *)cfg->argv,
        .envp = env,
        .stdin_fd = in[0],
        .stdout_fd = outp[1],
        .stderr_fd = err[1],
    };
    kx_proc proc = {.pid = -1, .pidfd = -1, .in_fd = in[1], .out_fd = outp[0], .err_fd = err[0]};
    kx_err e = kx_jail_spawn(&o, &proc.pid, &proc.pidfd);
    int spawn_errno = errno;
    free(env);
    close(in[0]);
    close(outp[1]);
    close(err[1]);
    if (e != KX_OK) {
        snprintf(why, whylen, "cannot start MCP server '%s' (%s) in its sandbox: %s", cfg->name,
                 cfg->argv[0],
                 e == KX_ERR_INVALID ? "invalid jail options" : strerror(spawn_errno));
        close(in[1]);
        close(outp[0]);
        close(err[0]);
        return e;
    }
    e = mcp_stdio_open_proc(loop, cfg->name, &proc, cbs, arg, out);
    if (e != KX_OK)
        snprintf(why, whylen, "cannot start MCP server '%s': %s", cfg->name, kx_err_str(e));
    return e;
}
