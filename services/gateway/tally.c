/* tally.c — an amount per account (see tally.h): a small array searched linearly, an entry
 * removed by moving the last one into its place. */
#include "tally.h"

#include <stdlib.h>
#include <string.h>

static gw_tally_entry *find(const gw_tally *t, const char *account)
{
    for (size_t i = 0; i < t->n; i++) {
        if (strcmp(t->v[i].account, account) == 0)
            return &t->v[i];
    }
    return NULL;
}

bool gw_tally_add(gw_tally *t, const char *account, int64_t n, int64_t limit)
{
    if (account == NULL)
        account = "";
    gw_tally_entry *e = find(t, account);
    int64_t now = e != NULL ? e->amount : 0;
    if (n > limit - now)
        return false;
    if (e == NULL) {
        if (t->n == t->cap) {
            size_t cap = t->cap ? t->cap * 2 : 8;
            gw_tally_entry *v = realloc(t->v, cap * sizeof *v);
            if (v == NULL)
                return false;
            t->v = v;
            t->cap = cap;
        }
        e = &t->v[t->n++];
        memset(e, 0, sizeof *e);
        memcpy(e->account, account, strnlen(account, KX_UUID_LEN));
    }
    e->amount += n;
    return true;
}

bool gw_tally_sub(gw_tally *t, const char *account, int64_t n)
{
    if (account == NULL)
        account = "";
    gw_tally_entry *e = find(t, account);
    if (e == NULL)
        return false;
    e->amount -= n;
    if (e->amount <= 0)
        *e = t->v[--t->n];
    return true;
}

int64_t gw_tally_of(const gw_tally *t, const char *account)
{
    const gw_tally_entry *e = find(t, account != NULL ? account : "");
    return e != NULL ? e->amount : 0;
}

void gw_tally_free(gw_tally *t)
{
    free(t->v);
    *t = (gw_tally){0};
}
