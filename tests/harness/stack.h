/* tests/harness/stack.h — the whole stack for integration tests, on top of harness.h:
 * nats-server, PostgreSQL, the demo model and the six services, each on a free port, in one
 * temp dir, with short timings; plus what tests do with it: mint JWTs, call the HTTP API, read
 * an SSE stream to its end, and run SQL for assertions.
 *
 * A typical test starts one stack in its group setup, runs its cases against it (each with its
 * own account, so cases never see each other's data), and stops it in main after the group:
 *     int failed = cmocka_run_group_tests(tests, setup, NULL);
 *     if (kx_th_stack_stop(&stack, failed != 0) != 0) failed++;
 * On failure kx_th_stack_stop prints the tail of every log and keeps the temp dir.
 *
 * Ownership: kx_th_stack is caller-owned (zero it first); kx_th_stack_stop frees what
 * kx_th_stack_start allocated. Strings returned as char * are malloc'd and the caller's.
 * Not thread-safe, except kx_th_sse_read / kx_th_sse_start, which any thread may run. */
#ifndef KX_TEST_STACK_H
#define KX_TEST_STACK_H

#include <jansson.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "harness.h"
#include "kx/err.h"
#include "kx/http.h"

/* ---- the stack ---------------------------------------------------------------------------- */

typedef struct kx_th_stack_opts {
    /* Extra "K=V" for every process (they override the defaults below); NULL-terminated, may
     * be NULL. Copied by kx_th_stack_start. */
    const char *const *env;
    /* How long to wait for the stack to be healthy; 0 = 60 s. */
    int64_t start_timeout_ms;
    /* Another build of the services (a benchmark's baseline: another tree's build dir, whose
     * services/<name>/<name> and tests/fakes/demo-model/kx-demo-model are run) and the source
     * tree its services take deploy/migrations from (KX_MIGRATIONS_DIR). NULL: this build's
     * (KX_BUILD_DIR, KX_SOURCE_DIR). */
    const char *build_dir, *source_dir;
} kx_th_stack_opts;

/* One process of the stack: the demo model or a service. */
typedef struct kx_th_proc {
    const char *name; /* static: "demo-model", "gateway", "scheduler", ... */
    char path[512];   /* the binary */
    pid_t pid;        /* 0 when not running */
    uint16_t port;    /* KX_HEALTH_PORT of a service, KX_MODEL_PORT of the demo model */
    char log[512];    /* stdout+stderr, appended */
    int exit_status;  /* after it was stopped: exit code or 128 + signal; -1 before */
} kx_th_proc;

#define KX_TH_STACK_NPROCS 7 /* the demo model, then the six services in start order */

typedef struct kx_th_stack {
    char *dir; /* the temp dir (malloc'd) */
    kx_th_nats nats;
    kx_th_pg pg;
    uint16_t http_port; /* the gateway's API port */
    uint16_t model_port;
    char base_url[64]; /* "http://127.0.0.1:<http_port>" */
    char secret[65];   /* KX_JWT_SECRET: 64 hex digits */
    char sandbox_root[512];
    char **env; /* "K=V" every process gets (malloc'd, NULL-terminated) */
    kx_th_proc procs[KX_TH_STACK_NPROCS];
} kx_th_stack;

/* Defaults every process gets: KX_NATS_URL, KX_DATABASE_URL, KX_HTTP_PORT, KX_JWT_SECRET,
 * KX_MODEL_PORT, KX_MODEL_URL, KX_SANDBOX_ROOT and KX_DATA_DIR (in the temp dir),
 * KX_MIGRATIONS_DIR, KX_BIND_ADDR=127.0.0.1, KX_LOG_LEVEL=debug, KX_HEARTBEAT_MS=200,
 * KX_LEASE_TTL_MS=2000, KX_REAPER_INTERVAL_MS=200, KX_SWEEP_INTERVAL_MS=500,
 * KX_DRAIN_TIMEOUT_MS=3000, and empty OPENAI_API_KEY / ANTHROPIC_API_KEY (so the demo model is
 * used whatever the caller's environment says), KX_PROJECT_NAMING=0 (no naming request after
 * a project's first run; it_runloop turns it on); each service also its own KX_HEALTH_PORT.
 * Starts everything, then waits for each /healthz and for GET /api/health to answer 200.
 * On failure prints why and the logs' tails, stops what it started, and returns the error. */
kx_err kx_th_stack_start(const kx_th_stack_opts *opts, kx_th_stack *s);

/* Stops the services (SIGTERM to all at once, then waits; SIGKILL after 5 s), the demo model,
 * nats-server and PostgreSQL. failed: print the tail of every log and keep the temp dir.
 * Returns how many services or the demo model did not exit with status 0 (each is named on
 * stderr): a service must drain and exit cleanly on SIGTERM; plus how many processes still have
 * a file open in the stack's temp dir once it stopped (a service or helper the suite started
 * and never stopped: each is named on stderr). */
int kx_th_stack_stop(kx_th_stack *s, bool failed);

/* Prints the last `lines` lines of every log of the stack to stderr, with their paths. */
void kx_th_stack_dump_logs(const kx_th_stack *s, int lines);

/* The process with this name, or NULL. */
kx_th_proc *kx_th_stack_proc(kx_th_stack *s, const char *name);

/* Stops one process (SIGTERM, SIGKILL after 5 s) and returns its exit status. */
int kx_th_stack_proc_stop(kx_th_stack *s, kx_th_proc *p);
/* Starts a stopped process again with the same environment and waits until it is healthy
 * (its /healthz, or its port for the demo model) within timeout_ms. */
kx_err kx_th_stack_proc_start(kx_th_stack *s, kx_th_proc *p, int64_t timeout_ms);

/* ---- JWT ---------------------------------------------------------------------------------- */

/* An HS256 token for account (the sub), valid for ttl_s seconds from now, signed with secret
 * (kx_jwt_sign). malloc'd; NULL on OOM. */
char *kx_th_jwt(const char *secret, const char *account, int64_t ttl_s);
/* The same, signed with the stack's secret and valid for an hour. */
char *kx_th_stack_token(const kx_th_stack *s, const char *account);

/* ---- HTTP --------------------------------------------------------------------------------- */

/* method path (e.g. "/api/agent-run/<id>") on the gateway. token: a JWT sent as
 * "Authorization: Bearer <token>", or NULL; content_type: NULL for none. 10 s deadline.
 * Any HTTP status is KX_OK; free out with kx_http_resp_free. */
kx_err kx_th_http(const kx_th_stack *s, const char *method, const char *path, const char *token,
                  const char *content_type, const char *body, size_t body_len, kx_http_resp *out);

/* kx_th_http with a JSON body (or none) whose answer is parsed: returns the JSON (caller
 * json_decref's) or NULL when the body is not JSON; *status gets the HTTP status (0 when the
 * request itself failed). */
json_t *kx_th_json(const kx_th_stack *s, const char *method, const char *path, const char *token,
                   const char *json_body, long *status);

/* Form bodies from pairs {"name", "value", ..., NULL}.
 * multipart/form-data: *content_type gets "multipart/form-data; boundary=..." (malloc'd);
 * application/x-www-form-urlencoded: percent-encoded. *len gets the body length. */
char *kx_th_form_multipart(const char *const *pairs, char **content_type, size_t *len);
char *kx_th_form_urlencoded(const char *const *pairs, size_t *len);

/* ---- SSE ---------------------------------------------------------------------------------- */

/* What was read from one SSE stream. */
typedef struct kx_th_sse {
    long status;        /* HTTP status (0: no answer) */
    char *content_type; /* of the answer, or NULL */
    size_t n;           /* events */
    char **data;        /* each event's data (the text after "data: "), in order */
    int64_t *at_ms;     /* when each event arrived (kx_mono_ms) */
    bool terminal;      /* the last event is a terminal status (completed/failed/stopped/error) */
    bool timed_out;     /* timeout_ms passed before the stream ended */
    char *body;         /* a non-200 answer's body, or NULL */
} kx_th_sse;

/* GETs path with "Authorization: Bearer <token>" (token may be NULL) and collects every event's
 * data until the terminal status event, the end of the stream, or timeout_ms. KX_OK when an
 * answer came (whatever its status); free out with kx_th_sse_free. */
kx_err kx_th_sse_read(const kx_th_stack *s, const char *path, const char *token,
                      int64_t timeout_ms, kx_th_sse *out);
void kx_th_sse_free(kx_th_sse *e);

/* kx_th_sse_read on a thread of its own, for tests that act while a stream is open. */
typedef struct kx_th_sse_reader {
    pthread_t thread;
    const kx_th_stack *stack;
    char *path, *token;
    int64_t timeout_ms;
    kx_err err;
    kx_th_sse result;
} kx_th_sse_reader;
/* malloc'd reader, already reading; NULL on failure. */
kx_th_sse_reader *kx_th_sse_start(const kx_th_stack *s, const char *path, const char *token,
                                  int64_t timeout_ms);
/* Waits for the reader, moves its result into *out (free with kx_th_sse_free), frees it. */
kx_err kx_th_sse_join(kx_th_sse_reader *r, kx_th_sse *out);

/* True when payload is a terminal run status {"type": "status", "status": completed|failed|
 * stopped|error, ...} (not a DB-row shaped status message). */
bool kx_th_sse_is_terminal(const char *payload);

/* ---- SQL ---------------------------------------------------------------------------------- */

/* Runs sql with text parameters $1..$n on the stack's database (a new connection each time).
 * Returns the result (PQclear it) or NULL when the connection or the statement failed (the
 * error is printed). */
PGresult *kx_th_sql(const kx_th_stack *s, const char *sql, int nparams, const char *const *params);
/* The first column of the first row as a malloc'd string; NULL when there is no row, the value
 * is NULL, or the statement failed. */
char *kx_th_sql_value(const kx_th_stack *s, const char *sql, int nparams,
                      const char *const *params);

#endif
