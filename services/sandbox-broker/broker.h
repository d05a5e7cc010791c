/* broker.h — the sandbox-broker's state: its configuration, its subscriptions, and the list
 * of commands (execs) it is running. One instance per process, owned by main(); touched only
 * on the loop thread (the ops server's readiness check reads nothing from here).
 *
 * Modules:
 *   broker_config.c  KX_SANDBOX_* settings (isolation, limits, output)
 *   sandbox.c        one jailed sandbox per project: uid, workspace, bwrap + init, RUN/KILL
 *   sbproto.c        the broker <-> sandbox init wire (init/sandbox_init.c is the other end)
 *   capture.c        a command's output: head and tail kept, the rest spilled to /workspace
 *   sandbox_path.c   workspace layout, folder/session validation (pure)
 *   utf8.c           output repair (pure)
 *   exec.c           one command: spawn, pipes, deadline, exit, reply
 *   handlers.c       kx.sandbox.exec / kx.sandbox.kill requests
 *   sessions.c       kx.sandbox.output / terminate / list (check_command_output & co.)
 *   session_wrap.c   a session's cwd and environment kept between its commands (pure)
 *   files.c          kx.sandbox.files: validation on the loop, the I/O on worker threads
 *   files_request.c  kx.sandbox.files request checks (pure)
 *   files_io.c       list / stat / read / write / delete beneath the workspace (openat2)
 *   lifecycle.c      kx.sandbox.create .. ensure_active, the record on disk, auto-archive
 *   preview.c        kx.sandbox.preview and the host-side relay into a sandbox's loopback
 *   fleet.c          several brokers: ids, leases, ownership routing, takeover
 *   account_quota.c  KX_SANDBOX_MAX_PER_ACCOUNT counted over the fleet (marks under root)
 *   drain.c          SIGTERM: stop taking requests, kill, answer, exit
 *   provider.c       KX_SANDBOX_PROVIDER: local (all of the above) or daytona
 *   daytona*.c       the daytona provider: the same subjects over a Daytona API (daytona.h) */
#ifndef SB_BROKER_H
#define SB_BROKER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include "kx/cgroup.h"
#include "kx/jail.h"
#include "kx/svc.h"

#define SB_DEFAULT_MAX_OUTPUT (1024 * 1024)
/* The broker kills a command this long before the caller's Kx-Deadline, so that the
 * timed-out reply (with the output so far) reaches the caller before it stops waiting. */
#define SB_REPLY_MARGIN_MS 200
/* After the main process exits, how long to wait for the pipes' EOF (background
 * grandchildren may keep them open) before replying anyway. */
#define SB_EOF_GRACE_MS 100

typedef struct sb_config {
    char root[2048];         /* KX_SANDBOX_ROOT (absolute) */
    int64_t max_output;      /* KX_SANDBOX_MAX_OUTPUT: bytes kept per stream */
    char bwrap[512];         /* KX_SANDBOX_BWRAP, default /usr/bin/bwrap */
    char init[1024];         /* KX_SANDBOX_INIT, default kx-sandbox-init beside the broker */
    bool unsafe;             /* KX_SANDBOX_UNSAFE=1: run without a jail when bwrap fails */
    kx_jail_net net;         /* KX_SANDBOX_NETWORK none|host */
    uint16_t deny_ports[32]; /* KX_SANDBOX_DENY_PORTS + the NATS port (host network) */
    size_t ndeny_ports;
    int64_t uid_base;           /* KX_SANDBOX_UID_BASE: first host uid given to sandboxes */
    int64_t uid_count;          /* KX_SANDBOX_UID_COUNT */
    kx_jail_limits limits;      /* KX_SANDBOX_MAX_PROCS, _MAX_MEMORY_MB, _MAX_FILE_MB */
    int64_t cpu_s;              /* KX_SANDBOX_CPU_S: CPU seconds per command */
    int64_t disk_bytes;         /* KX_SANDBOX_DISK_MB: /workspace size checked before a command */
    int64_t tmp_bytes;          /* KX_SANDBOX_TMP_MB: the private /tmp */
    int64_t bg_max_s;           /* KX_SANDBOX_BG_MAX_S: deadline of a background command */
    int64_t log_max;            /* KX_SANDBOX_LOG_MAX: bytes kept in a background session log */
    int64_t spill_max;          /* KX_SANDBOX_SPILL_MAX: bytes of full output kept on disk */
    int64_t start_ms;           /* KX_SANDBOX_JAIL_START_TIMEOUT_MS: bwrap + init up */
    int64_t per_account;        /* KX_SANDBOX_MAX_PER_ACCOUNT: running per account, 0 = any */
    int64_t idle_stop_ms;       /* KX_SANDBOX_AUTO_STOP_MIN (or _MS): stop an idle sandbox */
    int64_t idle_archive_ms;    /* KX_SANDBOX_AUTO_ARCHIVE_MIN (or _MS): archive a stopped one */
    int64_t preview_conns;      /* KX_SANDBOX_PREVIEW_CONNS: relay connections at once */
    int64_t preview_bytes;      /* KX_SANDBOX_PREVIEW_MAX_MB: bytes per relay connection */
    int64_t preview_s;          /* KX_SANDBOX_PREVIEW_MAX_S: life of a relay connection */
    char cgroup[1024];          /* KX_SANDBOX_CGROUP: auto | off | a delegated cgroup v2 path */
    kx_cgroup_limits cg_limits; /* KX_SANDBOX_CGROUP_MEMORY_MB, _CGROUP_PIDS, _CPU_PERCENT */
} sb_config;

typedef struct sb_exec sb_exec;
typedef struct sb_sandbox sb_sandbox;
typedef struct sb_files sb_files;

typedef struct sb_broker {
    kx_svc *svc;
    sb_config cfg;
    natsSubscription *exec_sub;
    natsSubscription *kill_sub;
    natsSubscription *session_subs[3];   /* sessions.c: output, terminate, list */
    natsSubscription *files_sub;         /* files.c: kx.sandbox.files */
    natsSubscription *lifecycle_subs[7]; /* lifecycle.c: create .. ensure_active */
    natsSubscription *preview_sub;       /* preview.c: kx.sandbox.preview */
    struct sb_preview *preview;          /* preview.c: the relay */
    sb_files *files;                     /* files.c: the file workers */
    sb_exec *execs;                      /* doubly linked list of tracked execs (exec.c) */
    sb_sandbox *sandboxes;               /* running sandboxes (sandbox.c) */
    bool jailed;                         /* false only in unsafe mode */
    bool cgroup_on;                      /* cgroup v2 limits applied (cgroup below) */
    kx_cgroup_root cgroup;               /* the delegated root, when cgroup_on */
    atomic_bool serving; /* subscribed to kx.sandbox.*: /readyz says ready only then */
    size_t max_reply;    /* largest reply the bus carries (its max_payload) */
    size_t nexecs;
    bool draining;
    kx_timer *idle_timer;  /* sandbox.c: the auto-stop sweep */
    kx_timer *drain_timer; /* drain.c: gives up waiting for killed children */
    /* fleet.c: several brokers over one root */
    char id[64];                  /* KX_SANDBOX_BROKER_ID (default the instance id) */
    char direct_prefix[96];       /* "kx.sandbox.<id>." */
    int64_t lease_ms;             /* KX_SANDBOX_LEASE_MS */
    natsSubscription *direct_sub; /* kx.sandbox.<id>.> */
    kx_timer *fleet_timer;        /* the beat: lease + takeover */
    struct sb_daytona *daytona;   /* daytona.c: the daytona provider, when it is the one */
} sb_broker;

/* broker_config.c: fills cfg from the environment; KX_ERR_INVALID names the bad variable. */
kx_err sb_config_load(sb_config *cfg);
/* broker_config.c: why a start past KX_SANDBOX_MAX_PER_ACCOUNT is refused, in the same words
 * for both providers: the account has n sandboxes running; an unused one stops after idle_s
 * seconds (0: it does not stop by itself). */
void sb_account_full(char *why, size_t whylen, const char *account, int64_t n, int64_t idle_s);

/* broker_config.c: checks that bwrap works (or unsafe mode), sets b->jailed and the health
 * notes. KX_ERR_UNAVAILABLE (logged) when the broker must not start. */
kx_err sb_isolation_check(sb_broker *b);

/* handlers.c: subscribes kx.sandbox.exec (queue "sandbox-broker") and kx.sandbox.kill. */
kx_err sb_handlers_start(sb_broker *b);

/* sessions.c: subscribes kx.sandbox.output, kx.sandbox.terminate, kx.sandbox.list. */
kx_err sb_sessions_start(sb_broker *b);

/* files.c: starts the file workers and subscribes kx.sandbox.files (queue "sandbox-broker"). */
kx_err sb_files_start(sb_broker *b);
/* files.c: at the drain's start (loop thread): the workers answer writes themselves from now
 * on (the loop, which otherwise counts a write's size change before answering, may end). */
void sb_files_drain(sb_broker *b);
/* files.c: after the loop ended: answers what still waits, joins the workers. */
void sb_files_stop(sb_broker *b);

/* sandbox.c: starts the auto-stop sweep (a sandbox with no command running for
 * cfg.idle_stop_ms is stopped; its files stay). */
kx_err sb_sandbox_sweep_start(sb_broker *b);

/* preview.c: the preview relay (127.0.0.1:KX_SANDBOX_PREVIEW_PORT, default any free port) and
 * kx.sandbox.preview. */
kx_err sb_preview_start(sb_broker *b);

/* handlers.c: the readiness check (kx_svc_on_ready): true once subscribed. */
bool sb_ready(kx_svc *svc, void *arg, char *why, size_t whylen);

/* drain.c: the kx_svc drain callback (arg = the broker). */
void sb_drain(kx_svc *svc, void *arg);
/* drain.c: called by exec.c whenever an exec is freed, so a drain can finish. */
void sb_drain_check(sb_broker *b);

#endif
