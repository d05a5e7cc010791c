/* tools_text.c — the compact text of a run's tool schemas from a cache of each schema's text
 * (see tools_text.h). Open addressing on the schema's address. */
#include "tools_text.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kx/buf.h"
#include "kx/json.h"

typedef struct entry {
    json_t *schema; /* a reference we hold; NULL = free slot */
    char *text;
    size_t len;
} entry;

static entry g_cache[TOOLS_TEXT_CACHE];
static size_t g_used;
static size_t g_last_len; /* the length of the last text printed: the next one's first guess */

void tools_text_clear(void)
{
    for (size_t i = 0; i < TOOLS_TEXT_CACHE; i++) {
        json_decref(g_cache[i].schema);
        free(g_cache[i].text);
        g_cache[i] = (entry){0};
    }
    g_used = 0;
}

static size_t slot_of(const json_t *schema)
{
    uintptr_t h = (uintptr_t)schema;
    h ^= h >> 17;
    h *= 0x9e3779b97f4a7c15ull;
    return (size_t)(h >> 7) % TOOLS_TEXT_CACHE;
}

/* The cached text of schema, printed and cached on a miss; NULL on OOM. */
static const entry *text_of(json_t *schema)
{
    size_t i = slot_of(schema);
    while (g_cache[i].schema != NULL) {
        if (g_cache[i].schema == schema)
            return &g_cache[i];
        i = (i + 1) % TOOLS_TEXT_CACHE;
    }
    char *text = kx_json_dumps_compact(schema);
    if (text == NULL)
        return NULL;
    if (g_used >= TOOLS_TEXT_CACHE / 2) { /* half full: start afresh (keeps probes short) */
        tools_text_clear();
        i = slot_of(schema);
    }
    g_cache[i].schema = json_incref(schema);
    g_cache[i].text = text;
    g_cache[i].len = strlen(text);
    g_used++;
    return &g_cache[i];
}

char *tools_text_print(const json_t *tools)
{
    if (!json_is_array(tools))
        return NULL;
    kx_buf b = KX_BUF_INIT;
    /* a run's tools are mostly the same as the last run's: room for them at once, not a
     * doubling realloc (and copy) per size class of a text of tens of kB */
    kx_buf_reserve(&b, g_last_len);
    kx_buf_add(&b, "[", 1);
    for (size_t i = 0; i < json_array_size(tools); i++) {
        const entry *e = text_of(json_array_get(tools, i));
        if (e == NULL) {
            kx_buf_free(&b);
            return NULL;
        }
        if (i > 0)
            kx_buf_add(&b, ",", 1);
        kx_buf_add(&b, e->text, e->len);
    }
    kx_buf_add(&b, "]", 1);
    if (!b.oom)
        g_last_len = b.len;
    return kx_buf_take(&b);
}
