/* tests/harness/api_client.h — what integration tests and benchmarks do to the gateway's API
 * over and over: make an account with a token, start a run through /api/agent/initiate, and
 * publish a run event as the agent-runner would (to drive a stream without a model).
 *
 * These helpers never assert: they answer with a status or a kx_err, so cmocka tests and the
 * benchmarks (which abort on their own terms) can both use them.
 * Ownership: returned char * are malloc'd and the caller's. Not thread-safe unless stated. */
#ifndef KX_TEST_API_CLIENT_H
#define KX_TEST_API_CLIENT_H

#include <stdbool.h>

#include "kx/bus.h"
#include "kx/uuid.h"
#include "stack.h"

/* A fresh account id (into account, when not NULL) and an hour-long token for it signed with
 * s's secret. NULL on OOM. */
char *kx_th_new_account(const kx_th_stack *s, char account[KX_UUID_LEN + 1]);

/* POSTs the form pairs {"prompt", "...", "model_name", "...", ..., NULL} to
 * /api/agent/initiate as token, multipart/form-data or url-encoded, and returns the HTTP status
 * (0 when no answer came). On 200 with valid ids the run id goes to run and, when not NULL, the
 * thread id to thread; otherwise they are set to "". When answer is not NULL it gets the
 * answer's body (malloc'd, the caller's; NULL when none came) whatever the status. */
long kx_th_initiate_form(const kx_th_stack *s, const char *token, const char *const *pairs,
                         bool multipart, char run[KX_UUID_LEN + 1], char thread[KX_UUID_LEN + 1],
                         char **answer);
/* The agent_run_id of a 200 answer body[0..len) of POST /api/agent/initiate into run_id:
 * true when the body is JSON with a valid uuid there; otherwise false and run_id is "". */
bool kx_th_initiate_run_id(const char *body, size_t len, char run_id[KX_UUID_LEN + 1]);
/* kx_th_initiate_form with just the prompt, url-encoded, no answer kept. */
long kx_th_initiate(const kx_th_stack *s, const char *token, const char *prompt,
                    char run[KX_UUID_LEN + 1], char thread[KX_UUID_LEN + 1]);

/* Publishes a RunEvent with payload_json = payload on kx.run.ev.<run> (JetStream, 5 s
 * deadline): a MESSAGE event, or the terminal STATUS event when terminal. Safe from any
 * thread that may use bus. */
kx_err kx_th_publish_run_event(kx_bus *bus, const char *run, const char *payload, bool terminal);
/* Publishes payloads[0..n) as ONE batch message (RunEvent.events, what the agent-runner sends
 * for a database batch): MESSAGE events, the last one the terminal STATUS when terminal. */
kx_err kx_th_publish_run_events(kx_bus *bus, const char *run, const char *const *payloads,
                                size_t n, bool terminal);

#endif
