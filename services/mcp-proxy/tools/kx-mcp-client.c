/* kx-mcp-client.c — the mcp-proxy's MCP client (session.c with its transports) as a small
 * command-line program, for the MCP conformance suite's client mode and for trying a server
 * by hand. No NATS: it talks to the server directly.
 *
 *   kx-mcp-client [--timeout-ms N] [--call TOOL [--args JSON]] [--call-all] URL
 *   kx-mcp-client [--timeout-ms N] [--call TOOL [--args JSON]] [--call-all] --stdio CMD ARG...
 *   kx-mcp-client ... --sse URL                      (legacy HTTP+SSE)
 *
 * It initializes, lists the tools (printing one JSON line), then calls TOOL with JSON (or, with
 * --call-all, every listed tool with arguments made from its inputSchema: numbers 1, strings
 * "test", booleans true), printing one JSON line per call, and closes the session (HTTP DELETE
 * / stdin closed). With MCP_CONFORMANCE_SCENARIO set to "tools_call" or "sse-retry" it behaves
 * as with --call-all (the conformance harness appends the server's URL as the last argument).
 * Exit status 0 when every step succeeded, 1 otherwise, 2 on a bad command line. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "kx/config.h"
#include "kx/curlm.h"
#include "kx/log.h"
#include "kx/loop.h"
#include "kx/time.h"
#include "mcp_config.h"
#include "session.h"

typedef struct client {
    kx_loop *loop;
    mcp_session *s;
    int64_t timeout_ms;
    const char *call;
    const char *args;
    bool call_all;
    json_t *tools;
    size_t next;
    int failures;
} client;

static void next_call(client *c);

static void stop_done(void *arg)
{
    client *c = arg;
    kx_loop_stop(c->loop);
}

static void finish(client *c)
{
    mcp_session_shutdown(c->s, "done", stop_done, c);
}

/* Arguments for a tool from its inputSchema's properties. */
static json_t *make_args(const json_t *schema)
{
    json_t *args = json_object();
    const char *key;
    json_t *prop;
    json_object_foreach(json_object_get(schema, "properties"), key, prop)
    {
        const char *type = json_string_value(json_object_get(prop, "type"));
        if (type == NULL)
            continue;
        if (!strcmp(type, "number") || !strcmp(type, "integer"))
            json_object_set_new(args, key, json_integer(1));
        else if (!strcmp(type, "string"))
            json_object_set_new(args, key, json_string("test"));
        else if (!strcmp(type, "boolean"))
            json_object_set_new(args, key, json_true());
    }
    return args;
}

static void on_called(const json_t *result, const char *code, const char *message, void *arg)
{
    client *c = arg;
    json_t *line = result ? json_pack("{s:O}", "result", result)
                          : json_pack("{s:{s:s, s:s}}", "error", "code", code, "message", message);
    char *s = line ? json_dumps(line, JSON_COMPACT) : NULL;
    printf("%s\n", s ? s : "{}");
    fflush(stdout);
    free(s);
    json_decref(line);
    if (result == NULL || json_is_true(json_object_get(result, "isError")))
        c->failures++;
    next_call(c);
}

static void next_call(client *c)
{
    if (c->call != NULL) {
        const char *tool = c->call;
        c->call = NULL;
        json_t *args = json_loads(c->args ? c->args : "{}", 0, NULL);
        mcp_session_call(c->s, tool, args, kx_deadline_in(c->timeout_ms), NULL, on_called, c);
        return;
    }
    if (c->call_all && c->next < json_array_size(c->tools)) {
        const json_t *t = json_array_get(c->tools, c->next++);
        const char *name = json_string_value(json_object_get(t, "name"));
        mcp_session_call(c->s, name ? name : "", make_args(json_object_get(t, "inputSchema")),
                         kx_deadline_in(c->timeout_ms), NULL, on_called, c);
        return;
    }
    finish(c);
}

static void on_listed(const mcp_tools_result *r, const char *code, const char *message, void *arg)
{
    client *c = arg;
    json_t *line;
    if (r != NULL) {
        c->tools = json_deep_copy(r->tools);
        line = json_pack("{s:s, s:s, s:O}", "server_name", r->server_name, "protocol_version",
                         r->protocol_version, "tools", r->tools);
    } else {
        c->failures++;
        line = json_pack("{s:{s:s, s:s}}", "error", "code", code, "message", message);
    }
    char *s = line ? json_dumps(line, JSON_COMPACT) : NULL;
    printf("%s\n", s ? s : "{}");
    fflush(stdout);
    free(s);
    json_decref(line);
    if (r == NULL) {
        finish(c);
        return;
    }
    next_call(c);
}

static void start(kx_loop *loop, void *arg)
{
    client *c = arg;
    mcp_session_list_tools(c->s, kx_deadline_in(c->timeout_ms), on_listed, c);
}

static void usage(void)
{
    fprintf(stderr,
            "usage: kx-mcp-client [--timeout-ms N] [--call TOOL [--args JSON]] "
            "[--call-all] (URL | --sse URL | --stdio CMD ARG...)\n");
}

int main(int argc, char **argv)
{
    kx_log_init("kx-mcp-client", "kx-mcp-client");
    client c = {.timeout_ms = 30000};
    mcp_server_config cfg = {.name = "server", .kind = MCP_T_HTTP};
    char *empty[] = {NULL};
    int i = 1;
    for (; i < argc; i++) {
        if (!strcmp(argv[i], "--timeout-ms") && i + 1 < argc) {
            if (kx_parse_int("--timeout-ms", argv[++i], 1, INT64_MAX / 2, &c.timeout_ms) != KX_OK)
                return 2;
        } else if (!strcmp(argv[i], "--call") && i + 1 < argc) {
            c.call = argv[++i];
        } else if (!strcmp(argv[i], "--args") && i + 1 < argc) {
            c.args = argv[++i];
        } else if (!strcmp(argv[i], "--call-all")) {
            c.call_all = true;
        } else if (!strcmp(argv[i], "--sse") && i + 1 < argc) {
            cfg.kind = MCP_T_SSE;
            cfg.url = argv[++i];
        } else if (!strcmp(argv[i], "--stdio") && i + 1 < argc) {
            cfg.kind = MCP_T_STDIO;
            cfg.argv = &argv[i + 1];
            cfg.env = empty;
            break;
        } else if (argv[i][0] != '-') {
            cfg.url = argv[i]; /* the last one wins: the conformance harness appends its URL */
        } else {
            usage();
            return 2;
        }
    }
    if (cfg.kind != MCP_T_STDIO && cfg.url == NULL) {
        usage();
        return 2;
    }
    const char *scenario = getenv("MCP_CONFORMANCE_SCENARIO");
    if (scenario && (!strcmp(scenario, "tools_call") || !strcmp(scenario, "sse-retry")))
        c.call_all = true;
    if (c.timeout_ms <= 0)
        c.timeout_ms = 30000;
    if (mcp_server_hash(&cfg) != 0)
        return 1;
    kx_curlm *curlm = NULL;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    c.loop = kx_loop_new();
    if (c.loop == NULL || kx_curlm_new(c.loop, &curlm) != KX_OK)
        return 1;
    mcp_session_hooks hooks = {.curlm = curlm};
    c.s = mcp_session_new(c.loop, &cfg, c.timeout_ms, &hooks);
    if (c.s == NULL)
        return 1;
    kx_loop_post(c.loop, start, &c);
    kx_loop_run(c.loop);
    mcp_session_free(c.s);
    kx_curlm_free(curlm);
    kx_loop_free(c.loop);
    json_decref(c.tools);
    curl_global_cleanup();
    return c.failures == 0 ? 0 : 1;
}
