/* files_io.h — the file operations of kx.sandbox.files on one workspace directory: stat, list,
 * read, write (overwrite / create / append / at an offset), delete (recursive). Run by the
 * broker's file workers (files.c), off the loop thread, with the thread's file-system uid set
 * to the sandbox's (so permission checks are the sandbox's and new files are its own).
 *
 * Every path is resolved from the workspace descriptor with openat2(RESOLVE_BENEATH |
 * RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV): "..", absolute symbolic links, relative ones that
 * climb out, /proc magic links and mount crossings fail in the kernel, atomically with the
 * open, so a link swapped in after any check is refused too. Symbolic links that stay inside
 * are followed on the way; the last component is never followed by write or delete (a link
 * there is replaced or removed, never written through) and stat reports it as a link.
 * Operations work on the descriptors so obtained, never on names resolved twice.
 *
 * Ownership: the result owns its reply's memory until sb_files_result_free. */
#ifndef SB_FILES_IO_H
#define SB_FILES_IO_H

#include <stdint.h>
#include "files_request.h"
#include "kx/time.h"

typedef struct sb_files_limits {
    size_t max_data;      /* READ: bytes of data per reply (what the bus carries) */
    size_t max_reply;     /* LIST: encoded entries per reply */
    int64_t max_file;     /* the largest file a write may leave (KX_SANDBOX_MAX_FILE_MB) */
    int64_t disk_room;    /* bytes the workspace may still grow (KX_SANDBOX_DISK_MB − used) */
    int64_t disk_limit;   /* KX_SANDBOX_DISK_MB in bytes (for the error message) */
    kx_deadline deadline; /* the caller's: long deletes and listings stop there */
} sb_files_limits;

typedef struct sb_files_result {
    Kx__V1__SandboxFilesReply rep;
    Kx__V1__SandboxFileInfo info;
    Kx__V1__Error error;
    char code[32];
    char why[768];
    char info_name[256];
    char info_path[SB_FOLDER_MAX + 16];
    char note[256];
    Kx__V1__SandboxFileInfo *entries; /* LIST: malloc'd, names and paths in `strings` */
    Kx__V1__SandboxFileInfo **entry_ptrs;
    char *strings;
    uint8_t *data; /* READ: malloc'd */
    int64_t grew;  /* bytes the workspace grew (negative: freed), for the disk accounting */
} sb_files_result;

/* Runs req against the workspace directory ws_fd. Never fails to fill out: on an error
 * out->rep.error is set (code and a message naming the path). */
void sb_files_run(int ws_fd, const sb_files_req *req, const sb_files_limits *lim,
                  sb_files_result *out);
void sb_files_result_free(sb_files_result *r);

#endif
