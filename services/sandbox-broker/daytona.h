/* daytona.h — the daytona provider (KX_SANDBOX_PROVIDER=daytona): the broker answers the same
 * kx.sandbox.* subjects as with the local provider (docs/subjects.md), but each project's
 * sandbox is a sandbox of a Daytona-compatible API (DAYTONA_SERVER_URL, DAYTONA_API_KEY,
 * DAYTONA_TARGET), reached over HTTP (daytona_http.c) without ever blocking the loop.
 *
 *   daytona.c        settings, the project -> sandbox id map (label "id"), ops: resolve,
 *                    start, lifecycle (create .. ensure_active), preview links; drain
 *   daytona_requests.c  the bus endpoints: one prologue for every request subject
 *                    (sb_dt_serve: gate, unpack, the endpoint's check), then an op (what is
 *                    not implemented is answered as such, naming the provider)
 *   daytona_ops.c    kx.sandbox.exec (blocking) and kx.sandbox.files over the toolbox API
 *   daytona_sessions.c  background commands in Daytona process sessions, kx.sandbox.output,
 *                    terminate, list
 *   daytona_http.c   one REST call: bearer key, deadline, breaker, error mapping
 *
 * One request is one sb_dt_op: it resolves the project's sandbox (the map, else GET /sandbox
 * with its label), makes sure it is started when the op needs it (POST start, then GET until
 * "started"), then does its own call(s) and answers. Every call has its own deadline (the
 * KX_DAYTONA_*_MS setting of its kind) and none outlives the caller's Kx-Deadline.
 *
 * Ownership: the provider (sb_daytona) is owned by the broker (b->daytona) and lives until the
 * process ends; an op owns its request message until it answers. Loop thread only. */
#ifndef SB_DAYTONA_H
#define SB_DAYTONA_H

#include <stdbool.h>
#include <stdint.h>

#include "broker.h"
#include "daytona_http.h"
#include "files_request.h"
#include "kx/buf.h"
#include "kx/pb.h"
#include "kx/time.h"
#include "kx/uuid.h"

typedef struct sb_dt_config {
    char url[512];       /* DAYTONA_SERVER_URL (or DAYTONA_API_URL), no trailing slash */
    char key[1024];      /* DAYTONA_API_KEY: never logged */
    char target[64];     /* DAYTONA_TARGET ("" = the organisation's default region) */
    char snapshot[256];  /* KX_DAYTONA_SNAPSHOT */
    char env[2048];      /* KX_DAYTONA_ENV: "K=V,K=V" given to every new sandbox */
    int64_t cpu;         /* KX_DAYTONA_CPU */
    int64_t memory_gb;   /* KX_DAYTONA_MEMORY_GB */
    int64_t disk_gb;     /* KX_DAYTONA_DISK_GB */
    int64_t stop_min;    /* KX_SANDBOX_AUTO_STOP_MIN: Daytona's autoStopInterval */
    int64_t archive_min; /* KX_SANDBOX_AUTO_ARCHIVE_MIN: Daytona's autoArchiveInterval */
    int64_t get_ms;      /* KX_DAYTONA_GET_MS: get, list, stop, archive, delete calls */
    int64_t start_ms;    /* KX_DAYTONA_START_MS: a start, until the sandbox says started */
    int64_t create_ms;   /* KX_DAYTONA_CREATE_MS: a creation, until it says started */
    int64_t preview_ms;  /* KX_DAYTONA_PREVIEW_MS */
    int64_t files_ms;    /* KX_DAYTONA_FILES_MS: one toolbox files call */
    int64_t poll_ms;     /* KX_DAYTONA_POLL_MS: between GETs while starting */
    int64_t breaker;     /* KX_DAYTONA_BREAKER_FAILURES */
    int64_t max_output;  /* KX_SANDBOX_MAX_OUTPUT: bytes of a command's output kept */
    int64_t per_account; /* KX_SANDBOX_MAX_PER_ACCOUNT: sandboxes running per account (0: any) */
} sb_dt_config;

enum sb_dt_kind {
    DT_CREATE,
    DT_GET,
    DT_START,
    DT_STOP,
    DT_ARCHIVE,
    DT_DELETE,
    DT_ENSURE,
    DT_EXEC,
    DT_FILES,
    DT_PREVIEW,
    DT_OUTPUT,    /* kx.sandbox.output */
    DT_TERMINATE, /* kx.sandbox.terminate */
    DT_LIST,      /* kx.sandbox.list */
};

typedef struct sb_daytona sb_daytona;
typedef struct sb_dt_op sb_dt_op;

struct sb_dt_op {
    sb_daytona *d;
    enum sb_dt_kind kind;
    natsMsg *msg;
    char project[KX_UUID_LEN + 1];
    char trace_id[33];
    char account[40];     /* the request's Kx-Account ("" when none) */
    kx_deadline deadline; /* the caller's, less the reply margin */
    char sid[128];        /* the Daytona sandbox id ("" until known) */
    char state[32];       /* ours: running | stopped | archived | deleted | Daytona's own */
    int64_t created_ms;
    int64_t phase_end; /* the current start/create phase's end (unix ms) */
    bool started_once; /* ensure: a start was asked for already */
    bool polling;      /* the call under way is a poll GET of the start/create phase */
    bool admitted;     /* the account's running sandboxes were counted (admit, daytona.c) */
    sb_dt_call *call;
    kx_timer *timer;
    Kx__V1__SandboxExecRequest *exec;   /* DT_EXEC */
    char folder[SB_FOLDER_MAX + 1];     /* DT_EXEC */
    int64_t t0_ms;                      /* DT_EXEC */
    Kx__V1__SandboxFilesRequest *files; /* DT_FILES */
    sb_files_req fr;                    /* DT_FILES */
    int port;                           /* DT_PREVIEW */
    char session[SB_SESSION_MAX + 1];   /* DT_EXEC (background), DT_OUTPUT, DT_TERMINATE */
    int64_t offset;                     /* DT_OUTPUT */
    int64_t max_bytes;                  /* DT_OUTPUT */
    bool kill;                          /* DT_OUTPUT */
    json_t *cmds;                       /* DT_OUTPUT, DT_TERMINATE: the session's commands */
    size_t cmd_i;                       /* DT_OUTPUT: the next command whose log is read */
    kx_buf logs;                        /* DT_OUTPUT: the logs read so far, in order */
    sb_dt_op *prev, *next;
};

/* daytona.c: reads the settings, starts the client and subscribes kx.sandbox.*; instead of
 * the local provider's start (main.c). KX_ERR_INVALID (logged) for a missing or bad setting. */
kx_err sb_daytona_start(sb_broker *b);
/* daytona.c: the kx_svc drain callback of the daytona provider. */
void sb_daytona_drain(kx_svc *svc, void *arg);

/* daytona.c, for daytona_ops.c: the settings, the client, the broker. */
const sb_dt_config *sb_dt_cfg(const sb_daytona *d);
sb_dt_client *sb_dt_http(sb_daytona *d);
sb_broker *sb_dt_broker(sb_daytona *d);
/* Milliseconds a call of kind may take: min(its setting, what is left of the op's deadline). */
int64_t sb_dt_budget(const sb_dt_op *op, int64_t setting_ms);
/* An ISO 8601 time as Daytona writes them ("2025-06-01T10:00:00.123Z") in unix ms; 0 if not one. */
int64_t sb_dt_iso_ms(const char *s);
/* Ends op (unlinks, frees what it holds; its message must have been answered and freed). */
void sb_dt_op_end(sb_dt_op *op);

/* daytona.c, for daytona_requests.c and daytona_sessions.c: the request gate (its headers into
 * *meta; draining, no Kx-Deadline: the reason to refuse, *err set, or NULL), a new op for the
 * request's account (NULL: out of memory, msg and req destroyed), the op's
 * resolution (then sb_dt_sessions_run or a creation, as its kind needs) and its answer with an
 * error whatever its kind. */
const char *sb_dt_gate(sb_daytona *d, natsMsg *msg, kx_bus_meta *meta, char trace_id[33],
                       kx_err *err);
sb_dt_op *sb_dt_start_op(sb_daytona *d, enum sb_dt_kind kind, natsMsg *msg, const char *project,
                         kx_deadline deadline, const char *trace_id, const char *account,
                         void *req);
void sb_dt_resolve(sb_dt_op *op);
void sb_dt_fail(sb_dt_op *op, kx_err err, const char *why);

/* daytona_sessions.c: a background command in the op's session (the sandbox is started). */
void sb_dt_bg_exec_run(sb_dt_op *op);
/* daytona_sessions.c: output / terminate / list once op->sid is known ("" = no sandbox). */
void sb_dt_sessions_run(sb_dt_op *op);
void sb_dt_sessions_fail(sb_dt_op *op, kx_err err, const char *why);
/* daytona_requests.c: subscribes the lifecycle subjects, exec, files, preview and kill. */
kx_err sb_dt_requests_start(sb_daytona *d);

/* What a request's check found, for its op (daytona_requests.c's one prologue). */
typedef struct sb_dt_checked {
    const char *project;              /* the request's project_id (borrowed from it) */
    char folder[SB_FOLDER_MAX + 1];   /* DT_EXEC: normalized */
    char session[SB_SESSION_MAX + 1]; /* DT_EXEC (valid or a new default), output, terminate */
    sb_files_req fr;                  /* DT_FILES (its strings point into fr itself) */
} sb_dt_checked;

/* One request subject of the daytona provider: every one is served by the same prologue (the
 * gate, the unpack, its check, then an op resolved, or refused with the reason). */
typedef struct sb_dt_endpoint {
    enum sb_dt_kind kind;
    const char *subject;                    /* queue group "sandbox-broker" */
    const ProtobufCMessageDescriptor *desc; /* the request's message */
    /* rq (unpacked, never NULL): KX_OK with c filled, or an error and a sentence in why. */
    kx_err (*check)(const void *rq, sb_dt_checked *c, char *why, size_t whylen);
    /* The op made for rq; c is NULL when the request is refused. Copies what the op needs and
     * returns true when the op keeps rq (freed when it ends), false when rq can be freed.
     * NULL: nothing to keep. */
    bool (*keep)(sb_dt_op *op, void *rq, const sb_dt_checked *c);
} sb_dt_endpoint;

/* daytona_requests.c: subscribes ep->subject with the common prologue. ep must outlive the
 * subscription (a static table); at most one endpoint per kind. */
kx_err sb_dt_serve(sb_daytona *d, const sb_dt_endpoint *ep);
/* daytona_sessions.c: subscribes kx.sandbox.output, terminate, list. */
kx_err sb_dt_sessions_start(sb_daytona *d);
/* daytona.c: a subscription kept for the drain. */
kx_err sb_dt_subscribe(sb_daytona *d, const char *subject, const char *queue, kx_bus_msg_cb cb,
                       void *arg);

/* daytona_ops.c: the op's sandbox is started (op->sid): run the command / the file op, answer,
 * end the op. */
void sb_dt_exec_run(sb_dt_op *op);
void sb_dt_files_run(sb_dt_op *op);
/* daytona_ops.c: answer op's request with an error (any kind but the lifecycle ones, which
 * daytona.c answers) and end the op. */
void sb_dt_exec_fail(sb_dt_op *op, kx_err err, const char *why);
void sb_dt_files_fail(sb_dt_op *op, kx_err err, const char *why);

#endif
