/* jsonrpc.c — the transport-neutral JSON-RPC 2.0 layer (see jsonrpc.h).
 *
 * The pending table is a small array searched linearly: an MCP session has a handful of
 * requests in flight, never thousands. A response's callback runs after its entry has been
 * removed, so the callback may send new requests or cancel others. */
#include "jsonrpc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct pending {
    int64_t id;
    mcp_rpc_response_cb cb;
    void *arg;
} pending;

struct mcp_rpc {
    mcp_rpc_send_fn send;
    mcp_rpc_incoming_cb incoming;
    void *arg;
    int64_t next_id;
    pending *pend;
    size_t npend, cap;
};

mcp_rpc *mcp_rpc_new(mcp_rpc_send_fn send, mcp_rpc_incoming_cb incoming, void *arg)
{
    mcp_rpc *rpc = calloc(1, sizeof *rpc);
    if (rpc == NULL)
        return NULL;
    rpc->send = send;
    rpc->incoming = incoming;
    rpc->arg = arg;
    rpc->next_id = 1;
    return rpc;
}

void mcp_rpc_free(mcp_rpc *rpc)
{
    if (rpc == NULL)
        return;
    free(rpc->pend);
    free(rpc);
}

size_t mcp_rpc_pending(const mcp_rpc *rpc)
{
    return rpc->npend;
}

/* Serializes msg (taken) and hands it to send. */
static kx_err send_json(mcp_rpc *rpc, json_t *msg)
{
    if (msg == NULL)
        return KX_ERR_NOMEM;
    char *text = json_dumps(msg, JSON_COMPACT);
    json_decref(msg);
    if (text == NULL)
        return KX_ERR_NOMEM;
    kx_err err = rpc->send(text, strlen(text), rpc->arg);
    free(text);
    return err;
}

static kx_err add_pending(mcp_rpc *rpc, int64_t id, mcp_rpc_response_cb cb, void *arg)
{
    if (rpc->npend == rpc->cap) {
        size_t cap = rpc->cap ? rpc->cap * 2 : 8;
        pending *g = realloc(rpc->pend, cap * sizeof *g);
        if (g == NULL)
            return KX_ERR_NOMEM;
        rpc->pend = g;
        rpc->cap = cap;
    }
    rpc->pend[rpc->npend++] = (pending){.id = id, .cb = cb, .arg = arg};
    return KX_OK;
}

/* Removes id from the table into *out. False if it is not there. */
static bool take_pending(mcp_rpc *rpc, int64_t id, pending *out)
{
    for (size_t i = 0; i < rpc->npend; i++) {
        if (rpc->pend[i].id == id) {
            *out = rpc->pend[i];
            rpc->pend[i] = rpc->pend[--rpc->npend];
            return true;
        }
    }
    return false;
}

kx_err mcp_rpc_request(mcp_rpc *rpc, const char *method, json_t *params, mcp_rpc_response_cb cb,
                       void *arg, int64_t *id_out)
{
    int64_t id = rpc->next_id++;
    json_t *msg =
        json_pack("{s:s, s:I, s:s}", "jsonrpc", "2.0", "id", (json_int_t)id, "method", method);
    if (msg != NULL && params != NULL && json_object_set(msg, "params", params) != 0) {
        json_decref(msg);
        msg = NULL;
    }
    json_decref(params);
    if (msg == NULL)
        return KX_ERR_NOMEM;
    /* Pending first: a transport could deliver the response before send returns. */
    kx_err err = add_pending(rpc, id, cb, arg);
    if (err != KX_OK) {
        json_decref(msg);
        return err;
    }
    err = send_json(rpc, msg);
    if (err != KX_OK) {
        pending dropped;
        take_pending(rpc, id, &dropped);
        return err;
    }
    if (id_out != NULL)
        *id_out = id;
    return KX_OK;
}

kx_err mcp_rpc_notify(mcp_rpc *rpc, const char *method, json_t *params)
{
    json_t *msg = json_pack("{s:s, s:s}", "jsonrpc", "2.0", "method", method);
    if (msg != NULL && params != NULL && json_object_set(msg, "params", params) != 0) {
        json_decref(msg);
        msg = NULL;
    }
    json_decref(params);
    return send_json(rpc, msg);
}

kx_err mcp_rpc_reply_result(mcp_rpc *rpc, const json_t *id, json_t *result)
{
    json_t *msg = json_pack("{s:s, s:O, s:o}", "jsonrpc", "2.0", "id", id, "result",
                            result ? result : json_object());
    return send_json(rpc, msg);
}

kx_err mcp_rpc_reply_error(mcp_rpc *rpc, const json_t *id, int64_t code, const char *message)
{
    json_t *msg =
        json_pack("{s:s, s:O, s:{s:I, s:s}}", "jsonrpc", "2.0", "id", id ? id : json_null(),
                  "error", "code", (json_int_t)code, "message", message);
    return send_json(rpc, msg);
}

bool mcp_rpc_cancel(mcp_rpc *rpc, int64_t id)
{
    pending p;
    return take_pending(rpc, id, &p);
}

void mcp_rpc_fail_all(mcp_rpc *rpc, int64_t code, const char *message)
{
    /* Detach the table first: callbacks may send new requests. */
    pending *list = rpc->pend;
    size_t n = rpc->npend;
    rpc->pend = NULL;
    rpc->npend = rpc->cap = 0;
    mcp_rpc_error e = {.code = code, .message = message, .data = NULL};
    for (size_t i = 0; i < n; i++)
        list[i].cb(NULL, &e, list[i].arg);
    free(list);
}

/* A response: {"jsonrpc", "id", "result" | "error"}. */
static kx_err handle_response(mcp_rpc *rpc, const json_t *msg, char *why, size_t whylen)
{
    const json_t *id = json_object_get(msg, "id");
    const json_t *result = json_object_get(msg, "result");
    const json_t *error = json_object_get(msg, "error");
    if ((result == NULL) == (error == NULL)) {
        kx_why(why, whylen, "a response must have exactly one of \"result\" and \"error\"");
        return KX_ERR_PROTOCOL;
    }
    if (!json_is_integer(id)) {
        if (error != NULL && json_is_null(id)) {
            const char *m = json_string_value(json_object_get(error, "message"));
            kx_why(why, whylen, "the peer reported an error without a request id: %s",
                   m ? m : "(no message)");
            return KX_ERR_PROTOCOL;
        }
        kx_why(why, whylen, "a response id must be one of our integer request ids");
        return KX_ERR_NOT_FOUND;
    }
    pending p;
    int64_t n = (int64_t)json_integer_value(id);
    if (!take_pending(rpc, n, &p)) {
        kx_why(why, whylen, "a response to request id %lld, which is not pending", (long long)n);
        return KX_ERR_NOT_FOUND;
    }
    if (result != NULL) {
        p.cb(result, NULL, p.arg);
        return KX_OK;
    }
    const json_t *code = json_object_get(error, "code");
    const json_t *message = json_object_get(error, "message");
    if (!json_is_object(error) || !json_is_integer(code) || !json_is_string(message)) {
        mcp_rpc_error e = {.code = MCP_RPC_INTERNAL_ERROR,
                           .message = "the peer sent a malformed error object",
                           .data = error};
        p.cb(NULL, &e, p.arg);
        kx_why(why, whylen,
               "the error object of the response to request id %lld has no integer "
               "\"code\" and string \"message\"",
               (long long)n);
        return KX_ERR_PROTOCOL;
    }
    mcp_rpc_error e = {.code = (int64_t)json_integer_value(code),
                       .message = json_string_value(message),
                       .data = json_object_get(error, "data")};
    p.cb(NULL, &e, p.arg);
    return KX_OK;
}

/* A server may send \u0000 (a file it read), in a value or a key: jansson refuses it in a key
 * even with JSON_ALLOW_NUL, and Postgres text and jsonb cannot hold it, so the escape is
 * rewritten as \ufffd (the same length) in a copy before parsing. Every backslash starts an
 * escape of two characters or more and is stepped over with the character it escapes, so the
 * text "\\u0000" (a backslash, then "u0000") is left as it is. */
json_t *mcp_json_loadb(const char *text, size_t len, json_error_t *err)
{
    static const char nul[] = "\\u0000";
    if (memmem(text, len, nul, sizeof nul - 1) == NULL)
        return json_loadb(text, len, 0, err);
    char *copy = malloc(len ? len : 1);
    if (copy == NULL) {
        if (err != NULL) {
            memset(err, 0, sizeof *err);
            snprintf(err->text, sizeof err->text, "out of memory");
        }
        return NULL;
    }
    memcpy(copy, text, len);
    for (size_t i = 0; i + 1 < len; i++) {
        if (copy[i] != '\\')
            continue;
        if (i + 6 <= len && memcmp(copy + i, nul, 6) == 0)
            memcpy(copy + i + 2, "fffd", 4);
        i++; /* the escaped character: a second backslash escapes nothing */
    }
    json_t *j = json_loadb(copy, len, 0, err);
    free(copy);
    return j;
}

kx_err mcp_rpc_receive(mcp_rpc *rpc, const char *text, size_t len, char *why, size_t whylen)
{
    json_error_t jerr;
    json_t *msg = mcp_json_loadb(text, len, &jerr);
    if (msg == NULL) {
        kx_why(why, whylen, "not JSON: %s (at character %d)", jerr.text, jerr.position);
        return KX_ERR_PROTOCOL;
    }
    kx_err err = KX_OK;
    if (json_is_array(msg)) {
        kx_why(why, whylen, "JSON-RPC batches are not supported");
        err = KX_ERR_PROTOCOL;
    } else if (!json_is_object(msg)) {
        kx_why(why, whylen, "a message must be a JSON object");
        err = KX_ERR_PROTOCOL;
    } else if (!json_is_string(json_object_get(msg, "jsonrpc")) ||
               strcmp(json_string_value(json_object_get(msg, "jsonrpc")), "2.0") != 0) {
        kx_why(why, whylen, "\"jsonrpc\" must be \"2.0\"");
        err = KX_ERR_PROTOCOL;
    } else if (json_object_get(msg, "method") != NULL) {
        const json_t *method = json_object_get(msg, "method");
        const json_t *id = json_object_get(msg, "id");
        const json_t *params = json_object_get(msg, "params");
        bool id_ok = id == NULL || json_is_string(id) || json_is_integer(id);
        if (!json_is_string(method) || !id_ok ||
            (params != NULL && !json_is_object(params) && !json_is_array(params))) {
            kx_why(why, whylen,
                   "a request needs a string \"method\", a string or integer \"id\" "
                   "and object or array \"params\"");
            if (id != NULL && id_ok)
                err = mcp_rpc_reply_error(rpc, id, MCP_RPC_INVALID_REQUEST, "Invalid Request");
            err = err == KX_ERR_NOMEM ? err : KX_ERR_PROTOCOL;
        } else {
            rpc->incoming(rpc, json_string_value(method), params, id, rpc->arg);
        }
    } else if (json_object_get(msg, "id") != NULL) {
        err = handle_response(rpc, msg, why, whylen);
    } else {
        kx_why(why, whylen,
               "a message must have a \"method\" (request, notification) or an "
               "\"id\" (response)");
        err = KX_ERR_PROTOCOL;
    }
    json_decref(msg);
    return err;
}
