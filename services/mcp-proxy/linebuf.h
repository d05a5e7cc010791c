/* linebuf.h — splitting a byte stream into lines, with a cap on the length of a line.
 *
 * The stdio transport reads the MCP server's stdout (newline-delimited JSON-RPC messages) and
 * its stderr (log lines) in whatever pieces the pipe gives; a linebuf collects the pieces and
 * calls back once per complete line, without the "\n" (and without a "\r" before it). A line
 * longer than max is either an error (stdout: a peer that does that is broken) or, with
 * cut_long, delivered in pieces of max bytes (stderr: we only log it).
 *
 * Pure (no I/O), so fuzzers can drive it. Ownership: the linebuf owns its buffer
 * (mcp_linebuf_free); the line handed to the callback is borrowed and NUL-terminated. */
#ifndef KX_MCP_LINEBUF_H
#define KX_MCP_LINEBUF_H

#include <stdbool.h>
#include <stddef.h>

#include "kx/buf.h"
#include "kx/err.h"

typedef void (*mcp_line_cb)(const char *line, size_t len, void *arg);

typedef struct mcp_linebuf {
    kx_buf line;   /* the line being assembled (no limit of its own: max is checked here) */
    size_t max;    /* longest line accepted, in bytes */
    bool cut_long; /* deliver over-long lines in pieces instead of failing */
} mcp_linebuf;

void mcp_linebuf_init(mcp_linebuf *lb, size_t max, bool cut_long);
/* Feeds len bytes; cb runs for every line they complete. KX_ERR_PROTOCOL when a line exceeds
 * max (without cut_long; the buffered part is dropped), KX_ERR_NOMEM (the buffered part is
 * dropped too, so the next feed starts a fresh line). */
kx_err mcp_linebuf_feed(mcp_linebuf *lb, const char *data, size_t len, mcp_line_cb cb, void *arg);
/* At end of stream: delivers an unterminated last line, if any. */
void mcp_linebuf_flush(mcp_linebuf *lb, mcp_line_cb cb, void *arg);
void mcp_linebuf_free(mcp_linebuf *lb);

#endif
