/* tool_cache.h — MCP servers' tool lists in a NATS JetStream KeyValue bucket, shared by every
 * mcp-proxy replica.
 *
 * Bucket KX_MCP_CACHE_BUCKET (default "KX_MCP_TOOLS"; its stream is KV_<bucket>, subjects
 * $KV.<bucket>.>, one value per key, max age KX_MCP_CACHE_TTL_S = 3600 s, direct get allowed),
 * created at start by whichever replica comes first (a replica finding it already there uses
 * it). Key: the server config's hash (mcp_server_config.hash), so a changed config is a new
 * key. Value: {"server_name", "protocol_version", "tools": [...]} as JSON, only when it fits
 * in MCP_CACHE_MAX_VALUE bytes. A list_changed notification deletes the key (a KV-Operation:
 * DEL marker).
 *
 * Nothing blocks the loop: the bucket is created with an asynchronous JetStream API request
 * (retried every 5 s while JetStream is unreachable), reads are asynchronous direct gets,
 * writes and deletes are plain publishes the stream stores. Any failure is a cache miss: the
 * cache can make a list faster, never make it fail.
 *
 * Loop thread only. Ownership: the struct is embedded in the proxy; values handed to get's
 * callback belong to the callback. */
#ifndef KX_MCP_TOOL_CACHE_H
#define KX_MCP_TOOL_CACHE_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "kx/bus.h"
#include "kx/loop.h"

#define MCP_CACHE_MAX_VALUE (768u * 1024)

typedef struct mcp_tool_cache {
    kx_bus *bus;
    kx_loop *loop;
    kx_bus_async *ab;
    char bucket[64];
    int64_t ttl_s;
    bool ready; /* the bucket exists */
    bool creating;
    kx_timer *retry;
    int64_t hits, misses; /* for logs and tests */
} mcp_tool_cache;

typedef void (*mcp_cache_get_cb)(json_t *value, void *arg); /* NULL = miss */

void mcp_tool_cache_init(mcp_tool_cache *c, kx_bus *bus, kx_loop *loop);
/* Looks key up; cb runs later on the loop (or now on an immediate miss). */
void mcp_tool_cache_get(mcp_tool_cache *c, const char *key, kx_deadline deadline,
                        mcp_cache_get_cb cb, void *arg);
void mcp_tool_cache_put(mcp_tool_cache *c, const char *key, const json_t *value);
void mcp_tool_cache_invalidate(mcp_tool_cache *c, const char *key);
void mcp_tool_cache_free(mcp_tool_cache *c);

#endif
