/* terminal.c — the payload of the reaper's terminal event (see terminal.h). */
#include "terminal.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>

#include "kx/json.h"

char *sched_terminal_payload(const char *error)
{
    char *message = NULL;
    if (asprintf(&message, "Agent run failed: %s", error != NULL ? error : "unknown error") < 0)
        return NULL;
    json_t *obj = json_object();
    char *out = NULL;
    if (obj != NULL && json_object_set_new(obj, "type", json_string("status")) == 0 &&
        json_object_set_new(obj, "status", json_string("failed")) == 0 &&
        json_object_set_new(obj, "message", json_string(message)) == 0)
        out = kx_json_dumps_py(obj);
    json_decref(obj);
    free(message);
    return out;
}

char *sched_retried_payload(const char *error, int next_attempt, int max_attempts)
{
    char *message = NULL;
    if (asprintf(&message, "Agent run retried (attempt %d of %d): %s", next_attempt, max_attempts,
                 error != NULL ? error : "its runner stopped") < 0)
        return NULL;
    json_t *obj = json_object();
    char *out = NULL;
    if (obj != NULL && json_object_set_new(obj, "type", json_string("status")) == 0 &&
        json_object_set_new(obj, "status", json_string("running")) == 0 &&
        json_object_set_new(obj, "message", json_string(message)) == 0)
        out = kx_json_dumps_py(obj);
    json_decref(obj);
    free(message);
    return out;
}
