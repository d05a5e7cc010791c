/* files.c — kx.sandbox.files (queue group "sandbox-broker"): the project's /workspace as
 * files, for the tool-executor's file tools (docs/subjects.md).
 *
 * The loop thread only checks the request (files_request.c), finds or starts the project's
 * sandbox, reads its disk budget (the cached /workspace size, as before a command) and queues a
 * job; the I/O itself runs on FILE_WORKERS threads of their own (files_io.c), each of which
 * sets its file-system uid and gid (setfsuid/setfsgid: per thread) to the sandbox's uid for
 * the job, so the kernel checks permissions as the sandbox's user and what is created is
 * owned by it — never by root. The worker answers on the bus itself (cnats is thread-safe),
 * except after a write or a delete: then the loop, which owns the workspace's disk budget,
 * counts the size change and releases the write's reservation first and answers after, so that
 * the caller's next request sees the budget its answer implies (answered first, a write right
 * after a delete could find the deleted bytes still counted: "0 left"). Every job is bounded: a read or
 * write moves at most what one message carries, a listing at most max_entries, a recursive
 * delete stops at the request's deadline; at most FILE_QUEUE_MAX jobs wait (more: the request
 * is answered unavailable at once). The loop never waits for a disk.
 *
 * Ownership: the pool is the broker's (b->files), created by sb_files_start and joined by
 * sb_files_stop after the loop has ended; a job owns its request message and a duplicate of
 * the workspace descriptor (the sandbox may end while the job runs). */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "broker.h"
#include "fleet.h"
#include "files_io.h"
#include "files_request.h"
#include "kx/log.h"
#include "kx/metrics.h"
#include "kx/pb.h"
#include "sandbox.h"

#define FILE_WORKERS 2
#define FILE_QUEUE_MAX 64
#define REPLY_OVERHEAD 16384 /* room in a reply for everything but the data or the entries */

typedef struct sb_files_job sb_files_job;
struct sb_files_job {
    sb_files_job *next;
    sb_broker *b;
    natsMsg *msg;
    Kx__V1__SandboxFilesRequest *rq;
    sb_files_req req;
    sb_files_limits lim;
    int ws_fd;
    uid_t uid;
    char project[40];
    char trace_id[33];
    int64_t reserved; /* WRITE: bytes counted against the disk budget when queued */
    int64_t grew;     /* what the operation changed (set by the worker) */
    uint8_t *reply;   /* the packed answer the loop sends once it has counted (or NULL) */
    size_t reply_len;
};

struct sb_files {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    sb_files_job *head, *tail;
    size_t queued;
    bool stop;
    bool direct; /* draining: workers answer themselves, the loop may not run again */
    pthread_t threads[FILE_WORKERS];
    size_t nthreads;
};

static void count(const char *op, const char *outcome)
{
    char labels[96];
    snprintf(labels, sizeof labels, "op=\"%s\",outcome=\"%s\"", op, outcome);
    kx_counter_add(kx_metrics_counter("kx_sandbox_files_total", labels,
                                      "kx.sandbox.files requests answered, by op and outcome"),
                   1);
}

/* A reply the bus refused (len bytes) becomes a small error: never silence, the caller would
 * wait out its deadline for an answer that is not coming. */
static void respond_refused(sb_broker *b, natsMsg *msg, size_t len, kx_err err)
{
    kx_warn("sandbox: could not answer on kx.sandbox.files (%zu bytes): %s", len, kx_err_str(err));
    Kx__V1__Error e = KX__V1__ERROR__INIT;
    e.code = "internal";
    e.message = "the reply could not be sent on the bus";
    Kx__V1__SandboxFilesReply small = KX__V1__SANDBOX_FILES_REPLY__INIT;
    small.error = &e;
    (void)kx_bus_respond_pb(b->svc->bus, msg, &small.base);
}

static void respond(sb_broker *b, natsMsg *msg, const Kx__V1__SandboxFilesReply *rep)
{
    if (natsMsg_GetReply(msg) == NULL)
        return;
    kx_err err = kx_bus_respond_pb(b->svc->bus, msg, &rep->base);
    if (err != KX_OK)
        respond_refused(b, msg, protobuf_c_message_get_packed_size(&rep->base), err);
}

static void refuse(sb_broker *b, natsMsg *msg, const char *op, const char *code, const char *why)
{
    Kx__V1__Error e = KX__V1__ERROR__INIT;
    e.code = (char *)code;
    e.message = (char *)why;
    Kx__V1__SandboxFilesReply rep = KX__V1__SANDBOX_FILES_REPLY__INIT;
    rep.error = &e;
    kx_info("sandbox: files %s refused: %s", op, why);
    respond(b, msg, &rep);
    count(op, code);
}

static void job_free(sb_files_job *j)
{
    if (j->ws_fd >= 0)
        close(j->ws_fd);
    if (j->msg != NULL)
        natsMsg_Destroy(j->msg);
    kx_pb_free(j->rq);
    free(j);
}

/* ---- the workers ------------------------------------------------------------------------ */

/* The answer a worker packed (the job keeps its request message until then). */
static void send_packed(sb_files_job *j)
{
    if (j->reply != NULL && natsMsg_GetReply(j->msg) != NULL) {
        kx_err err = kx_bus_respond(j->b->svc->bus, j->msg, j->reply, j->reply_len);
        if (err != KX_OK)
            respond_refused(j->b, j->msg, j->reply_len, err);
    }
    natsMsg_Destroy(j->msg);
    free(j->reply);
    free(j);
}

/* Posted back to the loop: the workspace's size changed; counted, then answered. */
static void on_done(kx_loop *loop, void *arg)
{
    sb_files_job *j = arg;
    sb_sandbox_disk_reserve(j->b, j->project, -j->reserved);
    sb_sandbox_disk_add(j->b, j->project, j->grew);
    send_packed(j);
}

/* The loop was freed before on_done ran (after the bus was closed): nothing can be sent. Only
 * a job that finished as the drain began gets here (sb_files_drain). */
static void dispose_done(void *arg)
{
    sb_files_job *j = arg;
    natsMsg_Destroy(j->msg);
    free(j->reply);
    free(j);
}

/* The job's file-system identity: the sandbox's uid and gid for the file operations of this
 * thread only (root's capabilities over files are dropped with it, and come back with 0). */
static bool become(uid_t uid)
{
    if (geteuid() != 0)
        return true; /* not root: the sandbox has the broker's uid (README "Not done") */
    syscall(SYS_setfsgid, uid);
    syscall(SYS_setfsuid, uid);
    /* setfsuid returns the previous value; asking for an impossible one reads the current. */
    return (uid_t)syscall(SYS_setfsuid, (uid_t)-1) == uid &&
        (gid_t)syscall(SYS_setfsgid, (gid_t)-1) == uid;
}

static void unbecome(void)
{
    if (geteuid() != 0)
        return;
    syscall(SYS_setfsuid, 0);
    syscall(SYS_setfsgid, 0);
}

static void run_job(sb_files_job *j)
{
    const char *op = sb_files_op_name(j->req.op);
    if (kx_deadline_expired(j->lim.deadline)) {
        refuse(j->b, j->msg, op, "deadline_exceeded",
               "the request's deadline passed before the file operation started");
        return;
    }
    if (!become(j->uid)) {
        unbecome();
        refuse(j->b, j->msg, op, "internal", "could not take the sandbox's uid for the operation");
        return;
    }
    int64_t t0 = kx_mono_us();
    sb_files_result r;
    sb_files_run(j->ws_fd, &j->req, &j->lim, &r);
    unbecome();
    j->grew = r.grew;
    /* a size change: the loop answers once it has counted it (on_done), unless it drains */
    sb_files *f = j->b->files;
    pthread_mutex_lock(&f->mu);
    bool direct = f->direct;
    pthread_mutex_unlock(&f->mu);
    size_t n = protobuf_c_message_get_packed_size(&r.rep.base);
    if (!direct && (j->grew != 0 || j->reserved != 0) && (j->reply = malloc(n ? n : 1)) != NULL) {
        j->reply_len = protobuf_c_message_pack(&r.rep.base, j->reply);
    } else {
        respond(j->b, j->msg, &r.rep);
    }
    kx_log(KX_LOG_DEBUG, NULL, j->trace_id, "sandbox: project %s: files %s '%s': %s in %lld us",
           j->project, op, j->req.path, r.rep.error ? r.rep.error->message : "ok",
           (long long)(kx_mono_us() - t0));
    count(op, r.rep.error ? r.rep.error->code : "ok");
    sb_files_result_free(&r);
}

static void *worker(void *arg)
{
    sb_files *f = ((sb_broker *)arg)->files;
    /* Root's supplementary groups must not grant the sandbox's jobs anything: this thread's
     * own (the raw syscall changes only the calling thread, unlike glibc's setgroups). */
    if (geteuid() == 0 && syscall(SYS_setgroups, 0, NULL) != 0)
        kx_warn("sandbox: file worker could not drop its groups: %s", strerror(errno));
    for (;;) {
        pthread_mutex_lock(&f->mu);
        while (f->head == NULL && !f->stop)
            pthread_cond_wait(&f->cv, &f->mu);
        sb_files_job *j = f->head;
        if (j != NULL) {
            f->head = j->next;
            if (f->head == NULL)
                f->tail = NULL;
            f->queued--;
        }
        bool stop = f->stop;
        pthread_mutex_unlock(&f->mu);
        if (j == NULL)
            return NULL;
        if (stop)
            refuse(j->b, j->msg, sb_files_op_name(j->req.op), "unavailable",
                   "broker shutting down");
        else
            run_job(j);
        kx_pb_free(j->rq);
        j->rq = NULL;
        close(j->ws_fd);
        j->ws_fd = -1;
        /* The loop releases the reservation made when the job was queued, counts the size
         * change and sends the answer the job holds. */
        if (j->reply == NULL) { /* answered: only the budget is left for the loop */
            natsMsg_Destroy(j->msg);
            j->msg = NULL;
        }
        if (j->grew == 0 && j->reserved == 0) {
            natsMsg_Destroy(j->msg);
            free(j->reply);
            free(j);
        } else if (kx_loop_post_owned(j->b->svc->loop, on_done, j, dispose_done) != KX_OK) {
            send_packed(j); /* the loop is gone: the budget no longer matters */
        }
    }
}

/* ---- the loop side ---------------------------------------------------------------------- */

static void on_files(natsMsg *msg, void *arg)
{
    sb_broker *b = arg;
    kx_bus_meta meta;
    memset(&meta, 0, sizeof meta);
    kx_err meta_err = kx_bus_meta_read(msg, &meta);
    char why[768];
    Kx__V1__SandboxFilesRequest *rq =
        kx_pb_unpack(&kx__v1__sandbox_files_request__descriptor, natsMsg_GetData(msg),
                     (size_t)natsMsg_GetDataLength(msg));
    sb_files_job *j = calloc(1, sizeof *j);
    if (j == NULL) {
        refuse(b, msg, "unknown", "internal", "out of memory");
        natsMsg_Destroy(msg);
        kx_pb_free(rq);
        return;
    }
    j->b = b;
    j->msg = msg;
    j->rq = rq;
    j->ws_fd = -1;
    kx_bus_trace_id(&meta, j->trace_id);
    const char *op = rq != NULL ? sb_files_op_name((int)rq->op) : "unknown";
    if (b->draining) {
        refuse(b, msg, op, "unavailable", "broker shutting down");
        job_free(j);
        return;
    }
    if (meta_err != KX_OK || meta.deadline == KX_NO_DEADLINE) {
        refuse(b, msg, op, "invalid_argument",
               "the Kx-Deadline header (absolute unix ms) is required");
        job_free(j);
        return;
    }
    if (rq == NULL || sb_files_validate(rq, &j->req, why, sizeof why) != KX_OK) {
        refuse(b, msg, op, "invalid_argument", why);
        job_free(j);
        return;
    }
    if (sb_fleet_route(b, msg, rq->project_id)) { /* fleet.c: its owner answers */
        j->msg = NULL;
        job_free(j);
        return;
    }
    sb_sandbox *s = NULL;
    kx_err err = sb_sandbox_get(b, rq->project_id, meta.account, &s, why, sizeof why);
    if (err != KX_OK) {
        refuse(b, msg, op, kx_err_code(err), why);
        job_free(j);
        return;
    }
    sb_sandbox_touch(s);
    j->ws_fd = fcntl(sb_sandbox_workspace_fd(s), F_DUPFD_CLOEXEC, 3);
    if (j->ws_fd < 0) {
        snprintf(why, sizeof why, "could not hold the workspace open: %s", strerror(errno));
        refuse(b, msg, op, "internal", why);
        job_free(j);
        return;
    }
    j->uid = sb_sandbox_uid(s);
    snprintf(j->project, sizeof j->project, "%s", rq->project_id);
    size_t budget = b->max_reply > 2 * REPLY_OVERHEAD ? b->max_reply - REPLY_OVERHEAD : 4096;
    j->lim.max_data = budget;
    j->lim.max_reply = budget;
    j->lim.max_file = b->cfg.limits.fsize_bytes > 0 ? b->cfg.limits.fsize_bytes : INT64_MAX;
    j->lim.disk_limit = b->cfg.disk_bytes;
    if (j->req.op == KX__V1__SANDBOX_FILE_OP__SANDBOX_FILE_WRITE) {
        j->lim.disk_room = sb_sandbox_disk_room(s); /* a walk at most once a second */
        /* Counted at once, so that writes queued together cannot each spend the same room. */
        j->reserved = (int64_t)j->req.len;
        sb_sandbox_disk_reserve(b, rq->project_id, j->reserved);
    }
    j->lim.deadline = meta.deadline;

    sb_files *f = b->files;
    pthread_mutex_lock(&f->mu);
    bool full = f->queued >= FILE_QUEUE_MAX;
    if (!full) {
        if (f->tail != NULL)
            f->tail->next = j;
        else
            f->head = j;
        f->tail = j;
        f->queued++;
        pthread_cond_signal(&f->cv);
    }
    pthread_mutex_unlock(&f->mu);
    if (full) {
        sb_sandbox_disk_reserve(b, rq->project_id, -j->reserved);
        snprintf(why, sizeof why,
                 "%d file operations are already waiting on this broker: try again shortly",
                 FILE_QUEUE_MAX);
        refuse(b, msg, op, "unavailable", why);
        job_free(j);
    }
}

kx_err sb_files_start(sb_broker *b)
{
    sb_files *f = calloc(1, sizeof *f);
    if (f == NULL)
        return KX_ERR_NOMEM;
    pthread_mutex_init(&f->mu, NULL);
    pthread_cond_init(&f->cv, NULL);
    b->files = f;
    for (size_t i = 0; i < FILE_WORKERS; i++) {
        if (pthread_create(&f->threads[i], NULL, worker, b) != 0) {
            kx_error("sandbox: cannot start a file worker: %s", strerror(errno));
            return KX_ERR_INTERNAL;
        }
        f->nthreads++;
    }
    kx_err err =
        sb_fleet_subscribe(b, KX_SUBJ_SANDBOX_FILES, "sandbox-broker", on_files, b, &b->files_sub);
    if (err != KX_OK)
        kx_error("sandbox: cannot subscribe to %s: %s", KX_SUBJ_SANDBOX_FILES, kx_err_str(err));
    return err;
}

void sb_files_drain(sb_broker *b)
{
    sb_files *f = b->files;
    if (f == NULL)
        return;
    pthread_mutex_lock(&f->mu);
    f->direct = true;
    pthread_mutex_unlock(&f->mu);
}

void sb_files_stop(sb_broker *b)
{
    sb_files *f = b->files;
    if (f == NULL)
        return;
    pthread_mutex_lock(&f->mu);
    f->direct = true;
    f->stop = true;
    pthread_cond_broadcast(&f->cv);
    pthread_mutex_unlock(&f->mu);
    for (size_t i = 0; i < f->nthreads; i++)
        pthread_join(f->threads[i], NULL);
    pthread_mutex_destroy(&f->mu);
    pthread_cond_destroy(&f->cv);
    free(f);
    b->files = NULL;
}
