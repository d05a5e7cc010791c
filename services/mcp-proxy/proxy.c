/* proxy.c — the mcp-proxy's configuration, its session pool, and its drain (see proxy.h). */
#include "proxy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kx/config.h"
#include "kx/log.h"

static void on_list_changed(mcp_session *s, void *arg)
{
    mcp_proxy *p = arg;
    mcp_tool_cache_invalidate(&p->cache, mcp_session_config(s)->hash);
}

static void on_idle_sweep(kx_loop *loop, void *arg);

kx_err mcp_proxy_init(mcp_proxy *p, kx_svc *svc)
{
    memset(p, 0, sizeof *p);
    p->svc = svc;
    int64_t timeout_s = 30, idle_s = 600;
    if (kx_env_int("KX_MCP_TIMEOUT_S", 30, 1, 3600, &timeout_s) != KX_OK ||
        kx_env_int("KX_MCP_IDLE_S", 600, 1, 86400, &idle_s) != KX_OK ||
        kx_env_int("KX_MCP_JAIL_MAX_SERVERS", 16, 1, 10000, &p->max_user_servers) != KX_OK)
        return KX_ERR_INVALID;
    p->timeout_ms = timeout_s * 1000;
    p->idle_ms = idle_s * 1000;

    char why[512];
    if (mcp_config_parse(kx_env_str("KX_MCP_SERVERS", "{}"), &p->config, why, sizeof why) != 0) {
        kx_error("config: %s", why);
        return KX_ERR_INVALID;
    }
    if (mcp_jail_config_load(&p->jail) != KX_OK)
        return KX_ERR_INVALID;
    if (kx_curlm_new(svc->loop, &p->curlm) != KX_OK)
        return KX_ERR_NOMEM;
    p->sessions = calloc(p->config.n + 1, sizeof *p->sessions);
    if (p->sessions == NULL)
        return KX_ERR_NOMEM;
    mcp_session_hooks hooks = {.curlm = p->curlm,
                               .on_list_changed = on_list_changed,
                               .arg = p,
                               .jail = &p->jail};
    for (size_t i = 0; i < p->config.n; i++) {
        p->sessions[i] = mcp_session_new(svc->loop, &p->config.servers[i], p->timeout_ms, &hooks);
        if (p->sessions[i] == NULL)
            return KX_ERR_NOMEM;
    }
    mcp_tool_cache_init(&p->cache, svc->bus, svc->loop);
    char names[512];
    mcp_config_names(&p->config, names, sizeof names);
    kx_info("mcp-proxy: %zu MCP server(s) configured: %s; operations time out after %lld s; "
            "idle servers stop after %lld s",
            p->config.n, names, (long long)timeout_s, (long long)idle_s);
    int64_t sweep = p->idle_ms / 4 < 1000 ? 1000 : p->idle_ms / 4;
    p->idle_timer = kx_loop_timer(svc->loop, sweep, on_idle_sweep, p);
    return KX_OK;
}

mcp_session *mcp_proxy_session(mcp_proxy *p, const char *name)
{
    for (size_t i = 0; i < p->config.n; i++)
        if (strcmp(p->config.servers[i].name, name) == 0)
            return p->sessions[i];
    return NULL;
}

/* An agent's stdio server may start while its account runs fewer than max_user_servers: each
 * is a jail of its own (up to KX_MCP_JAIL_MAX_MEMORY_MB, _MAX_PROCS), and a config may list 256
 * servers (an env value changed makes each one new). One still stopping counts. A request
 * without an account is not limited (an operator's kx.mcp.agent_tools by hand; the runner's
 * kx.tool.schemas names the run's account): one bound for all of them would refuse every
 * account's servers past the 16th. */
static bool may_start(mcp_session *s, void *arg, char *why, size_t whylen)
{
    mcp_proxy *p = arg;
    const char *account = NULL;
    for (mcp_pooled *e = p->pool; e && account == NULL; e = e->next)
        if (e->s == s)
            account = e->account;
    if (account == NULL || account[0] == '\0')
        return true; /* not pooled (not an agent's), or no account to count against */
    int64_t running = 0;
    for (mcp_pooled *e = p->pool; e; e = e->next) {
        const mcp_server_config *c = mcp_session_config(e->s);
        if (e->s != s && c->kind == MCP_T_STDIO && c->user && !mcp_session_stopped(e->s) &&
            strcmp(e->account, account) == 0)
            running++;
    }
    if (running < p->max_user_servers)
        return true;
    snprintf(why, whylen,
             "MCP server '%s' was not started: its account runs %lld stdio MCP servers, at most "
             "%lld at a time (KX_MCP_JAIL_MAX_SERVERS); one unused for %lld s stops",
             mcp_session_name(s), (long long)running, (long long)p->max_user_servers,
             (long long)(p->idle_ms / 1000));
    return false;
}

mcp_session *mcp_proxy_pooled(mcp_proxy *p, const mcp_server_config *cfg, const char *account)
{
    if (account == NULL)
        account = "";
    for (mcp_pooled *e = p->pool; e; e = e->next)
        if (strcmp(mcp_session_config(e->s)->hash, cfg->hash) == 0 &&
            strcmp(mcp_session_name(e->s), cfg->name) == 0 && strcmp(e->account, account) == 0)
            return e->s;
    mcp_pooled *e = calloc(1, sizeof *e);
    if (e != NULL && (e->account = strdup(account)) == NULL) {
        free(e);
        e = NULL;
    }
    mcp_session_hooks hooks = {.curlm = p->curlm,
                               .on_list_changed = on_list_changed,
                               .arg = p,
                               .jail = &p->jail,
                               .may_start = may_start,
                               .account = e != NULL ? e->account : NULL};
    if (e == NULL || (e->s = mcp_session_new(p->svc->loop, cfg, p->timeout_ms, &hooks)) == NULL) {
        if (e != NULL)
            free(e->account);
        free(e);
        return NULL;
    }
    e->next = p->pool;
    p->pool = e;
    p->pool_n++;
    kx_debug("mcp-proxy: pooled a session for '%s' (%s, config %s); %zu pooled", cfg->name,
             mcp_transport_name(cfg->kind), cfg->hash, p->pool_n);
    return e->s;
}

kx_deadline mcp_proxy_deadline(const mcp_proxy *p, kx_deadline caller)
{
    return kx_deadline_min(caller - MCP_REPLY_MARGIN_MS, kx_deadline_in(p->timeout_ms));
}

size_t mcp_proxy_reply_budget(mcp_proxy *p)
{
    int64_t max = natsConnection_GetMaxPayload(kx_bus_conn(p->svc->bus));
    if (max <= 0)
        max = 1024 * 1024; /* not connected yet: NATS's default */
    return max > 2 * MCP_REPLY_SLACK ? (size_t)max - MCP_REPLY_SLACK : (size_t)max / 2;
}

static void on_idle_sweep(kx_loop *loop, void *arg)
{
    mcp_proxy *p = arg;
    p->idle_timer = NULL;
    if (p->draining)
        return;
    int64_t now = kx_mono_ms();
    for (size_t i = 0; i < p->config.n; i++)
        if (mcp_session_idle(p->sessions[i]) &&
            now - mcp_session_last_used(p->sessions[i]) >= p->idle_ms)
            mcp_session_rest(p->sessions[i]);
    for (mcp_pooled **pe = &p->pool; *pe;) {
        mcp_pooled *e = *pe;
        int64_t unused = now - mcp_session_last_used(e->s);
        if (mcp_session_idle(e->s) && unused >= 2 * p->idle_ms && mcp_session_stopped(e->s)) {
            *pe = e->next;
            kx_debug("mcp-proxy: freed the idle session for '%s'", mcp_session_name(e->s));
            mcp_session_free(e->s);
            free(e->account);
            free(e);
            p->pool_n--;
            continue;
        }
        if (mcp_session_idle(e->s) && unused >= p->idle_ms)
            mcp_session_rest(e->s);
        pe = &e->next;
    }
    int64_t sweep = p->idle_ms / 4 < 1000 ? 1000 : p->idle_ms / 4;
    p->idle_timer = kx_loop_timer(loop, sweep, on_idle_sweep, p);
}

kx_err mcp_proxy_serve(mcp_proxy *p)
{
    kx_bus *bus = p->svc->bus;
    kx_loop *loop = p->svc->loop;
    kx_err err;
    if ((err = kx_bus_subscribe_loop(bus, loop, KX_SUBJ_MCP_LIST, MCP_QUEUE_GROUP,
                                     mcp_list_on_request, p, &p->list_sub)) != KX_OK ||
        (err = kx_bus_subscribe_loop(bus, loop, KX_SUBJ_MCP_CALL, MCP_QUEUE_GROUP,
                                     mcp_call_on_request, p, &p->call_sub)) != KX_OK ||
        (err = kx_bus_subscribe_loop(bus, loop, KX_SUBJ_MCP_AGENT_TOOLS, MCP_QUEUE_GROUP,
                                     mcp_agent_tools_on_request, p, &p->agent_sub)) != KX_OK ||
        /* No queue group: every replica hears a cancel; the one holding the call answers. */
        (err = kx_bus_subscribe_loop(bus, loop, KX_SUBJ_MCP_CANCEL, NULL, mcp_cancel_on_request, p,
                                     &p->cancel_sub)) != KX_OK)
        return err;
    /* At start, before the loop runs: the server has our subscriptions once this returns
     * (when NATS is not up yet, cnats sends them on connect, before anything else). */
    kx_bus_flush(bus, 2000);
    atomic_store(&p->serving, true);
    return KX_OK;
}

bool mcp_proxy_ready(kx_svc *svc, void *arg, char *why, size_t whylen)
{
    (void)svc;
    mcp_proxy *p = arg;
    if (atomic_load(&p->serving))
        return true;
    snprintf(why, whylen, "not subscribed to kx.mcp.* yet");
    return false;
}

static void on_session_stopped(void *arg)
{
    mcp_proxy *p = arg;
    if (--p->stopping == 0) {
        kx_info("mcp-proxy: every MCP server has stopped; drained");
        kx_svc_exit(p->svc);
    }
}

static void unsubscribe(natsSubscription **sub)
{
    if (*sub != NULL) {
        natsSubscription_Unsubscribe(*sub);
        natsSubscription_Destroy(*sub);
        *sub = NULL;
    }
}

void mcp_proxy_drain(kx_svc *svc, void *arg)
{
    (void)svc;
    mcp_proxy *p = arg;
    p->draining = true;
    atomic_store(&p->serving, false);
    /* Stop taking requests: another replica (or a retry after our restart) will serve them. */
    unsubscribe(&p->list_sub);
    unsubscribe(&p->call_sub);
    unsubscribe(&p->agent_sub);
    unsubscribe(&p->cancel_sub);
    /* Calls in flight are answered "unavailable" by their sessions' shutdown below. */
    p->stopping = p->config.n + p->pool_n + 1; /* + 1: held until every shutdown started */
    for (size_t i = 0; i < p->config.n; i++)
        mcp_session_shutdown(p->sessions[i], "mcp-proxy is shutting down", on_session_stopped, p);
    for (mcp_pooled *e = p->pool; e; e = e->next)
        mcp_session_shutdown(e->s, "mcp-proxy is shutting down", on_session_stopped, p);
    on_session_stopped(p);
}

void mcp_proxy_free(mcp_proxy *p)
{
    natsSubscription **subs[] = {&p->list_sub, &p->call_sub, &p->agent_sub, &p->cancel_sub};
    for (size_t i = 0; i < sizeof subs / sizeof subs[0]; i++)
        if (*subs[i] != NULL) {
            natsSubscription_Destroy(*subs[i]);
            *subs[i] = NULL;
        }
    if (p->idle_timer)
        kx_timer_cancel(p->idle_timer);
    p->idle_timer = NULL;
    /* Freeing a session answers its calls in flight (call.c's records go with them). */
    for (size_t i = 0; p->sessions && i < p->config.n; i++)
        mcp_session_free(p->sessions[i]);
    free(p->sessions);
    p->sessions = NULL;
    while (p->pool) {
        mcp_pooled *e = p->pool;
        p->pool = e->next;
        mcp_session_free(e->s);
        free(e->account);
        free(e);
    }
    mcp_tool_cache_free(&p->cache);
    kx_curlm_free(p->curlm);
    p->curlm = NULL;
    mcp_config_free(&p->config);
    mcp_jail_config_free(&p->jail);
}
