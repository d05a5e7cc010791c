/* prompt.c — the default system prompt and the execute_command tool schema (see prompt.h).
 * Kept short on purpose: agents with their own prompts come with a later issue. */
#include "prompt.h"

#include <stdlib.h>
#include <string.h>

#include "kx/json.h"

static const char SYSTEM_PROMPT[] =
    "You are Kortix, an autonomous AI agent. You work in a sandboxed Linux workspace "
    "(/workspace) that belongs to the user's project.\n"
    "\n"
    "You have one tool, execute_command, which runs a shell command in the workspace. "
    "Parameters: command (string, required): the command, run with /bin/sh -c; folder "
    "(string): a sub-directory of the workspace to run it in; session_name (string): a name for "
    "the shell session; blocking (boolean, default false): wait for the command to finish and "
    "return its output (use true when you need the output); timeout (integer seconds, default "
    "60): how long a blocking command may run.\n"
    "\n"
    "Call the tool through the function-calling interface when it is available. Otherwise "
    "write exactly one call in this XML format, and stop writing after it:\n"
    "\n"
    "<function_calls>\n"
    "<invoke name=\"execute_command\">\n"
    "<parameter name=\"command\">ls -la</parameter>\n"
    "<parameter name=\"blocking\">true</parameter>\n"
    "</invoke>\n"
    "</function_calls>\n"
    "\n"
    "Rules for the XML format: scalar values are written as they are; lists and objects are "
    "written as JSON inside the tag; booleans are the lowercase words true and false; use the "
    "exact function and parameter names above. Only the first call of a message is run; you "
    "get its result in the next message.\n"
    "\n"
    "Work step by step: run a command, read its result, decide the next step. When the task is "
    "done, answer the user in plain text without a tool call.";

const char *prompt_system(void)
{
    return SYSTEM_PROMPT;
}

static json_t *build_tools(void)
{
    return json_pack(
        "[{s:s, s:{s:s, s:s, s:{s:s, s:{s:{s:s, s:s}, s:{s:s, s:s}, s:{s:s, s:s}, "
        "s:{s:s, s:b, s:s}, s:{s:s, s:i, s:s}}, s:[s]}}}]",
        "type", "function", "function", "name", "execute_command", "description",
        "Run a shell command in the project's sandbox workspace (/bin/sh -c). Non-blocking by "
        "default: set blocking to true to wait for the command and get its output.",
        "parameters", "type", "object", "properties", "command", "type", "string", "description",
        "The shell command to run.", "folder", "type", "string", "description",
        "Sub-directory of the workspace to run the command in (default: the workspace).",
        "session_name", "type", "string", "description", "Name of the shell session to use.",
        "blocking", "type", "boolean", "default", 0, "description",
        "Wait for the command to finish and return its output.", "timeout", "type", "integer",
        "default", 60, "description", "Seconds a blocking command may run before it is killed.",
        "required", "command");
}

json_t *prompt_tools(void)
{
    static json_t *tools; /* built once, kept for the process's life */
    if (tools == NULL)
        tools = build_tools();
    return json_incref(tools);
}

static const char XML_RULES[] =
    "\n\n# Tools\n"
    "Call a tool through the function-calling interface when it is available. Otherwise write "
    "the call in this XML format:\n\n"
    "<function_calls>\n<invoke name=\"function_name\">\n"
    "<parameter name=\"param_name\">param_value</parameter>\n</invoke>\n</function_calls>\n\n"
    "Scalar values are written as they are; lists and objects as JSON inside the tag; booleans "
    "are the lowercase words true and false; use the exact function names below. Call ask to "
    "ask the user something and complete when the task is done: both end your turn.\n\n"
    "Available tools:\n";

char *prompt_with_tools(const char *agent_prompt, const json_t *tools)
{
    size_t cap = strlen(agent_prompt) + sizeof XML_RULES + 1, i;
    const json_t *t;
    json_array_foreach(tools, i, t)
    {
        const json_t *f = json_object_get(t, "function");
        cap += strlen(kx_json_str(f, "name", "")) + strlen(kx_json_str(f, "description", "")) + 8;
    }
    char *out = malloc(cap);
    if (out == NULL)
        return NULL;
    size_t o = (size_t)snprintf(out, cap, "%s%s", agent_prompt, XML_RULES);
    json_array_foreach(tools, i, t)
    {
        const json_t *f = json_object_get(t, "function");
        o += (size_t)snprintf(out + o, cap - o, "- %s: %s\n", kx_json_str(f, "name", ""),
                              kx_json_str(f, "description", ""));
    }
    return out;
}
