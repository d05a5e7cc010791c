/* test_sandbox_lifecycle.c — a project's sandbox from creation to deletion, its preview links
 * and the gateway's sandbox routes, with the whole stack (real NATS, Postgres, bubblewrap):
 *   - kx.sandbox.create/get/start/stop/archive/delete/ensure_active over the bus: one id from
 *     creation to deletion, files kept across stop and archive, gone after delete;
 *   - a server started in the background by one command answers the next command;
 *   - auto-stop and auto-archive with short intervals, recorded on projects.sandbox by the
 *     gateway from the broker's state events;
 *   - a creation that fails leaves nothing behind (no uid record, no record) and the next call
 *     succeeds;
 *   - the gateway: ensure-active, files (upload in chunks, list, content, delete), delete, with
 *     404/403/422 and another account refused;
 *   - a deleted project's sandbox: deleted with it, 404 for every route (even public before);
 *   - a path that is not UTF-8: 400, nothing written or deleted; such a name listed as U+FFFD;
 *   - a preview link: a web server in the sandbox, its page fetched through the gateway; another
 *     account 404, a wrong token 403, no token 401, a port nobody listens on 502;
 *   - POST, PUT, PATCH and DELETE through a preview link with their body and Content-Type; a
 *     body over KX_MAX_BODY_BYTES is a 413;
 *   - at most KX_SANDBOX_MAX_PER_ACCOUNT (2 here) sandboxes running per account: the third is
 *     a 429 naming the limit, another account is not concerned, a stopped one makes room; a
 *     public project's sandbox started by another account's read counts for its owner;
 *   - downloads are streamed: a file over the old 64 MiB bound comes whole and byte-exact, one
 *     past KX_SANDBOX_DOWNLOAD_MAX_MB (100 here) is a 413 naming it; an unread download holds
 *     a bus message or two, not the file (KX_HTTP_HELD_ACCOUNT_MB, 16 MiB here: many unread
 *     downloads of one account fit, then a 503; another account's is served; the bytes come
 *     back when the clients go); a file deleted or cut shorter mid-download is a failed
 *     transfer, never a short 200 (kx_gateway_downloads_cut_total counts it); one that grows
 *     is sent up to the size announced; the gateway told to stop now with downloads in flight (one
 *     suspended on a READ) exits cleanly and cuts them. */
#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <signal.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"
#include "sandbox_client.h"
#include "kx/bus.h"
#include "kx/pb.h"
#include "kx/time.h"
#include "kx/uuid.h"
#include "stack.h"

static kx_th_stack g_stack;
static kx_bus *g_bus;

static const char *const STACK_ENV[] = {
    "KX_SANDBOX_AUTO_STOP_MS=1500",
    "KX_SANDBOX_AUTO_ARCHIVE_MS=1500",
    "KX_MAX_BODY_BYTES=4194304",
    "KX_SANDBOX_MAX_PER_ACCOUNT=2",
    "KX_HTTP_HELD_ACCOUNT_MB=16",
    "KX_HTTP_HELD_MB=24",
    "KX_SANDBOX_DOWNLOAD_MAX_MB=100",
    /* the unread downloads' test meets KX_HTTP_HELD_ACCOUNT_MB, not the bound on downloads in
     * flight (4 by default; it_gateway_downloads tests that one) */
    "KX_SANDBOX_DOWNLOADS_PER_ACCOUNT=64",
    NULL,
};

/* ---- bus helpers ------------------------------------------------------------------------ */

typedef Kx__V1__SandboxLifecycleReply life_t;

/* An error's code and message, "(none)" when there is no error. */
static const char *code_of(const Kx__V1__Error *e)
{
    return e != NULL && e->code != NULL ? e->code : "(none)";
}
static const char *msg_of(const Kx__V1__Error *e)
{
    return e != NULL && e->message != NULL ? e->message : "(none)";
}

static life_t *life(const char *op, const char *project)
{
    kx_err err = KX_OK;
    life_t *rep = kx_th_life_request(g_bus, NULL, op, project, 30000, NULL, &err);
    if (rep == NULL)
        fail_msg("kx.sandbox.%s failed: %s", op, kx_err_str(err));
    return rep;
}

/* op must succeed; returns the sandbox's state (static buffer) and fills id if not NULL. */
static const char *life_ok(const char *op, const char *project, char id[KX_UUID_LEN + 1])
{
    static char state[32];
    life_t *r = life(op, project);
    if (r->error != NULL)
        fail_msg("%s: %s: %s", op, r->error->code, r->error->message);
    assert_non_null(r->sandbox);
    snprintf(state, sizeof state, "%s", r->sandbox->state);
    if (id != NULL)
        snprintf(id, KX_UUID_LEN + 1, "%s", r->sandbox->id);
    assert_string_equal(r->sandbox->provider, "local");
    kx_pb_free(r);
    return state;
}

static void life_err(const char *op, const char *project, const char *code)
{
    life_t *r = life(op, project);
    if (r->error == NULL)
        fail_msg("%s: expected %s, got state %s", op, code, r->sandbox ? r->sandbox->state : "");
    assert_string_equal(code_of(r->error), code);
    kx_pb_free(r);
}

static Kx__V1__SandboxExecResult *exec_in(const char *project, const char *command, bool blocking)
{
    kx_th_exec x = {.project = project, .command = command, .blocking = blocking};
    kx_err err = KX_OK;
    Kx__V1__SandboxExecResult *res = kx_th_exec_request(g_bus, &x, NULL, &err);
    if (res == NULL)
        fail_msg("exec '%s' failed: %s", command, kx_err_str(err));
    if (res->error != NULL)
        fail_msg("exec '%s' refused: %s", command, res->error->message);
    return res;
}

/* A blocking command; its stdout (malloc'd), asserting exit 0. */
static char *sh(const char *project, const char *command)
{
    Kx__V1__SandboxExecResult *res = exec_in(project, command, true);
    if (res->exit_code != 0)
        fail_msg("'%s' exited %d: %s%s", command, res->exit_code, res->stdout, res->stderr);
    char *out = strdup(res->stdout);
    kx_pb_free(res);
    return out;
}

static Kx__V1__SandboxPreviewReply *preview(const char *project, int port, const char *token)
{
    kx_err err = KX_OK;
    Kx__V1__SandboxPreviewReply *rep =
        kx_th_preview_request(g_bus, project, port, token, 10000, &err);
    if (rep == NULL)
        fail_msg("kx.sandbox.preview failed: %s", kx_err_str(err));
    return rep;
}

static bool exists(const char *project, const char *rel)
{
    char p[1200];
    snprintf(p, sizeof p, "%s/%s/%s", g_stack.sandbox_root, project, rel);
    struct stat st;
    return lstat(p, &st) == 0;
}

/* Waits (at most timeout_ms) for `get` to say state. */
static bool wait_state(const char *project, const char *state, int64_t timeout_ms)
{
    int64_t until = kx_mono_ms() + timeout_ms;
    while (kx_mono_ms() < until) {
        life_t *r = life("get", project);
        bool ok = r->sandbox != NULL && strcmp(r->sandbox->state, state) == 0;
        kx_pb_free(r);
        if (ok)
            return true;
        usleep(100 * 1000);
    }
    return false;
}

/* A project row of account (so the gateway can find it). */
static void make_project(const char *project, const char *account)
{
    const char *p[] = {project, account};
    PGresult *r = kx_th_sql(&g_stack,
                            "INSERT INTO projects (project_id, name, account_id) "
                            "VALUES ($1::uuid, 'sandbox test', $2::uuid)",
                            2, p);
    assert_non_null(r);
    PQclear(r);
}

static char *row_sandbox(const char *project, const char *key)
{
    char sql[200];
    snprintf(sql, sizeof sql, "SELECT sandbox->>'%s' FROM projects WHERE project_id = $1::uuid",
             key);
    const char *p[] = {project};
    return kx_th_sql_value(&g_stack, sql, 1, p);
}

static bool wait_row_state(const char *project, const char *state, int64_t timeout_ms)
{
    int64_t until = kx_mono_ms() + timeout_ms;
    while (kx_mono_ms() < until) {
        char *v = row_sandbox(project, "state");
        bool ok = v != NULL && strcmp(v, state) == 0;
        free(v);
        if (ok)
            return true;
        usleep(100 * 1000);
    }
    return false;
}

/* ---- cases ------------------------------------------------------------------------------ */

static void test_lifecycle_over_the_bus(void **state)
{
    char p[KX_UUID_LEN + 1], id[KX_UUID_LEN + 1], id2[KX_UUID_LEN + 1];
    kx_uuid_new(p);
    life_err("get", p, "not_found");
    life_err("start", p, "not_found");
    life_err("stop", p, "not_found");
    assert_string_equal(life_ok("create", p, id), "running");
    assert_true(kx_uuid_valid(id));
    assert_string_equal(life_ok("create", p, id2), "running"); /* idempotent: the same one */
    assert_string_equal(id, id2);
    assert_string_equal(life_ok("get", p, id2), "running");
    assert_string_equal(id, id2);
    free(sh(p, "echo kept > kept.txt"));
    /* The session's state was saved and renamed into place by the broker: no temporary left. */
    free(sh(p, "cd sub 2>/dev/null || mkdir sub; export KX_T=1"));
    char *ls = sh(p, "ls -a .kx-session");
    assert_null(strstr(ls, ".tmp."));
    assert_non_null(strstr(ls, ".env"));
    free(ls);

    assert_string_equal(life_ok("stop", p, NULL), "stopped");
    assert_string_equal(life_ok("get", p, NULL), "stopped");
    assert_string_equal(life_ok("start", p, id2), "running");
    assert_string_equal(id, id2);
    char *out = sh(p, "cat kept.txt");
    assert_string_equal(out, "kept\n");
    free(out);

    assert_string_equal(life_ok("archive", p, NULL), "archived");
    assert_string_equal(life_ok("stop", p, NULL), "archived"); /* stop keeps it archived */
    assert_true(exists(p, "workspace/kept.txt"));
    assert_string_equal(life_ok("ensure_active", p, id2), "running");
    assert_string_equal(id, id2);
    out = sh(p, "cat kept.txt");
    assert_string_equal(out, "kept\n");
    free(out);

    assert_string_equal(life_ok("delete", p, NULL), "deleted");
    assert_false(exists(p, ""));
    life_err("get", p, "not_found");
    assert_string_equal(life_ok("delete", p, NULL), "deleted"); /* idempotent */
    /* A command afterwards makes a new sandbox, with a new id and no old file. */
    out = sh(p, "ls");
    assert_string_equal(out, "");
    free(out);
    assert_string_equal(life_ok("get", p, id2), "running");
    assert_string_not_equal(id, id2);
    life_ok("delete", p, NULL);

    life_err("get", "not-a-uuid", "invalid_argument");
}

static void test_background_server_survives_between_commands(void **state)
{
    char p[KX_UUID_LEN + 1];
    kx_uuid_new(p);
    Kx__V1__SandboxExecResult *bg =
        exec_in(p,
                "echo hello-from-bg > index.html; exec python3 -m http.server 8123 "
                "--bind 127.0.0.1",
                false);
    assert_true(bg->started);
    kx_pb_free(bg);
    char *out = NULL;
    for (int i = 0; i < 100; i++) {
        free(out);
        out = sh(p,
                 "python3 -c \"import urllib.request as u\n"
                 "try: print(u.urlopen('http://127.0.0.1:8123/index.html').read().decode())\n"
                 "except Exception as e: print('no', e)\"");
        if (strncmp(out, "hello-from-bg", 13) == 0)
            break;
        usleep(100 * 1000);
    }
    assert_string_equal(out, "hello-from-bg\n\n");
    free(out);
    life_ok("delete", p, NULL);
}

static void test_auto_stop_and_archive_recorded(void **state)
{
    char p[KX_UUID_LEN + 1], account[KX_UUID_LEN + 1], id[KX_UUID_LEN + 1];
    kx_uuid_new(p);
    kx_uuid_new(account);
    make_project(p, account);
    assert_string_equal(life_ok("create", p, id), "running");
    assert_true(wait_row_state(p, "running", 5000));
    char *rid = row_sandbox(p, "id");
    assert_non_null(rid);
    assert_string_equal(rid, id);
    free(rid);
    char *prov = row_sandbox(p, "provider");
    assert_string_equal(prov, "local");
    free(prov);
    /* Idle 1.5 s: stopped; stopped 1.5 s more: archived (sweeps every ~375 ms). */
    assert_true(wait_state(p, "stopped", 15000) || wait_state(p, "archived", 100));
    assert_true(wait_state(p, "archived", 15000));
    assert_true(wait_row_state(p, "archived", 5000));
    assert_true(exists(p, "workspace"));
    assert_string_equal(life_ok("ensure_active", p, NULL), "running");
    assert_true(wait_row_state(p, "running", 5000));
    life_ok("delete", p, NULL);
    assert_true(wait_row_state(p, "deleted", 5000));
}

/* Whether any uid record under <root>/.uids names project. */
static bool uid_recorded(const char *project)
{
    char dir[700];
    snprintf(dir, sizeof dir, "%s/.uids", g_stack.sandbox_root);
    DIR *d = opendir(dir);
    if (d == NULL)
        return false;
    bool found = false;
    struct dirent *de;
    while (!found && (de = readdir(d)) != NULL) {
        char path[1000], buf[64] = "";
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        FILE *f = fopen(path, "r");
        if (f == NULL)
            continue;
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        buf[n] = '\0';
        fclose(f);
        found = strcasecmp(buf, project) == 0;
    }
    closedir(d);
    return found;
}

static void test_failed_creation_leaves_nothing(void **state)
{
    char p[KX_UUID_LEN + 1];
    kx_uuid_new(p);
    /* A file where the project's directory goes: the workspace cannot be made. */
    char path[800];
    snprintf(path, sizeof path, "%s/%s", g_stack.sandbox_root, p);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fclose(f);
    life_t *r = life("create", p);
    assert_string_equal(code_of(r->error), "internal");
    assert_non_null(strstr(msg_of(r->error), "workspace"));
    kx_pb_free(r);
    assert_false(uid_recorded(p));
    life_err("get", p, "not_found");
    unlink(path);
    char id[KX_UUID_LEN + 1];
    assert_string_equal(life_ok("create", p, id), "running"); /* the next call succeeds */
    assert_true(uid_recorded(p));
    life_ok("delete", p, NULL);
    assert_false(uid_recorded(p));
}

/* ---- the gateway ------------------------------------------------------------------------ */

static long http(const char *method, const char *path, const char *token, const char *ct,
                 const char *body, size_t len, kx_http_resp *out)
{
    kx_http_resp tmp;
    kx_http_resp *r = out ? out : &tmp;
    assert_int_equal(kx_th_http(&g_stack, method, path, token, ct, body, len, r), KX_OK);
    long st = r->status;
    if (out == NULL)
        kx_http_resp_free(&tmp);
    return st;
}

static long upload(const char *sid, const char *token, const char *path, const char *data,
                   size_t dlen)
{
    /* multipart by hand: a file part with a filename, binary-safe. */
    const char *b = "kxboundary7f3a";
    size_t cap = dlen + 1024, n = 0;
    char *body = malloc(cap);
    n += (size_t)snprintf(body + n, cap - n,
                          "--%s\r\nContent-Disposition: form-data; name=\"path\"\r\n\r\n%s\r\n"
                          "--%s\r\nContent-Disposition: form-data; name=\"file\"; "
                          "filename=\"f.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n",
                          b, path, b);
    memcpy(body + n, data, dlen);
    n += dlen;
    n += (size_t)snprintf(body + n, cap - n, "\r\n--%s--\r\n", b);
    char ct[100];
    snprintf(ct, sizeof ct, "multipart/form-data; boundary=%s", b);
    char url[200];
    snprintf(url, sizeof url, "/api/sandboxes/%s/files", sid);
    kx_http_resp r;
    long st = http("POST", url, token, ct, body, n, &r);
    if (st != 200)
        fprintf(stderr, "upload: %ld %s\n", st, r.body);
    kx_http_resp_free(&r);
    free(body);
    return st;
}

static void test_gateway_routes(void **state)
{
    char p[KX_UUID_LEN + 1], a[KX_UUID_LEN + 1], other[KX_UUID_LEN + 1], url[400];
    kx_uuid_new(p);
    kx_uuid_new(a);
    kx_uuid_new(other);
    make_project(p, a);
    char *ta = kx_th_stack_token(&g_stack, a), *tb = kx_th_stack_token(&g_stack, other);

    /* ensure-active: the owner only. */
    snprintf(url, sizeof url, "/api/project/%s/sandbox/ensure-active", p);
    long st = 0;
    json_t *j = kx_th_json(&g_stack, "POST", url, tb, NULL, &st);
    assert_int_equal(st, 404);
    json_decref(j);
    j = kx_th_json(&g_stack, "POST", "/api/project/nope/sandbox/ensure-active", ta, NULL, &st);
    assert_int_equal(st, 404);
    assert_string_equal(json_string_value(json_object_get(j, "detail")), "Project not found");
    json_decref(j);
    j = kx_th_json(&g_stack, "POST", url, ta, NULL, &st);
    assert_int_equal(st, 200);
    assert_string_equal(json_string_value(json_object_get(j, "status")), "success");
    assert_string_equal(json_string_value(json_object_get(j, "message")), "Sandbox is active");
    char sid[KX_UUID_LEN + 1];
    snprintf(sid, sizeof sid, "%s", json_string_value(json_object_get(j, "sandbox_id")));
    json_decref(j);
    char *rid = row_sandbox(p, "id");
    assert_string_equal(rid, sid); /* recorded from the reply */
    free(rid);

    /* Upload a file larger than one bus message (chunks), binary. */
    size_t big = 1536 * 1024;
    char *data = malloc(big);
    for (size_t i = 0; i < big; i++)
        data[i] = (char)(i * 7 + (i >> 9));
    assert_int_equal(upload(sid, ta, "/workspace/dir/big.bin", data, big), 200);
    assert_int_equal(upload(sid, tb, "/workspace/dir/evil.bin", "x", 1), 404);
    assert_int_equal(upload("00000000-0000-4000-8000-000000000000", ta, "a", "x", 1), 404);

    /* List. */
    snprintf(url, sizeof url, "/api/sandboxes/%s/files?path=/workspace/dir", sid);
    j = kx_th_json(&g_stack, "GET", url, ta, NULL, &st);
    assert_int_equal(st, 200);
    json_t *files = json_object_get(j, "files");
    assert_int_equal(json_array_size(files), 1);
    json_t *f0 = json_array_get(files, 0);
    assert_string_equal(json_string_value(json_object_get(f0, "name")), "big.bin");
    assert_string_equal(json_string_value(json_object_get(f0, "path")), "/workspace/dir/big.bin");
    assert_int_equal(json_integer_value(json_object_get(f0, "size")), big);
    assert_true(json_is_false(json_object_get(f0, "is_dir")));
    assert_non_null(json_string_value(json_object_get(f0, "mod_time")));
    json_decref(j);
    j = kx_th_json(&g_stack, "GET", url, tb, NULL, &st);
    assert_int_equal(st, 404);
    json_decref(j);

    /* Content: every byte back. */
    snprintf(url, sizeof url, "/api/sandboxes/%s/files/content?path=/workspace/dir/big.bin", sid);
    kx_http_resp r;
    assert_int_equal(http("GET", url, ta, NULL, NULL, 0, &r), 200);
    assert_int_equal(r.len, big);
    assert_memory_equal(r.body, data, big);
    assert_string_equal(r.content_type, "application/octet-stream");
    kx_http_resp_free(&r);
    assert_int_equal(http("GET", url, tb, NULL, NULL, 0, NULL), 404);
    snprintf(url, sizeof url, "/api/sandboxes/%s/files/content", sid);
    assert_int_equal(http("GET", url, ta, NULL, NULL, 0, NULL), 422);
    snprintf(url, sizeof url, "/api/sandboxes/%s/files/content?path=../../etc/passwd", sid);
    assert_int_equal(http("GET", url, ta, NULL, NULL, 0, NULL), 400);
    free(data);

    /* Delete a file. */
    snprintf(url, sizeof url, "/api/sandboxes/%s/files?path=/workspace/dir/big.bin", sid);
    assert_int_equal(http("DELETE", url, tb, NULL, NULL, 0, NULL), 404);
    j = kx_th_json(&g_stack, "DELETE", url, ta, NULL, &st);
    assert_int_equal(st, 200);
    assert_true(json_is_true(json_object_get(j, "deleted")));
    json_decref(j);
    snprintf(url, sizeof url, "/api/sandboxes/%s/files/content?path=/workspace/dir/big.bin", sid);
    assert_int_equal(http("GET", url, ta, NULL, NULL, 0, NULL), 404);

    /* Delete the sandbox: then it is not found. */
    snprintf(url, sizeof url, "/api/sandboxes/%s", sid);
    assert_int_equal(http("DELETE", url, tb, NULL, NULL, 0, NULL), 404);
    assert_int_equal(http("DELETE", url, ta, NULL, NULL, 0, NULL), 200);
    char *stt = row_sandbox(p, "state");
    assert_string_equal(stt, "deleted");
    free(stt);
    snprintf(url, sizeof url, "/api/sandboxes/%s/files?path=/workspace", sid);
    j = kx_th_json(&g_stack, "GET", url, ta, NULL, &st);
    assert_int_equal(st, 404);
    assert_string_equal(json_string_value(json_object_get(j, "detail")), "Sandbox not found");
    json_decref(j);
    assert_false(exists(p, "workspace"));
    free(ta);
    free(tb);
}

/* A deleted project's sandbox: DELETE /api/projects/{id} deletes it (the directory is gone,
 * the row says "deleted"), and the sandbox id and the project are 404 for every route, even
 * though the project was public (readable by another account until then). */
static void test_deleted_project_has_no_sandbox(void **state)
{
    char p[KX_UUID_LEN + 1], a[KX_UUID_LEN + 1], other[KX_UUID_LEN + 1], url[400];
    kx_uuid_new(p);
    kx_uuid_new(a);
    kx_uuid_new(other);
    make_project(p, a);
    char *ta = kx_th_stack_token(&g_stack, a), *tb = kx_th_stack_token(&g_stack, other);
    long st = 0;
    snprintf(url, sizeof url, "/api/projects/%s", p);
    json_t *j = kx_th_json(&g_stack, "PATCH", url, ta, "{\"is_public\": true}", &st);
    assert_int_equal(st, 200);
    json_decref(j);
    char ensure[200];
    snprintf(ensure, sizeof ensure, "/api/project/%s/sandbox/ensure-active", p);
    j = kx_th_json(&g_stack, "POST", ensure, ta, NULL, &st);
    assert_int_equal(st, 200);
    char sid[KX_UUID_LEN + 1];
    snprintf(sid, sizeof sid, "%s", json_string_value(json_object_get(j, "sandbox_id")));
    json_decref(j);
    assert_int_equal(upload(sid, ta, "/workspace/uploads/secret.txt", "secret", 6), 200);
    char list[300], content[300];
    snprintf(list, sizeof list, "/api/sandboxes/%s/files?path=/workspace/uploads", sid);
    snprintf(content, sizeof content,
             "/api/sandboxes/%s/files/content?path=/workspace/uploads/secret.txt", sid);
    assert_int_equal(http("GET", list, tb, NULL, NULL, 0, NULL), 200); /* public: readable */

    assert_int_equal(http("DELETE", url, ta, NULL, NULL, 0, NULL), 200);
    assert_int_equal(http("GET", url, ta, NULL, NULL, 0, NULL), 404);
    assert_int_equal(http("GET", list, tb, NULL, NULL, 0, NULL), 404);
    assert_int_equal(http("GET", content, tb, NULL, NULL, 0, NULL), 404);
    assert_int_equal(http("GET", list, ta, NULL, NULL, 0, NULL), 404);
    assert_int_equal(http("GET", content, ta, NULL, NULL, 0, NULL), 404);
    assert_int_equal(upload(sid, ta, "/workspace/uploads/more.txt", "more", 4), 404);
    j = kx_th_json(&g_stack, "POST", ensure, ta, NULL, &st);
    assert_int_equal(st, 404);
    assert_string_equal(json_string_value(json_object_get(j, "detail")), "Project not found");
    json_decref(j);
    /* and the sandbox itself is gone, not merely hidden */
    char *stt = row_sandbox(p, "state");
    assert_string_equal(stt, "deleted");
    free(stt);
    assert_false(exists(p, "workspace"));
    free(ta);
    free(tb);
}

/* A path that is not UTF-8: refused (400) before the broker acts on it, so nothing is written
 * or deleted (before the fix: 500, and the file written or deleted all the same); a file with
 * such a name made inside the sandbox is listed with U+FFFD, not dropped. */
static void test_paths_not_utf8(void **state)
{
    char p[KX_UUID_LEN + 1], a[KX_UUID_LEN + 1], url[400];
    kx_uuid_new(p);
    kx_uuid_new(a);
    make_project(p, a);
    char *ta = kx_th_stack_token(&g_stack, a);
    long st = 0;
    snprintf(url, sizeof url, "/api/project/%s/sandbox/ensure-active", p);
    json_t *j = kx_th_json(&g_stack, "POST", url, ta, NULL, &st);
    assert_int_equal(st, 200);
    char sid[KX_UUID_LEN + 1];
    snprintf(sid, sizeof sid, "%s", json_string_value(json_object_get(j, "sandbox_id")));
    json_decref(j);

    assert_int_equal(upload(sid, ta, "/workspace/d/b\xff.txt", "x", 1), 400);
    assert_false(exists(p, "workspace/d/b\xff.txt"));
    free(sh(p, "mkdir -p /workspace/d && printf x > \"/workspace/d/a$(printf '\\377').txt\""));
    assert_true(exists(p, "workspace/d/a\xff.txt"));

    snprintf(url, sizeof url, "/api/sandboxes/%s/files?path=/workspace/d/a%%FF.txt", sid);
    j = kx_th_json(&g_stack, "DELETE", url, ta, NULL, &st);
    assert_int_equal(st, 400);
    assert_string_equal(json_string_value(json_object_get(j, "detail")),
                        "path must be UTF-8 text");
    json_decref(j);
    assert_true(exists(p, "workspace/d/a\xff.txt"));
    snprintf(url, sizeof url, "/api/sandboxes/%s/files/content?path=/workspace/d/a%%FF.txt", sid);
    assert_int_equal(http("GET", url, ta, NULL, NULL, 0, NULL), 400);

    snprintf(url, sizeof url, "/api/sandboxes/%s/files?path=/workspace/d", sid);
    j = kx_th_json(&g_stack, "GET", url, ta, NULL, &st);
    assert_int_equal(st, 200);
    json_t *files = json_object_get(j, "files");
    assert_int_equal(json_array_size(files), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(files, 0), "name")),
                        "a\xef\xbf\xbd.txt");
    json_decref(j);
    free(ta);
}

/* expose_port for port: the sandbox's id and the token (sid KX_UUID_LEN + 1, token 64 bytes),
 * the link checked. */
static void expose(const char *project, int port, char *sid, char *token)
{
    Kx__V1__SandboxPreviewReply *pv = preview(project, port, NULL);
    if (pv->error != NULL)
        fail_msg("preview: %s", pv->error->message);
    snprintf(sid, KX_UUID_LEN + 1, "%s", pv->sandbox_id);
    snprintf(token, 64, "%s", pv->token);
    char want[200];
    snprintf(want, sizeof want, "/api/sandboxes/%s/preview/%d/", sid, port);
    assert_string_equal(pv->url, want);
    kx_pb_free(pv);
}

static void test_preview_link(void **state)
{
    char p[KX_UUID_LEN + 1], a[KX_UUID_LEN + 1], other[KX_UUID_LEN + 1], url[600];
    kx_uuid_new(p);
    kx_uuid_new(a);
    kx_uuid_new(other);
    make_project(p, a);
    char *ta = kx_th_stack_token(&g_stack, a), *tb = kx_th_stack_token(&g_stack, other);

    /* A run's command starts a web server in the background. */
    free(sh(p, "mkdir -p site && echo '<h1>preview works</h1>' > site/index.html"));
    Kx__V1__SandboxExecResult *bg =
        exec_in(p, "cd site && exec python3 -m http.server 8321 --bind 127.0.0.1", false);
    kx_pb_free(bg);
    /* expose_port: a link and a token. */
    char sid[KX_UUID_LEN + 1], token[64];
    expose(p, 8321, sid, token);
    assert_int_equal(strlen(token), 32);
    assert_true(wait_row_state(p, "running", 5000)); /* the event recorded the sandbox */

    snprintf(url, sizeof url, "/api/sandboxes/%s/preview/8321/index.html?preview_token=%s", sid,
             token);
    kx_http_resp r;
    long st = 0;
    for (int i = 0; i < 100; i++) {
        st = http("GET", url, ta, NULL, NULL, 0, &r);
        if (st == 200)
            break;
        kx_http_resp_free(&r);
        usleep(100 * 1000);
    }
    assert_int_equal(st, 200);
    assert_non_null(strstr(r.body, "<h1>preview works</h1>"));
    assert_non_null(strstr(r.content_type, "text/html"));
    kx_http_resp_free(&r);
    /* The directory page (the server's own listing) through the prefix. */
    snprintf(url, sizeof url, "/api/sandboxes/%s/preview/8321/?preview_token=%s", sid, token);
    assert_int_equal(http("GET", url, ta, NULL, NULL, 0, NULL), 200);

    /* Another account: 404, as for an unknown sandbox. */
    snprintf(url, sizeof url, "/api/sandboxes/%s/preview/8321/index.html?preview_token=%s", sid,
             token);
    assert_int_equal(http("GET", url, tb, NULL, NULL, 0, NULL), 404);
    assert_int_equal(http("GET", url, NULL, NULL, NULL, 0, NULL), 401);
    /* A wrong token, and none. */
    snprintf(
        url, sizeof url,
        "/api/sandboxes/%s/preview/8321/index.html?preview_token=0123456789abcdef0123456789abcdef",
        sid);
    assert_int_equal(http("GET", url, ta, NULL, NULL, 0, NULL), 403);
    snprintf(url, sizeof url, "/api/sandboxes/%s/preview/8321/index.html", sid);
    assert_int_equal(http("GET", url, ta, NULL, NULL, 0, NULL), 401);
    /* A token for port 8322, which nobody listens on: a clean 502 with a detail. */
    Kx__V1__SandboxPreviewReply *pv = preview(p, 8322, NULL);
    assert_null(pv->error);
    snprintf(url, sizeof url, "/api/sandboxes/%s/preview/8322/?preview_token=%s", sid, pv->token);
    kx_pb_free(pv);
    assert_int_equal(http("GET", url, ta, NULL, NULL, 0, &r), 502);
    assert_non_null(strstr(r.body, "8322"));
    kx_http_resp_free(&r);
    /* The token of one port does not open another. */
    snprintf(url, sizeof url, "/api/sandboxes/%s/preview/8322/?preview_token=%s", sid, token);
    assert_int_equal(http("GET", url, ta, NULL, NULL, 0, NULL), 403);
    /* A bad port. */
    snprintf(url, sizeof url, "/api/sandboxes/%s/preview/70000/?preview_token=%s", sid, token);
    assert_int_equal(http("GET", url, ta, NULL, NULL, 0, NULL), 404);
    pv = preview(p, 0, NULL);
    assert_string_equal(code_of(pv->error), "invalid_argument");
    kx_pb_free(pv);

    life_ok("delete", p, NULL);
    free(ta);
    free(tb);
}

/* An echo server in the sandbox: "<method> <path> <content type> <length>:" and the body. */
static const char ECHO_SERVER[] =
    "cat > echo_srv.py <<'PY'\n"
    "import http.server\n"
    "class H(http.server.BaseHTTPRequestHandler):\n"
    "    def echo(self):\n"
    "        n = int(self.headers.get('Content-Length') or 0)\n"
    "        body = self.rfile.read(n)\n"
    "        out = ('%s %s %s %d:' % (self.command, self.path,\n"
    "               self.headers.get('Content-Type'), n)).encode() + body\n"
    "        self.send_response(201 if self.command == 'POST' else 200)\n"
    "        self.send_header('Content-Type', 'text/plain')\n"
    "        self.send_header('Content-Length', str(len(out)))\n"
    "        self.end_headers()\n"
    "        self.wfile.write(out)\n"
    "    do_POST = do_PUT = do_PATCH = do_DELETE = echo\n"
    "    def log_message(self, *a):\n"
    "        pass\n"
    "http.server.HTTPServer(('127.0.0.1', 8324), H).serve_forever()\n"
    "PY\n";

/* POST, PUT, PATCH and DELETE go through a preview link with their body and Content-Type (a
 * form a page posts, an API the agent serves); a body over KX_MAX_BODY_BYTES is a 413. */
static void test_preview_methods_with_body(void **state)
{
    char p[KX_UUID_LEN + 1], a[KX_UUID_LEN + 1], url[600];
    kx_uuid_new(p);
    kx_uuid_new(a);
    make_project(p, a);
    char *ta = kx_th_stack_token(&g_stack, a);
    free(sh(p, ECHO_SERVER));
    kx_pb_free(exec_in(p, "exec python3 echo_srv.py", false));
    char sid[KX_UUID_LEN + 1], token[64];
    expose(p, 8324, sid, token);

    snprintf(url, sizeof url, "/api/sandboxes/%s/preview/8324/submit?x=1&preview_token=%s", sid,
             token);
    kx_http_resp r;
    long st = 0;
    for (int i = 0; i < 100; i++) { /* until the server listens */
        st = http("POST", url, ta, "application/json", "{\"a\": \"b\"}", 10, &r);
        if (st != 502)
            break;
        kx_http_resp_free(&r);
        usleep(100 * 1000);
    }
    assert_int_equal(st, 201);
    assert_string_equal(r.body, "POST /submit?x=1 application/json 10:{\"a\": \"b\"}");
    assert_non_null(strstr(r.content_type, "text/plain"));
    kx_http_resp_free(&r);
    /* PUT with bytes that are not text (a NUL inside), PATCH, DELETE without a body */
    snprintf(url, sizeof url, "/api/sandboxes/%s/preview/8324/item/7?preview_token=%s", sid,
             token);
    assert_int_equal(http("PUT", url, ta, "application/octet-stream", "a\0b", 3, &r), 200);
    static const char put_want[] = "PUT /item/7 application/octet-stream 3:a\0b";
    assert_int_equal(r.len, sizeof put_want - 1);
    assert_memory_equal(r.body, put_want, sizeof put_want - 1);
    kx_http_resp_free(&r);
    assert_int_equal(http("PATCH", url, ta, "text/plain", "done", 4, &r), 200);
    assert_string_equal(r.body, "PATCH /item/7 text/plain 4:done");
    kx_http_resp_free(&r);
    assert_int_equal(http("DELETE", url, ta, NULL, NULL, 0, &r), 200);
    assert_string_equal(r.body, "DELETE /item/7 None 0:");
    kx_http_resp_free(&r);
    /* the token is still required; a body over KX_MAX_BODY_BYTES (4 MiB here) never reaches it */
    snprintf(url, sizeof url, "/api/sandboxes/%s/preview/8324/item/7", sid);
    assert_int_equal(http("POST", url, ta, "text/plain", "x", 1, NULL), 401);
    snprintf(url, sizeof url, "/api/sandboxes/%s/preview/8324/big?preview_token=%s", sid, token);
    size_t big = ((size_t)4 << 20) + 10;
    char *body = malloc(big);
    assert_non_null(body);
    memset(body, 'a', big);
    assert_int_equal(http("POST", url, ta, "text/plain", body, big, &r), 413);
    assert_non_null(strstr(r.body, "Request body too large"));
    kx_http_resp_free(&r);
    free(body);
    /* a method a preview link does not carry */
    assert_int_equal(http("OPTIONS", url, ta, NULL, NULL, 0, NULL), 405);

    life_ok("delete", p, NULL);
    free(ta);
}

/* ensure-active for account a's project p: the HTTP status, *detail (malloc'd) its detail. */
static long ensure_active(const char *p, const char *token, char **detail)
{
    char url[200];
    snprintf(url, sizeof url, "/api/project/%s/sandbox/ensure-active", p);
    long st = 0;
    json_t *j = kx_th_json(&g_stack, "POST", url, token, NULL, &st);
    const char *d = json_string_value(json_object_get(j, "detail"));
    *detail = strdup(d ? d : "");
    json_decref(j);
    return st;
}

/* One account cannot hold more than KX_SANDBOX_MAX_PER_ACCOUNT running sandboxes of the
 * broker (each is a jail, processes and a uid of the broker's pool): ensure-active on a
 * third project (so also a command or a file of a run there: the same start) is refused with
 * 429 quota_exceeded, another account still gets one, and stopping one makes room. */
static void test_sandboxes_per_account(void **state)
{
    (void)state;
    char a[KX_UUID_LEN + 1], b[KX_UUID_LEN + 1], pa[3][KX_UUID_LEN + 1], pb[KX_UUID_LEN + 1];
    kx_uuid_new(a);
    kx_uuid_new(b);
    for (int i = 0; i < 3; i++) {
        kx_uuid_new(pa[i]);
        make_project(pa[i], a);
    }
    kx_uuid_new(pb);
    make_project(pb, b);
    char *ta = kx_th_stack_token(&g_stack, a), *tb = kx_th_stack_token(&g_stack, b);
    char *detail = NULL;
    for (int i = 0; i < 2; i++) {
        assert_int_equal(ensure_active(pa[i], ta, &detail), 200);
        free(detail);
        /* busy, so the short auto-stop of this file does not make room behind our back */
        Kx__V1__SandboxExecResult *r = exec_in(pa[i], "sleep 60", false);
        kx_pb_free(r);
    }
    long st = ensure_active(pa[2], ta, &detail);
    if (st != 429)
        fail_msg("a third sandbox for one account: %ld %s", st, detail);
    assert_non_null(strstr(detail, "KX_SANDBOX_MAX_PER_ACCOUNT"));
    assert_non_null(strstr(detail, "2 sandboxes running"));
    free(detail);
    assert_false(exists(pa[2], "workspace")); /* nothing made for it */

    assert_int_equal(ensure_active(pb, tb, &detail), 200); /* another account */
    free(detail);

    assert_string_equal(life_ok("stop", pa[0], NULL), "stopped");
    st = ensure_active(pa[2], ta, &detail);
    if (st != 200)
        fail_msg("after a stop, the third sandbox: %ld %s", st, detail);
    free(detail);
    for (int i = 1; i < 3; i++)
        assert_string_equal(life_ok("stop", pa[i], NULL), "stopped");
    assert_string_equal(life_ok("stop", pb, NULL), "stopped");
    free(ta);
    free(tb);
}

/* A sandbox counts for its owner's KX_SANDBOX_MAX_PER_ACCOUNT whoever's request starts it: a
 * public project's stopped sandbox started again by another account reading its files is the
 * owner's (it was the reader's: the owner got a sandbox past the limit, and the reader lost a
 * place to a project not its own). */
static void test_public_reads_count_for_the_owner(void **state)
{
    (void)state;
    char a[KX_UUID_LEN + 1], b[KX_UUID_LEN + 1], pa[3][KX_UUID_LEN + 1], pb[2][KX_UUID_LEN + 1];
    kx_uuid_new(a);
    kx_uuid_new(b);
    for (int i = 0; i < 3; i++) {
        kx_uuid_new(pa[i]);
        make_project(pa[i], a);
    }
    for (int i = 0; i < 2; i++) {
        kx_uuid_new(pb[i]);
        make_project(pb[i], b);
    }
    char *ta = kx_th_stack_token(&g_stack, a), *tb = kx_th_stack_token(&g_stack, b);
    char url[300], *detail = NULL;
    snprintf(url, sizeof url, "/api/projects/%s", pa[0]);
    assert_int_equal(http("PATCH", url, ta, "application/json", "{\"is_public\": true}", 19, NULL),
                     200);
    assert_int_equal(ensure_active(pa[0], ta, &detail), 200);
    free(detail);
    char *sid = row_sandbox(pa[0], "id");
    assert_non_null(sid);
    assert_int_equal(upload(sid, ta, "/workspace/public.txt", "public", 6), 200);
    assert_string_equal(life_ok("stop", pa[0], NULL), "stopped");
    assert_int_equal(ensure_active(pa[1], ta, &detail), 200); /* a's one running sandbox */
    free(detail);
    kx_pb_free(exec_in(pa[1], "sleep 60", false)); /* busy: no auto-stop */

    /* b reads a's public file: a's stopped sandbox starts again, as a's second */
    snprintf(url, sizeof url, "/api/sandboxes/%s/files/content?path=/workspace/public.txt", sid);
    kx_http_resp r;
    assert_int_equal(http("GET", url, tb, NULL, NULL, 0, &r), 200);
    assert_int_equal(r.len, 6);
    kx_http_resp_free(&r);
    kx_pb_free(exec_in(pa[0], "sleep 60", false));

    long st = ensure_active(pa[2], ta, &detail);
    if (st != 429)
        fail_msg("a third sandbox for the owner of a public one a reader started: %ld %s", st,
                 detail);
    free(detail);
    for (int i = 0; i < 2; i++) { /* b's own two places are free */
        st = ensure_active(pb[i], tb, &detail);
        if (st != 200)
            fail_msg("the reader's own sandbox %d: %ld %s", i + 1, st, detail);
        free(detail);
        kx_pb_free(exec_in(pb[i], "sleep 60", false));
    }
    for (int i = 0; i < 2; i++) {
        assert_string_equal(life_ok("stop", pa[i], NULL), "stopped");
        assert_string_equal(life_ok("stop", pb[i], NULL), "stopped");
    }
    free(sid);
    free(ta);
    free(tb);
}

/* The gateway's kx_gateway_held_bytes. */
static long long held_bytes(void)
{
    kx_th_proc *gw = kx_th_stack_proc(&g_stack, "gateway");
    assert_non_null(gw);
    return kx_th_metric(gw->port, "kx_gateway_held_bytes");
}

static bool wait_held(bool want_some, long long at_least)
{
    for (int i = 0; i < 200; i++) {
        long long v = held_bytes();
        if (want_some ? v >= at_least : v == 0)
            return true;
        usleep(50 * 1000);
    }
    return false;
}

/* GET path with token, the whole answer's status (0 when none). */
static long get_status(const char *path, const char *token)
{
    kx_http_resp r = {0};
    long st = kx_th_http(&g_stack, "GET", path, token, NULL, NULL, 0, &r) == KX_OK ? r.status : 0;
    kx_http_resp_free(&r);
    return st;
}

/* A sandbox of a new account's new project, running: its id into sid, the account's token
 * (malloc'd) returned, the project into p. */
static char *download_sandbox(char p[KX_UUID_LEN + 1], char sid[KX_UUID_LEN + 1])
{
    char a[KX_UUID_LEN + 1], *detail = NULL;
    kx_uuid_new(p);
    kx_uuid_new(a);
    make_project(p, a);
    char *token = kx_th_stack_token(&g_stack, a);
    assert_int_equal(ensure_active(p, token, &detail), 200);
    free(detail);
    char *rid = row_sandbox(p, "id");
    snprintf(sid, KX_UUID_LEN + 1, "%s", rid);
    free(rid);
    return token;
}

/* The bytes of a file of the sandbox, read from its workspace on this host (malloc'd). */
static char *host_file(const char *p, const char *name, size_t *len)
{
    char path[1200];
    snprintf(path, sizeof path, "%s/%s/workspace/%s", g_stack.sandbox_root, p, name);
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        fail_msg("cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return buf;
}

/* GET of a whole download with a cap of max bytes: KX_OK with out filled, or the transport
 * error (a transfer cut short is KX_ERR_IO). */
static kx_err download(const char *sid, const char *name, const char *token, size_t max,
                       kx_http_resp *out)
{
    char url[600], auth[1200];
    snprintf(url, sizeof url, "%s/api/sandboxes/%s/files/content?path=/workspace/%s",
             g_stack.base_url, sid, name);
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
    const char *headers[] = {auth, NULL};
    memset(out, 0, sizeof *out);
    return kx_http_request("GET", url, headers, NULL, 0, kx_deadline_in(60000), max, out);
}

/* A client that asks for a download and reads only the answer's headers (its receive window
 * small): the connection (read on with raw_body), the status and the Content-Length (-1:
 * none). */
static int raw_get(const char *sid, const char *name, const char *token, long *status,
                   long long *clen)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    int small = 4096;
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small), 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(g_stack.http_port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    char head[1600];
    int hn = snprintf(head, sizeof head,
                      "GET /api/sandboxes/%s/files/content?path=/workspace/%s HTTP/1.1\r\n"
                      "Host: 127.0.0.1\r\nAuthorization: Bearer %s\r\n\r\n",
                      sid, name, token);
    assert_int_equal(send(fd, head, (size_t)hn, 0), hn);
    size_t n = 0;
    while (n + 1 < sizeof head && (n < 4 || memcmp(head + n - 4, "\r\n\r\n", 4) != 0)) {
        ssize_t r = recv(fd, head + n, 1, 0);
        if (r <= 0)
            fail_msg("the connection closed within the answer's headers");
        n++;
    }
    head[n] = '\0';
    *status = strtol(head + 9, NULL, 10);
    const char *cl = strcasestr(head, "\r\nContent-Length:");
    *clen = cl != NULL ? strtoll(cl + 17, NULL, 10) : -1;
    return fd;
}

/* Reads the connection's body up to its end (or want bytes), pause_us between reads of at most
 * 64 KiB; the bytes read. */
static long long raw_body(int fd, long long want, useconds_t pause_us)
{
    static char buf[65536];
    long long got = 0;
    while (want < 0 || got < want) {
        size_t ask = sizeof buf;
        if (want >= 0 && (long long)ask > want - got)
            ask = (size_t)(want - got);
        ssize_t r = recv(fd, buf, ask, 0);
        if (r <= 0)
            break;
        got += r;
        if (pause_us > 0)
            usleep(pause_us);
    }
    return got;
}

/* A file larger than the old 64 MiB bound of a download (413 before) streams through the
 * gateway whole and byte-exact, as does a file of a few chunks with an odd size; past
 * KX_SANDBOX_DOWNLOAD_MAX_MB (100 here) the answer is a 413 naming the variable. */
static void test_large_downloads_stream(void **state)
{
    (void)state;
    char p[KX_UUID_LEN + 1], sid[KX_UUID_LEN + 1];
    char *token = download_sandbox(p, sid);
    free(sh(p,
            "head -c 83886080 /dev/urandom > big.bin && "
            "head -c 3145745 /dev/urandom > odd.bin && truncate -s 101M huge.bin"));
    const char *names[] = {"odd.bin", "big.bin"};
    for (int i = 0; i < 2; i++) {
        size_t want_len = 0;
        char *want = host_file(p, names[i], &want_len);
        kx_http_resp r;
        int64_t t0 = kx_mono_ms();
        kx_err err = download(sid, names[i], token, (size_t)128 << 20, &r);
        int64_t ms = kx_mono_ms() - t0;
        if (err != KX_OK || r.status != 200)
            fail_msg("download of %s (%zu bytes): %s, %ld %.200s", names[i], want_len,
                     kx_err_str(err), r.status, r.body ? r.body : "");
        print_message("download of %s: %zu bytes in %lld ms\n", names[i], r.len, (long long)ms);
        assert_int_equal(r.len, want_len);
        assert_memory_equal(r.body, want, want_len);
        kx_http_resp_free(&r);
        free(want);
    }
    assert_true(wait_held(false, 0));
    kx_http_resp r;
    assert_int_equal(download(sid, "huge.bin", token, 0, &r), KX_OK);
    if (r.status != 413 || r.body == NULL || strstr(r.body, "KX_SANDBOX_DOWNLOAD_MAX_MB") == NULL)
        fail_msg("a download past the limit: %ld %s", r.status, r.body ? r.body : "");
    kx_http_resp_free(&r);
    assert_string_equal(life_ok("stop", p, NULL), "stopped");
    free(token);
}

/* A download the client does not read: before, the gateway held the whole file until it was
 * read (12 MiB here), so one such client took most of its account's KX_HTTP_HELD_ACCOUNT_MB
 * (16 MiB here) and the next download of the account was a 503. Streamed, each holds two bus
 * messages at most: several unread downloads of one account are served at once, the held
 * gauge grows by about a chunk or two each, the account still downloads; the limit still
 * refuses (503 naming it) once enough unread downloads add up, other accounts are served; the
 * bytes all come back when the clients go. */
static void test_unread_downloads_are_bounded(void **state)
{
    (void)state;
    char p[KX_UUID_LEN + 1], sid[KX_UUID_LEN + 1], b[KX_UUID_LEN + 1];
    char *ta = download_sandbox(p, sid);
    kx_uuid_new(b);
    char *tb = kx_th_stack_token(&g_stack, b);
    free(sh(p, "head -c 12582912 /dev/urandom > /workspace/big.bin"));
    assert_true(wait_held(false, 0));

    enum {
        MAX_UNREAD = 24
    };
    int fds[MAX_UNREAD];
    int n = 0;
    long status = 0;
    long long clen = 0;
    for (; n < MAX_UNREAD; n++) {
        fds[n] = raw_get(sid, "big.bin", ta, &status, &clen);
        if (status != 200)
            break;
        assert_int_equal(clen, 12 << 20);
        if (n == 3) { /* four unread downloads of 12 MiB: about a chunk or two each */
            long long held = 0;
            for (int i = 0; i < 40 && (held = held_bytes()) < 4 * (512 << 10); i++)
                usleep(50 * 1000);
            print_message("4 unread downloads of 12 MiB hold %lld bytes\n", held);
            if (held < 4 * (512 << 10) || held > 4 * (3 << 20))
                fail_msg("4 unread downloads of 12 MiB hold %lld bytes (want 2-12 MiB)", held);
            /* and the account still downloads, whole */
            kx_http_resp r;
            assert_int_equal(download(sid, "big.bin", ta, (size_t)16 << 20, &r), KX_OK);
            if (r.status != 200 || r.len != (size_t)12 << 20)
                fail_msg("a download beside 4 unread ones: %ld, %zu bytes %.200s", r.status, r.len,
                         r.status != 200 && r.body ? r.body : "");
            kx_http_resp_free(&r);
        }
    }
    print_message("%d unread downloads of one account served before a refusal; %lld bytes held\n",
                  n, held_bytes());
    if (n < 5 || n >= MAX_UNREAD)
        fail_msg("unread downloads of one account served before the limit: %d", n);
    /* the refused one: a 503 naming the limit */
    char body[512];
    ssize_t bn = recv(fds[n], body, sizeof body - 1, 0);
    body[bn > 0 ? bn : 0] = '\0';
    if (status != 503 || strstr(body, "KX_HTTP_HELD_ACCOUNT_MB") == NULL)
        fail_msg("past the account's share: %ld %s", status, body);
    close(fds[n]);
    /* another account (the project made public): its own share */
    const char *pp[] = {p};
    PQclear(
        kx_th_sql(&g_stack, "UPDATE projects SET is_public = true WHERE project_id = $1", 1, pp));
    char url[300];
    snprintf(url, sizeof url, "/api/sandboxes/%s/files/content?path=/workspace/big.bin", sid);
    assert_int_equal(get_status(url, tb), 200);

    /* the slow clients go: their bytes come back, and the account downloads again */
    for (int i = 0; i < n; i++)
        close(fds[i]);
    if (!wait_held(false, 0))
        fail_msg("the bytes of closed downloads stay held: %lld", held_bytes());
    kx_http_resp r;
    assert_int_equal(download(sid, "big.bin", ta, (size_t)16 << 20, &r), KX_OK);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.len, 12 << 20);
    kx_http_resp_free(&r);
    assert_true(wait_held(false, 0));
    assert_string_equal(life_ok("stop", p, NULL), "stopped");
    free(ta);
    free(tb);
}

/* A file deleted, or cut shorter, while it is downloaded: the transfer fails (the connection
 * closes before the Content-Length announced), never a 200 that looks whole; before, the file
 * was read whole before the answer and a change afterwards went unnoticed. A client that goes
 * mid-download leaves nothing held. */
static void test_download_cut_mid_stream(void **state)
{
    (void)state;
    char p[KX_UUID_LEN + 1], sid[KX_UUID_LEN + 1];
    char *token = download_sandbox(p, sid);
    free(sh(p,
            "head -c 12582912 /dev/urandom > gone.bin && cp gone.bin short.bin && "
            "cp gone.bin left.bin"));
    assert_true(wait_held(false, 0));
    const char *names[] = {"gone.bin", "short.bin"};
    const char *cmds[] = {"rm gone.bin", "truncate -s 1048576 short.bin"};
    kx_th_proc *gw = kx_th_stack_proc(&g_stack, "gateway");
    long long cut0 = kx_th_metric(gw->port, "kx_gateway_downloads_cut_total");
    for (int i = 0; i < 2; i++) {
        long status = 0;
        long long clen = 0;
        int fd = raw_get(sid, names[i], token, &status, &clen);
        assert_int_equal(status, 200);
        assert_int_equal(clen, 12 << 20);
        long long got = raw_body(fd, 65536, 0);
        free(sh(p, cmds[i]));
        got += raw_body(fd, -1, 0);
        print_message("%s: %lld of %lld bytes, then the connection closed\n", cmds[i], got, clen);
        if (got >= clen)
            fail_msg("after '%s' the download still ended whole: %lld bytes", cmds[i], got);
        close(fd);
    }
    long long cut = kx_th_metric(gw->port, "kx_gateway_downloads_cut_total");
    if (cut - (cut0 > 0 ? cut0 : 0) != 2)
        fail_msg("kx_gateway_downloads_cut_total went from %lld to %lld (want 2 more)", cut0, cut);
    /* a client that reads a little and goes */
    long status = 0;
    long long clen = 0;
    int fd = raw_get(sid, "left.bin", token, &status, &clen);
    assert_int_equal(status, 200);
    assert_int_equal(raw_body(fd, 100000, 0), 100000);
    close(fd);
    if (!wait_held(false, 0))
        fail_msg("a download its client left stays held: %lld", held_bytes());
    assert_string_equal(life_ok("stop", p, NULL), "stopped");
    free(token);
}

/* A file that grows while it is downloaded (16 MiB, 4 more appended after its first 64 KiB
 * were read: the gateway and the kernel's buffers hold less than that) is sent up to the size
 * announced, byte-exact, and the answer ends cleanly there: the connection stays open for the
 * next request. */
static void test_download_of_a_growing_file(void **state)
{
    (void)state;
    char p[KX_UUID_LEN + 1], sid[KX_UUID_LEN + 1];
    char *token = download_sandbox(p, sid);
    free(sh(p, "head -c 16777216 /dev/urandom > grow.bin"));
    long status = 0;
    long long clen = 0;
    int fd = raw_get(sid, "grow.bin", token, &status, &clen);
    assert_int_equal(status, 200);
    assert_int_equal(clen, 16 << 20);
    char *body = malloc((size_t)clen + 1);
    assert_non_null(body);
    long long got = 0;
    for (ssize_t r; got < 65536 && (r = recv(fd, body + got, 65536, 0)) > 0;)
        got += r;
    free(sh(p, "head -c 4194304 /dev/urandom >> grow.bin"));
    struct timeval tv = {.tv_sec = 2};
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv), 0);
    for (ssize_t r; got < clen && (r = recv(fd, body + got, (size_t)(clen - got), 0)) > 0;)
        got += r;
    assert_int_equal(got, clen);
    char extra;
    assert_true(recv(fd, &extra, 1, MSG_DONTWAIT) < 0); /* nothing after the length */
    size_t now_len = 0;
    char *now = host_file(p, "grow.bin", &now_len);
    assert_int_equal(now_len, 20 << 20);
    assert_memory_equal(body, now, (size_t)clen); /* what it was: the first 16 MiB */
    free(now);
    free(body);
    /* the same connection answers the next request: the first answer ended cleanly */
    char req[1400];
    int n = snprintf(req, sizeof req,
                     "GET /api/sandboxes/%s/files?path=/workspace HTTP/1.1\r\n"
                     "Host: 127.0.0.1\r\nAuthorization: Bearer %s\r\n\r\n",
                     sid, token);
    assert_int_equal(send(fd, req, (size_t)n, 0), n);
    char head[16] = "";
    assert_int_equal(recv(fd, head, 12, MSG_WAITALL), 12);
    assert_memory_equal(head, "HTTP/1.1 200", 12);
    close(fd);
    assert_true(wait_held(false, 0));
    assert_string_equal(life_ok("stop", p, NULL), "stopped");
    free(token);
}

/* The log a process wrote since offset from (malloc'd). */
static char *log_since(const kx_th_proc *proc, long from)
{
    FILE *f = fopen(proc->log, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long end = ftell(f);
    long n = end > from ? end - from : 0;
    char *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    fseek(f, from, SEEK_SET);
    size_t got = fread(buf, 1, (size_t)n, f);
    buf[got] = '\0';
    fclose(f);
    return buf;
}

static long log_size(const kx_th_proc *proc)
{
    struct stat st;
    return stat(proc->log, &st) == 0 ? (long)st.st_size : 0;
}

/* The gateway told to stop now (a second SIGTERM during its drain) while downloads are in
 * flight: one whose client stopped reading, one whose connection is suspended while its READ
 * waits on the broker (stopped with SIGSTOP, continued after the signals). The READ's job ends
 * and resumes its connection before libmicrohttpd stops, the responses are freed, the gateway
 * exits as told (1) without a sanitizer's report, the clients see their transfers cut, and a
 * gateway started again serves the file. */
static void test_gateway_stops_mid_download(void **state)
{
    (void)state;
    char p[KX_UUID_LEN + 1], sid[KX_UUID_LEN + 1];
    char *token = download_sandbox(p, sid);
    free(sh(p, "head -c 33554432 /dev/urandom > stop.bin"));
    kx_th_proc *gw = kx_th_stack_proc(&g_stack, "gateway");
    kx_th_proc *broker = kx_th_stack_proc(&g_stack, "sandbox-broker");
    assert_non_null(gw);
    assert_non_null(broker);
    long status = 0;
    long long clen = 0;
    int stalled = raw_get(sid, "stop.bin", token, &status, &clen);
    assert_int_equal(status, 200);
    assert_int_equal(raw_body(stalled, 65536, 0), 65536);
    int waiting = raw_get(sid, "stop.bin", token, &status, &clen);
    assert_int_equal(status, 200);
    long long got = raw_body(waiting, 65536, 0);
    /* the broker stops answering: the reader drains what the gateway holds, then waits */
    assert_int_equal(kill(broker->pid, SIGSTOP), 0);
    struct timeval tv = {.tv_sec = 1};
    assert_int_equal(setsockopt(waiting, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv), 0);
    got += raw_body(waiting, -1, 0); /* up to a second without a byte */
    assert_true(got < clen);

    long from = log_size(gw);
    pid_t pid = gw->pid;
    assert_int_equal(kill(pid, SIGTERM), 0);
    usleep(300 * 1000);
    assert_int_equal(kill(pid, SIGTERM), 0); /* the second: exit now, downloads in flight */
    usleep(300 * 1000);
    assert_int_equal(kill(broker->pid, SIGCONT), 0);
    siginfo_t si = {0};
    for (int i = 0; i < 1000 && si.si_pid != pid; i++) {
        assert_int_equal(waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT), 0);
        if (si.si_pid != pid)
            usleep(10 * 1000);
    }
    if (si.si_pid != pid)
        fail_msg("the gateway did not exit within 10 s of its second SIGTERM");
    int st = kx_th_stack_proc_stop(&g_stack, gw);
    char *log = log_since(gw, from);
    if (st != 1 || strstr(log, "exiting now") == NULL || strstr(log, "Sanitizer") != NULL ||
        strstr(log, "runtime error") != NULL)
        fail_msg("the gateway stopped mid-download: status %d, log:\n%s", st, log);
    free(log);
    /* both transfers cut, short of their length */
    got += raw_body(waiting, -1, 0);
    long long got2 = 65536 + raw_body(stalled, -1, 0);
    print_message("stopped mid-download: %lld and %lld of %lld bytes\n", got, got2, clen);
    assert_true(got < clen);
    assert_true(got2 < clen);
    close(waiting);
    close(stalled);

    assert_int_equal(kx_th_stack_proc_start(&g_stack, gw, 20000), KX_OK);
    /* its /healthz answers before its API port listens */
    for (int i = 0; i < 400 && get_status("/api/health", NULL) != 200; i++)
        usleep(50 * 1000);
    kx_http_resp r;
    assert_int_equal(download(sid, "stop.bin", token, (size_t)64 << 20, &r), KX_OK);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.len, 32 << 20);
    kx_http_resp_free(&r);
    assert_string_equal(life_ok("stop", p, NULL), "stopped");
    free(token);
}

static void test_broker_restart_keeps_files(void **state)
{
    char p[KX_UUID_LEN + 1], id[KX_UUID_LEN + 1], id2[KX_UUID_LEN + 1];
    kx_uuid_new(p);
    assert_string_equal(life_ok("create", p, id), "running");
    free(sh(p, "echo survives > s.txt"));
    kx_th_proc *broker = kx_th_stack_proc(&g_stack, "sandbox-broker");
    assert_non_null(broker);
    assert_int_equal(kx_th_stack_proc_stop(&g_stack, broker), 0);
    assert_int_equal(kx_th_stack_proc_start(&g_stack, broker, 20000), KX_OK);
    /* The record is there (stopped: its processes ended with the old broker), the files too. */
    const char *st = NULL;
    for (int i = 0; i < 50; i++) { /* the new broker's subscriptions reach NATS */
        life_t *r = life("get", p);
        bool ok = r->sandbox != NULL;
        kx_pb_free(r);
        if (ok)
            break;
        usleep(100 * 1000);
    }
    st = life_ok("get", p, id2);
    assert_string_equal(st, "stopped");
    assert_string_equal(id, id2);
    char *out = sh(p, "cat s.txt");
    assert_string_equal(out, "survives\n");
    free(out);
    assert_string_equal(life_ok("get", p, id2), "running");
    assert_string_equal(id, id2);
    life_ok("delete", p, NULL);
}

/* ---- setup ------------------------------------------------------------------------------ */

static int group_setup(void **state)
{
    if (nats_Open(-1) != NATS_OK)
        return -1;
    kx_th_stack_opts opts = {.env = STACK_ENV};
    if (kx_th_stack_start(&opts, &g_stack) != KX_OK)
        return -1;
    if (kx_th_bus_connect(g_stack.nats.url, "it-lifecycle", &g_bus) != KX_OK)
        return -1;
    return kx_th_sb_wait_serving(g_bus) == KX_OK ? 0 : -1;
}

static int group_teardown(void **state)
{
    kx_bus_close(g_bus, 2000);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lifecycle_over_the_bus),
        cmocka_unit_test(test_background_server_survives_between_commands),
        cmocka_unit_test(test_auto_stop_and_archive_recorded),
        cmocka_unit_test(test_failed_creation_leaves_nothing),
        cmocka_unit_test(test_gateway_routes),
        cmocka_unit_test(test_deleted_project_has_no_sandbox),
        cmocka_unit_test(test_paths_not_utf8),
        cmocka_unit_test(test_preview_link),
        cmocka_unit_test(test_preview_methods_with_body),
        cmocka_unit_test(test_sandboxes_per_account),
        cmocka_unit_test(test_public_reads_count_for_the_owner),
        cmocka_unit_test(test_large_downloads_stream),
        cmocka_unit_test(test_unread_downloads_are_bounded),
        cmocka_unit_test(test_download_cut_mid_stream),
        cmocka_unit_test(test_download_of_a_growing_file),
        cmocka_unit_test(test_gateway_stops_mid_download),
        cmocka_unit_test(test_broker_restart_keeps_files),
    };
    if (getenv("KX_TEST_FILTER") != NULL)
        cmocka_set_test_filter(getenv("KX_TEST_FILTER"));
    int failed = cmocka_run_group_tests(tests, group_setup, group_teardown);
    if (kx_th_stack_stop(&g_stack, failed != 0) != 0)
        failed++;
    return failed;
}
