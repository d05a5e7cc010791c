/* key_store.c — the SQL of API keys (see key_store.h). */
#include "key_store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

kx_err gw_key_create(kx_db *db, const char *account, const char *public_key,
                     const char *secret_hash, const char *title, const char *description,
                     int expires_in_days, char **json)
{
    char days[16];
    snprintf(days, sizeof days, "%d", expires_in_days);
    const char *p[] = {account, public_key,  secret_hash,
                       title,   description, expires_in_days > 0 ? days : NULL};
    kx_err err = kx_db_exec_text(db, "gw_key_create", 6, p, json);
    return err == KX_ERR_NOT_FOUND ? KX_ERR_INTERNAL : err;
}

kx_err gw_keys_list(kx_db *db, const char *account, const gw_page *page, char **json)
{
    gw_page_args a;
    gw_page_args_of(page, &a);
    const char *p[] = {account, a.limit, a.offset, page->before};
    return kx_db_exec_text(db, "gw_keys_list", 4, p, json);
}

static kx_err owned_change(kx_db *db, const char *stmt, const char *key_id, const char *account)
{
    const char *p[] = {key_id, account};
    return kx_db_exec_text(db, stmt, 2, p, NULL);
}

kx_err gw_key_revoke(kx_db *db, const char *key_id, const char *account)
{
    return owned_change(db, "gw_key_revoke", key_id, account);
}

kx_err gw_key_delete(kx_db *db, const char *key_id, const char *account)
{
    return owned_change(db, "gw_key_delete", key_id, account);
}

kx_err gw_key_lookup(kx_db *db, const char *public_key, gw_key_row *out)
{
    memset(out, 0, sizeof *out);
    const char *p[] = {public_key};
    PGresult *res = NULL;
    kx_err err = kx_db_exec_row(db, "gw_key_lookup", 1, p, &res);
    if (err != KX_OK)
        return err;
    snprintf(out->key_id, sizeof out->key_id, "%s", PQgetvalue(res, 0, 0));
    snprintf(out->account, sizeof out->account, "%s", PQgetvalue(res, 0, 1));
    snprintf(out->secret_hash, sizeof out->secret_hash, "%s", PQgetvalue(res, 0, 2));
    out->usable = strcmp(PQgetvalue(res, 0, 3), "t") == 0;
    out->touch_due = strcmp(PQgetvalue(res, 0, 4), "t") == 0;
    PQclear(res);
    return KX_OK;
}

kx_err gw_key_touch(kx_db *db, const char *key_id)
{
    const char *p[] = {key_id};
    kx_err err = KX_OK;
    PGresult *res = kx_db_exec(db, "gw_key_touch", 1, p, &err);
    PQclear(res);
    return res == NULL ? (err != KX_OK ? err : KX_ERR_INTERNAL) : KX_OK;
}
