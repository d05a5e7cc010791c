/* deadline.c — the tool deadline T (see deadline.h). */
#include "deadline.h"

kx_deadline te_tool_deadline(kx_deadline call_deadline, int64_t now_ms, int64_t limit_s,
                             bool blocking, int timeout_s)
{
    kx_deadline t = now_ms + limit_s * 1000;
    if (call_deadline != KX_NO_DEADLINE && call_deadline - TE_CALL_MARGIN_MS < t)
        t = call_deadline - TE_CALL_MARGIN_MS;
    if (blocking && timeout_s > 0 && now_ms + (int64_t)timeout_s * 1000 < t)
        t = now_ms + (int64_t)timeout_s * 1000;
    return t;
}

int64_t te_seconds_for_message(int64_t ms)
{
    if (ms <= 1000)
        return 1;
    return (ms + 999) / 1000;
}
