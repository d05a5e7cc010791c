/* held.c — the bytes of large answers held until read (see held.h). Each account's share is a
 * gw_tally (tally.h): only accounts with a large answer in flight have an entry. */
#include "held.h"

#include <microhttpd.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "kx/metrics.h"
#include "kx/uuid.h"
#include "reply.h"
#include "tally.h"

struct gw_held {
    pthread_mutex_t mu;
    int64_t total, per_account; /* the limits */
    int64_t bytes;              /* held now */
    gw_tally accounts;          /* each account's bytes held now */
    kx_gauge *gauge;
};

/* One response's claim, given back by on_free. */
typedef struct held_claim {
    gw_held *h;
    char account[KX_UUID_LEN + 1];
    char *buf;
    size_t n;
} held_claim;

gw_held *gw_held_new(int64_t total, int64_t per_account)
{
    gw_held *h = calloc(1, sizeof *h);
    if (h == NULL)
        return NULL;
    pthread_mutex_init(&h->mu, NULL);
    h->total = total;
    h->per_account = per_account;
    h->gauge = kx_metrics_gauge("kx_gateway_held_bytes", "",
                                "Bytes of large answers held until their clients read them");
    return h;
}

void gw_held_free(gw_held *h)
{
    if (h == NULL)
        return;
    pthread_mutex_destroy(&h->mu);
    gw_tally_free(&h->accounts);
    free(h);
}

bool gw_held_take(gw_held *h, const char *account, size_t n)
{
    bool ok = false;
    pthread_mutex_lock(&h->mu);
    if ((int64_t)n <= h->total - h->bytes &&
        gw_tally_add(&h->accounts, account, (int64_t)n, h->per_account)) {
        h->bytes += (int64_t)n;
        ok = true;
    }
    int64_t now = h->bytes;
    pthread_mutex_unlock(&h->mu);
    kx_gauge_set(h->gauge, now);
    return ok;
}

void gw_held_give(gw_held *h, const char *account, size_t n)
{
    pthread_mutex_lock(&h->mu);
    if (gw_tally_sub(&h->accounts, account, (int64_t)n))
        h->bytes -= (int64_t)n;
    int64_t now = h->bytes;
    pthread_mutex_unlock(&h->mu);
    kx_gauge_set(h->gauge, now);
}

static void on_free(void *arg)
{
    held_claim *c = arg;
    gw_held_give(c->h, c->account, c->n);
    free(c->buf);
    free(c);
}

struct MHD_Response *gw_held_response(gw_held *h, const char *account, char *buf, size_t n)
{
    held_claim *c = calloc(1, sizeof *c);
    struct MHD_Response *r = NULL;
    if (c != NULL) {
        c->h = h;
        memcpy(c->account, account ? account : "", strnlen(account ? account : "", KX_UUID_LEN));
        c->buf = buf;
        c->n = n;
        r = MHD_create_response_from_buffer_with_free_callback_cls(n, buf, on_free, c);
    }
    if (r == NULL) {
        free(c);
        gw_held_give(h, account, n);
        free(buf);
    }
    return r;
}

void gw_held_refuse(struct gw_reply *r)
{
    gw_reply_error(r, MHD_HTTP_SERVICE_UNAVAILABLE,
                   "The gateway holds too many large answers that are not read yet (for this "
                   "account or in all: KX_HTTP_HELD_ACCOUNT_MB, KX_HTTP_HELD_MB); retry when "
                   "they have been read");
}

int64_t gw_held_bytes(gw_held *h)
{
    pthread_mutex_lock(&h->mu);
    int64_t now = h->bytes;
    pthread_mutex_unlock(&h->mu);
    return now;
}
