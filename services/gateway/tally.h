/* tally.h — an amount per account, for the gateway's per-account bounds on what is in flight
 * (held.c: the bytes of large answers held until read; download.c: the downloads under way).
 *
 * Only accounts with something in flight have an entry, and an entry goes when its amount
 * falls to 0, so the table is as small as what is in flight and is searched linearly. Not
 * thread-safe: its owner calls it under its own lock. Anonymous readers share the account "".
 * The table owns its entries; gw_tally_free releases them. */
#ifndef GW_TALLY_H
#define GW_TALLY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kx/uuid.h"

typedef struct gw_tally_entry {
    char account[KX_UUID_LEN + 1];
    int64_t amount;
} gw_tally_entry;

typedef struct gw_tally {
    gw_tally_entry *v;
    size_t n, cap;
} gw_tally;

/* Adds n to account's amount if the sum stays within limit; false (nothing added) when it
 * would not, or when a new entry cannot be allocated. account NULL is "". */
bool gw_tally_add(gw_tally *t, const char *account, int64_t n, int64_t limit);

/* Takes n from account's amount (the entry goes at 0 or below); false when the account has
 * no entry (nothing taken). */
bool gw_tally_sub(gw_tally *t, const char *account, int64_t n);

/* The account's amount (0 without an entry). */
int64_t gw_tally_of(const gw_tally *t, const char *account);

void gw_tally_free(gw_tally *t);

#endif
