/* lifecycle.h — a project's sandbox as a record with a state (docs/subjects.md, kx.sandbox.*):
 * created lazily, running, stopped, archived, deleted.
 *
 * The record lives beside the workspace, on the broker's disk (it holds no database URL):
 *   <root>/<project>/sandbox.state   "<id> <state> <uid> <created ms> <updated ms> <owner>\n",
 *                                    0600, written as a temporary file renamed over the old one
 *                                    (owner: the broker running it, fleet.h; absent in records
 *                                    written before several brokers, read as none)
 *   <root>/<project>/sandbox.lock    flock'd around every read-check-write of the record, so
 *                                    brokers sharing the root never overwrite each other
 * so a broker restart keeps every sandbox's id and files (its processes end with the broker).
 * Every change is published on kx.sandbox.state (SandboxInfo) for the gateway to record on
 * projects.sandbox; updated_unix_ms only grows on one broker, so the recorder can drop what
 * is older than what it has.
 *
 * Ops (kx.sandbox.create|get|start|stop|archive|delete|ensure_active, queue group
 * "sandbox-broker") run on the loop thread; a start is bounded by the request's deadline and
 * KX_SANDBOX_JAIL_START_TIMEOUT_MS. The sweep (sandbox.c's auto-stop timer) calls
 * sb_lifecycle_sweep to archive what has been stopped for KX_SANDBOX_AUTO_ARCHIVE_MIN.
 *
 * Ownership: sb_state values are the caller's; nothing here is kept in memory. */
#ifndef SB_LIFECYCLE_H
#define SB_LIFECYCLE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "broker.h"
#include "kx/uuid.h"

typedef struct sb_state {
    char id[KX_UUID_LEN + 1];
    char state[16]; /* running | stopped | archived */
    uid_t uid;
    int64_t created_ms; /* unix ms */
    int64_t updated_ms;
    char owner[64]; /* the broker running it ("" when none); meaningful while running */
} sb_state;

/* The project's record; KX_ERR_NOT_FOUND when it has none (never created, or deleted). */
kx_err sb_state_load(const sb_config *cfg, const char *project_id, sb_state *out);

/* sandbox.c, after a sandbox started: records it running (a new id when it had no record:
 * this is its creation) and publishes the change. KX_ERR_INTERNAL (why) when the record could
 * not be written: the caller then ends the sandbox (nothing half-made). */
kx_err sb_lifecycle_on_up(sb_broker *b, const char *project_id, uid_t uid, char *why,
                          size_t whylen);
/* sandbox.c, when a sandbox's jail ended for any reason: a record that says running now says
 * stopped (published). */
void sb_lifecycle_on_down(sb_broker *b, const char *project_id);

/* Before a start: takes the record for this broker under its lock (state running, owner this
 * broker; a new record with a new id when there is none). KX_ERR_UNAVAILABLE (why names the
 * broker) while another live broker runs it. prev and had say what was there, for
 * sb_lifecycle_unclaim when the start fails (it puts prev back, or removes the new record). */
kx_err sb_lifecycle_claim(sb_broker *b, const char *project_id, sb_state *prev, bool *had,
                          char *why, size_t whylen);
void sb_lifecycle_unclaim(sb_broker *b, const char *project_id, const sb_state *prev, bool had);

/* True when st says running on another broker whose lease is alive. */
bool sb_lifecycle_elsewhere(sb_broker *b, const sb_state *st);

/* Subscribes the seven lifecycle subjects. */
kx_err sb_lifecycle_start(sb_broker *b);

/* The sweep: archives every sandbox stopped for cfg.idle_archive_ms or more. */
void sb_lifecycle_sweep(sb_broker *b);

#endif
