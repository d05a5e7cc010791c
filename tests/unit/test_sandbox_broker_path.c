/* test_sandbox_broker_path.c — the sandbox-broker's pure checks: folder normalization (what
 * may and may not reach the file system), session names, the workspace layout, mkdir -p, and
 * the UTF-8 repair of command output. */
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

#include "sandbox_path.h"

static void expect_folder(const char *in, const char *want)
{
    char out[SB_FOLDER_MAX + 1], why[256] = "";
    assert_int_equal(sb_folder_normalize(in, out, sizeof out, why, sizeof why), KX_OK);
    assert_string_equal(out, want);
}

static void expect_folder_refused(const char *in, const char *why_part)
{
    char out[SB_FOLDER_MAX + 1], why[256] = "";
    assert_int_equal(sb_folder_normalize(in, out, sizeof out, why, sizeof why), KX_ERR_INVALID);
    assert_string_equal(out, "");
    assert_non_null(strstr(why, why_part));
}

static void test_folder_accepted(void **state)
{
    expect_folder(NULL, "");
    expect_folder("", "");
    expect_folder(".", "");
    expect_folder("src", "src");
    expect_folder("./src/", "src");
    expect_folder("a//b/./c", "a/b/c");
    expect_folder("/workspace", "");
    expect_folder("/workspace/", "");
    expect_folder("/workspace/app/src", "app/src");
    expect_folder("my app", "my app");
    expect_folder("..foo/bar..", "..foo/bar.."); /* names that merely contain dots */
}

static void test_folder_refused(void **state)
{
    expect_folder_refused("..", "folder '..' must not contain '..'");
    expect_folder_refused("../etc", "folder '../etc'");
    expect_folder_refused("a/../../b", "'..'");
    expect_folder_refused("a/..", "'..'");
    expect_folder_refused("/workspace/../etc", "'..'");
    expect_folder_refused("/etc", "folder '/etc' must be relative");
    expect_folder_refused("/workspacex", "must be relative");
    expect_folder_refused("/", "must be relative");
    expect_folder_refused("a\nb", "control character");

    char big[SB_FOLDER_MAX + 10];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    expect_folder_refused(big, "too long");
}

static void test_session_names(void **state)
{
    assert_true(sb_session_name_valid("build"));
    assert_true(sb_session_name_valid("session_0a1b2c3d"));
    assert_true(sb_session_name_valid("a.b-c_D9"));
    char max[SB_SESSION_MAX + 2];
    memset(max, 'a', SB_SESSION_MAX);
    max[SB_SESSION_MAX] = '\0';
    assert_true(sb_session_name_valid(max));
    max[SB_SESSION_MAX] = 'a';
    max[SB_SESSION_MAX + 1] = '\0';
    assert_false(sb_session_name_valid(max)); /* 65 characters */
    assert_false(sb_session_name_valid(NULL));
    assert_false(sb_session_name_valid(""));
    assert_false(sb_session_name_valid("a/b"));
    assert_false(sb_session_name_valid("a b"));
    assert_false(sb_session_name_valid("x;rm"));
    assert_false(sb_session_name_valid("caf\xc3\xa9"));

    char name[32];
    sb_session_name_default(0xdeadbeefu, name, sizeof name);
    assert_string_equal(name, "session_deadbeef");
    sb_session_name_default(7, name, sizeof name);
    assert_string_equal(name, "session_00000007");
    assert_true(sb_session_name_valid(name));
}

static void test_layout(void **state)
{
    char out[512];
    const char *project = "0A1B2C3D-0000-4000-8000-00000000000F";
    assert_int_equal(sb_workspace_path("/srv/sb", project, "", out, sizeof out), KX_OK);
    assert_string_equal(out, "/srv/sb/0a1b2c3d-0000-4000-8000-00000000000f/workspace");
    assert_int_equal(sb_workspace_path("/srv/sb", project, "app/src", out, sizeof out), KX_OK);
    assert_string_equal(out, "/srv/sb/0a1b2c3d-0000-4000-8000-00000000000f/workspace/app/src");
    assert_int_equal(sb_sessions_dir("/srv/sb", project, out, sizeof out), KX_OK);
    assert_string_equal(out, "/srv/sb/0a1b2c3d-0000-4000-8000-00000000000f/.kx/sessions");
    assert_int_equal(sb_workspace_path("/srv/sb", project, "", out, 20), KX_ERR_INVALID);

    assert_int_equal(sb_visible_cwd("", out, sizeof out), KX_OK);
    assert_string_equal(out, "/workspace");
    assert_int_equal(sb_visible_cwd("app/src", out, sizeof out), KX_OK);
    assert_string_equal(out, "/workspace/app/src");
}

static void test_mkdir_p(void **state)
{
    char tmpl[] = "/tmp/kx-unit-sbpath-XXXXXX";
    assert_non_null(mkdtemp(tmpl));
    char path[256];
    snprintf(path, sizeof path, "%s/a/b/c", tmpl);
    assert_int_equal(sb_mkdir_p(path, 0700), KX_OK);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0700);
    assert_int_equal(sb_mkdir_p(path, 0700), KX_OK); /* again: fine */

    char file[300];
    snprintf(file, sizeof file, "%s/a/file", tmpl);
    FILE *f = fopen(file, "w");
    assert_non_null(f);
    fclose(f);
    snprintf(path, sizeof path, "%s/a/file/sub", tmpl);
    assert_int_equal(sb_mkdir_p(path, 0700), KX_ERR_IO); /* a file in the way */

    unlink(file);
    snprintf(path, sizeof path, "%s/a/b/c", tmpl);
    rmdir(path);
    snprintf(path, sizeof path, "%s/a/b", tmpl);
    rmdir(path);
    snprintf(path, sizeof path, "%s/a", tmpl);
    rmdir(path);
    rmdir(tmpl);
}

/* The exec request's checks, shared by both providers: each field refused with its name. */
static void expect_exec_refused(const Kx__V1__SandboxExecRequest *rq, const char *why_part)
{
    char folder[SB_FOLDER_MAX + 1], session[SB_SESSION_MAX + 1], why[512] = "";
    assert_int_equal(sb_exec_request_check(rq, folder, session, why, sizeof why), KX_ERR_INVALID);
    if (strstr(why, why_part) == NULL)
        fail_msg("expected '%s' in: %s", why_part, why);
}

static void test_exec_request_check(void **state)
{
    (void)state;
    char long_id[SB_EXEC_ID_MAX + 2];
    memset(long_id, 'x', SB_EXEC_ID_MAX + 1);
    long_id[SB_EXEC_ID_MAX + 1] = '\0';
    Kx__V1__SandboxExecRequest rq = KX__V1__SANDBOX_EXEC_REQUEST__INIT;
    rq.exec_id = "e1";
    rq.project_id = "0a1b2c3d-0000-4000-8000-00000000000f";
    rq.command = "echo hi";
    rq.folder = "./app//src/";
    char folder[SB_FOLDER_MAX + 1], session[SB_SESSION_MAX + 1], why[512] = "";
    assert_int_equal(sb_exec_request_check(&rq, folder, session, why, sizeof why), KX_OK);
    assert_string_equal(folder, "app/src");
    assert_int_equal(strncmp(session, "session_", 8), 0); /* a default one */
    rq.session_name = "build";
    assert_int_equal(sb_exec_request_check(&rq, folder, session, why, sizeof why), KX_OK);
    assert_string_equal(session, "build");
    long_id[SB_EXEC_ID_MAX] = '\0'; /* exactly the longest */
    rq.exec_id = long_id;
    assert_int_equal(sb_exec_request_check(&rq, folder, session, why, sizeof why), KX_OK);

    expect_exec_refused(NULL, "not a valid kx.v1.SandboxExecRequest");
    long_id[SB_EXEC_ID_MAX] = 'x';
    /* each case changes one field of a good request */
    const struct {
        const char *exec_id, *project, *command, *folder, *session;
        int timeout_s, max_output;
        const char *why;
    } bad[] = {
        {long_id, NULL, NULL, NULL, NULL, 0, 0, "exec_id is required (1..128 bytes)"},
        {"", NULL, NULL, NULL, NULL, 0, 0, "exec_id is required"},
        {NULL, "nope", NULL, NULL, NULL, 0, 0, "project_id 'nope' is not a valid UUID"},
        {NULL, NULL, "", NULL, NULL, 0, 0, "command is required"},
        {NULL, NULL, NULL, "../etc", NULL, 0, 0, "folder '../etc' must not contain '..'"},
        {NULL, NULL, NULL, NULL, "bad name", 0, 0, "session_name 'bad name' is not valid"},
        {NULL, NULL, NULL, NULL, NULL, -1, 0, "must not be negative"},
        {NULL, NULL, NULL, NULL, NULL, 0, -5, "must not be negative"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        Kx__V1__SandboxExecRequest b = KX__V1__SANDBOX_EXEC_REQUEST__INIT;
        b.exec_id = (char *)(bad[i].exec_id ? bad[i].exec_id : "e1");
        b.project_id =
            (char *)(bad[i].project ? bad[i].project : "0a1b2c3d-0000-4000-8000-00000000000f");
        b.command = (char *)(bad[i].command ? bad[i].command : "true");
        b.folder = (char *)(bad[i].folder ? bad[i].folder : "");
        b.session_name = (char *)(bad[i].session ? bad[i].session : "");
        b.timeout_s = bad[i].timeout_s;
        b.max_output_bytes = bad[i].max_output;
        expect_exec_refused(&b, bad[i].why);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_folder_accepted), cmocka_unit_test(test_folder_refused),
        cmocka_unit_test(test_session_names),   cmocka_unit_test(test_layout),
        cmocka_unit_test(test_mkdir_p),         cmocka_unit_test(test_exec_request_check),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
