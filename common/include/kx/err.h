/* kx/err.h — the one error type of libkx.
 *
 * Every libkx function that can fail returns kx_err (KX_OK == 0) and, where it has more to
 * say, logs the detail itself. Callers check every return. */
#ifndef KX_ERR_H
#define KX_ERR_H

#include <stddef.h>

typedef enum kx_err {
    KX_OK = 0,
    KX_ERR_INVALID, /* bad argument or input: names what was wrong in the log */
    KX_ERR_NOMEM,
    KX_ERR_IO,      /* system call or socket failure */
    KX_ERR_TIMEOUT, /* a deadline passed */
    KX_ERR_NOT_FOUND,
    KX_ERR_CONFLICT,    /* a compare-and-set lost (e.g. fenced by a newer lease epoch) */
    KX_ERR_UNAVAILABLE, /* a dependency (NATS, Postgres, a service) is not reachable */
    KX_ERR_PROTOCOL,    /* a peer sent something malformed */
    KX_ERR_CANCELLED,
    KX_ERR_INTERNAL,
    KX_ERR_QUOTA, /* a per-account limit is reached (code "quota_exceeded") */
} kx_err;

/* Static string for an error ("timeout", "unavailable", ...). Never NULL. */
const char *kx_err_str(kx_err err);

/* The stable code used in kx.v1.Error.code for an error ("deadline_exceeded", ...). */
const char *kx_err_code(kx_err err);

/* Formats why a call failed into the caller's buffer why (whylen bytes); why NULL or whylen 0:
 * nothing is written (a caller that does not want the reason). */
void kx_why(char *why, size_t whylen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
