/* test_svc.c — the service skeleton against a real nats-server: instance id format, the
 * health responder on kx.svc.health.<name> (starting until kx_svc_on_ready, then ready or not
 * ready), the ops HTTP routes, and the SIGTERM protocol: drain then exit 0, drain timeout exits
 * 1, a second signal exits at once, no drain callback exits at once. Signals are sent to this
 * very process (kill(getpid())): kx_svc_init blocks them in every thread, so they arrive
 * through the signalfd. */
#include <setjmp.h>
#include <signal.h>
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
#include "kx/http.h"
#include "kx/pb.h"
#include "kx/svc.h"
#include "kx/time.h"
#include "sandbox_client.h"

static char *g_tmp;
static kx_th_nats g_nats;

static int group_setup(void **state)
{
    g_tmp = kx_th_tmpdir("kx-test-svc");
    if (g_tmp == NULL || kx_th_nats_start(g_tmp, &g_nats) != KX_OK)
        return -1;
    assert_int_equal(setenv("KX_NATS_URL", g_nats.url, 1), 0);
    assert_int_equal(setenv("KX_HEALTH_PORT", "0", 1), 0);
    assert_int_equal(setenv("KX_BIND_ADDR", "127.0.0.1", 1), 0);
    return 0;
}

static int group_teardown(void **state)
{
    kx_th_nats_stop(&g_nats);
    kx_th_rmrf(g_tmp);
    free(g_tmp);
    return 0;
}

static void init_or_fail(kx_svc *svc)
{
    assert_int_equal(kx_svc_init(svc, "testsvc", 0), KX_OK);
    for (int i = 0; i < 200 && !kx_bus_connected(svc->bus); i++)
        usleep(10 * 1000);
    assert_true(kx_bus_connected(svc->bus));
}

static Kx__V1__HealthReply *ask_health(kx_svc *svc)
{
    Kx__V1__HealthRequest req = KX__V1__HEALTH_REQUEST__INIT;
    kx_err err = KX_OK;
    Kx__V1__HealthReply *hr = kx_th_bus_ask(svc->bus, "kx.svc.health.testsvc", &req.base, NULL,
                                            2000, &kx__v1__health_reply__descriptor, NULL, &err);
    assert_int_equal(err, KX_OK);
    assert_non_null(hr);
    return hr;
}

static long http_get(kx_svc *svc, const char *path, char *body, size_t bodylen)
{
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%u%s", (unsigned)kx_httpd_port(svc->ops), path);
    kx_http_resp r = {0};
    assert_int_equal(kx_http_request("GET", url, NULL, NULL, 0, kx_deadline_in(2000), 0, &r),
                     KX_OK);
    snprintf(body, bodylen, "%s", r.body ? r.body : "");
    long status = r.status;
    kx_http_resp_free(&r);
    return status;
}

static bool db_down(kx_svc *svc, void *arg, char *why, size_t whylen)
{
    snprintf(why, whylen, "postgres: connection refused");
    return false;
}

static void test_identity_health_and_ops(void **state)
{
    kx_svc svc;
    init_or_fail(&svc);
    char host[64] = "";
    gethostname(host, sizeof host);
    char prefix[128];
    snprintf(prefix, sizeof prefix, "testsvc-%.*s-%ld-", (int)strcspn(host, "."), host,
             (long)getpid());
    assert_int_equal(strncmp(svc.instance_id, prefix, strlen(prefix)), 0);
    assert_int_equal(strlen(svc.instance_id), strlen(prefix) + 4);
    assert_int_equal(strspn(svc.instance_id + strlen(prefix), "0123456789abcdef"), 4);
    assert_true(kx_httpd_port(svc.ops) != 0);

    /* Not ready until the service says how readiness is judged: the ops server and the
     * responder run from kx_svc_init on, before the service has made its subscriptions (the
     * agent-runner said ready while it still set up its dispatch consumer). */
    Kx__V1__HealthReply *hr = ask_health(&svc);
    assert_string_equal(hr->service, "testsvc");
    assert_string_equal(hr->instance_id, svc.instance_id);
    assert_string_equal(hr->version, KX_VERSION);
    assert_false(hr->ready);
    assert_string_equal(hr->detail, "starting");
    assert_true(hr->uptime_ms >= 0 && hr->uptime_ms < 60000);
    kx_pb_free(hr);
    char body[256];
    assert_int_equal(http_get(&svc, "/readyz", body, sizeof body), 503);
    assert_non_null(strstr(body, "starting"));
    assert_int_equal(http_get(&svc, "/healthz", body, sizeof body), 200);

    kx_svc_on_ready(&svc, NULL, NULL); /* NATS connected is enough */
    hr = ask_health(&svc);
    assert_true(hr->ready);
    kx_pb_free(hr);
    assert_int_equal(http_get(&svc, "/readyz", body, sizeof body), 200);

    kx_svc_on_ready(&svc, db_down, NULL);
    hr = ask_health(&svc);
    assert_false(hr->ready);
    assert_string_equal(hr->detail, "postgres: connection refused");
    kx_pb_free(hr);
    assert_int_equal(http_get(&svc, "/readyz", body, sizeof body), 503);
    assert_non_null(strstr(body, "postgres: connection refused"));
    assert_int_equal(http_get(&svc, "/healthz", body, sizeof body), 200);
    kx_svc_close(&svc);
}

/* ---- SIGTERM protocol ---- */

typedef struct drain_state {
    int calls;
    bool exit_after;          /* call kx_svc_exit 50 ms after the drain starts */
    bool flag_unset_in_drain; /* kx_svc_draining was false inside the drain cb */
} drain_state;

static void exit_cb(kx_loop *loop, void *arg)
{
    kx_svc_exit(arg);
}

static void on_drain(kx_svc *svc, void *arg)
{
    drain_state *d = arg;
    d->calls++;
    d->flag_unset_in_drain = !kx_svc_draining(svc);
    if (d->exit_after)
        assert_non_null(kx_loop_timer(svc->loop, 50, exit_cb, svc));
}

static void send_term(kx_loop *loop, void *arg)
{
    kill(getpid(), SIGTERM);
}

static void test_drain_then_exit_zero(void **state)
{
    assert_int_equal(setenv("KX_DRAIN_TIMEOUT_MS", "5000", 1), 0);
    kx_svc svc;
    init_or_fail(&svc);
    drain_state d = {.exit_after = true};
    kx_svc_on_drain(&svc, on_drain, &d);
    assert_false(kx_svc_draining(&svc));
    assert_non_null(kx_loop_timer(svc.loop, 20, send_term, NULL));
    int64_t t0 = kx_mono_ms();
    assert_int_equal(kx_svc_run(&svc), 0);
    int64_t took = kx_mono_ms() - t0;
    assert_int_equal(d.calls, 1);
    assert_false(d.flag_unset_in_drain);
    assert_true(kx_svc_draining(&svc));
    assert_true(took >= 60 && took < 2000);
    /* while draining the service reports not ready */
    Kx__V1__HealthReply *hr = ask_health(&svc);
    assert_false(hr->ready);
    assert_string_equal(hr->detail, "draining");
    kx_pb_free(hr);
    kx_svc_close(&svc);
}

static void test_drain_timeout_exits_one(void **state)
{
    assert_int_equal(setenv("KX_DRAIN_TIMEOUT_MS", "200", 1), 0);
    kx_svc svc;
    init_or_fail(&svc);
    assert_int_equal(svc.drain_timeout_ms, 200);
    drain_state d = {0};
    kx_svc_on_drain(&svc, on_drain, &d);
    assert_non_null(kx_loop_timer(svc.loop, 10, send_term, NULL));
    int64_t t0 = kx_mono_ms();
    assert_int_equal(kx_svc_run(&svc), 1);
    int64_t took = kx_mono_ms() - t0;
    assert_int_equal(d.calls, 1);
    assert_true(took >= 200 && took < 1500);
    kx_svc_close(&svc);
}

static void test_second_signal_exits_at_once(void **state)
{
    assert_int_equal(setenv("KX_DRAIN_TIMEOUT_MS", "10000", 1), 0);
    kx_svc svc;
    init_or_fail(&svc);
    drain_state d = {0};
    kx_svc_on_drain(&svc, on_drain, &d);
    assert_non_null(kx_loop_timer(svc.loop, 10, send_term, NULL));
    assert_non_null(kx_loop_timer(svc.loop, 80, send_term, NULL));
    int64_t t0 = kx_mono_ms();
    assert_int_equal(kx_svc_run(&svc), 1);
    assert_true(kx_mono_ms() - t0 < 1000);
    assert_int_equal(d.calls, 1);
    kx_svc_close(&svc);
}

static void test_no_drain_callback_exits_at_once(void **state)
{
    assert_int_equal(setenv("KX_DRAIN_TIMEOUT_MS", "10000", 1), 0);
    kx_svc svc;
    init_or_fail(&svc);
    assert_non_null(kx_loop_timer(svc.loop, 10, send_term, NULL));
    int64_t t0 = kx_mono_ms();
    assert_int_equal(kx_svc_run(&svc), 0);
    assert_true(kx_mono_ms() - t0 < 1000);
    kx_svc_close(&svc);
}

static void test_bad_config_refuses_to_start(void **state)
{
    assert_int_equal(setenv("KX_DRAIN_TIMEOUT_MS", "soon", 1), 0);
    kx_svc svc;
    assert_int_equal(kx_svc_init(&svc, "testsvc", 0), KX_ERR_INVALID);
    kx_svc_close(&svc); /* safe on a half-made svc */
    unsetenv("KX_DRAIN_TIMEOUT_MS");
}

/* A bad KX_RUN_EVENTS_MAX_BYTES stops the start: it was read only where the streams are made,
 * whose callers retried a failure for ever as "NATS not ready yet" (ready, serving, never
 * making the streams). So does a bad KX_LOG_LEVEL (it warned and went on at info). */
static void test_bad_events_bytes_refuses_to_start(void **state)
{
    (void)state;
    assert_int_equal(setenv("KX_RUN_EVENTS_MAX_BYTES", "-1", 1), 0);
    kx_svc svc;
    assert_int_equal(kx_svc_init(&svc, "testsvc", 0), KX_ERR_INVALID);
    kx_svc_close(&svc);
    unsetenv("KX_RUN_EVENTS_MAX_BYTES");
    assert_int_equal(setenv("KX_LOG_LEVEL", "verbose", 1), 0);
    assert_int_equal(kx_svc_init(&svc, "testsvc", 0), KX_ERR_INVALID);
    kx_svc_close(&svc);
    unsetenv("KX_LOG_LEVEL");
}

/* kx_svc_pause: a start-up wait that SIGTERM ends (the loop that reads it does not run yet). */
static void test_pause_hears_sigterm(void **state)
{
    (void)state;
    kx_svc svc;
    init_or_fail(&svc);
    int64_t t0 = kx_mono_ms();
    assert_false(kx_svc_pause(&svc, 100)); /* no signal: the whole wait */
    assert_true(kx_mono_ms() - t0 >= 100);
    assert_false(kx_svc_draining(&svc));
    assert_int_equal(kill(getpid(), SIGTERM), 0); /* blocked: it waits on the signalfd */
    t0 = kx_mono_ms();
    assert_true(kx_svc_pause(&svc, 10000));
    assert_true(kx_mono_ms() - t0 < 1000);
    assert_true(kx_svc_draining(&svc));
    kx_svc_close(&svc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_identity_health_and_ops),
        cmocka_unit_test(test_drain_then_exit_zero),
        cmocka_unit_test(test_drain_timeout_exits_one),
        cmocka_unit_test(test_second_signal_exits_at_once),
        cmocka_unit_test(test_no_drain_callback_exits_at_once),
        cmocka_unit_test(test_bad_config_refuses_to_start),
        cmocka_unit_test(test_bad_events_bytes_refuses_to_start),
        cmocka_unit_test(test_pause_hears_sigterm),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
