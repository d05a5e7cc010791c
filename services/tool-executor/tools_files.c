/* tools_files.c — Kortix's sb_files_tool: create_file, str_replace, full_file_rewrite,
 * delete_file, and read_file, over the sandbox-broker's kx.sandbox.files. Paths are relative
 * to /workspace (or start with it); the broker resolves them beneath the workspace and refuses
 * any that leave it (its error names the path). Outputs are Kortix's messages:
 *   create_file        "File '<p>' created successfully." (fails if the file exists)
 *   str_replace        "Replacement successful for '<p>'." — exactly one occurrence, else a
 *                      failure that says none was found, or lists the lines of each one
 *   full_file_rewrite  "File '<p>' completely rewritten successfully."
 *   delete_file        "File '<p>' deleted successfully."
 *   read_file          {"file_path", "content", "size", "truncated"} (what one reply carries)
 * A file is written in one message (the arguments came in one); str_replace works on files
 * that one read returns whole and keeps the file's permission bits. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "executor.h"
#include "kx/json.h"
#include "kx/log.h"
#include "kx/pb.h"
#include "kx/utf8.h"
#include "registry.h"

typedef struct files_state {
    char *replaced; /* str_replace: the new content, between the read and the write */
    size_t replaced_len;
    uint32_t mode;
} files_state;

static void state_free(te_call *c)
{
    files_state *st = c->state;
    if (st != NULL) {
        free(st->replaced);
        free(st);
        c->state = NULL;
    }
}

static void finish(te_call *c, te_outcome *o)
{
    te_call_finish(c, o); /* frees the state (c->state_free) */
}

static void fail(te_call *c, kx_err err, const char *msg)
{
    te_outcome o;
    te_outcome_init(&o);
    te_outcome_error(&o, err, "%s", msg);
    finish(c, &o);
}

static void succeed_json(te_call *c, json_t *v)
{
    te_outcome o;
    te_outcome_init(&o);
    te_outcome_json(&o, v, c->tool->name);
    finish(c, &o);
}

static void succeed_msg(te_call *c, const char *fmt, const char *path)
{
    char msg[600];
    snprintf(msg, sizeof msg, fmt, path);
    succeed_json(c, json_string(msg));
}

static void files_abort(te_call *c, te_outcome *o)
{
    if (c->req_active) {
        kx_bus_async_cancel(c->ex->async, c->req_id);
        c->req_active = false;
    }
    finish(c, o);
}

static const char *path_arg(const te_call *c)
{
    return kx_json_str(c->args, "file_path", "");
}

/* The reply, or NULL with the call finished (transport error, undecodable, error reply).
 * Shared with the other tools that use kx.sandbox.files (registry.h). */
Kx__V1__SandboxFilesReply *te_files_take_reply(te_call *c, kx_err err, natsMsg *reply)
{
    char msg[400];
    if (err != KX_OK) {
        te_outcome o;
        te_outcome_init(&o);
        if (err == KX_ERR_TIMEOUT) {
            o.timed_out = true;
            te_outcome_error(&o, KX_ERR_TIMEOUT, "%s timed out after %lld s", c->tool->name,
                             (long long)c->req_timeout_s);
        } else {
            te_outcome_error(&o, KX_ERR_UNAVAILABLE, "%s: the sandbox is not available: %s",
                             c->tool->name, kx_err_str(err));
        }
        finish(c, &o);
        return NULL;
    }
    Kx__V1__SandboxFilesReply *r =
        kx_pb_unpack(&kx__v1__sandbox_files_reply__descriptor, natsMsg_GetData(reply),
                     (size_t)natsMsg_GetDataLength(reply));
    natsMsg_Destroy(reply);
    if (r == NULL) {
        te_breaker_record(c->ex, c->req_dep, false);
        snprintf(msg, sizeof msg, "%s: the sandbox-broker's reply does not decode", c->tool->name);
        fail(c, KX_ERR_INTERNAL, msg);
        return NULL;
    }
    if (r->error != NULL) {
        te_breaker_record(c->ex, c->req_dep, !te_dep_error_counts(r->error->code));
        te_outcome o;
        te_outcome_init(&o);
        snprintf(msg, sizeof msg, "%s: %s", c->tool->name,
                 kx_pb_str_empty(r->error->message) ? "sandbox error" : r->error->message);
        te_outcome_error_code(&o, kx_pb_str_empty(r->error->code) ? "internal" : r->error->code,
                              msg);
        kx_pb_free(r);
        finish(c, &o);
        return NULL;
    }
    te_breaker_record(c->ex, c->req_dep, true);
    return r;
}

static void send_files(te_call *c, Kx__V1__SandboxFilesRequest *rq, te_reply_fn fn)
{
    rq->project_id = c->call->project_id;
    /* on failure te_request finishes the call (c->state_free frees our state) */
    te_request(c, "sandbox", KX_SUBJ_SANDBOX_FILES, &rq->base, te_call_deadline(c, 0), fn);
}

/* "644" -> 0644; false when not 3 or 4 octal digits. */
static bool parse_mode(const char *s, uint32_t *out)
{
    size_t n = strlen(s);
    if (n < 3 || n > 4)
        return false;
    uint32_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '7')
            return false;
        m = m * 8 + (uint32_t)(s[i] - '0');
    }
    *out = m & 0777;
    return true;
}

/* ---- writes ------------------------------------------------------------------------------ */

static void on_created(te_call *c, kx_err err, natsMsg *reply)
{
    Kx__V1__SandboxFilesReply *r = te_files_take_reply(c, err, reply);
    if (r == NULL)
        return;
    kx_pb_free(r);
    succeed_msg(c, "File '%s' created successfully.", path_arg(c));
}

static void on_rewritten(te_call *c, kx_err err, natsMsg *reply)
{
    Kx__V1__SandboxFilesReply *r = te_files_take_reply(c, err, reply);
    if (r == NULL)
        return;
    kx_pb_free(r);
    succeed_msg(c, "File '%s' completely rewritten successfully.", path_arg(c));
}

static void write_start(te_call *c, Kx__V1__SandboxWriteMode mode, te_reply_fn fn)
{
    char msg[200];
    uint32_t perm = 0644;
    const char *p = kx_json_str(c->args, "permissions", "644");
    if (!parse_mode(p, &perm)) {
        snprintf(msg, sizeof msg,
                 "%s: 'permissions' must be octal digits like \"644\" (got "
                 "\"%.16s\")",
                 c->tool->name, p);
        fail(c, KX_ERR_INVALID, msg);
        return;
    }
    json_t *content = json_object_get(c->args, "file_contents");
    Kx__V1__SandboxFilesRequest rq = KX__V1__SANDBOX_FILES_REQUEST__INIT;
    rq.op = KX__V1__SANDBOX_FILE_OP__SANDBOX_FILE_WRITE;
    rq.path = (char *)path_arg(c);
    rq.mode = mode;
    rq.permissions = perm;
    rq.data.data = (uint8_t *)json_string_value(content);
    rq.data.len = json_string_length(content);
    send_files(c, &rq, fn);
}

static void create_start(te_call *c)
{
    write_start(c, KX__V1__SANDBOX_WRITE_MODE__SANDBOX_WRITE_CREATE, on_created);
}

static void rewrite_start(te_call *c)
{
    write_start(c, KX__V1__SANDBOX_WRITE_MODE__SANDBOX_WRITE_OVERWRITE, on_rewritten);
}

/* ---- delete ------------------------------------------------------------------------------ */

static void on_deleted(te_call *c, kx_err err, natsMsg *reply)
{
    Kx__V1__SandboxFilesReply *r = te_files_take_reply(c, err, reply);
    if (r == NULL)
        return;
    kx_pb_free(r);
    succeed_msg(c, "File '%s' deleted successfully.", path_arg(c));
}

static void delete_start(te_call *c)
{
    Kx__V1__SandboxFilesRequest rq = KX__V1__SANDBOX_FILES_REQUEST__INIT;
    rq.op = KX__V1__SANDBOX_FILE_OP__SANDBOX_FILE_DELETE;
    rq.path = (char *)path_arg(c);
    send_files(c, &rq, on_deleted);
}

/* ---- read -------------------------------------------------------------------------------- */

static void on_read(te_call *c, kx_err err, natsMsg *reply)
{
    Kx__V1__SandboxFilesReply *r = te_files_take_reply(c, err, reply);
    if (r == NULL)
        return;
    size_t len = 0;
    char *text = kx_utf8_sanitize((const char *)r->data.data, r->data.len, &len);
    json_t *v = text != NULL
        ? json_pack("{s:s, s:s%, s:I, s:b}", "file_path", path_arg(c), "content", text, len,
                    "size", (json_int_t)(r->info != NULL ? r->info->size : (int64_t)len),
                    "truncated", !r->eof)
        : NULL;
    free(text);
    kx_pb_free(r);
    succeed_json(c, v);
}

static void read_start(te_call *c)
{
    Kx__V1__SandboxFilesRequest rq = KX__V1__SANDBOX_FILES_REQUEST__INIT;
    rq.op = KX__V1__SANDBOX_FILE_OP__SANDBOX_FILE_READ;
    rq.path = (char *)path_arg(c);
    send_files(c, &rq, on_read);
}

/* ---- str_replace: read, replace the one occurrence, write ------------------------------- */

static void on_replaced(te_call *c, kx_err err, natsMsg *reply)
{
    Kx__V1__SandboxFilesReply *r = te_files_take_reply(c, err, reply);
    if (r == NULL)
        return;
    kx_pb_free(r);
    succeed_msg(c, "Replacement successful for '%s'.", path_arg(c));
}

static size_t line_of(const char *s, size_t off)
{
    size_t line = 1;
    for (size_t i = 0; i < off; i++)
        line += s[i] == '\n';
    return line;
}

static void on_read_for_replace(te_call *c, kx_err err, natsMsg *reply)
{
    Kx__V1__SandboxFilesReply *r = te_files_take_reply(c, err, reply);
    if (r == NULL)
        return;
    char msg[700];
    if (!r->eof) {
        snprintf(msg, sizeof msg,
                 "str_replace: '%.200s' is larger than one read (%lld bytes): use "
                 "full_file_rewrite",
                 path_arg(c), (long long)(r->info ? r->info->size : 0));
        kx_pb_free(r);
        fail(c, KX_ERR_INVALID, msg);
        return;
    }
    const char *old = kx_json_str(c->args, "old_str", "");
    size_t olen = strlen(old);
    const char *data = (const char *)r->data.data;
    size_t dlen = r->data.len;
    size_t count = 0, first = 0, used = 0;
    char lines[300] = "";
    for (size_t i = 0; olen > 0 && i + olen <= dlen; i++) {
        if (memcmp(data + i, old, olen) == 0) {
            if (count == 0)
                first = i;
            int k = snprintf(lines + used, sizeof lines - used, "%s%zu", count ? ", " : "",
                             line_of(data, i));
            if (k > 0 && (size_t)k < sizeof lines - used)
                used += (size_t)k;
            count++;
            i += olen - 1;
        }
    }
    if (count != 1) {
        if (count == 0)
            snprintf(msg, sizeof msg, "str_replace: the string '%.200s' was not found in '%.200s'",
                     old, path_arg(c));
        else
            snprintf(msg, sizeof msg,
                     "str_replace: the string occurs %zu times in '%.200s' (lines %s); it must "
                     "occur exactly once",
                     count, path_arg(c), lines);
        kx_pb_free(r);
        fail(c, KX_ERR_INVALID, msg);
        return;
    }
    const char *nw = kx_json_str(c->args, "new_str", "");
    size_t nlen = strlen(nw);
    files_state *st = c->state;
    st->replaced_len = dlen - olen + nlen;
    st->replaced = malloc(st->replaced_len + 1);
    if (st->replaced == NULL) {
        kx_pb_free(r);
        fail(c, KX_ERR_NOMEM, "str_replace: out of memory");
        return;
    }
    memcpy(st->replaced, data, first);
    memcpy(st->replaced + first, nw, nlen);
    memcpy(st->replaced + first + nlen, data + first + olen, dlen - first - olen);
    st->mode = r->info != NULL && r->info->mode != 0 ? (r->info->mode & 0777) : 0644;
    kx_pb_free(r);

    Kx__V1__SandboxFilesRequest rq = KX__V1__SANDBOX_FILES_REQUEST__INIT;
    rq.op = KX__V1__SANDBOX_FILE_OP__SANDBOX_FILE_WRITE;
    rq.path = (char *)path_arg(c);
    rq.mode = KX__V1__SANDBOX_WRITE_MODE__SANDBOX_WRITE_OVERWRITE;
    rq.permissions = st->mode;
    rq.data.data = (uint8_t *)st->replaced;
    rq.data.len = st->replaced_len;
    send_files(c, &rq, on_replaced);
}

static void replace_start(te_call *c)
{
    files_state *st = calloc(1, sizeof *st);
    if (st == NULL) {
        fail(c, KX_ERR_NOMEM, "str_replace: out of memory");
        return;
    }
    c->state = st;
    c->state_free = state_free;
    Kx__V1__SandboxFilesRequest rq = KX__V1__SANDBOX_FILES_REQUEST__INIT;
    rq.op = KX__V1__SANDBOX_FILE_OP__SANDBOX_FILE_READ;
    rq.path = (char *)path_arg(c);
    send_files(c, &rq, on_read_for_replace);
}

/* ---- the table --------------------------------------------------------------------------- */

#define PATH_PROP                                                                          \
    "\"file_path\": {\"type\": \"string\", \"minLength\": 1, \"maxLength\": 4096, "        \
    "\"description\": \"Path relative to /workspace (e.g. src/main.py), or starting with " \
    "/workspace.\"}"
#define CONTENTS_PROP \
    "\"file_contents\": {\"type\": \"string\", \"description\": \"The whole content of the file.\"}"
#define PERM_PROP                                                                      \
    "\"permissions\": {\"type\": \"string\", \"default\": \"644\", \"minLength\": 3, " \
    "\"maxLength\": 4, \"description\": \"Octal permission bits of the file, e.g. 644.\"}"

const te_tool te_files_tools[] = {
    {"create_file", "sb_files_tool", TE_TOOL_SANDBOX,
     "{\"type\": \"function\", \"function\": {\"name\": \"create_file\", \"description\": "
     "\"Create a new file (parent directories are created). Fails if the file exists.\", "
     "\"parameters\": {\"type\": \"object\", \"properties\": {" PATH_PROP ", " CONTENTS_PROP
     ", " PERM_PROP "}, \"required\": [\"file_path\", \"file_contents\"]}}}",
     create_start, files_abort},
    {"str_replace", "sb_files_tool", TE_TOOL_SANDBOX,
     "{\"type\": \"function\", \"function\": {\"name\": \"str_replace\", \"description\": "
     "\"Replace text that occurs exactly once in a file.\", \"parameters\": {\"type\": "
     "\"object\", \"properties\": {" PATH_PROP ", \"old_str\": {\"type\": \"string\", "
     "\"minLength\": 1, \"description\": \"The text to replace; must occur exactly once.\"}, "
     "\"new_str\": {\"type\": \"string\", \"description\": \"The replacement.\"}}, "
     "\"required\": [\"file_path\", \"old_str\", \"new_str\"]}}}",
     replace_start, files_abort},
    {"full_file_rewrite", "sb_files_tool", TE_TOOL_SANDBOX,
     "{\"type\": \"function\", \"function\": {\"name\": \"full_file_rewrite\", "
     "\"description\": \"Replace the whole content of a file (created if missing).\", "
     "\"parameters\": {\"type\": \"object\", \"properties\": {" PATH_PROP ", " CONTENTS_PROP
     ", " PERM_PROP "}, \"required\": [\"file_path\", \"file_contents\"]}}}",
     rewrite_start, files_abort},
    {"delete_file", "sb_files_tool", TE_TOOL_SANDBOX,
     "{\"type\": \"function\", \"function\": {\"name\": \"delete_file\", \"description\": "
     "\"Delete a file.\", \"parameters\": {\"type\": \"object\", \"properties\": {" PATH_PROP
     "}, \"required\": [\"file_path\"]}}}",
     delete_start, files_abort},
    {"read_file", "sb_files_tool", TE_TOOL_SANDBOX,
     "{\"type\": \"function\", \"function\": {\"name\": \"read_file\", \"description\": "
     "\"Read a file of the workspace (as much as one reply carries; 'truncated' says when "
     "there is more).\", \"parameters\": {\"type\": \"object\", \"properties\": {" PATH_PROP
     "}, \"required\": [\"file_path\"]}}}",
     read_start, files_abort},
};
const size_t te_files_tools_n = sizeof te_files_tools / sizeof te_files_tools[0];
