/* files_request.h — checking a kx.sandbox.files request (SandboxFilesRequest) before anything
 * touches the disk: the project id, the operation, the path (normalized like a folder: relative
 * or /workspace/..., no "..", no other absolute path, no control character), the offsets,
 * sizes, write mode and permissions. Pure (no I/O); fuzzed (tests/fuzz/sandbox_files) and unit
 * tested (tests/unit/test_sandbox_broker_files.c).
 *
 * Ownership: sb_files_req borrows rq's data bytes (valid while rq is). */
#ifndef SB_FILES_REQUEST_H
#define SB_FILES_REQUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "kx/err.h"
#include "kx/pb.h"
#include "sandbox_path.h"

#define SB_FILES_LIST_DEFAULT 1000
#define SB_FILES_LIST_MAX 10000

typedef struct sb_files_req {
    int op;                         /* KX__V1__SANDBOX_FILE_OP__SANDBOX_FILE_* */
    char path[SB_FOLDER_MAX + 1];   /* normalized; "" = the workspace itself */
    char parent[SB_FOLDER_MAX + 1]; /* path without its last component ("" = the workspace) */
    const char *base;               /* the last component (points into path; "" for "") */
    int64_t offset, length;
    const uint8_t *data; /* WRITE: borrowed from the request */
    size_t len;
    int mode;        /* KX__V1__SANDBOX_WRITE_MODE__* */
    unsigned perm;   /* mode bits of a new file (0644 when the request says 0) */
    bool perm_given; /* the request named permissions */
    bool recursive;
    size_t max_entries;
} sb_files_req;

/* Fills out from rq, or returns KX_ERR_INVALID with why naming the field (and the path) that
 * was wrong. rq may be NULL (a body that did not decode). */
kx_err sb_files_validate(const Kx__V1__SandboxFilesRequest *rq, sb_files_req *out, char *why,
                         size_t whylen);

/* "/workspace" or "/workspace/<path>" (sandbox-visible), for replies and errors. */
void sb_files_visible(const char *path, char *out, size_t outlen);

/* The operation's name for logs ("read", "write", ...; "unknown"). */
const char *sb_files_op_name(int op);

#endif
