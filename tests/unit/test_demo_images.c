/* test_demo_images.c — the demo model reports the image parts a request carried
 * (tests/fakes/demo-model/demo_conv.c, demo_turn.c): a user message with image parts is an
 * attachment, not the script; the final answer names each image's type and decoded size. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <jansson.h>

#include "demo_conv.h"
#include "demo_script.h"
#include "demo_turn.h"

static void test_images_reported(void **state)
{
    (void)state;
    json_t *m = json_loads(
        "[{\"role\": \"user\", \"content\": \"call see_image {\\\"file_path\\\": \\\"a\\\"}\"},"
        " {\"role\": \"assistant\", \"content\": null, \"tool_calls\": []},"
        " {\"role\": \"tool\", \"tool_call_id\": \"c\", \"content\": \"seen\"},"
        " {\"role\": \"user\", \"content\": [{\"type\": \"text\", \"text\": \"The image\"},"
        "   {\"type\": \"image_url\", \"image_url\": {\"url\": \"data:image/png;base64,iVBORw==\"}},"
        "   {\"type\": \"image_url\", \"image_url\": {\"url\": \"data:image/gif;base64,R0lGODlh\"}},"
        "   {\"type\": \"image_url\", \"image_url\": {\"url\": \"https://x/y.png\"}}]}]",
        0, NULL);
    assert_non_null(m);
    demo_conv c;
    char err[200];
    assert_int_equal(demo_conv_read(m, &c, err, sizeof err), 0);
    json_decref(m);
    /* the image message is not the script: the step index still counts from the script */
    assert_non_null(strstr(c.script, "call see_image"));
    assert_int_equal(c.step_index, 1);
    assert_int_equal(c.nimages, 3);
    assert_string_equal(c.images, "image/png 4 bytes, image/gif 6 bytes, url");
    demo_turn t;
    assert_int_equal(demo_turn_build(NULL, 1, &c, &t), 0);
    assert_non_null(strstr(t.content,
                           "[images received: 3: image/png 4 bytes, image/gif 6 "
                           "bytes, url]"));
    demo_turn_free(&t);
    demo_conv_free(&c);

    m = json_loads("[{\"role\": \"user\", \"content\": [{\"type\": \"text\", \"text\": \"say "
                   "hi\"}]}]",
                   0, NULL);
    assert_int_equal(demo_conv_read(m, &c, err, sizeof err), 0);
    json_decref(m);
    assert_int_equal(c.nimages, 0);
    assert_null(c.images);
    assert_string_equal(c.script, "say hi");
    demo_conv_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_images_reported),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
