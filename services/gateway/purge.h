/* purge.h — the messages of deleted threads, removed after the delete a batch at a time
 * (migration 023).
 *
 * Deleting a thread or a project marks its threads deleted and queues them in message_purges,
 * in the request's transaction (gw_thread_forget, gw_project_forget): the answer does not wait
 * for the messages, and a thread of a million rows can be deleted at all (its one DELETE ran
 * past the statement timeout and rolled back, every time). The purger, a thread of its own,
 * takes the oldest queued thread FOR UPDATE SKIP LOCKED (replicas share the queue; on
 * migration 025's index: the queue's head, not a sort of the whole queue per take), deletes
 * its messages GW_PURGE_BATCH at a time, each batch its own statement within the statement
 * timeout, and removes the entry in the same transaction once none is left. It runs when a
 * delete wakes it (gw_purger_kick) and every KX_PURGE_INTERVAL_MS anyway (what another replica
 * or a stopped gateway left); after a run that failed, again after 1 s, doubling per failure
 * in a row up to the interval (purge.c). A deleted thread's messages are unreadable from the delete on:
 * every reader goes through the thread.
 *
 * Threads: gw_purger_kick from any thread; the purge on the purger's own thread, with a
 * connection of the pool. Ownership: main.c (gw_purger_start after the pool, gw_purger_stop
 * before it is closed). */
#ifndef GW_PURGE_H
#define GW_PURGE_H

#include <stdint.h>

#include "gateway.h"
#include "kx/db.h"

#define GW_PURGE_BATCH 5000 /* messages per DELETE */

/* The statements (store.c's table). */
#define GW_PURGE_STATEMENTS                                                                      \
    {"gw_purge_next",                                                                            \
     "SELECT thread_id::text FROM message_purges ORDER BY created_at LIMIT 1 "                   \
     "FOR UPDATE SKIP LOCKED"},                                                                  \
        {"gw_purge_batch",                                                                       \
         "WITH d AS (DELETE FROM messages WHERE message_id IN (SELECT message_id FROM messages " \
         "WHERE thread_id = $1::uuid LIMIT $2::int) RETURNING 1) SELECT count(*) FROM d"},       \
    {                                                                                            \
        "gw_purge_done", "DELETE FROM message_purges WHERE thread_id = $1::uuid"                 \
    }

typedef struct gw_purger gw_purger;

/* Purges queued threads until the queue is empty or deadline_ms (kx_mono_ms) passes; each
 * thread's batches and the removal of its entry are one transaction (committed when the time
 * runs out too: the next run goes on). The number of messages deleted, or -1 when the
 * database failed (logged). For the purger and the tests. */
int64_t gw_purge_run(kx_db *db, int64_t deadline_ms);

/* Starts the purger thread (KX_PURGE_INTERVAL_MS from app->cfg). NULL when it cannot. */
gw_purger *gw_purger_start(gw_app *app);
/* Wakes it now (a delete queued something). NULL: no-op. */
void gw_purger_kick(gw_purger *p);
/* Stops it (an unfinished thread stays queued) and frees it. NULL: no-op. */
void gw_purger_stop(gw_purger *p);

#endif
