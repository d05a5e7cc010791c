/* fuzz.c — the TZif reader of libkx (common/src/tz.c, kx_tz_parse): the zone files under
 * KX_ZONEINFO_DIR that the gateway and the scheduler load by a trigger's timezone, read here
 * from memory; then the offsets and wall-clock conversions on what was read.
 *
 * Input: 8 bytes, a unix time t0 (big-endian, two's complement), then the bytes of a zone file.
 * The seeds are zone files of Debian's tzdata 2025b behind such a prefix (an instant near one
 * of the zone's clock changes or its ends); europe_berlin_v1 is Berlin's first header and
 * 32-bit data block alone, with version byte 0: a version 1 file. Properties:
 *   - a refusal is KX_ERR_INVALID with a reason and no zone; nothing is read outside the
 *     bytes given (they end where libFuzzer's buffer ends: ASan sees any overread);
 *   - at t0, the instants around it and a fixed list (1900, 1970, 2026, 2038, 2100, 9999 and
 *     the ends of int64), kx_tz_offset is within RFC 8536's -25:59:59..+25:59:59;
 *   - kx_tz_to_utc of a wall-clock time (the same numbers, and the wall-clock time each of
 *     those instants shows) gives 1 or 2 instants within 26 hours of it (of KX_TZ_WALL_MAX
 *     beyond that); when 2, ascending and each showing that wall-clock time;
 *   - "30 2 * * *" read on the zone's wall clock (kx_cron_next_tz) from t0 folded into
 *     1970..9999 fires after it, or is "not found", never anything else. */
#include "fuzz_util.h"
#include "kx/cron.h"
#include "kx/tz.h"

#define DAY 86400
#define MAX_OFFSET (26 * 3600)

static void check_offset(const kx_tz *tz, int64_t t)
{
    int32_t o = kx_tz_offset(tz, t);
    FUZZ_CHECK(o > -MAX_OFFSET && o < MAX_OFFSET);
}

/* The wall-clock time t shows (false near the ends of int64, where it does not fit). */
static bool wall_at(const kx_tz *tz, int64_t t, int64_t *wall)
{
    return !__builtin_add_overflow(t, (int64_t)kx_tz_offset(tz, t), wall);
}

static void check_to_utc(const kx_tz *tz, int64_t wall)
{
    int64_t at[2] = {0, 0};
    int n = kx_tz_to_utc(tz, wall, at);
    FUZZ_CHECK(n == 1 || n == 2);
    wall = wall > KX_TZ_WALL_MAX ? KX_TZ_WALL_MAX
        : wall < -KX_TZ_WALL_MAX ? -KX_TZ_WALL_MAX
                                 : wall;
    for (int k = 0; k < n; k++) {
        int64_t d = 0;
        FUZZ_CHECK(!__builtin_sub_overflow(wall, at[k], &d));
        FUZZ_CHECK(d > -MAX_OFFSET && d < MAX_OFFSET);
    }
    if (n == 2) {
        FUZZ_CHECK(at[0] < at[1]);
        for (int k = 0; k < 2; k++) {
            int64_t w = 0;
            FUZZ_CHECK(wall_at(tz, at[k], &w) && w == wall);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 8)
        return 0;
    uint64_t u = 0;
    for (int i = 0; i < 8; i++)
        u = u << 8 | data[i];
    int64_t t0 = (int64_t)u;

    kx_tz *tz = NULL;
    char why[200] = "";
    kx_err err = kx_tz_parse(data + 8, size - 8, &tz, why, sizeof why);
    if (err != KX_OK) {
        FUZZ_CHECK(err == KX_ERR_INVALID && why[0] != '\0' && tz == NULL);
        return 0;
    }
    FUZZ_CHECK(tz != NULL);

    const int64_t fixed[] = {INT64_MIN,
                             INT64_MIN + 1,
                             -2208988800LL,
                             INT32_MIN,
                             -1,
                             0,
                             1774746000,
                             1792890000,
                             INT32_MAX,
                             4102444800LL,
                             KX_CRON_MAX_TIME,
                             INT64_MAX - 1,
                             INT64_MAX};
    int64_t ts[sizeof fixed / sizeof fixed[0] + 5];
    size_t nt = 0;
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        ts[nt++] = fixed[i];
    const int64_t around[] = {0, -1, 1, -DAY, DAY};
    for (size_t i = 0; i < sizeof around / sizeof around[0]; i++) {
        int64_t t = 0;
        if (!__builtin_add_overflow(t0, around[i], &t))
            ts[nt++] = t;
    }
    for (size_t i = 0; i < nt; i++) {
        check_offset(tz, ts[i]);
        check_to_utc(tz, ts[i]); /* the same numbers as wall-clock times */
        int64_t wall = 0;
        if (wall_at(tz, ts[i], &wall)) {
            check_to_utc(tz, wall);
        }
    }

    kx_cron c;
    FUZZ_CHECK(kx_cron_parse("30 2 * * *", &c, NULL, 0) == KX_OK);
    int64_t after = (int64_t)(u % (uint64_t)(KX_CRON_MAX_TIME - 2 * DAY));
    int64_t next = 0;
    err = kx_cron_next_tz(&c, tz, after, &next);
    FUZZ_CHECK(err == KX_OK || err == KX_ERR_NOT_FOUND);
    if (err == KX_OK)
        FUZZ_CHECK(next > after);
    kx_tz_free(tz);
    return 0;
}
