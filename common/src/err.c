/* err.c — names for kx_err: a short string for logs (kx_err_str) and the stable code that
 * travels in kx.v1.Error.code (kx_err_code, see proto/kx/v1/common.proto); kx_why, the reason
 * written into a caller's buffer. */
#include "kx/err.h"

#include <stdarg.h>
#include <stdio.h>

const char *kx_err_str(kx_err err)
{
    switch (err) {
    case KX_OK: return "ok";
    case KX_ERR_INVALID: return "invalid";
    case KX_ERR_NOMEM: return "out of memory";
    case KX_ERR_IO: return "i/o error";
    case KX_ERR_TIMEOUT: return "timeout";
    case KX_ERR_NOT_FOUND: return "not found";
    case KX_ERR_CONFLICT: return "conflict";
    case KX_ERR_UNAVAILABLE: return "unavailable";
    case KX_ERR_PROTOCOL: return "protocol error";
    case KX_ERR_CANCELLED: return "cancelled";
    case KX_ERR_INTERNAL: return "internal error";
    case KX_ERR_QUOTA: return "quota exceeded";
    }
    return "unknown error";
}

/* The codes named in kx.v1.Error: errors without their own code map to the nearest one. */
const char *kx_err_code(kx_err err)
{
    switch (err) {
    case KX_OK: return "ok";
    case KX_ERR_INVALID: return "invalid_argument";
    case KX_ERR_TIMEOUT: return "deadline_exceeded";
    case KX_ERR_NOT_FOUND: return "not_found";
    case KX_ERR_UNAVAILABLE: return "unavailable";
    case KX_ERR_CANCELLED: return "cancelled";
    case KX_ERR_CONFLICT: return "conflict";
    case KX_ERR_QUOTA: return "quota_exceeded";
    case KX_ERR_PROTOCOL: return "invalid_argument";
    case KX_ERR_NOMEM:
    case KX_ERR_IO:
    case KX_ERR_INTERNAL: return "internal";
    }
    return "internal";
}

void kx_why(char *why, size_t whylen, const char *fmt, ...)
{
    if (why == NULL || whylen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, whylen, fmt, ap);
    va_end(ap);
}
