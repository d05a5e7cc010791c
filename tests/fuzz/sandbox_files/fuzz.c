/* fuzz.c — the sandbox-broker's checks of kx.sandbox.files requests (files_request.c) and the
 * session wrapper's quoting of a command (session_wrap.c): both take bytes from outside.
 *
 * Byte 0 picks what the rest is:
 *   0-1  a SandboxFilesRequest as protobuf bytes (what arrives on the bus), then validated;
 *   2    a path (in a read request);
 *   3    a command (and, after a NUL, a folder) given to the session wrapper.
 * Properties of an accepted request: the op is 1..5; its path has no empty, "." or ".."
 * component, no leading '/', no control character; parent + "/" + base (or base alone) is the
 * path; write and delete never name the workspace itself; offsets and lengths are not
 * negative; permissions are at most 0777; max_entries is 1..SB_FILES_LIST_MAX. A refused one
 * says why. The wrapper's script ends with `eval '<command>'` whose single-quoted text, with
 * every '\'' turned back into ', is exactly the command: nothing of it escapes the quotes. */
#include <string.h>

#include "files_request.h"
#include "fuzz_util.h"
#include "kx/pb.h"
#include "session_wrap.h"

static void check_req(const Kx__V1__SandboxFilesRequest *rq)
{
    sb_files_req r;
    char why[768] = "";
    kx_err err = sb_files_validate(rq, &r, why, sizeof why);
    if (err != KX_OK) {
        FUZZ_CHECK(err == KX_ERR_INVALID && why[0] != '\0');
        return;
    }
    FUZZ_CHECK(r.op >= 1 && r.op <= 5);
    size_t n = strlen(r.path);
    FUZZ_CHECK(n <= SB_FOLDER_MAX);
    if (n > 0)
        FUZZ_CHECK(r.path[0] != '/' && r.path[n - 1] != '/');
    for (size_t i = 0; i < n; i++)
        FUZZ_CHECK((unsigned char)r.path[i] >= 0x20 && r.path[i] != 0x7f);
    const char *p = r.path;
    while (n > 0) {
        const char *e = strchr(p, '/');
        size_t c = e != NULL ? (size_t)(e - p) : strlen(p);
        FUZZ_CHECK(c > 0);
        FUZZ_CHECK(!(c == 1 && p[0] == '.') && !(c == 2 && p[0] == '.' && p[1] == '.'));
        if (e == NULL)
            break;
        p = e + 1;
    }
    char joined[2 * SB_FOLDER_MAX + 2];
    if (r.parent[0] != '\0')
        snprintf(joined, sizeof joined, "%s/%s", r.parent, r.base);
    else
        snprintf(joined, sizeof joined, "%s", r.base);
    FUZZ_CHECK(strcmp(joined, r.path) == 0);
    if (r.op == KX__V1__SANDBOX_FILE_OP__SANDBOX_FILE_WRITE ||
        r.op == KX__V1__SANDBOX_FILE_OP__SANDBOX_FILE_DELETE)
        FUZZ_CHECK(r.path[0] != '\0' && r.base[0] != '\0');
    FUZZ_CHECK(r.offset >= 0 && r.length >= 0);
    FUZZ_CHECK(r.perm <= 0777 && r.perm != 0);
    FUZZ_CHECK(r.max_entries >= 1 && r.max_entries <= SB_FILES_LIST_MAX);
    FUZZ_CHECK(r.mode >= 0 && r.mode <= 3);
    if (r.op != KX__V1__SANDBOX_FILE_OP__SANDBOX_FILE_WRITE)
        FUZZ_CHECK(r.len == 0);
}

static void check_wrap(const char *command, const char *folder)
{
    char *s = sb_session_wrap("fuzz_1", folder, command, command);
    FUZZ_CHECK(s != NULL);
    const char *q = strstr(s, "\neval '");
    FUZZ_CHECK(q != NULL);
    q += strlen("\neval '");
    /* Undo the quoting: '...' runs joined by \' — the end is the last ' before the newline. */
    size_t cl = strlen(command);
    char *back = malloc(cl + 1);
    FUZZ_CHECK(back != NULL);
    size_t k = 0;
    for (;;) {
        if (*q == '\'' && strncmp(q, "'\\''", 4) == 0) {
            FUZZ_CHECK(k < cl + 1);
            back[k++] = '\'';
            q += 4;
            continue;
        }
        if (*q == '\'')
            break;
        FUZZ_CHECK(*q != '\0');
        FUZZ_CHECK(k < cl + 1);
        back[k++] = *q++;
    }
    back[k] = '\0';
    FUZZ_CHECK(strcmp(q, "'\n") == 0); /* nothing after the closing quote */
    FUZZ_CHECK(k == cl && memcmp(back, command, cl) == 0);
    free(back);
    free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    unsigned mode = data[0] % 4;
    if (mode <= 1) {
        Kx__V1__SandboxFilesRequest *rq =
            kx_pb_unpack(&kx__v1__sandbox_files_request__descriptor, data + 1, size - 1);
        check_req(rq); /* NULL too: refused */
        kx_pb_free(rq);
        return 0;
    }
    char *s = fuzz_cstr(data + 1, size - 1);
    if (mode == 2) {
        Kx__V1__SandboxFilesRequest rq = KX__V1__SANDBOX_FILES_REQUEST__INIT;
        rq.project_id = "0a1b2c3d-0000-4000-8000-000000000001";
        rq.op = KX__V1__SANDBOX_FILE_OP__SANDBOX_FILE_READ;
        rq.path = s;
        check_req(&rq);
    } else {
        const char *folder = "";
        size_t n = strlen(s);
        if (n < size - 1) /* a NUL inside: what follows it is the folder */
            folder = s + n + 1;
        char norm[SB_FOLDER_MAX + 1], why[512];
        if (sb_folder_normalize(folder, norm, sizeof norm, why, sizeof why) == KX_OK)
            check_wrap(s, norm);
    }
    free(s);
    return 0;
}
