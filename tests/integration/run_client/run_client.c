/* tests/integration/run_client/run_client.c — an internal service that is NOT built on libkx:
 * plain cnats + protobuf-c (the generated kx/v1/run.pb-c.h) only, doing what docs/subjects.md
 * ("Runs over NATS") shows a client in any language doing:
 *
 *   1. kx.run.start (request/reply) with Kx-Account and Kx-Deadline: a new project + thread
 *   2. the run's events: an ordered JetStream consumer on kx.run.ev.<run> (stream
 *      KX_RUN_EVENTS), from the first event
 *   3. kx.run.start on that thread (a follow-up), then kx.run.stop of the first run
 *   4. events until the terminal one
 * and the refusals: no Kx-Account, a Kx-Deadline already passed, another account's thread
 * (argv[3]), an empty prompt without a thread.
 *
 * Usage: run_client <nats-url> <account-uuid> <foreign-thread-uuid>
 * Prints one line per step ("start status=200 thread=… run=… error=…", "event terminal=1
 * payload=…", …) for the test to check; exit 0 when the session ran to its end. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <nats/nats.h>

#include "kx/v1/run.pb-c.h"

static int64_t now_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

/* Request on subject with the headers; the reply (caller destroys) or NULL. */
static natsMsg *request(natsConnection *nc, const char *subject, const ProtobufCMessage *body,
                        const char *account, int64_t deadline_ms)
{
    size_t len = protobuf_c_message_get_packed_size(body);
    uint8_t *buf = malloc(len ? len : 1);
    if (buf == NULL)
        return NULL;
    protobuf_c_message_pack(body, buf);
    natsMsg *m = NULL, *reply = NULL;
    natsStatus s = natsMsg_Create(&m, subject, NULL, (const char *)buf, (int)len);
    char dl[32];
    snprintf(dl, sizeof dl, "%" PRId64, deadline_ms);
    if (s == NATS_OK && account != NULL)
        s = natsMsgHeader_Set(m, "Kx-Account", account);
    if (s == NATS_OK && deadline_ms > 0)
        s = natsMsgHeader_Set(m, "Kx-Deadline", dl);
    if (s == NATS_OK)
        s = natsConnection_RequestMsg(&reply, nc, m, 10000);
    if (s != NATS_OK)
        fprintf(stderr, "run_client: %s: %s\n", subject, natsStatus_GetText(s));
    natsMsg_Destroy(m);
    free(buf);
    return reply;
}

/* kx.run.start; prints "<label> status=… thread=… run=… error=…"; the reply (caller frees). */
static Kx__V1__RunStartReply *start(natsConnection *nc, const char *label, const char *prompt,
                                    const char *thread, const char *account, int64_t deadline)
{
    Kx__V1__RunStartRequest req = KX__V1__RUN_START_REQUEST__INIT;
    req.prompt = (char *)prompt;
    req.thread_id = (char *)thread;
    natsMsg *r = request(nc, "kx.run.start", (const ProtobufCMessage *)&req, account, deadline);
    if (r == NULL)
        return NULL;
    Kx__V1__RunStartReply *rep =
        kx__v1__run_start_reply__unpack(NULL, (size_t)natsMsg_GetDataLength(r),
                                        (const uint8_t *)natsMsg_GetData(r));
    natsMsg_Destroy(r);
    if (rep != NULL)
        printf("%s status=%d thread=%s run=%s error=%s\n", label, (int)rep->status, rep->thread_id,
               rep->agent_run_id, rep->error);
    fflush(stdout);
    return rep;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: run_client <nats-url> <account> <foreign-thread>\n");
        return 2;
    }
    const char *url = argv[1], *account = argv[2], *foreign = argv[3];
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    if (natsConnection_ConnectTo(&nc, url) != NATS_OK ||
        natsConnection_JetStream(&js, nc, NULL) != NATS_OK) {
        fprintf(stderr, "run_client: cannot connect to %s\n", url);
        return 1;
    }
    int rc = 1;
    natsSubscription *sub = NULL;
    Kx__V1__RunStartReply *first = NULL, *r = NULL;

    /* refusals first: nothing is created by them */
    r = start(nc, "noaccount", "x", "", NULL, now_ms() + 5000);
    kx__v1__run_start_reply__free_unpacked(r, NULL);
    r = start(nc, "expired", "x", "", account, now_ms() - 1000);
    kx__v1__run_start_reply__free_unpacked(r, NULL);
    r = start(nc, "foreign", "x", foreign, account, now_ms() + 5000);
    kx__v1__run_start_reply__free_unpacked(r, NULL);
    r = start(nc, "noprompt", "", "", account, now_ms() + 5000);
    kx__v1__run_start_reply__free_unpacked(r, NULL);

    /* 1. a new project + thread + run */
    first = start(nc, "start", "from a service", "", account, now_ms() + 5000);
    if (first == NULL || first->status != 200)
        goto out;

    /* 2. follow its events from the first one */
    char subject[128];
    snprintf(subject, sizeof subject, "kx.run.ev.%s", first->agent_run_id);
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = "KX_RUN_EVENTS";
    so.Ordered = true;
    jsErrCode jerr = 0;
    natsStatus s = js_SubscribeSync(&sub, js, subject, NULL, &so, &jerr);
    if (s != NATS_OK) {
        fprintf(stderr, "run_client: subscribe %s: %s (%d)\n", subject, natsStatus_GetText(s),
                (int)jerr);
        goto out;
    }

    /* 3. a follow-up on the thread (queued behind the first), then stop the first */
    r = start(nc, "followup", "and then", first->thread_id, account, now_ms() + 5000);
    kx__v1__run_start_reply__free_unpacked(r, NULL);
    Kx__V1__RunStopRequest stop = KX__V1__RUN_STOP_REQUEST__INIT;
    stop.run_id = first->agent_run_id;
    natsMsg *m =
        request(nc, "kx.run.stop", (const ProtobufCMessage *)&stop, account, now_ms() + 5000);
    Kx__V1__RunStopReply *sr = m
        ? kx__v1__run_stop_reply__unpack(NULL, (size_t)natsMsg_GetDataLength(m),
                                         (const uint8_t *)natsMsg_GetData(m))
        : NULL;
    natsMsg_Destroy(m);
    if (sr == NULL)
        goto out;
    printf("stop code=%d status=%s error=%s\n", (int)sr->code, sr->status, sr->error);
    kx__v1__run_stop_reply__free_unpacked(sr, NULL);

    /* 4. events until the terminal one */
    int64_t until = now_ms() + 10000;
    while (now_ms() < until) {
        natsMsg *ev = NULL;
        if (natsSubscription_NextMsg(&ev, sub, 1000) != NATS_OK)
            continue;
        Kx__V1__RunEvent *e = kx__v1__run_event__unpack(NULL, (size_t)natsMsg_GetDataLength(ev),
                                                        (const uint8_t *)natsMsg_GetData(ev));
        natsMsg_Destroy(ev);
        if (e == NULL)
            continue;
        /* one event, or a batch of them (RunEvent.events: the agent-runner's form) */
        size_t n = e->n_events > 0 ? e->n_events : 1;
        for (size_t i = 0; i < n; i++) {
            const Kx__V1__RunEvent *one = e->n_events > 0 ? e->events[i] : e;
            printf("event terminal=%d payload=%s\n", one->terminal ? 1 : 0, one->payload_json);
        }
        bool done = e->terminal; /* a batch repeats its last event's */
        kx__v1__run_event__free_unpacked(e, NULL);
        if (done) {
            rc = 0;
            break;
        }
    }
out:
    fflush(stdout);
    kx__v1__run_start_reply__free_unpacked(first, NULL);
    natsSubscription_Destroy(sub);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    nats_Close();
    return rc;
}
