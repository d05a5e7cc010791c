/* held.h — the bytes of large answers the gateway holds until their clients have read them.
 *
 * libmicrohttpd keeps an answer's body until the client has read all of it, and a client that
 * reads a little every few seconds (KX_HTTP_TIMEOUT_S is the longest silence) keeps it as
 * long as it likes. A page of messages is about 8 MiB (and a file download was up to 64 MiB,
 * before download.c streamed it: it now holds two bus messages): 512 connections of one
 * address reading slowly held tens of GiB. So every answer body of at
 * least GW_HELD_MIN bytes is counted here from when it is built until libmicrohttpd frees it,
 * at most KX_HTTP_HELD_MB in all and KX_HTTP_HELD_ACCOUNT_MB per account (anonymous readers
 * of public resources share the account ""); past either, the answer is a 503 saying so
 * (gw_held_refuse). Small answers are not counted: they are bounded by the connection limits.
 *
 * Thread-safe: one mutex, taken only for answers of GW_HELD_MIN bytes or more.
 * Ownership: gw_app owns the gw_held; a response made by gw_held_response owns its buffer. */
#ifndef GW_HELD_H
#define GW_HELD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GW_HELD_MIN ((size_t)256 * 1024)

typedef struct gw_held gw_held;
struct MHD_Response;

/* total and per_account in bytes (per_account <= total). NULL when out of memory. */
gw_held *gw_held_new(int64_t total, int64_t per_account);
void gw_held_free(gw_held *h);

/* Counts n more bytes for account (NULL: ""); false, counting nothing, when the total or the
 * account's share would pass its limit. */
bool gw_held_take(gw_held *h, const char *account, size_t n);
/* Gives back n bytes taken for account. */
void gw_held_give(gw_held *h, const char *account, size_t n);

/* A response of buf[0..n) (malloc'd; n bytes already taken for account) that frees buf and
 * gives the bytes back when libmicrohttpd is done with it. NULL when out of memory: then buf
 * is freed and the bytes given back already. */
struct MHD_Response *gw_held_response(gw_held *h, const char *account, char *buf, size_t n);

/* The 503 for an answer that could not be taken. */
struct gw_reply;
void gw_held_refuse(struct gw_reply *r);

/* Bytes held now (the kx_gateway_held_bytes gauge follows it). */
int64_t gw_held_bytes(gw_held *h);

#endif
