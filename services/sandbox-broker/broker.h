/* broker.h — the sandbox-broker's state: its configuration, its subscriptions, and the list
 * of commands (execs) it is running. One instance per process, owned by main(); touched only
 * on the loop thread (the ops server's readiness check reads nothing from here).
 *
 * Modules:
 *   broker_config.c  KX_SANDBOX_ROOT, KX_SANDBOX_MAX_OUTPUT
 *   sandbox_path.c   workspace layout, folder/session validation (pure)
 *   utf8.c           output repair (pure)
 *   exec.c           one command: spawn, pipes, deadline, exit, reply
 *   handlers.c       kx.sandbox.exec / kx.sandbox.kill requests
 *   drain.c          SIGTERM: stop taking requests, kill, answer, exit */
#ifndef SB_BROKER_H
#define SB_BROKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "kx/svc.h"

#define SB_DEFAULT_MAX_OUTPUT (1024 * 1024)
/* The broker kills a command this long before the caller's Kx-Deadline, so that the
 * timed-out reply (with the output so far) reaches the caller before it stops waiting. */
#define SB_REPLY_MARGIN_MS 200
/* After the main process exits, how long to wait for the pipes' EOF (background
 * grandchildren may keep them open) before replying anyway. */
#define SB_EOF_GRACE_MS 100

typedef struct sb_config {
    char root[2048];          /* KX_SANDBOX_ROOT (absolute) */
    int64_t max_output;       /* KX_SANDBOX_MAX_OUTPUT: bytes kept per stream */
} sb_config;

typedef struct sb_exec sb_exec;

typedef struct sb_broker {
    kx_svc *svc;
    sb_config cfg;
    natsSubscription *exec_sub;
    natsSubscription *kill_sub;
    sb_exec *execs;           /* doubly linked list of tracked execs (exec.c) */
    size_t nexecs;
    bool draining;
    kx_timer *drain_timer;    /* drain.c: gives up waiting for killed children */
} sb_broker;

/* broker_config.c: fills cfg from the environment; KX_ERR_INVALID names the bad variable. */
kx_err sb_config_load(sb_config *cfg);

/* handlers.c: subscribes kx.sandbox.exec (queue "sandbox-broker") and kx.sandbox.kill. */
kx_err sb_handlers_start(sb_broker *b);

/* drain.c: the kx_svc drain callback (arg = the broker). */
void sb_drain(kx_svc *svc, void *arg);
/* drain.c: called by exec.c whenever an exec is freed, so a drain can finish. */
void sb_drain_check(sb_broker *b);

#endif
