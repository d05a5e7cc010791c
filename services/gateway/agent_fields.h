/* agent_fields.h — checking the fields of an agent or version body (POST/PUT /api/agents,
 * import, POST .../versions) before they reach the database: each field's type, length and
 * allowed values, every failure a 400 whose detail names the field ("custom_mcps[2].type must
 * be one of sse, http, json, pipedream").
 *
 * Fields (Kortix's AgentCreateRequest / AgentUpdateRequest / version body):
 *   name            string, 1..255 characters
 *   description     string, at most 10 000 characters
 *   system_prompt   string, at most KX_MAX_PROMPT_BYTES (413 above, as prompts)
 *   model           string, 1..200 bytes
 *   agentpress_tools object of at most 100 tools (names 1..64 of [a-z0-9_]) whose values are
 *                   booleans or objects with an optional boolean "enabled"
 *   configured_mcps array of at most 50 objects: name (1..255), qualifiedName (string),
 *                   config (object), enabledTools (array of strings of 1..255)
 *   custom_mcps     the same, plus type / customType in sse, http, json, pipedream
 *   is_default      boolean
 *   avatar          string, at most 10 characters
 *   avatar_color    "#rrggbb"
 *   tags            array of at most 20 strings of 1..50 characters
 *   metadata        object (import only)
 *   version_name    1..50 characters, not "v<number>" (those are the automatic names)
 *   description     (versions) the change description, at most 1 000 characters
 *   change_description (version details) the same
 * Unknown fields are ignored (as FastAPI's models do); a null is the same as an absent field.
 *
 * Ownership: *out is a new JSON object (caller decrefs) holding copies of the accepted
 * fields only. */
#ifndef GW_AGENT_FIELDS_H
#define GW_AGENT_FIELDS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "gateway.h"

typedef enum gw_agent_fields_kind {
    GW_FIELDS_CREATE,  /* name and system_prompt required */
    GW_FIELDS_UPDATE,  /* every field optional; at least one */
    GW_FIELDS_IMPORT,  /* as CREATE, plus metadata */
    GW_FIELDS_VERSION, /* system_prompt required; config fields, version_name, description */
    GW_FIELDS_DETAILS, /* version_name, change_description; at least one */
} gw_agent_fields_kind;

/* The accepted fields of in as a new object; NULL with the reply set (400, or 413 for a
 * system_prompt over max_prompt_bytes). */
json_t *gw_agent_fields(const json_t *in, gw_agent_fields_kind kind, size_t max_prompt_bytes,
                        gw_reply *reply);

/* The request's JSON body read and checked as gw_agent_fields of kind (limits from app's
 * configuration): the accepted fields as a new object (caller decrefs), or NULL with the reply
 * set (the body's own 400/413, or the fields'). */
json_t *gw_agent_body_fields(const gw_app *app, const gw_request *req, gw_agent_fields_kind kind,
                             gw_reply *reply);

#endif
