/* tool_cache.c — the shared tool-list cache in a JetStream KV bucket (see tool_cache.h). */
#include "tool_cache.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kx/config.h"
#include "kx/log.h"

#define CREATE_RETRY_MS 5000
#define API_TIMEOUT_MS 5000

static void create_bucket(mcp_tool_cache *c);

static void on_retry(kx_loop *loop, void *arg)
{
    (void)loop;
    mcp_tool_cache *c = arg;
    c->retry = NULL;
    create_bucket(c);
}

static void retry_later(mcp_tool_cache *c)
{
    if (c->retry == NULL)
        c->retry = kx_loop_timer(c->loop, CREATE_RETRY_MS, on_retry, c);
}

static void on_created(kx_err err, natsMsg *reply, void *arg)
{
    mcp_tool_cache *c = arg;
    c->creating = false;
    if (err != KX_OK) {
        kx_warn("mcp-proxy: cannot create the tool cache bucket %s (%s); retrying in %d s",
                c->bucket, kx_err_str(err), CREATE_RETRY_MS / 1000);
        retry_later(c);
        return;
    }
    json_t *j = json_loadb(natsMsg_GetData(reply), (size_t)natsMsg_GetDataLength(reply), 0, NULL);
    const json_t *e = json_object_get(j, "error");
    /* 10058: the stream exists (made by another replica, maybe with other settings). */
    if (e == NULL || json_integer_value(json_object_get(e, "err_code")) == 10058) {
        c->ready = true;
        kx_info("mcp-proxy: tool cache: JetStream KV bucket %s (TTL %lld s)", c->bucket,
                (long long)c->ttl_s);
    } else {
        kx_warn("mcp-proxy: creating the tool cache bucket %s failed: %s; retrying in %d s",
                c->bucket, json_string_value(json_object_get(e, "description")),
                CREATE_RETRY_MS / 1000);
        retry_later(c);
    }
    json_decref(j);
    natsMsg_Destroy(reply);
}

static void create_bucket(mcp_tool_cache *c)
{
    if (c->ready || c->creating || c->ab == NULL)
        return;
    char subject[160], cfg[700];
    snprintf(subject, sizeof subject, "$JS.API.STREAM.CREATE.KV_%s", c->bucket);
    int n = snprintf(cfg, sizeof cfg,
                     "{\"name\":\"KV_%s\",\"subjects\":[\"$KV.%s.>\"],\"retention\":\"limits\","
                     "\"max_msgs_per_subject\":1,\"max_age\":%lld,\"storage\":\"file\","
                     "\"num_replicas\":1,\"discard\":\"new\",\"allow_rollup_hdrs\":true,"
                     "\"deny_delete\":true,\"allow_direct\":true,\"max_msgs\":-1,"
                     "\"max_bytes\":-1,\"max_msg_size\":-1}",
                     c->bucket, c->bucket, (long long)c->ttl_s * 1000000000LL);
    kx_bus_meta meta;
    kx_bus_meta_init(&meta, kx_deadline_in(API_TIMEOUT_MS), NULL);
    c->creating = true;
    if (kx_bus_async_request(c->ab, subject, cfg, (size_t)n, &meta, on_created, c, NULL) !=
        KX_OK) {
        c->creating = false;
        retry_later(c);
    }
}

void mcp_tool_cache_init(mcp_tool_cache *c, kx_bus *bus, kx_loop *loop)
{
    memset(c, 0, sizeof *c);
    c->bus = bus;
    c->loop = loop;
    snprintf(c->bucket, sizeof c->bucket, "%s", kx_env_str("KX_MCP_CACHE_BUCKET", "KX_MCP_TOOLS"));
    c->ttl_s = 3600;
    if (kx_env_int("KX_MCP_CACHE_TTL_S", 3600, 1, 7 * 86400, &c->ttl_s) != KX_OK)
        c->ttl_s = 3600;
    if (kx_bus_async_new(bus, loop, &c->ab) != KX_OK) {
        kx_warn("mcp-proxy: tool cache disabled (cannot make async requests)");
        return;
    }
    /* On the loop once it runs (async requests are loop-thread only). */
    c->retry = kx_loop_timer(loop, 0, on_retry, c);
}

typedef struct get_req {
    mcp_tool_cache *c;
    mcp_cache_get_cb cb;
    void *arg;
} get_req;

static void on_get(kx_err err, natsMsg *reply, void *arg)
{
    get_req *g = arg;
    json_t *value = NULL;
    if (err == KX_OK && natsMsg_GetDataLength(reply) > 0) {
        const char *op = NULL;
        const char *status = NULL;
        natsMsgHeader_Get(reply, "KV-Operation", &op);
        natsMsgHeader_Get(reply, "Status", &status);
        if (op == NULL && status == NULL)
            value =
                json_loadb(natsMsg_GetData(reply), (size_t)natsMsg_GetDataLength(reply), 0, NULL);
    }
    natsMsg_Destroy(reply);
    if (!json_is_object(value) || !json_is_array(json_object_get(value, "tools"))) {
        json_decref(value);
        value = NULL;
    }
    if (value)
        g->c->hits++;
    else
        g->c->misses++;
    g->cb(value, g->arg);
    free(g);
}

void mcp_tool_cache_get(mcp_tool_cache *c, const char *key, kx_deadline deadline,
                        mcp_cache_get_cb cb, void *arg)
{
    get_req *g = c->ready ? calloc(1, sizeof *g) : NULL;
    if (g == NULL) {
        c->misses++;
        cb(NULL, arg);
        return;
    }
    g->c = c;
    g->cb = cb;
    g->arg = arg;
    char subject[256];
    snprintf(subject, sizeof subject, "$JS.API.DIRECT.GET.KV_%s.$KV.%s.%s", c->bucket, c->bucket,
             key);
    kx_bus_meta meta;
    /* A cache read may take a small part of the caller's time, never all of it. */
    kx_bus_meta_init(&meta, kx_deadline_min(deadline, kx_deadline_in(1000)), NULL);
    if (kx_bus_async_request(c->ab, subject, NULL, 0, &meta, on_get, g, NULL) != KX_OK) {
        free(g);
        c->misses++;
        cb(NULL, arg);
    }
}

static void publish(mcp_tool_cache *c, const char *key, const char *data, size_t len, bool del)
{
    if (!c->ready)
        return;
    char subject[256];
    snprintf(subject, sizeof subject, "$KV.%s.%s", c->bucket, key);
    natsMsg *m = NULL;
    if (natsMsg_Create(&m, subject, NULL, data, (int)len) != NATS_OK)
        return;
    if (del)
        natsMsgHeader_Set(m, "KV-Operation", "DEL");
    natsStatus s = natsConnection_PublishMsg(kx_bus_conn(c->bus), m);
    if (s != NATS_OK)
        kx_debug("mcp-proxy: tool cache publish to %s failed: %s", subject, natsStatus_GetText(s));
    natsMsg_Destroy(m);
}

void mcp_tool_cache_put(mcp_tool_cache *c, const char *key, const json_t *value)
{
    char *s = json_dumps(value, JSON_COMPACT);
    if (s != NULL && strlen(s) <= MCP_CACHE_MAX_VALUE)
        publish(c, key, s, strlen(s), false);
    free(s);
}

void mcp_tool_cache_invalidate(mcp_tool_cache *c, const char *key)
{
    publish(c, key, NULL, 0, true);
}

void mcp_tool_cache_free(mcp_tool_cache *c)
{
    if (c->retry)
        kx_timer_cancel(c->retry);
    c->retry = NULL;
    kx_bus_async_free(c->ab);
    c->ab = NULL;
}
