/* test_tools_stack.c — the newer tools through the whole stack (tests/harness/stack.h: the six
 * services, nats-server, PostgreSQL, the demo model) with the demo model's scripts calling them,
 * and the fake Tavily/Firecrawl of tests/fakes/web/fake-web.js:
 *   - see_image: the agent writes a PNG with execute_command, calls see_image, and the next
 *     model request carries the image as an image part (the demo model reports the parts it
 *     received in its answer: mime type and decoded size);
 *   - see_image of a file that is not an image: a failed tool result, no image part;
 *   - web_search: the answer reaches the model (its final answer quotes the tool result);
 *   - expose_port: the agent starts an HTTP server in its sandbox and exposes its port; the
 *     URL it gets serves the server's page through the gateway (with the account's token).
 * One stack for the whole binary. */
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "api_client.h"
#include "harness.h"
#include "kx/http.h"
#include "kx/time.h"
#include "kx/uuid.h"
#include "stack.h"

#define FAKE_WEB KX_SOURCE_DIR "/tests/fakes/web/fake-web.js"
#define KEY "stack-key-51a9"
#define RUN_TIMEOUT_MS 60000

static kx_th_stack g_stack;
static pid_t g_fake;
static char g_env[4][200];

static int start_stack(void **state)
{
    (void)state;
    uint16_t port = 0;
    char log_name[64], log_path[100];
    snprintf(log_name, sizeof log_name, "kx-it-tools-stack-fake-web-%d.log", (int)getpid());
    g_fake = kx_th_node_fake("/tmp", FAKE_WEB, KEY, log_name, &port);
    if (g_fake == 0)
        return -1;
    snprintf(log_path, sizeof log_path, "/tmp/%s", log_name);
    unlink(log_path);
    snprintf(g_env[0], sizeof g_env[0], "TAVILY_API_KEY=%s", KEY);
    snprintf(g_env[1], sizeof g_env[1], "TAVILY_API_URL=http://127.0.0.1:%u", port);
    snprintf(g_env[2], sizeof g_env[2], "FIRECRAWL_API_KEY=%s", KEY);
    snprintf(g_env[3], sizeof g_env[3], "FIRECRAWL_URL=http://127.0.0.1:%u", port);
    const char *env[] = {g_env[0], g_env[1], g_env[2], g_env[3], NULL};
    kx_th_stack_opts opts = {.env = env};
    return kx_th_stack_start(&opts, &g_stack) == KX_OK ? 0 : -1;
}

/* Starts a run with the script, waits for its end, and returns its final status; the thread id
 * goes to thread. */
static char *run_script(const char *token, const char *script, char thread[KX_UUID_LEN + 1])
{
    char run[KX_UUID_LEN + 1];
    long status = kx_th_initiate(&g_stack, token, script, run, thread);
    if (status != 200)
        fail_msg("initiate: HTTP %ld", status);
    const char *params[] = {run};
    int64_t until = kx_mono_ms() + RUN_TIMEOUT_MS;
    while (kx_mono_ms() < until) {
        char *st =
            kx_th_sql_value(&g_stack, "SELECT status FROM agent_runs WHERE id = $1", 1, params);
        if (st != NULL && strcmp(st, "queued") != 0 && strcmp(st, "running") != 0)
            return st;
        free(st);
        usleep(100 * 1000);
    }
    fail_msg("run %s did not end within %d ms", run, RUN_TIMEOUT_MS);
    return NULL;
}

/* The content of the newest row of that type in the thread (its "content" key for assistant
 * rows), malloc'd. */
static char *newest(const char *thread, const char *type, const char *key)
{
    char sql[300];
    snprintf(sql, sizeof sql,
             "SELECT content->>'%s' FROM messages WHERE thread_id = $1 AND type = $2 "
             "ORDER BY created_at DESC LIMIT 1",
             key);
    const char *params[] = {thread, type};
    char *v = kx_th_sql_value(&g_stack, sql, 2, params);
    if (v == NULL)
        fail_msg("no %s row in thread %s", type, thread);
    return v;
}

static void test_see_image_reaches_the_model(void **state)
{
    (void)state;
    char account[KX_UUID_LEN + 1], thread[KX_UUID_LEN + 1];
    char *token = kx_th_new_account(&g_stack, account);
    /* 8 bytes of PNG signature + 4992 zero bytes = 5000 bytes */
    char *st = run_script(
        token,
        "call execute_command {\"command\": \"printf '\\\\211PNG\\\\r\\\\n\\\\032\\\\n' > "
        "shot.png && head -c 4992 /dev/zero >> shot.png && wc -c < shot.png\", \"blocking\": "
        "true}\n"
        "call see_image {\"file_path\": \"shot.png\"}\n",
        thread);
    assert_string_equal(st, "completed");
    free(st);
    char *tool = newest(thread, "tool", "content");
    assert_non_null(strstr(tool, "image/png"));
    free(tool);
    char *answer = newest(thread, "assistant", "content");
    if (strstr(answer, "[images received: 1: image/png 5000 bytes]") == NULL)
        fail_msg("the model did not get the image: %s", answer);
    free(answer);

    /* not an image: a failed result, and no image part */
    st = run_script(token,
                    "call execute_command {\"command\": \"echo hello > notes.txt\", "
                    "\"blocking\": true}\n"
                    "call see_image {\"file_path\": \"notes.txt\"}\n",
                    thread);
    assert_string_equal(st, "completed");
    free(st);
    tool = newest(thread, "tool", "content");
    assert_non_null(strstr(tool, "is not a PNG, JPEG, GIF or WebP image"));
    free(tool);
    answer = newest(thread, "assistant", "content");
    assert_null(strstr(answer, "images received"));
    free(answer);
    free(token);
}

static void test_web_search_through_the_run(void **state)
{
    (void)state;
    char account[KX_UUID_LEN + 1], thread[KX_UUID_LEN + 1];
    char *token = kx_th_new_account(&g_stack, account);
    char *st =
        run_script(token, "call web_search {\"query\": \"stack search\", \"num_results\": 2}\n",
                   thread);
    assert_string_equal(st, "completed");
    free(st);
    char *tool = newest(thread, "tool", "content");
    assert_non_null(strstr(tool, "Result 2 for stack search"));
    free(tool);
    free(token);
}

static void test_expose_port_serves_the_page(void **state)
{
    (void)state;
    char account[KX_UUID_LEN + 1], thread[KX_UUID_LEN + 1];
    char *token = kx_th_new_account(&g_stack, account);
    uint16_t port = 20000 + (uint16_t)(getpid() % 20000);
    char script[900];
    snprintf(script, sizeof script,
             "call execute_command {\"command\": \"mkdir -p site && echo exposed-page-ok > "
             "site/index.html && cd site && exec /usr/bin/python3 -m http.server %u --bind "
             "127.0.0.1\", \"blocking\": false}\n"
             "call execute_command {\"command\": \"for i in $(seq 50); do python3 -c 'import "
             "socket; socket.create_connection((\\\"127.0.0.1\\\", %u))' 2>/dev/null && exit 0; "
             "sleep 0.1; done; exit 1\", \"blocking\": true}\n"
             "call expose_port {\"port\": %u}\n",
             port, port, port);
    char *st = run_script(token, script, thread);
    assert_string_equal(st, "completed");
    free(st);
    char *tool = newest(thread, "tool", "content");
    json_t *out = json_loads(tool, 0, NULL);
    free(tool);
    const char *url = json_string_value(json_object_get(out, "url"));
    if (url == NULL) {
        fail_msg("expose_port gave no url");
        return;
    }
    assert_true(strncmp(url, g_stack.base_url, strlen(g_stack.base_url)) == 0);
    /* the link with the account's token serves the sandbox's page */
    kx_http_resp r = {0};
    char auth[1200];
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
    const char *hdrs[] = {auth, NULL};
    assert_int_equal(kx_http_request("GET", url, hdrs, NULL, 0, kx_deadline_in(10000), 0, &r),
                     KX_OK);
    if (r.status != 200 || r.body == NULL || strstr(r.body, "exposed-page-ok") == NULL)
        fail_msg("GET %s: HTTP %ld: %s", url, r.status, r.body ? r.body : "");
    kx_http_resp_free(&r);
    /* without the account's token: refused */
    assert_int_equal(kx_http_request("GET", url, NULL, NULL, 0, kx_deadline_in(10000), 0, &r),
                     KX_OK);
    assert_int_equal(r.status, 401);
    kx_http_resp_free(&r);
    json_decref(out);
    free(token);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_see_image_reaches_the_model),
        cmocka_unit_test(test_web_search_through_the_run),
        cmocka_unit_test(test_expose_port_serves_the_page),
    };
    int failed = cmocka_run_group_tests(tests, start_stack, NULL);
    if (kx_th_stack_stop(&g_stack, failed != 0) != 0)
        failed++;
    if (g_fake > 0)
        kx_th_kill(g_fake);
    return failed != 0;
}
