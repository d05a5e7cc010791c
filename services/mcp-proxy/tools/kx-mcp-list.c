/* kx-mcp-list.c — a tiny kx.mcp.list requester, for operators and tests: asks the mcp-proxy for
 * the tools of one configured MCP server and prints the reply as JSON lines.
 *
 *   kx-mcp-list [--nats URL] [--timeout-ms N] [--repeat N] SERVER
 *
 * Prints one JSON object per request: {"server", "server_name", "protocol_version", "ms",
 * "tools": [names], "error": {code, message} | null}. Exit status 0 when every reply had no
 * error, 1 otherwise, 2 on a bad command line. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "kx/bus.h"
#include "kx/config.h"
#include "kx/log.h"
#include "kx/pb.h"
#include "kx/time.h"

static void usage(void)
{
    fprintf(stderr, "usage: kx-mcp-list [--nats URL] [--timeout-ms N] [--repeat N] SERVER\n");
}

/* One request; prints its line. Returns true when the reply carried no error. */
static bool list_once(kx_bus *bus, const char *server, int64_t timeout_ms)
{
    Kx__V1__McpListToolsRequest req = KX__V1__MCP_LIST_TOOLS_REQUEST__INIT;
    req.server = (char *)server;
    kx_bus_meta meta;
    kx_bus_meta_init(&meta, kx_deadline_in(timeout_ms), NULL);
    natsMsg *reply = NULL;
    int64_t t0 = kx_mono_us();
    kx_err err = kx_bus_request_pb(bus, KX_SUBJ_MCP_LIST, &req.base, &meta, &reply);
    double ms = (double)(kx_mono_us() - t0) / 1000.0;
    json_t *out = json_pack("{s:s, s:f}", "server", server, "ms", ms);
    bool ok = false;
    if (err != KX_OK) {
        json_object_set_new(out, "error",
                            json_pack("{s:s, s:s}", "code", kx_err_code(err), "message",
                                      "the request itself failed"));
    } else {
        Kx__V1__McpListToolsReply *r =
            kx_pb_unpack(&kx__v1__mcp_list_tools_reply__descriptor, natsMsg_GetData(reply),
                         (size_t)natsMsg_GetDataLength(reply));
        if (r == NULL) {
            json_object_set_new(out, "error",
                                json_pack("{s:s, s:s}", "code", "internal", "message",
                                          "undecodable reply"));
        } else {
            json_t *names = json_array();
            for (size_t i = 0; i < r->n_tools; i++)
                json_array_append_new(names, json_string(r->tools[i]->name));
            json_object_set_new(out, "server_name", json_string(r->server_name));
            json_object_set_new(out, "protocol_version", json_string(r->protocol_version));
            json_object_set_new(out, "tools", names);
            if (r->n_tools > 0)
                json_object_set_new(out, "first_input_schema",
                                    json_string(r->tools[0]->input_schema_json));
            if (r->error != NULL)
                json_object_set_new(out, "error",
                                    json_pack("{s:s, s:s}", "code", r->error->code, "message",
                                              r->error->message));
            else
                ok = true;
            kx_pb_free(r);
        }
        natsMsg_Destroy(reply);
    }
    char *text = json_dumps(out, JSON_COMPACT | JSON_PRESERVE_ORDER);
    printf("%s\n", text ? text : "{}");
    fflush(stdout);
    free(text);
    json_decref(out);
    return ok;
}

int main(int argc, char **argv)
{
    const char *url = getenv("KX_NATS_URL") ? getenv("KX_NATS_URL") : KX_DEFAULT_NATS_URL;
    int64_t timeout_ms = 35000;
    int repeat = 1;
    const char *server = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--nats") == 0 && i + 1 < argc)
            url = argv[++i];
        else if (strcmp(argv[i], "--timeout-ms") == 0 && i + 1 < argc) {
            if (kx_parse_int("--timeout-ms", argv[++i], 1, INT64_MAX / 2, &timeout_ms) != KX_OK)
                return 2;
        } else if (strcmp(argv[i], "--repeat") == 0 && i + 1 < argc) {
            int64_t n;
            if (kx_parse_int("--repeat", argv[++i], 1, INT_MAX, &n) != KX_OK)
                return 2;
            repeat = (int)n;
        } else if (argv[i][0] != '-' && server == NULL)
            server = argv[i];
        else {
            usage();
            return 2;
        }
    }
    if (server == NULL || timeout_ms <= 0 || repeat <= 0) {
        usage();
        return 2;
    }
    kx_log_init("kx-mcp-list", "cli");
    kx_bus *bus = NULL;
    if (kx_bus_connect(url, "kx-mcp-list", &bus) != KX_OK)
        return 1;
    for (int i = 0; i < 100 && !kx_bus_connected(bus); i++) /* up to 5 s */
        usleep(50000);
    bool all_ok = true;
    for (int i = 0; i < repeat; i++)
        all_ok = list_once(bus, server, timeout_ms) && all_ok;
    kx_bus_close(bus, 1000);
    return all_ok ? 0 : 1;
}
