/* proxy.h — the mcp-proxy service's state and its parts: configuration, the session pool and
 * the drain (proxy.c), the responders kx.mcp.list (list_tools.c), kx.mcp.call and
 * kx.mcp.cancel (call.c), kx.mcp.agent_tools (agent_tools.c), and the shared tool-list cache
 * (tool_cache.c).
 *
 * Sessions: one per operator server (KX_MCP_SERVERS, by name) and one per account and distinct
 * agent server config (by mcp_server_config.hash), created at first use, reused by every run of
 * that account — never by another account's: a server keeps state (a memory server's graph,
 * files in its /tmp) that is its account's; a session
 * unused for KX_MCP_IDLE_S has its server stopped (the next use starts it again), and a pooled
 * agent session unused for twice that is freed.
 *
 * One mcp_proxy per process, owned by main() and touched only on the loop thread. */
#ifndef KX_MCP_PROXY_H
#define KX_MCP_PROXY_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "agent_config.h"
#include "kx/bus.h"
#include "kx/curlm.h"
#include "kx/svc.h"
#include "mcp_config.h"
#include "session.h"
#include "tool_cache.h"
#include "user_stdio.h"

#define MCP_QUEUE_GROUP "mcp-proxy"
#define MCP_OPEN_TIMEOUT_MS 15000 /* an agent server's first list: 15 s, as Kortix */
#define MCP_REPLY_SLACK 16384     /* bytes of a reply kept for everything but the payload */
#define MCP_REPLY_MARGIN_MS 100   /* we answer this long before the caller's deadline */

typedef struct mcp_pooled {
    struct mcp_pooled *next;
    mcp_session *s;
    char *account; /* the account whose runs use it ("" when the request named none) */
} mcp_pooled;

typedef struct mcp_call mcp_call; /* call.c */

typedef struct mcp_proxy {
    kx_svc *svc;
    mcp_config config;      /* KX_MCP_SERVERS */
    int64_t timeout_ms;     /* KX_MCP_TIMEOUT_S: longest MCP operation */
    int64_t idle_ms;        /* KX_MCP_IDLE_S */
    kx_curlm *curlm;        /* HTTP transports */
    mcp_session **sessions; /* one per configured server, in config order */
    mcp_pooled *pool;       /* agent servers, by account and config hash */
    size_t pool_n;
    int64_t max_user_servers; /* KX_MCP_JAIL_MAX_SERVERS: an account's stdio servers running */
    mcp_call *calls;          /* calls in flight (call.c), for kx.mcp.cancel */
    mcp_tool_cache cache;
    mcp_jail_config jail; /* agents' stdio servers (user_stdio.h) */
    natsSubscription *list_sub, *call_sub, *cancel_sub, *agent_sub;
    kx_timer *idle_timer;
    size_t stopping; /* sessions still stopping during the drain */
    bool draining;
    atomic_bool serving; /* the kx.mcp.* subscriptions are in place (readiness) */
} mcp_proxy;

/* Reads KX_MCP_SERVERS, KX_MCP_TIMEOUT_S, KX_MCP_IDLE_S and the jail's settings (probing
 * bubblewrap); creates a (not yet started) session
 * per operator server. KX_ERR_INVALID with the problem logged when the configuration is bad. */
kx_err mcp_proxy_init(mcp_proxy *p, kx_svc *svc);
/* The session of the operator server called name, or NULL. */
mcp_session *mcp_proxy_session(mcp_proxy *p, const char *name);
/* The pooled session of account (NULL: "") for an agent's server config (created on first
 * use); NULL on OOM. */
mcp_session *mcp_proxy_pooled(mcp_proxy *p, const mcp_server_config *cfg, const char *account);
/* Subscribes the responders on the loop and flushes, so that the server knows them before the
 * proxy reports ready (kx_svc_on_ready: mcp_proxy_ready). */
kx_err mcp_proxy_serve(mcp_proxy *p);
/* kx_svc readiness: false until mcp_proxy_serve has subscribed (health is answered from
 * kx_svc_init on, before that). Thread-safe. */
bool mcp_proxy_ready(kx_svc *svc, void *arg, char *why, size_t whylen);
/* kx_svc drain callback: stop taking requests, end open ones, stop the servers, then exit. */
void mcp_proxy_drain(kx_svc *svc, void *arg);
void mcp_proxy_free(mcp_proxy *p);
/* The deadline we work to: MCP_REPLY_MARGIN_MS before the caller's (so that our answer
 * arrives while the caller still waits), and at most KX_MCP_TIMEOUT_S from now. */
kx_deadline mcp_proxy_deadline(const mcp_proxy *p, kx_deadline caller);
/* Largest reply payload we send: NATS max_payload minus MCP_REPLY_SLACK. */
size_t mcp_proxy_reply_budget(mcp_proxy *p);

/* Responders (loop thread). */
void mcp_list_on_request(natsMsg *msg, void *arg);        /* list_tools.c */
void mcp_call_on_request(natsMsg *msg, void *arg);        /* call.c */
void mcp_cancel_on_request(natsMsg *msg, void *arg);      /* call.c */
void mcp_agent_tools_on_request(natsMsg *msg, void *arg); /* agent_tools.c */

#endif
