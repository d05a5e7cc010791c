/* test_runner_image.c — see_image in the runner (services/agent-runner/context.c,
 * llm_anthropic.c): which tool result asks for an image (only the newest results, after the
 * last assistant message; only see_image's, with a reference), the message that carries it as
 * an OpenAI data-URL image part, and that part as an Anthropic base64 image block. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <jansson.h>

#include "context.h"
#include "llm_provider.h"

#define SEE(id, path)                                                                           \
    "{\"role\": \"tool\", \"tool_call_id\": \"" id "\", \"name\": \"see_image\", \"content\": " \
    "\"{\\\"message\\\": \\\"ok\\\", \\\"image\\\": {\\\"file_path\\\": \\\"" path              \
    "\\\", \\\"mime_type\\\": \\\"image/png\\\", \\\"size\\\": 3}}\"}"
#define CALLS(id)                                                                         \
    "{\"role\": \"assistant\", \"content\": null, \"tool_calls\": [{\"id\": \"" id "\", " \
    "\"type\": \"function\", \"function\": {\"name\": \"see_image\", \"arguments\": \"{}\"}}]}"

static json_t *load(const char *text)
{
    json_error_t e;
    json_t *v = json_loads(text, 0, &e);
    if (v == NULL)
        fail_msg("bad JSON in the test: %s", e.text);
    return v;
}

static void test_pending_image(void **state)
{
    (void)state;
    context_image_ref ref;
    json_t *m = load("[{\"role\": \"user\", \"content\": \"look\"}, " CALLS(
        "a") ", " SEE("a", "/workspace/a.png") "]");
    assert_true(context_pending_image(m, &ref));
    assert_string_equal(ref.file_path, "/workspace/a.png");
    assert_string_equal(ref.mime_type, "image/png");
    assert_int_equal(ref.size, 3);
    json_decref(m);

    /* answered already: the model has seen it */
    m = load("[" CALLS("a") ", " SEE(
        "a",
        "/workspace/a.png") ", {\"role\": \"assistant\", "
                            "\"content\": \"I see it\"}, {\"role\": \"user\", \"content\": \"more\"}]");
    assert_false(context_pending_image(m, &ref));
    json_decref(m);

    /* a failed see_image (no reference), another tool, no messages */
    m = load("[" CALLS(
        "a") ", {\"role\": \"tool\", \"tool_call_id\": \"a\", \"name\": "
             "\"see_image\", \"content\": \"see_image: 'x' is not a PNG, JPEG, GIF or WebP "
             "image\"}, {\"role\": \"tool\", \"tool_call_id\": \"b\", \"name\": \"read_file\", "
             "\"content\": \"{\\\"image\\\": {\\\"file_path\\\": \\\"p\\\", \\\"mime_type\\\": "
             "\\\"image/png\\\"}}\"}]");
    assert_false(context_pending_image(m, &ref));
    json_decref(m);
    /* Kortix's XML mode: the result is a user message holding tool_execution */
    m = load("[{\"role\": \"assistant\", \"content\": \"<function_calls>...\"}, "
             "{\"role\": \"user\", \"content\": \"{\\\"tool_execution\\\": "
             "{\\\"function_name\\\": \\\"see_image\\\", \\\"result\\\": "
             "{\\\"success\\\": true, \\\"output\\\": {\\\"image\\\": "
             "{\\\"file_path\\\": \\\"/workspace/x.gif\\\", \\\"mime_type\\\": "
             "\\\"image/gif\\\", \\\"size\\\": 9}}}}}\"}]");
    assert_true(context_pending_image(m, &ref));
    assert_string_equal(ref.file_path, "/workspace/x.gif");
    assert_string_equal(ref.mime_type, "image/gif");
    json_decref(m);

    m = json_array();
    assert_false(context_pending_image(m, &ref));
    json_decref(m);
}

static void test_image_message_and_anthropic_block(void **state)
{
    (void)state;
    context_image_ref ref = {"/workspace/a.png", "image/png", 4};
    json_t *msg = context_image_message(&ref, (const unsigned char *)"\x89PNG", 4);
    assert_non_null(msg);
    json_t *parts = json_object_get(msg, "content");
    assert_string_equal(json_string_value(json_object_get(msg, "role")), "user");
    assert_int_equal(json_array_size(parts), 2);
    assert_non_null(strstr(json_string_value(json_object_get(json_array_get(parts, 0), "text")),
                           "/workspace/a.png"));
    json_t *img = json_array_get(parts, 1);
    assert_string_equal(json_string_value(json_object_get(img, "type")), "image_url");
    assert_string_equal(json_string_value(
                            json_object_get(json_object_get(img, "image_url"), "url")),
                        "data:image/png;base64,iVBORw==");

    json_t *msgs = json_array();
    json_array_append_new(msgs, msg);
    char *body = llm_anthropic_body("claude-x", 100, "sys", NULL, msgs);
    assert_non_null(body);
    json_t *got = json_loads(body, 0, NULL);
    json_t *blocks =
        json_object_get(json_array_get(json_object_get(got, "messages"), 0), "content");
    assert_int_equal(json_array_size(blocks), 2);
    json_t *want = load("{\"type\": \"image\", \"source\": {\"type\": \"base64\", \"media_type\": "
                        "\"image/png\", \"data\": \"iVBORw==\"}}");
    if (!json_equal(json_array_get(blocks, 1), want))
        fail_msg("the image block differs: %s", body);
    json_decref(want);
    json_decref(got);
    free(body);
    json_decref(msgs);

    json_t *failed = context_image_failed_message(&ref, "gone");
    assert_non_null(strstr(json_string_value(json_object_get(failed, "content")),
                           "could not be loaded: gone"));
    json_decref(failed);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pending_image),
        cmocka_unit_test(test_image_message_and_anthropic_block),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
