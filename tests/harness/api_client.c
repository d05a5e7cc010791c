/* tests/harness/api_client.c — accounts, initiate and run events for tests (api_client.h). */
#include "api_client.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kx/pb.h"
#include "kx/time.h"

char *kx_th_new_account(const kx_th_stack *s, char account[KX_UUID_LEN + 1])
{
    char id[KX_UUID_LEN + 1];
    kx_uuid_new(id);
    if (account != NULL)
        snprintf(account, KX_UUID_LEN + 1, "%s", id);
    return kx_th_stack_token(s, id);
}

/* The uuid at key of v into out, or "" when it is missing or not a uuid. */
static void copy_id(char out[KX_UUID_LEN + 1], const json_t *v, const char *key)
{
    const char *s = json_string_value(json_object_get(v, key));
    snprintf(out, KX_UUID_LEN + 1, "%s", s != NULL && kx_uuid_valid(s) ? s : "");
}

bool kx_th_initiate_run_id(const char *body, size_t len, char run_id[KX_UUID_LEN + 1])
{
    run_id[0] = '\0';
    json_t *v = body != NULL ? json_loadb(body, len, 0, NULL) : NULL;
    copy_id(run_id, v, "agent_run_id");
    json_decref(v);
    return run_id[0] != '\0';
}

long kx_th_initiate_form(const kx_th_stack *s, const char *token, const char *const *pairs,
                         bool multipart, char run[KX_UUID_LEN + 1], char thread[KX_UUID_LEN + 1],
                         char **answer)
{
    run[0] = '\0';
    if (thread != NULL)
        thread[0] = '\0';
    if (answer != NULL)
        *answer = NULL;
    char *ctype = NULL;
    size_t len = 0;
    char *body =
        multipart ? kx_th_form_multipart(pairs, &ctype, &len) : kx_th_form_urlencoded(pairs, &len);
    if (body == NULL) {
        free(ctype);
        return 0;
    }
    kx_http_resp r;
    long status = 0;
    if (kx_th_http(s, "POST", "/api/agent/initiate", token,
                   multipart ? ctype : "application/x-www-form-urlencoded", body, len,
                   &r) == KX_OK) {
        status = r.status;
        json_t *v = status == 200 ? json_loads(r.body, 0, NULL) : NULL;
        if (v != NULL) {
            copy_id(run, v, "agent_run_id");
            if (thread != NULL)
                copy_id(thread, v, "thread_id");
            json_decref(v);
        }
        if (answer != NULL && r.body != NULL)
            *answer = strdup(r.body);
        kx_http_resp_free(&r);
    }
    free(body);
    free(ctype);
    return status;
}

long kx_th_initiate(const kx_th_stack *s, const char *token, const char *prompt,
                    char run[KX_UUID_LEN + 1], char thread[KX_UUID_LEN + 1])
{
    const char *pairs[] = {"prompt", prompt, NULL};
    return kx_th_initiate_form(s, token, pairs, false, run, thread, NULL);
}

kx_err kx_th_publish_run_event(kx_bus *bus, const char *run, const char *payload, bool terminal)
{
    Kx__V1__RunEvent ev = KX__V1__RUN_EVENT__INIT;
    ev.run_id = (char *)run;
    ev.kind = terminal ? KX__V1__RUN_EVENT_KIND__RUN_EVENT_KIND_STATUS
                       : KX__V1__RUN_EVENT_KIND__RUN_EVENT_KIND_MESSAGE;
    ev.terminal = terminal;
    ev.payload_json = (char *)payload;
    char subject[96];
    snprintf(subject, sizeof subject, KX_SUBJ_RUN_EV_PREFIX "%s", run);
    kx_bus_meta meta;
    kx_bus_meta_init(&meta, kx_deadline_in(5000), NULL);
    return kx_bus_js_publish_pb(bus, subject, (const ProtobufCMessage *)&ev, &meta);
}

kx_err kx_th_publish_run_events(kx_bus *bus, const char *run, const char *const *payloads,
                                size_t n, bool terminal)
{
    if (n == 0 || n > 256)
        return KX_ERR_INVALID;
    Kx__V1__RunEvent evs[256], *ptrs[256];
    for (size_t i = 0; i < n; i++) {
        bool last = terminal && i == n - 1;
        evs[i] = (Kx__V1__RunEvent)KX__V1__RUN_EVENT__INIT;
        evs[i].run_id = (char *)run;
        evs[i].seq = i + 1;
        evs[i].kind = last ? KX__V1__RUN_EVENT_KIND__RUN_EVENT_KIND_STATUS
                           : KX__V1__RUN_EVENT_KIND__RUN_EVENT_KIND_MESSAGE;
        evs[i].terminal = last;
        evs[i].payload_json = (char *)payloads[i];
        ptrs[i] = &evs[i];
    }
    Kx__V1__RunEvent m = KX__V1__RUN_EVENT__INIT;
    m.run_id = (char *)run;
    m.seq = evs[n - 1].seq;
    m.kind = evs[n - 1].kind;
    m.terminal = evs[n - 1].terminal;
    m.n_events = n;
    m.events = ptrs;
    char subject[96];
    snprintf(subject, sizeof subject, KX_SUBJ_RUN_EV_PREFIX "%s", run);
    kx_bus_meta meta;
    kx_bus_meta_init(&meta, kx_deadline_in(5000), NULL);
    return kx_bus_js_publish_pb(bus, subject, (const ProtobufCMessage *)&m, &meta);
}
