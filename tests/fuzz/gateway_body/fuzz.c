/* fuzz.c — the gateway's handling of JSON request bodies (body.c) and of client text (text.c):
 * what POST /api/thread/{id}/messages/add and the JSON form of /api/agent/initiate receive.
 *
 * The input is the body. It is read with gw_body_json_object (allow_empty both ways), then the
 * fields the routes read are taken with gw_body_str / gw_body_bool. The same bytes go through
 * kx_utf8_valid, cross-checked against jansson's own UTF-8 check, and gw_project_name.
 * Properties: a refusal is a 400 whose body is JSON {"detail": "..."} (never the 500 that a
 * reply which cannot be printed turns into); a string handed to a route has no NUL; the project
 * name is UTF-8, a prefix of the prompt (plus "...") of at most 30 characters. */
#include <jansson.h>
#include <microhttpd.h>
#include <string.h>

#include "body.h"
#include "fuzz_util.h"
#include "reply.h"
#include "text.h"
#include "kx/utf8.h"

static void check_refusal(gw_reply *r)
{
    FUZZ_CHECK(r->status == MHD_HTTP_BAD_REQUEST);
    FUZZ_CHECK(r->body != NULL);
    json_t *b = json_loads(r->body, 0, NULL);
    FUZZ_CHECK(json_is_string(json_object_get(b, "detail")));
    json_decref(b);
    gw_reply_free(r);
    memset(r, 0, sizeof *r);
}

static size_t utf8_chars(const char *s)
{
    size_t n = 0;
    for (; *s != '\0'; s++)
        n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *body = fuzz_cstr(data, size);
    gw_request req;
    memset(&req, 0, sizeof req);
    req.body = body;
    req.body_len = size;
    for (int allow_empty = 0; allow_empty <= 1; allow_empty++) {
        gw_reply r = {0};
        json_t *obj = gw_body_json_object(&req, allow_empty, &r);
        if (obj == NULL) {
            check_refusal(&r);
            continue;
        }
        FUZZ_CHECK(json_is_object(obj) && r.status == 0);
        static const char *const strs[] = {"prompt", "model_name", "reasoning_effort", "type",
                                           "content"};
        static const char *const bools[] = {"enable_thinking", "enable_context_manager", "stream",
                                            "is_llm_message"};
        for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++) {
            const char *v = NULL;
            if (gw_body_str(obj, strs[i], NULL, &v, &r)) {
                const json_t *j = json_object_get(obj, strs[i]);
                FUZZ_CHECK(v == NULL || strlen(v) == json_string_length(j));
            } else {
                check_refusal(&r);
            }
        }
        for (size_t i = 0; i < sizeof bools / sizeof bools[0]; i++) {
            bool b;
            if (!gw_body_bool(obj, bools[i], true, &b, &r))
                check_refusal(&r);
        }
        json_decref(obj);
    }

    json_t *js = json_stringn(body, size); /* NULL unless UTF-8 (NUL allowed) */
    bool ok = kx_utf8_valid(body, size);
    FUZZ_CHECK(ok == (js != NULL && memchr(body, '\0', size) == NULL));
    json_decref(js);
    if (ok) {
        char *name = gw_project_name(body, 30);
        FUZZ_CHECK(name != NULL);
        size_t nl = strlen(name);
        FUZZ_CHECK(kx_utf8_valid(name, nl));
        if (utf8_chars(body) <= 30) {
            FUZZ_CHECK(nl == size && memcmp(name, body, size) == 0);
        } else {
            FUZZ_CHECK(nl >= 3 && strcmp(name + nl - 3, "...") == 0);
            FUZZ_CHECK(memcmp(name, body, nl - 3) == 0 && utf8_chars(name) == 33);
        }
        free(name);
    }
    free(body);
    return 0;
}
