/* account_quota.c — the per-account sandbox limit over the fleet (see account_quota.h). */
#include "account_quota.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kx/log.h"
#include "kx/uuid.h"
#include "lifecycle.h"

#define MARKS_DIR ".accounts"

static kx_err fail(char *why, size_t whylen, const char *what, const char *path)
{
    snprintf(why, whylen, "could not count the account's sandboxes: %s %s: %s", what, path,
             strerror(errno));
    return KX_ERR_INTERNAL;
}

/* mkdir that accepts an existing directory (not a symlink: lstat, as everything under root). */
static bool ensure_dir(const char *path)
{
    if (mkdir(path, 0700) == 0)
        return true;
    struct stat st;
    return errno == EEXIST && lstat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* How many of the marks in dir (other than project_id's) are running sandboxes; the marks of
 * sandboxes no longer running are removed. -1 when dir cannot be read. */
static int64_t count_running(sb_broker *b, int dir_fd, const char *project_id)
{
    int fd = dup(dir_fd);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (d == NULL) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    int64_t n = 0;
    const struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (!kx_uuid_valid(de->d_name) || strcmp(de->d_name, project_id) == 0)
            continue;
        sb_state st;
        kx_err err = sb_state_load(&b->cfg, de->d_name, &st);
        if (err == KX_OK && strcmp(st.state, "running") == 0)
            n++;
        else if (err == KX_OK || err == KX_ERR_NOT_FOUND) /* stopped, archived, deleted */
            (void)unlinkat(dir_fd, de->d_name, 0);
        /* an unreadable record is neither counted nor forgotten: the next count decides */
    }
    closedir(d);
    return n;
}

kx_err sb_account_admit(sb_broker *b, const char *account, const char *project_id, char *why,
                        size_t whylen)
{
    if (b->cfg.per_account == 0 || account == NULL || !kx_uuid_valid(account))
        return KX_OK;
    char acct[KX_UUID_LEN + 1];
    for (size_t i = 0; i <= KX_UUID_LEN; i++) /* one spelling per account, as project ids */
        acct[i] = (char)tolower((unsigned char)account[i]);
    char path[2200];
    snprintf(path, sizeof path, "%s/" MARKS_DIR, b->cfg.root);
    if (!ensure_dir(path))
        return fail(why, whylen, "making", path);
    snprintf(path, sizeof path, "%s/" MARKS_DIR "/%s.lock", b->cfg.root, acct);
    int lock = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (lock < 0)
        return fail(why, whylen, "opening", path);
    while (flock(lock, LOCK_EX) != 0) {
        if (errno != EINTR) {
            kx_err err = fail(why, whylen, "locking", path);
            close(lock);
            return err;
        }
    }
    snprintf(path, sizeof path, "%s/" MARKS_DIR "/%s", b->cfg.root, acct);
    int dir_fd = -1;
    kx_err err = KX_OK;
    if (!ensure_dir(path) ||
        (dir_fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0) {
        err = fail(why, whylen, "opening", path);
        goto out;
    }
    int64_t n = count_running(b, dir_fd, project_id);
    if (n < 0) {
        err = fail(why, whylen, "reading", path);
    } else if (n >= b->cfg.per_account) {
        sb_account_full(why, whylen, account, n, b->cfg.idle_stop_ms / 1000);
        err = KX_ERR_QUOTA;
    } else {
        int mark = openat(dir_fd, project_id, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (mark < 0)
            err = fail(why, whylen, "marking in", path);
        else
            close(mark);
    }
out:
    if (dir_fd >= 0)
        close(dir_fd);
    close(lock); /* and the flock with it */
    return err;
}
