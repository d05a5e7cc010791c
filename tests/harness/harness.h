/* tests/harness/harness.h — starts real dependencies for tests: nats-server and PostgreSQL on
 * free ports in a temp dir, the demo model, the six services; stops only what it started, by PID.
 *
 * Ownership: every struct is caller-owned; *_stop frees what *_start allocated and removes the
 * temp dir unless KX_TEST_KEEP=1. */
#ifndef KX_TEST_HARNESS_H
#define KX_TEST_HARNESS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include "kx/bus.h"
#include "kx/err.h"

/* A new temp dir /tmp/<prefix>-XXXXXX, mode 0755 (so the postgres user can enter it). malloc'd. */
char *kx_th_tmpdir(const char *prefix);
void kx_th_rmrf(const char *dir);
/* A TCP port free on 127.0.0.1 right now. */
uint16_t kx_th_free_port(void);

/* Spawns argv with the current environment plus env_extra ("K=V", NULL-terminated, may be NULL),
 * stdout+stderr appended to log_path, in its own process group, with SIGTERM as its
 * parent-death signal: it gets SIGTERM when the calling thread exits (or the test is killed),
 * so spawn from a thread that lives as long as the process should (the main thread). */
kx_err kx_th_spawn(const char *const *argv, const char *const *env_extra, const char *log_path,
                   pid_t *pid);
/* SIGTERM the process group, wait up to 5 s, then SIGKILL; reaps. Returns the exit status. */
int kx_th_kill(pid_t pid);
/* How many processes of process group pgid are alive (not zombies), read from /proc: for
 * tests that check a group was killed whole (procstat.c). */
int kx_th_group_live(pid_t pgid);
/* SIGSTOPs pid and waits (up to 5 s) until every thread of it is stopped, read from
 * /proc/<pid>/task. kill() returns before a multi-threaded process (nats-server) has stopped:
 * one of its threads must first run to take the stop to the others, and meanwhile another may
 * still read a socket and answer. True once all are stopped. */
bool kx_th_freeze(pid_t pid);
/* How many live (not zombie) processes on the host have an argument exactly equal to arg
 * (e.g. "sleep 31.4159" -> "31.4159"): for processes in a sandbox, whose PIDs the test cannot
 * know. If uid_out is not NULL it gets the host uid of the last one found. */
int kx_th_procs_with_arg(const char *arg, uid_t *uid_out);
/* A decimal integer that is all of text but for surrounding white space (a command's output
 * such as "3\n", a SQL count): true and *out set, or false for anything else (empty, other
 * bytes, out of range of long). */
bool kx_th_parse_long(const char *text, long *out);
/* The same, counting only descendants of ancestor (e.g. one broker's sandboxes, while other
 * suites on the machine run theirs). */
int kx_th_procs_with_arg_under(const char *arg, pid_t ancestor, uid_t *uid_out);
/* How many processes other than this one have a descriptor open on a path under dir (e.g. a
 * service still writing its log into a suite's temp dir): for suites that check they left
 * nothing running. Each one found is printed with its pid and command. */
int kx_th_procs_using(const char *dir);
/* Something accepts TCP connections on 127.0.0.1:port now. */
bool kx_th_port_accepts(uint16_t port);
/* Polls kx_th_port_accepts every 50 ms until it is true or timeout_ms passes. */
bool kx_th_wait_port(uint16_t port, int64_t timeout_ms);
/* Polls GET url until it answers 200 or timeout_ms passes. */
kx_err kx_th_wait_http(const char *url, int64_t timeout_ms);
/* The value of the first series of metric `name` on the service whose health port is port
 * (GET /metrics), or -1 when it is not there (not counted yet) or the service did not answer. */
long long kx_th_metric(uint16_t port, const char *name);

/* Starts one of the fakes in tests/fakes/ that run on node and answer GET /_log when ready:
 * `node script <port> [arg]` on a free port (*port_out), its log in <dir>/<log_name>, and waits
 * up to 20 s for it. The pid (stop it with kx_th_kill), or 0 when it did not start or get ready
 * (it is killed then). arg may be NULL. */
pid_t kx_th_node_fake(const char *dir, const char *script, const char *arg, const char *log_name,
                      uint16_t *port_out);

/* Starts the service `name` alone (build/services/<name>/<name>) against nats_url, with a free
 * KX_HEALTH_PORT, KX_LOG_LEVEL=debug and env_extra (at most 20 "K=V", NULL-terminated, may be
 * NULL), its log in <tmpdir>/<name>.log, and waits up to 10 s
 * for its /readyz. The pid (stop it with kx_th_kill), or 0 when it did not start or get ready
 * (it is killed then). *port_out, if not NULL, gets its health port. For tests that need a few
 * services without the whole stack (stack.h). */
pid_t kx_th_service_start(const char *tmpdir, const char *nats_url, const char *name,
                          const char *const *env_extra, uint16_t *port_out);

typedef struct kx_th_nats {
    pid_t pid;
    uint16_t port;
    char url[64];
    char dir[256];
} kx_th_nats;
#define KX_TH_NATS_ENV_MAX 8
#define KX_TH_NATS_ENV_LEN 160
/* The variables of deploy/nats/nats.env (`NAME=value` lines, # comments) as "NAME=value"
 * strings in out[]: the environment every nats-server the harness starts gets, as up.sh's and
 * docker-compose.yml's do. Returns how many, or -1 (logged) when the file cannot be read, has
 * a line of another form or more than max. */
int kx_th_nats_deploy_env(char out[][KX_TH_NATS_ENV_LEN], int max);
/* JetStream on; the environment of deploy/nats/nats.env (kx_th_nats_deploy_env). */
kx_err kx_th_nats_start(const char *tmpdir, kx_th_nats *out);
void kx_th_nats_stop(kx_th_nats *n);
/* Creates the stream KX_RUN_SUBMIT as versions before issue 12 had it (a file work queue on
 * kx.run.submit; kx.run.submit is core now): for the tests of its retirement and the bench
 * that compares both. An existing one is fine. */
kx_err kx_th_old_submit_stream(kx_bus *bus);

typedef struct kx_th_pg {
    uint16_t port;
    char dir[256];
    char url[256]; /* postgresql://postgres@127.0.0.1:<port>/kortix */
    pid_t pid;     /* the postmaster, our child; 0 while it is down */
    bool durable;  /* set before kx_th_pg_up/restart: fsync, synchronous_commit and
                      full_page_writes at their defaults (on) instead of off, plus the
                      settings of deploy/postgres/kortix.conf (bench_run's production-setting
                      phase: it measures the server as deployed) */
} kx_th_pg;
#define KX_TH_PG_SETTINGS_MAX 16
#define KX_TH_PG_SETTING_LEN 160
/* The settings of deploy/postgres/kortix.conf (`name = value` lines, # comments) as
 * "name=value" strings in out[]: what the durable server is started with. Returns how many,
 * or -1 (logged) when the file cannot be read, has a line of another form or more than max. */
int kx_th_pg_deploy_settings(char out[][KX_TH_PG_SETTING_LEN], int max);
/* initdb (as the postgres user when root), the server started, CREATE DATABASE kortix.
 * The server is the calling thread's child (`postgres`, not daemonized) with SIGQUIT as its
 * parent-death signal: when that thread exits, or the test process is killed (ctest's
 * timeout), the server shuts down at once. So start it from a thread that lives as long as
 * the server (the main thread, in every test). */
kx_err kx_th_pg_start(const char *tmpdir, kx_th_pg *out);
/* pg_ctl stop -m fast, the postmaster reaped, the data removed. */
void kx_th_pg_stop(kx_th_pg *p);

/* Added by the harness owner: for tests of reconnection. kx_th_pg_down stops the server
 * (pg_ctl -m fast stop) but keeps its data; kx_th_pg_up starts it again on the same port (as
 * kx_th_pg_start does: a child of the calling thread); kx_th_pg_restart does both. */
kx_err kx_th_pg_down(kx_th_pg *p);
kx_err kx_th_pg_up(kx_th_pg *p);
kx_err kx_th_pg_restart(kx_th_pg *p);

#endif
