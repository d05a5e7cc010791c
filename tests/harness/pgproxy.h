/* tests/harness/pgproxy.h — a TCP proxy in front of PostgreSQL that can cut a connection at
 * the worst moment: after the server executed (and, in autocommit, committed) a statement but
 * before its answer reaches the client. Used to prove that every write is idempotent: the
 * client's retry must find its own earlier success and write nothing twice.
 *
 * It forwards bytes both ways on its own thread and reads the frontend protocol just enough to
 * see which prepared statement a Bind message names (and the text of simple Query messages).
 * Connect through it with sslmode=disable&gssencmode=disable (it does not speak TLS).
 *
 * Ownership: kx_th_pgproxy_start allocates; kx_th_pgproxy_stop closes every socket and frees.
 * kx_th_pgproxy_arm / _cuts may be called from any thread. */
#ifndef KX_TEST_PGPROXY_H
#define KX_TEST_PGPROXY_H

#include <stdint.h>
#include "kx/err.h"

typedef struct kx_th_pgproxy kx_th_pgproxy;

/* Listens on a free 127.0.0.1 port and forwards every connection to 127.0.0.1:upstream_port. */
kx_err kx_th_pgproxy_start(uint16_t upstream_port, kx_th_pgproxy **out);
void kx_th_pgproxy_stop(kx_th_pgproxy *p);
uint16_t kx_th_pgproxy_port(const kx_th_pgproxy *p);

/* Arms one cut: the next Bind of the prepared statement `name` (or simple Query containing it),
 * on any connection, is forwarded; the server's answer to it is thrown away and both sides of
 * that connection are closed. name is copied; "" disarms. */
void kx_th_pgproxy_arm(kx_th_pgproxy *p, const char *name);
/* How many cuts were made so far. */
int kx_th_pgproxy_cuts(kx_th_pgproxy *p);

#endif
