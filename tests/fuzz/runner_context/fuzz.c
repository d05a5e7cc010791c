/* fuzz.c — how the agent-runner turns a thread's stored messages into the chat context
 * (context.c): rows written by clients through the gateway (messages/add takes any content)
 * and by earlier runs, in whatever shape.
 *
 * The input is a list of rows separated by 0x1e; a row is "type" 0x1f "content" (content as
 * Postgres hands it over: UTF-8 text without NUL; rows that are not are skipped). Each row
 * goes through context_message_from_row, the list through context_repair. Properties: every
 * message is an object with a string role; every tool message sits in the block right after
 * an assistant message whose tool_calls has its id, answered once; every call of such an
 * assistant message is answered in that block; repairing again changes nothing; a see_image
 * reference found (context_pending_image) has a path and an image type. */
#include <jansson.h>
#include <string.h>

#include "context.h"
#include "fuzz_util.h"
#include "kx/json.h"

static bool call_has_id(const json_t *calls, const char *id)
{
    size_t i;
    const json_t *c;
    json_array_foreach(calls, i, c)
    {
        if (strcmp(kx_json_str(c, "id", ""), id) == 0)
            return true;
    }
    return false;
}

static void check(const json_t *msgs)
{
    size_t n = json_array_size(msgs);
    const json_t *owner = NULL; /* the assistant message whose tool block we are in */
    json_t *answered = NULL;
    for (size_t i = 0; i < n; i++) {
        const json_t *m = json_array_get(msgs, i);
        FUZZ_CHECK(json_is_object(m));
        const json_t *role = json_object_get(m, "role");
        FUZZ_CHECK(json_is_string(role));
        const char *r = json_string_value(role);
        if (strcmp(r, "tool") == 0) {
            FUZZ_CHECK(owner != NULL);
            const char *id = kx_json_str(m, "tool_call_id", NULL);
            FUZZ_CHECK(id != NULL);
            FUZZ_CHECK(call_has_id(json_object_get(owner, "tool_calls"), id));
            FUZZ_CHECK(json_object_get(answered, id) == NULL);
            json_object_set_new(answered, id, json_true());
            continue;
        }
        if (owner != NULL) { /* the block ended: every call was answered */
            size_t k;
            const json_t *c;
            json_array_foreach(json_object_get(owner, "tool_calls"), k, c)
                FUZZ_CHECK(json_object_get(answered, kx_json_str(c, "id", "")) != NULL);
            json_decref(answered);
            answered = NULL;
            owner = NULL;
        }
        if (strcmp(r, "assistant") == 0 && json_is_array(json_object_get(m, "tool_calls"))) {
            owner = m;
            answered = json_object();
        }
    }
    if (owner != NULL) {
        size_t k;
        const json_t *c;
        json_array_foreach(json_object_get(owner, "tool_calls"), k, c)
            FUZZ_CHECK(json_object_get(answered, kx_json_str(c, "id", "")) != NULL);
    }
    json_decref(answered);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (memchr(data, '\0', size) != NULL)
        return 0;
    json_t *valid = json_stringn((const char *)data, size); /* UTF-8, as Postgres text is */
    if (valid == NULL)
        return 0;
    json_decref(valid);
    char *text = fuzz_cstr(data, size);
    json_t *msgs = json_array();
    char *row = text;
    while (row != NULL) {
        char *next = strchr(row, 0x1e);
        if (next != NULL)
            *next++ = '\0';
        char *sep = strchr(row, 0x1f);
        const char *type = "user", *content = row;
        if (sep != NULL) {
            *sep = '\0';
            type = row;
            content = sep + 1;
        }
        json_t *m = context_message_from_row(type, content);
        FUZZ_CHECK(m != NULL);
        FUZZ_CHECK(json_is_string(json_object_get(m, "role")));
        json_array_append_new(msgs, m);
        row = next;
    }
    context_repair(msgs);
    check(msgs);
    json_t *copy = json_deep_copy(msgs);
    context_repair(copy);
    FUZZ_CHECK(json_equal(copy, msgs));
    json_decref(copy);
    /* see_image: a reference found in the newest tool results is a path and an image type */
    context_image_ref ref;
    if (context_pending_image(msgs, &ref)) {
        FUZZ_CHECK(ref.file_path[0] != '\0');
        FUZZ_CHECK(strncmp(ref.mime_type, "image/", 6) == 0);
        json_t *im = context_image_message(&ref, data, size);
        FUZZ_CHECK(im != NULL);
        json_decref(im);
    }
    json_decref(msgs);
    free(text);
    return 0;
}
