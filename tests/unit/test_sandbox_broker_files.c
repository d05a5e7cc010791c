/* test_sandbox_broker_files.c — kx.sandbox.files without the bus: the request checks
 * (files_request.c), the operations on a real temporary workspace (files_io.c: resolution
 * beneath it, links, write modes, limits, recursive delete), and the session wrapper's script
 * (session_wrap.c: quoting, the saved cwd read without following links; it_sandbox_files runs
 * it in a sandbox). */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "files_io.h"
#include "files_request.h"
#include "session_wrap.h"

#define PROJECT "0a1b2c3d-0000-4000-8000-000000000001"

static kx_err validate(Kx__V1__SandboxFilesRequest *rq, sb_files_req *out, char *why)
{
    return sb_files_validate(rq, out, why, 512);
}

static void test_validate(void **state)
{
    Kx__V1__SandboxFilesRequest rq = KX__V1__SANDBOX_FILES_REQUEST__INIT;
    sb_files_req r;
    char why[512];
    assert_int_equal(sb_files_validate(NULL, &r, why, sizeof why), KX_ERR_INVALID);
    rq.project_id = "nope";
    rq.op = KX__V1__SANDBOX_FILE_OP__SANDBOX_FILE_READ;
    assert_int_equal(validate(&rq, &r, why), KX_ERR_INVALID);
    assert_non_null(strstr(why, "project_id"));
    rq.project_id = PROJECT;
    rq.path = "/workspace/src//a.txt";
    assert_int_equal(validate(&rq, &r, why), KX_OK);
    assert_string_equal(r.path, "src/a.txt");
    assert_string_equal(r.parent, "src");
    assert_string_equal(r.base, "a.txt");
    rq.path = "top";
    assert_int_equal(validate(&rq, &r, why), KX_OK);
    assert_string_equal(r.parent, "");
    assert_string_equal(r.base, "top");
    rq.path = "a/../../b";
    assert_int_equal(validate(&rq, &r, why), KX_ERR_INVALID);
    assert_non_null(strstr(why, "path 'a/../../b'"));
    rq.path = "/etc/shadow";
    assert_int_equal(validate(&rq, &r, why), KX_ERR_INVALID);
    assert_non_null(strstr(why, "path '/etc/shadow'"));
    rq.path = "x";
    rq.op = 0;
    assert_int_equal(validate(&rq, &r, why), KX_ERR_INVALID);
    rq.op = KX__V1__SANDBOX_FILE_OP__SANDBOX_FILE_WRITE;
    rq.path = "/workspace/";
    assert_int_equal(validate(&rq, &r, why), KX_ERR_INVALID);
    assert_non_null(strstr(why, "workspace itself"));
    rq.path = "f";
    rq.offset = 5; /* only with mode at */
    assert_int_equal(validate(&rq, &r, why), KX_ERR_INVALID);
    rq.mode = KX__V1__SANDBOX_WRITE_MODE__SANDBOX_WRITE_AT;
    assert_int_equal(validate(&rq, &r, why), KX_OK);
    rq.mode = 9;
    assert_int_equal(validate(&rq, &r, why), KX_ERR_INVALID);
    rq.mode = 0;
    rq.offset = 0;
    rq.permissions = 04755;
    assert_int_equal(validate(&rq, &r, why), KX_ERR_INVALID);
    rq.permissions = 0600;
    assert_int_equal(validate(&rq, &r, why), KX_OK);
    assert_int_equal(r.perm, 0600);
    rq.op = KX__V1__SANDBOX_FILE_OP__SANDBOX_FILE_STAT;
    rq.data.data = (uint8_t *)"x";
    rq.data.len = 1;
    assert_int_equal(validate(&rq, &r, why), KX_ERR_INVALID);
    assert_non_null(strstr(why, "data"));
    rq.data.len = 0;
    rq.length = -1;
    assert_int_equal(validate(&rq, &r, why), KX_ERR_INVALID);
    rq.length = 0;
    rq.op = KX__V1__SANDBOX_FILE_OP__SANDBOX_FILE_LIST;
    rq.max_entries = SB_FILES_LIST_MAX + 1;
    assert_int_equal(validate(&rq, &r, why), KX_ERR_INVALID);
    rq.max_entries = 0;
    assert_int_equal(validate(&rq, &r, why), KX_OK);
    assert_int_equal(r.max_entries, SB_FILES_LIST_DEFAULT);
}

/* ---- the operations on a temporary workspace -------------------------------------------- */

static char g_root[64];
static char g_ws[128];
static int g_wsfd = -1;

static int ws_setup(void **state)
{
    snprintf(g_root, sizeof g_root, "/tmp/kx-files-unit-XXXXXX");
    if (mkdtemp(g_root) == NULL)
        return -1;
    snprintf(g_ws, sizeof g_ws, "%s/ws", g_root);
    if (mkdir(g_ws, 0700) != 0)
        return -1;
    g_wsfd = open(g_ws, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    return g_wsfd >= 0 ? 0 : -1;
}

static int ws_teardown(void **state)
{
    close(g_wsfd);
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_root);
    return system(cmd) == 0 ? 0 : -1;
}

static sb_files_limits limits(void)
{
    sb_files_limits l = {.max_data = 1000,
                         .max_reply = 64 * 1024,
                         .max_file = 4096,
                         .disk_room = 8192,
                         .disk_limit = 1 << 20,
                         .deadline = kx_deadline_in(10000)};
    return l;
}

/* Runs op on path; returns the result (caller frees with sb_files_result_free). */
static void run(int op, const char *path, const void *data, size_t len, int mode, int64_t off,
                bool recursive, sb_files_result *r)
{
    Kx__V1__SandboxFilesRequest rq = KX__V1__SANDBOX_FILES_REQUEST__INIT;
    rq.project_id = PROJECT;
    rq.op = op;
    rq.path = (char *)path;
    rq.data.data = (uint8_t *)data;
    rq.data.len = len;
    rq.mode = mode;
    rq.offset = off;
    rq.recursive = recursive;
    sb_files_req req;
    char why[512];
    assert_int_equal(sb_files_validate(&rq, &req, why, sizeof why), KX_OK);
    sb_files_limits l = limits();
    sb_files_run(g_wsfd, &req, &l, r);
}

static void expect_code(sb_files_result *r, const char *code, const char *part)
{
    assert_non_null(r->rep.error);
    if (strcmp(r->rep.error->code, code) != 0 || strstr(r->rep.error->message, part) == NULL)
        fail_msg("want %s with '%s', got %s: %s", code, part, r->rep.error->code,
                 r->rep.error->message);
    sb_files_result_free(r);
}

enum {
    STAT = 1,
    LIST,
    READ,
    WRITE,
    DELETE
};

static void test_write_read_modes(void **state)
{
    sb_files_result r;
    run(WRITE, "d/e/f.txt", "hello", 5, 0, 0, false, &r);
    assert_null(r.rep.error);
    assert_int_equal(r.rep.written, 5);
    sb_files_result_free(&r);
    run(WRITE, "d/e/f.txt", "!", 1, KX__V1__SANDBOX_WRITE_MODE__SANDBOX_WRITE_APPEND, 0, false,
        &r);
    assert_int_equal(r.info.size, 6);
    sb_files_result_free(&r);
    run(WRITE, "d/e/f.txt", "J", 1, KX__V1__SANDBOX_WRITE_MODE__SANDBOX_WRITE_AT, 0, false, &r);
    assert_int_equal(r.info.size, 6);
    sb_files_result_free(&r);
    run(READ, "d/e/f.txt", NULL, 0, 0, 0, false, &r);
    assert_null(r.rep.error);
    assert_int_equal(r.rep.data.len, 6);
    assert_memory_equal(r.rep.data.data, "Jello!", 6);
    assert_true(r.rep.eof);
    sb_files_result_free(&r);
    run(WRITE, "d/e/f.txt", "x", 1, KX__V1__SANDBOX_WRITE_MODE__SANDBOX_WRITE_CREATE, 0, false,
        &r);
    expect_code(&r, "already_exists", "/workspace/d/e/f.txt");
    /* no temporary file is left behind by the replace */
    run(LIST, "d/e", NULL, 0, 0, 0, false, &r);
    assert_int_equal(r.rep.n_entries, 1);
    sb_files_result_free(&r);
    /* limits: the file size, the disk room */
    char big[5000];
    memset(big, 'b', sizeof big);
    run(WRITE, "big", big, sizeof big, 0, 0, false, &r);
    expect_code(&r, "resource_exhausted", "KX_SANDBOX_MAX_FILE_MB");
    run(WRITE, "d/e/f.txt", big, 4091, KX__V1__SANDBOX_WRITE_MODE__SANDBOX_WRITE_APPEND, 0, false,
        &r);
    expect_code(&r, "resource_exhausted", "KX_SANDBOX_MAX_FILE_MB");
    /* reads are bounded by max_data */
    run(WRITE, "r", big, 3000, 0, 0, false, &r);
    assert_null(r.rep.error);
    sb_files_result_free(&r);
    run(READ, "r", NULL, 0, 0, 0, false, &r);
    assert_int_equal(r.rep.data.len, 1000);
    assert_false(r.rep.eof);
    assert_int_equal(r.rep.next_offset, 1000);
    sb_files_result_free(&r);
    run(READ, "r", NULL, 0, 0, 5000, false, &r);
    assert_null(r.rep.error);
    assert_int_equal(r.rep.data.len, 0);
    assert_true(r.rep.eof);
    sb_files_result_free(&r);
    run(READ, "d", NULL, 0, 0, 0, false, &r);
    expect_code(&r, "invalid_argument", "is a directory");
}

static void test_links_and_delete(void **state)
{
    char p[512], t[256];
    snprintf(p, sizeof p, "%s/ws/out", g_root);
    snprintf(t, sizeof t, "%s/host", g_root);
    assert_int_equal(mkdir(t, 0755), 0);
    assert_int_equal(symlink(t, p), 0); /* absolute: out of the workspace */
    snprintf(p, sizeof p, "%s/ws/up", g_root);
    assert_int_equal(symlink("..", p), 0);
    sb_files_result r;
    run(WRITE, "out/x", "1", 1, 0, 0, false, &r);
    expect_code(&r, "invalid_argument", "'/workspace/out/x' leaves the workspace");
    run(WRITE, "up/x", "1", 1, 0, 0, false, &r);
    expect_code(&r, "invalid_argument", "'/workspace/up/x' leaves the workspace");
    run(LIST, "up", NULL, 0, 0, 0, false, &r);
    expect_code(&r, "invalid_argument", "leaves the workspace");
    run(STAT, "out", NULL, 0, 0, 0, false, &r);
    assert_null(r.rep.error);
    assert_true(r.info.is_symlink);
    sb_files_result_free(&r);
    /* a tree holding links out: the links go, their targets stay */
    run(WRITE, "tree/sub/deep/f", "1", 1, 0, 0, false, &r);
    assert_null(r.rep.error);
    sb_files_result_free(&r);
    snprintf(p, sizeof p, "%s/ws/tree/sub/link", g_root);
    assert_int_equal(symlink(t, p), 0);
    snprintf(p, sizeof p, "%s/keep", t);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fclose(f);
    run(DELETE, "tree", NULL, 0, 0, 0, false, &r);
    expect_code(&r, "invalid_argument", "recursive");
    run(DELETE, "tree", NULL, 0, 0, 0, true, &r);
    assert_null(r.rep.error);
    assert_int_equal(r.rep.deleted, 5); /* f, deep, link, sub, tree */
    sb_files_result_free(&r);
    struct stat st;
    assert_int_equal(stat(p, &st), 0);
    run(DELETE, "out", NULL, 0, 0, 0, false, &r); /* the link itself */
    assert_null(r.rep.error);
    sb_files_result_free(&r);
    assert_int_equal(stat(t, &st), 0);
}

/* ---- the session wrapper, run by /bin/sh ------------------------------------------------- */

static void test_session_wrap_quotes(void **state)
{
    char *s = sb_session_wrap("s.1", "it's here", "echo 'a'\"b\"$X; exit 3", "ex/1");
    assert_non_null(s);
    assert_non_null(strstr(s, "__kx_d='/workspace/it'\\''s here'"));
    assert_non_null(strstr(s, "eval 'echo '\\''a'\\''\"b\"$X; exit 3'"));
    assert_non_null(strstr(s, "/workspace/.kx-session/s.1.env"));
    assert_non_null(strstr(s, "/workspace/.kx-session/.tmp.ex_1.cwd"));
    free(s);
    s = sb_session_wrap("s", "", "true", "e1");
    assert_non_null(strstr(s, "/workspace/.kx-session/s.cwd"));
    free(s);
}

static void test_session_cwd_read(void **state)
{
    char out[64];
    assert_int_equal(sb_session_cwd_read(g_wsfd, "nosuch", out, sizeof out), KX_ERR_NOT_FOUND);
    char p[256];
    snprintf(p, sizeof p, "%s/ws/.kx-session", g_root);
    mkdir(p, 0700);
    snprintf(p, sizeof p, "%s/ws/.kx-session/a.cwd", g_root);
    FILE *f = fopen(p, "w");
    fputs("/workspace/x\xff/y\n", f);
    fclose(f);
    assert_int_equal(sb_session_cwd_read(g_wsfd, "a", out, sizeof out), KX_OK);
    assert_string_equal(out, "/workspace/x\xef\xbf\xbd/y");
    /* a link is never followed */
    snprintf(p, sizeof p, "%s/ws/.kx-session/b.cwd", g_root);
    assert_int_equal(symlink("/etc/hostname", p), 0);
    assert_int_equal(sb_session_cwd_read(g_wsfd, "b", out, sizeof out), KX_ERR_NOT_FOUND);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_validate),         cmocka_unit_test(test_write_read_modes),
        cmocka_unit_test(test_links_and_delete), cmocka_unit_test(test_session_wrap_quotes),
        cmocka_unit_test(test_session_cwd_read),
    };
    return cmocka_run_group_tests(tests, ws_setup, ws_teardown);
}
