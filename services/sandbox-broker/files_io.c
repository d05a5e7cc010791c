/* files_io.c — kx.sandbox.files operations on a workspace directory (see files_io.h). */
#include "files_io.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define RESOLVE_FLAGS (RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV)
#define DELETE_MAX_DEPTH 64
#define LIST_COUNT_MAX 1000000 /* entries counted past max_entries before saying "at least" */
#define ENTRY_OVERHEAD 48      /* encoded bytes of a SandboxFileInfo besides name and path */

/* ---- errors ---------------------------------------------------------------------------- */

static void fail(sb_files_result *r, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void fail(sb_files_result *r, const char *code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->why, sizeof r->why, fmt, ap);
    va_end(ap);
    snprintf(r->code, sizeof r->code, "%s", code);
    r->error.code = r->code;
    r->error.message = r->why;
    r->rep.error = &r->error;
}

/* An errno from resolving or using `vis` (the sandbox-visible path) as an error reply. */
static void fail_errno(sb_files_result *r, int e, const char *vis, const char *doing)
{
    switch (e) {
    case EXDEV:
        fail(r, "invalid_argument",
             "path '%s' leaves the workspace (through '..', an absolute or outward symbolic "
             "link, or a mount): refused",
             vis);
        break;
    case ELOOP:
        fail(r, "invalid_argument",
             "path '%s' is a symbolic link (never %s through) or goes through a loop of links",
             vis, doing);
        break;
    case ENOENT: fail(r, "not_found", "path '%s' does not exist", vis); break;
    case ENOTDIR:
        fail(r, "invalid_argument", "path '%s': a component is not a directory", vis);
        break;
    case EISDIR: fail(r, "invalid_argument", "path '%s' is a directory", vis); break;
    case EEXIST: fail(r, "already_exists", "path '%s' already exists", vis); break;
    case ENOTEMPTY:
        fail(r, "invalid_argument",
             "directory '%s' is not empty: set recursive to delete it with its contents", vis);
        break;
    case EACCES:
    case EPERM:
        fail(r, "invalid_argument", "path '%s': permission denied to the sandbox's user (%s)", vis,
             doing);
        break;
    case ENAMETOOLONG: fail(r, "invalid_argument", "path '%s': a name is too long", vis); break;
    case EFBIG:
    case ENOSPC:
    case EDQUOT:
        fail(r, "resource_exhausted", "path '%s': %s while %s", vis, strerror(e), doing);
        break;
    default: fail(r, "internal", "path '%s': %s while %s", vis, strerror(e), doing); break;
    }
}

/* ---- resolution ------------------------------------------------------------------------- */

static int open_beneath(int ws, const char *rel, int flags, mode_t mode, uint64_t extra)
{
    struct open_how how = {.flags = (uint64_t)(flags | O_CLOEXEC),
                           .mode = (flags & O_CREAT) ? mode : 0,
                           .resolve = RESOLVE_FLAGS | extra};
    long fd;
    do {
        fd = syscall(SYS_openat2, ws, rel[0] != '\0' ? rel : ".", &how, sizeof how);
    } while (fd < 0 && errno == EAGAIN); /* a rename raced the lookup: try again */
    return (int)fd;
}

/* The parent directory of req->path (O_PATH), creating missing directories when create. */
static int open_parent(int ws, const sb_files_req *req, bool create, int *err_out)
{
    if (!create) {
        int fd = open_beneath(ws, req->parent, O_PATH | O_DIRECTORY, 0, 0);
        *err_out = fd < 0 ? errno : 0;
        return fd;
    }
    /* mkdir -p, one component at a time; every step resolved from the workspace again. */
    char prefix[SB_FOLDER_MAX + 1];
    int cur = open_beneath(ws, "", O_PATH | O_DIRECTORY, 0, 0);
    if (cur < 0) {
        *err_out = errno;
        return -1;
    }
    size_t n = strlen(req->parent);
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j < n && req->parent[j] != '/')
            j++;
        memcpy(prefix, req->parent, j);
        prefix[j] = '\0';
        int next = open_beneath(ws, prefix, O_PATH | O_DIRECTORY, 0, 0);
        if (next < 0 && errno == ENOENT) {
            char comp[SB_FOLDER_MAX + 1];
            memcpy(comp, req->parent + i, j - i);
            comp[j - i] = '\0';
            if (mkdirat(cur, comp, 0755) != 0 && errno != EEXIST) {
                *err_out = errno;
                close(cur);
                return -1;
            }
            next = open_beneath(ws, prefix, O_PATH | O_DIRECTORY, 0, 0);
        }
        if (next < 0) {
            *err_out = errno;
            close(cur);
            return -1;
        }
        close(cur);
        cur = next;
        i = j + 1;
    }
    *err_out = 0;
    return cur;
}

/* ---- info ------------------------------------------------------------------------------- */

static void fill_info(Kx__V1__SandboxFileInfo *fi, const struct stat *st, char *name, char *path)
{
    kx__v1__sandbox_file_info__init(fi);
    fi->name = name;
    fi->path = path;
    fi->is_dir = S_ISDIR(st->st_mode);
    fi->is_symlink = S_ISLNK(st->st_mode);
    fi->size = (int64_t)st->st_size;
    fi->mode = (uint32_t)(st->st_mode & 07777);
    fi->mtime_unix_ms = (int64_t)st->st_mtim.tv_sec * 1000 + st->st_mtim.tv_nsec / 1000000;
}

static void set_info(sb_files_result *r, const sb_files_req *req, const struct stat *st)
{
    snprintf(r->info_name, sizeof r->info_name, "%s", req->base);
    sb_files_visible(req->path, r->info_path, sizeof r->info_path);
    fill_info(&r->info, st, r->info_name, r->info_path);
    r->rep.info = &r->info;
}

/* ---- stat ------------------------------------------------------------------------------- */

static void op_stat(int ws, const sb_files_req *req, const char *vis, sb_files_result *r)
{
    int e = 0;
    int pd = open_parent(ws, req, false, &e);
    if (pd < 0) {
        fail_errno(r, e, vis, "resolving it");
        return;
    }
    struct stat st;
    int rc =
        req->path[0] == '\0' ? fstat(pd, &st) : fstatat(pd, req->base, &st, AT_SYMLINK_NOFOLLOW);
    if (rc != 0)
        fail_errno(r, errno, vis, "reading its status");
    else
        set_info(r, req, &st);
    close(pd);
}

/* ---- list ------------------------------------------------------------------------------- */

static int cmp_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void op_list(int ws, const sb_files_req *req, const char *vis, const sb_files_limits *lim,
                    sb_files_result *r)
{
    int fd = open_beneath(ws, req->path, O_RDONLY | O_DIRECTORY | O_NONBLOCK, 0, 0);
    if (fd < 0) {
        fail_errno(r, errno, vis, "opening it as a directory");
        return;
    }
    struct stat dst;
    if (fstat(fd, &dst) != 0) {
        fail_errno(r, errno, vis, "reading its status");
        close(fd);
        return;
    }
    set_info(r, req, &dst);
    DIR *d = fdopendir(fd);
    if (d == NULL) {
        fail_errno(r, errno, vis, "listing it");
        close(fd);
        return;
    }
    size_t cap = req->max_entries;
    char **names = calloc(cap + 1, sizeof *names);
    size_t n = 0, more = 0, bytes = 0;
    size_t vis_len = strlen(vis);
    bool bounded = false;
    struct dirent *de;
    while (names != NULL && (de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        size_t cost = 2 * strlen(de->d_name) + vis_len + ENTRY_OVERHEAD;
        if (n < cap && bytes + cost <= lim->max_reply && more == 0) {
            names[n] = strdup(de->d_name);
            if (names[n] == NULL)
                break;
            n++;
            bytes += cost;
            continue;
        }
        if (++more >= LIST_COUNT_MAX ||
            ((more & 1023) == 0 && kx_deadline_expired(lim->deadline))) {
            bounded = true;
            break;
        }
    }
    if (n > 1)
        qsort(names, n, sizeof *names, cmp_name);
    size_t total_str = 0;
    for (size_t i = 0; i < n; i++)
        total_str += 2 * strlen(names[i]) + vis_len + 4;
    r->entries = calloc(n + 1, sizeof *r->entries);
    r->entry_ptrs = calloc(n + 1, sizeof *r->entry_ptrs);
    r->strings = malloc(total_str + 1);
    if (names == NULL || r->entries == NULL || r->entry_ptrs == NULL || r->strings == NULL) {
        fail(r, "internal", "out of memory listing '%s'", vis);
    } else {
        char *s = r->strings;
        size_t k = 0;
        for (size_t i = 0; i < n; i++) {
            struct stat st;
            if (fstatat(dirfd(d), names[i], &st, AT_SYMLINK_NOFOLLOW) != 0)
                continue; /* removed meanwhile */
            char *name = s;
            s += sprintf(s, "%s", names[i]) + 1;
            char *path = s;
            s += sprintf(s, "%s/%s", vis, names[i]) + 1;
            fill_info(&r->entries[k], &st, name, path);
            r->entry_ptrs[k] = &r->entries[k];
            k++;
        }
        r->rep.entries = r->entry_ptrs;
        r->rep.n_entries = k;
        if (more > 0) {
            r->rep.truncated = true;
            snprintf(r->note, sizeof r->note,
                     "%s%zu more entr%s not listed (at most %zu per reply%s): list a "
                     "subdirectory, or delete what is not needed",
                     bounded ? "at least " : "", more, more == 1 ? "y" : "ies", cap,
                     n < cap ? ", and what fits the bus" : "");
            r->rep.note = r->note;
        }
    }
    for (size_t i = 0; names != NULL && i < n; i++)
        free(names[i]);
    free(names);
    closedir(d);
}

/* ---- read ------------------------------------------------------------------------------- */

static void op_read(int ws, const sb_files_req *req, const char *vis, const sb_files_limits *lim,
                    sb_files_result *r)
{
    /* O_NONBLOCK: a FIFO put there by a command must not hang the worker. */
    int fd = open_beneath(ws, req->path, O_RDONLY | O_NONBLOCK | O_NOCTTY, 0, 0);
    if (fd < 0) {
        fail_errno(r, errno, vis, "opening it");
        return;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        fail_errno(r, errno, vis, "reading its status");
        close(fd);
        return;
    }
    if (S_ISDIR(st.st_mode)) {
        fail(r, "invalid_argument", "path '%s' is a directory: list it instead", vis);
        close(fd);
        return;
    }
    if (!S_ISREG(st.st_mode)) {
        fail(r, "invalid_argument", "path '%s' is not a regular file", vis);
        close(fd);
        return;
    }
    set_info(r, req, &st);
    size_t want = lim->max_data;
    if (req->length > 0 && (uint64_t)req->length < want)
        want = (size_t)req->length;
    int64_t size = (int64_t)st.st_size;
    if (req->offset >= size)
        want = 0;
    else if ((uint64_t)(size - req->offset) < want)
        want = (size_t)(size - req->offset);
    r->data = malloc(want > 0 ? want : 1);
    size_t got = 0;
    while (r->data != NULL && got < want) {
        ssize_t n = pread(fd, r->data + got, want - got, req->offset + (off_t)got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            fail_errno(r, errno, vis, "reading it");
            break;
        }
        if (n == 0)
            break; /* it shrank meanwhile */
        got += (size_t)n;
    }
    if (r->data == NULL)
        fail(r, "internal", "out of memory reading '%s'", vis);
    close(fd);
    if (r->rep.error != NULL)
        return;
    r->rep.data.data = r->data;
    r->rep.data.len = got;
    r->rep.next_offset = req->offset + (int64_t)got;
    r->rep.eof = r->rep.next_offset >= size;
}

/* ---- write ------------------------------------------------------------------------------ */

static bool write_all(int fd, const uint8_t *p, size_t n, off_t at, bool positioned)
{
    size_t done = 0;
    while (done < n) {
        ssize_t w = positioned ? pwrite(fd, p + done, n - done, at + (off_t)done)
                               : write(fd, p + done, n - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            if (w == 0)
                errno = EIO;
            return false;
        }
        done += (size_t)w;
    }
    return true;
}

static bool check_room(sb_files_result *r, const sb_files_limits *lim, const char *vis,
                       int64_t new_size, int64_t grow)
{
    if (new_size > lim->max_file) {
        fail(r, "resource_exhausted",
             "path '%s' would be %lld bytes, over the file size limit of %lld MiB "
             "(KX_SANDBOX_MAX_FILE_MB)",
             vis, (long long)new_size, (long long)(lim->max_file >> 20));
        return false;
    }
    if (grow > 0 && grow > lim->disk_room) {
        fail(r, "resource_exhausted",
             "writing '%s' would grow the workspace by %lld bytes with %lld left of its limit of "
             "%lld MiB (KX_SANDBOX_DISK_MB): delete files first",
             vis, (long long)grow, (long long)(lim->disk_room > 0 ? lim->disk_room : 0),
             (long long)(lim->disk_limit >> 20));
        return false;
    }
    return true;
}

/* OVERWRITE / CREATE: a new file beside the old one, renamed over it (or next to nothing,
 * RENAME_NOREPLACE, for CREATE): a failed write loses nothing. */
static void write_replace(int pd, const sb_files_req *req, const char *vis,
                          const sb_files_limits *lim, sb_files_result *r)
{
    struct stat old;
    bool had = fstatat(pd, req->base, &old, AT_SYMLINK_NOFOLLOW) == 0;
    if (had && req->mode == KX__V1__SANDBOX_WRITE_MODE__SANDBOX_WRITE_CREATE) {
        fail(r, "already_exists", "path '%s' already exists (mode create): overwrite it instead",
             vis);
        return;
    }
    if (had && S_ISDIR(old.st_mode)) {
        fail(r, "invalid_argument", "path '%s' is a directory", vis);
        return;
    }
    int64_t old_size = had && S_ISREG(old.st_mode) ? (int64_t)old.st_blocks * 512 : 0;
    if (!check_room(r, lim, vis, (int64_t)req->len, (int64_t)req->len - old_size))
        return;
    /* The replaced file's permissions stay unless the request names others. */
    mode_t perm =
        had && S_ISREG(old.st_mode) && !req->perm_given ? (old.st_mode & 0777) : (mode_t)req->perm;
    char tmp[64];
    int fd = -1;
    for (int i = 0; i < 8 && fd < 0; i++) {
        unsigned long long rnd = 0;
        if (getrandom(&rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd)
            rnd = (unsigned long long)kx_mono_us() + (unsigned long long)i;
        snprintf(tmp, sizeof tmp, ".kx-upload-%016llx", rnd);
        fd = openat(pd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0 && errno != EEXIST)
            break;
    }
    if (fd < 0) {
        fail_errno(r, errno, vis, "creating it");
        return;
    }
    bool ok = write_all(fd, req->data, req->len, 0, false) && fchmod(fd, perm) == 0;
    int e = errno;
    if (ok) {
        unsigned flags =
            req->mode == KX__V1__SANDBOX_WRITE_MODE__SANDBOX_WRITE_CREATE ? RENAME_NOREPLACE : 0;
        ok = syscall(SYS_renameat2, pd, tmp, pd, req->base, flags) == 0;
        e = errno;
    }
    struct stat st;
    if (ok && fstat(fd, &st) == 0) {
        set_info(r, req, &st);
        r->rep.written = (int64_t)req->len;
        r->rep.next_offset = (int64_t)req->len;
        r->grew = (int64_t)st.st_blocks * 512 - old_size;
    }
    close(fd);
    if (!ok) {
        (void)unlinkat(pd, tmp, 0);
        fail_errno(r, e, vis, "writing it");
    }
}

/* APPEND / AT: into the file itself (the last component never followed). */
static void write_in_place(int pd, const sb_files_req *req, const char *vis,
                           const sb_files_limits *lim, sb_files_result *r)
{
    bool at = req->mode == KX__V1__SANDBOX_WRITE_MODE__SANDBOX_WRITE_AT;
    int flags = O_WRONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC;
    if (!at || req->offset == 0)
        flags |= O_CREAT; /* a chunk past 0 needs the earlier ones */
    int fd = openat(pd, req->base, flags, (mode_t)req->perm);
    if (fd < 0) {
        fail_errno(r, errno, vis, at ? "writing into it" : "appending to it");
        return;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        fail(r, "invalid_argument", "path '%s' is not a regular file", vis);
        close(fd);
        return;
    }
    int64_t size = (int64_t)st.st_size;
    int64_t start = at ? req->offset : size;
    if (start > size) {
        fail(r, "invalid_argument",
             "offset %lld is past the end of '%s' (%lld bytes): chunks must follow each other",
             (long long)req->offset, vis, (long long)size);
        close(fd);
        return;
    }
    int64_t end = start + (int64_t)req->len;
    int64_t new_size = end > size ? end : size;
    if (!check_room(r, lim, vis, new_size, new_size - size)) {
        close(fd);
        return;
    }
    int64_t before = (int64_t)st.st_blocks * 512;
    if (!write_all(fd, req->data, req->len, (off_t)start, true)) {
        fail_errno(r, errno, vis, "writing it");
    } else if (fstat(fd, &st) == 0) {
        set_info(r, req, &st);
        r->rep.written = (int64_t)req->len;
        r->rep.next_offset = end;
        r->grew = (int64_t)st.st_blocks * 512 - before;
    }
    close(fd);
}

/* The parent directory of req->path, opened for *at calls that create or remove entries (an
 * O_PATH descriptor cannot be used for those): resolved beneath the workspace (created when
 * create), then reopened readable. -1 with r's error set (naming vis) on failure. */
static int open_parent_dir(int ws, const sb_files_req *req, bool create, const char *vis,
                           sb_files_result *r)
{
    int e = 0;
    int pd = open_parent(ws, req, create, &e);
    if (pd < 0) {
        fail_errno(r, e, vis, create ? "creating its directory" : "resolving it");
        return -1;
    }
    int dir = openat(pd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int oe = errno;
    close(pd);
    if (dir < 0)
        fail_errno(r, oe, vis, "opening its directory");
    return dir;
}

static void op_write(int ws, const sb_files_req *req, const char *vis, const sb_files_limits *lim,
                     sb_files_result *r)
{
    int dir = open_parent_dir(ws, req, true, vis, r);
    if (dir < 0)
        return;
    if (req->mode == KX__V1__SANDBOX_WRITE_MODE__SANDBOX_WRITE_OVERWRITE ||
        req->mode == KX__V1__SANDBOX_WRITE_MODE__SANDBOX_WRITE_CREATE)
        write_replace(dir, req, vis, lim, r);
    else
        write_in_place(dir, req, vis, lim, r);
    close(dir);
}

/* ---- delete ----------------------------------------------------------------------------- */

typedef struct rm_state {
    int64_t deleted;
    int64_t freed;
    dev_t dev;
    kx_deadline deadline;
    int err;         /* first errno */
    char where[512]; /* the name it happened on */
    bool stopped;    /* the deadline */
} rm_state;

static void rm_note(rm_state *st, int e, const char *name)
{
    if (st->err == 0) {
        st->err = e;
        snprintf(st->where, sizeof st->where, "%s", name);
    }
}

/* Removes name (in the directory dfd) and, if it is a directory, everything in it. Never follows
 * a symbolic link: a link is removed as a link, also one swapped in for a directory meanwhile
 * (the open below refuses it, and it is then unlinked). */
static void rm_tree(int dfd, const char *name, int depth, rm_state *st)
{
    struct stat sb;
    if (fstatat(dfd, name, &sb, AT_SYMLINK_NOFOLLOW) != 0) {
        if (errno != ENOENT)
            rm_note(st, errno, name);
        return;
    }
    if (!S_ISDIR(sb.st_mode)) {
        if (unlinkat(dfd, name, 0) == 0) {
            st->deleted++;
            st->freed += (int64_t)sb.st_blocks * 512;
        } else if (errno != ENOENT) {
            rm_note(st, errno, name);
        }
        return;
    }
    if (sb.st_dev != st->dev) {
        rm_note(st, EXDEV, name);
        return;
    }
    if (depth >= DELETE_MAX_DEPTH) {
        rm_note(st, ENAMETOOLONG, name);
        return;
    }
    int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ELOOP || errno == ENOTDIR) { /* swapped for a link or a file: remove it */
            rm_tree(dfd, name, depth, st);
            return;
        }
        rm_note(st, errno, name);
        return;
    }
    DIR *d = fdopendir(fd);
    if (d == NULL) {
        rm_note(st, errno, name);
        close(fd);
        return;
    }
    for (int pass = 0; pass < 3 && !st->stopped; pass++) {
        bool any = false;
        struct dirent *de;
        rewinddir(d);
        while ((de = readdir(d)) != NULL && !st->stopped) {
            if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                continue;
            any = true;
            rm_tree(fd, de->d_name, depth + 1, st);
            if ((st->deleted & 255) == 0 && kx_deadline_expired(st->deadline))
                st->stopped = true;
        }
        if (!any || st->err != 0)
            break;
    }
    closedir(d);
    if (st->stopped || st->err != 0)
        return;
    if (unlinkat(dfd, name, AT_REMOVEDIR) == 0)
        st->deleted++;
    else if (errno != ENOENT)
        rm_note(st, errno, name);
}

static void op_delete(int ws, const sb_files_req *req, const char *vis, const sb_files_limits *lim,
                      sb_files_result *r)
{
    int dir = open_parent_dir(ws, req, false, vis, r);
    if (dir < 0)
        return;
    struct stat sb, wsst;
    if (fstatat(dir, req->base, &sb, AT_SYMLINK_NOFOLLOW) != 0) {
        fail_errno(r, errno, vis, "deleting it");
        close(dir);
        return;
    }
    if (S_ISDIR(sb.st_mode) && !req->recursive) {
        if (unlinkat(dir, req->base, AT_REMOVEDIR) == 0)
            r->rep.deleted = 1;
        else
            fail_errno(r, errno, vis, "deleting it");
        close(dir);
        return;
    }
    rm_state st = {.deadline = lim->deadline};
    st.dev = fstat(ws, &wsst) == 0 ? wsst.st_dev : sb.st_dev;
    rm_tree(dir, req->base, 0, &st);
    close(dir);
    r->rep.deleted = st.deleted;
    r->grew = -st.freed;
    if (st.stopped) {
        fail(r, "deadline_exceeded",
             "deleting '%s' stopped at the request's deadline after %lld entries: call again to "
             "go on",
             vis, (long long)st.deleted);
    } else if (st.err == ENAMETOOLONG) {
        fail(r, "invalid_argument",
             "deleting '%s': directories nested deeper than %d levels (at '%s'): delete them with "
             "a command",
             vis, DELETE_MAX_DEPTH, st.where);
    } else if (st.err != 0) {
        char inner[SB_FOLDER_MAX + 16 + 600];
        snprintf(inner, sizeof inner, "%s (at '%s', after %lld deleted)", vis, st.where,
                 (long long)st.deleted);
        fail_errno(r, st.err, inner, "deleting it");
    }
}

/* ---- entry ------------------------------------------------------------------------------ */

void sb_files_run(int ws_fd, const sb_files_req *req, const sb_files_limits *lim,
                  sb_files_result *out)
{
    memset(out, 0, sizeof *out);
    kx__v1__sandbox_files_reply__init(&out->rep);
    kx__v1__error__init(&out->error);
    char vis[SB_FOLDER_MAX + 16];
    sb_files_visible(req->path, vis, sizeof vis);
    switch (req->op) {
    case KX__V1__SANDBOX_FILE_OP__SANDBOX_FILE_STAT: op_stat(ws_fd, req, vis, out); break;
    case KX__V1__SANDBOX_FILE_OP__SANDBOX_FILE_LIST: op_list(ws_fd, req, vis, lim, out); break;
    case KX__V1__SANDBOX_FILE_OP__SANDBOX_FILE_READ: op_read(ws_fd, req, vis, lim, out); break;
    case KX__V1__SANDBOX_FILE_OP__SANDBOX_FILE_WRITE: op_write(ws_fd, req, vis, lim, out); break;
    case KX__V1__SANDBOX_FILE_OP__SANDBOX_FILE_DELETE: op_delete(ws_fd, req, vis, lim, out); break;
    default: fail(out, "invalid_argument", "unknown operation %d", req->op); break;
    }
    if (out->rep.error != NULL) { /* an error reply carries nothing else */
        out->rep.info = NULL;
        out->rep.n_entries = 0;
        out->rep.data.len = 0;
    }
}

void sb_files_result_free(sb_files_result *r)
{
    free(r->entries);
    free(r->entry_ptrs);
    free(r->strings);
    free(r->data);
    r->entries = NULL;
    r->entry_ptrs = NULL;
    r->strings = NULL;
    r->data = NULL;
}
