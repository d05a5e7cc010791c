/* registry.c — the tools the executor serves, as a static table (see registry.h).
 * Adding a tool = one row here and its functions in their own file. */
#include "registry.h"

#include <string.h>

static const te_tool tools[] = {
    {"execute_command", TE_TOOL_SANDBOX, te_execute_command_start, te_execute_command_abort},
};

const te_tool *te_registry_find(const char *name)
{
    if (name == NULL)
        return NULL;
    for (size_t i = 0; i < sizeof tools / sizeof tools[0]; i++) {
        if (strcmp(tools[i].name, name) == 0)
            return &tools[i];
    }
    return NULL;
}
