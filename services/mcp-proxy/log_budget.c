/* log_budget.c — a token bucket for lines a server puts into our log (see log_budget.h). */
#include "log_budget.h"

#include "kx/log.h"

bool mcp_log_budget_take(mcp_log_budget *b, int64_t now_ms, uint64_t *dropped)
{
    *dropped = 0;
    if (!b->started) {
        b->started = true;
        b->tokens = MCP_LOG_BURST;
        b->last_ms = now_ms;
    }
    if (now_ms > b->last_ms) {
        b->tokens += (double)(now_ms - b->last_ms) * MCP_LOG_PER_S / 1000.0;
        if (b->tokens > MCP_LOG_BURST)
            b->tokens = MCP_LOG_BURST;
        b->last_ms = now_ms;
    }
    if (b->tokens < 1.0) {
        b->dropped++;
        return false;
    }
    b->tokens -= 1.0;
    *dropped = b->dropped;
    b->dropped = 0;
    return true;
}

void mcp_log_dropped(const char *server, const char *what, uint64_t n)
{
    if (n > 0)
        kx_warn("mcp server '%s': %llu %s were not logged (more than %d a second)", server,
                (unsigned long long)n, what, MCP_LOG_PER_S);
}
