/* kx/curlm.h — libcurl's multi-socket API on a kx_loop: many concurrent transfers, no thread per
 * transfer. The loop watches curl's sockets (CURLMOPT_SOCKETFUNCTION) and arms one loop timer
 * for curl's timeout (CURLMOPT_TIMERFUNCTION). Everything here is loop-thread only.
 *
 * Ownership: the caller creates and owns each CURL easy handle (and its header lists); while
 * added, the multi drives it. When the transfer ends, done(easy, result, arg) runs and the easy
 * handle has already been removed from the multi: the callback may free or reuse it.
 * kx_curlm_remove cancels a transfer from outside (no done callback). While a transfer is added,
 * its CURLOPT_PRIVATE belongs to kx_curlm (O(1) lookup of the transfer's record). */
#ifndef KX_CURLM_H
#define KX_CURLM_H

#include <curl/curl.h>
#include "kx/err.h"
#include "kx/loop.h"

typedef struct kx_curlm kx_curlm;
typedef void (*kx_curlm_done_cb)(CURL *easy, CURLcode result, void *arg);

kx_err kx_curlm_new(kx_loop *loop, kx_curlm **out); /* one multi handle */
/* shards (1..64) multi handles behind one kx_curlm: each has its own connection cache, and a
 * transfer is added to the one with the fewest transfers. For many concurrent transfers to
 * one host: libcurl walks every connection of its cache to that host for each new transfer,
 * so n shards walk 1/n as many (KX_ERR_INVALID outside 1..64). */
kx_err kx_curlm_new_shards(kx_loop *loop, int shards, kx_curlm **out);
/* Removes (without callbacks) every transfer still added, then frees. */
void kx_curlm_free(kx_curlm *m);
kx_err kx_curlm_add(kx_curlm *m, CURL *easy, kx_curlm_done_cb done, void *arg);
void kx_curlm_remove(kx_curlm *m, CURL *easy);
int kx_curlm_running(const kx_curlm *m);

#endif
