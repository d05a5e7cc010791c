/* form.c — collects the known fields of a form body with libmicrohttpd's post processor.
 * See form.h for what is kept and what is ignored. */
#include "form.h"

#include <microhttpd.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "kx/buf.h"
#include "kx/log.h"

static const char *const known_fields[] = {
    "prompt",
    "model_name",
    "enable_thinking",
    "reasoning_effort",
    "stream",
    "enable_context_manager",
    "agent_id",
    "name",
    "path",
    "file", /* POST /api/sandboxes/{id}/files (routes_sandbox.c) */
};
#define NFIELDS (sizeof known_fields / sizeof known_fields[0])

struct gw_form {
    struct MHD_PostProcessor *pp;
    kx_buf fields[NFIELDS]; /* the values of known_fields; .s is NULL while absent */
    bool oom;
    size_t files;                                /* uploaded file parts seen outside files[] */
    gw_form_upload uploads[GW_FORM_MAX_UPLOADS]; /* the parts named "files", in order */
    kx_buf upload_data[GW_FORM_MAX_UPLOADS];
    size_t nuploads;
    bool too_many_uploads;
};

/* A part of the field "files" (POST /api/agent/initiate's files[]): kept whole, in order. */
static bool upload_put(gw_form *f, const char *filename, uint64_t off, const char *data,
                       size_t size)
{
    if (off == 0) {
        if (f->nuploads == GW_FORM_MAX_UPLOADS) {
            f->too_many_uploads = true;
            return true; /* refused by the route, which names the limit */
        }
        gw_form_upload *u = &f->uploads[f->nuploads];
        u->filename = strdup(filename);
        if (u->filename == NULL)
            return false;
        kx_buf_clear(&f->upload_data[f->nuploads]);
        f->nuploads++;
    }
    if (f->too_many_uploads || f->nuploads == 0)
        return true;
    return kx_buf_add(&f->upload_data[f->nuploads - 1], data, size) == KX_OK;
}

bool gw_form_content_type(const char *ct)
{
    if (ct == NULL)
        return false;
    return strncasecmp(ct, MHD_HTTP_POST_ENCODING_FORM_URLENCODED,
                       strlen(MHD_HTTP_POST_ENCODING_FORM_URLENCODED)) == 0 ||
        strncasecmp(ct, MHD_HTTP_POST_ENCODING_MULTIPART_FORMDATA,
                    strlen(MHD_HTTP_POST_ENCODING_MULTIPART_FORMDATA)) == 0;
}

static int field_index(const char *key)
{
    for (size_t i = 0; i < NFIELDS; i++)
        if (key != NULL && strcmp(key, known_fields[i]) == 0)
            return (int)i;
    return -1;
}

/* Appends size bytes at offset off of the field's value; off == 0 starts the value anew (a
 * repeated field: the last one wins). */
static bool field_put(kx_buf *fld, uint64_t off, const char *data, size_t size)
{
    if (off == 0)
        kx_buf_clear(fld);
    return kx_buf_add(fld, data, size) == KX_OK;
}

static enum MHD_Result on_field(void *cls, enum MHD_ValueKind kind, const char *key,
                                const char *filename, const char *content_type,
                                const char *transfer_encoding, const char *data, uint64_t off,
                                size_t size)
{
    gw_form *f = cls;
    if (key != NULL && (strcmp(key, "files") == 0 || strcmp(key, "files[]") == 0)) {
        /* a part without a filename is a file too, named "" (initiate_files.c names it) */
        if (!upload_put(f, filename != NULL ? filename : "", off, data, size)) {
            f->oom = true;
            return MHD_NO;
        }
        return MHD_YES;
    }
    if (filename != NULL) {
        if (off == 0)
            f->files++; /* an uploaded file: counted (gw_form_files) */
        if (key == NULL || strcmp(key, "file") != 0)
            return MHD_YES; /* other than a sandbox upload's: its bytes dropped */
    }
    int i = field_index(key);
    if (i < 0)
        return MHD_YES; /* a field the gateway does not know (is_agent_builder, ...) */
    if (!field_put(&f->fields[i], off, data, size)) {
        f->oom = true;
        return MHD_NO;
    }
    return MHD_YES;
}

gw_form *gw_form_new(struct MHD_Connection *conn, const char **why)
{
    gw_form *f = calloc(1, sizeof *f);
    if (f == NULL) {
        *why = "out of memory";
        return NULL;
    }
    f->pp = MHD_create_post_processor(conn, 16 * 1024, on_field, f);
    if (f->pp == NULL) {
        *why = "Content-Type is not a form encoding libmicrohttpd can parse "
               "(multipart/form-data needs a boundary)";
        free(f);
        return NULL;
    }
    return f;
}

bool gw_form_feed(gw_form *f, const char *data, size_t len)
{
    return MHD_post_process(f->pp, data, len) == MHD_YES && !f->oom;
}

bool gw_form_finish(gw_form *f)
{
    if (f->pp == NULL)
        return !f->oom;
    enum MHD_Result r = MHD_destroy_post_processor(f->pp);
    f->pp = NULL;
    return r == MHD_YES && !f->oom;
}

const char *gw_form_get(const gw_form *f, const char *name, size_t *len)
{
    int i = field_index(name);
    if (i < 0 || f->fields[i].s == NULL) {
        if (len != NULL)
            *len = 0;
        return NULL;
    }
    if (len != NULL)
        *len = f->fields[i].len;
    return f->fields[i].s;
}

size_t gw_form_files(const gw_form *f)
{
    return f->files;
}

size_t gw_form_uploads(gw_form *f, const gw_form_upload **out, bool *too_many)
{
    for (size_t i = 0; i < f->nuploads; i++) {
        f->uploads[i].data = f->upload_data[i].s != NULL ? f->upload_data[i].s : "";
        f->uploads[i].len = f->upload_data[i].len;
    }
    *out = f->uploads;
    *too_many = f->too_many_uploads;
    return f->nuploads;
}

void gw_form_free(gw_form *f)
{
    if (f == NULL)
        return;
    if (f->pp != NULL)
        MHD_destroy_post_processor(f->pp);
    for (size_t i = 0; i < NFIELDS; i++)
        kx_buf_free(&f->fields[i]);
    for (size_t i = 0; i < f->nuploads; i++) {
        free(f->uploads[i].filename);
        kx_buf_free(&f->upload_data[i]);
    }
    free(f);
}
