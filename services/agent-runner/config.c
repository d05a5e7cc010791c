/* config.c — reads the agent-runner's environment variables into a runner_config (see
 * config.h for the provider rules and docs/operations.md for the table of variables). */
#include "config.h"
#include "context_budget.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "kx/config.h"
#include "kx/fdlimit.h"
#include "kx/log.h"

#define DEFAULT_OPENAI_URL "https://api.openai.com/v1"
#define DEFAULT_ANTHROPIC_URL "https://api.anthropic.com"
#define DEFAULT_ANTHROPIC_VERSION "2023-06-01"
#define DEFAULT_DEMO_URL "http://127.0.0.1:8089/v1"
#define DEFAULT_DEMO_MODEL "kortix/demo"
#define DEFAULT_OPENAI_MODEL "gpt-4o-mini"
#define DEFAULT_ANTHROPIC_MODEL "claude-sonnet-4-20250514"

/* Copies the variable (or def) into dst; refuses values that do not fit. */
static kx_err copy_env(const char *name, const char *def, char *dst, size_t cap)
{
    const char *v = kx_env_str(name, def);
    if (strlen(v) >= cap) {
        kx_error("config: %s is too long (%zu bytes, at most %zu)", name, strlen(v), cap - 1);
        return KX_ERR_INVALID;
    }
    snprintf(dst, cap, "%s", v);
    return KX_OK;
}

/* A base URL: copied, trailing '/' removed, http:// or https:// required. */
static kx_err copy_url(const char *name, const char *def, char *dst, size_t cap)
{
    kx_err err = copy_env(name, def, dst, cap);
    if (err != KX_OK)
        return err;
    size_t n = strlen(dst);
    while (n > 0 && dst[n - 1] == '/')
        dst[--n] = '\0';
    if (strncmp(dst, "http://", 7) != 0 && strncmp(dst, "https://", 8) != 0) {
        kx_error("config: %s \"%s\" must start with http:// or https://", name, dst);
        return KX_ERR_INVALID;
    }
    return KX_OK;
}

static kx_err load_provider(runner_config *cfg)
{
    cfg->openai_set =
        kx_env_str("OPENAI_API_KEY", NULL) != NULL || kx_env_str("OPENAI_BASE_URL", NULL) != NULL;
    cfg->anthropic_set = kx_env_str("ANTHROPIC_API_KEY", NULL) != NULL ||
        kx_env_str("ANTHROPIC_BASE_URL", NULL) != NULL;
    kx_err err = copy_url("OPENAI_BASE_URL", DEFAULT_OPENAI_URL, cfg->openai_base_url,
                          sizeof cfg->openai_base_url);
    if (err == KX_OK)
        err = copy_env("OPENAI_API_KEY", "", cfg->openai_api_key, sizeof cfg->openai_api_key);
    if (err == KX_OK)
        err = copy_url("ANTHROPIC_BASE_URL", DEFAULT_ANTHROPIC_URL, cfg->anthropic_base_url,
                       sizeof cfg->anthropic_base_url);
    if (err == KX_OK)
        err = copy_env("ANTHROPIC_API_KEY", "", cfg->anthropic_api_key,
                       sizeof cfg->anthropic_api_key);
    if (err == KX_OK)
        err = copy_env("ANTHROPIC_VERSION", DEFAULT_ANTHROPIC_VERSION, cfg->anthropic_version,
                       sizeof cfg->anthropic_version);
    if (err == KX_OK)
        err = copy_url("KX_MODEL_URL", DEFAULT_DEMO_URL, cfg->demo_url, sizeof cfg->demo_url);
    if (err != KX_OK)
        return err;
    const char *def_model = DEFAULT_DEMO_MODEL;
    if (cfg->openai_set) {
        cfg->provider = PROVIDER_OPENAI;
        cfg->provider_name = "openai";
        def_model = DEFAULT_OPENAI_MODEL;
    } else if (kx_env_str("ANTHROPIC_API_KEY", NULL) != NULL) {
        cfg->provider = PROVIDER_ANTHROPIC;
        cfg->provider_name = "anthropic";
        def_model = DEFAULT_ANTHROPIC_MODEL;
    } else {
        cfg->provider = PROVIDER_DEMO;
        cfg->provider_name = "demo";
    }
    err = copy_env("KX_MODEL", def_model, cfg->model, sizeof cfg->model);
    if (err == KX_OK)
        err =
            copy_env("KX_LLM_FALLBACK_MODEL", "", cfg->fallback_model, sizeof cfg->fallback_model);
    return err;
}

static void trim(const char **s, const char **e)
{
    while (*s < *e && isspace((unsigned char)**s))
        (*s)++;
    while (*e > *s && isspace((unsigned char)(*e)[-1]))
        (*e)--;
}

kx_err runner_config_parse_aliases(runner_config *cfg, const char *text, char *why, size_t whylen)
{
    cfg->naliases = 0;
    const char *p = text != NULL ? text : "";
    while (*p != '\0') {
        const char *end = strchr(p, ',');
        if (end == NULL)
            end = p + strlen(p);
        const char *s = p, *e = end;
        trim(&s, &e);
        p = *end == ',' ? end + 1 : end;
        if (s == e)
            continue; /* "a=b,,c=d" or a trailing comma */
        const char *eq = memchr(s, '=', (size_t)(e - s));
        if (eq == NULL) {
            snprintf(why, whylen, "\"%.*s\" is not name=model", (int)(e - s), s);
            return KX_ERR_INVALID;
        }
        const char *ns = s, *ne = eq, *ts = eq + 1, *te = e;
        trim(&ns, &ne);
        trim(&ts, &te);
        runner_model_alias *a = &cfg->aliases[cfg->naliases];
        if (ns == ne || ts == te) {
            snprintf(why, whylen, "\"%.*s\" has an empty name or model", (int)(e - s), s);
            return KX_ERR_INVALID;
        }
        if ((size_t)(ne - ns) >= sizeof a->name || (size_t)(te - ts) >= sizeof a->target) {
            snprintf(why, whylen, "\"%.*s\" is too long (names %zu, models %zu bytes at most)",
                     (int)(e - s > 80 ? 80 : e - s), s, sizeof a->name - 1, sizeof a->target - 1);
            return KX_ERR_INVALID;
        }
        if (cfg->naliases == RUNNER_MAX_ALIASES) {
            snprintf(why, whylen, "more than %d aliases", RUNNER_MAX_ALIASES);
            return KX_ERR_INVALID;
        }
        snprintf(a->name, sizeof a->name, "%.*s", (int)(ne - ns), ns);
        snprintf(a->target, sizeof a->target, "%.*s", (int)(te - ts), ts);
        cfg->naliases++;
    }
    return KX_OK;
}

kx_err runner_config_load(runner_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    kx_err err = copy_env("KX_DATABASE_URL", KX_DEFAULT_DATABASE_URL, cfg->database_url,
                          sizeof cfg->database_url);
    if (err != KX_OK)
        return err;
    if ((err = load_provider(cfg)) != KX_OK)
        return err;
    char why[300];
    if (runner_config_parse_aliases(cfg, kx_env_str("KX_MODEL_ALIASES", ""), why, sizeof why) !=
        KX_OK) {
        kx_error("config: KX_MODEL_ALIASES: %s", why);
        return KX_ERR_INVALID;
    }
    if (kx_env_str("KX_LLM_TIMEOUT_S", NULL) != NULL)
        kx_warn("config: KX_LLM_TIMEOUT_S is no longer read (an answer may stream as long as "
                "it keeps streaming); use KX_LLM_TTFB_MS and KX_LLM_IDLE_MS");
    struct {
        const char *name;
        int64_t def, min, max;
        int64_t *out;
    } ints[] = {
        {"KX_LLM_TTFB_MS", 120000, 100, 3600000, &cfg->llm_ttfb_ms},
        {"KX_LLM_IDLE_MS", 90000, 100, 3600000, &cfg->llm_idle_ms},
        {"KX_LLM_RETRIES", 3, 0, 10, &cfg->llm_retries},
        {"KX_LLM_MAX_TOKENS", 8192, 1, 1000000, &cfg->llm_max_tokens},
        {"KX_MAX_ITERATIONS", 100, 1, 10000, &cfg->max_iterations},
        {"KX_HEARTBEAT_MS", 1000, 50, 60000, &cfg->heartbeat_ms},
        {"KX_LEASE_TTL_MS", 10000, 100, 3600000, &cfg->lease_ttl_ms},
        {"KX_RUNNER_CAPACITY", 1000, 1, 100000, &cfg->capacity},
        {"KX_RUNNER_DB_CONNS", 4, 1, 64, &cfg->db_conns},
        {"KX_TOOL_TIMEOUT_S", 120, 1, 86400, &cfg->tool_timeout_s},
        {"KX_DRAIN_TIMEOUT_MS", 10000, 0, 3600000, &cfg->drain_timeout_ms},
        {"KX_RUN_WALL_TIME_S", 3600, 1, 7 * 86400, &cfg->wall_time_s},
        {"KX_MAX_AUTO_CONTINUES", 25, 0, 1000, &cfg->max_auto_continues},
        {"KX_MAX_XML_TOOL_CALLS", 1, 1, 100, &cfg->max_xml_tool_calls},
        {"KX_EVENT_COALESCE_MS", 50, 0, 10000, &cfg->event_coalesce_ms},
        {"KX_EVENT_COALESCE_BYTES", 4096, 0, 65536, &cfg->event_coalesce_bytes},
        {"KX_EVENTS_MAX_PENDING", 4096, 1, 1000000, &cfg->events_max_pending},
        {"KX_EVENTS_ACK_WAIT_MS", 10000, 100, 600000, &cfg->events_ack_wait_ms},
        {"KX_EVENTS_BUFFERED", 0, 0, 1, &cfg->events_buffered},
    };
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        if (kx_env_int(ints[i].name, ints[i].def, ints[i].min, ints[i].max, ints[i].out) != KX_OK)
            return KX_ERR_INVALID;
    }
    const char *strategy = kx_env_str("KX_TOOL_STRATEGY", "parallel");
    if (strcmp(strategy, "parallel") != 0 && strcmp(strategy, "sequential") != 0) {
        kx_error("config: KX_TOOL_STRATEGY must be parallel or sequential, not \"%s\"", strategy);
        return KX_ERR_INVALID;
    }
    cfg->sequential_tools = strcmp(strategy, "sequential") == 0;
    int64_t naming = 1;
    if (kx_env_int("KX_PROJECT_NAMING", 1, 0, 1, &naming) != KX_OK)
        return KX_ERR_INVALID;
    cfg->project_naming = naming == 1;
    int64_t read_mb = 0;
    if (kx_env_int("KX_CONTEXT_READ_MAX_MB", 8, 1, 1024, &read_mb) != KX_OK)
        return KX_ERR_INVALID;
    cfg->context_read_bytes = read_mb << 20;
    if ((err = copy_env("KX_CONTEXT_BUDGETS", "", cfg->context_budgets,
                        sizeof cfg->context_budgets)) != KX_OK ||
        (err = copy_env("KX_NAMING_MODEL", "", cfg->naming_model, sizeof cfg->naming_model)) !=
            KX_OK)
        return err;
    if (!context_budgets_valid(cfg->context_budgets, why, sizeof why)) {
        kx_error("config: KX_CONTEXT_BUDGETS: %s", why);
        return KX_ERR_INVALID;
    }
    /* A lease must outlive a heartbeat that comes late: at 15 s of heartbeat against a 10 s
     * lease, the scheduler reaped healthy runs mid-tool as "stopped heartbeating". */
    if (cfg->heartbeat_ms * 2 > cfg->lease_ttl_ms) {
        kx_error("config: KX_HEARTBEAT_MS (%lld) must be at most half of KX_LEASE_TTL_MS "
                 "(%lld): each heartbeat renews the lease, which must outlive a late one",
                 (long long)cfg->heartbeat_ms, (long long)cfg->lease_ttl_ms);
        return KX_ERR_INVALID;
    }
    return KX_OK;
}

kx_err runner_config_check_fds(const runner_config *cfg)
{
    uint64_t need = (uint64_t)cfg->capacity + RUNNER_FD_BASE, have = 0;
    char why[512];
    if (kx_fd_limit_ensure(need, &have, why, sizeof why) != KX_OK) {
        kx_error("config: KX_RUNNER_CAPACITY=%lld cannot be served: %s (each held run keeps one "
                 "LLM connection open; at most %lld runs fit the limit now)",
                 (long long)cfg->capacity, why,
                 (long long)(have > RUNNER_FD_BASE ? have - RUNNER_FD_BASE : 0));
        return KX_ERR_INVALID;
    }
    kx_info("config: RLIMIT_NOFILE %llu for a capacity of %lld runs", (unsigned long long)have,
            (long long)cfg->capacity);
    return KX_OK;
}
