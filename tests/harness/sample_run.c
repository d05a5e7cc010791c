/* tests/harness/sample_run.c — a small sample run's messages and tools, and the reference
 * head of a request body (sample_run.h). */
#include "sample_run.h"

json_t *kx_th_sample_messages(void)
{
    return json_pack(
        "[{s:s, s:s}, {s:s, s:s, s:[{s:s, s:s, s:{s:s, s:s}}]}, {s:s, s:s, s:s}, {s:s, s:f}]",
        "role", "user", "content",
        "caf\xc3\xa9 \xe2\x80\x94 \xf0\x9f\x98\x80 \x1f\x7f \"quotes\", a tab\t and a newline\n",
        "role", "assistant", "content", "", "tool_calls", "id", "c1", "type", "function",
        "function", "name", "view_tasks", "arguments", "{\"a\":1}", "role", "tool", "tool_call_id",
        "c1", "content",
        "{\"tool\": \"view_tasks\", \"output\": \"- [ ] write the report\\n- [x] profile\"}",
        "role", "user", "weight", 0.1);
}

static json_t *tool(const char *name, const char *desc)
{
    return json_pack("{s:s, s:{s:s, s:s, s:{s:s, s:{s:{s:s}}, s:[s]}}}", "type", "function",
                     "function", "name", name, "description", desc, "parameters", "type", "object",
                     "properties", "path", "type", "string", "required", "path");
}

json_t *kx_th_sample_tools(void)
{
    json_t *tools = json_array();
    json_array_append_new(tools, tool("view_tasks", "Shows the tasks \xe2\x9c\x93 \"quoted\""));
    json_array_append_new(tools, tool("read_file", "Reads a file\n\ttabbed \x01 \\ /"));
    return tools;
}

json_t *kx_th_ref_body_head(const char *model, const char *system, const json_t *messages)
{
    json_t *root = json_object();
    json_t *msgs = json_array();
    json_array_append_new(msgs, json_pack("{s:s, s:s}", "role", "system", "content", system));
    json_array_extend(msgs, (json_t *)messages);
    json_object_set_new(root, "model", json_string(model));
    json_object_set_new(root, "messages", msgs);
    json_object_set_new(root, "stream", json_true());
    json_object_set_new(root, "temperature", json_integer(0));
    return root;
}
