/* prompt.c — the default system prompt and the execute_command tool schema (see prompt.h).
 * Kept short on purpose: agents with their own prompts come with a later issue. */
#include "prompt.h"

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

json_t *prompt_tools(void)
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
