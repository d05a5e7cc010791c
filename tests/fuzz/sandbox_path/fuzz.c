/* fuzz.c — the sandbox-broker's checks of names that come from outside (sandbox_path.c) and
 * the repair of command output into UTF-8 (libkx's kx_utf8_sanitize): a SandboxExecRequest's
 * folder and session_name, and whatever bytes a command prints.
 *
 * Byte 0 picks what the rest is: 0-1 a folder, 2 a session name, 3 command output.
 * Properties of a folder that is accepted: its normal form has no empty, "." or ".." component,
 * no leading or trailing '/', no control character, at most SB_FOLDER_MAX bytes; normalizing it
 * again changes nothing; the workspace path built from it is <root>/<project>/workspace[/...]
 * and so stays inside the workspace. A refused folder says why. A session name is valid exactly
 * when it matches [A-Za-z0-9_.-]{1,64}. Repaired output is UTF-8 without NUL (jansson agrees),
 * and output that already was such comes back unchanged. */
#include <jansson.h>
#include <string.h>

#include "fuzz_util.h"
#include "sandbox_path.h"
#include "kx/utf8.h"

static const char ROOT[] = "/var/lib/kx/sandboxes";
static const char PROJECT[] = "0a1b2c3d-0000-4000-8000-000000000001";

static void check_folder(const char *folder)
{
    char out[SB_FOLDER_MAX + 64], why[256] = "";
    memset(out, 'x', sizeof out);
    kx_err err = sb_folder_normalize(folder, out, sizeof out, why, sizeof why);
    if (err != KX_OK) {
        FUZZ_CHECK(err == KX_ERR_INVALID && why[0] != '\0' && out[0] == '\0');
        return;
    }
    size_t n = strlen(out);
    FUZZ_CHECK(n <= SB_FOLDER_MAX);
    if (n > 0)
        FUZZ_CHECK(out[0] != '/' && out[n - 1] != '/');
    for (size_t i = 0; i < n; i++)
        FUZZ_CHECK((unsigned char)out[i] >= 0x20 && out[i] != 0x7f);
    /* components */
    const char *p = out;
    while (n > 0) {
        const char *e = strchr(p, '/');
        size_t c = e != NULL ? (size_t)(e - p) : strlen(p);
        FUZZ_CHECK(c > 0);
        FUZZ_CHECK(!(c == 1 && p[0] == '.') && !(c == 2 && p[0] == '.' && p[1] == '.'));
        if (e == NULL)
            break;
        p = e + 1;
    }
    char again[SB_FOLDER_MAX + 64];
    FUZZ_CHECK(sb_folder_normalize(out, again, sizeof again, why, sizeof why) == KX_OK);
    FUZZ_CHECK(strcmp(again, out) == 0);

    char path[4096], prefix[256];
    snprintf(prefix, sizeof prefix, "%s/%s/workspace", ROOT, PROJECT);
    if (sb_workspace_path(ROOT, PROJECT, out, path, sizeof path) == KX_OK) {
        size_t pl = strlen(prefix);
        FUZZ_CHECK(strncmp(path, prefix, pl) == 0);
        FUZZ_CHECK(path[pl] == '\0' || (path[pl] == '/' && strcmp(path + pl + 1, out) == 0));
    }
    char cwd[4096];
    if (sb_visible_cwd(out, cwd, sizeof cwd) == KX_OK)
        FUZZ_CHECK(strncmp(cwd, SB_VISIBLE_ROOT, strlen(SB_VISIBLE_ROOT)) == 0);
}

static void check_session(const char *name)
{
    size_t n = strlen(name);
    bool expect = n >= 1 && n <= SB_SESSION_MAX &&
        strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") == n;
    FUZZ_CHECK(sb_session_name_valid(name) == expect);
}

static void check_output(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    size_t out_len = (size_t)-1;
    char *clean = kx_utf8_sanitize(s, size, &out_len);
    FUZZ_CHECK(clean != NULL && strlen(clean) == out_len && clean[out_len] == '\0');
    FUZZ_CHECK(kx_utf8_valid(clean, out_len));
    json_t *j = json_stringn(clean, out_len);
    FUZZ_CHECK(j != NULL);
    json_decref(j);
    /* valid means UTF-8 without NUL; jansson takes a NUL inside a string, so it alone is not
     * the oracle */
    bool valid = kx_utf8_valid(s, size);
    json_t *k = json_stringn(s, size);
    FUZZ_CHECK(valid == (k != NULL && memchr(s, '\0', size) == NULL));
    json_decref(k);
    if (valid)
        FUZZ_CHECK(out_len == size && memcmp(clean, s, size) == 0);
    free(clean);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    unsigned mode = data[0] % 4;
    if (mode == 3) {
        check_output(data + 1, size - 1);
        return 0;
    }
    char *s = fuzz_cstr(data + 1, size - 1);
    if (mode == 2)
        check_session(s);
    else
        check_folder(s);
    free(s);
    return 0;
}
