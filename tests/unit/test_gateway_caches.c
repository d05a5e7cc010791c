/* test_gateway_caches.c — the gateway's two caches (services/gateway/token_cache.h,
 * run_cache.h): what a hit promises — the exact token, still within its exp; a run's answer
 * only to its own account, never older than the TTL, and never refilled by a read that started
 * before an invalidation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "kx/jwt.h"
#include "kx/time.h"
#include "run_cache.h"
#include "token_cache.h"

#define ACC_A "0b6f3c1e-5d2a-4c8b-9e7f-1a2b3c4d5e6f"
#define ACC_B "9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a"
#define RUN_1 "11111111-2222-4333-8444-555555555555"
#define RUN_2 "66666666-7777-4888-8999-aaaaaaaaaaaa"

static void test_token_hit_only_for_the_same_token_within_exp(void **state)
{
    gw_token_cache *c = gw_token_cache_new(64);
    assert_non_null(c);
    char acc[KX_UUID_LEN + 1] = "";
    const char *tok = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl";
    int64_t now = 1800000000, exp = now + 10;           /* exp + leeway < the 60 s bound */
    assert_false(gw_token_cache_get(c, tok, now, acc)); /* nothing verified yet */
    gw_token_cache_put(c, tok, now, exp, ACC_A);
    assert_true(gw_token_cache_get(c, tok, now + 1, acc));
    assert_string_equal(acc, ACC_A);

    /* one byte off (the signature): a miss, never the cached account */
    char other[128];
    snprintf(other, sizeof other, "%s", tok);
    other[strlen(other) - 1] ^= 1;
    acc[0] = '\0';
    assert_false(gw_token_cache_get(c, other, now + 1, acc));
    assert_string_equal(acc, "");
    /* a prefix or a longer token: misses */
    assert_false(gw_token_cache_get(c, "eyJhbGciOiJIUzI1NiJ9", now + 1, acc));
    snprintf(other, sizeof other, "%sx", tok);
    assert_false(gw_token_cache_get(c, other, now + 1, acc));

    /* within kx_jwt_verify's leeway after exp: still valid, as verify would say */
    assert_true(gw_token_cache_get(c, tok, exp + KX_JWT_LEEWAY_S, acc));
    /* past it: expired, and dropped (verify decides again, and refuses) */
    assert_false(gw_token_cache_get(c, tok, exp + KX_JWT_LEEWAY_S + 1, acc));
    assert_false(gw_token_cache_get(c, tok, now + 1, acc));
    gw_token_cache_free(c);
}

static void test_token_entry_lives_at_most_the_bound(void **state)
{
    gw_token_cache *c = gw_token_cache_new(64);
    char acc[KX_UUID_LEN + 1];
    const char *tok = "a.b.c";
    int64_t now = 1800000000;
    gw_token_cache_put(c, tok, now, now + 86400, ACC_A); /* a day-long token */
    assert_true(gw_token_cache_get(c, tok, now + GW_TOKEN_CACHE_MAX_S - 1, acc));
    assert_false(gw_token_cache_get(c, tok, now + GW_TOKEN_CACHE_MAX_S, acc));
    /* off: never a hit */
    assert_null(gw_token_cache_new(0));
    assert_false(gw_token_cache_get(NULL, tok, now, acc));
    gw_token_cache_put(NULL, tok, now, now + 10, ACC_A);
    gw_token_cache_free(c);
}

static void test_run_answer_only_to_its_account(void **state)
{
    gw_run_cache *c = gw_run_cache_new(64, 100);
    assert_non_null(c);
    gw_run_cache_ticket t = gw_run_cache_begin(c, RUN_1);
    gw_run_cache_put(c, &t, RUN_1, ACC_A, "{\"id\": \"r1\"}");
    char *got = gw_run_cache_get(c, RUN_1, ACC_A, t.started_us + 1000);
    assert_non_null(got);
    assert_string_equal(got, "{\"id\": \"r1\"}");
    free(got);
    assert_null(gw_run_cache_get(c, RUN_1, ACC_B, t.started_us + 1000)); /* another account */
    assert_null(gw_run_cache_get(c, RUN_2, ACC_A, t.started_us + 1000)); /* another run */
    assert_null(gw_run_cache_get(c, RUN_1, "", t.started_us + 1000));    /* anonymous */
    /* still there for its owner after the refusals */
    got = gw_run_cache_get(c, RUN_1, ACC_A, t.started_us + 1000);
    assert_non_null(got);
    free(got);
    gw_run_cache_free(c);
}

static void test_run_answer_never_older_than_the_ttl(void **state)
{
    gw_run_cache *c = gw_run_cache_new(64, 100);
    gw_run_cache_ticket t = gw_run_cache_begin(c, RUN_1);
    gw_run_cache_put(c, &t, RUN_1, ACC_A, "{}");
    /* the age counts from before the read started */
    char *got = gw_run_cache_get(c, RUN_1, ACC_A, t.started_us + 49 * 1000);
    assert_non_null(got);
    free(got);
    assert_null(gw_run_cache_get(c, RUN_1, ACC_A, t.started_us + 60 * 1000)); /* the refresh */
    got = gw_run_cache_get(c, RUN_1, ACC_A, t.started_us + 99 * 1000);
    assert_non_null(got);
    free(got);
    assert_null(gw_run_cache_get(c, RUN_1, ACC_A, t.started_us + 100 * 1000));
    assert_null(gw_run_cache_get(c, RUN_1, ACC_A, t.started_us + 1000)); /* dropped */
    /* off */
    assert_null(gw_run_cache_new(64, 0));
    assert_null(gw_run_cache_get(NULL, RUN_1, ACC_A, kx_mono_us()));
    gw_run_cache_ticket off = gw_run_cache_begin(NULL, RUN_1);
    gw_run_cache_put(NULL, &off, RUN_1, ACC_A, "{}");
    gw_run_cache_invalidate(NULL, RUN_1);
    gw_run_cache_free(c);
}

static void test_run_refreshed_ahead_by_one_request(void **state)
{
    gw_run_cache *c = gw_run_cache_new(64, 100);
    gw_run_cache_ticket t = gw_run_cache_begin(c, RUN_1);
    gw_run_cache_put(c, &t, RUN_1, ACC_A, "{\"n\": 1}");
    int64_t half = t.started_us + 50 * 1000;
    /* past half its life: the first request reads the database again (a miss)... */
    assert_null(gw_run_cache_get(c, RUN_1, ACC_A, half));
    /* ...the others still get the entry until the TTL */
    char *got = gw_run_cache_get(c, RUN_1, ACC_A, half + 1000);
    assert_non_null(got);
    assert_string_equal(got, "{\"n\": 1}");
    free(got);
    /* another account never hits, and does not take the refresh */
    assert_null(gw_run_cache_get(c, RUN_1, ACC_B, half + 1000));
    /* the refreshing read's answer replaces it, with a new age */
    gw_run_cache_ticket r = gw_run_cache_begin(c, RUN_1);
    gw_run_cache_put(c, &r, RUN_1, ACC_A, "{\"n\": 2}");
    got = gw_run_cache_get(c, RUN_1, ACC_A, r.started_us + 1000);
    assert_non_null(got);
    assert_string_equal(got, "{\"n\": 2}");
    free(got);
    /* a refresh that never puts (its read failed): the entry still ends at its TTL */
    assert_null(gw_run_cache_get(c, RUN_1, ACC_A, r.started_us + 60 * 1000));
    got = gw_run_cache_get(c, RUN_1, ACC_A, r.started_us + 99 * 1000);
    assert_non_null(got);
    free(got);
    assert_null(gw_run_cache_get(c, RUN_1, ACC_A, r.started_us + 100 * 1000));
    gw_run_cache_free(c);
}

static void test_run_invalidation_beats_a_read_in_flight(void **state)
{
    gw_run_cache *c = gw_run_cache_new(64, 10000);
    /* an invalidation drops the entry */
    gw_run_cache_ticket t = gw_run_cache_begin(c, RUN_1);
    gw_run_cache_put(c, &t, RUN_1, ACC_A, "{\"status\": \"running\"}");
    gw_run_cache_invalidate(c, RUN_1);
    assert_null(gw_run_cache_get(c, RUN_1, ACC_A, kx_mono_us()));

    /* a read that began before the invalidation (it may have read the old row) puts nothing */
    gw_run_cache_ticket before = gw_run_cache_begin(c, RUN_1);
    gw_run_cache_invalidate(c, RUN_1); /* e.g. this gateway stopped the run meanwhile */
    gw_run_cache_put(c, &before, RUN_1, ACC_A, "{\"status\": \"running\"}");
    assert_null(gw_run_cache_get(c, RUN_1, ACC_A, kx_mono_us()));

    /* a read that began after it does */
    gw_run_cache_ticket after = gw_run_cache_begin(c, RUN_1);
    gw_run_cache_put(c, &after, RUN_1, ACC_A, "{\"status\": \"stopped\"}");
    char *got = gw_run_cache_get(c, RUN_1, ACC_A, kx_mono_us());
    assert_non_null(got);
    assert_string_equal(got, "{\"status\": \"stopped\"}");
    free(got);

    /* of two reads in flight, the later put never replaces the earlier one's with older data:
     * the first put wins the slot, the second (same ticket) is dropped */
    gw_run_cache_invalidate(c, RUN_1);
    gw_run_cache_ticket r1 = gw_run_cache_begin(c, RUN_1);
    gw_run_cache_ticket r2 = gw_run_cache_begin(c, RUN_1);
    gw_run_cache_put(c, &r2, RUN_1, ACC_A, "{\"n\": 2}");
    gw_run_cache_put(c, &r1, RUN_1, ACC_A, "{\"n\": 1}");
    got = gw_run_cache_get(c, RUN_1, ACC_A, kx_mono_us());
    assert_non_null(got);
    assert_string_equal(got, "{\"n\": 2}");
    free(got);
    gw_run_cache_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_token_hit_only_for_the_same_token_within_exp),
        cmocka_unit_test(test_token_entry_lives_at_most_the_bound),
        cmocka_unit_test(test_run_answer_only_to_its_account),
        cmocka_unit_test(test_run_answer_never_older_than_the_ttl),
        cmocka_unit_test(test_run_refreshed_ahead_by_one_request),
        cmocka_unit_test(test_run_invalidation_beats_a_read_in_flight),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
