/* files_request.c — validation of kx.sandbox.files requests (see files_request.h). */
#include "files_request.h"

#include <stdio.h>
#include <string.h>

#include "kx/uuid.h"

const char *sb_files_op_name(int op)
{
    switch (op) {
    case KX__V1__SANDBOX_FILE_OP__SANDBOX_FILE_STAT: return "stat";
    case KX__V1__SANDBOX_FILE_OP__SANDBOX_FILE_LIST: return "list";
    case KX__V1__SANDBOX_FILE_OP__SANDBOX_FILE_READ: return "read";
    case KX__V1__SANDBOX_FILE_OP__SANDBOX_FILE_WRITE: return "write";
    case KX__V1__SANDBOX_FILE_OP__SANDBOX_FILE_DELETE: return "delete";
    default: return "unknown";
    }
}

void sb_files_visible(const char *path, char *out, size_t outlen)
{
    if (path == NULL || path[0] == '\0')
        snprintf(out, outlen, "%s", SB_VISIBLE_ROOT);
    else
        snprintf(out, outlen, "%s/%s", SB_VISIBLE_ROOT, path);
}

kx_err sb_files_validate(const Kx__V1__SandboxFilesRequest *rq, sb_files_req *out, char *why,
                         size_t whylen)
{
    memset(out, 0, sizeof *out);
    out->base = out->path;
    if (rq == NULL) {
        snprintf(why, whylen, "request is not a valid kx.v1.SandboxFilesRequest");
        return KX_ERR_INVALID;
    }
    if (!kx_uuid_valid(rq->project_id)) {
        snprintf(why, whylen, "project_id '%.64s' is not a valid UUID",
                 rq->project_id ? rq->project_id : "");
        return KX_ERR_INVALID;
    }
    int op = (int)rq->op;
    if (op < KX__V1__SANDBOX_FILE_OP__SANDBOX_FILE_STAT ||
        op > KX__V1__SANDBOX_FILE_OP__SANDBOX_FILE_DELETE) {
        snprintf(why, whylen,
                 "op %d is not one of stat (1), list (2), read (3), write (4), "
                 "delete (5)",
                 op);
        return KX_ERR_INVALID;
    }
    out->op = op;
    if (sb_path_normalize("path", rq->path, out->path, sizeof out->path, why, whylen) != KX_OK)
        return KX_ERR_INVALID;
    char *slash = strrchr(out->path, '/');
    if (slash != NULL) {
        size_t n = (size_t)(slash - out->path);
        memcpy(out->parent, out->path, n);
        out->parent[n] = '\0';
        out->base = slash + 1;
    } else {
        out->parent[0] = '\0';
        out->base = out->path;
    }
    char vis[SB_FOLDER_MAX + 16];
    sb_files_visible(out->path, vis, sizeof vis);
    bool is_write = op == KX__V1__SANDBOX_FILE_OP__SANDBOX_FILE_WRITE;

    if ((is_write || op == KX__V1__SANDBOX_FILE_OP__SANDBOX_FILE_DELETE) && out->path[0] == '\0') {
        snprintf(why, whylen, "path '%s' is the workspace itself: it cannot be %s",
                 rq->path ? rq->path : "", is_write ? "written" : "deleted");
        return KX_ERR_INVALID;
    }
    if (rq->offset < 0 || rq->length < 0) {
        snprintf(why, whylen, "offset and length must not be negative (%s)", vis);
        return KX_ERR_INVALID;
    }
    if (!is_write && rq->data.len > 0) {
        snprintf(why, whylen, "data is only used by write, not by %s (%s)", sb_files_op_name(op),
                 vis);
        return KX_ERR_INVALID;
    }
    int mode = (int)rq->mode;
    if (mode < KX__V1__SANDBOX_WRITE_MODE__SANDBOX_WRITE_OVERWRITE ||
        mode > KX__V1__SANDBOX_WRITE_MODE__SANDBOX_WRITE_AT) {
        snprintf(why, whylen,
                 "mode %d is not one of overwrite (0), create (1), append (2), "
                 "at (3)",
                 mode);
        return KX_ERR_INVALID;
    }
    if (rq->offset > 0 && op != KX__V1__SANDBOX_FILE_OP__SANDBOX_FILE_READ &&
        !(is_write && mode == KX__V1__SANDBOX_WRITE_MODE__SANDBOX_WRITE_AT)) {
        snprintf(why, whylen, "offset is only used by read and by write with mode at (%s)", vis);
        return KX_ERR_INVALID;
    }
    if (rq->length > 0 && op != KX__V1__SANDBOX_FILE_OP__SANDBOX_FILE_READ) {
        snprintf(why, whylen, "length is only used by read (%s)", vis);
        return KX_ERR_INVALID;
    }
    if (rq->permissions > 0777) {
        snprintf(why, whylen, "permissions 0%o are not file mode bits (at most 0777)",
                 (unsigned)rq->permissions);
        return KX_ERR_INVALID;
    }
    if (rq->max_entries < 0 || rq->max_entries > SB_FILES_LIST_MAX) {
        snprintf(why, whylen, "max_entries %d is not in 0..%d", (int)rq->max_entries,
                 SB_FILES_LIST_MAX);
        return KX_ERR_INVALID;
    }
    out->offset = rq->offset;
    out->length = rq->length;
    out->data = rq->data.data;
    out->len = rq->data.len;
    out->mode = mode;
    out->perm = rq->permissions != 0 ? rq->permissions : 0644;
    out->perm_given = rq->permissions != 0;
    out->recursive = rq->recursive;
    out->max_entries = rq->max_entries > 0 ? (size_t)rq->max_entries : SB_FILES_LIST_DEFAULT;
    return KX_OK;
}
