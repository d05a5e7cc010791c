/* agent_store.h — the SQL of the agent and version routes (routes_agents.c, routes_versions.c,
 * routes_mcp.c). The rules live in the database (deploy/migrations/007_agents_flags.sql): every
 * write that makes a version goes through kx_agent_new_version, which locks the agent's row,
 * so concurrent writers take turns and version numbers never collide; the default agent is
 * made once under the account's agents lock. Each statement here is one call of those
 * functions, with parameters (never SQL text built from input).
 *
 * Access: reads see the account's agents and public agents; writes only the account's. An
 * agent of another account (private) is "not found", exactly like an unknown id.
 *
 * Statements that write are marked GW_SQL_WRITE so the connection never re-runs them blindly
 * after a lost answer (kx_db re-runs plain SELECTs); the writes whose repeat gives the same
 * outcome are run with kx_db_exec_idem instead (see agent_store.c).
 *
 * Errors: kx_err from kx_db; KX_ERR_NOT_FOUND when the agent (or version) is not one the
 * account may see. Ownership: char ** outputs are malloc'd and the caller's; the kx_db is
 * borrowed. Ids must be valid UUIDs. */
#ifndef GW_AGENT_STORE_H
#define GW_AGENT_STORE_H

#include <stdbool.h>

#include "kx/db.h"
#include "kx/err.h"
#include "kx/uuid.h"

/* A prefix that keeps kx_db from taking a statement that calls a writing function for a
 * read-only SELECT. */
#define GW_SQL_WRITE "/* writes */ "

/* clang-format off */
/* $1 agent, $2 account: the account's agent, or a public one. */
#define GW_AGENT_READABLE "a.agent_id = $1::uuid AND (a.account_id = $2::uuid OR a.is_public)"
/* The reader ($2) does not own agent a: it sees the configs without MCP credentials
 * (kx_version_for, migration 020). */
#define GW_AGENT_NOT_OWNER "a.account_id <> $2::uuid"
#define GW_AGENT_CURRENT "LEFT JOIN agent_versions v ON v.version_id = a.current_version_id "

#define GW_AGENT_STATEMENTS                                                                    \
    {"gw_agents_list", GW_SQL_WRITE                                                            \
     "SELECT kx_agents_list($1::uuid, $2::text, $3::boolean, $4::boolean, $5::boolean, "       \
     "$6::text[], $7::text, $8::text, $9::int, $10::int)::text"},                              \
    {"gw_agent_get",                                                                           \
     "SELECT kx_agent_json(a, $2::uuid)::text FROM agents a WHERE " GW_AGENT_READABLE},        \
    {"gw_agent_create", GW_SQL_WRITE                                                           \
     "SELECT kx_agent_create($1::uuid, $2::jsonb, $3::text, $4::text)::text"},                 \
    {"gw_agent_update", GW_SQL_WRITE                                                           \
     "SELECT kx_agent_update($1::uuid, $2::uuid, $3::jsonb)::text"},                           \
    {"gw_agent_delete", GW_SQL_WRITE "SELECT kx_agent_delete($1::uuid, $2::uuid)"},            \
    {"gw_agent_export",                                                                        \
     "SELECT kx_agent_export(a, $2::uuid)::text FROM agents a "                                \
     "WHERE a.agent_id = $1::uuid AND a.account_id = $2::uuid"},                               \
    {"gw_agent_tools",                                                                         \
     "SELECT kx_cfg_tools_json(v.config)::text FROM agents a " GW_AGENT_CURRENT                \
     "WHERE " GW_AGENT_READABLE},                                                              \
    /* $3 the newest version number left out (NULL: none), $4 most versions, $5 most bytes of   \
     * config (the newest version always; migration 022's config_bytes). The page is chosen    \
     * from version_number and config_bytes alone, at most $4 rows on the agent's index; only   \
     * its versions are read whole, one probe each (a scalar subquery: never joined to every    \
     * version). Each row whole in the window read and sorted every config of the agent, a     \
     * page of one version of an agent edited thousands of times included. */                 \
    {"gw_versions_list",                                                                       \
     "SELECT (SELECT coalesce(json_agg((SELECT kx_version_json(kx_version_for(v, "             \
     GW_AGENT_NOT_OWNER ")) FROM agent_versions v WHERE v.agent_id = a.agent_id "              \
     "AND v.version_number = p.version_number) ORDER BY p.version_number DESC), '[]'::json) "  \
     "FROM (SELECT version_number, row_number() OVER w AS n, sum(config_bytes) OVER w AS upto " \
     "  FROM (SELECT version_number, config_bytes FROM agent_versions "                        \
     "    WHERE agent_id = a.agent_id AND ($3::int IS NULL OR version_number < $3::int) "      \
     "    ORDER BY version_number DESC LIMIT $4::int) k "                                      \
     "  WINDOW w AS (ORDER BY version_number DESC)) p "                                        \
     "WHERE p.n = 1 OR p.upto <= $5::bigint)::text "                                           \
     "FROM agents a WHERE " GW_AGENT_READABLE},                                                \
    {"gw_version_get",                                                                         \
     "SELECT CASE WHEN v.version_id IS NULL THEN '' ELSE "                                     \
     "kx_version_json(kx_version_for(v, " GW_AGENT_NOT_OWNER "))::text END "                   \
     "FROM agents a LEFT JOIN agent_versions v ON v.agent_id = a.agent_id "                    \
     "AND v.version_id = $3::uuid WHERE " GW_AGENT_READABLE},                                  \
    {"gw_version_create", GW_SQL_WRITE                                                         \
     "SELECT kx_agent_version_create($1::uuid, $2::uuid, "                                     \
     "kx_cfg_build($3::text, $4::jsonb, $5::jsonb, $6::jsonb, $7::text), $8::text, "           \
     "$9::text)::text"},                                                                       \
    {"gw_version_activate", GW_SQL_WRITE                                                       \
     "SELECT kx_agent_activate($1::uuid, $2::uuid, $3::uuid)"},                                \
    {"gw_version_compare",                                                                     \
     "SELECT CASE WHEN v1.version_id IS NULL OR v2.version_id IS NULL THEN '' "                \
     "ELSE kx_version_compare(kx_version_for(v1, " GW_AGENT_NOT_OWNER "), "                    \
     "kx_version_for(v2, " GW_AGENT_NOT_OWNER "))::text END FROM agents a "                    \
     "LEFT JOIN agent_versions v1 ON v1.agent_id = a.agent_id AND v1.version_id = $3::uuid "   \
     "LEFT JOIN agent_versions v2 ON v2.agent_id = a.agent_id AND v2.version_id = $4::uuid "   \
     "WHERE " GW_AGENT_READABLE},                                                              \
    {"gw_version_rollback", GW_SQL_WRITE                                                       \
     "SELECT kx_agent_rollback($1::uuid, $2::uuid, $3::uuid)::text"},                          \
    {"gw_version_details", GW_SQL_WRITE                                                        \
     "SELECT kx_agent_version_details($1::uuid, $2::uuid, $3::uuid, $4::text, $5::text)::text"},\
    {"gw_agent_mcp_config",                                                                    \
     "SELECT json_build_object('custom_mcps', kx_cfg_custom(v.config))::text FROM agents a "   \
     GW_AGENT_CURRENT "WHERE " GW_AGENT_READABLE},                                             \
    {"gw_agent_mcp_save", GW_SQL_WRITE                                                         \
     "SELECT version_id::text, created FROM kx_agent_save_mcp_tools($1::uuid, $2::uuid, "      \
     "$3::text, $4::text, $5::jsonb)"}
/* clang-format on */

/* GET /agents's query (page >= 1, 1 <= limit <= 100; search, tools may be NULL; the has_*
 * are -1 for "no filter", else 0/1; tools a Postgres array literal). */
typedef struct gw_agent_query {
    const char *search;
    int has_default, has_mcp_tools, has_agentpress_tools;
    const char *tools; /* "{\"mcp:x\",\"agentpress:y\"}" or NULL */
    const char *sort_by, *sort_order;
    int limit, page;
} gw_agent_query;
kx_err gw_agents_list(kx_db *db, const char *account, const gw_agent_query *q, char **json);

/* One agent (AgentResponse) the account may read. */
kx_err gw_agent_get(kx_db *db, const char *agent, const char *account, char **json);
/* Creates an agent and its v1 from fields (a JSON object text; validated by the caller);
 * idem_key (or NULL): one agent per key. */
kx_err gw_agent_create(kx_db *db, const char *account, const char *fields, const char *idem_key,
                       const char *change, char **json);
/* Applies patch (a JSON object text: only the fields to change). KX_ERR_CONFLICT with
 * *refused set (malloc'd message) when the default agent's restrictions refuse a field. */
kx_err gw_agent_update(kx_db *db, const char *agent, const char *account, const char *patch,
                       char **json, char **refused);
/* Deletes the account's agent; *is_default when it is the default agent (nothing deleted). */
kx_err gw_agent_delete(kx_db *db, const char *agent, const char *account, bool *is_default);
kx_err gw_agent_export(kx_db *db, const char *agent, const char *account, char **json);
kx_err gw_agent_tools(kx_db *db, const char *agent, const char *account, char **json);

kx_err gw_versions_list(kx_db *db, const char *agent, const char *account, const char *before,
                        int limit, int64_t max_bytes, char **json);
/* *json is "" when the agent is readable but has no such version. */
kx_err gw_version_get(kx_db *db, const char *agent, const char *account, const char *version,
                      char **json);
/* What a new version is made of (system_prompt required; the rest may be NULL: empty). */
typedef struct gw_version_new {
    const char *system_prompt, *agentpress_tools, *configured_mcps, *custom_mcps, *model;
    const char *version_name, *description;
} gw_version_new;
/* KX_ERR_CONFLICT: the version name is taken. */
kx_err gw_version_create(kx_db *db, const char *agent, const char *account,
                         const gw_version_new *v, char **json);
/* *no_version when the agent has no such version. */
kx_err gw_version_activate(kx_db *db, const char *agent, const char *account, const char *version,
                           bool *no_version);
/* *json is "" when either version is not the agent's. */
kx_err gw_version_compare(kx_db *db, const char *agent, const char *account, const char *v1,
                          const char *v2, char **json);
/* {"version", "created"}, or {"error": "no_version"}. */
kx_err gw_version_rollback(kx_db *db, const char *agent, const char *account, const char *version,
                           char **json);

/* Renames a version / sets its change description (NULL: kept). {"version"}, or
 * {"error": "no_version"}; KX_ERR_CONFLICT: the name is taken. */
kx_err gw_version_details(kx_db *db, const char *agent, const char *account, const char *version,
                          const char *name, const char *change, char **json);

/* The custom-mcp-tools route: {"custom_mcps": [...]} of the agent's current version. */
kx_err gw_agent_mcp_config(kx_db *db, const char *agent, const char *account, char **json);
/* Saves enabled_tools (a JSON array text) for the entry (type, url); version gets the current
 * version id, *created whether a new version was made. */
kx_err gw_agent_mcp_save(kx_db *db, const char *agent, const char *account, const char *type,
                         const char *url, const char *enabled_tools, char version[KX_UUID_LEN + 1],
                         bool *created);

#endif
