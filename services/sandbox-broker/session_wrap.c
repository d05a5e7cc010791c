/* session_wrap.c — the shell script that gives a command its session's cwd and environment,
 * and the reading of a session's saved directory (see session_wrap.h). */
#include "session_wrap.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "kx/buf.h"
#include "kx/utf8.h"
#include "sandbox_path.h"

/* s in single quotes, each ' written as '\'' (POSIX sh: nothing inside '' is special). */
static void put_quoted(kx_buf *b, const char *s)
{
    kx_buf_add(b, "'", 1);
    for (const char *p = s; *p != '\0'; p++) {
        if (*p == '\'')
            kx_buf_add(b, "'\\''", 4);
        else
            kx_buf_add(b, p, 1);
    }
    kx_buf_add(b, "'", 1);
}

void sb_session_token(const char *exec_id, char *out, size_t outlen)
{
    size_t n = 0;
    for (const char *c = exec_id != NULL ? exec_id : ""; *c != '\0' && n < 64 && n + 1 < outlen;
         c++) {
        bool ok = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
            (*c >= '0' && *c <= '9') || *c == '-' || *c == '_';
        out[n++] = ok ? *c : '_';
    }
    out[n] = '\0';
}

void sb_session_commit(int ws_fd, const char *session, const char *exec_id)
{
    struct open_how how = {.flags = O_RDONLY | O_DIRECTORY | O_CLOEXEC,
                           .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
                               RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV};
    int dir = (int)syscall(SYS_openat2, ws_fd, SB_SESSION_STATE_DIR, &how, sizeof how);
    if (dir < 0)
        return; /* no session state saved yet (or it is not a plain directory) */
    char tok[72], tmp[128], fin[128];
    sb_session_token(exec_id, tok, sizeof tok);
    snprintf(tmp, sizeof tmp, ".tmp.%s.ok", tok);
    struct stat st;
    bool complete = fstatat(dir, tmp, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode);
    (void)unlinkat(dir, tmp, 0);
    static const char *const kinds[] = {"env", "cwd"};
    for (int i = 0; i < 2; i++) {
        snprintf(tmp, sizeof tmp, ".tmp.%s.%s", tok, kinds[i]);
        snprintf(fin, sizeof fin, "%s.%s", session, kinds[i]);
        /* rename never follows a link in either name: a link planted here is moved, not
         * followed, and the broker reads <s>.cwd without following links. */
        if (!complete || renameat(dir, tmp, dir, fin) != 0)
            (void)unlinkat(dir, tmp, 0);
    }
    close(dir);
}

char *sb_session_wrap(const char *session, const char *folder, const char *command,
                      const char *token)
{
    /* The session name is [A-Za-z0-9_.-] (checked by the caller): safe unquoted, and with a
     * suffix it is always a plain file name in the state directory. */
    const char *ws = SB_VISIBLE_ROOT, *dir = SB_SESSION_STATE_DIR;
    kx_buf b = KX_BUF_INIT;
    kx_buf_printf(&b, "if [ -f %s/%s/%s.env ]; then . %s/%s/%s.env; fi\n", ws, dir, session, ws,
                  dir, session);
    if (folder != NULL && folder[0] != '\0') {
        kx_buf_str(&b, "__kx_d=");
        char path[SB_FOLDER_MAX + 16];
        snprintf(path, sizeof path, "%s/%s", ws, folder);
        put_quoted(&b, path);
        kx_buf_str(&b, "\n");
    } else {
        kx_buf_printf(&b,
                      "__kx_d=%s\n"
                      "if [ -f %s/%s/%s.cwd ]; then { IFS= read -r __kx_d || [ -n \"$__kx_d\" ]; }"
                      " <%s/%s/%s.cwd || __kx_d=%s; fi\n",
                      ws, ws, dir, session, ws, dir, session, ws);
    }
    kx_buf_printf(&b,
                  "cd -- \"$__kx_d\" 2>/dev/null || { printf 'kx-sandbox: session %s: cannot "
                  "enter %%s; starting in %s\\n' \"$__kx_d\" >&2; cd %s; }\n"
                  "unset __kx_d\n",
                  session, ws, ws);
    /* The temporary files are named after the exec (unique among running ones). The shell
     * only writes them, with builtins (mkdir only the first time), and marks them complete
     * with a third, empty file; the broker renames them into place when it sees the command
     * exit (sb_session_commit) — no process is started for the save. */
    char tok[72];
    sb_session_token(token, tok, sizeof tok);
    kx_buf_printf(&b,
                  "__kx_save() {\n"
                  "  { { [ -d %s/%s ] || /bin/mkdir -p %s/%s; } &&\n"
                  "    export -p >%s/%s/.tmp.%s.env && pwd >%s/%s/.tmp.%s.cwd &&\n"
                  "    : >%s/%s/.tmp.%s.ok; } 2>/dev/null\n"
                  "}\n"
                  "trap __kx_save EXIT\n"
                  "eval ",
                  ws, dir, ws, dir, ws, dir, tok, ws, dir, tok, ws, dir, tok);
    put_quoted(&b, command);
    kx_buf_str(&b, "\n");
    return kx_buf_take(&b);
}

kx_err sb_session_cwd_read(int ws_fd, const char *session, char *out, size_t outlen)
{
    if (outlen == 0)
        return KX_ERR_INVALID;
    out[0] = '\0';
    char rel[SB_SESSION_MAX + 64];
    snprintf(rel, sizeof rel, "%s/%s.cwd", SB_SESSION_STATE_DIR, session);
    struct open_how how = {.flags = O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC,
                           .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
                               RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV};
    int fd = (int)syscall(SYS_openat2, ws_fd, rel, &how, sizeof how);
    if (fd < 0)
        return KX_ERR_NOT_FOUND;
    struct stat st;
    char raw[4096] = "";
    ssize_t n = -1;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode))
        n = read(fd, raw, sizeof raw - 1 < outlen - 1 ? sizeof raw - 1 : outlen - 1);
    close(fd);
    if (n <= 0 || raw[0] != '/')
        return KX_ERR_NOT_FOUND;
    raw[n] = '\0';
    raw[strcspn(raw, "\n")] = '\0';
    char *clean = kx_utf8_sanitize(raw, strlen(raw), NULL);
    if (clean == NULL)
        return KX_ERR_NOMEM;
    snprintf(out, outlen, "%s", clean);
    free(clean);
    return KX_OK;
}
