/* held.c — the bytes of large answers held until read (see held.h). The accounts holding any
 * are a small array searched linearly: only accounts with a large answer in flight are in it,
 * and an entry goes when its bytes reach 0. */
#include "held.h"

#include <microhttpd.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "kx/metrics.h"
#include "kx/uuid.h"
#include "reply.h"

typedef struct held_account {
    char id[KX_UUID_LEN + 1];
    int64_t bytes;
} held_account;

struct gw_held {
    pthread_mutex_t mu;
    int64_t total, per_account; /* the limits */
    int64_t bytes;              /* held now */
    held_account *accounts;
    size_t naccounts, cap;
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
    free(h->accounts);
    free(h);
}

/* The account's entry (made when missing and make is set), or NULL. Under h->mu. */
static held_account *find(gw_held *h, const char *account, bool make)
{
    for (size_t i = 0; i < h->naccounts; i++) {
        if (strcmp(h->accounts[i].id, account) == 0)
            return &h->accounts[i];
    }
    if (!make)
        return NULL;
    if (h->naccounts == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 8;
        held_account *a = realloc(h->accounts, cap * sizeof *a);
        if (a == NULL)
            return NULL;
        h->accounts = a;
        h->cap = cap;
    }
    held_account *e = &h->accounts[h->naccounts++];
    memset(e, 0, sizeof *e);
    size_t len = strnlen(account, KX_UUID_LEN);
    memcpy(e->id, account, len);
    return e;
}

bool gw_held_take(gw_held *h, const char *account, size_t n)
{
    if (account == NULL)
        account = "";
    bool ok = false;
    pthread_mutex_lock(&h->mu);
    if ((int64_t)n <= h->total - h->bytes) {
        held_account *e = find(h, account, true);
        if (e != NULL && (int64_t)n <= h->per_account - e->bytes) {
            e->bytes += (int64_t)n;
            h->bytes += (int64_t)n;
            ok = true;
        } else if (e != NULL && e->bytes == 0) { /* made for nothing: it goes again */
            *e = h->accounts[--h->naccounts];
        }
    }
    int64_t now = h->bytes;
    pthread_mutex_unlock(&h->mu);
    kx_gauge_set(h->gauge, now);
    return ok;
}

void gw_held_give(gw_held *h, const char *account, size_t n)
{
    if (account == NULL)
        account = "";
    pthread_mutex_lock(&h->mu);
    held_account *e = find(h, account, false);
    if (e != NULL) {
        e->bytes -= (int64_t)n;
        h->bytes -= (int64_t)n;
        if (e->bytes <= 0)
            *e = h->accounts[--h->naccounts];
    }
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
