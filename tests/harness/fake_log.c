/* tests/harness/fake_log.c — reading a fake's request log (fake_log.h). */
#include "fake_log.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "kx/http.h"
#include "kx/time.h"

#define MAX_CONDS 8

/* Whether entry e meets cond ("field=value" or "field^=value"). */
static bool meets(const json_t *e, const char *cond)
{
    const char *eq = strchr(cond, '=');
    assert_non_null(eq);
    bool prefix = eq > cond && eq[-1] == '^';
    char field[64];
    size_t flen = (size_t)(eq - cond) - (prefix ? 1 : 0);
    assert_true(flen > 0 && flen < sizeof field);
    memcpy(field, cond, flen);
    field[flen] = '\0';
    const char *have = json_string_value(json_object_get(e, field));
    const char *want = eq + 1;
    if (have == NULL)
        return false;
    return prefix ? strncmp(have, want, strlen(want)) == 0 : strcmp(have, want) == 0;
}

json_t *kx_th_fake_log(uint16_t port, ...)
{
    const char *conds[MAX_CONDS];
    size_t n = 0;
    va_list ap;
    va_start(ap, port);
    for (const char *c; (c = va_arg(ap, const char *)) != NULL;) {
        assert_true(n < MAX_CONDS);
        conds[n++] = c;
    }
    va_end(ap);

    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%u/_log", (unsigned)port);
    kx_http_resp r = {0};
    assert_int_equal(kx_http_request("GET", url, NULL, NULL, 0, kx_deadline_in(10000), 0, &r),
                     KX_OK);
    json_t *all = json_loadb(r.body ? r.body : "", r.len, 0, NULL);
    kx_http_resp_free(&r);
    assert_true(json_is_array(all));
    json_t *out = json_array();
    size_t i;
    json_t *e;
    json_array_foreach(all, i, e)
    {
        bool all_met = true;
        for (size_t k = 0; k < n && all_met; k++)
            all_met = meets(e, conds[k]);
        if (all_met)
            json_array_append(out, e);
    }
    json_decref(all);
    return out;
}
