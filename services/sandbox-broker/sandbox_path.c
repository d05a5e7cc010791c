/* sandbox_path.c — turning a project id, a folder and a session name from a request into
 * paths under the sandbox root, refusing anything that could step outside the workspace.
 * See sandbox_path.h for the layout. */
#include "sandbox_path.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>

#include "kx/time.h"
#include "kx/uuid.h"

/* Appends the n bytes at s to out (length *len, capacity cap, kept NUL-terminated). */
static bool append(char *out, size_t cap, size_t *len, const char *s, size_t n)
{
    if (*len + n + 1 > cap)
        return false;
    memcpy(out + *len, s, n);
    *len += n;
    out[*len] = '\0';
    return true;
}

kx_err sb_folder_normalize(const char *folder, char *out, size_t outlen, char *why, size_t whylen)
{
    return sb_path_normalize("folder", folder, out, outlen, why, whylen);
}

kx_err sb_path_normalize(const char *what, const char *folder, char *out, size_t outlen, char *why,
                         size_t whylen)
{
    if (outlen == 0)
        return KX_ERR_INVALID;
    out[0] = '\0';
    if (folder == NULL || folder[0] == '\0')
        return KX_OK;
    for (const unsigned char *c = (const unsigned char *)folder; *c != '\0'; c++) {
        if (*c < 0x20 || *c == 0x7f) {
            snprintf(why, whylen, "%s '%s' contains a control character", what, folder);
            return KX_ERR_INVALID;
        }
    }

    const char *p = folder;
    if (p[0] == '/') {
        /* Only the sandbox-visible root is an acceptable absolute prefix. */
        size_t rl = strlen(SB_VISIBLE_ROOT);
        if (strncmp(p, SB_VISIBLE_ROOT, rl) != 0 || (p[rl] != '\0' && p[rl] != '/')) {
            snprintf(why, whylen,
                     "%s '%s' must be relative to the workspace (or start with /workspace)", what,
                     folder);
            return KX_ERR_INVALID;
        }
        p += rl;
    }

    size_t len = 0;
    while (*p != '\0') {
        while (*p == '/')
            p++;
        if (*p == '\0')
            break;
        const char *end = strchr(p, '/');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        if (n == 2 && p[0] == '.' && p[1] == '.') {
            snprintf(why, whylen, "%s '%s' must not contain '..'", what, folder);
            out[0] = '\0';
            return KX_ERR_INVALID;
        }
        if (!(n == 1 && p[0] == '.')) {
            if ((len > 0 && !append(out, outlen, &len, "/", 1)) ||
                !append(out, outlen, &len, p, n) || len > SB_FOLDER_MAX) {
                snprintf(why, whylen, "%s '%.64s...' is too long (at most %d bytes)", what, folder,
                         SB_FOLDER_MAX);
                out[0] = '\0';
                return KX_ERR_INVALID;
            }
        }
        p += n;
    }
    return KX_OK;
}

bool sb_session_name_valid(const char *name)
{
    if (name == NULL || name[0] == '\0')
        return false;
    size_t n = 0;
    for (const unsigned char *c = (const unsigned char *)name; *c != '\0'; c++, n++) {
        if (n >= SB_SESSION_MAX)
            return false;
        if (*c > 0x7f || !(isalnum(*c) || *c == '_' || *c == '.' || *c == '-'))
            return false;
    }
    return true;
}

void sb_session_name_default(unsigned int random32, char *out, size_t outlen)
{
    snprintf(out, outlen, "session_%08x", random32 & 0xffffffffu);
}

kx_err sb_exec_request_check(const Kx__V1__SandboxExecRequest *rq, char folder[SB_FOLDER_MAX + 1],
                             char session[SB_SESSION_MAX + 1], char *why, size_t whylen)
{
    folder[0] = '\0';
    session[0] = '\0';
    if (rq == NULL) {
        snprintf(why, whylen, "request is not a valid kx.v1.SandboxExecRequest");
        return KX_ERR_INVALID;
    }
    if (kx_pb_str_empty(rq->exec_id) || strlen(rq->exec_id) > SB_EXEC_ID_MAX) {
        snprintf(why, whylen, "exec_id is required (1..%d bytes)", SB_EXEC_ID_MAX);
        return KX_ERR_INVALID;
    }
    if (!kx_uuid_valid(rq->project_id)) {
        snprintf(why, whylen, "project_id '%.64s' is not a valid UUID",
                 rq->project_id != NULL ? rq->project_id : "");
        return KX_ERR_INVALID;
    }
    if (kx_pb_str_empty(rq->command)) {
        snprintf(why, whylen, "command is required and must be non-empty");
        return KX_ERR_INVALID;
    }
    if (sb_folder_normalize(rq->folder, folder, SB_FOLDER_MAX + 1, why, whylen) != KX_OK)
        return KX_ERR_INVALID;
    if (kx_pb_str_empty(rq->session_name)) {
        unsigned int r = 0;
        if (getrandom(&r, sizeof r, 0) != (ssize_t)sizeof r)
            r = (unsigned int)kx_mono_us();
        sb_session_name_default(r, session, SB_SESSION_MAX + 1);
    } else if (sb_session_name_valid(rq->session_name)) {
        snprintf(session, SB_SESSION_MAX + 1, "%s", rq->session_name);
    } else {
        snprintf(why, whylen, "session_name '%.80s' is not valid: use 1..%d of A-Z a-z 0-9 _ . -",
                 rq->session_name, SB_SESSION_MAX);
        return KX_ERR_INVALID;
    }
    if (rq->timeout_s < 0 || rq->max_output_bytes < 0) {
        snprintf(why, whylen, "timeout_s and max_output_bytes must not be negative");
        return KX_ERR_INVALID;
    }
    return KX_OK;
}

/* "<root>/<project lowercased>" into out; the common prefix of the two paths below. */
static kx_err project_dir(const char *root, const char *project_id, char *out, size_t outlen,
                          size_t *len)
{
    int n = snprintf(out, outlen, "%s/%s", root, project_id);
    if (n < 0 || (size_t)n >= outlen)
        return KX_ERR_INVALID;
    for (char *c = out + strlen(root) + 1; *c != '\0'; c++)
        *c = (char)tolower((unsigned char)*c);
    *len = (size_t)n;
    return KX_OK;
}

kx_err sb_workspace_path(const char *root, const char *project_id, const char *folder, char *out,
                         size_t outlen)
{
    size_t len = 0;
    if (project_dir(root, project_id, out, outlen, &len) != KX_OK)
        return KX_ERR_INVALID;
    int n = (folder != NULL && folder[0] != '\0')
        ? snprintf(out + len, outlen - len, "/workspace/%s", folder)
        : snprintf(out + len, outlen - len, "/workspace");
    return (n < 0 || (size_t)n >= outlen - len) ? KX_ERR_INVALID : KX_OK;
}

kx_err sb_sessions_dir(const char *root, const char *project_id, char *out, size_t outlen)
{
    size_t len = 0;
    if (project_dir(root, project_id, out, outlen, &len) != KX_OK)
        return KX_ERR_INVALID;
    int n = snprintf(out + len, outlen - len, "/.kx/sessions");
    return (n < 0 || (size_t)n >= outlen - len) ? KX_ERR_INVALID : KX_OK;
}

kx_err sb_visible_cwd(const char *folder, char *out, size_t outlen)
{
    int n = (folder != NULL && folder[0] != '\0')
        ? snprintf(out, outlen, "%s/%s", SB_VISIBLE_ROOT, folder)
        : snprintf(out, outlen, "%s", SB_VISIBLE_ROOT);
    return (n < 0 || (size_t)n >= outlen) ? KX_ERR_INVALID : KX_OK;
}

kx_err sb_mkdir_p(const char *path, mode_t mode)
{
    char buf[4096];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof buf) {
        errno = ENAMETOOLONG;
        return KX_ERR_IO;
    }
    memcpy(buf, path, n + 1);
    /* Create each prefix ending before a '/', then the whole path. */
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != '\0')
            continue;
        char saved = buf[i];
        buf[i] = '\0';
        if (mkdir(buf, mode) != 0 && errno != EEXIST)
            return KX_ERR_IO;
        struct stat st;
        if (stat(buf, &st) != 0)
            return KX_ERR_IO;
        if (!S_ISDIR(st.st_mode)) {
            errno = ENOTDIR;
            return KX_ERR_IO;
        }
        buf[i] = saved;
    }
    return KX_OK;
}
