/* test_initiate_files.c — POST /api/agent/initiate with files[] (Kortix's uploads), with the
 * whole stack (real NATS, Postgres, the sandbox-broker with bubblewrap):
 *   - two files (one binary, larger than one bus message): they are in the new project's
 *     sandbox under /workspace/uploads/ with their exact bytes (read back through the files
 *     API), and the first user message is the prompt plus Kortix's "[Uploaded File: …]" lines;
 *     another account cannot read them (404);
 *   - hostile names ("../../etc/x", "a/b", empty, very long, twice the same): each one safe
 *     file in /workspace/uploads, the names as the prompt gives them;
 *   - refusals that leave nothing (no project, no sandbox directory): too many files (400), a
 *     file over KX_INITIATE_FILE_MAX_BYTES (413 naming it), files together over
 *     KX_INITIATE_FILES_MAX_BYTES (413), a file the broker refuses (KX_SANDBOX_MAX_FILE_MB: 413
 *     naming it, the sandbox made for it deleted again), an account's quota (429), a file
 *     part in another field (400);
 *   - a run the account would be refused (its daily quota used up: 429, a model outside its
 *     allow-list: 403, another account's agent: 404) is refused before any sandbox: no
 *     kx.sandbox.ensure_active / kx.sandbox.files request is sent at all. */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"
#include "kx/bus.h"
#include "kx/uuid.h"
#include "stack.h"

static kx_th_stack g_stack;

#define FILE_MAX (2u << 20)        /* KX_INITIATE_FILE_MAX_BYTES */
#define FILES_MAX (3u << 20)       /* KX_INITIATE_FILES_MAX_BYTES */
#define BROKER_FILE_MAX (1u << 20) /* KX_SANDBOX_MAX_FILE_MB=1 */

static const char *const STACK_ENV[] = {
    "KX_MAX_BODY_BYTES=8388608",
    "KX_INITIATE_FILE_MAX_BYTES=2097152",
    "KX_INITIATE_FILES_MAX_BYTES=3145728",
    "KX_SANDBOX_MAX_FILE_MB=1",
    NULL,
};

/* ---- helpers ---------------------------------------------------------------------------- */

typedef struct part {
    const char *name;     /* the form field */
    const char *filename; /* NULL: a text field */
    const char *data;
    size_t len;
} part;

#define BOUNDARY "kxinitiate9c1e"

/* POST /api/agent/initiate with these parts (multipart, binary-safe); the answer's JSON (or
 * NULL) and *status. */
static json_t *initiate(const char *token, const part *parts, size_t n, long *status)
{
    size_t cap = 4096;
    for (size_t i = 0; i < n; i++)
        cap += parts[i].len + 512 + (parts[i].filename ? strlen(parts[i].filename) : 0);
    char *body = malloc(cap);
    assert_non_null(body);
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (parts[i].filename != NULL)
            o += (size_t)snprintf(body + o, cap - o,
                                  "--" BOUNDARY "\r\nContent-Disposition: form-data; name=\"%s\"; "
                                  "filename=\"%s\"\r\nContent-Type: application/octet-stream"
                                  "\r\n\r\n",
                                  parts[i].name, parts[i].filename);
        else
            o += (size_t)snprintf(body + o, cap - o,
                                  "--" BOUNDARY "\r\nContent-Disposition: form-data; "
                                  "name=\"%s\"\r\n\r\n",
                                  parts[i].name);
        memcpy(body + o, parts[i].data, parts[i].len);
        o += parts[i].len;
        o += (size_t)snprintf(body + o, cap - o, "\r\n");
    }
    o += (size_t)snprintf(body + o, cap - o, "--" BOUNDARY "--\r\n");
    kx_http_resp r;
    assert_int_equal(kx_th_http(&g_stack, "POST", "/api/agent/initiate", token,
                                "multipart/form-data; boundary=" BOUNDARY, body, o, &r),
                     KX_OK);
    free(body);
    *status = r.status;
    json_t *j = r.body != NULL ? json_loads(r.body, 0, NULL) : NULL;
    if (r.status != 200)
        fprintf(stderr, "initiate: %ld %s\n", r.status, r.body ? r.body : "");
    kx_http_resp_free(&r);
    return j;
}

static const char *str(const json_t *j, const char *key)
{
    const char *s = json_string_value(json_object_get(j, key));
    return s != NULL ? s : "";
}

/* The sandbox id recorded on the thread's project. */
static char *sandbox_of_thread(const char *thread)
{
    const char *p[] = {thread};
    return kx_th_sql_value(&g_stack,
                           "SELECT p.sandbox->>'id' FROM projects p JOIN threads t "
                           "USING (project_id) WHERE t.thread_id = $1::uuid",
                           1, p);
}

/* The content of the thread's first user message ({"role": "user", "content": …}). */
static char *first_prompt(const char *thread)
{
    const char *p[] = {thread};
    return kx_th_sql_value(&g_stack,
                           "SELECT content->>'content' FROM messages WHERE thread_id = $1::uuid "
                           "AND type = 'user' ORDER BY created_at LIMIT 1",
                           1, p);
}

static long count_projects(const char *account)
{
    const char *p[] = {account};
    char *v = kx_th_sql_value(&g_stack,
                              "SELECT count(*) FROM projects WHERE account_id = $1::uuid", 1, p);
    assert_non_null(v);
    long n = strtol(v, NULL, 10);
    free(v);
    return n;
}

/* How many sandboxes the broker holds on disk (its root's entries that are not dot-files). */
static int sandbox_dirs(void)
{
    DIR *d = opendir(g_stack.sandbox_root);
    if (d == NULL)
        return 0; /* not made yet: none */
    int n = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

/* GET the file's bytes through the files API; the HTTP status. */
static long read_file(const char *sid, const char *token, const char *path, kx_http_resp *out)
{
    char url[1200];
    snprintf(url, sizeof url, "/api/sandboxes/%s/files/content?path=%s", sid, path);
    kx_http_resp tmp = {0};
    kx_http_resp *r = out ? out : &tmp;
    assert_int_equal(kx_th_http(&g_stack, "GET", url, token, NULL, NULL, 0, r), KX_OK);
    long st = r->status;
    if (out == NULL)
        kx_http_resp_free(&tmp);
    return st;
}

static char *bytes(size_t n, unsigned seed)
{
    char *b = malloc(n ? n : 1);
    assert_non_null(b);
    for (size_t i = 0; i < n; i++)
        b[i] = (char)(i * 131 + seed + (i >> 11)); /* every byte value, NULs included */
    return b;
}

/* A refusal: the status, the detail contains want, and nothing was made for account. */
static void refused(const char *token, const char *account, const part *parts, size_t n,
                    long want_status, const char *want)
{
    int dirs = sandbox_dirs();
    long st = 0;
    json_t *j = initiate(token, parts, n, &st);
    assert_int_equal(st, want_status);
    json_t *detail = json_object_get(j, "detail");
    char *text = json_is_string(detail) ? strdup(json_string_value(detail))
                                        : json_dumps(detail, JSON_COMPACT);
    if (strstr(text, want) == NULL)
        fail_msg("detail '%s' does not say '%s'", text, want);
    free(text);
    json_decref(j);
    assert_int_equal(count_projects(account), 0);
    assert_int_equal(sandbox_dirs(), dirs);
}

/* ---- cases ------------------------------------------------------------------------------ */

static void test_two_files_in_the_sandbox_and_the_prompt(void **state)
{
    char a[KX_UUID_LEN + 1], b[KX_UUID_LEN + 1];
    kx_uuid_new(a);
    kx_uuid_new(b);
    char *ta = kx_th_stack_token(&g_stack, a), *tb = kx_th_stack_token(&g_stack, b);
    const size_t big = 1000000; /* more than one bus message's chunk: two writes */
    char *bin = bytes(big, 7);
    const char *text = "hello, uploads\n";
    part parts[] = {
        {"prompt", NULL, "Summarise these", 15},
        {"files", "notes.txt", text, strlen(text)},
        {"files", "data.bin", bin, big},
    };
    long st = 0;
    json_t *j = initiate(ta, parts, 3, &st);
    assert_int_equal(st, 200);
    char thread[KX_UUID_LEN + 1];
    snprintf(thread, sizeof thread, "%s", str(j, "thread_id"));
    assert_true(kx_uuid_valid(thread));
    assert_true(kx_uuid_valid(str(j, "agent_run_id")));
    json_decref(j);

    char *prompt = first_prompt(thread);
    assert_non_null(prompt);
    assert_string_equal(prompt,
                        "Summarise these\n\n"
                        "[Uploaded File: /workspace/uploads/notes.txt]\n"
                        "[Uploaded File: /workspace/uploads/data.bin]\n");
    free(prompt);

    char *sid = sandbox_of_thread(thread);
    assert_non_null(sid);
    assert_true(kx_uuid_valid(sid));
    kx_http_resp r;
    assert_int_equal(read_file(sid, ta, "/workspace/uploads/notes.txt", &r), 200);
    assert_int_equal(r.len, strlen(text));
    assert_memory_equal(r.body, text, strlen(text));
    kx_http_resp_free(&r);
    assert_int_equal(read_file(sid, ta, "/workspace/uploads/data.bin", &r), 200);
    assert_int_equal(r.len, big);
    assert_memory_equal(r.body, bin, big);
    kx_http_resp_free(&r);

    /* the listing has exactly the two */
    char url[300];
    snprintf(url, sizeof url, "/api/sandboxes/%s/files?path=/workspace/uploads", sid);
    j = kx_th_json(&g_stack, "GET", url, ta, NULL, &st);
    assert_int_equal(st, 200);
    assert_int_equal(json_array_size(json_object_get(j, "files")), 2);
    json_decref(j);

    /* another account: not found, not a hint */
    assert_int_equal(read_file(sid, tb, "/workspace/uploads/notes.txt", NULL), 404);
    j = kx_th_json(&g_stack, "GET", url, tb, NULL, &st);
    assert_int_equal(st, 404);
    json_decref(j);
    free(sid);
    free(bin);
    free(ta);
    free(tb);
}

static void test_hostile_names_are_made_safe(void **state)
{
    char a[KX_UUID_LEN + 1];
    kx_uuid_new(a);
    char *ta = kx_th_stack_token(&g_stack, a);
    char longname[301];
    memset(longname, 'n', 296);
    memcpy(longname + 296, ".txt", 5);
    part parts[] = {
        {"prompt", NULL, "look", 4},         {"files[]", "../../etc/x", "1", 1},
        {"files[]", "a/b", "2", 1},          {"files[]", "", "3", 1},
        {"files[]", longname, "4", 1},       {"files[]", "same.txt", "5", 1},
        {"files[]", "same.txt", "6", 1},     {"files[]", "..", "7", 1},
        {"files[]", "dir\\win.txt", "8", 1},
    };
    size_t n = sizeof parts / sizeof parts[0];
    long st = 0;
    json_t *j = initiate(ta, parts, n, &st);
    assert_int_equal(st, 200);
    char thread[KX_UUID_LEN + 1];
    snprintf(thread, sizeof thread, "%s", str(j, "thread_id"));
    json_decref(j);

    char cut[201];
    memset(cut, 'n', 196);
    memcpy(cut + 196, ".txt", 5);
    const char *names[] = {"_._etc_x", "a_b",        "file",   cut,
                           "same.txt", "same-2.txt", "file-2", "dir_win.txt"};
    char want[4096] = "look\n\n";
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        snprintf(want + strlen(want), sizeof want - strlen(want),
                 "[Uploaded File: /workspace/uploads/%s]\n", names[i]);
    char *prompt = first_prompt(thread);
    assert_non_null(prompt);
    assert_string_equal(prompt, want);
    free(prompt);

    char *sid = sandbox_of_thread(thread);
    assert_non_null(sid);
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char path[400];
        snprintf(path, sizeof path, "/workspace/uploads/%s", names[i]);
        kx_http_resp r;
        assert_int_equal(read_file(sid, ta, path, &r), 200);
        assert_int_equal(r.len, 1);
        assert_int_equal(r.body[0], parts[i + 1].data[0]); /* each its own bytes */
        kx_http_resp_free(&r);
    }
    /* nothing escaped the uploads folder: the workspace holds only it */
    char url[300];
    snprintf(url, sizeof url, "/api/sandboxes/%s/files?path=/workspace", sid);
    j = kx_th_json(&g_stack, "GET", url, ta, NULL, &st);
    assert_int_equal(st, 200);
    json_t *files = json_object_get(j, "files");
    assert_int_equal(json_array_size(files), 1);
    assert_string_equal(str(json_array_get(files, 0), "name"), "uploads");
    json_decref(j);
    snprintf(url, sizeof url, "/api/sandboxes/%s/files?path=/workspace/uploads", sid);
    j = kx_th_json(&g_stack, "GET", url, ta, NULL, &st);
    assert_int_equal(json_array_size(json_object_get(j, "files")), sizeof names / sizeof names[0]);
    json_decref(j);
    free(sid);
    free(ta);
}

static void test_refusals_leave_nothing(void **state)
{
    char a[KX_UUID_LEN + 1];
    kx_uuid_new(a);
    char *ta = kx_th_stack_token(&g_stack, a);

    /* 33 files: 400 */
    part many[34] = {{"prompt", NULL, "many", 4}};
    for (size_t i = 1; i < 34; i++)
        many[i] = (part){"files", "f.txt", "x", 1};
    refused(ta, a, many, 34, 400, "at most 32 files");

    /* one file over KX_INITIATE_FILE_MAX_BYTES: 413 naming it */
    char *big = bytes(FILE_MAX + 1, 3);
    part one[] = {{"prompt", NULL, "big", 3},
                  {"files", "ok.txt", "x", 1},
                  {"files", "huge.bin", big, FILE_MAX + 1}};
    refused(ta, a, one, 3, 413, "files[1] ('huge.bin') is 2097153 bytes");

    /* together over KX_INITIATE_FILES_MAX_BYTES: 413 */
    part two[] = {{"prompt", NULL, "two", 3},
                  {"files", "a.bin", big, FILE_MAX},
                  {"files", "b.bin", big, FILES_MAX - FILE_MAX + 1}};
    refused(ta, a, two, 3, 413, "KX_INITIATE_FILES_MAX_BYTES");

    /* within our limits, over the broker's (KX_SANDBOX_MAX_FILE_MB): 413 naming the file, and
     * the sandbox made for it is gone again */
    part broker[] = {{"prompt", NULL, "broker", 6},
                     {"files", "small.txt", "x", 1},
                     {"files", "over.bin", big, BROKER_FILE_MAX + 4096}};
    refused(ta, a, broker, 3, 413, "files[1] ('over.bin') could not be uploaded");

    /* a file part in another field: 400 */
    part other[] = {{"prompt", NULL, "other", 5}, {"attachment", "x.txt", "x", 1}};
    refused(ta, a, other, 2, 400, "only files[] takes files");

    /* the account's quota refuses the run after the upload: 429, the sandbox deleted again */
    const char *p[] = {a};
    PQclear(kx_th_sql(&g_stack,
                      "INSERT INTO account_limits (account_id, runs_per_day) VALUES ($1::uuid, 0)",
                      1, p));
    part quota[] = {{"prompt", NULL, "quota", 5}, {"files", "q.txt", "q", 1}};
    refused(ta, a, quota, 2, 429, "quota");
    PQclear(kx_th_sql(&g_stack, "DELETE FROM account_limits WHERE account_id = $1::uuid", 1, p));

    /* and then the same upload goes through */
    long st = 0;
    json_t *j = initiate(ta, quota, 2, &st);
    assert_int_equal(st, 200);
    json_decref(j);
    assert_int_equal(count_projects(a), 1);
    free(big);
    free(ta);
}

/* Refused before any sandbox work: the gateway sent no sandbox request at all (a refusal
 * after the upload deleted its sandbox again, so the directories alone cannot tell). */
static void test_refused_account_makes_no_sandbox(void **state)
{
    (void)state;
    kx_bus *bus = NULL;
    assert_int_equal(kx_bus_connect(g_stack.nats.url, "test-initiate-files", &bus), KX_OK);
    for (int i = 0; i < 100 && !kx_bus_connected(bus); i++)
        usleep(20000);
    natsSubscription *ensure = NULL, *files = NULL;
    assert_int_equal(natsConnection_SubscribeSync(&ensure, kx_bus_conn(bus),
                                                  KX_SUBJ_SANDBOX_LIFECYCLE_PREFIX
                                                  "ensure_active"),
                     NATS_OK);
    assert_int_equal(natsConnection_SubscribeSync(&files, kx_bus_conn(bus), KX_SUBJ_SANDBOX_FILES),
                     NATS_OK);
    assert_int_equal(natsConnection_Flush(kx_bus_conn(bus)), NATS_OK);

    char a[KX_UUID_LEN + 1], b[KX_UUID_LEN + 1], agent[KX_UUID_LEN + 1];
    kx_uuid_new(a);
    kx_uuid_new(b);
    kx_uuid_new(agent);
    char *ta = kx_th_stack_token(&g_stack, a);
    const char *pa[] = {a};
    const char *pb[] = {agent, b};
    PQclear(kx_th_sql(&g_stack,
                      "INSERT INTO account_limits (account_id, runs_per_day, allowed_models) "
                      "VALUES ($1::uuid, 0, ARRAY['allowed-model'])",
                      1, pa));
    PQclear(kx_th_sql(&g_stack,
                      "INSERT INTO agents (agent_id, account_id, name) VALUES ($1::uuid, "
                      "$2::uuid, 'b''s agent')",
                      2, pb));
    part quota[] = {{"prompt", NULL, "quota", 5}, {"files", "q.txt", "q", 1}};
    refused(ta, a, quota, 2, 429, "Daily run quota reached");
    part model[] = {{"prompt", NULL, "model", 5},
                    {"model_name", NULL, "other-model", 11},
                    {"files", "m.txt", "m", 1}};
    refused(ta, a, model, 3, 403, "may not use the model other-model");
    PQclear(kx_th_sql(&g_stack, "DELETE FROM account_limits WHERE account_id = $1::uuid", 1, pa));
    part other[] = {{"prompt", NULL, "agent", 5},
                    {"agent_id", NULL, agent, strlen(agent)},
                    {"files", "a.txt", "a", 1}};
    refused(ta, a, other, 3, 404, "Agent not found");

    /* nothing was asked of the broker (our subscriptions saw every request the gateway sent
     * before it answered; the flush makes sure the server has passed them on) */
    assert_int_equal(natsConnection_Flush(kx_bus_conn(bus)), NATS_OK);
    natsMsg *m = NULL;
    assert_int_equal(natsSubscription_NextMsg(&m, ensure, 300), NATS_TIMEOUT);
    assert_int_equal(natsSubscription_NextMsg(&m, files, 50), NATS_TIMEOUT);

    /* the check is not a blanket refusal: the same upload goes through once allowed */
    long st = 0;
    json_t *j = initiate(ta, quota, 2, &st);
    assert_int_equal(st, 200);
    json_decref(j);
    assert_int_equal(natsSubscription_NextMsg(&m, ensure, 5000), NATS_OK);
    natsMsg_Destroy(m);
    natsSubscription_Destroy(ensure);
    natsSubscription_Destroy(files);
    kx_bus_close(bus, 2000);
    free(ta);
}

/* ---- setup ------------------------------------------------------------------------------ */

static int group_setup(void **state)
{
    kx_th_stack_opts opts = {.env = STACK_ENV};
    return kx_th_stack_start(&opts, &g_stack) == KX_OK ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_two_files_in_the_sandbox_and_the_prompt),
        cmocka_unit_test(test_hostile_names_are_made_safe),
        cmocka_unit_test(test_refusals_leave_nothing),
        cmocka_unit_test(test_refused_account_makes_no_sandbox),
    };
    if (getenv("KX_TEST_FILTER") != NULL)
        cmocka_set_test_filter(getenv("KX_TEST_FILTER"));
    int failed = cmocka_run_group_tests(tests, group_setup, NULL);
    if (kx_th_stack_stop(&g_stack, failed != 0) != 0)
        failed++;
    return failed;
}
