/* tools_message.c — Kortix's MessageTool (always on): ask, complete and web_browser_takeover.
 * They run nothing: each answers success with Kortix's output ({"status": "Awaiting user
 * response..."}, {"status": "complete"}, {"status": "Awaiting user browser takeover..."});
 * the runner ends the run after ask and complete (agent_should_terminate), as Kortix does.
 * `attachments` (a path or a list of paths relative to /workspace) is passed back as given. */
#include <jansson.h>

#include "executor.h"
#include "kx/json.h"
#include "registry.h"

static void reply_status(te_call *c, const char *status)
{
    te_outcome o;
    te_outcome_init(&o);
    json_t *obj = json_pack("{s:s}", "status", status);
    json_t *att = json_object_get(c->args, "attachments");
    if (obj != NULL && att != NULL && !json_is_null(att))
        json_object_set(obj, "attachments", att);
    te_outcome_json(&o, obj, c->tool->name);
    te_call_finish(c, &o);
}

static void ask_start(te_call *c)
{
    reply_status(c, "Awaiting user response...");
}

static void complete_start(te_call *c)
{
    reply_status(c, "complete");
}

static void takeover_start(te_call *c)
{
    reply_status(c, "Awaiting user browser takeover...");
}

#define ATTACHMENTS_PROP                                                                       \
    "\"attachments\": {\"type\": [\"string\", \"array\"], \"items\": {\"type\": \"string\"}, " \
    "\"description\": \"A file path or a list of paths relative to /workspace to show the "    \
    "user.\"}"

const te_tool te_message_tools[] = {
    {"ask", NULL, TE_TOOL_BUILTIN,
     "{\"type\": \"function\", \"function\": {\"name\": \"ask\", \"description\": \"Ask the "
     "user a question and wait for the answer. Ends the run; the user's reply starts the next "
     "one.\", \"parameters\": {\"type\": \"object\", \"properties\": {\"text\": {\"type\": "
     "\"string\", \"minLength\": 1, \"description\": \"The question, in Markdown.\"}, " ATTACHMENTS_PROP
     "}, \"required\": [\"text\"]}}}",
     ask_start, NULL},
    {"complete", NULL, TE_TOOL_BUILTIN,
     "{\"type\": \"function\", \"function\": {\"name\": \"complete\", \"description\": "
     "\"Say that every task is done. Ends the run.\", \"parameters\": {\"type\": \"object\", "
     "\"properties\": {\"text\": {\"type\": \"string\", \"description\": \"A summary for the "
     "user.\"}, " ATTACHMENTS_PROP "}}}}",
     complete_start, NULL},
    {"web_browser_takeover", NULL, TE_TOOL_BUILTIN,
     "{\"type\": \"function\", \"function\": {\"name\": \"web_browser_takeover\", "
     "\"description\": \"Ask the user to take over the browser (a CAPTCHA, a login) and say "
     "when done.\", \"parameters\": {\"type\": \"object\", \"properties\": {\"text\": "
     "{\"type\": \"string\", \"minLength\": 1, \"description\": \"What the user should do.\"}, " ATTACHMENTS_PROP
     "}, \"required\": [\"text\"]}}}",
     takeover_start, NULL},
};
const size_t te_message_tools_n = sizeof te_message_tools / sizeof te_message_tools[0];
