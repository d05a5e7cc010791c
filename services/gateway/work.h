/* work.h — the pool of worker threads that run the route handlers, so that libmicrohttpd's
 * threads never wait on a dependency.
 *
 * server.c suspends a request's connection, queues its handler here and answers the moment the
 * worker resumes the connection; a request that waited longer than KX_HTTP_QUEUE_WAIT_MS for a
 * worker is answered 503 without running (its handler would start too late to be useful), and
 * one that finds the queue full (KX_HTTP_QUEUE_MAX) is answered 503 at once. A slow Postgres or
 * NATS thus takes workers, not the HTTP threads: requests that need no dependency (preflights,
 * 401s, 404s, the ops routes) keep answering, and the others fail with 503 instead of piling up.
 *
 * Threads: gw_work_submit from any thread; jobs run on the pool's threads.
 * Ownership: created and freed by server.c (gw_server_start / gw_server_free). */
#ifndef GW_WORK_H
#define GW_WORK_H

#include <stdbool.h>

typedef struct gw_work gw_work;
/* A job; stopping is true when the pool is being freed (the job must still finish, quickly). */
typedef void (*gw_work_fn)(void *arg, bool stopping);

gw_work *gw_work_new(int threads, int queue_max);
/* Queues fn(arg). False when the queue is full or the pool is stopping (fn is not called). */
bool gw_work_submit(gw_work *w, gw_work_fn fn, void *arg);
/* Runs what is queued with stopping = true, waits for the running jobs, joins. NULL: no-op. */
void gw_work_free(gw_work *w);

#endif
