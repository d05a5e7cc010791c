/* log.c — JSON-lines logging to stderr (fd 2).
 *
 * Each call formats one complete line on the stack and hands it to the kernel with one write(2),
 * so lines written by different threads never interleave. Fields, in this order: ts (ISO-8601
 * UTC, microseconds), level, service, instance, run_id and trace_id (only when given), msg.
 * Strings are JSON-escaped; bytes that are not valid UTF-8 become U+FFFD so every line parses. */
#include "kx/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "kx/time.h"
#include "kx/utf8.h"

#define MSG_MAX 4096                        /* longer messages are cut and end with "..." */
#define LINE_MAX_BYTES (MSG_MAX * 6 + 1024) /* worst case: every byte escaped as \u00XX */

static char g_service[64] = "unknown";
static char g_instance[128] = "unknown";
static _Atomic int g_level = KX_LOG_INFO;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

static bool parse_level(const char *s, kx_log_level *out)
{
    for (int i = KX_LOG_DEBUG; i <= KX_LOG_ERROR; i++) {
        if (strcasecmp(s, level_names[i]) == 0) {
            *out = (kx_log_level)i;
            return true;
        }
    }
    return false;
}

bool kx_log_init(const char *service, const char *instance_id)
{
    snprintf(g_service, sizeof g_service, "%s", service ? service : "unknown");
    snprintf(g_instance, sizeof g_instance, "%s", instance_id ? instance_id : "unknown");
    const char *env = getenv("KX_LOG_LEVEL");
    if (env == NULL || env[0] == '\0') {
        kx_log_set_level(KX_LOG_INFO);
        return true;
    }
    kx_log_level lvl;
    if (parse_level(env, &lvl)) {
        kx_log_set_level(lvl);
        return true;
    }
    kx_log_set_level(KX_LOG_INFO);
    kx_error("config: KX_LOG_LEVEL=%s is not valid: expected debug, info, warn or error", env);
    return false;
}

void kx_log_set_level(kx_log_level level)
{
    atomic_store(&g_level, (int)level);
}
kx_log_level kx_log_get_level(void)
{
    return (kx_log_level)atomic_load(&g_level);
}

/* A growing cursor into the stack line buffer; writes past the end are dropped. */
typedef struct line {
    char *buf;
    size_t len, cap;
} line;

static void put(line *l, const char *s, size_t n)
{
    if (n > l->cap - l->len)
        n = l->cap - l->len;
    memcpy(l->buf + l->len, s, n);
    l->len += n;
}

static void puts_raw(line *l, const char *s)
{
    put(l, s, strlen(s));
}

static void put_json_string(line *l, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s);
    put(l, "\"", 1);
    for (size_t i = 0; i < n;) {
        unsigned char c = p[i];
        char esc[8];
        switch (c) {
        case '"':
            put(l, "\\\"", 2);
            i++;
            continue;
        case '\\':
            put(l, "\\\\", 2);
            i++;
            continue;
        case '\n':
            put(l, "\\n", 2);
            i++;
            continue;
        case '\r':
            put(l, "\\r", 2);
            i++;
            continue;
        case '\t':
            put(l, "\\t", 2);
            i++;
            continue;
        case '\b':
            put(l, "\\b", 2);
            i++;
            continue;
        case '\f':
            put(l, "\\f", 2);
            i++;
            continue;
        default: break;
        }
        if (c < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", c);
            put(l, esc, 6);
            i++;
            continue;
        }
        size_t sl = kx_utf8_seq_len(p + i, n - i);
        if (sl == 0) {
            put(l, "\\ufffd", 6);
            i++;
        } else {
            put(l, (const char *)p + i, sl);
            i += sl;
        }
    }
    put(l, "\"", 1);
}

static void put_field(line *l, const char *name, const char *value)
{
    put(l, ", \"", 3);
    puts_raw(l, name);
    put(l, "\": ", 3);
    put_json_string(l, value);
}

static void write_all(const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(2, buf, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return; /* nowhere left to report a failing stderr */
        }
        buf += n;
        len -= (size_t)n;
    }
}

void kx_log(kx_log_level level, const char *run_id, const char *trace_id, const char *fmt, ...)
{
    if (level < kx_log_get_level())
        return;
    if (level < KX_LOG_DEBUG || level > KX_LOG_ERROR)
        level = KX_LOG_ERROR;

    int saved_errno = errno; /* callers often log right after a failing call */
    char msg[MSG_MAX + 1];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (n < 0) {
        snprintf(msg, sizeof msg, "(unformattable log message: %s)", fmt);
    } else if ((size_t)n >= sizeof msg) {
        /* cut: step back to a UTF-8 character boundary, then mark the cut (msg holds the
         * first MSG_MAX bytes) */
        size_t cut = kx_utf8_floor(msg, MSG_MAX, MSG_MAX - 3);
        memcpy(msg + cut, "...", 4);
    }

    char ts[48];
    kx_time_iso(ts, sizeof ts, kx_now_us());

    char buf[LINE_MAX_BYTES];
    line l = {buf, 0, sizeof buf - 2}; /* room kept for "}\n" */
    put(&l, "{\"ts\": ", 7);
    put_json_string(&l, ts);
    put_field(&l, "level", level_names[level]);
    put_field(&l, "service", g_service);
    put_field(&l, "instance", g_instance);
    if (run_id != NULL)
        put_field(&l, "run_id", run_id);
    if (trace_id != NULL)
        put_field(&l, "trace_id", trace_id);
    put_field(&l, "msg", msg);
    buf[l.len++] = '}';
    buf[l.len++] = '\n';
    write_all(buf, l.len);
    errno = saved_errno;
}
