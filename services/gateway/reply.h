/* reply.h — building the gateway's answers: JSON bodies and FastAPI-shaped errors
 * ({"detail": "<what was wrong>"}).
 *
 * Bodies are printed with jansson, keys in insertion order, separators like Python's json.dumps
 * (kx_json_dumps_py). Rows that come from Postgres as json_build_object(...)::text are parsed
 * with gw_json_from_sql and spliced into the answer.
 *
 * Ownership: a gw_reply owns its body (and resp until the server queues it); gw_reply_json
 * steals the json_t it is given. */
#ifndef GW_REPLY_H
#define GW_REPLY_H

#include <jansson.h>
#include "gateway.h"
#include "kx/err.h"

/* Sets status and the printed form of v (stolen; NULL is treated as out of memory). */
void gw_reply_json(gw_reply *r, unsigned int status, json_t *v);
/* Sets status and {"detail": <formatted text>}. */
void gw_reply_error(gw_reply *r, unsigned int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The answer for a failed database call: 503 when Postgres is unreachable, 504 on a statement
 * timeout, 400 for data the database refused, 500 otherwise. `what` names the operation. */
void gw_reply_db_error(gw_reply *r, kx_err err, const char *what);
/* Frees what the reply holds (body, an unqueued resp). */
void gw_reply_free(gw_reply *r);

/* Answers 200 {key: <page's rows>, "has_more": <page's more>} from a page printed by Postgres
 * as {"rows": [...], "more": bool} (page is the caller's). */
void gw_reply_page(gw_reply *r, const char *page, const char *key);

/* Parses JSON text produced by Postgres (a row or an array); an integer too large for
 * json_int_t (jsonb prints 1e20 as 100000000000000000000) is read as a real, not a failure.
 * NULL (logged) if it is not JSON. */
json_t *gw_json_from_sql(const char *text);

#endif
