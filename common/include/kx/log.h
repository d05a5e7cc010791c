/* kx/log.h — JSON-lines logging to stderr.
 *
 * One line per call, written with a single write(2) so lines from threads never interleave:
 *   {"ts": "...", "level": "info", "service": "gateway", "instance": "...", "run_id": "...",
 *    "trace_id": "...", "msg": "..."}
 * run_id and trace_id are omitted when NULL. The minimum level comes from KX_LOG_LEVEL
 * (debug|info|warn|error, default info). Thread-safe; no allocation on the hot path beyond
 * a stack buffer (messages longer than 4 KiB are cut and end with "...").
 */
#ifndef KX_LOG_H
#define KX_LOG_H

#include <stdbool.h>
#include <stddef.h> /* NULL, in the macros below */

typedef enum kx_log_level {
    KX_LOG_DEBUG,
    KX_LOG_INFO,
    KX_LOG_WARN,
    KX_LOG_ERROR
} kx_log_level;

/* Call once at start. service and instance are copied. The level from KX_LOG_LEVEL (info when
 * unset); false (logged) when it is set to anything but debug, info, warn or error: level info
 * then, and kx_svc_init refuses to start. */
bool kx_log_init(const char *service, const char *instance_id);
void kx_log_set_level(kx_log_level level);
kx_log_level kx_log_get_level(void);

void kx_log(kx_log_level level, const char *run_id, const char *trace_id, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#define kx_debug(...) kx_log(KX_LOG_DEBUG, NULL, NULL, __VA_ARGS__)
#define kx_info(...) kx_log(KX_LOG_INFO, NULL, NULL, __VA_ARGS__)
#define kx_warn(...) kx_log(KX_LOG_WARN, NULL, NULL, __VA_ARGS__)
#define kx_error(...) kx_log(KX_LOG_ERROR, NULL, NULL, __VA_ARGS__)

#endif
