/* initiate_files.c — POST /api/agent/initiate's files[]: safe names, limits, the prompt's lines
 * and the upload into the new project's sandbox (see initiate_files.h). */
#include "initiate_files.h"

#include <jansson.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kx/buf.h"
#include "kx/utf8.h"
#include "reply.h"
#include "sandbox_routes.h"

/* The longest extension kept when a long name is cut: ".tar.gz" yes, ".<200 bytes>" no. */
#define EXT_MAX 16

/* ---- names ------------------------------------------------------------------------------ */

/* The characters of raw, each unsafe one as '_' (NUL-terminated, malloc'd; NULL on OOM). */
static char *scrub(const char *raw)
{
    size_t len = strlen(raw);
    char *s = malloc(len + 1);
    if (s == NULL)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        const unsigned char *c = (const unsigned char *)raw + i;
        size_t n = kx_utf8_seq_len(c, len - i);
        if (n == 0) { /* not UTF-8 */
            s[o++] = '_';
            i++;
            continue;
        }
        bool control = (n == 1 && (c[0] < 0x20 || c[0] == 0x7f)) ||
            (n == 2 && c[0] == 0xc2 && c[1] < 0xa0); /* C1: U+0080..U+009F */
        if (control || (n == 1 && (c[0] == '/' || c[0] == '\\'))) {
            s[o++] = '_';
        } else {
            memcpy(s + o, c, n);
            o += n;
        }
        i += n;
    }
    s[o] = '\0';
    return s;
}

/* One dot for each run of dots; no leading dots or spaces, no trailing ones. In place. */
static void tidy(char *s)
{
    size_t o = 0;
    for (size_t i = 0; s[i] != '\0'; i++) {
        if (s[i] == '.' && o > 0 && s[o - 1] == '.')
            continue;
        s[o++] = s[i];
    }
    s[o] = '\0';
    size_t start = 0;
    while (s[start] == '.' || s[start] == ' ')
        start++;
    memmove(s, s + start, o - start + 1);
    o -= start;
    while (o > 0 && (s[o - 1] == '.' || s[o - 1] == ' '))
        s[--o] = '\0';
}

void gw_upload_name(const char *raw, char out[GW_UPLOAD_NAME_MAX + 1])
{
    char *s = scrub(raw != NULL ? raw : "");
    if (s == NULL) {
        snprintf(out, GW_UPLOAD_NAME_MAX + 1, "file");
        return;
    }
    tidy(s);
    size_t len = strlen(s);
    if (len > GW_UPLOAD_NAME_MAX) {
        const char *dot = strrchr(s, '.');
        size_t ext = dot != NULL && dot != s ? len - (size_t)(dot - s) : 0;
        if (ext > EXT_MAX)
            ext = 0;
        /* the stem's longest prefix of at most the room left that ends at a character */
        size_t stem = kx_utf8_floor(s, len - ext, GW_UPLOAD_NAME_MAX - ext);
        memmove(s + stem, s + len - ext, ext + 1);
        tidy(s); /* the cut may have left a trailing dot or space before the extension */
    }
    snprintf(out, GW_UPLOAD_NAME_MAX + 1, "%s", s[0] != '\0' ? s : "file");
    free(s);
}

/* name, or name-2, name-3, … (before the extension): one no earlier file of the plan has. */
static void make_unique(const gw_upload_plan *plan, const char *name, char *out, size_t cap)
{
    snprintf(out, cap, "%s", name);
    const char *dot = strrchr(name, '.');
    int stem = dot != NULL && dot != name ? (int)(dot - name) : (int)strlen(name);
    for (int k = 2;; k++) {
        bool taken = false;
        for (size_t i = 0; i < plan->n && !taken; i++)
            taken = strcmp(plan->files[i].name, out) == 0;
        if (!taken)
            return;
        snprintf(out, cap, "%.*s-%d%s", stem, name, k, name + stem);
    }
}

/* ---- the plan --------------------------------------------------------------------------- */

bool gw_upload_plan_make(gw_form *form, int64_t file_max, int64_t total_max, gw_upload_plan *plan,
                         gw_reply *reply)
{
    plan->n = 0;
    const gw_form_upload *up = NULL;
    bool too_many = false;
    size_t n = gw_form_uploads(form, &up, &too_many);
    if (too_many) {
        gw_reply_error(reply, MHD_HTTP_BAD_REQUEST,
                       "files[]: at most %d files may be uploaded with one request",
                       GW_FORM_MAX_UPLOADS);
        return false;
    }
    if (gw_form_files(form) > 0) {
        gw_reply_error(reply, MHD_HTTP_BAD_REQUEST,
                       "an uploaded file in a field other than files[]: only files[] takes files");
        return false;
    }
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        char safe[GW_UPLOAD_NAME_MAX + 1];
        gw_upload_name(up[i].filename, safe);
        gw_upload_file *f = &plan->files[i];
        char name[sizeof f->name];
        make_unique(plan, safe, name, sizeof name);
        memcpy(f->name, name, sizeof name);
        snprintf(f->path, sizeof f->path, GW_UPLOAD_DIR "/%s", name);
        f->data = up[i].data;
        f->len = up[i].len;
        plan->n = i + 1;
        if ((int64_t)f->len > file_max) {
            gw_reply_error(reply, MHD_HTTP_CONTENT_TOO_LARGE,
                           "files[%zu] ('%s') is %zu bytes: a file may have at most %lld "
                           "(KX_INITIATE_FILE_MAX_BYTES)",
                           i, f->name, f->len, (long long)file_max);
            return false;
        }
        total += f->len;
    }
    if (total > (uint64_t)total_max) {
        gw_reply_error(reply, MHD_HTTP_CONTENT_TOO_LARGE,
                       "files[]: the %zu files have %llu bytes: together they may have at most "
                       "%lld (KX_INITIATE_FILES_MAX_BYTES)",
                       n, (unsigned long long)total, (long long)total_max);
        return false;
    }
    return true;
}

char *gw_upload_prompt(const char *prompt, const gw_upload_plan *plan)
{
    kx_buf b = {0};
    kx_err err = kx_buf_add(&b, prompt, strlen(prompt));
    if (plan->n > 0 && prompt[0] != '\0' && err == KX_OK)
        err = kx_buf_add(&b, "\n\n", 2);
    for (size_t i = 0; i < plan->n && err == KX_OK; i++) {
        char line[sizeof plan->files[i].path + 32];
        int len = snprintf(line, sizeof line, "[Uploaded File: %s]\n", plan->files[i].path);
        err = kx_buf_add(&b, line, (size_t)len);
    }
    if (err != KX_OK || b.s == NULL) {
        kx_buf_free(&b);
        return err == KX_OK ? strdup("") : NULL;
    }
    return b.s; /* NUL-terminated by kx_buf */
}

/* ---- the upload ------------------------------------------------------------------------- */

/* reply (a broker's refusal) again, naming the file. */
static void name_the_file(gw_reply *reply, size_t i, const gw_upload_file *f)
{
    json_t *j = reply->body != NULL ? json_loads(reply->body, 0, NULL) : NULL;
    const char *why = json_string_value(json_object_get(j, "detail"));
    char detail[1024];
    snprintf(detail, sizeof detail, "%s", why != NULL ? why : "the sandbox refused it");
    json_decref(j);
    unsigned int status = reply->status != 0 ? reply->status : MHD_HTTP_BAD_GATEWAY;
    gw_reply_free(reply);
    gw_reply_error(reply, status, "files[%zu] ('%s') could not be uploaded to %s: %s", i, f->name,
                   f->path, detail);
}

bool gw_upload_put(gw_app *app, const gw_request *req, const char *project,
                   const gw_upload_plan *plan, Kx__V1__SandboxInfo **info, gw_reply *reply)
{
    *info = gw_sandbox_ensure(app, req, project, reply);
    if (*info == NULL) {
        /* It may have been made before the failure (e.g. the reply was late). */
        gw_sandbox_discard(app, req, project);
        return false;
    }
    for (size_t i = 0; i < plan->n; i++) {
        const gw_upload_file *f = &plan->files[i];
        if (!gw_sandbox_write(app, req, project, f->path, f->data, f->len, reply)) {
            name_the_file(reply, i, f);
            gw_sandbox_discard(app, req, project);
            kx_pb_free(*info);
            *info = NULL;
            return false;
        }
    }
    return true;
}
