/* log_budget.h — how many lines a server may put into our log: a token bucket per server
 * process (its stderr) and per session (its notifications/message).
 *
 * A server's stderr and its log notifications are the server's to write, as fast as it likes:
 * logged line by line without a limit, an agent's server writing in a loop filled the proxy's
 * log (and its disk) at pipe speed. Each source may log MCP_LOG_BURST lines at once and
 * MCP_LOG_PER_S a second after that; the lines past it are counted, and the count is logged
 * with the next line let through (or when the source ends), by mcp_log_dropped. The bucket is
 * pure: the caller passes the time. */
#ifndef KX_MCP_LOG_BUDGET_H
#define KX_MCP_LOG_BUDGET_H

#include <stdbool.h>
#include <stdint.h>

#define MCP_LOG_BURST 200
#define MCP_LOG_PER_S 20

typedef struct mcp_log_budget {
    double tokens;
    int64_t last_ms;
    bool started;
    uint64_t dropped; /* lines refused since the last one let through */
} mcp_log_budget;

/* Whether a line may be logged at now_ms. When it may, *dropped gets the number of lines
 * refused before it (then reset to 0); the caller logs that count first when it is not 0. */
bool mcp_log_budget_take(mcp_log_budget *b, int64_t now_ms, uint64_t *dropped);

/* Logs (a warning) that n of server's lines (what: "stderr lines", ...) were not logged;
 * nothing when n is 0. */
void mcp_log_dropped(const char *server, const char *what, uint64_t n);

#endif
