/* test_sandbox_files.c — the sandbox-broker's file API (kx.sandbox.files) and its named command
 * sessions, through the bus, with the whole stack (real NATS, Postgres, services) and real
 * bubblewrap:
 *   - a round trip of every byte value; a file larger than one message, uploaded in chunks and
 *     read back by next_offset/eof; stat and list (bounded, with a note);
 *   - every way out: "..", absolute paths, /proc/self/root, a symbolic link pointing out (read,
 *     write, list, delete through it), a recursive delete of a tree holding outward links, and
 *     a link swapped in for a directory while requests race it — the host files stay untouched
 *     and every error names the path;
 *   - the disk cap (KX_SANDBOX_DISK_MB) and the file size limit, with clear errors, and space
 *     coming back after a delete;
 *   - the sandbox's uid: a file the API wrote is the command's own (readable, writable), a file
 *     a command wrote is readable by the API, and one it locked (chmod 000) is not — the API is
 *     not root;
 *   - a FIFO does not hang a read; create refuses an existing path; a non-empty directory needs
 *     recursive;
 *   - sessions: cwd and exported environment carry over between the commands of one session,
 *     never into another session or another project; the exit status is kept. */
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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
static char g_project[KX_UUID_LEN + 1];
static char g_other[KX_UUID_LEN + 1];
static char g_outside[600]; /* a host directory a link may point to */

#define SECRET "host-secret-5e1f"

static const char *const STACK_ENV[] = {
    "KX_SANDBOX_DISK_MB=16",
    "KX_SANDBOX_MAX_FILE_MB=10",
    NULL,
};

/* ---- requests --------------------------------------------------------------------------- */

typedef Kx__V1__SandboxFilesReply reply_t;

static reply_t *files_req(const Kx__V1__SandboxFilesRequest *rq)
{
    kx_err err = KX_OK;
    reply_t *rep = kx_th_bus_ask(g_bus, KX_SUBJ_SANDBOX_FILES, &rq->base, rq->project_id, 15000,
                                 &kx__v1__sandbox_files_reply__descriptor, NULL, &err);
    if (rep == NULL)
        fail_msg("kx.sandbox.files request failed: %s", kx_err_str(err));
    return rep;
}

static reply_t *op_in(const char *project, int op, const char *path)
{
    Kx__V1__SandboxFilesRequest rq = KX__V1__SANDBOX_FILES_REQUEST__INIT;
    rq.project_id = (char *)project;
    rq.op = op;
    rq.path = (char *)path;
    return files_req(&rq);
}

static reply_t *fstat_(const char *path)
{
    return op_in(g_project, KX__V1__SANDBOX_FILE_OP__SANDBOX_FILE_STAT, path);
}

static reply_t *flist(const char *path, int max)
{
    Kx__V1__SandboxFilesRequest rq = KX__V1__SANDBOX_FILES_REQUEST__INIT;
    rq.project_id = g_project;
    rq.op = KX__V1__SANDBOX_FILE_OP__SANDBOX_FILE_LIST;
    rq.path = (char *)path;
    rq.max_entries = max;
    return files_req(&rq);
}

static reply_t *fread_(const char *path, int64_t offset, int64_t length)
{
    Kx__V1__SandboxFilesRequest rq = KX__V1__SANDBOX_FILES_REQUEST__INIT;
    rq.project_id = g_project;
    rq.op = KX__V1__SANDBOX_FILE_OP__SANDBOX_FILE_READ;
    rq.path = (char *)path;
    rq.offset = offset;
    rq.length = length;
    return files_req(&rq);
}

static reply_t *fwrite_(const char *path, const void *data, size_t len, int mode, int64_t offset)
{
    Kx__V1__SandboxFilesRequest rq = KX__V1__SANDBOX_FILES_REQUEST__INIT;
    rq.project_id = g_project;
    rq.op = KX__V1__SANDBOX_FILE_OP__SANDBOX_FILE_WRITE;
    rq.path = (char *)path;
    rq.data.data = (uint8_t *)data;
    rq.data.len = len;
    rq.mode = mode;
    rq.offset = offset;
    return files_req(&rq);
}

static reply_t *fdelete(const char *path, bool recursive)
{
    Kx__V1__SandboxFilesRequest rq = KX__V1__SANDBOX_FILES_REQUEST__INIT;
    rq.project_id = g_project;
    rq.op = KX__V1__SANDBOX_FILE_OP__SANDBOX_FILE_DELETE;
    rq.path = (char *)path;
    rq.recursive = recursive;
    return files_req(&rq);
}

static void expect_ok(const reply_t *r)
{
    if (r->error != NULL)
        fail_msg("unexpected error %s: %s", r->error->code, r->error->message);
}

/* The reply is an error with this code whose message has both parts. */
static void expect_error(reply_t *r, const char *code, const char *part1, const char *part2)
{
    if (r->error == NULL)
        fail_msg("expected error %s (%s), got success", code, part1);
    if (strcmp(r->error->code, code) != 0 || strstr(r->error->message, part1) == NULL ||
        (part2 != NULL && strstr(r->error->message, part2) == NULL))
        fail_msg("expected error %s with \"%s\" / \"%s\", got %s: %s", code, part1,
                 part2 ? part2 : "", r->error->code, r->error->message);
    kx_pb_free(r);
}

typedef struct exec_result {
    Kx__V1__SandboxExecResult *res;
} exec_result;

static Kx__V1__SandboxExecResult *exec_in(const char *project, const char *session,
                                          const char *folder, const char *command, bool blocking)
{
    kx_th_exec x = {.project = project,
                    .command = command,
                    .folder = folder,
                    .session = session,
                    .blocking = blocking};
    kx_err err = KX_OK;
    Kx__V1__SandboxExecResult *res = kx_th_exec_request(g_bus, &x, NULL, &err);
    if (res == NULL)
        fail_msg("exec '%s' failed: %s", command, kx_err_str(err));
    if (res->error != NULL)
        fail_msg("exec '%s' refused: %s", command, res->error->message);
    return res;
}

/* Runs a blocking command in the main project; returns its stdout (malloc'd), asserting exit 0. */
static char *sh(const char *command)
{
    Kx__V1__SandboxExecResult *res = exec_in(g_project, NULL, NULL, command, true);
    if (res->exit_code != 0)
        fail_msg("'%s' exited %d: %s%s", command, res->exit_code, res->stdout, res->stderr);
    char *out = strdup(res->stdout);
    kx_pb_free(res);
    return out;
}

static bool host_exists(const char *name)
{
    char p[800];
    snprintf(p, sizeof p, "%s/%s", g_outside, name);
    struct stat st;
    return lstat(p, &st) == 0;
}

/* ---- setup ------------------------------------------------------------------------------ */

static int group_setup(void **state)
{
    if (nats_Open(-1) != NATS_OK)
        return -1;
    kx_th_stack_opts opts = {.env = STACK_ENV};
    if (kx_th_stack_start(&opts, &g_stack) != KX_OK)
        return -1;
    kx_uuid_new(g_project);
    kx_uuid_new(g_other);
    /* A host directory with a secret: what an outward link would reach. */
    snprintf(g_outside, sizeof g_outside, "%s/outside", g_stack.dir);
    if (mkdir(g_outside, 0777) != 0)
        return -1;
    char p[800];
    snprintf(p, sizeof p, "%s/secret", g_outside);
    FILE *f = fopen(p, "w");
    if (f == NULL)
        return -1;
    fputs(SECRET "\n", f);
    fclose(f);
    chmod(p, 0666);
    chmod(g_outside, 0777); /* even writable by anyone: only resolution protects it */
    if (kx_th_bus_connect(g_stack.nats.url, "it-files", &g_bus) != KX_OK)
        return -1;
    /* The broker's subscription may not be visible to a fresh connection at once. */
    return kx_th_sb_wait_serving(g_bus) == KX_OK ? 0 : -1;
}

static int group_teardown(void **state)
{
    kx_bus_close(g_bus, 1000);
    return 0;
}

/* ---- round trips ------------------------------------------------------------------------ */

static void test_binary_round_trip(void **state)
{
    uint8_t data[256 * 8];
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (uint8_t)(i % 256);
    reply_t *w = fwrite_("bin/all-bytes.dat", data, sizeof data,
                         KX__V1__SANDBOX_WRITE_MODE__SANDBOX_WRITE_OVERWRITE, 0);
    expect_ok(w);
    assert_int_equal(w->written, sizeof data);
    assert_non_null(w->info);
    assert_int_equal(w->info->size, sizeof data);
    assert_string_equal(w->info->path, "/workspace/bin/all-bytes.dat");
    assert_int_equal(w->info->mode, 0644);
    kx_pb_free(w);

    reply_t *r = fread_("/workspace/bin/all-bytes.dat", 0, 0);
    expect_ok(r);
    assert_int_equal(r->data.len, sizeof data);
    assert_memory_equal(r->data.data, data, sizeof data);
    assert_true(r->eof);
    assert_int_equal(r->next_offset, sizeof data);
    kx_pb_free(r);

    /* A window: offset + length. */
    r = fread_("bin/all-bytes.dat", 250, 12);
    expect_ok(r);
    assert_int_equal(r->data.len, 12);
    assert_memory_equal(r->data.data, data + 250, 12);
    assert_false(r->eof);
    assert_int_equal(r->next_offset, 262);
    kx_pb_free(r);

    /* The command sees the same bytes. */
    char *out = sh("od -An -tx1 -v bin/all-bytes.dat | tr -d ' \\n' | head -c 16; echo; "
                   "wc -c < bin/all-bytes.dat");
    assert_string_equal(out, "0001020304050607\n2048\n");
    free(out);

    /* stat and list */
    reply_t *s = fstat_("bin");
    expect_ok(s);
    assert_true(s->info->is_dir);
    kx_pb_free(s);
    reply_t *l = flist("bin", 0);
    expect_ok(l);
    assert_int_equal(l->n_entries, 1);
    assert_string_equal(l->entries[0]->name, "all-bytes.dat");
    assert_int_equal(l->entries[0]->size, sizeof data);
    assert_false(l->entries[0]->is_dir);
    assert_true(l->entries[0]->mtime_unix_ms > 0);
    kx_pb_free(l);

    /* append, and create refuses an existing file */
    reply_t *a = fwrite_("bin/all-bytes.dat", "tail", 4,
                         KX__V1__SANDBOX_WRITE_MODE__SANDBOX_WRITE_APPEND, 0);
    expect_ok(a);
    assert_int_equal(a->info->size, sizeof data + 4);
    kx_pb_free(a);
    expect_error(fwrite_("bin/all-bytes.dat", "x", 1,
                         KX__V1__SANDBOX_WRITE_MODE__SANDBOX_WRITE_CREATE, 0),
                 "already_exists", "/workspace/bin/all-bytes.dat", NULL);
    expect_error(fstat_("no/such/file"), "not_found", "/workspace/no/such/file", NULL);
}

static void test_large_file_in_chunks(void **state)
{
    const size_t total = 3 * 1024 * 1024 + 12345, chunk = 700 * 1024;
    uint8_t *data = malloc(total);
    uint32_t x = 2463534242u;
    for (size_t i = 0; i < total; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        data[i] = (uint8_t)x;
    }
    for (size_t off = 0; off < total; off += chunk) {
        size_t n = total - off < chunk ? total - off : chunk;
        reply_t *w = fwrite_("big/upload.bin", data + off, n,
                             off == 0 ? KX__V1__SANDBOX_WRITE_MODE__SANDBOX_WRITE_OVERWRITE
                                      : KX__V1__SANDBOX_WRITE_MODE__SANDBOX_WRITE_AT,
                             (int64_t)off);
        expect_ok(w);
        assert_int_equal(w->next_offset, off + n);
        kx_pb_free(w);
    }
    /* A chunk must follow the previous one: a hole is refused. */
    expect_error(fwrite_("big/upload.bin", "x", 1, KX__V1__SANDBOX_WRITE_MODE__SANDBOX_WRITE_AT,
                         (int64_t)total + 10),
                 "invalid_argument", "past the end", "/workspace/big/upload.bin");
    /* Read back by next_offset until eof: each reply under the bus's max_payload. */
    uint8_t *back = malloc(total);
    size_t got = 0;
    int replies = 0;
    for (bool eof = false; !eof && replies < 100; replies++) {
        reply_t *r = fread_("big/upload.bin", (int64_t)got, 0);
        expect_ok(r);
        assert_true(r->data.len > 0 && r->data.len < 1024 * 1024);
        assert_true(got + r->data.len <= total);
        memcpy(back + got, r->data.data, r->data.len);
        got += r->data.len;
        assert_int_equal(r->next_offset, got);
        eof = r->eof;
        kx_pb_free(r);
    }
    assert_int_equal(got, total);
    assert_true(replies >= 4);
    assert_memory_equal(back, data, total);
    free(back);
    free(data);
    char *out = sh("wc -c < big/upload.bin");
    long wc = -1;
    assert_true(kx_th_parse_long(out, &wc));
    assert_int_equal(wc, (long)total);
    free(out);
    reply_t *d = fdelete("big", true);
    expect_ok(d);
    assert_int_equal(d->deleted, 2);
    kx_pb_free(d);
}

/* ---- escapes ---------------------------------------------------------------------------- */

static void test_paths_refused(void **state)
{
    const int R = KX__V1__SANDBOX_FILE_OP__SANDBOX_FILE_READ;
    expect_error(op_in(g_project, R, "../../../jwt-secret"), "invalid_argument",
                 "'../../../jwt-secret'", "..");
    expect_error(op_in(g_project, R, "a/../../x"), "invalid_argument", "'a/../../x'", NULL);
    expect_error(op_in(g_project, R, "/etc/passwd"), "invalid_argument", "'/etc/passwd'",
                 "relative");
    expect_error(op_in(g_project, R, "/proc/self/root/etc/passwd"), "invalid_argument",
                 "'/proc/self/root/etc/passwd'", NULL);
    expect_error(op_in(g_project, R, "/workspace/../etc/passwd"), "invalid_argument",
                 "'/workspace/../etc/passwd'", NULL);
    expect_error(op_in(g_project, R, "/workspacex/a"), "invalid_argument", "'/workspacex/a'",
                 NULL);
    expect_error(fwrite_("../escape.txt", "x", 1, 0, 0), "invalid_argument", "'../escape.txt'",
                 NULL);
    expect_error(fdelete("", true), "invalid_argument", "workspace itself", NULL);
    expect_error(fdelete("/workspace", true), "invalid_argument", "workspace itself", NULL);
    /* /proc/self/root as a link inside the workspace (and the host's /proc as a target). */
    free(sh("ln -sfn /proc/self/root procroot; ln -sfn /proc procdir"));
    expect_error(op_in(g_project, R, "procroot/etc/passwd"), "invalid_argument",
                 "'/workspace/procroot/etc/passwd'", "leaves the workspace");
    expect_error(op_in(g_project, R, "procdir/self/environ"), "invalid_argument",
                 "'/workspace/procdir/self/environ'", "leaves the workspace");
    expect_error(op_in(g_project, R, "ws"), "not_found", "'/workspace/ws'", NULL);
}

static void test_symlinks_out(void **state)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "mkdir -p links/inner && ln -sfn %s links/abs && ln -sfn ../../.. links/up && "
             "ln -sfn %s/secret links/file && ln -sfn / links/root && echo in > links/inner/f && "
             "ln -sfn inner links/ok",
             g_outside, g_outside);
    free(sh(cmd));
    const int R = KX__V1__SANDBOX_FILE_OP__SANDBOX_FILE_READ;
    const int L = KX__V1__SANDBOX_FILE_OP__SANDBOX_FILE_LIST;
    expect_error(op_in(g_project, R, "links/abs/secret"), "invalid_argument",
                 "'/workspace/links/abs/secret'", "leaves the workspace");
    expect_error(op_in(g_project, R, "links/file"), "invalid_argument", "'/workspace/links/file'",
                 "leaves the workspace");
    expect_error(op_in(g_project, L, "links/root"), "invalid_argument", "'/workspace/links/root'",
                 NULL);
    expect_error(op_in(g_project, L, "links/up"), "invalid_argument", "'/workspace/links/up'",
                 NULL);
    expect_error(fwrite_("links/abs/planted", "x", 1, 0, 0), "invalid_argument",
                 "'/workspace/links/abs/planted'", NULL);
    expect_error(fwrite_("links/up/planted", "x", 1, 0, 0), "invalid_argument",
                 "'/workspace/links/up/planted'", NULL);
    /* appending through a link as the last component: refused, never followed */
    expect_error(fwrite_("links/file", "x", 1, KX__V1__SANDBOX_WRITE_MODE__SANDBOX_WRITE_APPEND,
                         0),
                 "invalid_argument", "'/workspace/links/file'", "symbolic link");
    expect_error(fdelete("links/abs/secret", false), "invalid_argument",
                 "'/workspace/links/abs/secret'", NULL);
    assert_false(host_exists("planted"));
    /* A link that stays inside is followed on the way. */
    reply_t *r = op_in(g_project, R, "links/ok/f");
    expect_ok(r);
    assert_int_equal(r->data.len, 3);
    kx_pb_free(r);
    /* stat reports a link as a link */
    reply_t *s = fstat_("links/abs");
    expect_ok(s);
    assert_true(s->info->is_symlink);
    kx_pb_free(s);
    /* overwrite replaces the link itself: the host file is untouched */
    reply_t *w = fwrite_("links/file", "mine", 4, 0, 0);
    expect_ok(w);
    assert_false(w->info->is_symlink);
    kx_pb_free(w);
    /* a recursive delete removes the links, never what they point to */
    reply_t *d = fdelete("links", true);
    expect_ok(d);
    assert_true(d->deleted >= 7);
    kx_pb_free(d);
    assert_true(host_exists("secret"));
    char p[800];
    snprintf(p, sizeof p, "%s/secret", g_outside);
    FILE *f = fopen(p, "r");
    char line[64] = "";
    assert_non_null(f);
    assert_non_null(fgets(line, sizeof line, f));
    fclose(f);
    assert_string_equal(line, SECRET "\n");
}

/* A command swaps the link race/x between a directory inside and the host directory as fast as
 * it can while the API reads, writes and deletes race/x/...: nothing ever reaches the host. */
static void test_symlink_race(void **state)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "mkdir -p race/inner; cd race; i=0; while [ $i -lt 100000 ]; do "
             "echo inside > inner/secret; ln -sfn inner x; ln -sfn %s x; i=$((i+1)); done",
             g_outside);
    Kx__V1__SandboxExecResult *bg = exec_in(g_project, "racer", NULL, cmd, false);
    kx_pb_free(bg);
    for (int i = 0; i < 200; i++) { /* until the racer runs */
        reply_t *r = fstat_("race/x");
        bool there = r->error == NULL;
        kx_pb_free(r);
        if (there)
            break;
        usleep(20 * 1000);
    }
    int secrets = 0, inside = 0, refused = 0;
    for (int i = 0; i < 300; i++) {
        reply_t *r = fread_("race/x/secret", 0, 0);
        if (r->error == NULL) {
            if (r->data.len >= strlen(SECRET) && memcmp(r->data.data, SECRET, strlen(SECRET)) == 0)
                secrets++;
            else
                inside++;
        } else if (strstr(r->error->message, "leaves the workspace") != NULL) {
            refused++; /* the link was there: the race was on */
        }
        kx_pb_free(r);
        r = fwrite_("race/x/planted", "x", 1, i % 2 == 0 ? 0 : 2, 0);
        kx_pb_free(r);
        r = fdelete("race/x/secret", false);
        kx_pb_free(r);
    }
    assert_int_equal(secrets, 0);
    assert_true(refused > 0); /* the outward link was met: the race did happen */
    assert_false(host_exists("planted"));
    assert_true(host_exists("secret"));
    /* stop the racer */
    Kx__V1__SandboxTerminateRequest tq = KX__V1__SANDBOX_TERMINATE_REQUEST__INIT;
    tq.project_id = g_project;
    tq.session_name = "racer";
    kx_bus_meta meta;
    kx_bus_meta_init(&meta, kx_deadline_in(5000), g_project);
    natsMsg *reply = NULL;
    assert_int_equal(kx_bus_request_pb(g_bus, KX_SUBJ_SANDBOX_TERMINATE, &tq.base, &meta, &reply),
                     KX_OK);
    natsMsg_Destroy(reply);
    print_message("race: %d reads refused (a link), %d got the inside file, 0 the host's\n",
                  refused, inside);
    reply_t *d = fdelete("race", true);
    kx_pb_free(d);
}

/* ---- limits ----------------------------------------------------------------------------- */

static void test_disk_cap(void **state)
{
    /* KX_SANDBOX_DISK_MB=16, KX_SANDBOX_MAX_FILE_MB=10 */
    size_t mb = 1024 * 1024, chunk = 512 * 1024;
    uint8_t *block = calloc(1, chunk);
    memset(block, 'a', chunk);
    /* One file over the size limit: refused at the chunk that crosses it. */
    int64_t off = 0;
    reply_t *w = NULL;
    for (; off < (int64_t)(11 * mb); off += (int64_t)chunk) {
        w = fwrite_("cap/huge", block, chunk,
                    off == 0 ? 0 : KX__V1__SANDBOX_WRITE_MODE__SANDBOX_WRITE_AT, off);
        if (w->error != NULL)
            break;
        kx_pb_free(w);
        w = NULL;
    }
    assert_non_null(w);
    assert_int_equal(off, 10 * mb);
    expect_error(w, "resource_exhausted", "KX_SANDBOX_MAX_FILE_MB", "'/workspace/cap/huge'");
    /* A second file fills the workspace: refused with the disk's limit named. */
    for (off = 0, w = NULL; off < (int64_t)(10 * mb); off += (int64_t)chunk) {
        w = fwrite_("cap/second", block, chunk,
                    off == 0 ? 0 : KX__V1__SANDBOX_WRITE_MODE__SANDBOX_WRITE_AT, off);
        if (w->error != NULL)
            break;
        kx_pb_free(w);
        w = NULL;
    }
    assert_non_null(w);
    assert_true(off < (int64_t)(7 * mb));
    expect_error(w, "resource_exhausted", "KX_SANDBOX_DISK_MB", "'/workspace/cap/second'");
    /* Delete frees the space: a write works again at once. */
    reply_t *d = fdelete("cap/huge", false);
    expect_ok(d);
    kx_pb_free(d);
    w = fwrite_("cap/after", block, chunk, 0, 0);
    expect_ok(w);
    kx_pb_free(w);
    d = fdelete("cap", true);
    expect_ok(d);
    kx_pb_free(d);
    free(block);
}

/* Writers at once stay within the cap (a write counts against it from the moment it is queued;
 * on this bus the requests mostly arrive one after another, so this checks the bound, it does
 * not force the overlap). */
#define RACE_WRITERS 8
#define RACE_BYTES (900 * 1024)
static uint8_t g_block[RACE_BYTES];

static void *writer(void *arg)
{
    char path[64];
    snprintf(path, sizeof path, "cap2/w%d", (int)(intptr_t)arg);
    reply_t *w = fwrite_(path, g_block, RACE_BYTES, 0, 0);
    intptr_t ok = w->error == NULL;
    if (!ok && strcmp(w->error->code, "resource_exhausted") != 0)
        ok = -1;
    kx_pb_free(w);
    return (void *)ok;
}

static void test_disk_cap_concurrent_writes(void **state)
{
    /* Fill the workspace to about 12 of its 16 MiB, then 8 writers of 900 KiB at once. */
    size_t chunk = 768 * 1024;
    uint8_t *block = calloc(1, chunk);
    memset(block, 'f', chunk);
    for (int f = 0; f < 2; f++) { /* two files: one may not pass KX_SANDBOX_MAX_FILE_MB */
        char path[32];
        snprintf(path, sizeof path, "cap2/fill%d", f);
        for (int64_t off = 0; off < 6 * 1024 * 1024; off += (int64_t)chunk) {
            reply_t *w = fwrite_(path, block, chunk,
                                 off == 0 ? 0 : KX__V1__SANDBOX_WRITE_MODE__SANDBOX_WRITE_AT, off);
            expect_ok(w);
            kx_pb_free(w);
        }
    }
    free(block);
    memset(g_block, 'w', sizeof g_block);
    pthread_t t[RACE_WRITERS];
    for (int i = 0; i < RACE_WRITERS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, writer, (void *)(intptr_t)i), 0);
    int ok = 0;
    for (int i = 0; i < RACE_WRITERS; i++) {
        void *r = NULL;
        pthread_join(t[i], &r);
        assert_true((intptr_t)r >= 0);
        ok += (int)(intptr_t)r;
    }
    /* The workspace measured on the host stays within its limit. */
    char *out = sh("du -sk /workspace | cut -f1");
    long kb = -1;
    assert_true(kx_th_parse_long(out, &kb));
    free(out);
    print_message("concurrent writers: %d of %d written, workspace %ld KiB\n", ok, RACE_WRITERS,
                  kb);
    assert_true(ok >= 1 && ok < RACE_WRITERS);
    assert_true(kb <= 16 * 1024);
    reply_t *d = fdelete("cap2", true);
    expect_ok(d);
    kx_pb_free(d);
}

/* ---- the sandbox's uid ------------------------------------------------------------------ */

static void test_uid_both_ways(void **state)
{
    reply_t *w = fwrite_("own/api.txt", "from-api\n", 9, 0, 0);
    expect_ok(w);
    kx_pb_free(w);
    /* The command owns it: same uid, it can append to it and rewrite it. */
    char *out = sh("[ \"$(stat -c %u own/api.txt)\" = \"$(id -u)\" ] && echo same-owner; "
                   "[ \"$(stat -c %u own)\" = \"$(id -u)\" ] && echo dir-owner; "
                   "echo from-cmd >> own/api.txt && cat own/api.txt");
    assert_string_equal(out, "same-owner\ndir-owner\nfrom-api\nfrom-cmd\n");
    free(out);
    /* On the host: owned by the sandbox's uid, which is not root. */
    char p[1024];
    snprintf(p, sizeof p, "%s/%s/workspace/own/api.txt", g_stack.sandbox_root, g_project);
    struct stat st, ws;
    assert_int_equal(stat(p, &st), 0);
    snprintf(p, sizeof p, "%s/%s/workspace", g_stack.sandbox_root, g_project);
    assert_int_equal(stat(p, &ws), 0);
    assert_int_equal(st.st_uid, ws.st_uid);
    assert_true(st.st_uid != 0);

    /* What a command wrote (0600, its own) the API reads; what it locked, the API cannot: it
     * is not root. */
    free(sh("printf 'cmd\\000\\001\\377' > own/cmd.bin && chmod 600 own/cmd.bin && "
            "echo locked > own/locked && chmod 000 own/locked"));
    reply_t *r = fread_("own/cmd.bin", 0, 0);
    expect_ok(r);
    assert_int_equal(r->data.len, 6);
    assert_memory_equal(r->data.data, "cmd\0\001\377", 6);
    kx_pb_free(r);
    expect_error(fread_("own/locked", 0, 0), "invalid_argument", "permission denied",
                 "'/workspace/own/locked'");
    /* A FIFO never hangs a read. */
    free(sh("mkfifo own/fifo"));
    expect_error(fread_("own/fifo", 0, 0), "invalid_argument", "not a regular file", NULL);
    /* A directory that is not empty needs recursive. */
    expect_error(fdelete("own", false), "invalid_argument", "recursive", "'/workspace/own'");
    reply_t *d = fdelete("own", true);
    expect_ok(d);
    kx_pb_free(d);
    expect_error(fstat_("own"), "not_found", "'/workspace/own'", NULL);
}

static void test_list_bounded(void **state)
{
    free(sh("mkdir -p many && cd many && i=0; while [ $i -lt 50 ]; do : > f$i; i=$((i+1)); done"));
    reply_t *l = flist("many", 10);
    expect_ok(l);
    assert_int_equal(l->n_entries, 10);
    assert_true(l->truncated);
    assert_non_null(strstr(l->note, "40 more entries"));
    for (size_t i = 1; i < l->n_entries; i++)
        assert_true(strcmp(l->entries[i - 1]->name, l->entries[i]->name) < 0);
    kx_pb_free(l);
    l = flist("many", 0);
    expect_ok(l);
    assert_int_equal(l->n_entries, 50);
    assert_false(l->truncated);
    kx_pb_free(l);
    Kx__V1__SandboxFilesRequest rq = KX__V1__SANDBOX_FILES_REQUEST__INIT;
    rq.project_id = g_project;
    rq.op = KX__V1__SANDBOX_FILE_OP__SANDBOX_FILE_LIST;
    rq.max_entries = 1000000;
    expect_error(files_req(&rq), "invalid_argument", "max_entries", NULL);
    rq.op = 99;
    expect_error(files_req(&rq), "invalid_argument", "op 99", NULL);
    rq.op = KX__V1__SANDBOX_FILE_OP__SANDBOX_FILE_READ;
    rq.max_entries = 0;
    rq.project_id = "not-a-uuid";
    expect_error(files_req(&rq), "invalid_argument", "project_id", NULL);
    reply_t *d = fdelete("many", true);
    expect_ok(d);
    assert_int_equal(d->deleted, 51);
    kx_pb_free(d);
}

/* ---- sessions --------------------------------------------------------------------------- */

static void test_sessions_keep_cwd_and_env(void **state)
{
    Kx__V1__SandboxExecResult *r =
        exec_in(g_project, "s1", NULL, "mkdir -p sess/a/b && cd sess/a/b && export KXV=one", true);
    assert_int_equal(r->exit_code, 0);
    kx_pb_free(r);
    r = exec_in(g_project, "s1", NULL, "pwd; echo \"v=$KXV\"", true);
    assert_string_equal(r->stdout, "/workspace/sess/a/b\nv=one\n");
    assert_string_equal(r->cwd, "/workspace/sess/a/b");
    kx_pb_free(r);
    /* Another session of the same project: its own state. */
    r = exec_in(g_project, "s2", NULL, "pwd; echo \"v=$KXV\"; export KXV=two; cd sess", true);
    assert_string_equal(r->stdout, "/workspace\nv=\n");
    kx_pb_free(r);
    r = exec_in(g_project, "s1", NULL, "echo \"v=$KXV\"; cd ..; exit 7", true);
    assert_string_equal(r->stdout, "v=one\n");
    assert_int_equal(r->exit_code, 7); /* kept by the wrapper */
    kx_pb_free(r);
    r = exec_in(g_project, "s2", NULL, "pwd; echo \"v=$KXV\"", true);
    assert_string_equal(r->stdout, "/workspace/sess\nv=two\n");
    kx_pb_free(r);
    /* the exit above still saved its cd */
    r = exec_in(g_project, "s1", NULL, "pwd", true);
    assert_string_equal(r->stdout, "/workspace/sess/a\n");
    kx_pb_free(r);
    /* A folder in the request wins over the session's directory; the environment stays. */
    r = exec_in(g_project, "s1", "sess", "pwd; echo \"v=$KXV\"", true);
    assert_string_equal(r->stdout, "/workspace/sess\nv=one\n");
    assert_string_equal(r->cwd, "/workspace/sess");
    kx_pb_free(r);
    /* A background command of the session sees it too. */
    r = exec_in(g_project, "s1", NULL, "echo \"bg v=$KXV in $(pwd)\" > /workspace/bg.out", false);
    kx_pb_free(r);
    char *out = NULL;
    for (int i = 0; i < 100; i++) {
        free(out);
        out = sh("cat bg.out 2>/dev/null || true");
        if (out[0] != '\0')
            break;
        usleep(50 * 1000);
    }
    assert_string_equal(out, "bg v=one in /workspace/sess\n");
    free(out);
    /* The same session name in another project: nothing of it. */
    r = exec_in(g_other, "s1", NULL, "pwd; echo \"v=$KXV\"", true);
    assert_string_equal(r->stdout, "/workspace\nv=\n");
    kx_pb_free(r);
    /* A session's directory that is gone: said, and the command runs in /workspace. */
    r = exec_in(g_project, "s3", NULL, "mkdir -p gone && cd gone", true);
    kx_pb_free(r);
    free(sh("rmdir gone"));
    r = exec_in(g_project, "s3", NULL, "pwd", true);
    assert_string_equal(r->stdout, "/workspace\n");
    assert_non_null(strstr(r->stderr, "session s3: cannot enter /workspace/gone"));
    kx_pb_free(r);
    /* Quotes and odd characters in a command survive the wrapper. */
    r = exec_in(g_project, "s4", NULL, "printf '%s|' 'a'\\''b' \"c\\\"d\" '$HOME'", true);
    assert_string_equal(r->stdout, "a'b|c\"d|$HOME|");
    kx_pb_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_binary_round_trip),
        cmocka_unit_test(test_large_file_in_chunks),
        cmocka_unit_test(test_paths_refused),
        cmocka_unit_test(test_symlinks_out),
        cmocka_unit_test(test_symlink_race),
        cmocka_unit_test(test_disk_cap),
        cmocka_unit_test(test_disk_cap_concurrent_writes),
        cmocka_unit_test(test_uid_both_ways),
        cmocka_unit_test(test_list_bounded),
        cmocka_unit_test(test_sessions_keep_cwd_and_env),
    };
    if (getenv("KX_TEST_FILTER") != NULL)
        cmocka_set_test_filter(getenv("KX_TEST_FILTER"));
    int failed = cmocka_run_group_tests(tests, group_setup, group_teardown);
    if (kx_th_stack_stop(&g_stack, failed != 0) != 0)
        failed++;
    return failed;
}
