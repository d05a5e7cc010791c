/* tests/harness/fake_log.c — reading a fake's request log (fake_log.h). */
#include "fake_log.h"

#include <setjmp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "kx/http.h"
#include "kx/time.h"

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

json_t *kx_th_fake_log(uint16_t port, const char *cond1, const char *cond2)
{
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
        if ((cond1 == NULL || meets(e, cond1)) && (cond2 == NULL || meets(e, cond2)))
            json_array_append(out, e);
    }
    json_decref(all);
    return out;
}
