/* tests/harness/fake_log.h — the request log of the fakes under tests/fakes (the LLM provider,
 * Daytona, the web search and scrape APIs): each answers GET /_log with a JSON array of the
 * requests it got, in order, one object each ("method", "path", "model", ...). Tests read it
 * filtered here.
 *
 * Ownership: the array returned is the caller's (json_decref). */
#ifndef KX_TEST_FAKE_LOG_H
#define KX_TEST_FAKE_LOG_H

#include <jansson.h>
#include <stdint.h>

/* The entries of the log of the fake on 127.0.0.1:port that meet both conditions, each
 * "field=value" (the string field equals value), "field^=value" (starts with value) or NULL
 * (none); both NULL: every entry. An entry without such a string field does not match. The
 * test fails when the log cannot be read. */
json_t *kx_th_fake_log(uint16_t port, const char *cond1, const char *cond2);

#endif
