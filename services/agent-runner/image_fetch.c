/* image_fetch.c — a see_image image read through kx.sandbox.files (see image_fetch.h). */
#include "image_fetch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kx/buf.h"
#include "kx/pb.h"

struct image_fetch {
    kx_bus_async *ab;
    char project_id[40];
    char path[600];
    kx_bus_meta meta;
    kx_buf data;
    uint64_t req_id;
    image_fetch_cb done;
    void *arg;
};

static void finish(image_fetch *f, kx_err err, const char *why)
{
    unsigned char *data = NULL;
    size_t len = 0;
    if (err == KX_OK) {
        len = f->data.len;
        data = (unsigned char *)kx_buf_take(&f->data);
        if (data == NULL) {
            err = KX_ERR_NOMEM;
            why = "out of memory";
        }
    }
    kx_buf_free(&f->data);
    image_fetch_cb done = f->done;
    void *arg = f->arg;
    free(f);
    done(arg, err, data, err == KX_OK ? len : 0, why);
}

static kx_err read_next(image_fetch *f);

static void on_reply(kx_err err, natsMsg *reply, void *arg)
{
    image_fetch *f = arg;
    char why[400];
    if (err != KX_OK) {
        snprintf(why, sizeof why, "the sandbox did not answer: %s", kx_err_str(err));
        finish(f, err, why);
        return;
    }
    Kx__V1__SandboxFilesReply *r =
        kx_pb_unpack(&kx__v1__sandbox_files_reply__descriptor, natsMsg_GetData(reply),
                     (size_t)natsMsg_GetDataLength(reply));
    natsMsg_Destroy(reply);
    if (r == NULL || r->error != NULL) {
        snprintf(why, sizeof why, "%s",
                 r == NULL                                ? "the sandbox's reply does not decode"
                     : kx_pb_str_empty(r->error->message) ? "sandbox error"
                                                          : r->error->message);
        kx_pb_free(r);
        finish(f, KX_ERR_UNAVAILABLE, why);
        return;
    }
    bool eof = r->eof || r->data.len == 0;
    kx_err aerr = kx_buf_add(&f->data, r->data.data, r->data.len);
    kx_pb_free(r);
    if (aerr != KX_OK) {
        finish(f, aerr,
               aerr == KX_ERR_INVALID ? "the image is larger than 10 MB" : "out of memory");
        return;
    }
    if (eof) {
        finish(f, KX_OK, NULL);
        return;
    }
    if ((err = read_next(f)) != KX_OK) {
        snprintf(why, sizeof why, "could not ask the sandbox: %s", kx_err_str(err));
        finish(f, err, why);
    }
}

static kx_err read_next(image_fetch *f)
{
    Kx__V1__SandboxFilesRequest rq = KX__V1__SANDBOX_FILES_REQUEST__INIT;
    rq.project_id = f->project_id;
    rq.op = KX__V1__SANDBOX_FILE_OP__SANDBOX_FILE_READ;
    rq.path = f->path;
    rq.offset = (int64_t)f->data.len;
    return kx_bus_async_request_pb(f->ab, KX_SUBJ_SANDBOX_FILES, &rq.base, &f->meta, on_reply, f,
                                   &f->req_id);
}

image_fetch *image_fetch_start(kx_bus_async *ab, const char *project_id, const kx_bus_meta *meta,
                               kx_deadline deadline, const context_image_ref *ref,
                               image_fetch_cb done, void *arg)
{
    image_fetch *f = calloc(1, sizeof *f);
    if (f == NULL)
        return NULL;
    f->ab = ab;
    snprintf(f->project_id, sizeof f->project_id, "%s", project_id);
    snprintf(f->path, sizeof f->path, "%s", ref->file_path);
    f->meta = *meta;
    f->meta.deadline = deadline;
    f->data.max = CONTEXT_IMAGE_MAX_BYTES;
    f->done = done;
    f->arg = arg;
    if (read_next(f) != KX_OK) {
        free(f);
        return NULL;
    }
    return f;
}

void image_fetch_cancel(image_fetch *f)
{
    if (f == NULL)
        return;
    kx_bus_async_cancel(f->ab, f->req_id);
    kx_buf_free(&f->data);
    free(f);
}
