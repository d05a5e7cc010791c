/* download.c — sandbox files streamed to their clients (see download.h for the design).
 *
 * One download: the chunk being sent (cur, from off), at most one chunk read ahead (next) and
 * at most one READ job queued or running (reading). The reader (libmicrohttpd's thread) moves
 * next to cur when cur is used up and starts the READ after it; when it has nothing to give it
 * suspends the connection (suspended) and returns 0, and the job resumes it when its chunk (or
 * its failure) is stored. Suspend and resume both happen under the download's mutex, so a
 * resume never comes before its suspend; a connection libmicrohttpd is done with (mhd_done)
 * is never resumed. Lock order: a download's mutex, then the registry's.
 *
 * In flight (download.h): the route counts the download for its reader's account before its
 * first READ (gw_downloads_enter); the download gives it back in dl_free, with its held bytes.
 *
 * Held bytes (held.h): a download counts twice its first chunk from its start to its end: the
 * chunk being sent and the one read ahead (the broker's chunks are all of one size, its
 * largest reply; a larger one takes the difference, and a refusal then fails the download). */
#include "download.h"

#include <microhttpd.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "held.h"
#include "kx/bus.h"
#include "kx/log.h"
#include "kx/metrics.h"
#include "kx/uuid.h"
#include "reply.h"
#include "tally.h"
#include "work.h"

#define BLOCK_SIZE ((size_t)64 * 1024) /* libmicrohttpd's buffer per call of the reader */

struct gw_downloads {
    pthread_mutex_t mu;
    gw_work *work;             /* the READs; NULL once stopped */
    kx_counter *cut_total;     /* downloads ended with an error (dl_fail) */
    kx_counter *refused_total; /* downloads refused by the per-account bound */
    int per_account;           /* KX_SANDBOX_DOWNLOADS_PER_ACCOUNT */
    gw_tally accounts;         /* each account's downloads in flight; under mu */
};

typedef struct dl {
    gw_downloads *reg;
    gw_held *held;
    kx_bus *bus;
    struct MHD_Connection *conn;
    char account[KX_UUID_LEN + 1]; /* the reader's (held bytes) */
    char owner[KX_UUID_LEN + 1];   /* the sandbox's (the READs') */
    char project[KX_UUID_LEN + 1];
    char *path;
    int64_t timeout_ms, max_bytes;
    int64_t size; /* the Content-Length; -1: unknown (chunked) */

    pthread_mutex_t mu;             /* everything below */
    int refs;                       /* libmicrohttpd's (on_free) + a READ job's */
    Kx__V1__SandboxFilesReply *cur; /* being sent: cur->data.data[off .. cur_len) */
    size_t off, cur_len;
    Kx__V1__SandboxFilesReply *next; /* read ahead: next->data.data[0 .. next_len) */
    size_t next_len;
    int64_t read_at; /* where the next READ starts */
    int64_t sent;    /* bytes handed to libmicrohttpd */
    size_t claim;    /* bytes counted in held.h for this download */
    bool reading;    /* a READ job is queued or running */
    bool last;       /* no READ after the chunks held: the file's end (or the announced size) */
    bool suspended;  /* the reader suspended the connection until a READ's job resumes it */
    bool failed;     /* end with an error once what is held is sent (logged already) */
    bool mhd_done;   /* libmicrohttpd freed the response: never touch conn again */
} dl;

/* ---- lifetime ----------------------------------------------------------------------------- */

static void dl_free(dl *d)
{
    gw_downloads_leave(d->reg, d->account);
    gw_held_give(d->held, d->account, d->claim);
    kx_pb_free(d->cur);
    kx_pb_free(d->next);
    pthread_mutex_destroy(&d->mu);
    free(d->path);
    free(d);
}

static void dl_release(dl *d)
{
    pthread_mutex_lock(&d->mu);
    int refs = --d->refs;
    pthread_mutex_unlock(&d->mu);
    if (refs == 0)
        dl_free(d);
}

/* libmicrohttpd is done with the response: sent, the client gone, or the server stopping. A
 * READ in flight keeps the download until its job ends. */
static void on_free(void *cls)
{
    dl *d = cls;
    pthread_mutex_lock(&d->mu);
    d->mhd_done = true;
    if (!d->failed && !(d->last && d->next == NULL && (d->cur == NULL || d->off == d->cur_len)))
        kx_debug("gateway: download of '%s' ended by its client after %lld bytes", d->path,
                 (long long)d->sent);
    pthread_mutex_unlock(&d->mu);
    dl_release(d);
}

/* The download fails (mutex held): logged once, with the path and the reason; the reader ends
 * the response with an error once the bytes already held are sent. */
static void dl_fail(dl *d, const char *why)
{
    if (d->failed)
        return;
    d->failed = true;
    if (d->reg->cut_total != NULL)
        kx_counter_add(d->reg->cut_total, 1);
    kx_warn("gateway: download of '%s' (sandbox of project %s) failed after %lld of %lld bytes: "
            "%s; the transfer is cut",
            d->path, d->project, (long long)d->sent, (long long)d->size, why);
}

/* ---- READs -------------------------------------------------------------------------------- */

/* One READ at offset at, blocking this worker within the deadline. The reply, or NULL with
 * why set. */
static Kx__V1__SandboxFilesReply *read_chunk(dl *d, int64_t at, char *why, size_t cap)
{
    Kx__V1__SandboxFilesRequest rq = KX__V1__SANDBOX_FILES_REQUEST__INIT;
    rq.project_id = d->project;
    rq.op = KX__V1__SANDBOX_FILE_OP__SANDBOX_FILE_READ;
    rq.path = d->path;
    rq.offset = at;
    kx_bus_meta meta;
    kx_bus_meta_init(&meta, kx_deadline_in(d->timeout_ms), d->owner);
    natsMsg *m = NULL;
    kx_err err = kx_bus_request_pb(d->bus, KX_SUBJ_SANDBOX_FILES, &rq.base, &meta, &m);
    if (err == KX_ERR_TIMEOUT) {
        snprintf(why, cap, "the sandbox did not answer within %lld ms (KX_SANDBOX_GET_TIMEOUT_MS)",
                 (long long)d->timeout_ms);
        return NULL;
    }
    if (err != KX_OK) {
        snprintf(why, cap, "sandbox service unavailable: %s", kx_err_str(err));
        return NULL;
    }
    Kx__V1__SandboxFilesReply *rep =
        kx_pb_unpack(&kx__v1__sandbox_files_reply__descriptor, natsMsg_GetData(m),
                     (size_t)natsMsg_GetDataLength(m));
    natsMsg_Destroy(m);
    if (rep == NULL) {
        snprintf(why, cap, "the sandbox service sent a malformed reply");
        return NULL;
    }
    if (rep->error != NULL) {
        snprintf(why, cap, "%s: %s", rep->error->code ? rep->error->code : "error",
                 rep->error->message ? rep->error->message : "sandbox error");
        kx_pb_free(rep);
        return NULL;
    }
    return rep;
}

/* Checks the chunk read at offset at and counts it (mutex held): *len gets the bytes of it to
 * send (up to the announced size), read_at and last move on. False with why set. */
static bool take_chunk(dl *d, const Kx__V1__SandboxFilesReply *rep, int64_t at, size_t *len,
                       char *why, size_t cap)
{
    int64_t n = (int64_t)rep->data.len;
    if (rep->next_offset != at + n || (n == 0 && !rep->eof)) {
        snprintf(why, cap, "the sandbox service sent a malformed chunk at offset %lld",
                 (long long)at);
        return false;
    }
    if (d->size < 0 && at + n > d->max_bytes) {
        snprintf(why, cap,
                 "the file is larger than the %lld MiB a download may carry "
                 "(KX_SANDBOX_DOWNLOAD_MAX_MB)",
                 (long long)(d->max_bytes >> 20));
        return false;
    }
    size_t need = (d->cur != NULL ? d->cur->data.len : 0) + rep->data.len;
    if (need > d->claim) {
        if (!gw_held_take(d->held, d->account, need - d->claim)) {
            snprintf(why, cap,
                     "the gateway holds too many large answers not read yet "
                     "(KX_HTTP_HELD_ACCOUNT_MB, KX_HTTP_HELD_MB)");
            return false;
        }
        d->claim = need;
    }
    *len = (size_t)n;
    d->last = rep->eof;
    if (d->size >= 0 && at + n >= d->size) { /* grown since: sent up to the announced size */
        *len = at >= d->size ? 0 : (size_t)(d->size - at);
        d->last = true;
    }
    d->read_at = at + n;
    return true;
}

/* A worker: the READ after what the download holds; stores its chunk (or the failure) and
 * resumes the connection if the reader waits for it. Holds a reference. */
static void read_job(void *arg, bool stopping)
{
    dl *d = arg;
    pthread_mutex_lock(&d->mu);
    bool skip = d->mhd_done || d->failed;
    int64_t at = d->read_at;
    pthread_mutex_unlock(&d->mu);
    char why[400] = "";
    Kx__V1__SandboxFilesReply *rep = NULL;
    if (stopping)
        snprintf(why, sizeof why, "the gateway is stopping");
    else if (!skip)
        rep = read_chunk(d, at, why, sizeof why);
    pthread_mutex_lock(&d->mu);
    d->reading = false;
    size_t len = 0;
    if (!d->mhd_done && !d->failed) {
        if (rep != NULL && take_chunk(d, rep, at, &len, why, sizeof why)) {
            d->next = rep;
            d->next_len = len;
            rep = NULL;
        } else {
            dl_fail(d, why);
        }
    }
    if (d->suspended && !d->mhd_done) {
        d->suspended = false;
        MHD_resume_connection(d->conn);
    }
    pthread_mutex_unlock(&d->mu);
    kx_pb_free(rep);
    dl_release(d);
}

/* Queues the next READ (download mutex held). False when the pool is stopped or full. */
static bool start_read(dl *d)
{
    gw_downloads *reg = d->reg;
    bool ok = false;
    pthread_mutex_lock(&reg->mu);
    if (reg->work != NULL) {
        d->reading = true;
        d->refs++; /* the job's */
        ok = gw_work_submit(reg->work, read_job, d);
        if (!ok) {
            d->reading = false;
            d->refs--; /* libmicrohttpd's is still held: never the last */
        }
    }
    pthread_mutex_unlock(&reg->mu);
    return ok;
}

/* ---- the reader --------------------------------------------------------------------------- */

/* libmicrohttpd's thread: the bytes held, or the end; never waits. With nothing to give it
 * suspends the connection (the READ's job resumes it) and returns 0. */
static ssize_t reader(void *cls, uint64_t pos, char *out, size_t max)
{
    dl *d = cls;
    (void)pos; /* libmicrohttpd asks in order: pos is d->sent */
    ssize_t ret = 0;
    pthread_mutex_lock(&d->mu);
    for (;;) {
        if (d->cur != NULL && d->off < d->cur_len) {
            size_t n = d->cur_len - d->off < max ? d->cur_len - d->off : max;
            memcpy(out, d->cur->data.data + d->off, n);
            d->off += n;
            d->sent += (int64_t)n;
            ret = (ssize_t)n;
            break;
        }
        kx_pb_free(d->cur); /* used up (its bytes stay counted: the claim is the download's) */
        d->cur = NULL;
        if (d->next != NULL) {
            d->cur = d->next;
            d->cur_len = d->next_len;
            d->off = 0;
            d->next = NULL;
            continue;
        }
        if (d->failed) {
            ret = MHD_CONTENT_READER_END_WITH_ERROR;
            break;
        }
        if (d->last) {
            if (d->size >= 0 && d->sent < d->size) {
                dl_fail(d,
                        "the file ended before the size announced (it shrank or was "
                        "replaced meanwhile)");
                ret = MHD_CONTENT_READER_END_WITH_ERROR;
            } else {
                ret = MHD_CONTENT_READER_END_OF_STREAM;
            }
            break;
        }
        if (!d->reading && !start_read(d)) {
            dl_fail(d,
                    "no READ could be queued (the gateway is stopping, or too many READs "
                    "wait)");
            ret = MHD_CONTENT_READER_END_WITH_ERROR;
            break;
        }
        d->suspended = true;
        MHD_suspend_connection(d->conn);
        ret = 0;
        break;
    }
    /* one chunk ahead: its READ runs while this one is sent (a refusal is met when needed) */
    if (ret > 0 && d->next == NULL && !d->reading && !d->last && !d->failed)
        (void)start_read(d);
    pthread_mutex_unlock(&d->mu);
    return ret;
}

/* ---- the route's side --------------------------------------------------------------------- */

struct MHD_Response *gw_download_response(gw_app *app, const gw_download_src *src,
                                          Kx__V1__SandboxFilesReply *first, gw_reply *reply)
{
    dl *d = calloc(1, sizeof *d);
    char *path = strdup(src->path);
    if (d == NULL || path == NULL) {
        free(d);
        free(path);
        gw_downloads_leave(app->downloads, src->account);
        kx_pb_free(first);
        gw_reply_error(reply, MHD_HTTP_INTERNAL_SERVER_ERROR, "Out of memory");
        return NULL;
    }
    d->reg = app->downloads;
    d->held = app->held;
    d->bus = app->svc->bus;
    d->conn = src->conn;
    snprintf(d->account, sizeof d->account, "%s", src->account ? src->account : "");
    snprintf(d->owner, sizeof d->owner, "%s", src->owner ? src->owner : d->account);
    snprintf(d->project, sizeof d->project, "%s", src->project);
    d->path = path;
    d->timeout_ms = src->timeout_ms;
    d->max_bytes = src->max_bytes;
    d->size =
        first->info != NULL && first->info->size >= first->next_offset ? first->info->size : -1;
    pthread_mutex_init(&d->mu, NULL);
    d->refs = 1; /* libmicrohttpd's, released by on_free */
    size_t claim = 2 * first->data.len;
    if (!gw_held_take(app->held, d->account, claim)) {
        kx_pb_free(first);
        dl_free(d); /* nothing claimed yet */
        gw_held_refuse(reply);
        return NULL;
    }
    d->claim = claim;
    char why[400];
    size_t len = 0;
    if (!take_chunk(d, first, 0, &len, why, sizeof why)) {
        kx_pb_free(first);
        dl_free(d);
        gw_reply_error(reply, MHD_HTTP_BAD_GATEWAY, "%s", why);
        return NULL;
    }
    d->cur = first;
    d->cur_len = len;
    struct MHD_Response *resp =
        MHD_create_response_from_callback(d->size >= 0 ? (uint64_t)d->size : MHD_SIZE_UNKNOWN,
                                          BLOCK_SIZE, reader, d, on_free);
    if (resp == NULL) {
        dl_free(d); /* frees first, gives the claim back */
        gw_reply_error(reply, MHD_HTTP_INTERNAL_SERVER_ERROR, "Out of memory");
        return NULL;
    }
    return resp;
}

/* ---- the registry ------------------------------------------------------------------------- */

gw_downloads *gw_downloads_new(gw_app *app)
{
    gw_downloads *reg = calloc(1, sizeof *reg);
    if (reg == NULL)
        return NULL;
    pthread_mutex_init(&reg->mu, NULL);
    reg->cut_total = kx_metrics_counter(
        "kx_gateway_downloads_cut_total", "",
        "Sandbox file downloads cut mid-way (a READ failed, the file shrank, the gateway "
        "stopped): the client saw a failed transfer");
    reg->refused_total =
        kx_metrics_counter("kx_gateway_downloads_refused_total", "",
                           "Sandbox file downloads refused (429) because their account had "
                           "KX_SANDBOX_DOWNLOADS_PER_ACCOUNT in flight");
    reg->per_account = app->cfg.downloads_per_account;
    reg->work = gw_work_new(GW_DOWNLOAD_WORKERS, app->cfg.max_conns);
    if (reg->work == NULL) {
        pthread_mutex_destroy(&reg->mu);
        free(reg);
        return NULL;
    }
    return reg;
}

void gw_downloads_stop(gw_downloads *reg)
{
    if (reg == NULL)
        return;
    pthread_mutex_lock(&reg->mu);
    gw_work *w = reg->work;
    reg->work = NULL; /* no reader queues a READ after this */
    pthread_mutex_unlock(&reg->mu);
    gw_work_free(w); /* queued READs fail their downloads and resume them; waits the others */
}

void gw_downloads_free(gw_downloads *reg)
{
    if (reg == NULL)
        return;
    gw_downloads_stop(reg);
    pthread_mutex_destroy(&reg->mu);
    gw_tally_free(&reg->accounts);
    free(reg);
}

/* ---- downloads in flight per account -------------------------------------------------------- */

bool gw_downloads_enter(gw_downloads *reg, const char *account)
{
    if (reg == NULL)
        return true;
    pthread_mutex_lock(&reg->mu);
    bool ok = gw_tally_add(&reg->accounts, account, 1, reg->per_account);
    pthread_mutex_unlock(&reg->mu);
    if (!ok && reg->refused_total != NULL)
        kx_counter_add(reg->refused_total, 1);
    return ok;
}

void gw_downloads_leave(gw_downloads *reg, const char *account)
{
    if (reg == NULL)
        return;
    pthread_mutex_lock(&reg->mu);
    gw_tally_sub(&reg->accounts, account, 1);
    pthread_mutex_unlock(&reg->mu);
}

void gw_downloads_refuse(const gw_downloads *reg, gw_reply *reply)
{
    gw_reply_error(reply, MHD_HTTP_TOO_MANY_REQUESTS,
                   "Too many downloads in flight for this account: at most %d at a time "
                   "(KX_SANDBOX_DOWNLOADS_PER_ACCOUNT); retry when one has finished",
                   reg != NULL ? reg->per_account : 0);
}
