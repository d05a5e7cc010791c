/* test_gateway_upload_names.c — initiate_files.c's pure parts: the safe name of an uploaded
 * file (gw_upload_name) and the prompt's lines (gw_upload_prompt, Kortix's format). The upload
 * itself: tests/integration/test_initiate_files.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "initiate_files.h"

static void expect_name(const char *raw, const char *want)
{
    char out[GW_UPLOAD_NAME_MAX + 1];
    gw_upload_name(raw, out);
    if (strcmp(out, want) != 0)
        fail_msg("name of '%s': got '%s', want '%s'", raw ? raw : "(null)", out, want);
}

static void test_names(void **state)
{
    expect_name("report.pdf", "report.pdf");
    expect_name("../../etc/x", "_._etc_x");
    expect_name("a/b", "a_b");
    expect_name("dir\\win.txt", "dir_win.txt");
    expect_name("", "file");
    expect_name(NULL, "file");
    expect_name("..", "file");
    expect_name("...", "file");
    expect_name(" . ", "file");
    expect_name(".bashrc", "bashrc");
    expect_name("a..b", "a.b");
    expect_name("trail. ", "trail");
    expect_name("tab\there\nnl", "tab_here_nl");
    expect_name("del\x7f", "del_");
    expect_name("c1\xc2\x85x", "c1_x");                /* U+0085, a C1 control */
    expect_name("caf\xc3\xa9.txt", "caf\xc3\xa9.txt"); /* UTF-8 kept */
    expect_name("bad\xff\xfe.txt", "bad__.txt");       /* not UTF-8 */
    expect_name("half\xc3", "half_");
}

static void test_long_names_are_cut(void **state)
{
    char raw[608], want[GW_UPLOAD_NAME_MAX + 1];
    memset(raw, 'n', 596);
    memcpy(raw + 596, ".txt", 5);
    memset(want, 'n', GW_UPLOAD_NAME_MAX - 4);
    memcpy(want + GW_UPLOAD_NAME_MAX - 4, ".txt", 5);
    expect_name(raw, want);

    /* an extension too long to keep: the name is simply cut */
    memset(raw, 'x', 599);
    raw[0] = 'a';
    raw[10] = '.';
    raw[599] = '\0';
    char out[GW_UPLOAD_NAME_MAX + 1];
    gw_upload_name(raw, out);
    assert_int_equal(strlen(out), GW_UPLOAD_NAME_MAX);
    assert_memory_equal(out, raw, GW_UPLOAD_NAME_MAX);

    /* never cut inside a character: 2-byte 'é' x 150 = 300 bytes */
    for (int i = 0; i < 150; i++)
        memcpy(raw + 2 * i, "\xc3\xa9", 2);
    raw[300] = '\0';
    gw_upload_name(raw, out);
    assert_int_equal(strlen(out), GW_UPLOAD_NAME_MAX);
    assert_memory_equal(out, raw, GW_UPLOAD_NAME_MAX);
    raw[0] = 'z'; /* now every character starts one byte later: 199 bytes fit */
    for (int i = 0; i < 150; i++)
        memcpy(raw + 1 + 2 * i, "\xc3\xa9", 2);
    raw[301] = '\0';
    gw_upload_name(raw, out);
    assert_int_equal(strlen(out), GW_UPLOAD_NAME_MAX - 1);

    /* a cut that leaves "stem." before the kept extension: no ".." */
    memset(raw, 'm', 600);
    raw[196] = '.'; /* the stem is cut after it: "m…m." + ".gz" */
    memcpy(raw + 590, ".gz", 4);
    gw_upload_name(raw, out);
    assert_null(strstr(out, ".."));
    assert_true(strlen(out) <= GW_UPLOAD_NAME_MAX);
}

static void test_prompt_lines(void **state)
{
    gw_upload_plan *plan = calloc(1, sizeof *plan);
    assert_non_null(plan);
    char *p = gw_upload_prompt("hi", plan);
    assert_string_equal(p, "hi"); /* no files: the prompt as it was */
    free(p);
    plan->n = 2;
    snprintf(plan->files[0].path, sizeof plan->files[0].path, GW_UPLOAD_DIR "/a.txt");
    snprintf(plan->files[1].path, sizeof plan->files[1].path, GW_UPLOAD_DIR "/b c.png");
    p = gw_upload_prompt("Look at these", plan);
    assert_string_equal(p,
                        "Look at these\n\n"
                        "[Uploaded File: /workspace/uploads/a.txt]\n"
                        "[Uploaded File: /workspace/uploads/b c.png]\n");
    free(p);
    p = gw_upload_prompt("", plan); /* Kortix: no blank lines before the first */
    assert_string_equal(p,
                        "[Uploaded File: /workspace/uploads/a.txt]\n"
                        "[Uploaded File: /workspace/uploads/b c.png]\n");
    free(p);
    free(plan);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_long_names_are_cut),
        cmocka_unit_test(test_prompt_lines),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
