/* download.h — a sandbox file streamed to its client one bus message at a time
 * (GET /api/sandboxes/{id}/files/content, routes_sandbox.c).
 *
 * The route does the file's first READ itself (so that a missing file, a bad path or a file
 * over KX_SANDBOX_DOWNLOAD_MAX_MB is an ordinary error reply); a file that is not whole in that
 * first answer is answered here: 200 with a libmicrohttpd callback response, its Content-Length
 * the size the broker gave (chunked when it gave none). The content reader, on libmicrohttpd's
 * thread, hands out the chunk it holds and never waits: the next READ runs on the downloads'
 * own worker pool, one chunk ahead; when the reader has nothing to give it suspends the
 * connection and the READ's job resumes it. So a download holds at most two bus messages
 * (counted in held.h, KX_HTTP_HELD_*), whatever the file's size, and a client that stops
 * reading holds no thread: libmicrohttpd closes it after KX_HTTP_TIMEOUT_S without progress.
 *
 * Downloads in flight per account (the reader's; anonymous readers of public files share the
 * account ""): at most KX_SANDBOX_DOWNLOADS_PER_ACCOUNT, counted from before the first READ
 * (gw_downloads_enter, in the route) until the download ends; past it a download is a 429 at
 * once, without a READ. A READ holds a thread for up to KX_SANDBOX_GET_TIMEOUT_MS when the
 * sandbox hangs — the first one a handler worker (KX_HTTP_WORKERS, shared by every route), the
 * later ones a download worker (GW_DOWNLOAD_WORKERS, shared by every download) — so without the
 * bound a few slow downloads of one account held every worker, and every other account's
 * requests waited behind them for the READ deadline.
 *
 * A READ that fails mid-stream (the broker's error, its deadline KX_SANDBOX_GET_TIMEOUT_MS, the
 * file gone or shorter than announced, the limit passed without a Content-Length) ends the
 * response with an error: libmicrohttpd closes the connection before the announced length (or
 * without the last chunk), so the client sees a failed transfer, never a short 200; it is
 * logged with the path and the reason. A file that grew is sent up to the announced size.
 *
 * Threads: gw_download_response on a handler worker; the reader and the free callback on
 * libmicrohttpd's threads; the READs on the pool's threads. Each download has a mutex and a
 * reference count (libmicrohttpd's, and a READ job's while one is queued or running): the
 * free callback may come while a READ is in flight, and the last one out frees it.
 * Ownership: gw_app owns the gw_downloads (main.c): gw_downloads_stop before the HTTP server
 * is stopped (no connection stays suspended by a download), gw_downloads_free after it. */
#ifndef GW_DOWNLOAD_H
#define GW_DOWNLOAD_H

#include <stdbool.h>
#include <stdint.h>

#include "gateway.h"
#include "kx/pb.h"

#define GW_DOWNLOAD_WORKERS 8 /* READs in flight at once, all downloads */

typedef struct gw_downloads gw_downloads;
struct MHD_Response;

/* GW_DOWNLOAD_WORKERS threads for the READs, room in their queue for one READ per connection
 * (KX_HTTP_MAX_CONNS). NULL when out of memory. */
gw_downloads *gw_downloads_new(gw_app *app);
/* No READ is started after this; the queued ones end their downloads with an error and the
 * running ones are waited for. NULL: no-op. */
void gw_downloads_stop(gw_downloads *d);
/* After libmicrohttpd freed every response (stops first if gw_downloads_stop was not called).
 * NULL: no-op. */
void gw_downloads_free(gw_downloads *d);

/* Counts a download of account (NULL: "") in flight: false, counting nothing, when the
 * account has KX_SANDBOX_DOWNLOADS_PER_ACCOUNT already (the caller answers gw_downloads_refuse).
 * Given back by gw_downloads_leave, or by the download gw_download_response makes of it. */
bool gw_downloads_enter(gw_downloads *d, const char *account);
void gw_downloads_leave(gw_downloads *d, const char *account);
/* The 429 for a download gw_downloads_enter refused. */
void gw_downloads_refuse(const gw_downloads *d, gw_reply *reply);

/* Where the next READs go. */
typedef struct gw_download_src {
    struct MHD_Connection *conn; /* the request's (suspended and resumed by the download) */
    const char *account;         /* the reader, whose held bytes it counts ("" anonymous) */
    const char *owner;           /* the sandbox's owner: the READs' account (a start they
                                  * cause counts for it, KX_SANDBOX_MAX_PER_ACCOUNT) */
    const char *project;         /* the sandbox's project */
    const char *path;            /* the file, as the client named it */
    int64_t timeout_ms;          /* each READ's deadline (KX_SANDBOX_GET_TIMEOUT_MS) */
    int64_t max_bytes; /* KX_SANDBOX_DOWNLOAD_MAX_MB: the bound without a Content-Length */
} gw_download_src;

/* The response that streams the file whose first READ answered first (not eof, no error;
 * taken: the download frees it). Its bytes, and one chunk ahead, are counted for src->account
 * now: NULL with the reply set when that is refused (503, gw_held_refuse) or out of memory.
 * The download takes over src->account's gw_downloads_enter: given back when it ends, or at
 * once when this returns NULL. */
struct MHD_Response *gw_download_response(gw_app *app, const gw_download_src *src,
                                          Kx__V1__SandboxFilesReply *first, gw_reply *reply);

#endif
