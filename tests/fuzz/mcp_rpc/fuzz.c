/* fuzz.c — what an MCP server writes on its stdout, as the mcp-proxy reads it: the line
 * framing (linebuf.c) and the JSON-RPC 2.0 layer (jsonrpc.c).
 *
 * Byte 0 picks the line cap (small caps make over-long lines common) and whether over-long
 * lines are cut (the stderr framing) or refused (stdout); byte 1 seeds how the rest is split
 * into reads. Three requests (ids 1, 2, 3) are pending before the bytes arrive, so responses
 * can match; requests from the server are answered at once, alternately with a result and an
 * error. Properties: every line handed over is NUL-terminated, has no '\n', fits the cap;
 * every message the layer sends back is one JSON-RPC 2.0 object without a line end; a
 * response callback runs at most once per request, and the pending count only falls. */
#include <jansson.h>
#include <string.h>

#include "fuzz_util.h"
#include "jsonrpc.h"
#include "linebuf.h"

typedef struct state {
    mcp_rpc *rpc;
    mcp_linebuf lb;
    int answered[4];
    size_t replies;
} state;

static kx_err on_send(const char *text, size_t len, void *arg)
{
    (void)arg;
    FUZZ_CHECK(memchr(text, '\n', len) == NULL);
    json_t *m = json_loadb(text, len, 0, NULL);
    FUZZ_CHECK(json_is_object(m));
    const json_t *v = json_object_get(m, "jsonrpc");
    FUZZ_CHECK(json_is_string(v) && strcmp(json_string_value(v), "2.0") == 0);
    json_decref(m);
    return KX_OK;
}

static void on_response(const json_t *result, const mcp_rpc_error *error, void *arg)
{
    int *answered = arg;
    FUZZ_CHECK((result == NULL) != (error == NULL));
    FUZZ_CHECK(error == NULL || error->message != NULL);
    FUZZ_CHECK(*answered == 0);
    (*answered)++;
}

static void on_incoming(mcp_rpc *rpc, const char *method, const json_t *params, const json_t *id,
                        void *arg)
{
    state *st = arg;
    FUZZ_CHECK(method != NULL);
    FUZZ_CHECK(params == NULL || json_is_object(params) || json_is_array(params));
    if (id == NULL)
        return;
    if (st->replies++ % 2 == 0)
        FUZZ_CHECK(mcp_rpc_reply_result(rpc, id, json_pack("{s:s}", "echo", method)) == KX_OK);
    else
        FUZZ_CHECK(mcp_rpc_reply_error(rpc, id, MCP_RPC_METHOD_NOT_FOUND, method) == KX_OK);
}

static void on_line(const char *line, size_t len, void *arg)
{
    state *st = arg;
    FUZZ_CHECK(line[len] == '\0' && memchr(line, '\n', len) == NULL && len <= st->lb.max);
    size_t before = mcp_rpc_pending(st->rpc);
    char why[128];
    memset(why, 'x', sizeof why);
    kx_err err = mcp_rpc_receive(st->rpc, line, len, why, sizeof why);
    FUZZ_CHECK(err == KX_OK || err == KX_ERR_PROTOCOL || err == KX_ERR_NOT_FOUND);
    if (err != KX_OK)
        FUZZ_CHECK(memchr(why, '\0', sizeof why) != NULL && why[0] != '\0');
    FUZZ_CHECK(mcp_rpc_pending(st->rpc) <= before);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    state st;
    memset(&st, 0, sizeof st);
    st.rpc = mcp_rpc_new(on_send, on_incoming, &st);
    FUZZ_CHECK(st.rpc != NULL);
    for (int i = 1; i <= 3; i++) {
        int64_t id = 0;
        FUZZ_CHECK(mcp_rpc_request(st.rpc, i == 1 ? "initialize" : "tools/list", NULL, on_response,
                                   &st.answered[i], &id) == KX_OK);
        FUZZ_CHECK(id == i);
    }
    bool cut = data[0] & 1;
    size_t max = data[0] < 128 ? (size_t)(data[0] >> 1) + 1 : 1024 * 1024;
    mcp_linebuf_init(&st.lb, max, cut);
    unsigned x = data[1] | 1u;
    const char *s = (const char *)data + 2;
    size_t len = size - 2, at = 0;
    while (at < len) {
        x = x * 1103515245u + 12345u;
        size_t n = (size_t)((x >> 16) % 64u) + 1;
        if (n > len - at)
            n = len - at;
        kx_err err = mcp_linebuf_feed(&st.lb, s + at, n, on_line, &st);
        FUZZ_CHECK(err == KX_OK || (err == KX_ERR_PROTOCOL && !cut));
        at += n;
    }
    mcp_linebuf_flush(&st.lb, on_line, &st);
    mcp_rpc_fail_all(st.rpc, MCP_RPC_INTERNAL_ERROR, "server exited");
    FUZZ_CHECK(mcp_rpc_pending(st.rpc) == 0);
    for (int i = 1; i <= 3; i++)
        FUZZ_CHECK(st.answered[i] == 1);
    mcp_linebuf_free(&st.lb);
    mcp_rpc_free(st.rpc);
    return 0;
}
