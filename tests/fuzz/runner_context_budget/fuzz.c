/* fuzz.c — fitting a thread into a model's budget (context_budget.c) whatever its rows hold.
 *
 * The input is a list of messages separated by 0x1e; a message is "role" 0x1f "content" (bytes
 * that are not UTF-8 are skipped); the first byte picks the budget (1000 + 1000 x byte % 40).
 * Properties: the fit returns 0; the result fits the budget (the messages here have no
 * tool_calls, whose arguments are never cut); every content stays valid UTF-8 (jansson
 * accepted it); the newest message is still last. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "context_budget.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int64_t budget = 1000 + 1000 * (int64_t)(data[0] % 40);
    char *text = malloc(size);
    if (text == NULL)
        return 0;
    memcpy(text, data + 1, size - 1);
    text[size - 1] = '\0';
    json_t *msgs = json_array();
    char *save = NULL;
    int k = 0;
    for (char *row = strtok_r(text, "\x1e", &save); row != NULL;
         row = strtok_r(NULL, "\x1e", &save)) {
        char *content = strchr(row, 0x1f);
        if (content != NULL)
            *content++ = '\0';
        json_t *m = json_pack("{s:s?, s:s?}", "role", row, "content", content ? content : "");
        if (m == NULL)
            continue; /* not UTF-8 */
        char id[16];
        snprintf(id, sizeof id, "m%d", k++);
        json_object_set_new(m, CONTEXT_ID_KEY, json_string(id));
        json_array_append_new(msgs, m);
    }
    size_t n = json_array_size(msgs);
    json_t *last = n ? json_incref(json_array_get(msgs, n - 1)) : NULL;
    context_fit_report rep;
    FUZZ_CHECK(context_fit(msgs, budget, 100, &rep) == 0);
    FUZZ_CHECK(context_messages_tokens(msgs) + 100 <= budget ||
               json_array_size(msgs) * (CONTEXT_MSG_OVERHEAD + 100) + 100 > (size_t)budget);
    if (last != NULL && json_array_size(msgs) > 0)
        FUZZ_CHECK(json_array_get(msgs, json_array_size(msgs) - 1) == last);
    json_decref(last);
    json_decref(msgs);
    free(text);
    return 0;
}
