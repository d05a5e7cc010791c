/* tests/integration/test_run_nats.c — runs over NATS (docs/subjects.md, "Runs over NATS"):
 * the gateway alone (real nats-server and PostgreSQL) serves kx.run.start and kx.run.stop, and
 * a client that does not use libkx (run_client/run_client.c: plain cnats + protobuf-c) runs a
 * whole session: refusals (no Kx-Account 401, a passed Kx-Deadline 504, another account's
 * thread 404, no prompt 400: nothing created), a new thread and run, a follow-up on it, the
 * stop, and the run's events from KX_RUN_EVENTS up to the terminal "stopped" event. Then the
 * rows are checked in Postgres. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "gateway_alone.h"
#include "kx/log.h"
#include "kx/uuid.h"
#include "stack.h"

#define STOPPED \
    "{\"type\": \"status\", \"status\": \"stopped\", \"message\": \"Agent run stopped by user\"}"

static kx_th_gw g_gw;

static int setup(void **state)
{
    (void)state;
    kx_log_init("test-run-nats", "test");
    kx_log_set_level(KX_LOG_WARN);
    memset(&g_gw, 0, sizeof g_gw);
    return kx_th_gw_start(&g_gw, "kx-it-run-nats", NULL) == KX_OK ? 0 : -1;
}

/* The line of out that starts with "<label> ", or NULL. */
static const char *line_of(const char *out, const char *label)
{
    size_t n = strlen(label);
    for (const char *p = out; p != NULL && *p != '\0';) {
        if (strncmp(p, label, n) == 0 && p[n] == ' ')
            return p;
        p = strchr(p, '\n');
        p = p ? p + 1 : NULL;
    }
    return NULL;
}

/* The value of key=… in a line, up to the next space (error= takes the rest of the line). */
static void field(const char *line, const char *key, char *out, size_t cap)
{
    out[0] = '\0';
    if (line == NULL)
        return;
    char k[32];
    snprintf(k, sizeof k, " %s=", key);
    const char *p = strstr(line, k);
    const char *eol = strchr(line, '\n');
    if (p == NULL || (eol != NULL && p > eol))
        return;
    p += strlen(k);
    size_t n = 0;
    bool rest = strcmp(key, "error") == 0 || strcmp(key, "payload") == 0;
    while (p[n] != '\0' && p[n] != '\n' && (rest || p[n] != ' ') && n + 1 < cap)
        n++;
    memcpy(out, p, n);
    out[n] = '\0';
}

static void test_session_from_plain_client(void **state)
{
    (void)state;
    char account[KX_UUID_LEN + 1], other[KX_UUID_LEN + 1];
    kx_uuid_new(account);
    kx_uuid_new(other);
    const char *p[] = {other};
    char *foreign = kx_th_sql_value(&g_gw.s,
                                    "WITH pr AS (INSERT INTO projects (account_id, name) VALUES "
                                    "($1::uuid, 'theirs') RETURNING project_id) "
                                    "INSERT INTO threads (account_id, project_id) SELECT "
                                    "$1::uuid, project_id FROM pr RETURNING thread_id::text",
                                    1, p);
    assert_non_null(foreign);

    char cmd[1200];
    snprintf(cmd, sizeof cmd, "%s/tests/integration/kx_run_client %s %s %s", KX_BUILD_DIR,
             g_gw.s.nats.url, account, foreign);
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    char out[16384];
    size_t len = fread(out, 1, sizeof out - 1, f);
    out[len] = '\0';
    int rc = pclose(f);
    fprintf(stderr, "%s", out);
    assert_int_equal(rc, 0);

    char v[512], thread[64], run[64], run2[64];
    field(line_of(out, "noaccount"), "status", v, sizeof v);
    assert_string_equal(v, "401");
    field(line_of(out, "noaccount"), "error", v, sizeof v);
    assert_non_null(strstr(v, "Kx-Account"));
    field(line_of(out, "expired"), "status", v, sizeof v);
    assert_string_equal(v, "504");
    field(line_of(out, "foreign"), "status", v, sizeof v);
    assert_string_equal(v, "404");
    field(line_of(out, "foreign"), "error", v, sizeof v);
    assert_string_equal(v, "Thread not found");
    field(line_of(out, "noprompt"), "status", v, sizeof v);
    assert_string_equal(v, "400");
    field(line_of(out, "noprompt"), "error", v, sizeof v);
    assert_string_equal(v, "prompt is required");

    field(line_of(out, "start"), "status", v, sizeof v);
    assert_string_equal(v, "200");
    field(line_of(out, "start"), "thread", thread, sizeof thread);
    field(line_of(out, "start"), "run", run, sizeof run);
    assert_true(kx_uuid_valid(thread));
    assert_true(kx_uuid_valid(run));
    field(line_of(out, "followup"), "status", v, sizeof v);
    assert_string_equal(v, "200");
    field(line_of(out, "followup"), "thread", v, sizeof v);
    assert_string_equal(v, thread);
    field(line_of(out, "followup"), "run", run2, sizeof run2);
    assert_true(kx_uuid_valid(run2));
    field(line_of(out, "stop"), "code", v, sizeof v);
    assert_string_equal(v, "200");
    field(line_of(out, "stop"), "status", v, sizeof v);
    assert_string_equal(v, "stopped");
    /* the last event the client read is the terminal stop */
    const char *last = NULL;
    for (const char *q = line_of(out, "event"); q != NULL; q = line_of(q + 1, "event"))
        last = q;
    field(last, "terminal", v, sizeof v);
    assert_string_equal(v, "1");
    field(last, "payload", v, sizeof v);
    assert_string_equal(v, STOPPED);

    /* Postgres: the account's one project and thread (the refusals created nothing), the two
     * prompts as user messages, the first run stopped, the follow-up queued */
    const char *pa[] = {account};
    char *n = kx_th_sql_value(&g_gw.s, "SELECT count(*) FROM projects WHERE account_id = $1::uuid",
                              1, pa);
    assert_string_equal(n, "1");
    free(n);
    const char *pt[] = {thread, account};
    n = kx_th_sql_value(&g_gw.s,
                        "SELECT string_agg(content ->> 'content', '|' ORDER BY created_at) "
                        "FROM messages WHERE thread_id = $1::uuid AND account_id = $2::uuid",
                        2, pt);
    assert_string_equal(n, "from a service|and then");
    free(n);
    const char *pr[] = {run, run2};
    n = kx_th_sql_value(&g_gw.s,
                        "SELECT (SELECT status FROM agent_runs WHERE id = $1::uuid) || ' ' || "
                        "(SELECT status FROM agent_runs WHERE id = $2::uuid)",
                        2, pr);
    assert_string_equal(n, "stopped queued");
    free(n);
    const char *pf[] = {foreign};
    n = kx_th_sql_value(&g_gw.s, "SELECT count(*) FROM agent_runs WHERE thread_id = $1::uuid", 1,
                        pf);
    assert_string_equal(n, "0");
    free(n);
    free(foreign);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_session_from_plain_client),
    };
    int failed = cmocka_run_group_tests(tests, setup, NULL);
    kx_th_gw_stop(&g_gw, failed != 0);
    return failed == 0 ? 0 : 1;
}
