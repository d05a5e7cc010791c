/* result_map.h — a tools/call result mapped for the agent (McpCallReply / ToolResult), within a
 * byte budget so that the reply fits NATS's max_payload.
 *
 * text joins one line per content item, as Kortix joined the .text parts with "\n":
 *   text           its text
 *   image / audio  "[image: image/png, 1234 bytes base64]" (the data stays in content_json)
 *   resource       "[resource <uri>]\n<its text>" or "[resource <uri> (<mime>): N bytes base64]"
 *   resource_link  "[resource link: <uri> <name>]"
 *   other          "[<type> content]"
 * With no content but structuredContent, text is that JSON. isError becomes is_error.
 *
 * Budget: text gets at most half of max_bytes, counted as a JSON string (escapes included: it
 * travels as output_json), content_json and structured_json a quarter each;
 * past that, text is cut at a UTF-8 boundary and ends with
 * "\n[truncated by mcp-proxy: N of M bytes shown]", base64 data in content_json is replaced by
 * "[omitted: N bytes]", and what still does not fit is dropped; truncated says so.
 *
 * Pure. Ownership: the strings are malloc'd, freed by mcp_mapped_free. */
#ifndef KX_MCP_RESULT_MAP_H
#define KX_MCP_RESULT_MAP_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct mcp_mapped {
    char *text;
    char *content_json;    /* "[]" when there is none */
    char *structured_json; /* NULL when absent (or dropped) */
    bool is_error;
    bool truncated;
} mcp_mapped;

/* 0, or -1 (OOM / result not an object: text then says why). */
int mcp_result_map(const json_t *result, size_t max_bytes, mcp_mapped *out);
void mcp_mapped_free(mcp_mapped *m);

#endif
